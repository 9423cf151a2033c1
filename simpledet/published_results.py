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


ZOO: dict[str, ZooRow] = {**_v1b_rows(), **_baseline_rows()}
