"""Weights files: told apart by their content, never their name, and written as their name says.

What the first bytes say:
  safetensors  u64 little-endian header length N, then N bytes of JSON starting with `{`, then data
  torch        torch.save's output: a zip archive (`PK\\x03\\x04`, its default) or a legacy pickle
               (`\\x80` and a protocol number); read with weights_only=True, never running code
  mxnet        MXNet's NDArray list (u64 0x112, weights/mxnet_format.py): SimpleDet's `.params`

A writer takes the format from the extension: `.safetensors` is safetensors, `.pt` / `.pth` is
torch.save of a plain state dict; any other extension is refused before anything is written.
"""

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from simpledet.errors import UserError
from simpledet.files import atomic_write, atomic_write_bytes
from simpledet.weights.mxnet_format import LIST_MAGIC

SAFETENSORS, TORCH, MXNET = "safetensors", "torch", "mxnet"
WRITABLE = {".safetensors": SAFETENSORS, ".pt": TORCH, ".pth": TORCH}
FORMATS_READ = "MXNet NDArray (.params), PyTorch torch.save (.pt / .pth, zip or pickle), safetensors"
# what a file's name claims, for messages about a file whose content is none of the formats
_CLAIMED = {".params": "an MXNet NDArray file", ".safetensors": "a safetensors file", ".pt": "a PyTorch weights file",
            ".pth": "a PyTorch weights file", ".bin": "a PyTorch weights file", ".ckpt": "a PyTorch weights file"}
_ZIP_END = b"PK\x05\x06"  # a zip's end-of-central-directory record: the last thing written
_ZIP_END_SEARCH = 22 + 65535  # the record and the longest comment it may carry


def sniff(path: str | Path) -> str:
    """SAFETENSORS, TORCH or MXNET, from the file's first bytes. A file that is none of them, or
    one cut short, is a UserError naming the file and what it looks like."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
            kind = _kind_of(head, size)
            if kind == SAFETENSORS:
                _check_safetensors(f, head, size, path)
            elif kind == TORCH and head[:4] == b"PK\x03\x04":
                f.seek(max(0, size - _ZIP_END_SEARCH))
                if _ZIP_END not in f.read():
                    raise UserError(f"{path}: a PyTorch zip file cut short ({size:,} bytes and no end-of-archive "
                                    "record): an interrupted download or copy? Fetch it again")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if kind is None:
        claimed = _CLAIMED.get(path.suffix.lower())
        what = f"not {claimed}, whatever its name says" if claimed else "not a weights file we read"
        raise UserError(f"{path}: {what} ({describe_bytes(head, size)}); the formats read: {FORMATS_READ}")
    return kind


def _kind_of(head: bytes, size: int) -> str | None:
    if len(head) >= 8 and struct.unpack_from("<Q", head)[0] == LIST_MAGIC:
        return MXNET
    if head[:4] == b"PK\x03\x04":
        return TORCH
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return TORCH
    if len(head) >= 9 and head[8:9] == b"{":
        return SAFETENSORS
    return None


def _check_safetensors(f, head: bytes, size: int, path: Path) -> None:
    """The header fits in the file and the tensors it lists fit after it: a download or copy cut
    short is named as such here, before safetensors' own less specific message."""
    header_len = struct.unpack_from("<Q", head)[0]
    if header_len > size - 8:
        raise UserError(f"{path}: a safetensors file cut short: its header declares {header_len:,} bytes, "
                        f"{size - 8:,} follow (an interrupted download or copy?)")
    f.seek(8)
    try:
        header = json.loads(f.read(header_len))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise UserError(f"{path}: not a valid safetensors file (its header is not the JSON safetensors writes: "
                        f"{e})") from None
    if end > size - 8 - header_len:
        raise UserError(f"{path}: a safetensors file cut short: its tensors need {end:,} bytes of data, the file "
                        f"holds {size - 8 - header_len:,} (an interrupted download or copy?)")


def describe_bytes(head: bytes, size: int) -> str:
    """What a file that is no weights file looks like, from its first bytes."""
    if size == 0:
        return "the file is empty"
    if size < 9:
        return f"only {size} bytes"
    if all(32 <= byte < 127 or byte in b"\t\n\r" for byte in head):
        return f"it starts with the text {head.decode('ascii')!r}"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict (name -> tensor) from a safetensors or torch.save file, whatever its name.
    torch files are read with weights_only=True; a `model` or `state_dict` wrapper is opened."""
    path = Path(path)
    kind = sniff(path)
    if kind == MXNET:
        raise UserError(f"{path} is an MXNet NDArray file (SimpleDet's .params), not a PyTorch state dict: "
                        f"convert a SimpleDet detector with `simpledet convert simpledet {path} OUT.safetensors "
                        "--config CONFIG`; a pretrained backbone goes in model.backbone.pretrained, which reads it")
    if kind == SAFETENSORS:
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"{path}: not a valid safetensors file ({_first_line(e)})") from None
    try:
        obj = load_torch_file(path)
    except Exception as e:  # the restricted unpickler refuses code; damaged archives fail in many ways
        raise UserError(f"{path}: a PyTorch file that does not load as plain weights (torch.load with "
                        f"weights_only: {type(e).__name__}: {_first_line(e)})") from None
    for key in ("model", "state_dict"):  # the usual wrappers of training scripts
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: a PyTorch file, but not a state dict (name -> tensor): it holds "
                        f"{type(obj).__name__}")
    return obj


def load_torch_file(path: Path) -> object:
    """torch.load with weights_only, given an open file: given a path, torch.load itself trusts a
    `.safetensors` name."""
    with open(path, "rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata a safetensors file carries in its header ({} for other formats)."""
    path = Path(path)
    if sniff(path) != SAFETENSORS:
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a valid safetensors file ({_first_line(e)})") from None


def writable_format(path: str | Path) -> str:
    """The format the extension of `path` asks for; a UserError for one we cannot honour. Writers
    call it first, so that a bad name is refused before any work."""
    path = Path(path)
    kind = WRITABLE.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"{path}: cannot write weights as {path.suffix or 'a name without extension'}: the "
                        "extension sets the format, .safetensors (safetensors) or .pt / .pth (torch.save of a "
                        "state dict)")
    return kind


def write_state_dict(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Writes `state` whole or not at all, in the format the extension says. `metadata` (strings)
    goes into a safetensors header; a torch file holds the plain state dict only."""
    kind = writable_format(path)
    tensors = {k: _standalone(v) for k, v in state.items()}
    if kind == SAFETENSORS:
        atomic_write_bytes(path, save(tensors, metadata=metadata))
    else:
        atomic_write(path, lambda f: torch.save(tensors, f))


def _standalone(tensor: torch.Tensor) -> torch.Tensor:
    """On the CPU, contiguous, and owning its storage: a view would make torch.save write the
    whole tensor it views, and safetensors refuses shared storage."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.untyped_storage().nbytes() != tensor.nbytes:
        tensor = tensor.clone()
    return tensor


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
