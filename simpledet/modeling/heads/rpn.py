"""Region Proposal Network: objectness and box deltas for every anchor, proposals by per-level
top-k and NMS, and its training losses (balanced anchor sampling)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.structures.anchors import AnchorGenerator
from simpledet.structures.box_iou import batched_box_iou
from simpledet.structures.box_coder import BoxCoder
from simpledet.structures.matcher import IGNORE, Matcher
from simpledet.structures.nms import concurrent_nms
from simpledet.structures.no_sync import count_indices, host_tensor
from simpledet.structures.sampler import BalancedSampler
from simpledet.structures.targets import PaddedGroundTruth, matched_box_targets


class RPNHead(nn.Module):
    """A shared 3x3 conv, then per-anchor objectness logits and box deltas, on every level."""

    def __init__(self, in_channels: int, num_anchors: int, conv_channels: int | None = None) -> None:
        super().__init__()
        conv_channels = conv_channels or in_channels
        self.conv = nn.Conv2d(in_channels, conv_channels, 3, padding=1)
        self.objectness = nn.Conv2d(conv_channels, num_anchors, 1)
        self.box_deltas = nn.Conv2d(conv_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.box_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: logits (N, H*W*A) and deltas (N, H*W*A, 4), ordered like the anchors."""
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x), inplace=True)  # in place: no second full-size tensor per level
            n, _, h, w = t.shape
            logits.append(self.objectness(t).permute(0, 2, 3, 1).reshape(n, -1))
            d = self.box_deltas(t)
            deltas.append(d.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return logits, deltas


class RPN(nn.Module):
    def __init__(self, head: RPNHead, anchor_generator: AnchorGenerator, in_features: list[str], *,
                 fg_iou: float = 0.7, bg_iou: float = 0.3, batch_size_per_image: int = 256,
                 positive_fraction: float = 0.5, pre_nms_top_n_train: int = 2000,
                 pre_nms_top_n_test: int = 1000, post_nms_top_n_train: int = 2000,
                 post_nms_top_n_test: int = 1000, nms_thresh: float = 0.7, min_size: float = 1e-3,
                 score_thresh: float = 0.0, box_loss_beta: float = 1.0 / 9,
                 allowed_border: float | None = None) -> None:
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.in_features = in_features
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = {True: pre_nms_top_n_train, False: pre_nms_top_n_test}
        self.post_nms_top_n = {True: post_nms_top_n_train, False: post_nms_top_n_test}
        self.nms_thresh = nms_thresh
        self.min_size = min_size
        self.score_thresh = score_thresh
        self.box_loss_beta = box_loss_beta
        self.allowed_border = allowed_border

    def forward(self, features: dict[str, Tensor], batch_size: tuple[int, int],
                image_sizes: list[tuple[int, int]], targets: list[dict] | None = None,
                head_outputs: tuple[Tensor, Tensor] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """head_outputs: predict()'s (logits, deltas), where the caller ran it (a CUDA graph);
        gt: `targets` padded, where the caller did it for every head."""
        feats = [features[name] for name in self.in_features]
        all_logits, all_deltas = head_outputs if head_outputs is not None else self.predict(feats)
        feature_sizes = [f.shape[-2:] for f in feats]
        per_level = [a.shape[0] for a in self.anchor_generator(batch_size, feature_sizes, feats[0].device)]
        all_anchors = self.anchor_generator.concatenated(batch_size, feature_sizes, feats[0].device)

        # The losses first: they never wait for the device, so the host queues them while the GPU
        # still runs the backbone; the proposals' NMS then waits for both at once.
        losses = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training mode")
            gt = gt if gt is not None else PaddedGroundTruth.of(targets, all_anchors.device)
            losses = self.losses(all_anchors, all_logits, all_deltas, gt, image_sizes)
        with torch.no_grad():
            boxes = self.box_coder.decode(all_deltas.detach(), all_anchors[None])[:, :, 0]
            proposals = self.select_proposals(boxes, all_logits.detach(), per_level, image_sizes)
        return proposals, losses

    def predict(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """The head's logits (N, A) and deltas (N, A, 4) for all A anchors, levels concatenated.
        Concatenated here, not by the caller: with train.cuda_graphs the graph does it, and the
        eager part neither concatenates nor copies one gradient per level back into the graph."""
        logits, deltas = self.head(features)
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)

    def select_proposals(self, boxes: Tensor, logits: Tensor, per_level: list[int],
                         image_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Top-k per level by objectness, clip, drop tiny and low-scoring boxes, NMS within each
        (image, level), keep each image's best post_nms_top_n.

        The (image, level) NMS calls run at once (concurrent_nms): threads on the CPU, streams on
        a GPU, where each call's decisive kernel is sequential in one thread block. The host
        waits on the device for those calls together and once for the per-image counts, where
        torchvision's batched_nms and boolean filtering wait some thirteen times per image."""
        ks = [min(self.pre_nms_top_n[self.training], count) for count in per_level]
        num_images, total = boxes.shape[0], sum(ks)
        top_idx = torch.cat([logits[:, start:end].topk(k, dim=1).indices + start
                             for (start, end), k in zip(_segments(per_level), ks)], dim=1)  # (B, total)
        scores = torch.sigmoid(torch.gather(logits, 1, top_idx).float())
        boxes = torch.gather(boxes, 1, top_idx[..., None].expand(-1, -1, 4))
        # clip, as clip_boxes_to_image, every image against its own size in two kernels
        limits = host_tensor([[w, h, w, h] for h, w in image_sizes], boxes.device, boxes.dtype)
        boxes = torch.minimum(boxes.clamp(min=0), limits[:, None])

        # Boxes too small or too unlikely stay in place, without a wait to find them: scored below
        # every sigmoid, NMS ranks them after all valid boxes, so they suppress none, and they are
        # cut off each image's list at the end. At the origin, no NaN reaches NMS.
        wh = boxes[..., 2:] - boxes[..., :2]
        valid = ((wh >= self.min_size).all(dim=-1) & (scores >= self.score_thresh)).flatten()
        scores = torch.where(valid, scores.flatten(), -1.0)
        boxes = torch.where(valid[:, None], boxes.reshape(-1, 4), 0.0)
        # laid out image by image, each image level by level: every (image, level) is a slice
        segments = [(image, image * total + start, image * total + end) for image in range(num_images)
                    for start, end in _segments(ks) if end > start]
        kept = concurrent_nms([(boxes[start:end], scores[start:end]) for _, start, end in segments],
                              self.nms_thresh, offsets=[start for _, start, _ in segments])
        keep = torch.cat(kept) if kept else top_idx.new_zeros(0)
        keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices]  # best first
        kept_images, by_image = torch.sort(keep // total, stable=True)
        keep = keep[by_image]  # then by image, best first within
        per_image = [0] * num_images  # NMS has returned, so each call's output size is known here
        for (image, _, _), k in zip(segments, kept):
            per_image[image] += len(k)
        valid_per_image = count_indices(kept_images, num_images, where=valid[keep]).tolist()  # the one wait outside NMS
        post_nms = self.post_nms_top_n[self.training]
        return [boxes[k[:min(n, post_nms)]] for k, n in zip(keep.split(per_image), valid_per_image)]

    def losses(self, anchors: Tensor, logits: Tensor, deltas: Tensor, gt: PaddedGroundTruth,
               image_sizes: list[tuple[int, int]]) -> dict[str, Tensor]:
        """Objectness (binary cross-entropy) over the sampled anchors, box smooth-L1 over the
        foreground ones, both divided by the number sampled. Written as masked sums over all
        anchors rather than by indexing the sampled ones: the same sums, without the host-device
        synchronisations that boolean indexing costs."""
        matched, labels = self.matcher(batched_box_iou(gt.boxes, anchors), gt.valid)
        if self.allowed_border is not None:
            labels = torch.where(self.inside_image(anchors, image_sizes), labels, IGNORE)
        fg, bg = self.sampler(labels)
        sampled = fg | bg
        num_sampled = sampled.sum().clamp(min=1)

        logits, deltas = logits.float(), deltas.float()  # losses in fp32 under mixed precision
        objectness_loss = F.binary_cross_entropy_with_logits(
            logits, fg.to(logits.dtype), weight=sampled.to(logits.dtype), reduction="sum") / num_sampled
        target_deltas = matched_box_targets(self.box_coder, anchors, gt.boxes, matched, fg)
        box_loss = F.smooth_l1_loss(deltas, target_deltas, beta=self.box_loss_beta, reduction="none").sum(-1)
        box_loss = torch.where(fg, box_loss, 0.0).sum() / num_sampled
        return {"loss_rpn_cls": objectness_loss, "loss_rpn_box": box_loss}

    def inside_image(self, anchors: Tensor, image_sizes: list[tuple[int, int]]) -> Tensor:
        """(B, A) mask of anchors within allowed_border pixels of each image (SimpleDet: 0)."""
        border = self.allowed_border
        top_left = (anchors[:, 0] >= -border) & (anchors[:, 1] >= -border)
        return torch.stack([top_left & (anchors[:, 2] < w + border) & (anchors[:, 3] < h + border)
                            for h, w in image_sizes])  # per image, Python bounds: no host-to-device copy


@dataclass
class RPNConfig:
    """SimpleDet's FPN RPN: one anchor size per level (scale 8 x stride 4..64 = 32..512 px), three
    ratios; anchors crossing the image border ignored in training (allowed_border 0; None keeps
    them all, as torchvision does); no minimum proposal size."""

    in_features: tuple[str, ...] = ("p2", "p3", "p4", "p5", "p6")
    anchor_sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    fg_iou: float = 0.7
    bg_iou: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 2000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    min_size: float = 0.0
    box_loss_beta: float = 1.0 / 9
    allowed_border: float | None = 0.0
    conv_channels: int | None = None  # the 3x3 conv's width; None: as its input (FPN: 256; C4: 512)

    def build(self, in_channels: int) -> RPN:
        anchors = AnchorGenerator(self.anchor_sizes, (self.aspect_ratios,) * len(self.anchor_sizes))
        head = RPNHead(in_channels, anchors.num_anchors_per_location[0], self.conv_channels)
        return RPN(head, anchors, list(self.in_features), fg_iou=self.fg_iou, bg_iou=self.bg_iou,
                   batch_size_per_image=self.batch_size_per_image, positive_fraction=self.positive_fraction,
                   pre_nms_top_n_train=self.pre_nms_top_n_train, pre_nms_top_n_test=self.pre_nms_top_n_test,
                   post_nms_top_n_train=self.post_nms_top_n_train, post_nms_top_n_test=self.post_nms_top_n_test,
                   nms_thresh=self.nms_thresh, min_size=self.min_size, box_loss_beta=self.box_loss_beta,
                   allowed_border=self.allowed_border)


def _segments(counts: list[int]) -> list[tuple[int, int]]:
    """[start, end) of consecutive runs of the given lengths."""
    ends = [sum(counts[:i + 1]) for i in range(len(counts))]
    return [(end - count, end) for end, count in zip(ends, counts)]
