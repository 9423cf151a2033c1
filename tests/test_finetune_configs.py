"""SimpleDet's VOC configs: VOC 2007 + 2012 read in their own layout, and the fine-tuning config
that starts the whole detector from a COCO Mask R-CNN with the class-specific layers made afresh."""

import torch
from safetensors.torch import save_file

from simpledet.config import load_config
from simpledet.weights.init_from import init_from

from .conftest import REPO

VOC07 = REPO / "configs/finetune/faster_r50v1_fpn_voc07_1x.py"
FINETUNE = REPO / "configs/finetune/faster_r50v1_fpn_voc07_finetune_1x.py"


def test_voc_configs_read_voc_2007_and_2012():
    for path in (VOC07, FINETUNE):
        cfg = load_config(path)
        assert cfg.model.num_classes == 20 and not cfg.model.roi_heads.class_agnostic
        assert (cfg.data.train.format, cfg.data.train.split) == ("voc", "trainval")
        assert cfg.data.train.extra_sets == (("data/VOCdevkit/VOC2012", "trainval"),)
        assert (cfg.data.val.format, cfg.data.val.split) == ("voc", "test")
        assert (cfg.model.input.min_size, cfg.model.input.max_size) == ((608,), 992)
    finetune = load_config(FINETUNE)
    assert finetune.train.init_from and finetune.model.backbone.pretrained is None
    assert abs(finetune.train.lr - load_config(VOC07).train.lr / 10) < 1e-12 and finetune.train.steps == ()


def test_finetune_from_coco_mask_rcnn_remakes_only_class_layers(tmp_path):
    """COCO's mask_r50v1_fpn_1x into the VOC model, at a tenth of the width (the same names and the
    same layout rules): everything but the 81-way classifier and regression and the mask branch
    is copied bit for bit; those two layers keep the fresh model's values."""
    slim = ["model.backbone.base_width=8", "model.neck.out_channels=16",
            "model.roi_heads.box_head.fc_dim=32"]
    torch.manual_seed(0)
    coco = load_config(REPO / "configs/mask_r50v1_fpn_1x.py", slim + ["model.mask_head.conv_dim=8"])
    source = coco.model.build().state_dict()
    save_file({k: v.contiguous() for k, v in source.items()}, tmp_path / "coco.safetensors")
    torch.manual_seed(1)
    voc = load_config(FINETUNE, slim).model.build()
    fresh = {k: v.clone() for k, v in voc.state_dict().items()}
    report = init_from(voc, str(tmp_path / "coco.safetensors"))
    assert sorted(report.shape_differs) == ["roi_heads.box_predictor.bbox_pred.bias",
                                            "roi_heads.box_predictor.bbox_pred.weight",
                                            "roi_heads.box_predictor.cls_score.bias",
                                            "roi_heads.box_predictor.cls_score.weight"]
    assert report.no_place and all(k.startswith("roi_heads.mask_head.") for k in report.no_place)
    state = voc.state_dict()
    for key, value in state.items():
        if key in report.shape_differs:
            assert torch.equal(value, fresh[key]), key
        elif not key.endswith("num_batches_tracked"):
            assert torch.equal(value, source[key]), key
