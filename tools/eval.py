"""Evaluate trained weights on a config's DataLoader.Eval: prints loss, top-1 and top-5.

    python tools/eval.py -c CFG -o Global.pretrained_model=output/<Arch.name>/best_model
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppbackbone.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("eval", __doc__))
