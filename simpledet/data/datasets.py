"""The one place a config's dataset split becomes a dataset, whatever its format.

format "coco": `ann_file` is the COCO JSON and `image_dir` the folder its file_names are relative
to. format "voc": `ann_file` is the VOC root and `split` names ImageSets/Main/SPLIT.txt. format
"yolo": `ann_file` is the data.yaml and `split` one of its keys (train, val, test). VOC and YOLO
splits are read into the COCO records their converters write (`simpledet data convert`), with
their own image folder; `image_dir` is not used for them."""

from simpledet.config import DatasetConfig
from simpledet.data.coco import CocoDetection
from simpledet.data.records import DatasetRecords, Problems
from simpledet.data.voc import read_voc
from simpledet.data.yolo import read_yolo
from simpledet.errors import UserError

FORMATS = ("coco", "voc", "yolo")


def open_dataset(split: DatasetConfig, *, train: bool = False, flip_copies: bool = False,
                 with_masks: bool = False, key: str = "data.train") -> CocoDetection:
    """The dataset that `split` (the config's data.train or data.val, named `key` in messages)
    describes; its `ground_truth` holds the COCO-format records that evaluation scores against."""
    if split.format == "coco":
        return CocoDetection(split.ann_file, split.image_dir, train=train, flip_copies=flip_copies,
                             with_masks=with_masks)
    if with_masks:
        raise UserError(f"{key}.format={split.format}: this model predicts masks, and {split.format} data has boxes "
                        "only; train it on COCO-format data with segmentations")
    records = read_records(split, key=key)
    return CocoDetection(records.source, records.image_dir, train=train, flip_copies=flip_copies,
                         data=records.coco)


# format -> (its reader, what ann_file names, what split names); every message below comes from here
READERS = {
    "voc": (read_voc, "the VOC root folder", "the VOC split to read (ImageSets/Main/SPLIT.txt), e.g. trainval"),
    "yolo": (read_yolo, "the data.yaml", "the data.yaml's key of the split to read, e.g. train or val"),
}


def read_records(split: DatasetConfig, *, key: str = "data.train", problems: Problems | None = None) -> DatasetRecords:
    """A VOC or YOLO split as COCO records. Strict by default: the first bad line, object or file
    is a UserError naming it; `problems` in collecting mode gathers them all instead."""
    if split.format not in READERS:
        raise UserError(f"{key}.format: unknown format {split.format!r}; choose one of {', '.join(FORMATS)}")
    reader, ann_file_is, split_is = READERS[split.format]
    if not split.ann_file:
        raise UserError(f"{key}.ann_file: set it to {ann_file_is} ({key}.format={split.format})")
    if not split.split:
        raise UserError(f"{key}.split: set it to {split_is}")
    return reader(split.ann_file, split.split, problems)
