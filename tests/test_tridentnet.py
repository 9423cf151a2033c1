"""TridentNet: three branches with one set of weights, scale-aware ranges, TridentFast's single
branch, and training end to end."""

import copy
import json

import torch

from simpledet import build_model
from simpledet.cli import main
from simpledet.data.shapes import generate_shapes
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.trident import TridentBackbone
from simpledet.modeling.detectors.tridentnet import in_range

from .conftest import REPO
from .helpers import shapes_overrides, small_config

TRIDENT = REPO / "configs/quickstart/tridentnet_r18c4_shapes.py"


def test_branches_share_one_set_of_weights():
    torch.manual_seed(0)
    resnet = ResNetConfig(depth=50, out_features=("c4",)).build()
    plain_params = sum(p.numel() for p in resnet.parameters())
    trident = TridentBackbone(resnet, dilations=(1, 2, 3), num_trident_blocks=None, test_branches=(0, 1, 2)).eval()
    assert sum(p.numel() for p in trident.parameters()) == plain_params
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        c4 = trident(x)["c4"]
        plain = resnet(x)["c4"]
    assert c4.shape[0] == 6  # 3 branches x 2 images, branch-major
    torch.testing.assert_close(c4[:2], plain)  # dilation 1 is the plain network
    assert not torch.allclose(c4[2:4], c4[:2])  # other dilations see differently
    assert resnet.layer3[-1].conv2.dilation == (1, 1)  # the dilation is passed per call, never set
    # branch 3 is the network whose trident blocks' 3x3 convs have dilation (and padding) 3
    dilated = copy.deepcopy(resnet)
    for block in dilated.layer3[1:]:
        block.conv2.dilation = block.conv2.padding = (3, 3)
    with torch.no_grad():
        assert torch.equal(c4[4:], dilated(x)["c4"])


def test_trident_fast_runs_the_middle_branch_only():
    resnet = ResNetConfig(depth=18, out_features=("c4",), base_width=16).build()
    trident = TridentBackbone(resnet, dilations=(1, 2, 3), num_trident_blocks=1, test_branches=(1,))
    x = torch.rand(1, 3, 64, 64)
    assert trident.train()(x)["c4"].shape[0] == 3
    with torch.no_grad():
        assert trident.eval()(x)["c4"].shape[0] == 1


def test_valid_range_on_the_original_image():
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 200.0, 200.0]])
    # images were resized 2x: on the original, sizes are 20 and 100 px
    assert in_range(boxes, 2.0, 0.0, 90.0).tolist() == [True, False]
    assert in_range(boxes, 2.0, 90.0, float("inf")).tolist() == [False, True]


def test_tridentnet_trains_and_predicts(tmp_path):
    data = tmp_path / "shapes"
    generate_shapes(data, num_train=8, num_val=4, seed=1)
    iters = 60
    overrides = shapes_overrides(data, val_split="train") + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.clip_grad_norm=10", "train.warmup_iters=10", f"train.checkpoint_every={iters}"]
    out = tmp_path / "run"
    assert main(["train", str(TRIDENT), "--out", str(out), *overrides]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    assert records[-1]["loss"] < records[0]["loss"]
    model = build_model(small_config(data, config=TRIDENT))
    model.eval()
    with torch.no_grad():
        (det,) = model([torch.rand(3, 128, 128)])
    assert det["boxes"].shape[1] == 4 and len(det["boxes"]) <= 100
