"""Shared pieces for the tests that train: a small, fast version of the quick-start config."""

from pathlib import Path

from simpledet import load_config

from .conftest import REPO

QUICKSTART = REPO / "configs/quickstart/faster_r18_fpn_shapes.py"


def shapes_overrides(data_dir: Path, train_split: str = "train", val_split: str = "val") -> list[str]:
    return [f"data.train.ann_file={data_dir / 'annotations' / (train_split + '.json')}",
            f"data.train.image_dir={data_dir / train_split}",
            f"data.val.ann_file={data_dir / 'annotations' / (val_split + '.json')}",
            f"data.val.image_dir={data_dir / val_split}",
            "data.num_workers=0", "train.log_every=5"]


def small_config(data_dir: Path, *extra: str, config: Path = QUICKSTART, **kw):
    return load_config(config, shapes_overrides(data_dir, **kw) + list(extra))


def randomise_frozen_bn(model, seed: int = 1) -> None:
    """Random but well-scaled statistics for every frozen BN (torchvision's or ours), so that
    parity tests exercise the BN arithmetic instead of identity layers."""
    import torch
    from torchvision.ops import FrozenBatchNorm2d as TorchvisionFrozenBN

    from simpledet.modeling.norm import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (FrozenBatchNorm2d, TorchvisionFrozenBN)):
                n = m.weight.numel()
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))


def converted_from_torchvision(reference, config: Path, overrides: list[str], tmp_path: Path):
    """Our model of `config`, in eval mode, given a torchvision detector's weights the way a user
    would: the reference saved as a .pth file, then `simpledet convert torchvision`."""
    import torch

    from simpledet import build_model
    from simpledet.cli import main
    from simpledet.engine.checkpoint import load_weights

    src, dst = tmp_path / "tv.pth", tmp_path / "converted.safetensors"
    torch.save(reference.state_dict(), src)
    assert main(["convert", "torchvision", str(src), str(dst)]) == 0
    ours = build_model(load_config(config, overrides)).eval()
    load_weights(ours, dst)
    return ours


def assert_same_detections(got: dict, expected: dict, count: int) -> None:
    """The same `count` detections (a score threshold of 0 gives a full set), in the same order:
    labels equal, boxes within 0.01 pixel, scores within 1e-4."""
    import torch

    assert len(expected["boxes"]) == count
    assert len(got["boxes"]) == len(expected["boxes"])
    assert torch.equal(got["labels"], expected["labels"])
    assert (got["boxes"] - expected["boxes"]).abs().max() <= 0.01
    assert (got["scores"] - expected["scores"]).abs().max() <= 1e-4


def load_into(module, path):
    """A pretrained backbone file into one module, through the loader build_model uses."""
    from simpledet.weights.pretrained import load_pretrained_weights

    return load_pretrained_weights([module], path)[0]


def small_val_overrides(data_dir: Path, folder: Path, images: int = 2) -> list[str]:
    """data.val as the first `images` images of the shapes val split (an annotation file written
    into `folder`): evaluations during training that take a second."""
    import json

    data = json.loads((data_dir / "annotations" / "val.json").read_text())
    kept = {image["id"] for image in data["images"][:images]}
    data["images"] = [image for image in data["images"] if image["id"] in kept]
    data["annotations"] = [ann for ann in data["annotations"] if ann["image_id"] in kept]
    path = Path(folder) / f"val_{images}.json"
    path.write_text(json.dumps(data))
    return [f"data.val.ann_file={path}", f"data.val.image_dir={data_dir / 'val'}"]


