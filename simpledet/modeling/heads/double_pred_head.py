"""The double-prediction R-CNN stage (SimpleDet's models/crowdhuman DoublePredBboxHead, CrowdDet's
"multiple instance prediction"): every proposal predicts two boxes, each with its class scores,
so that two heavily overlapping people covered by one proposal can both be found.

- Heads: the 2fc features feed two predictors (SimpleDet's `bbox_cls_logit1/2`, `bbox_reg_delta1/2`).
- Targets (bbox_sec_target.py): a sampled proposal's first target is the ground truth it overlaps
  most (the usual R-CNN match); its second is the one it overlaps second most, with the first's
  class when that IoU is >= fg_iou too, else background.
- Loss (EMD): per RoI, the classification cross-entropy plus smooth-L1 (the target class's deltas,
  foreground only) of both predictions, for the two ways of pairing predictions with targets;
  the smaller sum counts, averaged over all sampled RoIs (background included, as SimpleDet's
  `mean`).
- Refine (the _refine config): each prediction (foreground deltas and probabilities, tiled
  `repeat` times) joins the 2fc feature through one shared fc layer (`bbox_fc3`) and two new
  predictors; its EMD loss adds to the first, and at test time its outputs replace them.
- Test: both predictions of every proposal, decoded and soft-maxed, are candidates; after the score
  threshold, set NMS (simpledet/modeling/set_nms.py; the two boxes of one proposal do not suppress
  each other) or plain NMS, as the config says, per class; then the top detections_per_img.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from simpledet.errors import UserError
from simpledet.modeling.box_coder import matched_box_targets
from simpledet.modeling.box_iou import batched_box_iou
from simpledet.modeling.heads.box_head import BoxPredictor
from simpledet.modeling.heads.roi_heads import RoIHeads, RoIHeadsConfig, RunHead, SampledRoIs, run_head_directly
from simpledet.modeling.set_nms import set_nms
from simpledet.structures.ground_truth import PaddedGroundTruth, pad_boxes
from simpledet.structures.image_sizes import ImageSizes

Prediction = tuple[Tensor, Tensor]  # (class logits, box deltas)


@dataclass
class DoubleSampledRoIs(SampledRoIs):
    """SampledRoIs with each RoI's second target."""

    classes2: Tensor  # (R,) 0 where the second-best overlap is below fg_iou
    box_targets2: Tensor  # (R, 4)


class RefineModule(nn.Module):
    """SimpleDet's refine: a prediction, tiled, joins the RoI feature through a shared fc layer,
    then its own predictor (first or second)."""

    def __init__(self, *, feature_size: int, num_classes: int, class_agnostic: bool, repeat: int) -> None:
        super().__init__()
        cue = 4 * (1 if class_agnostic else num_classes) + num_classes
        self.repeat = repeat
        self.fc = nn.Linear(feature_size + cue * repeat, feature_size)
        nn.init.kaiming_uniform_(self.fc.weight, a=1)  # SimpleDet's Xavier(in, uniform, 3)
        nn.init.zeros_(self.fc.bias)
        self.predictors = nn.ModuleList(
            BoxPredictor(in_features=feature_size, num_classes=num_classes, class_agnostic=class_agnostic)
            for _ in range(2))

    def forward(self, feature: Tensor, first: Prediction, second: Prediction) -> tuple[Prediction, Prediction]:
        refined = []
        for (logits, deltas), predictor in zip((first, second), self.predictors):
            foreground_deltas = deltas if deltas.shape[1] == 4 else deltas[:, 4:]
            cue = torch.cat([foreground_deltas, F.softmax(logits, dim=1)[:, 1:]], dim=1).repeat(1, self.repeat)
            refined.append(predictor(F.relu(self.fc(torch.cat([feature, cue], dim=1)))))
        return refined[0], refined[1]


