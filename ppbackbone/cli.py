"""Command-line entry points shared by tools/train.py and tools/eval.py (kept thin there)."""
import argparse
import os
import sys
import traceback
import warnings

__all__ = ["run", "parse_args"]


def parse_args(description, argv=None):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="YAML config (PaddleClas schema)")
    parser.add_argument("-o", "--override", action="append", default=[], nargs="+",
                        help="Section.key=value overrides, e.g. -o Global.epochs=10 Arch.class_num=5")
    args = parser.parse_args(argv)
    args.override = [item for group in args.override for item in group]
    return args


def _rank():
    return int(os.environ.get("PADDLE_TRAINER_ID", "0")), int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def run(mode, description, argv=None):
    """Parse arguments, build the Trainer, train or evaluate. Returns a process exit code."""
    args = parse_args(description, argv)
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")
    warnings.filterwarnings("ignore", message="No ccache found")
    from .config import load_config
    from .engine import Trainer
    from .errors import UserError
    rank, world = _rank()
    try:
        config = load_config(args.config, args.override)
        trainer = Trainer(config, mode=mode)
        if mode == "train":
            trainer.train()
        else:
            if not (config.get("Global") or {}).get("pretrained_model") and not config["Arch"].get("pretrained"):
                print("Warning: no Global.pretrained_model given: evaluating freshly initialised weights",
                      file=sys.stderr)
            trainer.evaluate()
    except (UserError, FileNotFoundError) as err:
        print(f"Error{f' (rank {rank})' if world > 1 else ''}: {err}", file=sys.stderr)
        return 2
    except Exception:
        if world > 1:
            # paddle.distributed.launch shows only rank 0 on the console: say where the rest is
            print(f"Rank {rank} of {world} failed; its full log is log/workerlog.{rank} (the launcher's --log_dir)",
                  file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0
