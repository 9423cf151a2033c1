"""`simpledet inspect FILE`: the arrays of a weights file."""


def add_parser(sub) -> None:
    i = sub.add_parser("inspect", help="list the arrays (name, dtype, shape) of a .params / .pth / .safetensors file")
    i.add_argument("file")
    i.set_defaults(func=run)



def run(args) -> None:
    from simpledet.weights.inspect import run_inspect

    print(run_inspect(args.file))