def _prediction_loss(prediction: Prediction, classes: Tensor, box_targets: Tensor, beta: float) -> Tensor:
    """Per RoI: cross-entropy plus the smooth-L1 of the target class's deltas (foreground only)."""
    logits, deltas = prediction[0].float(), prediction[1].float()
    deltas = deltas.view(deltas.shape[0], -1, 4)
    column = torch.zeros_like(classes) if deltas.shape[1] == 1 else classes
    picked = deltas[torch.arange(deltas.shape[0], device=deltas.device), column]
    box = F.smooth_l1_loss(picked, box_targets, beta=beta, reduction="none").sum(1)
    return F.cross_entropy(logits, classes, reduction="none") + torch.where(classes > 0, box, 0.0)


def emd_loss(first: Prediction, second: Prediction, sampled: DoubleSampledRoIs, beta: float) -> Tensor:
    """The smaller of the two pairings of predictions with targets, per RoI, averaged over RoIs."""
    targets1, targets2 = (sampled.classes, sampled.box_targets), (sampled.classes2, sampled.box_targets2)
    straight = _prediction_loss(first, *targets1, beta) + _prediction_loss(second, *targets2, beta)
    swapped = _prediction_loss(first, *targets2, beta) + _prediction_loss(second, *targets1, beta)
    return torch.minimum(straight, swapped).mean()


def second_targets(iou: Tensor, gt_valid: Tensor, first_classes: Tensor, fg_iou: float) -> tuple[Tensor, Tensor]:
    """(second ground truth index (B, P), its class (B, P)) from iou (B, G, P): the ground truth of
    the second-highest overlap, with the first's class where that overlap is >= fg_iou, else 0."""
    iou = iou.masked_fill(~gt_valid[..., None], -1.0)
    if iou.shape[1] < 2:  # one ground truth per image at most: no second
        iou = torch.cat([iou, torch.full_like(iou, -1.0)], dim=1)
    top = iou.topk(2, dim=1)
    second_iou, second = top.values[:, 1], top.indices[:, 1]
    second = second.clamp(max=gt_valid.shape[1] - 1)  # a padding column: its class is 0 below
    return second, torch.where(second_iou >= fg_iou, first_classes, 0)


