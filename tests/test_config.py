
import pytest

from simpledet import load_config
from simpledet.config import Config, from_dict, save_config
from simpledet.errors import UserError

from .conftest import REPO

COMMAND_LINE_KEYS = ["train.max_iter", "train.checkpoint_every", "train.batch_size", "train.lr", "train.seed",
              "data.num_workers", "data.train.ann_file", "data.train.image_dir", "data.val.ann_file",
              "data.val.image_dir", "model.num_classes"]


def test_documented_keys_exist_and_parse():
    values = ["7", "3", "4", "0.5", "11", "0", "a.json", "imgs", "b.json", "vimgs", "12"]
    cfg = load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_1x.py",
                      [f"{k}={v}" for k, v in zip(COMMAND_LINE_KEYS, values)])
    assert cfg.train.max_iter == 7 and cfg.train.lr == 0.5 and cfg.model.num_classes == 12
    assert cfg.data.train.ann_file == "a.json" and cfg.data.val.image_dir == "vimgs"


def test_tuple_optional_and_bool_overrides():
    cfg = load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_1x.py",
                      ["train.steps=(10, 20)", "train.clip_grad_norm=5", "data.flip=false",
                       "model.input.min_size=(640, 800)"])
    assert cfg.train.steps == (10, 20) and cfg.train.clip_grad_norm == 5.0 and cfg.data.flip is False
    assert cfg.model.input.min_size == (640, 800)
    cfg = load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_1x.py", ["train.clip_grad_norm=None"])
    assert cfg.train.clip_grad_norm is None


@pytest.mark.parametrize("key, nearest", [("train.max_iters", "train.max_iter"),
                                          ("model.num_class", "model.num_classes"),
                                          ("data.trian.ann_file", "data.train.ann_file")])
def test_unknown_key_names_nearest(key, nearest):
    with pytest.raises(UserError, match=nearest.replace(".", r"\.")):
        load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_1x.py", [f"{key}=1"])


def test_json_round_trip(tmp_path):
    cfg = load_config(REPO / "configs/resnet_v1b/faster_r50v1b_fpn_1x.py", ["train.steps=(5, 9)"])
    save_config(cfg, tmp_path / "config.json")
    again = load_config(tmp_path / "config.json")
    assert again == cfg and isinstance(again, Config)
    assert again.train.steps == (5, 9) and isinstance(again.model.rpn.anchor_sizes, tuple)


def test_from_dict_refuses_foreign_classes():
    with pytest.raises(ValueError):
        from_dict({"_type": "os:system"})


def test_config_without_config_variable(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(UserError, match="config = Config"):
        load_config(path)


def test_config_file_that_raises(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UserError, match="broken.py.*boom"):
        load_config(path)


def test_a_backbone_the_field_type_does_not_name_builds_and_round_trips(tmp_path):
    """A detector config takes any backbone config (RetinaNetConfig's field names ResNetConfig
    alone): the parts read its channels from output_shape(), and the saved config rebuilds it
    from its own class name. So a new backbone needs no edit in the detector configs."""
    from simpledet import build_model
    from simpledet.modeling.backbones.resnet_v2 import ResNetV2Config

    cfg = load_config(REPO / "configs/resnet_v1b/retina_r50v1b_fpn_1x.py")
    cfg.model.backbone = ResNetV2Config(depth=50, base_width=16, out_features=("c3", "c4", "c5"))
    model = build_model(cfg)
    assert model.neck.lateral_convs[0].in_channels == 128  # v2's c3 at base width 16
    save_config(cfg, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == cfg
