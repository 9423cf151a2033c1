"""SimpleDet's RandResize2DImageBbox + RandCrop2DImageBbox (simpledet/data/rand_resize_crop.py) on
hand-computed cases: the scale, the window, and which boxes are kept, moved and clipped."""

import pytest
import torch

from simpledet.data.loader import build_train_loader
from simpledet.data.rand_resize_crop import (
    RandResizeCrop,
    RandResizeCropConfig,
    centered_window,
    crop_sample,
    crop_size,
    rand_resize_crop,
    resize_sample,
)
from simpledet.data.scale_jitter import ScaleJitterConfig
from simpledet.errors import UserError

# original 200 x 100 (w x h); at scale 0.5 they become the boxes in the comments
BOXES = torch.tensor([
    [20.0, 20.0, 60.0, 60.0],     # -> [10, 10, 30, 30]  centre (20, 20): left of the window
    [150.0, 60.0, 190.0, 100.0],  # -> [75, 30, 95, 50]  centre (85, 40): inside
    [70.0, 10.0, 110.0, 50.0],    # -> [35, 5, 55, 25]   centre (45, 15): inside, crosses the corner
    [60.0, 0.0, 100.0, 40.0],     # -> [30, 0, 50, 20]   centre (40, 10): on the window's edge
])


def sample():
    image = torch.arange(100 * 200, dtype=torch.float32).reshape(1, 100, 200).expand(3, 100, 200) / 20000
    return image.contiguous(), dict(boxes=BOXES.clone(), labels=torch.tensor([1, 2, 3, 4]), image_id=7)


def test_resize_takes_the_smaller_scale():
    image, target = sample()
    resized, out = resize_sample(image, target, short=50, long=1000)  # min(50/100, 1000/200) = 0.5
    assert resized.shape == (3, 50, 100)
    torch.testing.assert_close(out["boxes"][1], torch.tensor([75.0, 30.0, 95.0, 50.0]))
    resized, out = resize_sample(image, target, short=80, long=120)  # min(0.8, 0.6) = 0.6
    assert resized.shape == (3, 60, 120)
    torch.testing.assert_close(out["boxes"][0], torch.tensor([12.0, 12.0, 36.0, 36.0]))


def test_window_orientation_follows_the_image():
    assert crop_size(50, 100, crop_short=40, crop_long=60) == (40, 60)   # landscape: 60 wide
    assert crop_size(120, 50, crop_short=40, crop_long=60) == (60, 40)   # portrait: 40 wide
    assert crop_size(30, 50, crop_short=40, crop_long=60) == (30, 50)    # never larger than the image


def test_centred_window_is_moved_inside_the_image():
    box = torch.tensor([75.0, 30.0, 95.0, 50.0])  # centre (85, 40)
    # start_y = round(40 - 20) + 3 = 23 -> 50 - 40 = 10; start_x = round(85 - 30) - 7 = 48 -> 100 - 60 = 40
    assert centered_window(50, 100, 40, 60, box, noise_rows=3, noise_cols=-7) == (10, 40)
    # centre (45, 15): start_y = -5 -> 0, start_x = 15
    assert centered_window(50, 100, 40, 60, torch.tensor([35.0, 5.0, 55.0, 25.0]), 0, 0) == (0, 15)
    # round half to even, as Python's round: 22.5 -> 22
    assert centered_window(200, 200, 40, 60, torch.tensor([0.0, 40.0, 10.0, 45.0]), 0, 0)[0] == 22


def test_crop_keeps_boxes_whose_centre_is_strictly_inside():
    image, target = sample()
    resized, scaled = resize_sample(image, target, short=50, long=1000)
    window, out = crop_sample(resized, scaled, start_y=10, start_x=40, crop_h=40, crop_w=60)
    assert window.shape == (3, 40, 60)
    assert torch.equal(window, resized[:, 10:50, 40:100])
    # box 1 -> [35, 20, 55, 40]; box 2 -> [-5, -5, 15, 15] clipped to [0, 0, 15, 15];
    # box 0 (centre x 20) and box 3 (centre x 40, on the window's edge) dropped
    torch.testing.assert_close(out["boxes"], torch.tensor([[35.0, 20.0, 55.0, 40.0], [0.0, 0.0, 15.0, 15.0]]))
    assert out["labels"].tolist() == [2, 3]
    assert out["orig_size"] == (40, 60)
    # a window starting at row 0 ends at row 40: box 1's centre (y 40) is on its edge, dropped
    _, out = crop_sample(resized, scaled, start_y=0, start_x=40, crop_h=40, crop_w=60)
    assert out["labels"].tolist() == [3]


def test_keyed_draws_repeat_and_stay_in_range():
    config = RandResizeCropConfig(short_sides=(50, 60), long_sides=(1000, 1000), crop_short=40, crop_long=60)
    image, target = sample()
    first = rand_resize_crop(image, target, config, torch.Generator().manual_seed(11))
    again = rand_resize_crop(image, target, config, torch.Generator().manual_seed(11))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["boxes"], again[1]["boxes"])
    for key in range(20):
        for mode in ("center", "random"):
            config.mode = mode
            window, out = rand_resize_crop(image, target, config, torch.Generator().manual_seed(key))
            assert window.shape == (3, 40, 60)
            boxes = out["boxes"]
            assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 60).all() and (boxes[:, 3] <= 40).all()
    # an image without boxes gets a uniformly drawn window
    config.mode = "center"
    empty = dict(target, boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))
    window, out = rand_resize_crop(image, empty, config, torch.Generator().manual_seed(0))
    assert window.shape == (3, 40, 60) and len(out["boxes"]) == 0


class _Tiny(torch.utils.data.Dataset):
    aspect_ratios = [2.0] * 4

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return sample()


def test_loader_applies_it_and_refuses_two_resizers():
    config = RandResizeCropConfig(short_sides=(50,), long_sides=(1000,), crop_short=40, crop_long=60)
    assert isinstance(RandResizeCrop(_Tiny(), config).dataset, _Tiny)
    images, _ = next(iter(build_train_loader(_Tiny(), 2, 0, seed=0, rand_resize_crop=config)))
    assert [tuple(im.shape) for im in images] == [(3, 40, 60), (3, 40, 60)]
    with pytest.raises(UserError, match="set one of them"):
        build_train_loader(_Tiny(), 2, 0, seed=0, rand_resize_crop=config, scale_jitter=ScaleJitterConfig())
    with pytest.raises(UserError, match="data.rand_resize_crop.mode"):
        RandResizeCrop(_Tiny(), RandResizeCropConfig(mode="middle"))
    with pytest.raises(UserError, match="one entry each"):
        RandResizeCrop(_Tiny(), RandResizeCropConfig(short_sides=(600, 800), long_sides=(1000,)))
