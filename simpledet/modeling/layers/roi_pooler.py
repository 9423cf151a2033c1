"""Multi-level RoIAlign: each RoI pooled from the FPN level its size picks (FPN paper, eq. 1).

torchvision's MultiScaleRoIAlign with the same levels, scales and results, merged differently:
torchvision finds each level's RoIs with a `torch.where` per level, one host-device
synchronisation each; here the RoIs are sorted by level once and split by the level counts, one
wait in all (a scatter-add counts them: torch.bincount on CUDA would wait twice more). On the CPU
the pooling itself is spread over the threads (accel.roi_align), where torchvision's kernel uses
one.
"""

import math

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import LevelMapper

from simpledet.accel.roi_align import roi_align
from simpledet.accel.sync_free import count_indices


class LevelSortedRoIAlign(MultiScaleRoIAlign):
    """Same constructor and call as torchvision.ops.MultiScaleRoIAlign."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = [v for k, v in x.items() if k in self.featmap_names]  # torchvision's order: x's
        if self.scales is None:
            self.scales, self.map_levels = self._scales_and_mapper(features, image_shapes)
        image_ids = torch.cat([torch.full((b.shape[0], 1), i, dtype=b.dtype, device=b.device)
                               for i, b in enumerate(boxes)])
        rois = torch.cat([image_ids, torch.cat(boxes)], dim=1)
        if len(features) == 1:
            return roi_align(features[0], rois, self.output_size, self.scales[0], self.sampling_ratio)

        levels = self._levels(rois[:, 1:])
        order = torch.argsort(levels, stable=True)
        counts = count_indices(levels, len(features)).tolist()  # the one wait for the device
        pooled = [roi_align(feature, level_rois, self.output_size, scale, self.sampling_ratio)
                  for feature, level_rois, scale in zip(features, rois[order].split(counts), self.scales)]
        first = features[0]
        result = torch.empty((rois.shape[0], first.shape[1], *self.output_size), dtype=first.dtype, device=first.device)
        result[order] = torch.cat([p.to(first.dtype) for p in pooled])  # back in the RoIs' order
        return result

    def _levels(self, boxes: Tensor) -> Tensor:
        """torchvision's LevelMapper on all images' boxes at once (it computes the areas image by
        image): level k0 + log2(sqrt(area) / 224), floored and clamped, the same float ops."""
        mapper = self.map_levels
        size = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1).sqrt()
        levels = torch.floor(mapper.lvl0 + torch.log2(size / mapper.s0) + torch.tensor(mapper.eps, dtype=size.dtype))
        return levels.clamp(min=mapper.k_min, max=mapper.k_max).to(torch.int64) - mapper.k_min

    def _scales_and_mapper(self, features: list[Tensor], image_shapes: list[tuple[int, int]]):
        """Each level's scale, the power of two nearest its height over the largest image's height
        (torchvision's rule), and the level mapper spanning them."""
        height = max(h for h, _ in image_shapes)
        scales = [2.0 ** round(math.log2(f.shape[-2] / height)) for f in features]
        return scales, LevelMapper(int(-math.log2(scales[0])), int(-math.log2(scales[-1])),
                                   canonical_scale=self.canonical_scale, canonical_level=self.canonical_level)
