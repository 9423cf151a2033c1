"""CUDA graphs for the backbone, neck and dense head in training (train.cuda_graphs).

A training step of an R50-FPN detector launches over a thousand small kernels, and on a fast GPU
the host cannot launch them as fast as the device runs them (bench/profile_step.py). The backbone,
the neck and the dense head's convolutions (the RPN's, RetinaNet's subnets) have static shapes for a given padded batch shape, so their
forward and backward are captured once per shape (torch.cuda.make_graphed_callables) and replayed as two graph launches.
The heads' shapes depend on the data (proposals, sampled RoIs); the parts of the R-CNN stage
that padding makes static (sampling; the 2MLP box head and losses) are GraphCaches of their own
(enable_cuda_graphs, train.cuda_graph_heads), the rest stays eager.

Shapes vary with the padded batch size; InputConfig.fixed_canvas pads every batch to one of two
canvases so that COCO training needs two captures. Past `max_shapes` captures, other shapes run
eagerly (each capture keeps its activations' memory)."""

import logging

import torch
from torch import Tensor, nn

from simpledet.modeling.graph_cache import GraphCache
from simpledet.modeling.heads.roi_heads import BoxHeadLosses, RoIHeads, SamplingTargets
from simpledet.modeling.norm import SyncBatchNorm2d

log = logging.getLogger(__name__)


class Features(nn.Module):
    """The backbone, the neck if there is one, and the dense head's convolutions if given (the
    RPN's head, RetinaNet's subnets): the part of a detector whose shapes depend on the padded
    batch shape alone, which is what a graph can capture. Returns (features, the dense head's
    (logits, deltas) or ())."""

    def __init__(self, backbone: nn.Module, neck: nn.Module | None, dense: "DenseHead | None" = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.dense = dense
        # registered so that the capture counts their parameters among the graph's inputs
        self.dense_modules = nn.ModuleList(dense.modules if dense is not None else [])

    def forward(self, batch: Tensor) -> tuple[dict[str, Tensor], tuple]:
        features = self.backbone(batch)
        if self.neck is not None:
            features = self.neck(features)
        if self.dense is None:
            return features, ()
        return features, self.dense.predict([features[name] for name in self.dense.in_features])


class DenseHead:
    """What Features needs of a dense head: `predict(list of feature maps) -> (logits, deltas)`,
    the feature names it reads, and the modules that hold its parameters."""

    def __init__(self, predict, in_features, modules: list[nn.Module]) -> None:
        self.predict = predict
        self.in_features = tuple(in_features)
        self.modules = modules

    @staticmethod
    def of(model: nn.Module) -> "DenseHead | None":
        rpn = getattr(model, "rpn", None)
        if rpn is not None:  # two-stage detectors
            return DenseHead(rpn.predict, rpn.in_features, [rpn.head])
        head = getattr(model, "head", None)
        if head is not None and hasattr(head, "predict"):  # RetinaNet
            return DenseHead(head.predict, head.in_features, [head.cls_subnet, head.box_subnet])
        return None


def extract_features(detector: nn.Module, batch: Tensor) -> tuple[dict[str, Tensor], tuple | None]:
    """A detector's features (backbone, then neck), and its dense head's (logits, deltas) where a
    CUDA graph computed them along (train.cuda_graphs), else None: the head then runs itself."""
    if detector.graphed_features is not None:
        features, head_outputs = detector.graphed_features(batch)
        return features, head_outputs or None
    features = detector.backbone(batch)
    return (detector.neck(features) if detector.neck is not None else features), None


class GraphedFeatures(GraphCache):
    """Calls Features (backbone, neck, dense head) through one captured graph per (shape, strides,
    dtype, autocast) of the padded batch, on CUDA in training with gradients on; anything else
    runs eagerly (GraphCache)."""

    def __init__(self, backbone: nn.Module, neck: nn.Module | None, max_shapes: int = 4,
                 dense: DenseHead | None = None) -> None:
        super().__init__(lambda: Features(backbone, neck, dense), backbone, max_shapes, "backbone, neck and dense head")


def enable_cuda_graphs(model: nn.Module, max_shapes: int, device: torch.device, key: str = "train.cuda_graphs",
                       heads: bool = True) -> bool:
    """Give `model` a GraphedFeatures (training on CUDA only), and with `heads`
    (train.cuda_graph_heads) each R-CNN stage a GraphCache of its sampling and, for the 2MLP head,
    one of its box head and losses. Returns whether it did; raises UserError for models the
    capture would run wrongly."""
    from simpledet.errors import UserError

    if max_shapes < 1:
        raise UserError(f"train.cuda_graph_shapes must be at least 1, got {max_shapes}")
    if device.type != "cuda":
        log.warning("%s needs a GPU: the backbone and neck run eagerly on %s", key, device)
        return False
    if not hasattr(model, "graphed_features"):
        raise UserError(f"{key}: {type(model).__name__} has no backbone/neck to capture")
    dense = DenseHead.of(model)  # the RPN's or RetinaNet's convolutions are captured too
    parts = [model.backbone] + ([model.neck] if model.neck is not None else []) + (dense.modules if dense else [])
    for part in parts:
        for name, module in part.named_modules():
            if isinstance(module, (SyncBatchNorm2d, nn.SyncBatchNorm)):
                raise UserError(f"{key}: {type(module).__name__} at {name or type(part).__name__} all-reduces across "
                                "processes, which a captured graph does not do here; use BN, frozen BN or "
                                "GroupNorm with CUDA graphs")
    model.graphed_features = GraphedFeatures(model.backbone, model.neck, max_shapes, dense)
    # After the RPN's NMS the device idles while the host launches the heads' kernels one by one:
    # the R-CNN stages' sampling, and their box head with its losses and their backward, become
    # graph launches.
    for stage in rcnn_stages(model) if heads else []:
        stage.graphed_sampling = GraphCache(lambda stage=stage: SamplingTargets(stage.matcher, stage.sampler,
                                                                                stage.box_coder),
                                            stage, max_shapes, "R-CNN sampling", with_grad=False)
        if BoxHeadLosses.capturable(stage):
            stage.graphed_box_losses = GraphCache(lambda stage=stage: BoxHeadLosses(stage), stage.box_head,
                                                  max_shapes, "box head and its losses")
    return True


def rcnn_stages(model: nn.Module) -> list[RoIHeads]:
    """The R-CNN stages of `model`: Cascade R-CNN's three, the one of the other two-stage
    detectors, none for RetinaNet."""
    heads = getattr(model, "roi_heads", None)
    return [s for s in getattr(heads, "stages", [heads]) if isinstance(s, RoIHeads)]
