"""The `simpledet` command. Each command group lives in its own module here, which adds its
subparser (`add_parser(sub)`) and runs it (`args.func(args)`).

User mistakes (bad config, data or weights) print one message naming the culprit and exit with
code 2; no traceback.
"""

import argparse
import logging
import sys

from simpledet.cli import convert, data, evaluate, export, inspect, plot, predict, score, serve, train, weights, zoo
from simpledet.errors import UserError

# in the order `simpledet --help` lists them
COMMANDS = (train, evaluate, predict, export, serve, plot, convert, weights, inspect, score, zoo, data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simpledet", description="SimpleDet's detectors on PyTorch")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # overrides may follow options (`train CFG --out X key=v`), which argparse alone won't accept
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "command", None) == "predict":  # images after the options land in `extra`
        args.images = list(args.images) + [x for x in extra if not x.startswith("-")]
        extra = [x for x in extra if x.startswith("-")]
    unknown = [x for x in extra if "=" not in x or x.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        status = args.func(args)  # None, or an exit status of the command's own (`data check`: 1)
    except UserError as e:
        print(f"simpledet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
