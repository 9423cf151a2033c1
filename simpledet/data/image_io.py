"""Reading images into the float CHW [0, 1] RGB tensors the models take."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from simpledet.errors import UserError


def read_image(path: str | Path) -> Tensor:
    """Decodes an image file to float32 CHW RGB in [0, 1]; UserError naming the file if it can't."""
    try:
        with Image.open(path) as im:
            return pil_to_tensor(im)
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"{path}: cannot decode image ({e})") from None


def pil_to_tensor(im: Image.Image) -> Tensor:
    array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def to_tensor_image(x) -> Tensor:
    if isinstance(x, Tensor):
        return x.float() / 255.0 if x.dtype == torch.uint8 else x
    if isinstance(x, Image.Image):
        return pil_to_tensor(x)
    return read_image(x)
