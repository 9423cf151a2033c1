"""`simpledet data ...`: datasets."""


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="datasets")
    dsub = d.add_subparsers(dest="dataset", required=True)
    ds = dsub.add_parser("shapes", help="write the synthetic shapes dataset (COCO format)")
    ds.add_argument("out_dir")
    ds.add_argument("--train", type=int, default=600)
    ds.add_argument("--val", type=int, default=100)
    ds.add_argument("--seed", type=int, default=0)
    ds.set_defaults(func=run_shapes)


def run_shapes(args) -> None:
    from simpledet.data.shapes import generate_shapes

    paths = generate_shapes(args.out_dir, num_train=args.train, num_val=args.val, seed=args.seed)
    for key, value in paths.items():
        print(f"{key}: {value}")
