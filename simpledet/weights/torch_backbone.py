"""PyTorch-named backbone weights: a torchvision classification state_dict (ResNet, ResNeXt), the
file `simpledet convert mxnet` writes, or the backbone inside a detection checkpoint (ours or
torchvision's: the wrapper prefix is found when the file meets a module)."""

import json
from pathlib import Path

from torch import Tensor

from simpledet.weights.backbone_weights import WRAPPER_PREFIXES, PretrainedWeights
from simpledet.weights.file_format import read_metadata, read_state_dict


def read_torch_backbone(path: str | Path) -> PretrainedWeights:
    """A safetensors or torch.save file (by content); a file converted from MXNet says so in its
    safetensors header, or in the JSON `simpledet convert mxnet` writes beside it."""
    path = Path(path)
    meta = read_metadata(path) or _converted_json(path)
    return backbone_weights_from_state(read_state_dict(path), str(path), meta)


def backbone_weights_from_state(state: dict[str, Tensor], source: str, meta: dict | None = None) -> PretrainedWeights:
    """A state dict already in memory (a torchvision weights enum's, say) as backbone weights."""
    meta = meta or {}
    out = PretrainedWeights(source, "PyTorch weights", {}, {}, prefixes=WRAPPER_PREFIXES)
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


def _converted_json(path: Path) -> dict:
    beside = path.with_suffix(".json")
    try:
        meta = json.loads(beside.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and meta.get("converted_from") == "mxnet" else {}
