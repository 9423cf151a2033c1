"""`simpledet data ...`: the shapes set, VOC and YOLO splits converted to COCO, dataset checks."""

import argparse

FORMATS = ("coco", "voc", "yolo")

CHECK_DESCRIPTION = """\
Reads a dataset split as training would, but lists every problem instead of stopping at the
first: malformed lines and files, unknown classes, duplicate ids and file names, missing or
unreadable images, boxes of zero area or outside the image, each named by file and line or
record. Prints the boxes per class, a box-size histogram and the images without boxes, and draws
a few images with their ground truth (images with problems first).

TARGET is a config (.py: its data.train and data.val, with key=value overrides) or a dataset:
a COCO .json (with --image-dir), a VOC root folder or a YOLO data.yaml (with --split); --format
says which when the name does not."""

CHECK_EPILOG = "exit status: 0 no problem found, 1 problems found, 2 input that cannot be read"


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="datasets: the shapes set, VOC/YOLO to COCO, checks")
    dsub = d.add_subparsers(dest="dataset", required=True)

    ds = dsub.add_parser("shapes", help="write the synthetic shapes dataset")
    ds.add_argument("out_dir")
    ds.add_argument("--train", type=int, default=600)
    ds.add_argument("--val", type=int, default=100)
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--format", choices=FORMATS, default="coco",
                    help="coco: annotations/{train,val}.json, train/, val/; voc: JPEGImages/, Annotations/, "
                         "ImageSets/Main/{train,val}.txt; yolo: images/, labels/, data.yaml (default: coco)")
    ds.set_defaults(func=run_shapes)

    dc = dsub.add_parser("convert", help="write a VOC, YOLO or CrowdHuman split as a COCO JSON file")
    csub = dc.add_subparsers(dest="source_format", required=True)
    for name, source, split_help in (
            ("voc", "VOC root folder (JPEGImages/, Annotations/, ImageSets/Main/)",
             "ImageSets/Main/SPLIT.txt to convert, e.g. trainval"),
            ("yolo", "the dataset's data.yaml", "the data.yaml's key of the split, e.g. train or val")):
        c = csub.add_parser(name, help=f"a {name.upper()} split to COCO JSON")
        c.add_argument("source", help=source)
        c.add_argument("--split", required=True, help=split_help)
        c.add_argument("--out", required=True, help="the COCO JSON file to write")
        c.set_defaults(func=run_convert)
    c = csub.add_parser("crowdhuman", help="a CrowdHuman .odgt file to COCO JSON (ignore regions as crowd boxes)")
    c.add_argument("source", help="the .odgt annotation file, e.g. annotation_train.odgt")
    c.add_argument("--images", required=True, help="the folder of its images (ID.jpg), CrowdHuman's Images/")
    c.add_argument("--out", required=True, help="the COCO JSON file to write")
    c.set_defaults(func=run_convert)

    dk = dsub.add_parser("check", help="count a dataset's boxes and list its problems (exit 1 if any)",
                         description=CHECK_DESCRIPTION, epilog=CHECK_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    dk.add_argument("target", help="a config file, or a COCO .json, VOC root or YOLO data.yaml")
    dk.add_argument("--format", choices=FORMATS, help="the dataset's format (default: from TARGET's name)")
    dk.add_argument("--split", help="VOC: ImageSets/Main/SPLIT.txt; YOLO: the data.yaml's key (train, val, ...)")
    dk.add_argument("--image-dir", help="COCO: the folder the file_names are relative to")
    dk.add_argument("--full", action="store_true", help="decode every image, not only its header")
    dk.add_argument("--vis", default="data_check", help="folder for the pictures (default: ./data_check)")
    dk.add_argument("--num-vis", type=int, default=8, help="pictures per split (default: 8; 0: none)")
    dk.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    dk.set_defaults(func=run_check)


def run_shapes(args) -> None:
    from simpledet.data.shapes import generate_shapes

    paths = generate_shapes(args.out_dir, num_train=args.train, num_val=args.val, seed=args.seed, format=args.format)
    for key, value in paths.items():
        print(f"{key}: {value}")


def run_convert(args) -> None:
    import json

    from simpledet.config import DatasetConfig
    from simpledet.data.datasets import read_records
    from simpledet.files import atomic_write_text

    split = DatasetConfig(ann_file=args.source, format=args.source_format, split=getattr(args, "split", ""),
                          image_dir=getattr(args, "images", ""))
    records = read_records(split, key=f"data convert {args.source_format}")
    coco = records.coco
    atomic_write_text(args.out, json.dumps(coco))
    ignored = sum(bool(a["iscrowd"]) for a in coco["annotations"])
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations']) - ignored} boxes, "
          f"{ignored} ignore regions, {len(coco['categories'])} categories "
          f"({', '.join(c['name'] for c in coco['categories'])})")
    print(f"file_names are relative to {records.image_dir} (the image_dir to give with this file)")


def run_check(args) -> int:
    from pathlib import Path

    from simpledet.data.check import check_split, format_report, write_pictures

    found = False
    for name, split, folder in _check_targets(args):
        report = check_split(split, name=name, full=args.full)
        print(format_report(report))
        if args.num_vis > 0:
            pictures = write_pictures(report, Path(args.vis) / folder, args.num_vis)
            print(f"  drew {len(pictures)} images with their ground truth in {Path(args.vis) / folder}")
        found = found or bool(report.problems)
    return 1 if found else 0


def _check_targets(args):
    """(name, DatasetConfig, picture subfolder) for each split to check."""
    from pathlib import Path

    from simpledet.config import DatasetConfig, load_config
    from simpledet.errors import UserError

    target = Path(args.target)
    fmt = args.format
    if fmt is None:
        if target.suffix == ".py":
            if args.split or args.image_dir:
                raise UserError("--split and --image-dir are for a dataset path; a config names its own splits")
            cfg = load_config(target, args.overrides)
            splits = [(f"data.{key}", getattr(cfg.data, key), key) for key in ("train", "val")]
            return [s for s in splits if s[1].ann_file]
        suffixes = {".json": "coco", ".yaml": "yolo", ".yml": "yolo"}
        fmt = "voc" if target.is_dir() else suffixes.get(target.suffix.lower())
        if fmt is None:
            raise UserError(f"{target}: cannot tell the dataset's format from its name; give --format "
                            f"{'|'.join(FORMATS)}")
    if args.overrides:
        raise UserError(f"key=value overrides ({' '.join(args.overrides)}) apply to a config, not to a dataset path")
    if fmt == "coco" and not args.image_dir:
        raise UserError(f"{target}: --image-dir: give the folder its file_names are relative to")
    if fmt != "coco" and not args.split:
        raise UserError(f"{target}: --split: name the split to check ("
                        + ("ImageSets/Main/SPLIT.txt" if fmt == "voc" else "a key of the data.yaml") + ")")
    split = DatasetConfig(ann_file=str(target), image_dir=args.image_dir or "", format=fmt, split=args.split or "")
    return [(str(target), split, "")]
