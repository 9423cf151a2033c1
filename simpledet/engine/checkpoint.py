"""Checkpoints: weights plus a small JSON (config, iteration, categories), and the weights files a
model loads, read without executing code. The format of a weights file is read off its content and
written as its extension says (weights/file_format.py); the trainer writes safetensors."""

import json
from pathlib import Path

import torch
from torch import nn

from simpledet.errors import UserError
from simpledet.files import atomic_write, atomic_write_text
from simpledet.weights import file_format


def atomic_torch_save(obj, path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def save_weights(model: nn.Module, path: str | Path, meta: dict | None = None) -> None:
    """`path` holds the weights (.safetensors, or .pt / .pth for torch.save); `path` with .json
    beside it the metadata. An extension we cannot honour is refused before anything is written."""
    path = Path(path)
    file_format.write_state_dict(path, model.state_dict(), metadata={"format": "pt", "producer": "simpledet"})
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
    """A safetensors or torch.save weights file, told apart by content, read without executing code."""
    return file_format.read_state_dict(path)


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
