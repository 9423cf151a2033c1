"""SimpleDet's ImageNet-pretrained MXNet backbones (and torchvision's) into our ResNet / ResNetV2.

Synthetic .params files with exactly the names and shapes of ../shared/fixtures/simpledet/backbones
(random values, plus the ImageNet classifier real files carry), written by our MXNet writer."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from simpledet.errors import UserError
from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config
from simpledet.weights.inspect import describe_weights
from simpledet.weights.mxnet_backbone import convert_mxnet_backbone, detect_mxnet_family, read_mxnet_backbone
from simpledet.weights.mxnet_format import write_ndarray_file

from .helpers import load_into

BACKBONES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "simpledet" / "backbones"
pytestmark = pytest.mark.skipif(not BACKBONES.is_dir(), reason="../shared/fixtures is not beside the checkout")
CLASSIFIER = ("fc1_weight", "fc1_bias")


def _manifest(name: str) -> dict:
    return json.loads((BACKBONES / f"{name}.json").read_text())


def _synthetic(name: str, seed: int = 0, keep=lambda name: True) -> dict[str, np.ndarray]:
    """A Module checkpoint with the manifest's arg/aux names and shapes (those `keep` accepts);
    values scaled so 50+ layers of random weights stay finite (He init, BN near identity)."""
    m, rng = _manifest(name), np.random.default_rng(seed)
    arrays = {}
    for key, shape in m["arg"].items():
        if not keep(key):
            continue
        if key.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
        elif key.endswith("_gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.uniform(-0.1, 0.1, shape)
        arrays[f"arg:{key}"] = value.astype(np.float32)
    for key, shape in m["aux"].items():
        if not keep(key):
            continue
        low, high = (-0.1, 0.1) if key.endswith("moving_mean") else (0.5, 1.5)
        arrays[f"aux:{key}"] = rng.uniform(low, high, shape).astype(np.float32)
    channels = 2048 if "stage4_unit1_conv3_weight" in m["arg"] else 512
    if "stage1_unit1_sc_bn_gamma" not in m["arg"]:  # v2 gallery files end with bn1 before the classifier
        arrays.update({"arg:bn1_gamma": np.ones(channels, np.float32), "arg:bn1_beta": np.zeros(channels, np.float32),
                       "aux:bn1_moving_mean": np.zeros(channels, np.float32),
                       "aux:bn1_moving_var": np.ones(channels, np.float32)})
    arrays["arg:fc1_weight"] = rng.standard_normal((1000, channels)).astype(np.float32)
    arrays["arg:fc1_bias"] = np.zeros(1000, np.float32)
    return arrays


def _write(tmp_path: Path, name: str, arrays: dict[str, np.ndarray], file_name: str | None = None) -> Path:
    path = tmp_path / (file_name or f"{name}-0000.params")
    write_ndarray_file(path, arrays)
    return path


def _by_hand(model: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """SimpleDet's layout written out loop by loop, independently of the loader's name map."""
    a = {k.split(":", 1)[1]: torch.from_numpy(v) for k, v in arrays.items()}

    def bn(module, prefix):
        module.weight.copy_(a[f"{prefix}_gamma"])
        module.bias.copy_(a[f"{prefix}_beta"])
        module.running_mean.copy_(a[f"{prefix}_moving_mean"])
        module.running_var.copy_(a[f"{prefix}_moving_var"])

    with torch.no_grad():
        model.conv1.weight.copy_(a["conv0_weight"])
        bn(model.bn1, "bn0")
        for s in range(1, 5):
            for u, block in enumerate(getattr(model, f"layer{s}"), start=1):
                unit = f"stage{s}_unit{u}"
                for k in (1, 2, 3):
                    getattr(block, f"conv{k}").weight.copy_(a[f"{unit}_conv{k}_weight"])
                    bn(getattr(block, f"bn{k}"), f"{unit}_bn{k}")
                if block.downsample is not None:
                    block.downsample[0].weight.copy_(a[f"{unit}_sc_weight"])
                    bn(block.downsample[1], f"{unit}_sc_bn")


@pytest.mark.parametrize("name, variant", [("resnet50_v1b", "v1b"), ("resnet-v1-50", "v1")])
def test_simpledet_backbone_loads_completely(name, variant, tmp_path):
    arrays = _synthetic(name)
    path = _write(tmp_path, name, arrays)
    model = ResNetConfig(depth=50, variant=variant).build()
    report = load_into(model, path)
    assert sorted(report.loaded) == sorted(model.state_dict())  # every parameter and statistic placed
    assert report.skipped == {n: "ImageNet classifier" for n in CLASSIFIER}
    assert "ResNet v1/v1b-50" in report.family and not report.notes and not report.initialised

    # spot checks by name: one conv weight, one shortcut BN's running statistics
    torch.testing.assert_close(model.layer3[0].conv2.weight, torch.from_numpy(arrays["arg:stage3_unit1_conv2_weight"]),
                               rtol=0, atol=0)
    torch.testing.assert_close(model.layer2[0].downsample[1].running_var,
                               torch.from_numpy(arrays["aux:stage2_unit1_sc_bn_moving_var"]), rtol=0, atol=0)
    # and the whole computation: the same feature maps as the values set by hand
    reference = ResNetConfig(depth=50, variant=variant).build()
    _by_hand(reference, arrays)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, expected = model(x), reference(x)
    assert list(ours) == ["c2", "c3", "c4", "c5"]
    for k in ours:
        assert torch.isfinite(ours[k]).all() and torch.equal(ours[k], expected[k]), k


def test_mxnet_frozen_bn_is_ours(tmp_path):
    """MXNet BatchNorm(use_global_stats, fix_gamma=False, eps=1e-5+1e-10) computed in float64."""
    arrays = _synthetic("resnet50_v1b")
    model = ResNetConfig(depth=50, variant="v1b", fuse_frozen_bn=False).build()
    load_into(model, _write(tmp_path, "resnet50_v1b", arrays))
    g, b, mean, var = (arrays[k].astype(np.float64) for k in ("arg:bn0_gamma", "arg:bn0_beta",
                                                            "aux:bn0_moving_mean", "aux:bn0_moving_var"))
    x = np.random.default_rng(1).standard_normal((2, 64, 5, 5))
    mxnet = g[:, None, None] * (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5 + 1e-10) + b[:, None, None]
    ours = model.bn1(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(ours, mxnet, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kind, depth, groups, wpg, data_bn", [
    ("resnet-v1-50", "resnet_v1", 50, 1, 64, False), ("resnet-v1-101", "resnet_v1", 101, 1, 64, False),
    ("resnet50_v1b", "resnet_v1", 50, 1, 64, False), ("resnet101_v1b", "resnet_v1", 101, 1, 64, False),
    ("resnet152_v1b", "resnet_v1", 152, 1, 64, False), ("resnet-50", "resnet_v2", 50, 1, 64, True),
    ("resnet-101", "resnet_v2", 101, 1, 64, True), ("resnext-101-64x4d", "resnext", 101, 64, 4, True),
    # mxnext builds its 32-group ResNeXt at half width (conv2 128 channels in stage 1): 32 x 4 channels
    ("resnext-101-32x8d", "resnext", 101, 32, 4, True), ("resnext-152-32x8d-IN5k", "resnext", 152, 32, 4, True),
])
def test_family_detected_by_content(name, kind, depth, groups, wpg, data_bn):
    m = _manifest(name)
    shapes = {k: tuple(v) for part in ("arg", "aux") for k, v in m[part].items()}
    family = detect_mxnet_family(shapes)
    assert (family.kind, family.depth, family.groups, family.width_per_group, family.data_bn) == (
        kind, depth, groups, wpg, data_bn)


def test_resnet_v2_loads_with_final_bn(tmp_path):
    arrays = _synthetic("resnet-50")
    arrays["arg:bn_data_gamma"] = np.full(3, 7.0, np.float32)  # MXNet ignores it (fix_gamma)
    model = ResNetV2Config(depth=50).build()
    report = load_into(model, _write(tmp_path, "resnet-50", arrays))
    assert sorted(report.loaded) == sorted(model.state_dict())
    assert set(report.skipped) == set(CLASSIFIER)
    assert torch.equal(model.data_bn.weight, torch.ones(3))  # fix_gamma: ones, not the stored 7s
    assert torch.equal(model.data_bn.running_var, torch.from_numpy(arrays["aux:bn_data_moving_var"]))
    assert torch.equal(model.layer2[0].downsample.weight, torch.from_numpy(arrays["arg:stage2_unit1_sc_weight"]))
    assert torch.equal(model.final_bn.running_mean, torch.from_numpy(arrays["aux:bn1_moving_mean"]))
    assert any("fix_gamma" in n for n in report.notes)


def test_resnext_grouped_conv_and_unbuilt_stages(tmp_path):
    # stage 1 in full; of stages 2-4 only their last unit, which is enough to tell the depth
    units = ("stage1_", "stage2_unit4_", "stage3_unit23_", "stage4_unit3_")
    arrays = _synthetic("resnext-101-64x4d", keep=lambda k: not k.startswith("stage") or k.startswith(units))
    path = _write(tmp_path, "resnext-101-64x4d", arrays)
    model = ResNetConfig(depth=101, variant="v1b", groups=64, width_per_group=4, data_bn=True,
                         out_features=("c2",)).build()
    report = load_into(model, path)
    assert sorted(report.loaded) == sorted(model.state_dict())
    assert torch.equal(model.layer1[1].conv2.weight, torch.from_numpy(arrays["arg:stage1_unit2_conv2_weight"]))
    assert model.layer1[0].conv2.groups == 64
    assert report.skipped["stage4_unit3_conv3_weight"].startswith("not in this backbone")
    assert report.skipped["fc1_weight"] == "ImageNet classifier"

    with pytest.raises(UserError, match="stage1_unit1_conv1_weight has shape .256, 64, 1, 1.*groups=64"):
        load_into(ResNetConfig(depth=101, groups=32, width_per_group=4, data_bn=True,
                               out_features=("c2",)).build(), path)
    with pytest.raises(UserError, match="bn_data.*set model.backbone.data_bn=True"):
        load_into(ResNetConfig(depth=101, groups=64, width_per_group=4, out_features=("c2",)).build(), path)


def test_missing_array_is_named(tmp_path):
    arrays = _synthetic("resnet50_v1b")
    del arrays["aux:stage3_unit2_bn2_moving_var"]
    path = _write(tmp_path, "resnet50_v1b", arrays)
    with pytest.raises(UserError, match=r"layer3\.1\.bn2\.running_var \(stage3_unit2_bn2_moving_var\) is not in"):
        load_into(ResNetConfig(depth=50, out_features=("c2", "c3", "c4")).build(), path)


def test_wrong_family_and_wrong_files(tmp_path):
    v1 = _write(tmp_path, "resnet50_v1b", _synthetic("resnet50_v1b"))
    with pytest.raises(UserError, match="data_bn.weight .bn_data_gamma. is not in the file.*ResNetConfig"):
        load_into(ResNetV2Config(depth=50, out_features=("c2",)).build(), v1)
    fixtures = BACKBONES.parents[1] / "mxnet"
    with pytest.raises(UserError, match="not a SimpleDet ResNet backbone"):
        load_into(ResNetConfig(depth=18).build(), fixtures / "tiny-0000.params")
    with pytest.raises(UserError, match="unnamed list"):
        load_into(ResNetConfig(depth=18).build(), fixtures / "unnamed.params")
    with pytest.raises(UserError, match="not found"):
        load_into(ResNetConfig(depth=18).build(), tmp_path / "nothing.params")


def test_file_name_variant_disagreeing_with_config_is_warned(tmp_path, caplog):
    arrays = _synthetic("resnet-v1-50")
    path = _write(tmp_path, "resnet-v1-50", arrays)
    with caplog.at_level(logging.INFO, logger="simpledet.weights.pretrained"):
        report = load_into(ResNetConfig(depth=50, variant="v1b", out_features=("c2", "c3")).build(), path)
    assert any("says ResNet v1 but the backbone is v1b" in w for w in report.warnings)
    assert [r.levelno for r in caplog.records if "says ResNet v1" in r.getMessage()
            and "note:" not in r.getMessage()] == [logging.WARNING]
    report = load_into(ResNetConfig(depth=50, variant="v1", out_features=("c2", "c3")).build(), path)
    assert not report.warnings and not report.notes


def test_torchvision_classification_state_dict(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None).eval()
    for m in tv.modules():  # non-trivial statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    model = ResNetConfig(depth=18, variant="v1b", fuse_frozen_bn=False).build()
    report = load_into(model, tmp_path / "resnet18.pth")
    assert sorted(report.loaded) == sorted(model.state_dict())
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        # the same function; BN's formula differs from torchvision's by rounding only
        torch.testing.assert_close(model(x)["c5"], expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())

    # a torchvision detection checkpoint's backbone: the prefix is dropped, the rest reported
    detection = {f"backbone.body.{k}": v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    detection["rpn.head.conv.0.0.weight"] = torch.zeros(1)
    torch.save(detection, tmp_path / "detector.pth")
    report = load_into(ResNetConfig(depth=18).build(), tmp_path / "detector.pth")
    assert report.skipped == {"rpn.head.conv.0.0.weight": "outside the backbone"}


def test_convert_mxnet_then_load(tmp_path):
    arrays = _synthetic("resnet50_v1b")
    src = _write(tmp_path, "resnet50_v1b", arrays)
    dst = tmp_path / "out" / "r50v1b.safetensors"
    text = convert_mxnet_backbone(src, dst)
    assert "ResNet v1/v1b-50" in text and "fc1_weight (ImageNet classifier)" in text
    meta = json.loads(dst.with_suffix(".json").read_text())
    assert meta["converted_from"] == "mxnet" and meta["variant_hint"] == "v1b"
    rows = dict((n, s) for n, _, s in describe_weights(dst))
    assert rows["layer4.2.conv3.weight"] == (2048, 512, 1, 1) and "fc1_weight" not in rows

    converted = ResNetConfig(depth=50).build()
    report = load_into(converted, dst)
    assert sorted(report.loaded) == sorted(converted.state_dict()) and not report.skipped
    direct, _ = read_mxnet_backbone(src)
    for key, value in converted.state_dict().items():
        assert torch.equal(value, direct.state[key]), key


def test_name_map_covers_every_manifest_name(tmp_path):
    weights, family = read_mxnet_backbone(_write(tmp_path, "resnet-v1-50", _synthetic("resnet-v1-50")))
    manifest = _manifest("resnet-v1-50")
    assert family.depth == 50 and len(weights.state) == len(manifest["arg"]) + len(manifest["aux"])
    assert weights.origin["layer3.5.bn3.running_var"] == "stage3_unit6_bn3_moving_var"
    assert weights.origin["layer1.0.downsample.1.weight"] == "stage1_unit1_sc_bn_gamma"


def test_c4_head_stage5_loads_from_the_same_file(tmp_path):
    from simpledet.modeling.backbones.resnet import make_stage

    # the stem, stage 4 in full and one unit of each other stage (for the depth); with bn_data
    units = ("stage1_unit3_", "stage2_unit4_", "stage3_unit23_", "stage4_")
    arrays = _synthetic("resnext-101-64x4d", keep=lambda k: not k.startswith("stage") or k.startswith(units))
    head = torch.nn.Module()
    head.layer4 = make_stage(block="bottleneck", in_channels=1024, width=512, num_blocks=3, stride=2, norm="frozen_bn",
                             variant="v1b", groups=64, width_per_group=4, dilation=1, fuse_frozen_bn=True)
    report = load_into(head, _write(tmp_path, "resnext-101-64x4d", arrays))
    assert sorted(report.loaded) == sorted(head.state_dict())
    assert torch.equal(head.layer4[2].bn3.running_mean, torch.from_numpy(arrays["aux:stage4_unit3_bn3_moving_mean"]))
    assert "bn_data_gamma" in report.skipped and "conv0_weight" in report.skipped  # the backbone's part
