"""SimpleDet's published results, by config name: the reference our zoo is measured against.

Transcribed from SimpleDet's model-zoo tables (COCO minival2014; memory and speed on 8 GPUs,
SimpleDet's figures, as nvidia-smi showed them). AP is box AP; mask_ap where the row has one.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ZooRow:
    model: str
    backbone: str
    head: str
    schedule: str
    ap: float
    mask_ap: float | None = None
    train_mem: str | None = None  # e.g. "5.9G(4.5G)"
    train_speed: str | None = None  # e.g. "20 img/s on 8X 1080Ti, 2 img/GPU"
    # where the figure is not COCO minival box AP: "test-dev", "CrowdHuman AP; MR 46.72", ...
    note: str | None = None


def _v1b_rows() -> dict[str, ZooRow]:
    rows = {}
    ap = {  # (family, depth, schedule): AP (or (box AP, mask AP))
        ("faster_c4", 50, "1x"): 35.7, ("faster_c4", 50, "2x"): 36.9, ("faster_c4", 101, "1x"): 40.0,
        ("faster_c4", 101, "2x"): 40.5, ("faster_c4", 152, "1x"): 41.3, ("faster_c4", 152, "2x"): 41.8,
        ("faster_fpn", 50, "1x"): 37.2, ("faster_fpn", 50, "2x"): 38.0, ("faster_fpn", 101, "1x"): 39.9,
        ("faster_fpn", 101, "2x"): 40.4, ("faster_fpn", 152, "1x"): 41.5, ("faster_fpn", 152, "2x"): 42.0,
        ("mask", 50, "1x"): (37.8, 34.4), ("mask", 50, "2x"): (38.6, 34.9), ("mask", 101, "1x"): (40.4, 36.3),
        ("mask", 101, "2x"): (41.3, 36.9), ("mask", 152, "1x"): (41.8, 37.4), ("mask", 152, "2x"): (42.8, 38.0),
        ("trident", 50, "1x"): 38.4, ("trident", 50, "2x"): 39.6, ("trident", 101, "1x"): 42.2,
        ("trident", 101, "2x"): 43.0, ("trident", 152, "1x"): 43.7, ("trident", 152, "2x"): 44.4,
        ("trident_fast", 50, "1x"): 37.7, ("trident_fast", 50, "2x"): 39.0, ("trident_fast", 101, "1x"): 41.1,
        ("trident_fast", 101, "2x"): 42.5, ("trident_fast", 152, "1x"): 42.7, ("trident_fast", 152, "2x"): 43.9,
        ("retina", 50, "1x"): 36.6, ("retina", 101, "1x"): 39.2, ("retina", 152, "1x"): 40.4,
    }
    names = {"faster_c4": ("Faster", "faster_r{d}v1bc4_c5_512roi_{s}", "R{d}v1b-C4", "C5-512ROI"),
             "faster_fpn": ("Faster", "faster_r{d}v1b_fpn_{s}", "R{d}v1b-FPN", "2MLP"),
             "mask": ("Mask", "mask_r{d}v1b_fpn_{s}", "R{d}v1b-FPN", "2MLP+4CONV"),
             "trident": ("Trident", "tridentnet_r{d}v1bc4_c5_{s}", "R{d}v1b-C4", "C5-128ROI"),
             "trident_fast": ("TridentFast", "tridentnet_fast_r{d}v1bc4_c5_{s}", "R{d}v1b-C4", "C5-128ROI"),
             "retina": ("Retina", "retina_r{d}v1b_fpn_{s}", "R{d}v1b-FPN", "4Conv")}
    for (family, depth, schedule), value in ap.items():
        model, pattern, backbone, head = names[family]
        box, mask = value if isinstance(value, tuple) else (value, None)
        name = "resnet_v1b/" + pattern.format(d=depth, s=schedule)
        rows[name] = ZooRow(model, backbone.format(d=depth), head, schedule.upper(), box, mask)
    dcn = {"dcn/faster_dcn_r50v1bc4_c5_512roi_1x": ("R50v1b-C4-DCNv1", "1X", 38.8),
           "dcn/faster_dcn_r101v1bc4_c5_512roi_1x": ("R101v1b-C4-DCNv1", "1X", 41.4),
           "dcn/faster_dcnv2_r50v1bc4_c5_512roi_1x": ("R50v1b-C4-DCNv2", "1X", 39.6),
           "dcn/faster_dcnv2_r50v1bc4_c5_512roi_2x": ("R50v1b-C4-DCNv2", "2X", 41.2),
           "dcn/faster_dcnv2_r101v1bc4_c5_512roi_1x": ("R101v1b-C4-DCNv2", "1X", 41.7),
           "dcn/faster_dcnv2_r101v1bc4_c5_512roi_2x": ("R101v1b-C4-DCNv2", "2X", 42.7)}
    for name, (backbone, schedule, box) in dcn.items():
        rows[name] = ZooRow("Faster", backbone, "C5-512ROI", schedule, box)
    kd = {"kd/retina_r50v1b_fpn_1x_fitnet_g10": ("Retina", "4Conv", "R50v1b-FPN-TR152v1b1X", "1X", 38.9),
          "kd/retina_r50v1b_fpn_2x_fitnet_g10": ("Retina", "4Conv", "R50v1b-FPN-TR152v1b1X", "2X", 40.1),
          "kd/faster_r50v1b_fpn_1x_fitnet_g5": ("Faster", "2MLP", "R50v1b-FPN-TR152v1b2X", "1X", 39.9),
          "kd/faster_r50v1b_fpn_2x_fitnet_g5": ("Faster", "2MLP", "R50v1b-FPN-TR152v1b2X", "2X", 40.5)}
    for name, (model, head, backbone, schedule, box) in kd.items():
        rows[name] = ZooRow(model, backbone, head, schedule, box)
    return rows


def _baseline_rows() -> dict[str, ZooRow]:
    """The box and mask baselines table, with SimpleDet's training memory and speed."""
    gpu_1080 = "8X 1080Ti"
    table = [  # name, model, backbone, head, AP, mask AP, memory, img/s, GPUs, images per GPU
        ("faster_r50v1c4_c5_512roi_1x", "Faster", "R50v1-C4", "C5-512ROI", 34.2, None, "5.9G(4.5G)", 20, gpu_1080, 2),
        ("faster_r50v1c4_c5_512roi_1x_fp16", "Faster", "R50v1-C4", "C5-512ROI", 34.4, None, "6.1G", 49, "8X TitanV", 2),
        ("faster_r50v2c4_c5_256roi_1x", "Faster", "R50v2-C4", "C5-256ROI", 32.8, None, "5.1G", 33, gpu_1080, 2),
        ("cascade_r50v2_c5_red_1x", "Cascade", "R50v2-C5", "2MLP", 38.8, None, "5.9G", 25, gpu_1080, 2),
        ("cascade_r50v1_fpn_1x", "Cascade", "R50v1-FPN", "2MLP", 40.3, None, "6.6G", 21, gpu_1080, 2),
        ("faster_r50v1_fpn_1x", "Faster", "R50v1-FPN", "2MLP", 36.5, None, "4.2G(2.6G)", 43, gpu_1080, 2),
        ("mask_r50v1_fpn_1x", "Mask", "R50v1-FPN", "2MLP+4CONV", 37.1, 33.7, "5.7G(3.6G)", 35, gpu_1080, 2),
        ("retina_r50v1_fpn_1x", "Retina", "R50v1-FPN", "4Conv", 35.6, None, "4.7G(2.2G)", 44, gpu_1080, 2),
        ("tridentnet_r50v2c4_c5_1x", "Trident", "R50v2-C4", "C5-128ROI", 37.1, None, "7.0G(5.3G)", 20, gpu_1080, 2),
        ("faster_r101v2c4_c5_256roi_1x", "Faster", "R101v2-C4", "C5-256ROI", 37.6, None, "6.7G", 25, gpu_1080, 2),
        ("faster_r101v2c4_c5_256roi_syncbn_1x", "Faster-SyncBN", "R101v2-C4", "C5-256ROI", 38.6, None, "7.8G", 17,
         gpu_1080, 2),
        ("faster_r101v1c4_c5_512roi_1x", "Faster", "R101v1-C4", "C5-512ROI", 38.3, None, "10.2G", 16, gpu_1080, 2),
        ("faster_r101v1c4_c5_512roi_1x_fp16", "Faster", "R101v1-C4", "C5-512ROI", 38.1, None, "7.0G", 35,
         "8X TitanV", 2),
        ("faster_r101v1_fpn_1x", "Faster", "R101v1-FPN", "2MLP", 38.7, None, "5.3G(3.4G)", 31, gpu_1080, 2),
        ("cascade_r101v2_c5_red_1x", "Cascade", "R101v2-C5", "2MLP", 41.0, None, "7.6G", 22, gpu_1080, 2),
        ("cascade_r101v1_fpn_1x", "Cascade", "R101v1-FPN", "2MLP", 42.3, None, "8.7G", 19, gpu_1080, 2),
        ("tridentnet_r101v2c4_c5_1x", "Trident", "R101v2-C4", "C5-128ROI", 40.6, None, "6.6G", 9, gpu_1080, 1),
        ("tridentnet_r101v2c4_c5_fastapprox_1x", "Trident-Fast", "R101v2-C4", "C5-128ROI", 39.9, None, "6.6G", 9,
         gpu_1080, 1),
        ("retina_r101v1_fpn_1x", "Retina", "R101v1-FPN", "4Conv", 37.8, None, "5.9G(3.0G)", 31, gpu_1080, 2),
    ]
    return {name: ZooRow(model, backbone, head, "1X", ap, mask, mem, f"{speed} img/s on {gpus}, {per_gpu} img/GPU")
            for name, model, backbone, head, ap, mask, mem, speed, gpus, per_gpu in table}


