"""`simpledet weights list` and `simpledet weights download NAME`: weights by name, by hand.

The names are those `model.backbone.pretrained` and `train.init_from` accept (weights/by_name.py):
`simpledet:NAME`, SimpleDet's ImageNet backbones, and `torchvision:ENUM`, torchvision's weights."""

from simpledet.errors import UserError


def add_parser(sub) -> None:
    w = sub.add_parser("weights", help="pretrained weights by name: list them, download one")
    wsub = w.add_subparsers(dest="action", required=True)
    wl = wsub.add_parser("list", help="SimpleDet's ImageNet backbones: name, address, cached or not")
    wl.set_defaults(func=run_list)
    wd = wsub.add_parser("download", help="fetch simpledet:NAME (and convert it) or torchvision:ENUM into the cache")
    wd.add_argument("name", metavar="NAME", help="simpledet:NAME or torchvision:ENUM")
    wd.set_defaults(func=run_download)


def run_list(args) -> None:
    from simpledet.weights import by_name

    rows = []
    for name, what in by_name.SIMPLEDET_BACKBONES.items():
        converted = by_name.converted_path(name)
        rows.append((by_name.SIMPLEDET + name, what, by_name.simpledet_url(name),
                     str(converted) if converted.is_file() else "not cached"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    print(f"\ncache: {by_name.cache_dir()} (SIMPLEDET_CACHE), addresses from SIMPLEDET_WEIGHTS_URL "
          f"(default {by_name.SIMPLEDET_URL})")
    print(f"{by_name.TORCHVISION}ENUM takes any torchvision weights enum, e.g. "
          f"{by_name.TORCHVISION}ResNet50_Weights.IMAGENET1K_V2 or "
          f"{by_name.TORCHVISION}FasterRCNN_ResNet50_FPN_Weights.COCO_V1 (torch.hub's cache: TORCH_HOME)")


def run_download(args) -> None:
    from simpledet.weights import by_name

    if args.name.startswith(by_name.SIMPLEDET):
        path = by_name.fetch_simpledet(args.name)
    elif args.name.startswith(by_name.TORCHVISION):
        by_name.fetch_torchvision(args.name)
        path = by_name.torchvision_cache_path(args.name)
    else:
        raise UserError(f"{args.name!r}: a name starts with {by_name.SIMPLEDET} or {by_name.TORCHVISION} "
                        "(`simpledet weights list`)")
    print(f"{args.name}: {path}")
