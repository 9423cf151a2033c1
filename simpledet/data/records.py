"""What the dataset readers of other formats (VOC, YOLO) hand over: COCO-format records with where
each one came from, and the problems met on the way, raised at once or collected for a report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from simpledet.errors import UserError

log = logging.getLogger(__name__)

# what Pillow raises for a missing, unknown or damaged image
IMAGE_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass
class Problem:
    where: str  # a file, FILE:LINE, or FILE: record
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


class Problems:
    """Problems met while reading a dataset.

    Strict (collect=False: loading for training, evaluation or conversion): `error` raises the
    first one as a UserError and `warn` logs a warning. Collecting (`simpledet data check`): both
    are kept in `found`; after an error the reader skips the line, object or image concerned."""

    def __init__(self, collect: bool = False) -> None:
        self.collect = collect
        self.found: list[Problem] = []

    def error(self, where: str | Path, what: str) -> None:
        if not self.collect:
            raise UserError(f"{where}: {what}")
        self.found.append(Problem(str(where), what))

    def warn(self, where: str | Path, what: str) -> None:
        if self.collect:
            self.found.append(Problem(str(where), what))
        else:
            log.warning("%s: %s", where, what)


@dataclass
class DatasetRecords:
    """One split in COCO form. `coco` holds `images` (id, file_name relative to `image_dir`,
    width, height), `annotations` (id, image_id, category_id, bbox [x, y, w, h] in pixels, area,
    iscrowd) and `categories` (id, name); `source` is what messages name (a VOC root, a data.yaml,
    a COCO file); the `*_where` maps name the file (and line or object) each record came from."""

    coco: dict[str, list[dict]]
    image_dir: Path
    source: Path
    image_where: dict[int, str] = field(default_factory=dict)
    annotation_where: dict[int, str] = field(default_factory=dict)


def image_header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header alone; the pixels are not decoded.
    Raises what Pillow raises (IMAGE_READ_ERRORS)."""
    with Image.open(path) as img:
        return img.size


def read_error_reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
