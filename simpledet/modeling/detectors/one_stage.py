"""One-stage detector: composition only. RetinaNet (and any dense head) differ in the parts."""

from torch import Tensor, nn

from simpledet.modeling.graphed_features import extract_features


class OneStageDetector(nn.Module):
    """torchvision's interface: model(images, targets) with float CHW images in [0, 1].

    Training mode returns a dict of losses; eval mode a list of dicts with `boxes` (x1y1x2y2 in the
    original image's pixels), `labels` (1..num_classes) and `scores`. The head is called as
    head(features, padded_batch_size, image_sizes, targets, head_outputs) -> (detections, losses),
    head_outputs being its (logits, deltas) where a CUDA graph computed them, else None.
    """

    def __init__(self, preprocess: nn.Module, backbone: nn.Module, neck: nn.Module | None,
                 head: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.backbone = backbone
        self.neck = neck
        self.graphed_features = None  # train.cuda_graphs: a GraphedFeatures (engine/trainer.py)
        self.head = head

    def forward(self, images: list[Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, sizes, targets = self.preprocess(images, targets)
        features, head_outputs = extract_features(self, batch)
        detections, losses = self.head(features, tuple(batch.shape[-2:]), sizes, targets, head_outputs)
        if self.training:
            return losses
        return self.preprocess.postprocess(detections, sizes, original_sizes)
