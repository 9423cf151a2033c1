"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py)."""

from simpledet.weights.rename import RenameRule

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = ()
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
