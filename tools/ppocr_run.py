"""Run a PaddleOCR tool with ppbackbone's PPBackbone available to its configs (no PYTHONPATH needed).

    python tools/ppocr_run.py [--debug] [--ppocr-root DIR] /path/to/PaddleOCR/tools/train.py -c my_config.yml [args...]

The checkout is found from --ppocr-root, the tool's own path, or PADDLEOCR_HOME (ppbackbone.ppocr.runner).
A ppbackbone error (e.g. a bad PPBackbone section, a wrong checkout path) prints `Error: ...` (exit status 2);
--debug (before the tool's path) or PPBACKBONE_DEBUG=1 shows its traceback. Exit statuses: see
`python tools/train.py --help`.
"""
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # paddle import-time noise
# the repository instead of tools/ (whose train.py, export.py ... would shadow modules of PaddleOCR's tools)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from ppbackbone.cli import main_guard  # noqa: E402
from ppbackbone.ppocr.runner import run_tool  # noqa: E402


def main(argv):
    """The runner's own options come before the tool's path: --debug is taken out there (main_guard reads it)."""
    tool_at = next((i for i, arg in enumerate(argv) if not arg.startswith("-") and (i == 0 or argv[i - 1] !=
                                                                                     "--ppocr-root")), len(argv))
    run_tool([arg for i, arg in enumerate(argv) if not (i < tool_at and arg == "--debug")])


if __name__ == "__main__":
    sys.exit(main_guard(main))
