"""`simpledet train CONFIG [--out DIR] [--resume] [key=value ...]`."""

import logging
from pathlib import Path


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a detector")
    t.add_argument("config")
    t.add_argument("--out", help="output folder (default runs/CONFIG_NAME)")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("overrides", nargs="*", metavar="key.sub=value")
    t.set_defaults(func=run)



def run(args) -> None:
    from simpledet.config import load_config
    from simpledet.engine import distributed
    from simpledet.engine.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    distributed.init_from_env(cfg.train.device)  # under torchrun: join the process group
    resume = args.resume
    if distributed.restart_count() > 0:  # torchrun restarted the group after a worker died
        logging.getLogger("simpledet").info("torchrun restart %d: resuming from the newest checkpoint in %s",
                                            distributed.restart_count(), out)
        resume = True
    try:
        final = Trainer(cfg, out, resume=resume).train()
        if distributed.is_main_process():
            print(f"weights: {final}")
    finally:
        distributed.destroy()
