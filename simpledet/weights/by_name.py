"""Weights by name, for `model.backbone.pretrained`, `train.init_from` and `simpledet weights`.

- `simpledet:NAME`: one of the ten ImageNet-pretrained backbones SimpleDet published (MXNet
  `.params`), fetched from `$SIMPLEDET_WEIGHTS_URL/NAME-0000.params` (default SimpleDet's own
  address), checked, converted to our names (weights/mxnet_backbone.py) and kept as
  `NAME.safetensors` (+ `NAME.json`) in the cache: `$SIMPLEDET_CACHE`, else
  `~/.cache/simpledet/weights/`. The download itself lives in a folder of its own until it is
  converted, then goes; a later run reads the converted file and fetches nothing.
- `torchvision:ENUM`: any torchvision weights enum (`ResNet50_Weights.IMAGENET1K_V2`,
  `FasterRCNN_ResNet50_FPN_Weights.COCO_V1`), fetched through torchvision's own API into torch.hub's
  cache (`$TORCH_HOME/hub/checkpoints/`) and read with weights_only=True.
"""

import difflib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from simpledet.errors import UserError
from simpledet.files import make_dir
from simpledet.weights.download import download

log = logging.getLogger(__name__)

SIMPLEDET, TORCHVISION = "simpledet:", "torchvision:"
SIMPLEDET_URL = "https://1dv.alarge.space"
# SimpleDet's published ImageNet backbones: NAME (the file is NAME-0000.params) -> what it is
SIMPLEDET_BACKBONES = {
    "resnet-v1-50": "ResNet v1-50 (MSRA, stride in the 1x1 conv)",
    "resnet-v1-101": "ResNet v1-101 (MSRA, stride in the 1x1 conv)",
    "resnet-50": "ResNet v2-50 (pre-activation, MXNet model gallery)",
    "resnet-101": "ResNet v2-101 (pre-activation, MXNet model gallery)",
    "resnet50_v1b": "ResNet v1b-50 (GluonCV, stride in the 3x3 conv)",
    "resnet101_v1b": "ResNet v1b-101 (GluonCV, stride in the 3x3 conv)",
    "resnet152_v1b": "ResNet v1b-152 (GluonCV, stride in the 3x3 conv)",
    "resnext-101-64x4d": "ResNeXt-101 64x4d (Facebook)",
    "resnext-101-32x8d": "ResNeXt-101 32x8d (Facebook)",
    "resnext-152-32x8d-IN5k": "ResNeXt-152 32x8d trained on ImageNet-5k (Facebook)",
}
_PARAMS_SUFFIX = "-0000.params"


def is_weights_name(spec: str) -> bool:
    return str(spec).startswith((SIMPLEDET, TORCHVISION))


# ---------------------------------------------------------------- simpledet:NAME

def cache_dir() -> Path:
    return Path(os.environ.get("SIMPLEDET_CACHE") or Path.home() / ".cache" / "simpledet" / "weights")


def simpledet_name(spec: str) -> str:
    """NAME from `simpledet:NAME` (the file name, NAME-0000.params, is accepted too)."""
    name = spec.removeprefix(SIMPLEDET).removesuffix(_PARAMS_SUFFIX)
    if name not in SIMPLEDET_BACKBONES:
        nearest = difflib.get_close_matches(name, SIMPLEDET_BACKBONES, n=1)
        hint = f" (did you mean {SIMPLEDET}{nearest[0]}?)" if nearest else ""
        raise UserError(f"unknown weights name {spec!r}{hint}. SimpleDet published: "
                        f"{', '.join(SIMPLEDET + n for n in SIMPLEDET_BACKBONES)} (`simpledet weights list`)")
    return name


def simpledet_url(name: str) -> str:
    base = os.environ.get("SIMPLEDET_WEIGHTS_URL") or SIMPLEDET_URL
    return f"{base.rstrip('/')}/{name}{_PARAMS_SUFFIX}"


def converted_path(name: str) -> Path:
    """Where `simpledet:NAME` lives once fetched and converted."""
    return cache_dir() / f"{name}.safetensors"


