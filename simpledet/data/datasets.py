"""The one place a config's dataset split becomes a dataset, whatever its format.

format "coco": `ann_file` is the COCO JSON and `image_dir` the folder its file_names are relative
to. format "voc": `ann_file` is the VOC root and `split` names ImageSets/Main/SPLIT.txt. format
"yolo": `ann_file` is the data.yaml and `split` one of its keys (train, val, test). VOC and YOLO
splits are read into the COCO records their converters write (`simpledet data convert`), with
their own image folder; `image_dir` is not used for them. format "crowdhuman": `ann_file` is the
.odgt file (one file per split) and `image_dir` the folder of its images; `split` is not used."""

from pathlib import Path

from simpledet.config import DatasetConfig
from simpledet.data.coco import CocoDetection, load_coco_json
from simpledet.data.crowdhuman import read_crowdhuman
from simpledet.data.records import DatasetRecords, Problems
from simpledet.data.voc import read_voc
from simpledet.data.yolo import read_yolo
from simpledet.errors import UserError

FORMATS = ("coco", "voc", "yolo", "crowdhuman")


def open_dataset(split: DatasetConfig, *, train: bool = False, flip_copies: bool = False,
                 with_masks: bool = False, with_ignore_regions: bool = False,
                 key: str = "data.train") -> CocoDetection:
    """The dataset that `split` (the config's data.train or data.val, named `key` in messages)
    describes; its `ground_truth` holds the COCO-format records that evaluation scores against.
    with_ignore_regions: its targets carry the crowd boxes as `ignore_boxes` (CocoDetection)."""
    options = {"train": train, "flip_copies": flip_copies, "with_masks": with_masks,
               "with_ignore_regions": with_ignore_regions}
    if split.extra_sets and (split.format == "coco" or not with_masks):
        # file names are absolute after the merge: the image folder is only where messages point
        image_dir = split.image_dir if split.format == "coco" else "/"
        return CocoDetection(split.ann_file, image_dir, **options, data=merged_sets(split, key))
    if split.format == "coco":
        return CocoDetection(split.ann_file, split.image_dir, **options)
    if with_masks:
        raise UserError(f"{key}.format={split.format}: this model predicts masks, and {split.format} data has boxes "
                        "only; train it on COCO-format data with segmentations")
    records = read_records(split, key=key)
    return CocoDetection(records.source, records.image_dir, **options, data=records.coco)


# format -> (its reader, what ann_file names, what split names); every message below comes from here
READERS = {
    "voc": (read_voc, "the VOC root folder", "the VOC split to read (ImageSets/Main/SPLIT.txt), e.g. trainval"),
    "yolo": (read_yolo, "the data.yaml", "the data.yaml's key of the split to read, e.g. train or val"),
    "crowdhuman": (read_crowdhuman, "the .odgt file", "the folder of its images (CrowdHuman's Images/)"),
}


def read_records(split: DatasetConfig, *, key: str = "data.train", problems: Problems | None = None) -> DatasetRecords:
    """A VOC or YOLO split as COCO records. Strict by default: the first bad line, object or file
    is a UserError naming it; `problems` in collecting mode gathers them all instead."""
    if split.format not in READERS:
        raise UserError(f"{key}.format: unknown format {split.format!r}; choose one of {', '.join(FORMATS)}")
    reader, ann_file_is, split_is = READERS[split.format]
    if not split.ann_file:
        raise UserError(f"{key}.ann_file: set it to {ann_file_is} ({key}.format={split.format})")
    second = "image_dir" if split.format == "crowdhuman" else "split"  # an .odgt file is one split
    if not getattr(split, second):
        raise UserError(f"{key}.{second}: set it to {split_is}")
    return reader(split.ann_file, getattr(split, second), problems)



def merged_sets(split: DatasetConfig, key: str) -> dict[str, list[dict]]:
    """`split` and its extra_sets as one set of COCO records. Each extra set is read as `split` is,
    in its format: (ann_file, image_dir) for COCO, (ann_file, split) for VOC and YOLO. Every file
    name becomes its own set's image folder / file_name, and image and annotation ids are numbered
    afresh (VOC 2007 and 2012 both start at 1). Categories are matched by name to the first set's
    (a VOC split lists only the classes its files name); a name the first set lacks is refused."""
    merged: dict[str, list[dict]] = {"images": [], "annotations": [], "categories": []}
    first = None
    for i, pair in enumerate(((split.ann_file, split.image_dir if split.format == "coco" else split.split),)
                             + tuple(split.extra_sets)):
        where = key if i == 0 else f"{key}.extra_sets[{i - 1}]"
        if len(pair) != 2:
            raise UserError(f"{where}: expected (ann_file, {'image_dir' if split.format == 'coco' else 'split'}), "
                            f"got {pair!r}")
        if split.format == "coco":
            source, image_dir = Path(pair[0]), Path(pair[1])
            data = load_coco_json(source)
            if not image_dir.is_dir():
                raise UserError(f"{image_dir}: image directory not found (images of {source}, {where})")
        else:
            records = read_records(DatasetConfig(pair[0], "", split.format, pair[1]), key=where)
            source, image_dir, data = records.source, records.image_dir, records.coco
        if first is None:  # the first set's categories are the split's; the others map onto them by name
            first = (source, {c["name"]: c["id"] for c in data["categories"]})
            merged["categories"] = data["categories"]
        unknown = sorted({c["name"] for c in data["categories"]} - set(first[1]))
        if unknown:
            raise UserError(f"{source}: categories {', '.join(map(repr, unknown))} are not in {first[0]}; the "
                            f"sets of one split ({key}.extra_sets) must name the same categories")
        category = {c["id"]: first[1][c["name"]] for c in data["categories"]}
        new_id = {}
        for image in data["images"]:
            new_id[image["id"]] = len(merged["images"]) + 1
            merged["images"].append({**image, "id": new_id[image["id"]],
                                     "file_name": str(image_dir / image["file_name"])})
        for ann in data["annotations"]:
            merged["annotations"].append({**ann, "id": len(merged["annotations"]) + 1,
                                          "image_id": new_id[ann["image_id"]],
                                          "category_id": category[ann["category_id"]]})
    return merged
