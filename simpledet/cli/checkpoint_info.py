"""What a checkpoint of ours records beside its weights: the config and the categories."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from simpledet.errors import UserError

if TYPE_CHECKING:
    from simpledet.config import Config


def checkpoint_categories(weights: Path) -> tuple[list[str], list[int]] | None:
    meta = weights.with_suffix(".json")
    if meta.is_file():
        try:
            data = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UserError(f"{meta}: the JSON beside {weights.name} cannot be read ({e})") from None
        if isinstance(data, dict) and "categories" in data and "category_ids" in data:
            return data["categories"], data["category_ids"]
    return None


def config_of_checkpoint(weights: Path, overrides) -> "Config":
    """The config a checkpoint of ours was trained with (saved in the JSON beside it)."""
    from simpledet.config import apply_override, from_dict

    meta = weights.with_suffix(".json")
    if not meta.is_file():
        raise UserError(f"no config given and {meta} (the checkpoint's config) does not exist: name a CONFIG")
    try:
        cfg = from_dict(json.loads(meta.read_text())["config"])
    except (ValueError, KeyError, TypeError, ImportError, AttributeError) as e:
        raise UserError(f"{meta}: holds no usable config ({type(e).__name__}: {e})") from None
    for item in overrides:
        apply_override(cfg, item)
    return cfg
