"""Learning-rate schedule: linear warmup, then step decay (SimpleDet's and Detectron's 1x/2x)."""

from bisect import bisect_right


def lr_factor(iteration: int, warmup_iters: int, warmup_factor: float, steps: tuple[int, ...],
              gamma: float) -> float:
    """Multiplier of the base learning rate at `iteration` (0-based).

    Warmup ramps linearly from warmup_factor to 1 over warmup_iters; after each step in `steps`
    the rate is multiplied by gamma. A pure function of the iteration, so a resumed run needs no
    scheduler state beyond the iteration itself.
    """
    factor = gamma ** bisect_right(steps, iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def scaled_lr(base_lr: float, reference_batch: int, total_batch: int) -> float:
    """Linear scaling rule (Goyal et al. 2017): the learning rate grows with the total batch."""
    return base_lr * total_batch / reference_batch