class DoublePredRoIHeads(RoIHeads):
    """An R-CNN stage with two predictions per proposal (see the module doc)."""

    def __init__(self, *args, second_predictor: BoxPredictor, refine: RefineModule | None, use_set_nms: bool,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.second_predictor = second_predictor
        self.refiner = refine
        self.use_set_nms = use_set_nms

    def predict_both(self, pooled: Tensor) -> tuple[Prediction, Prediction, tuple[Prediction, Prediction] | None]:
        feature = self.run_head(self.box_head, pooled)
        first, second = self.box_predictor(feature), self.second_predictor(feature)
        refined = self.refiner(feature, first, second) if self.refiner is not None else None
        return first, second, refined

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], sizes: ImageSizes,
                targets: list[dict] | None = None, gt: PaddedGroundTruth | None = None
                ) -> tuple[list[dict], dict[str, Tensor]]:
        if not self.training:
            first, second, refined = self.predict_both(self.pooler(features, proposals, sizes.resized))
            if refined is not None:
                first, second = refined
            return self.postprocess_double(first, second, proposals, sizes), {}
        if targets is None:
            raise ValueError("targets are needed in training mode")
        sampled = self.sample_double(proposals, targets, gt)
        first, second, refined = self.predict_both(self.pooler(features, sampled.boxes, sizes.resized))
        losses = {"loss_emd": emd_loss(first, second, sampled, self.box_loss_beta)}
        if refined is not None:
            losses["loss_refine_emd"] = emd_loss(*refined, sampled, self.box_loss_beta)
        return [], losses

    @torch.no_grad()
    def sample_double(self, proposals: list[Tensor], targets: list[dict], gt: PaddedGroundTruth | None = None
                      ) -> DoubleSampledRoIs:
        """sample_proposals' RoIs with their second targets."""
        device = proposals[0].device
        gt = gt if gt is not None else PaddedGroundTruth.of(targets, device)
        proposals = [torch.cat([p, t["boxes"].to(device)]) for p, t in zip(proposals, targets)]
        boxes, box_valid = pad_boxes(proposals, device)
        priority = self.sampler.draw_priority(tuple(box_valid.shape), device)
        sampled, per_image, matched, classes, box_targets = self.match_and_sample(
            gt.boxes, gt.valid, gt.labels, boxes, box_valid, priority)
        second, classes2 = second_targets(batched_box_iou(gt.boxes, boxes), gt.valid, classes, self.matcher.fg_iou)
        box_targets2 = matched_box_targets(self.box_coder, boxes, gt.boxes, second, classes2 > 0)
        per_image = per_image.tolist()
        image, candidate = torch.nonzero_static(sampled, size=sum(per_image)).unbind(1)
        return DoubleSampledRoIs(list(boxes[image, candidate].split(per_image)), classes[image, candidate],
                                 box_targets[image, candidate], matched[image, candidate],
                                 classes2[image, candidate], box_targets2[image, candidate])

    @torch.no_grad()
    def postprocess_double(self, first: Prediction, second: Prediction, proposals: list[Tensor],
                           sizes: ImageSizes) -> list[dict]:
        """Both predictions of every proposal as candidates; set NMS (or NMS) per class; top-k."""
        counts = [p.shape[0] for p in proposals]
        reference = torch.cat(proposals)
        scores, boxes = [], []
        for logits, deltas in (first, second):
            scores.append(F.softmax(logits.float(), -1).split(counts))
            decoded = self.box_coder.decode(deltas.float(), reference)  # (R, K or 1, 4)
            boxes.append(decoded.expand(-1, logits.shape[-1], -1).split(counts) if decoded.shape[1] == 1
                         else decoded.split(counts))
        results = []
        for i, size in enumerate(sizes.resized):
            img_scores = torch.cat([scores[0][i], scores[1][i]])[:, 1:]  # (2R, K): the background column off
            img_boxes = clip_boxes_to_image(torch.cat([boxes[0][i], boxes[1][i]]), size)[:, 1:]
            proposal = torch.arange(counts[i], device=reference.device).repeat(2)  # the set of each row
            num_classes = img_scores.shape[1]
            labels = torch.arange(1, num_classes + 1, device=reference.device).expand_as(img_scores).reshape(-1)
            sets = proposal[:, None].expand(-1, num_classes).reshape(-1)
            img_scores, img_boxes = img_scores.reshape(-1), img_boxes.reshape(-1, 4)
            keep = torch.where(img_scores > self.score_thresh)[0]
            keep = keep[remove_small_boxes(img_boxes[keep], min_size=1e-2)]
            img_boxes, img_scores, labels, sets = img_boxes[keep], img_scores[keep], labels[keep], sets[keep]
            if not self.use_set_nms:  # every candidate its own set: plain NMS
                sets = torch.arange(len(keep), device=reference.device)
            # classes apart: offset each class's boxes beyond the others' (torchvision's batched_nms)
            offsets = labels.to(img_boxes) * (img_boxes.max() + 1 if len(keep) else 0)
            kept = set_nms(img_boxes + offsets[:, None], img_scores, sets, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": img_boxes[kept], "scores": img_scores[kept], "labels": labels[kept]})
        return results


@dataclass
class DoublePredRoIHeadsConfig(RoIHeadsConfig):
    """RoIHeadsConfig plus the second prediction. refine: SimpleDet's refine module (repeat: how many
    times each prediction is tiled into its input); set_nms: set NMS at test time (SimpleDet's
    _refine config), else plain NMS (its doublepred config)."""

    refine: bool = False
    refine_repeat: int = 4
    set_nms: bool = True

    def build(self, in_channels: int, num_classes: int, *, run_head: RunHead = run_head_directly,
              **parts: nn.Module) -> DoublePredRoIHeads:
        if self.refine_repeat < 1:
            raise UserError(f"model.roi_heads.refine_repeat must be 1 or more, got {self.refine_repeat}")
        feature_size = self.box_head.fc_dim  # the 2fc head's output, which both predictors read
        second = BoxPredictor(in_features=feature_size, num_classes=num_classes, class_agnostic=self.class_agnostic)
        refine = RefineModule(feature_size=feature_size, num_classes=num_classes, class_agnostic=self.class_agnostic,
                              repeat=self.refine_repeat) if self.refine else None
        return super().build(in_channels, num_classes, run_head=run_head, heads=DoublePredRoIHeads,
                             second_predictor=second, refine=refine, use_set_nms=self.set_nms, **parts)