def _family_rows() -> dict[str, ZooRow]:
    """The families' own READMEs in SimpleDet's models/ (and config/int8/README.md): box AP on COCO
    minival / val2017 unless a note says otherwise."""
    on = "8X 1080Ti"
    rows = {
        "NASFPN/retina_r50v1b_fpn_640_1@256_25epoch": ZooRow(
            "RetinaNet", "R50v1b-FPN 1@256", "4Conv", "25 epoch", 37.4, None, "6.6G", f"85 img/s on {on}, 8 img/GPU"),
        "NASFPN/retina_r50v1b_nasfpn_640_7@256_25epoch": ZooRow(
            "NAS-FPN", "R50v1b-NASFPN 7@256", "4Conv", "25 epoch", 40.1, None, "7.8G", f"66 img/s on {on}, 8 img/GPU"),
        "NASFPN/retina_r50v1b_nasfpn_1024_7@256_25epoch": ZooRow(
            "NAS-FPN", "R50v1b-NASFPN 7@256", "4Conv", "25 epoch", 44.2, None, "9.1G", f"17 img/s on {on}, 4 img/GPU"),
        "NASFPN/retina_r50v1b_nasfpn_1280_7@384_25epoch": ZooRow(
            "NAS-FPN", "R50v1b-NASFPN 7@384", "4Conv", "25 epoch", 45.3, None, "8.9G", f"10 img/s on {on}, 2 img/GPU"),
        # SimpleDet's README row is TD-BU at 1280 (its model file retina_r50v1b_tdbu_1280_3@384); the
        # config in its tree is the 640 one
        "NASFPN/retina_r50v1b_tdbu_640_3@384_25epoch": ZooRow(
            "TD-BU", "R50v1b-TDBU 3@384", "4Conv", "25 epoch", 44.7, None, "10.5G", f"12 img/s on {on}, 3 img/GPU",
            note="README's row is at 1280 px"),
        "FPG/faster_r50v1b_fpg6@128_syncbn_1x": ZooRow("Faster", "R50v1b-FPG 6@128", "2MLP", "1X", 38.7),
        "FPG/faster_r50v1b_pafpn3@256_syncbn_1x": ZooRow("Faster", "R50v1b-PAFPN 3@256", "2MLP", "1X", 38.6),
        "FPG/faster_r50v1b_pafpn3@384_syncbn_1x": ZooRow("Faster", "R50v1b-PAFPN 3@384", "2MLP", "1X", 39.4),
        "FreeAnchor/free_anchor_r50v1_fpn_1x": ZooRow("FreeAnchor", "R50v1-FPN", "4Conv", "1X", 38.3),
        "FreeAnchor/free_anchor_r101v1_fpn_1x": ZooRow("FreeAnchor", "R101v1-FPN", "4Conv", "1X", 40.4),
        "RepPoints/reppoints_minmax_r50v1_fpn_1x": ZooRow("RepPoints", "R50v1-FPN", "MinMax", "1X", 38.0),
        "RepPoints/reppoints_moment_r50v1_fpn_1x": ZooRow("RepPoints", "R50v1-FPN", "Moment", "1X", 38.3),
        "RepPoints/reppoints_moment_r101v1_fpn_2x": ZooRow("RepPoints", "R101v1-FPN", "Moment", "2X", 40.7),
        "RepPoints/reppoints_moment_dcn_r101v1b_fpn_multiscale_2x": ZooRow(
            "RepPoints", "R101v1b-FPN-DCNv1", "Moment", "2X", 46.4, note="multi-scale training and testing"),
        "RepPoints/reppoints_moment_dcnv2_r101v1b_fpn_multiscale_2x": ZooRow(
            "RepPoints", "R101v1b-FPN-DCNv2", "Moment", "2X", 47.0, note="multi-scale training and testing"),
        "efficientnet/efficientnet_b5_fpn_bn_scratch_400_6x": ZooRow(
            "Faster", "B5-FPN", "2MLP", "6X", 37.2, None, None, f"75 img/s on {on}, 8 img/GPU"),
        "efficientnet/efficientnet_b5_fpn_bn_scratch_400_9x": ZooRow(
            "Faster", "B5-FPN", "2MLP", "9X", 37.9, None, None, f"75 img/s on {on}, 8 img/GPU"),
        "efficientnet/efficientnet_b5_fpn_bn_scratch_400_12x": ZooRow(
            "Faster", "B5-FPN", "2MLP", "12X", 38.3, None, None, f"75 img/s on {on}, 8 img/GPU"),
        "ms_r50v1_fpn_1x": ZooRow("Mask Scoring", "R50v1-FPN", "2MLP+4CONV", "1X", 37.2, 35.0, "8.1G(3.6G)",
                                  f"23 img/s on {on}, 2 img/GPU"),
        "int8/faster_r50v1bc4_c5_512roi_1x": ZooRow(
            "Faster-INT8", "R50v1b-C4", "C5-512ROI", "1X", 35.8,
            note="fp32 35.7; TensorRT 100 ms vs 260 ms on GTX 1080"),
        "tridentnet_r101v2c4_c5_addminival_2x": ZooRow("Trident", "R101v2-C4", "C5-128ROI", "2X", 42.8,
                                                       note="test-dev"),
        "tridentnet_r101v2c4_c5_multiscale_addminival_3x_fp16": ZooRow(
            "Trident*", "R101v2-C4-DCNv1", "C5-128ROI", "3X", 48.4,
            note="test-dev; multi-scale training and testing, soft-NMS, SyncBN"),
        "crowdhuman/faster_r50v1b_fpn_1x": ZooRow("Faster", "R50v1b-FPN", "2MLP", "1X", 84.77,
                                                  note="CrowdHuman AP; MR 46.72"),
        "crowdhuman/doublepred_r50v1b_fpn_1x": ZooRow("DoublePred", "R50v1b-FPN", "2MLP", "1X", 88.64,
                                                      note="CrowdHuman AP; MR 45.52"),
        "crowdhuman/doublepred_r50v1b_fpn_1x_refine": ZooRow("DoublePred+Refine", "R50v1b-FPN", "2MLP", "1X", 88.81,
                                                             note="CrowdHuman AP; MR 45.02"),
    }
    sepc = {"retina_r50v1b_fpn_1x": ("retinanet (baseline)", 35.9, "8653M", 44),
            "retina_r50v1b_fpn_pconv_1x": ("retinanet_pconv", 37.2, "9111M", 43),
            "retina_r50v1b_fpn_pconv_ibn_1x": ("retinanet_pconv+ibn", 37.6, "9467M", 40),
            "retina_r50v1b_fpn_sepclite_1x": ("retinanet_sepclite", 38.6, "9467M", 36),
            "retina_r50v1b_fpn_sepc_1x": ("retinanet_sepc", 39.7, "9471M", 25)}
    for name, (model, box, memory, speed) in sepc.items():
        rows[f"sepc/{name}"] = ZooRow(model, "R50v1b-FPN", "4Conv", "1X", box, None, memory,
                                      f"{speed} img/s on 8X 2080Ti, 4 img/GPU", note="val2017")
    return rows


