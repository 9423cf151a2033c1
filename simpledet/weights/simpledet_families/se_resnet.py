"""SimpleDet's names for the parts of this family -> ours (see simpledet/weights/simpledet_checkpoint.py).

SE-ResNet v1b (models/se/builder.py): each unit's excitation after its 3x3 conv,
`stageN_unitM_se2_fc1` / `_fc2` (bias-free 1x1 convs) -> backbone.layerN.{M-1}.se.fc1 / fc2
(backbones/se_resnet.py); MaskRcnnSe4convHead's `mask_fcn_se{i}_fc1` / `_fc2` ->
roi_heads.mask_head.se.{i-1}.fc1 / fc2. The units' convs and norms keep ResNet's names."""

from simpledet.weights.rename import RenameRule

# SimpleDet name without its _weight/_bias/_gamma/... suffix -> our module path
RULES: tuple[RenameRule, ...] = (
    RenameRule(r"stage(\d)_unit(\d+)_se2_(fc[12])$", lambda m: f"backbone.layer{m[1]}.{int(m[2]) - 1}.se.{m[3]}"),
    RenameRule(r"mask_fcn_se(\d+)_(fc[12])$", lambda m: f"roi_heads.mask_head.se.{int(m[1]) - 1}.{m[2]}"),
)
# (pattern on the full SimpleDet name, why it is skipped)
SKIP: tuple[tuple[str, str], ...] = ()
# our keys (by suffix) that SimpleDet's convs have no array for: set to zero by the converter
NO_BIAS: tuple[str, ...] = ()
