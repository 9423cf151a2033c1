"""One form for every weight-name conversion: a table of rules, each a pattern on another
framework's parameter name and where the matched part goes in ours (torchvision's detection
checkpoints, SimpleDet's MXNet backbones and zoo checkpoints)."""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def same_layout(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return array


@dataclass(frozen=True)
class RenameRule:
    """pattern: a regular expression matched at the start of a source name; target: our name for
    the matched part, with re's group references (r"layers.\\1"), or a function of the match; the
    rest of the source name is kept. layout(array, our_shape): how the array's layout changes on
    the way (SimpleDet's zoo checkpoints; most rules keep it)."""

    pattern: str
    target: str | Callable[[re.Match], str]
    layout: Callable[[np.ndarray, tuple[int, ...]], np.ndarray] = same_layout


def rename(name: str, rules: Sequence[RenameRule]) -> tuple[str, RenameRule] | None:
    """Our name for `name` by the first rule that matches it, with that rule; None if none does."""
    for rule in rules:
        match = re.match(rule.pattern, name)
        if match:
            head = match.expand(rule.target) if isinstance(rule.target, str) else rule.target(match)
            return head + name[match.end():], rule
    return None
