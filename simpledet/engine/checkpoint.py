"""Checkpoints: weights as safetensors plus a small JSON (config, iteration, categories), and the
weights files a model loads, read without executing code."""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from simpledet.errors import UserError
from simpledet.files import atomic_write, atomic_write_bytes, atomic_write_text


def atomic_torch_save(obj, path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def save_weights(model: nn.Module, path: str | Path, meta: dict | None = None) -> None:
    """`path` (.safetensors) holds the weights; `path` with .json beside it the metadata."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={"format": "pt", "producer": "simpledet"}))
    if meta is not None:
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")


def read_training_state(path: Path) -> dict:
    """A checkpoint's training state (tensors and plain values, read with weights_only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file: the unpickler's and the zip reader's errors vary
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: cannot read the training state ({reason})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Loads a .safetensors or .pth/.pt weights file without executing code (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, ValueError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: cannot read weights ({reason})") from None
    except Exception as e:  # torch.load's unpickler refuses anything but tensors and containers
        raise UserError(f"{path}: not a plain weights file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    for key in ("model", "state_dict"):  # common wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: expected a state_dict (name -> tensor)")
    return obj


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Loads our own or a torchvision checkpoint into `model`, strictly: a checkpoint of another
    architecture is reported with the first missing, unexpected or mis-shaped parameter."""
    from simpledet.weights.torchvision import convert_torchvision, is_torchvision_detection

    state = read_state_dict(path)
    if is_torchvision_detection(state):
        state, _ = convert_torchvision(state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise UserError(f"{path}: checkpoint does not match this model's architecture: {', '.join(parts)}")
    for k, v in expected.items():
        if v.shape != state[k].shape:
            raise UserError(f"{path}: checkpoint does not match this model's architecture: "
                            f"{k} has shape {tuple(state[k].shape)}, the model expects {tuple(v.shape)}")
    model.load_state_dict(state)
