"""Deformable convolution (DCNv1, Dai et al. 2017) and its modulated form (DCNv2, Zhu et al. 2019).

A KxK convolution whose sampling points move by learnt offsets; the offsets come from a plain
KxK convolution of the same input (`offset_conv`, same stride / padding / dilation, so there is one
offset per output position). The sampling itself is torchvision's `deform_conv2d`.

Parameters: `weight` (and `bias`) of the deformable conv; `offset_conv.weight` / `offset_conv.bias`.
With `modulated=True` the mask channels are the last third of `offset_conv`'s output
(offsets: 2*G*K*K channels, then mask: G*K*K), as in mmcv's ModulatedDeformConv2dPack.

Offset layout (torchvision's = MXNet's DeformableConvolution): for deformable group g and kernel tap
p = i*K + j, channel g*2*K*K + 2*p is the y (row) offset and the next channel the x offset.

Initialisation: `offset_conv` is zero (weights and bias), so the layer starts as a plain conv (DCNv1;
SimpleDet's models/dcn/builder.py). With modulation the zero mask logits give sigmoid(0) = 0.5:
the layer starts as 0.5 x the plain conv, which is what mmcv and detectron2 do (zero-initialised
offset/mask conv); we follow them. SimpleDet itself never used modulation.

SimpleDet's `conv2_offset` has no bias (mxnext convs default to no_bias); ours has one, zero-
initialised, so a SimpleDet checkpoint (no bias) loads with this bias left at zero, the same function.
"""

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d


class DeformConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, groups: int = 1, deformable_groups: int = 1,
                 bias: bool = False, modulated: bool = False) -> None:
        super().__init__()
        if in_channels % groups or in_channels % deformable_groups:
            raise ValueError(f"in_channels {in_channels} must divide by groups {groups} and "
                             f"deformable_groups {deformable_groups}")
        self.stride, self.padding, self.dilation = (stride, stride), (padding, padding), (dilation, dilation)
        self.modulated = modulated
        self.num_offsets = 2 * deformable_groups * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        mask_channels = deformable_groups * kernel_size * kernel_size if modulated else 0
        self.offset_conv = nn.Conv2d(in_channels, self.num_offsets + mask_channels, kernel_size, stride, padding,
                                     dilation, bias=True)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        self.reset_offsets()

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def reset_offsets(self) -> None:
        """Zero offsets (and mask logits): the layer acts as a plain conv (x 0.5 when modulated)."""
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
        """With `scale` / `shift` (a frozen BN's, per output channel) the BN is folded into the
        weight and bias, as `conv_norm` does for plain convs."""
        out = self.offset_conv(x)
        offset, mask = out[:, : self.num_offsets], None
        if self.modulated:
            mask = out[:, self.num_offsets:].sigmoid()
        weight, bias = self.weight, self.bias
        if scale is not None:
            weight = weight * scale.reshape(-1, 1, 1, 1)
            bias = shift if bias is None else shift + bias * scale
        return deform_conv2d(x, offset, weight, bias, self.stride, self.padding, self.dilation, mask)

    def extra_repr(self) -> str:
        return (f"{self.offset_conv.in_channels}, {self.out_channels}, kernel_size={self.weight.shape[-1]}, "
                f"stride={self.stride[0]}, padding={self.padding[0]}, dilation={self.dilation[0]}, "
                f"modulated={self.modulated}")
