"""The one place a config's dataset split becomes a dataset, whatever its format."""

from simpledet.config import DatasetConfig
from simpledet.data.coco import CocoDetection
from simpledet.errors import UserError

FORMATS = ("coco",)


def open_dataset(split: DatasetConfig, *, train: bool = False, flip_copies: bool = False,
                 with_masks: bool = False, key: str = "data.train") -> CocoDetection:
    """The dataset that `split` (the config's data.train or data.val, named `key` in messages)
    describes; its `ground_truth` holds the COCO-format records that evaluation scores against."""
    if split.format == "coco":
        return CocoDetection(split.ann_file, split.image_dir, train=train, flip_copies=flip_copies,
                             with_masks=with_masks)
    raise UserError(f"{key}.format: unknown format {split.format!r}; choose one of {', '.join(FORMATS)}")
