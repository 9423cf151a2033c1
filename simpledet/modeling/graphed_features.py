"""CUDA graphs for the backbone, neck and dense head in training (train.cuda_graphs).

A training step of an R50-FPN detector launches over a thousand small kernels, and on a fast GPU
the host cannot launch them as fast as the device runs them (bench/profile_step.py). The backbone,
the neck and the dense head's convolutions (the RPN's, RetinaNet's subnets) have static shapes for a given padded batch shape, so their
forward and backward are captured once per shape (torch.cuda.make_graphed_callables) and replayed as two graph launches.
The heads, whose shapes depend on the data (proposals, sampled RoIs), stay eager.

Shapes vary with the padded batch size; InputConfig.fixed_canvas pads every batch to one of two
canvases so that COCO training needs two captures. Past `max_shapes` captures, other shapes run
eagerly (each capture keeps its activations' memory)."""

import logging

import torch
from torch import Tensor, nn

from simpledet.modeling.norm import FrozenBatchNorm2d, SyncBatchNorm2d

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


class GraphedFeatures:
    """Calls Features (backbone, neck, dense head) through one captured graph per (shape, strides,
    dtype, autocast) of the padded batch, on CUDA in training with gradients on; anything else
    runs eagerly.

    Not an nn.Module on purpose: the detector's parameters and state_dict keys stay as they are.
    The captured graphs read the parameters' and buffers' memory, which the optimizer and
    BatchNorm update in place. Frozen BN's folded scale and shift are cached tensors instead, so
    their statistics are checked each call and a change (a checkpoint loaded) drops every graph."""

    def __init__(self, backbone: nn.Module, neck: nn.Module | None, max_shapes: int = 4,
                 dense: DenseHead | None = None) -> None:
        self.eager = Features(backbone, neck, dense)
        self.max_shapes = max_shapes
        self.graphs: dict[tuple, nn.Module] = {}
        self.pool = None  # one memory pool for every capture: they never run concurrently
        self.frozen_bn_seen = None
        # the modules, found once (not their buffers: moving the model replaces those); checked
        # every step, so no walk over the whole module tree on the hot path
        self.frozen_bns = [m for m in self.eager.modules() if isinstance(m, FrozenBatchNorm2d)]

    def _frozen_bn_state(self) -> tuple:
        return tuple((b.data_ptr(), b._version) for m in self.frozen_bns
                     for b in (m.weight, m.bias, m.running_mean, m.running_var))

    def __call__(self, batch: Tensor) -> tuple[dict[str, Tensor], tuple]:
        if not (batch.is_cuda and self.eager.training and torch.is_grad_enabled()):
            return self.eager(batch)
        frozen = self._frozen_bn_state()
        if frozen != self.frozen_bn_seen:
            if self.graphs:
                log.info("frozen BN statistics changed: dropping %d CUDA graphs", len(self.graphs))
            self.graphs.clear()
            self.frozen_bn_seen = frozen
        amp = torch.is_autocast_enabled("cuda")
        key = (tuple(batch.shape), batch.stride(), batch.dtype, amp, torch.get_autocast_dtype("cuda") if amp else None)
        graphed = self.graphs.get(key)
        if graphed is None:
            if len(self.graphs) >= self.max_shapes:
                return self.eager(batch)
            graphed = self.graphs[key] = self._capture(batch, amp)
        return graphed(batch)

    def _capture(self, batch: Tensor, amp: bool) -> nn.Module:
        log.info("capturing backbone, neck and dense head as CUDA graphs for input %s (%d of at most %d shapes)",
                 tuple(batch.shape), len(self.graphs) + 1, self.max_shapes)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        # make_graphed_callables replaces the forward of the module it is given: one per shape
        module = Features(self.eager.backbone, self.eager.neck, self.eager.dense)
        static_input = batch.detach().clone()  # the graph's own input buffer; each call copies into it
        # the warm-up passes run forward in training mode: BatchNorm's running statistics are put
        # back afterwards, so that the capture leaves no trace in the model
        saved = [(b, b.clone()) for m in self.eager.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for b in m.buffers()]
        # autocast's weight-cast cache would hand the graph tensors freed after this step
        with torch.autocast("cuda", enabled=amp, dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False):
            graphed = torch.cuda.make_graphed_callables(module, (static_input,), pool=self.pool)
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        # The graph reads frozen BN's cached folds by address: it keeps them alive, so that no
        # later recomputation of the cache can free memory a replay still reads.
        graphed.frozen_bn_folds = [m.scale_and_shift() for m in self.frozen_bns]
        return graphed


def enable_cuda_graphs(model: nn.Module, max_shapes: int, device: torch.device, key: str = "train.cuda_graphs") -> bool:
    """Give `model` a GraphedFeatures (training on CUDA only). Returns whether it did; raises
    UserError for models the capture would run wrongly."""
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
    return True
