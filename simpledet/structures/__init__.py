"""The data a detector's stages hand each other: where each image lies in the padded batch
(ImageSizes) and the batch's ground truth padded into tensors (PaddedGroundTruth). The algorithms
on boxes (anchors, box coding, IoU, matching, sampling, NMS) are in simpledet/modeling/."""
