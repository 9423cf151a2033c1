"""Every family refuses a bad image or target with a TypeError or ValueError that names it, before
any layer runs; valid inputs and images without boxes still train."""

import pytest
import torch

from simpledet import build_model, load_config
from simpledet.structures.input_checks import check_values

from .conftest import REPO

SMALL = ["model.num_classes=5", "model.backbone.pretrained=None", "model.input.min_size=(64,)",
         "model.input.max_size=64", "model.input.test_min_size=64", "model.input.test_max_size=64"]
FEW_PROPOSALS = ["model.rpn.post_nms_top_n_train=16", "model.rpn.post_nms_top_n_test=16"]
SLIM_R50 = ["model.backbone.base_width=16", *FEW_PROPOSALS]  # bottleneck families, built and run quicker

# one small config per family in configs/
FAMILIES = {
    "faster_fpn": ("quickstart/faster_r18_fpn_shapes.py", FEW_PROPOSALS),
    "faster_c4": ("quickstart/faster_r18c4_shapes.py", FEW_PROPOSALS),
    "faster_v2c4": ("faster_r50v2c4_c5_256roi_1x.py", SLIM_R50),
    "dcn": ("dcn/faster_dcnv2_r50v1bc4_c5_512roi_1x.py", SLIM_R50),
    "mask": ("quickstart/mask_r18_fpn_shapes.py", FEW_PROPOSALS),
    "cascade_fpn": ("quickstart/cascade_r18_fpn_shapes.py", FEW_PROPOSALS),
    "cascade_c5_red": ("cascade_r50v2_c5_red_1x.py", SLIM_R50),
    "retinanet": ("resnet_v1b/retina_r50v1b_fpn_1x.py", ["model.backbone.depth=18"]),
    "tridentnet": ("quickstart/tridentnet_r18c4_shapes.py", FEW_PROPOSALS),
    "tridentnet_fast": ("resnet_v1b/tridentnet_fast_r50v1bc4_c5_1x.py", ["model.backbone.depth=18", *FEW_PROPOSALS]),
    "fitnet_student": ("kd/retina_r50v1b_fpn_1x_fitnet_g10.py", ["model.backbone.depth=18"]),
    "torchvision_faster": ("torchvision/fasterrcnn_resnet50_fpn.py", SLIM_R50),
    "torchvision_mask": ("torchvision/maskrcnn_resnet50_fpn.py", SLIM_R50),
    "torchvision_retinanet": ("torchvision/retinanet_resnet50_fpn.py", ["model.backbone.base_width=16"]),
}
_models: dict[str, torch.nn.Module] = {}


def family_model(family: str) -> torch.nn.Module:
    if family not in _models:
        torch.manual_seed(0)
        path, extra = FAMILIES[family]
        _models[family] = build_model(load_config(REPO / "configs" / path, SMALL + extra))
    return _models[family]


def image() -> torch.Tensor:
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))


def target(**changes) -> dict:
    t = {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([2]),
         "masks": torch.zeros(1, 64, 64, dtype=torch.uint8)}
    t["masks"][0, 6:50, 4:40] = 1
    t.update(changes)
    return t


