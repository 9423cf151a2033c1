"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

TridentNet with a BatchNorm per branch (branch_bn_shared = False; models/tridentnet/resnet_v2.py):
`stage3_unit{M}_bn{K}_branch{B}` -> branch 0: the block's own norm, backbone.body.layer3.{M-1}.bn{K};
branch B > 0: backbone.branch_norms.branch{B}.{M-1}.bn{K} (backbones/trident.py). The shared convs and
the deformable blocks' offset convs (`stage3_unit{M}_conv2_offset`) keep ResNet's names."""

from simpledet.weights.rename import RenameRule


def _branch_norm(m) -> str:
    unit, norm, branch = int(m[2]) - 1, m[3], int(m[4])
    if branch == 0:
        return f"backbone.body.layer{m[1]}.{unit}.{norm}"
    return f"backbone.branch_norms.branch{branch}.{unit}.{norm}"


# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"stage(\d)_unit(\d+)_(bn\d|sc_bn)_branch(\d+)$", _branch_norm),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