def shapes_as_odgt(data_dir: Path, split: str, folder: Path, ignore_every: int = 0) -> tuple[Path, Path]:
    """A split of the shapes set as CrowdHuman data: every object a person, and with ignore_every
    = k, every k-th object a 'mask' box (an ignore region) instead. Returns (the .odgt file, the
    folder of its .jpg images)."""
    import json

    from PIL import Image

    coco = json.loads((data_dir / "annotations" / f"{split}.json").read_text())
    images = folder / f"{split}_images"
    images.mkdir(parents=True)
    lines, count = [], 0
    for image in coco["images"]:
        name = Path(image["file_name"]).stem
        Image.open(data_dir / split / image["file_name"]).convert("RGB").save(images / f"{name}.jpg", quality=95)
        boxes = []
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            count += 1
            tag = "mask" if ignore_every and count % ignore_every == 0 else "person"
            boxes.append({"tag": tag, "fbox": ann["bbox"]})
        lines.append(json.dumps({"ID": name, "gtboxes": boxes}))
    odgt = folder / f"{split}.odgt"
    odgt.write_text("\n".join(lines) + "\n")
    return odgt, images


def fit_shapes_images(config: Path, folder: Path, iters: int, clip_grad_norm: float | None = 10.0) -> Path:
    """The opt-in overfit check of a family: `config` trained through the CLI on 8 shapes images
    (batch 4, lr 0.02, 20 warm-up iterations, a x0.1 step at 3/4) and evaluated on the same images.
    Returns the evaluation's folder (metrics.json, and metrics_segm.json for mask models)."""
    import time

    from simpledet.cli import main
    from simpledet.data.shapes import generate_shapes

    data = folder / "shapes"
    generate_shapes(data, num_train=8, num_val=4, seed=1)
    overrides = shapes_overrides(data, val_split="train") + [
        f"train.max_iter={iters}", "train.batch_size=4", "train.lr=0.02", "train.lr_reference_batch=4",
        "train.warmup_iters=20", f"train.steps=({iters * 3 // 4},)", f"train.checkpoint_every={iters}"]
    if clip_grad_norm is not None:
        overrides.append(f"train.clip_grad_norm={clip_grad_norm}")
    start = time.time()
    assert main(["train", str(config), "--out", str(folder / "run"), *overrides]) == 0
    assert main(["eval", str(config), "--weights", str(folder / "run" / "model_final.safetensors"),
                 "--out", str(folder / "eval"), *overrides]) == 0
    print(f"{config.name}: trained and evaluated in {time.time() - start:.0f} s")
    return folder / "eval"


MXNET_MADE = Path(__file__).resolve().parent / "fixtures" / "mxnet_made"


def mxnet_fixture(name: str):
    """A fixture that MXNet wrote running SimpleDet's builders (tools/mxnet_*_fixtures.py): its
    inputs and outputs (name.npz), their description (the npz's "meta") and the parameters
    (name-0000.params) under their SimpleDet names."""
    import json

    import numpy as np

    from simpledet.weights.mxnet_format import read_ndarray_file, split_prefixes

    data = np.load(MXNET_MADE / f"{name}.npz")
    raw = read_ndarray_file(MXNET_MADE / f"{name}-0000.params")
    return data, json.loads(str(data["meta"])), split_prefixes(getattr(raw, "arrays", raw), name)


def load_simpledet_arrays(model, arrays):
    """SimpleDet's arrays into `model` by the converter's rules, asserting every array placed and
    every parameter filled; the model in eval mode."""
    import numpy as np
    import torch

    from simpledet.weights.simpledet_checkpoint import convert_arrays

    state = model.state_dict()
    report = convert_arrays(arrays, {k: tuple(v.shape) for k, v in state.items()}, "fixture")
    assert not report.skipped and not report.initialised
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in report.state.items()},
                          strict=False)
    missing = set(state) - set(report.state)
    assert all(k.endswith("num_batches_tracked") for k in missing), missing
    return model.eval()


def relative_error(ours, theirs) -> float:
    """max |ours - theirs| / max |theirs|: ours a tensor, theirs MXNet's numpy array."""
    import torch

    return float((ours.detach() - torch.from_numpy(theirs)).abs().max() / abs(theirs).max())