# name: (training?, images, targets, error type, words the message must hold)
BAD_INPUTS = {
    "label beyond num_classes": (True, [image()], [target(labels=torch.tensor([200]))], ValueError,
                                 ["target 0", "box 0", "label 200", "1..5"]),
    "label 0 (background)": (True, [image()], [target(labels=torch.tensor([0]))], ValueError,
                             ["target 0", "label 0", "background", "0-based"]),
    "boxes [N, 5]": (True, [image()], [target(boxes=torch.tensor([[4.0, 6.0, 40.0, 50.0, 1.0]]))], ValueError,
                     ["target 0", "boxes", "[1, 5]", "[N, 4]"]),
    "NaN in a box": (True, [image()], [target(boxes=torch.tensor([[4.0, float("nan"), 40.0, 50.0]]))], ValueError,
                     ["target 0", "box 0", "nan", "finite"]),
    "x2 < x1": (True, [image()], [target(boxes=torch.tensor([[40.0, 6.0, 4.0, 50.0]]))], ValueError,
                ["target 0", "box 0", "[40, 6, 4, 50]", "x2 > x1"]),
    "2 labels for 1 box": (True, [image()], [target(labels=torch.tensor([1, 2]))], ValueError,
                           ["target 0", "labels", "[2]", "1 box", "one label per box"]),
    "0 targets for 1 image": (True, [image()], [], ValueError, ["1 image", "0 target", "one target per image"]),
    "no targets in training": (True, [image()], None, ValueError, ["targets are needed"]),
    "1-channel image (eval)": (False, [torch.rand(1, 64, 64)], None, ValueError, ["image 0", "[1, 64, 64]", "3 RGB"]),
    "HWC image (eval)": (False, [torch.rand(64, 64, 3)], None, ValueError,
                         ["image 0", "[64, 64, 3]", "channels last", "permute(2, 0, 1)"]),
    "HWC image (train)": (True, [torch.rand(64, 64, 3)], [target()], ValueError, ["image 0", "channels last"]),
    "uint8 image": (False, [(image() * 255).to(torch.uint8)], None, TypeError, ["image 0", "torch.uint8", "/ 255"]),
    "0-255 float image": (True, [image() * 255], [target()], ValueError, ["image 0", "[0, 1]", "divide by 255"]),
    "empty image": (False, [torch.rand(3, 0, 64)], None, ValueError, ["image 0", "empty", "[3, 0, 64]"]),
    "one image, not a list": (False, image(), None, TypeError, ["list", "[3, 64, 64]", "[image]"]),
    "int boxes": (True, [image()], [target(boxes=torch.tensor([[4, 6, 40, 50]]))], TypeError,
                  ["target 0", "boxes", "torch.int64", "float"]),
    "int32 labels": (True, [image()], [target(labels=torch.tensor([2], dtype=torch.int32))], TypeError,
                     ["target 0", "labels", "torch.int32", "int64"]),
    "no labels key": (True, [image()], [{"boxes": target()["boxes"], "masks": target()["masks"]}], ValueError,
                      ["target 0", "'labels'"]),
    "second image's bad box": (True, [image(), image()], [target(), target(boxes=torch.tensor([[1.0, 1, 2, 2],
                                                                                              [5.0, 9, 5, 20]]),
                                                                           labels=torch.tensor([1, 1]),
                                                                           masks=torch.zeros(2, 64, 64))],
                               ValueError, ["target 1", "box 1", "[5, 9, 5, 20]"]),
}
MASK_FAMILIES = {"mask", "torchvision_mask"}
BAD_MASKS = {
    "masks count": ([target(masks=torch.zeros(2, 64, 64))], ["target 0", "masks", "[2, 64, 64]", "[1, 64, 64]"]),
    "masks size": ([target(masks=torch.zeros(1, 32, 64))], ["target 0", "masks", "[1, 32, 64]", "image's pixels"]),
    "no masks": ([{"boxes": target()["boxes"], "labels": target()["labels"]}], ["target 0", "'masks'"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_refuses_bad_input(family, case):
    training, images, targets, error, words = BAD_INPUTS[case]
    model = family_model(family).train(training)
    with pytest.raises(error) as refused:
        model(images, targets)
    for word in words:
        assert word in str(refused.value), (word, str(refused.value))


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
@pytest.mark.parametrize("family", sorted(MASK_FAMILIES))
def test_mask_family_refuses_bad_masks(family, case):
    targets, words = BAD_MASKS[case]
    with pytest.raises(ValueError) as refused:
        family_model(family).train()([image()], targets)
    for word in words:
        assert word in str(refused.value), (word, str(refused.value))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_trains_and_predicts_on_valid_input(family):
    """Valid targets, one image without boxes among them, pass the checks and train; then predict."""
    model = family_model(family).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 64, 64, dtype=torch.uint8)}
    torch.manual_seed(0)
    losses = model([image(), image()], [target(), empty])
    assert losses and all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        (det,) = model.eval()([image()])
    assert det["boxes"].shape[1] == 4 and len(det["labels"]) == len(det["scores"])


def test_value_checks_can_be_left_to_the_caller():
    """With check_input_values off (the trainer checks its targets on the CPU itself), the model
    checks shapes and types only: no value is read back from the device."""
    model = family_model("faster_fpn").train()
    model.check_input_values = False
    try:
        losses = model([image()], [target(labels=torch.tensor([0]))])  # not caught: the caller's job
        assert all(torch.isfinite(v) for v in losses.values())
        with pytest.raises(ValueError, match="boxes have shape"):
            model([image()], [target(boxes=torch.zeros(1, 5))])
    finally:
        model.check_input_values = True


def test_named_targets():
    """The trainer's names replace "target i" so that a bad record is found in its file."""
    with pytest.raises(ValueError, match=r"^train\.json: image id 7: box 0 has label 0"):
        check_values((), [target(labels=torch.tensor([0]))], 5, names=["train.json: image id 7"])


def test_pixels_a_bicubic_resize_overshoots_are_accepted():
    check_values([image().clamp(0.2, 0.8) * 1.25 - 0.005], None, 5)  # [0.245, 0.995] shifted by 0.005
    check_values([torch.full((3, 4, 4), 1.005)], None, 5)
    with pytest.raises(ValueError, match="normalisation happens inside the model"):
        check_values([image() - 0.5], None, 5)


def test_trainer_checks_targets_on_the_cpu_and_names_their_record(shapes_dir):
    """The trainer checks each batch's targets before they move (the model's value checks are off,
    so a GPU step never waits for them); a bad one is named by its annotation file and image id."""
    from simpledet.engine.trainer import Trainer
    from simpledet.errors import UserError

    from .helpers import small_config

    trainer = Trainer(small_config(shapes_dir, "model.backbone.pretrained=None"), shapes_dir / "run")
    assert trainer.model.check_input_values is False
    images, targets = [image()], [{**target(), "image_id": 7}]
    moved_images, moved = trainer._to_device(images, targets)
    assert torch.equal(moved_images[0], images[0]) and torch.equal(moved[0]["labels"], targets[0]["labels"])
    with pytest.raises(UserError, match=r"train\.json: image id 7: box 0 is \[40, 6, 4, 50\]"):
        trainer._to_device(images, [{**target(boxes=torch.tensor([[40.0, 6.0, 4.0, 50.0]])), "image_id": 7}])


def test_category_id_0_as_a_label_is_refused_at_load_time(shapes_dir, tmp_path, capsys):
    """With data.contiguous_labels=False the category ids are the labels: an id 0 would train as
    background, so the annotation file is refused before any step."""
    import json

    from simpledet.cli import main

    from .helpers import QUICKSTART, shapes_overrides

    data = json.loads((shapes_dir / "annotations" / "train.json").read_text())
    old = data["categories"][0]["id"]
    data["categories"][0]["id"] = 0
    for ann in data["annotations"]:
        ann["category_id"] = 0 if ann["category_id"] == old else ann["category_id"]
    ann_file = tmp_path / "zero_id.json"
    ann_file.write_text(json.dumps(data))
    code = main(["train", str(QUICKSTART), "--out", str(tmp_path / "run"), *shapes_overrides(shapes_dir),
                 f"data.train.ann_file={ann_file}", "data.contiguous_labels=false", "model.num_classes=10"])
    err = capsys.readouterr().err
    assert code == 2 and "zero_id.json" in err and "category id 0" in err and "Traceback" not in err
