"""Run a PaddleDetection tool with ppbackbone's backbones registered.

    python tools/ppdet_run.py /path/to/PaddleDetection/tools/train.py -c my_config.yml [args...]
"""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ppbackbone.ppdet  # noqa: E402,F401  (registers PPBackbone in PaddleDetection's workspace)


def main():
    if len(sys.argv) < 2 or not os.path.isfile(sys.argv[1]):
        sys.exit(f"usage: python {sys.argv[0]} /path/to/PaddleDetection/tools/<tool>.py [tool args]"
                 + (f"\nnot a file: {sys.argv[1]}" if len(sys.argv) > 1 else ""))
    tool = os.path.abspath(sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.dirname(tool)))  # the PaddleDetection checkout
    runpy.run_path(tool, run_name="__main__")


if __name__ == "__main__":
    main()