def fetch_simpledet(spec: str, progress: bool = True) -> Path:
    """The converted file of `simpledet:NAME`, downloaded and converted on first use."""
    from simpledet.weights.mxnet_backbone import convert_mxnet_backbone

    name = simpledet_name(spec)
    converted = converted_path(name)
    if converted.is_file():
        return converted
    url, file = simpledet_url(name), f"{name}{_PARAMS_SUFFIX}"
    make_dir(cache_dir())
    try:  # a folder of this process's own: the processes of a distributed run may fetch at once
        work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache_dir()))
    except OSError as e:
        raise UserError(f"{cache_dir()}: cannot write ({e.strerror or e}); SIMPLEDET_CACHE sets another "
                        "folder") from None
    try:
        log.info("downloading %s", url)
        hint = (f". To use a copy of {file} fetched elsewhere, pass its path instead "
                f"(model.backbone.pretrained=/path/to/{file}), or set SIMPLEDET_WEIGHTS_URL to a mirror that holds it")
        params = download(url, work / file, check=check_backbone_params, hint=hint, progress=progress)
        log.info("%s", convert_mxnet_backbone(params, converted))  # written whole: a run killed here left nothing
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return converted


def check_backbone_params(path: Path, source: str) -> None:
    """A downloaded file is a SimpleDet backbone: an MXNet NDArray file, complete, whose names and
    shapes are a ResNet's (SimpleDet published no checksums)."""
    from simpledet.weights.mxnet_backbone import detect_mxnet_family
    from simpledet.weights.mxnet_format import decode_ndarray_file, split_prefixes

    arrays = decode_ndarray_file(path.read_bytes(), source)
    if not isinstance(arrays, dict):
        raise UserError(f"{source}: an unnamed list of arrays, not a backbone checkpoint")
    bare = split_prefixes(arrays, source)
    detect_mxnet_family({k: tuple(v.shape) for k, v in bare.items()}, source)


# ---------------------------------------------------------------- torchvision:ENUM

def torchvision_weights(spec: str):
    """The torchvision weights enum member `torchvision:ENUM.MEMBER` names."""
    from torchvision.models import get_weight

    name = spec.removeprefix(TORCHVISION)
    try:
        return get_weight(name)
    except (ValueError, KeyError):
        nearest = difflib.get_close_matches(name, _torchvision_weight_names(), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(TORCHVISION + n for n in nearest)}?)" if nearest else ""
        raise UserError(f"unknown torchvision weights {spec!r}{hint}. Names are a weights enum and its member, "
                        "as in torchvision's model docs (https://pytorch.org/vision/stable/models.html), e.g. "
                        f"{TORCHVISION}ResNet50_Weights.IMAGENET1K_V2; a model's are listed by `python -c \"import "
                        "torchvision; print(list(torchvision.models.get_model_weights('resnet50')))\"`") from None


def _torchvision_weight_names() -> list[str]:
    from torchvision.models import get_model_weights, list_models

    names = []
    for model in list_models():
        try:
            names += [str(w) for w in get_model_weights(model)]
        except ValueError:  # a model without weights
            continue
    return names


def torchvision_cache_path(spec: str) -> Path:
    """Where torch.hub keeps the file of `torchvision:ENUM` (whether it is there or not)."""
    url = torchvision_weights(spec).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def fetch_torchvision(spec: str, progress: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of `torchvision:ENUM`, through torchvision's weights API (torch.hub's cache,
    downloading on first use), read with weights_only=True."""
    weights = torchvision_weights(spec)
    cached = torchvision_cache_path(spec)
    try:
        state = weights.get_state_dict(progress=progress, weights_only=True)
    except OSError as e:  # urllib's errors are OSErrors: unreachable, refused, HTTP status
        if cached.is_file():
            raise UserError(f"{cached} ({spec}): cannot read ({e})") from None
        reason = getattr(e, "reason", None) or e
        raise UserError(f"cannot download {weights.url} for {spec} ({reason}). To use a copy fetched elsewhere, "
                        f"pass its path instead (model.backbone.pretrained=/path/to/{cached.name} or "
                        f"train.init_from=/path/to/{cached.name}), or put it in {cached.parent}") from None
    except Exception as e:  # a damaged file in the cache: torch.load's errors vary
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{cached} ({spec}): does not load as plain weights ({type(e).__name__}: {first}); "
                        "delete it to download it again") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{cached} ({spec}): not a state dict (name -> tensor)")
    return state
