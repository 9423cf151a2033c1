"""RoI heads of convolutions run on RoI counts padded to a multiple of ROI_BUCKET when cuDNN
searches algorithms per shape (a GPU with cudnn.benchmark): the same values and gradients as the
unpadded batch, and a handful of batch sizes instead of one per RoI count."""

import torch
from torch import nn

from simpledet import build_model, load_config
from simpledet.accel.roi_bucket import ROI_BUCKET, bucketable, run_bucketed
from simpledet.modeling.heads.mask_head import MaskHead
from tests.helpers import REPO


def test_padded_rois_give_the_unpadded_values_and_gradients():
    torch.manual_seed(0)
    head = MaskHead(in_channels=16, num_classes=3, num_convs=2, conv_dim=8)
    rois = torch.randn(45, 16, 7, 7, requires_grad=True)
    expected = head(rois)
    (expected.square().sum()).backward()
    expected_grad = rois.grad.clone()
    rois.grad = None
    got = run_bucketed(head, rois, search=True)
    (got.square().sum()).backward()
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rois.grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_every_roi_count_maps_to_a_few_batch_sizes():
    seen = set()

    class Recorder(nn.Conv2d):
        def forward(self, x):
            seen.add(x.shape[0])
            return super().forward(x)

    head = Recorder(4, 4, 3, padding=1)
    for count in range(1, 257):
        out = run_bucketed(head, torch.zeros(count, 4, 5, 5), search=True)
        assert out.shape[0] == count
    assert seen == {ROI_BUCKET * k for k in range(1, 256 // ROI_BUCKET + 1)}
    seen.clear()
    run_bucketed(head, torch.zeros(45, 4, 5, 5))  # a CPU tensor: no search, no padding
    assert seen == {45}


def test_which_heads_are_padded():
    """Convolutional heads without batch statistics: the mask head and C4's stage-5 head (frozen
    BN); not the FPN box head (linear layers, no search) nor a head with trainable BatchNorm,
    whose statistics zero rows would change."""
    assert bucketable(MaskHead(in_channels=16, num_classes=3, num_convs=4, conv_dim=256))
    assert not bucketable(nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)))
    c4 = build_model(load_config(REPO / "configs/resnet_v1b/faster_r50v1bc4_c5_512roi_1x.py"))
    fpn = build_model(load_config(REPO / "configs/resnet_v1b/mask_r50v1b_fpn_1x.py"))
    assert bucketable(c4.roi_heads.box_head) and not bucketable(fpn.roi_heads.box_head)
    assert bucketable(fpn.roi_heads.mask_head)
    # the detector configs hand every R-CNN head the bucketing runner
    assert c4.roi_heads.run_head is run_bucketed and fpn.roi_heads.run_head is run_bucketed


def test_a_linear_head_is_never_padded():
    seen = []
    head = nn.Linear(4, 2)
    head.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    run_bucketed(head, torch.zeros(45, 4), search=True)
    assert seen == [45]
