import pytest
import torch
from torchvision.models import resnext50_32x4d, resnext101_32x8d, resnext101_64x4d

from simpledet.modeling.backbones.resnet import ResNetConfig
from simpledet.weights.mxnet_names import mxnet_resnet_key

from .test_backbone import check_mxnet_names, needs_json


def without_fc(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


@pytest.mark.parametrize("tv_model, groups, width_per_group", [(resnext101_32x8d, 32, 8), (resnext101_64x4d, 64, 4)])
def test_resnext101_has_torchvisions_parameters_and_names(tv_model, groups, width_per_group):
    with torch.device("meta"):  # shapes only
        tv = tv_model()
        ours = ResNetConfig(depth=101, norm="bn", groups=groups, width_per_group=width_per_group).build()
    tv_count = sum(p.numel() for n, p in tv.named_parameters() if not n.startswith("fc."))
    assert sum(p.numel() for p in ours.parameters()) == tv_count
    tv_state, our_state = without_fc(tv.state_dict()), ours.state_dict()
    assert list(our_state) == list(tv_state)
    assert all(our_state[k].shape == v.shape for k, v in tv_state.items())


def test_torchvision_resnext_weights_load_and_give_the_same_features():
    torch.manual_seed(0)
    tv = resnext50_32x4d().eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5), m.weight.uniform_(0.5, 1.0)
    ours = ResNetConfig(depth=50, groups=32, width_per_group=4).build()  # frozen BN, folded into the convs
    state = {k: v for k, v in without_fc(tv.state_dict()).items() if not k.endswith("num_batches_tracked")}
    ours.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        expected = tv.layer4(tv.layer3(tv.layer2(tv.layer1(y))))
        got = ours(x)["c5"]
    assert float((got - expected).abs().max()) <= 1e-4 * float(expected.abs().max())


@needs_json
@pytest.mark.parametrize("json_name, depth, groups, width_per_group", [
    ("resnext-101-64x4d.json", 101, 64, 4),
    # SimpleDet's "32x8d" symbols (mxnext.backbone.resnext: width = filter * 0.5 for 32 groups) are
    # 32 groups x 4 channels at stage 1 (128 wide), i.e. width_per_group=4, not FB's 32x8d (256 wide)
    ("resnext-101-32x8d.json", 101, 32, 4),
    ("resnext-152-32x8d-IN5k.json", 152, 32, 4)])
def test_mxnet_names_map_onto_resnext(json_name, depth, groups, width_per_group):
    config = ResNetConfig(depth=depth, groups=groups, width_per_group=width_per_group, data_bn=True)
    check_mxnet_names(json_name, config.build, mxnet_resnet_key)
