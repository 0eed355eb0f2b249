"""Train a model from a PaddleClas-schema config.

    python tools/train.py -c configs/quickstart.yaml [-o Global.epochs=5 -o Arch.class_num=10 ...]
    python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py -c CFG

Resume: -o Global.checkpoints=output/<Arch.name>/latest; fine-tune: -o Global.pretrained_model=<weights>.
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppbackbone.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("train", __doc__))
