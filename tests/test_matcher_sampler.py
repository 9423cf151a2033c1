import torch

from simpledet.modeling.matcher import BACKGROUND, FOREGROUND, IGNORE, Matcher
from simpledet.modeling.sampler import BalancedSampler

IOU = torch.tensor([[[0.8, 0.4, 0.1, 0.0],
                     [0.2, 0.5, 0.25, 0.0],
                     [0.9, 0.9, 0.9, 0.9]]])  # third row is padding
VALID = torch.tensor([[True, True, False]])


def test_matcher_thresholds_hand_computed():
    matched, labels = Matcher(0.7, 0.3)(IOU, VALID)
    assert matched[0, :3].tolist() == [0, 1, 1]
    assert labels[0].tolist() == [FOREGROUND, IGNORE, BACKGROUND, BACKGROUND]


def test_matcher_low_quality_matches_rescue_each_gt():
    matched, labels = Matcher(0.7, 0.3, allow_low_quality_matches=True)(IOU, VALID)
    # gt 1's best candidate (IoU 0.5) becomes foreground; padding row claims nothing
    assert labels[0].tolist() == [FOREGROUND, FOREGROUND, BACKGROUND, BACKGROUND]
    assert matched[0, 1] == 1


def test_matcher_image_without_boxes_is_all_background():
    iou = torch.zeros(2, 1, 3)
    valid = torch.tensor([[True], [False]])
    iou[0, 0] = torch.tensor([0.9, 0.1, 0.5])
    _, labels = Matcher(0.7, 0.3)(iou, valid)
    assert labels[0].tolist() == [FOREGROUND, BACKGROUND, IGNORE]
    assert labels[1].tolist() == [BACKGROUND] * 3


def test_sampler_respects_fraction_and_sets():
    torch.manual_seed(0)
    labels = torch.full((2, 200), IGNORE)
    labels[0, :10] = FOREGROUND
    labels[0, 10:110] = BACKGROUND
    labels[1, :2] = FOREGROUND
    labels[1, 2:12] = BACKGROUND
    fg, bg = BalancedSampler(20, 0.25).sample(labels)
    assert fg[0].sum() == 5 and bg[0].sum() == 15
    assert fg[1].sum() == 2 and bg[1].sum() == 10  # not enough background to fill 18
    assert (labels[fg] == FOREGROUND).all() and (labels[bg] == BACKGROUND).all()
    assert not (fg & bg).any()


def test_sampler_is_random_but_seeded():
    labels = torch.full((1, 1000), BACKGROUND)
    labels[0, :500] = FOREGROUND
    torch.manual_seed(3)
    a = BalancedSampler(64, 0.5).sample(labels)[0]
    torch.manual_seed(3)
    b = BalancedSampler(64, 0.5).sample(labels)[0]
    torch.manual_seed(4)
    c = BalancedSampler(64, 0.5).sample(labels)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pad_boxes_and_labels_by_hand():
    """Per-image boxes padded into one (B, G, 4) tensor with a validity mask; labels alike."""
    from simpledet.structures.ground_truth import pad_boxes, pad_labels

    boxes = [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.zeros(0, 4),
             torch.tensor([[5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]])]
    padded, valid = pad_boxes(boxes, torch.device("cpu"))
    assert padded.shape == (3, 2, 4) and padded.dtype == torch.float32
    assert torch.equal(padded[0, 0], boxes[0][0]) and torch.equal(padded[2], boxes[2])
    assert not padded[0, 1].any() and not padded[1].any()
    assert valid.tolist() == [[True, False], [False, False], [True, True]]
    labels = pad_labels([torch.tensor([3]), torch.zeros(0, dtype=torch.int64), torch.tensor([1, 2])], 2,
                        torch.device("cpu"))
    assert labels.tolist() == [[3, 0], [0, 0], [1, 2]]
    assert pad_labels([torch.tensor([4])], 3, torch.device("cpu")).tolist() == [[4, 0, 0]]
    empty, none_valid = pad_boxes([torch.zeros(0, 4), torch.zeros(0, 4)], torch.device("cpu"))
    assert empty.shape == (2, 0, 4) and none_valid.shape == (2, 0)


def pick_in_turn(labels: torch.Tensor, batch: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler written the plain way: the foreground drawn, then the background."""
    def pick(mask, count, k):
        priority = torch.rand(mask.shape).masked_fill(~mask, -1.0)
        values, index = priority.topk(min(k, mask.shape[1]), dim=1)
        chosen = (torch.arange(index.shape[1])[None] < count[:, None]) & (values >= 0)
        return torch.zeros_like(mask).scatter_(1, index, chosen)

    is_fg, is_bg = labels == FOREGROUND, labels == BACKGROUND
    max_fg = int(batch * fraction)
    num_fg = is_fg.sum(1).clamp(max=max_fg)
    return pick(is_fg, num_fg, max_fg), pick(is_bg, torch.minimum(is_bg.sum(1), batch - num_fg), batch)


def test_sampler_draws_both_kinds_at_once_as_in_turn():
    """One draw for foreground and background picks, on the CPU, what drawing them in turn picks:
    the same candidates, from the same seed, with images short of either kind."""
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(-1, 2, (3, 900), generator=g)
    labels[1, 100:] = IGNORE  # few of either kind
    labels[2][labels[2] == FOREGROUND] = BACKGROUND  # no foreground
    for batch, fraction in ((512, 0.25), (256, 0.5), (2000, 0.25)):
        torch.manual_seed(7)
        fg, bg = BalancedSampler(batch, fraction).sample(labels)
        torch.manual_seed(7)
        expected_fg, expected_bg = pick_in_turn(labels, batch, fraction)
        assert torch.equal(fg, expected_fg) and torch.equal(bg, expected_bg), (batch, fraction)
        assert fg[0].sum() == min(int(batch * fraction), (labels[0] == FOREGROUND).sum())
        assert 0 < fg[1].sum() < 60 and fg[2].sum() == 0
        assert (fg.sum(1) + bg.sum(1) <= batch).all() and not (fg & bg).any()


def test_sampler_without_candidates():
    fg, bg = BalancedSampler(16, 0.5).sample(torch.zeros(2, 0, dtype=torch.int64))
    assert fg.shape == bg.shape == (2, 0) and fg.dtype == torch.bool


def test_select_keeps_the_highest_priorities_of_each_kind_by_hand():
    """The selection given the draws: each kind's highest priorities, as many as the kind gets."""
    labels = torch.tensor([[FOREGROUND, FOREGROUND, FOREGROUND, BACKGROUND, BACKGROUND, BACKGROUND, IGNORE]])
    priority = torch.tensor([[[0.1, 0.9, 0.5, 0.2, 0.3, 0.8, 0.99]],    # kind 0: foreground
                             [[0.4, 0.2, 0.6, 0.7, 0.1, 0.9, 0.95]]])   # kind 1: background
    fg, bg = BalancedSampler(4, 0.5).select(labels, priority)  # 2 foreground, then 2 background
    assert fg.tolist() == [[False, True, True, False, False, False, False]]
    assert bg.tolist() == [[False, False, False, True, False, True, False]]