ZOO: dict[str, ZooRow] = {**_v1b_rows(), **_baseline_rows(), **_family_rows()}

# Every config in SimpleDet's tree (TuSimple/simpledet@339a478, config/), published figure or not:
# `simpledet zoo` reports any without a twin in configs/.
SIMPLEDET_CONFIGS: tuple[str, ...] = (
    "FPG/faster_r50v1b_fpg6@128_syncbn_1x",
    "FPG/faster_r50v1b_fpg6@256_syncbn_1x",
    "FPG/faster_r50v1b_pafpn3@256_syncbn_1x",
    "FPG/faster_r50v1b_pafpn3@384_syncbn_1x",
    "FreeAnchor/free_anchor_r101v1_fpn_1x",
    "FreeAnchor/free_anchor_r50v1_fpn_1x",
    "NASFPN/retina_r50v1b_fpn_640_1@256_25epoch",
    "NASFPN/retina_r50v1b_nasfpn_1024_7@256_25epoch",
    "NASFPN/retina_r50v1b_nasfpn_1280_7@384_25epoch",
    "NASFPN/retina_r50v1b_nasfpn_640_7@256_25epoch",
    "NASFPN/retina_r50v1b_tdbu_640_3@384_25epoch",
    "RepPoints/reppoints_minmax_r50v1_fpn_1x",
    "RepPoints/reppoints_moment_dcn_r101v1b_fpn_multiscale_2x",
    "RepPoints/reppoints_moment_dcnv2_r101v1b_fpn_multiscale_2x",
    "RepPoints/reppoints_moment_r101v1_fpn_2x",
    "RepPoints/reppoints_moment_r50v1_fpn_1x",
    "cascade_r101v1_fpn_1x",
    "cascade_r101v2_c5_red_1x",
    "cascade_r50v1_fpn_1x",
    "cascade_r50v2_c5_red_1x",
    "crowdhuman/doublepred_r50v1b_fpn_1x",
    "crowdhuman/doublepred_r50v1b_fpn_1x_refine",
    "crowdhuman/faster_r50v1b_fpn_1x",
    "dcn/faster_dcn_r101v1bc4_c5_512roi_1x",
    "dcn/faster_dcn_r50v1bc4_c5_512roi_1x",
    "dcn/faster_dcnv2_r101v1bc4_c5_512roi_1x",
    "dcn/faster_dcnv2_r101v1bc4_c5_512roi_2x",
    "dcn/faster_dcnv2_r50v1bc4_c5_512roi_1x",
    "dcn/faster_dcnv2_r50v1bc4_c5_512roi_2x",
    "efficientnet/efficientnet_b5_fpn_bn_scratch_400_12x",
    "efficientnet/efficientnet_b5_fpn_bn_scratch_400_6x",
    "efficientnet/efficientnet_b5_fpn_bn_scratch_400_9x",
    "faster_r101v1_fpn_1x",
    "faster_r101v1_fpn_2x",
    "faster_r101v1c4_c5_512roi_1x",
    "faster_r101v1c4_c5_512roi_1x_fp16",
    "faster_r101v1c4_c5_512roi_2x",
    "faster_r101v2c4_c5_256roi_1x",
    "faster_r101v2c4_c5_256roi_syncbn_1x",
    "faster_r50v1_fpn_1x",
    "faster_r50v1_fpn_2x",
    "faster_r50v1c4_c5_512roi_1x",
    "faster_r50v1c4_c5_512roi_1x_fp16",
    "faster_r50v2c4_c5_256roi_1x",
    "faster_r50v2c4_c5_256roi_multiscale_2x",
    "fcos_r50v1_fpn_1x",
    "finetune/faster_r50v1_fpn_voc07_1x",
    "finetune/faster_r50v1_fpn_voc07_finetune_1x",
    "int8/faster_r50v1bc4_c5_512roi_1x",
    "kd/faster_r50v1b_fpn_1x_fitnet_g5",
    "kd/faster_r50v1b_fpn_2x_fitnet_g5",
    "kd/retina_r50v1b_fpn_1x_fitnet_g10",
    "kd/retina_r50v1b_fpn_2x_fitnet_g10",
    "mask_r50v1_fpn_1x",
    "ms_r50v1_fpn_1x",
    "resnet_v1b/faster_r101v1b_fpn_1x",
    "resnet_v1b/faster_r101v1b_fpn_2x",
    "resnet_v1b/faster_r101v1bc4_c5_512roi_1x",
    "resnet_v1b/faster_r101v1bc4_c5_512roi_2x",
    "resnet_v1b/faster_r152v1b_fpn_1x",
    "resnet_v1b/faster_r152v1b_fpn_2x",
    "resnet_v1b/faster_r152v1bc4_c5_512roi_1x",
    "resnet_v1b/faster_r152v1bc4_c5_512roi_2x",
    "resnet_v1b/faster_r50v1b_fpn_1x",
    "resnet_v1b/faster_r50v1b_fpn_2x",
    "resnet_v1b/faster_r50v1b_fpn_dualheadsmall_1x",
    "resnet_v1b/faster_r50v1bc4_c5_512roi_1x",
    "resnet_v1b/faster_r50v1bc4_c5_512roi_2x",
    "resnet_v1b/mask_r101v1b_fpn_1x",
    "resnet_v1b/mask_r101v1b_fpn_2x",
    "resnet_v1b/mask_r152v1b_fpn_1x",
    "resnet_v1b/mask_r152v1b_fpn_2x",
    "resnet_v1b/mask_r50v1b_fpn_1x",
    "resnet_v1b/mask_r50v1b_fpn_2x",
    "resnet_v1b/ms_r50v1b_fpn_1x",
    "resnet_v1b/retina_r101v1b_fpn_1x",
    "resnet_v1b/retina_r152v1b_fpn_1x",
    "resnet_v1b/retina_r50v1b_fpn_1x",
    "resnet_v1b/tridentnet_fast_r101v1bc4_c5_1x",
    "resnet_v1b/tridentnet_fast_r101v1bc4_c5_2x",
    "resnet_v1b/tridentnet_fast_r152v1bc4_c5_1x",
    "resnet_v1b/tridentnet_fast_r152v1bc4_c5_2x",
    "resnet_v1b/tridentnet_fast_r50v1bc4_c5_1x",
    "resnet_v1b/tridentnet_fast_r50v1bc4_c5_2x",
    "resnet_v1b/tridentnet_r101v1bc4_c5_1x",
    "resnet_v1b/tridentnet_r101v1bc4_c5_2x",
    "resnet_v1b/tridentnet_r152v1bc4_c5_1x",
    "resnet_v1b/tridentnet_r152v1bc4_c5_2x",
    "resnet_v1b/tridentnet_r50v1bc4_c5_1x",
    "resnet_v1b/tridentnet_r50v1bc4_c5_2x",
    "retina_r101v1_fpn_1x",
    "retina_r50v1_fpn_1x",
    "rpn_r50v1_fpn_1x",
    "rpn_r50v2c4_1x",
    "scratch/mask_r50v1b_fpn_bn_scratch_2x",
    "scratch/mask_r50v1b_fpn_gn_scratch_2x",
    "scratch/tridentnet_r50v1bc4_c5_syncbn_scratch_2x",
    "scratch/tridentnet_r50v1bc4_c5_syncbn_scratch_multiscale_2x",
    "se/mask_se-r50v1b_fpn_bn_scratch_2x",
    "sepc/retina_r50v1b_fpn_1x",
    "sepc/retina_r50v1b_fpn_pconv_1x",
    "sepc/retina_r50v1b_fpn_pconv_ibn_1x",
    "sepc/retina_r50v1b_fpn_sepc_1x",
    "sepc/retina_r50v1b_fpn_sepclite_1x",
    "tridentnet_r101v1c4_c5_1x",
    "tridentnet_r101v1c4_c5_2x",
    "tridentnet_r101v2c4_c5_1x",
    "tridentnet_r101v2c4_c5_2x",
    "tridentnet_r101v2c4_c5_addminival_2x",
    "tridentnet_r101v2c4_c5_fastapprox_1x",
    "tridentnet_r101v2c4_c5_multiscale_addminival_3x_fp16",
    "tridentnet_r50v1c4_c5_1x",
    "tridentnet_r50v1c4_c5_2x",
    "tridentnet_r50v2c4_c5_1x",
    "tridentnet_r50v2c4_c5_2x",
)

