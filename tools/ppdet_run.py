"""Run a PaddleDetection tool with ppbackbone's PPBackbone registered (no PYTHONPATH needed).

    python tools/ppdet_run.py [--ppdet-root DIR] /path/to/PaddleDetection/tools/train.py -c my_config.yml [args...]

The checkout is found from --ppdet-root, the tool's own path, or PADDLEDET_HOME (ppbackbone.ppdet_tools).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ppbackbone.errors import UserError  # noqa: E402
from ppbackbone.ppdet_tools import run_tool  # noqa: E402


def main():
    try:
        run_tool(sys.argv[1:])
    except UserError as err:
        sys.exit(f"Error: {err}")


if __name__ == "__main__":
    main()
