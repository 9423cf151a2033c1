"""RoIAlign on the CPU, spread over the intra-op threads.

torchvision's CPU kernels for roi_align and its backward run in a single thread whatever
torch.get_num_threads() says, and an NHWC (channels_last) input is first copied to NCHW with the
generic strided copy, also in one thread.

Here the same kernels run in a small thread pool (accel/thread_pool.py; they release the GIL).
Forward splits the RoIs among the threads. Backward splits the images (and, with fewer images
than threads, the channels): each thread's gradient is its own block of the input, so nothing is
summed. The NHWC-NCHW changes are one 2-D transpose per image, which torch's blocked transpose
does faster than .contiguous(). Values and gradients are bit-identical to torchvision's; only the work is
divided. On GPUs, under CPU autocast, or with one thread, it is torchvision's roi_align unchanged.
"""

import torch
from torch import Tensor
from torchvision.ops import roi_align as torchvision_roi_align

from simpledet.accel.thread_pool import run_in_threads


def _channel_slices(channels: int, groups: int) -> list[slice]:
    return [slice(channels * i // groups, channels * (i + 1) // groups) for i in range(groups)]


def as_nchw(x: Tensor) -> Tensor:
    """x (N, C, H, W) in NCHW memory. From NHWC, one 2-D transpose per image: its (C, HW) view is
    a transposed contiguous matrix, which torch's blocked transpose copies several times faster
    than .contiguous() does the same permutation."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    for image, source in zip(out, x):  # (C, H, W) each; the batch is a handful of images
        image.view(x.shape[1], -1).copy_(source.flatten(1))
    return out


class _ThreadedRoIAlign(torch.autograd.Function):
    """Forward: the RoIs split among the threads. Backward: the images (and, with fewer images
    than threads, the channels) split among them, so that each thread's gradient covers its own
    block of the input and none has to be summed."""

    @staticmethod
    def forward(ctx, input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool, groups: int) -> Tensor:
        ctx.save_for_backward(rois)
        ctx.args = (input.shape, output_size, spatial_scale, sampling_ratio, aligned, groups,
                    not input.is_contiguous() and input.is_contiguous(memory_format=torch.channels_last))
        features = as_nchw(input)

        def pool(part: Tensor) -> Tensor:
            return torch.ops.torchvision.roi_align(features, part, spatial_scale, *output_size, sampling_ratio, aligned)

        return torch.cat(run_in_threads(pool, list(rois.tensor_split(groups)), groups))

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (rois,) = ctx.saved_tensors
        shape, output_size, spatial_scale, sampling_ratio, aligned, groups, channels_last = ctx.args
        batch, channels, height, width = shape
        grad_input = torch.empty(shape, dtype=grad_output.dtype, device=grad_output.device,
                                 memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        # tasks: (image, channel slice), at least as many as threads; each writes its own block
        per_image = _channel_slices(channels, -(-groups // batch))
        tasks = [(image, part) for image in range(batch) for part in per_image]

        def spread(task: tuple[int, slice]) -> None:
            image, part = task
            keep = (rois[:, 0] == image).nonzero().squeeze(1)
            image_rois = rois[keep]
            image_rois[:, 0] = 0
            grad = grad_output[keep, part].contiguous()
            block = torch.ops.torchvision._roi_align_backward(  # (1, c, H, W), NCHW
                grad, image_rois, spatial_scale, *output_size, 1, grad.shape[1], height, width, sampling_ratio,
                aligned)[0]
            target = grad_input[image, part]
            if channels_last and part == slice(0, channels):
                # the whole image: (C, HW) -> (HW, C) as one 2-D transpose (see as_nchw)
                target.permute(1, 2, 0).reshape(-1, channels).copy_(block.reshape(channels, -1).t())
            else:
                target.copy_(block)

        run_in_threads(spread, tasks, groups)
        return grad_input, None, None, None, None, None, None


def roi_align(input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """torchvision.ops.roi_align for `rois` as a Tensor[K, 5] (batch index, x1, y1, x2, y2)."""
    output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if input.dtype != rois.dtype and input.dtype in (torch.float16, torch.bfloat16) \
            and not torch.is_autocast_enabled(input.device.type):
        # half-precision weights without autocast (a float16 export): pooled in the boxes' float32,
        # as autocast pools, and handed on in the features' precision
        pooled = roi_align(input.to(rois.dtype), rois, output_size, spatial_scale, sampling_ratio, aligned)
        return pooled.to(input.dtype)
    groups = min(torch.get_num_threads(), input.shape[1])
    if (input.device.type != "cpu" or groups < 2 or torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling()
            or len(rois) == 0):  # a graph being traced or exported records torchvision's op
        return torchvision_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _ThreadedRoIAlign.apply(input, rois.to(input.dtype), output_size, float(spatial_scale),
                                   int(sampling_ratio), bool(aligned), groups)
