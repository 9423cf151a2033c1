"""Tests for drawing detections and saving images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simpledet.visualize import PALETTE, draw_detections, label_color, save_image


def _image() -> torch.Tensor:
    return torch.full((3, 64, 96), 0.5)


def test_draws_box_outline_only_near_box() -> None:
    image = _image()
    out = draw_detections(image, torch.tensor([[20.0, 20.0, 60.0, 50.0]]), ["cat"], torch.tensor([0.93]))
    assert out.dtype == torch.uint8 and out.shape == (3, 64, 96)
    background = out[:, 0, 95].clone()  # unchanged grey, far from the box
    assert torch.equal(background, torch.tensor([128, 128, 128], dtype=torch.uint8))
    changed = (out != background[:, None, None]).any(dim=0)
    assert changed[35, 20] and changed[20, 40]  # left edge and top edge of the outline
    assert not changed[35, 40]  # box interior stays (no fill)
    assert not changed[:, 70:].any() and not changed[56:].any()  # far away stays
    assert torch.equal(out[:, 35, 20], torch.tensor(label_color("cat"), dtype=torch.uint8))


def test_masks_and_uint8_input() -> None:
    image = torch.zeros(1, 32, 32, dtype=torch.uint8)  # grey input comes back RGB
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 10:20, 10:20] = True
    out = draw_detections(image, torch.tensor([[5.0, 5.0, 25.0, 25.0]]), ["dog"], masks=masks)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert out[:, 15, 15].any() and not out[:, 30, 30].any()


def test_no_boxes_returns_converted_image() -> None:
    out = draw_detections(_image(), torch.zeros(0, 4), [])
    assert out.dtype == torch.uint8 and (out == 128).all()


def test_colours_are_deterministic() -> None:
    assert label_color("person") == label_color("person")
    assert label_color("person") in PALETTE
    # Pinned values: crc32-based, so they cannot drift with PYTHONHASHSEED or between runs.
    assert [label_color(n) for n in ("person", "car", "dog")] == [(128, 0, 0), (255, 215, 180), (145, 30, 180)]
    names = ["person", "car", "dog", "bicycle", "bus", "train"]
    assert len({label_color(n) for n in names}) > 1


def test_save_image_writes_readable_png(tmp_path: Path) -> None:
    image = torch.randint(0, 256, (3, 12, 17), dtype=torch.uint8)
    path = tmp_path / "nested" / "dir" / "vis.png"
    save_image(path, image)
    with Image.open(path) as pil:
        assert pil.format == "PNG" and pil.size == (17, 12)
        assert torch.equal(torch.from_numpy(np.array(pil)).permute(2, 0, 1), image)
