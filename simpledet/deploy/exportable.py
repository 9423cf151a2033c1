"""A detector as one function of one image: the form an exported graph takes.

`ExportableDetector(model)(image)` runs the model's own eval forward (resize and normalisation,
backbone, heads, NMS, mask pasting) on one float [3, H, W] RGB image in [0, 1] and returns plain
tensors: boxes [K, 4] in the image's pixels, scores [K], labels [K] as category ids (the ids
`predict` writes), for mask models masks [K, 1, H, W] probabilities, and for Mask Scoring R-CNN
mask_scores [K] (score x predicted mask IoU, what ranks its masks).

Nothing here changes what the model computes. Under a tracing compiler (torch.export, and so the
ONNX exporter) the model's speed paths take their plain form by themselves: simpledet/accel and
the parts that branch on `torch.compiler.is_compiling()` (threads, caches and host reads have no
place in a graph).
"""

import torch
from torch import Tensor, nn

from simpledet.errors import UserError

OUTPUT_NAMES = ("boxes", "scores", "labels", "masks", "mask_scores")


class ExportableDetector(nn.Module):
    def __init__(self, model: nn.Module, *, category_ids: list[int] | None, masks: bool,
                 mask_scores: bool = False, dtype: torch.dtype = torch.float32) -> None:
        """model: a detector, taken over (set to eval mode and `dtype`, its value checks off);
        category_ids: the category id of each
        label 1..K (a checkpoint's categories), or None where labels are category ids already
        (data.contiguous_labels=False); masks: whether the model predicts masks; mask_scores: whether
        it scores them too (Mask Scoring R-CNN, with masks); dtype: of the
        weights and the computation (float16 for --half; detections come back as float32)."""
        super().__init__()
        self.model = model.eval().to(dtype)
        # the value checks read the image back to Python; a graph keeps the shape and type checks
        self.model.check_input_values = False
        self.maps_labels = category_ids is not None
        # label -> category id, label 0 (background) never predicted
        table = [0, *category_ids] if category_ids is not None else [0]
        self.register_buffer("category_of_label", torch.tensor(table, dtype=torch.int64), persistent=False)
        self.masks = masks
        self.mask_scores = masks and mask_scores
        self.dtype = dtype

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES[:3 + self.masks + self.mask_scores]

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        det = self.model([image.to(self.dtype)])[0]
        labels = self.category_of_label[det["labels"]] if self.maps_labels else det["labels"]
        outputs = (det["boxes"].float(), det["scores"].float(), labels)
        if self.masks:
            outputs = (*outputs, det["masks"].float())
        if self.mask_scores:
            outputs = (*outputs, det["mask_scores"].float())
        return outputs

    @torch.no_grad()
    def prepare(self, example: Tensor) -> None:
        """One eager run on `example`, which fixes what the model settles on its first call (the
        RoI poolers' level scales) as constants before the graph is traced."""
        self(example)


def example_image(height: int = 96, width: int = 128, seed: int = 0) -> Tensor:
    """A float [3, H, W] image in [0, 1] to trace with: smooth noise, so that the heads find boxes."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(height // 8, 1), max(width // 8, 1), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]


def check_exportable(cfg) -> None:
    """Refuses, naming the setting, what a graph cannot express: test-time augmentation (several
    runs merged, outside the model) and soft-NMS (a loop over picks, each read back to Python)."""
    if cfg.test.scales or cfg.test.flip:
        raise UserError("test-time augmentation (test.scales, test.flip) runs the model several times outside it and "
                        "is not exported; export with test.scales=() test.flip=false")
    head = cfg.model.final_head
    if getattr(head, "nms_method", "nms") != "nms":
        raise UserError(f"soft-NMS (nms_method={head.nms_method!r}) picks boxes in a Python loop that reads each "
                        "pick back from the tensors, which no exported graph can express; export with the final "
                        "head's nms_method=nms (model.roi_heads.nms_method, or model.roi_heads.stage.nms_method for "
                        "a cascade)")
