"""PyTorch-named backbone weights: a torchvision classification state_dict (ResNet, ResNeXt), the
safetensors `simpledet convert mxnet` writes, or the backbone inside a detection checkpoint (ours
or torchvision's: the wrapper prefix is found when the file meets a module)."""

from pathlib import Path

from safetensors import safe_open

from simpledet.engine.checkpoint import read_state_dict
from simpledet.weights.backbone_weights import WRAPPER_PREFIXES, PretrainedWeights


def read_torch_backbone(path: str | Path) -> PretrainedWeights:
    state = read_state_dict(path)
    out = PretrainedWeights(str(path), "PyTorch weights", {}, {}, prefixes=WRAPPER_PREFIXES)
    if str(path).endswith(".safetensors"):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        out.variant_hint = meta.get("variant_hint") or None
        if "family" in meta:
            out.family = f"{meta['family']}, converted from MXNet"
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue  # a counter of training BN, meaningless here
        if name.startswith(("fc.", "module.fc.")):
            out.skipped[name] = "ImageNet classifier"
            continue
        out.state[name], out.origin[name] = value, name
    return out
