"""Region Proposal Network: objectness and box deltas for every anchor (`forward`, the
convolutions), proposals by per-level top-k and NMS (`postprocess`), and its training losses with
balanced anchor sampling (`losses`). The detector calls all three, as torchvision's one-stage
detectors call their heads'."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simpledet.errors import UserError
from simpledet.modeling.anchors import AnchorGenerator, Anchors
from simpledet.modeling.box_coder import BoxCoder, matched_box_targets
from simpledet.modeling.box_iou import batched_box_iof, batched_box_iou
from simpledet.modeling.matcher import BACKGROUND, IGNORE, Matcher
from simpledet.modeling.nms import NmsEach, nms_each
from simpledet.modeling.norm import make_norm
from simpledet.modeling.sampler import BalancedSampler
from simpledet.structures.ground_truth import PaddedGroundTruth
from simpledet.structures.image_sizes import ImageSizes


class RPNHead(nn.Module):
    """A shared 3x3 conv, then per-anchor objectness logits and box deltas, on every level."""

    def __init__(self, *, in_channels: int, num_anchors: int, conv_channels: int, norm: str | None = None) -> None:
        """norm: a norm between the 3x3 conv and its ReLU (SimpleDet's RpnHead with a SyncBN or GN
        normalizer: TridentNet from scratch); None, the usual head, has no such layer."""
        super().__init__()
        self.conv = nn.Conv2d(in_channels, conv_channels, 3, padding=1)
        self.norm = make_norm(norm, conv_channels) if norm is not None else None
        self.objectness = nn.Conv2d(conv_channels, num_anchors, 1)
        self.box_deltas = nn.Conv2d(conv_channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness, self.box_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: logits (N, H*W*A) and deltas (N, H*W*A, 4), ordered like the anchors."""
        logits, deltas = [], []
        for x in features:
            t = self.conv(x) if self.norm is None else self.norm(self.conv(x))
            t = F.relu(t, inplace=True)  # in place: no second full-size tensor per level
            n, _, h, w = t.shape
            logits.append(self.objectness(t).permute(0, 2, 3, 1).reshape(n, -1))
            d = self.box_deltas(t)
            deltas.append(d.view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return logits, deltas


class RPN(nn.Module):
    def __init__(self, head: RPNHead, anchor_generator: AnchorGenerator, *, in_features: tuple[str, ...],
                 fg_iou: float, bg_iou: float, batch_size_per_image: int, positive_fraction: float,
                 pre_nms_top_n_train: int, pre_nms_top_n_test: int, post_nms_top_n_train: int,
                 post_nms_top_n_test: int, nms_thresh: float, min_size: float, score_thresh: float,
                 box_loss_beta: float, allowed_border: float | None, ignore_iof: float | None = None,
                 nms_each: NmsEach = nms_each) -> None:
        """nms_each: how the per-(image, level) NMS calls of postprocess run: one after another
        (simpledet.modeling.nms.nms_each), or at once (accel.concurrent_nms, what the detector
        configs pass)."""
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.in_features = tuple(in_features)
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
        self.ignore_iof = ignore_iof
        self.nms_each = nms_each

    def forward(self, features: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The head's logits (N, A) and deltas (N, A, 4) for all A anchors, levels concatenated
        (here, in the convolutions' step: train.cuda_graphs then replays the concatenation too)."""
        logits, deltas = self.head([features[name] for name in self.in_features])
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)

    def anchors(self, features: dict[str, Tensor], sizes: ImageSizes) -> Anchors:
        feature_sizes = [features[name].shape[-2:] for name in self.in_features]
        return self.anchor_generator(sizes.padded, feature_sizes, features[self.in_features[0]].device)

    def postprocess(self, outputs: tuple[Tensor, Tensor], anchors: Anchors, sizes: ImageSizes,
                    with_scores: bool = False) -> list[Tensor] | list[tuple[Tensor, Tensor]]:
        """Each image's proposals (x1y1x2y2 in its resized pixels), best first; with_scores: each
        as (boxes, objectness probabilities), what an RPN-only model reports."""
        logits, deltas = outputs
        with torch.no_grad():
            boxes = self.box_coder.decode(deltas.detach(), anchors.all[None])[:, :, 0]
            return self.select_proposals(boxes, logits.detach(), [a.shape[0] for a in anchors.levels], sizes,
                                         with_scores)

    def select_proposals(self, boxes: Tensor, logits: Tensor, per_level: list[int], sizes: ImageSizes,
                         with_scores: bool = False) -> list[Tensor] | list[tuple[Tensor, Tensor]]:
        """Top-k per level by objectness, clip, drop tiny and low-scoring boxes, NMS within each
        (image, level), keep each image's best post_nms_top_n.

        The host waits on the device for the NMS calls together (with accel.concurrent_nms) and
        once for the per-image counts, where torchvision's batched_nms and boolean filtering wait
        some thirteen times per image."""
        ks = [min(self.pre_nms_top_n[self.training], count) for count in per_level]
        num_images, total = boxes.shape[0], sum(ks)
        top_idx = torch.cat([logits[:, start:end].topk(k, dim=1).indices + start
                             for (start, end), k in zip(_segments(per_level), ks)], dim=1)  # (B, total)
        scores = torch.sigmoid(torch.gather(logits, 1, top_idx).float())
        boxes = torch.gather(boxes, 1, top_idx[..., None].expand(-1, -1, 4))
        # clip, as clip_boxes_to_image, every image against its own size in two kernels
        boxes = torch.minimum(boxes.clamp(min=0), sizes.limits[:, None].to(boxes.dtype))

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
        kept = self.nms_each([(boxes[start:end], scores[start:end]) for _, start, end in segments],
                             self.nms_thresh, [start for _, start, _ in segments])
        keep = torch.cat(kept) if kept else top_idx.new_zeros(0)
        keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices]  # best first
        kept_images, by_image = torch.sort(keep // total, stable=True)
        keep = keep[by_image]  # then by image, best first within
        per_image = [0] * num_images  # NMS has returned, so each call's output size is known here
        for (image, _, _), k in zip(segments, kept):
            per_image[image] += k.shape[0]
        # the valid boxes among each image's kept ones, counted by a scatter-add: the one wait
        # outside NMS (torch.bincount on CUDA would wait twice more)
        valid_per_image = torch.zeros(num_images, dtype=torch.int64, device=keep.device).scatter_add_(
            0, kept_images, valid[keep].long()).tolist()
        post_nms = self.post_nms_top_n[self.training]
        kept_per_image = [k[:min(n, post_nms)] for k, n in zip(keep.split(per_image), valid_per_image)]
        if with_scores:
            return [(boxes[k], scores[k]) for k in kept_per_image]
        return [boxes[k] for k in kept_per_image]

    def losses(self, outputs: tuple[Tensor, Tensor], anchors: Anchors, gt: PaddedGroundTruth,
               sizes: ImageSizes) -> dict[str, Tensor]:
        """Objectness (binary cross-entropy) over the sampled anchors, box smooth-L1 over the
        foreground ones, both divided by the number sampled. Written as masked sums over all
        anchors rather than by indexing the sampled ones: the same sums, without the host-device
        synchronisations that boolean indexing costs. They never wait for the device, so the
        detector queues them before the proposals' NMS, while a GPU still runs the backbone."""
        logits, deltas = outputs
        anchors = anchors.all
        matched, labels = self.assign(anchors, gt, sizes)
        fg, bg = self.sampler.sample(labels)
        sampled = fg | bg
        num_sampled = sampled.sum().clamp(min=1)

        logits, deltas = logits.float(), deltas.float()  # losses in fp32 under mixed precision
        objectness_loss = F.binary_cross_entropy_with_logits(
            logits, fg.to(logits.dtype), weight=sampled.to(logits.dtype), reduction="sum") / num_sampled
        target_deltas = matched_box_targets(self.box_coder, anchors, gt.boxes, matched, fg)
        box_loss = F.smooth_l1_loss(deltas, target_deltas, beta=self.box_loss_beta, reduction="none").sum(-1)
        box_loss = torch.where(fg, box_loss, 0.0).sum() / num_sampled
        return {"loss_rpn_cls": objectness_loss, "loss_rpn_box": box_loss}

    def assign(self, anchors: Tensor, gt: PaddedGroundTruth, sizes: ImageSizes) -> tuple[Tensor, Tensor]:
        """Each anchor's matched object and label (B, A), as the Matcher gives them, then: anchors
        across the image border ignored (allowed_border), and with ignore_iof, background anchors
        covered by at least that fraction of an ignore region ignored too (SimpleDet's CrowdHuman
        RPN: a crowd of unlabelled people is neither an object nor background)."""
        matched, labels = self.matcher(batched_box_iou(gt.boxes, anchors), gt.valid)
        if self.allowed_border is not None:
            labels = torch.where(self.inside_image(anchors, sizes.resized), labels, IGNORE)
        if self.ignore_iof is not None and gt.ignore_boxes is not None and gt.ignore_boxes.shape[1] > 0:
            covered = batched_box_iof(anchors, gt.ignore_boxes).masked_fill(~gt.ignore_valid[:, None, :], 0.0)
            in_region = covered.amax(dim=2) >= self.ignore_iof
            labels = torch.where((labels == BACKGROUND) & in_region, IGNORE, labels)
        return matched, labels

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
    them all, as torchvision does); no minimum proposal size (torchvision: 1e-3)."""

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
    score_thresh: float = 0.0
    box_loss_beta: float = 1.0 / 9
    allowed_border: float | None = 0.0
    conv_channels: int | None = None  # the 3x3 conv's width; None: as its input (FPN: 256; C4: 512)
    conv_norm: str | None = None  # a norm after the 3x3 conv ("bn", "syncbn", "gn"), as TridentNet from scratch
    # anchors this much covered by an ignore region (the data's crowd boxes) are not background;
    # None: no ignore regions read (SimpleDet's CrowdHuman configs: 0.3, their background IoU)
    ignore_iof: float | None = None

    def build(self, in_channels: int, *, nms_each: NmsEach = nms_each) -> RPN:
        if self.conv_norm is not None and self.conv_norm not in ("bn", "syncbn", "gn"):
            raise UserError(f"model.rpn.conv_norm must be bn, syncbn, gn or None, got {self.conv_norm!r}")
        if self.ignore_iof is not None and not 0 < self.ignore_iof <= 1:
            raise UserError(f"model.rpn.ignore_iof must be a fraction in (0, 1] or None, got {self.ignore_iof!r}")
        anchors = AnchorGenerator(self.anchor_sizes, (self.aspect_ratios,) * len(self.anchor_sizes))
        head = RPNHead(in_channels=in_channels, num_anchors=anchors.num_anchors_per_location[0],
                       conv_channels=self.conv_channels or in_channels, norm=self.conv_norm)
        return RPN(head, anchors, in_features=self.in_features, fg_iou=self.fg_iou, bg_iou=self.bg_iou,
                   batch_size_per_image=self.batch_size_per_image, positive_fraction=self.positive_fraction,
                   pre_nms_top_n_train=self.pre_nms_top_n_train, pre_nms_top_n_test=self.pre_nms_top_n_test,
                   post_nms_top_n_train=self.post_nms_top_n_train, post_nms_top_n_test=self.post_nms_top_n_test,
                   nms_thresh=self.nms_thresh, min_size=self.min_size, score_thresh=self.score_thresh,
                   box_loss_beta=self.box_loss_beta, allowed_border=self.allowed_border,
                   ignore_iof=self.ignore_iof, nms_each=nms_each)


def _segments(counts: list[int]) -> list[tuple[int, int]]:
    """[start, end) of consecutive runs of the given lengths."""
    ends = [sum(counts[:i + 1]) for i in range(len(counts))]
    return [(end - count, end) for end, count in zip(ends, counts)]
