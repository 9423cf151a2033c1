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

Borders. MXNet's two operators sample differently near the edge, and each form here follows its own:
  - DCNv1, mx.sym.contrib.DeformableConvolution (SimpleDet's models/dcn; the original MSRA kernel):
    a sampling point (y, x) counts only when 0 <= y < H and 0 <= x < W, otherwise it reads 0; inside,
    y and x are clamped to H - 1 / W - 1, so a point in the last half-open row or column reads that
    row or column undiluted.
  - DCNv2, mx.sym.contrib.ModulatedDeformableConvolution (= torchvision's deform_conv2d, mmcv):
    bilinear interpolation over a zero-padded input, any point with -1 < y < H and -1 < x < W.
They agree wherever all four neighbours of a point are inside, and for integer offsets. The unmodulated
layer (mxnet_v1_border, default on) rewrites its offsets before torchvision's kernel runs: a point
MXNet's DCNv1 drops moves out of reach (y = x = -2), a point it clamps moves onto the last row /
column. tests/test_mxnet_numeric.py checks both forms against outputs MXNet 1.9.1 computed.
"""

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d


class DeformConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, groups: int = 1, deformable_groups: int = 1,
                 bias: bool = False, modulated: bool = False, mxnet_v1_border: bool | None = None) -> None:
        super().__init__()
        if in_channels % groups or in_channels % deformable_groups:
            raise ValueError(f"in_channels {in_channels} must divide by groups {groups} and "
                             f"deformable_groups {deformable_groups}")
        self.stride, self.padding, self.dilation = (stride, stride), (padding, padding), (dilation, dilation)
        self.modulated = modulated
        # MXNet DCNv1's border rule (module docstring); DCNv2's is torchvision's own
        self.mxnet_v1_border = not modulated if mxnet_v1_border is None else mxnet_v1_border
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

    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None,
                dilation: int | None = None) -> Tensor:
        """With `scale` / `shift` (a frozen BN's, per output channel) the BN is folded into the
        weight and bias, as `conv_norm` does for plain convs. `dilation`: the sampling grid's
        dilation and padding for this call instead of the layer's own (TridentNet's branches); the
        offsets' conv keeps its own."""
        padding, dilated = self.padding, self.dilation
        if dilation is not None:
            padding = dilated = (dilation, dilation)
        out = self.offset_conv(x)
        offset, mask = out[:, : self.num_offsets], None
        if self.modulated:
            mask = out[:, self.num_offsets:].sigmoid()
        if self.mxnet_v1_border:
            offset = self._mxnet_v1_offsets(offset, x.shape[-2], x.shape[-1], padding, dilated)
        weight, bias = self.weight, self.bias
        if scale is not None:
            weight = weight * scale.reshape(-1, 1, 1, 1)
            bias = shift if bias is None else shift + bias * scale
        # one dtype for torchvision's kernel: under autocast x arrives in bf16 / fp16 while the weights
        # are fp32; its CUDA autocast wrapper runs the op in fp32, and so do we, on any device
        dtype = weight.dtype
        return deform_conv2d(x.to(dtype), offset.to(dtype), weight, bias, self.stride, padding, dilated,
                             None if mask is None else mask.to(dtype))

    def _mxnet_v1_offsets(self, offset: Tensor, height: int, width: int, padding: tuple[int, int] | None = None,
                          dilation: tuple[int, int] | None = None) -> Tensor:
        """Offsets under which torchvision's zero-padded bilinear sampling reads what MXNet's
        DeformableConvolution reads: points outside [0, H) x [0, W) read nothing, points in
        [H - 1, H) / [W - 1, W) read the last row / column. Other offsets are kept bit for bit.
        Positions are compared in float32 (bfloat16 holds integers exactly only up to 256)."""
        n, _, out_h, out_w = offset.shape
        padding = self.padding if padding is None else padding
        dilation = self.dilation if dilation is None else dilation
        k = self.weight.shape[-1]
        f32 = dict(device=offset.device, dtype=torch.float32)
        taps = torch.arange(k, **f32)
        # where each tap of each output position sits without offset: (k*k, out_h, out_w)
        rows = torch.arange(out_h, **f32) * self.stride[0] - padding[0]
        cols = torch.arange(out_w, **f32) * self.stride[1] - padding[1]
        base_y = (rows.view(1, 1, -1, 1) + taps.view(k, 1, 1, 1) * dilation[0]).expand(k, k, out_h, out_w)
        base_x = (cols.view(1, 1, 1, -1) + taps.view(1, k, 1, 1) * dilation[1]).expand(k, k, out_h, out_w)
        base_y, base_x = base_y.reshape(k * k, out_h, out_w), base_x.reshape(k * k, out_h, out_w)
        off = offset.float().reshape(n, -1, k * k, 2, out_h, out_w)  # channel g*2*k*k + 2*p + (0: y, 1: x)
        dy, dx = off[:, :, :, 0], off[:, :, :, 1]
        y, x = dy + base_y, dx + base_x
        outside = (y < 0) | (x < 0) | (y >= height) | (x >= width)
        gone = -2.0  # all four neighbours outside: torchvision reads 0
        dy = torch.where(outside, gone - base_y, torch.where(y > height - 1, (height - 1) - base_y, dy))
        dx = torch.where(outside, gone - base_x, torch.where(x > width - 1, (width - 1) - base_x, dx))
        return torch.stack([dy, dx], dim=3).reshape(offset.shape)  # float32: the kernel runs in fp32

    def extra_repr(self) -> str:
        return (f"{self.offset_conv.in_channels}, {self.out_channels}, kernel_size={self.weight.shape[-1]}, "
                f"stride={self.stride[0]}, padding={self.padding[0]}, dilation={self.dilation[0]}, "
                f"modulated={self.modulated}, mxnet_v1_border={self.mxnet_v1_border}")
