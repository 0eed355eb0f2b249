"""Running PaddleDetection's own tools with ppbackbone registered (no PYTHONPATH needed).

`tools/ppdet_run.py` is a thin front to `run_tool(argv)`:

    python tools/ppdet_run.py [--ppdet-root DIR] <PaddleDetection>/tools/train.py -c cfg.yml [tool args]

The PaddleDetection checkout (a folder holding `ppdet/__init__.py`) is found, in this order, from
`--ppdet-root DIR`, from the tool's own path (the nearest folder above it holding ppdet/__init__.py),
from the PADDLEDET_HOME environment variable, and last an installed `ppdet` package (paddledet
wheel). A path given explicitly that is not a checkout is an error naming it and what was looked for.

This module imports PaddleDetection (and the plugin, ppbackbone.ppdet) only after locating it; the
config checks it runs first live in ppbackbone.ppdet.config.
"""
import importlib.util
import os
import runpy
import sys
import tempfile

from ..host_checkout import HostCheckout
from .config import PPDetSetupError, check_backbone_sections, resolve_config

__all__ = ["find_ppdet_root", "activate_ppdet", "parse_args", "run_tool"]

MARKER = os.path.join("ppdet", "__init__.py")
USAGE = "usage: python tools/ppdet_run.py [--ppdet-root DIR] /path/to/PaddleDetection/tools/<tool>.py [tool args]"


CHECKOUT = HostCheckout("PaddleDetection", (MARKER,), "--ppdet-root", "PADDLEDET_HOME", PPDetSetupError, USAGE)


def find_ppdet_root(tool=None, ppdet_root=None, environ=None):
    """The PaddleDetection checkout to use, or None when only an installed `ppdet` package is found.

    Args:
        tool: path of the PaddleDetection script to run (its checkout is searched above it).
        ppdet_root: an explicit checkout (--ppdet-root); wins over everything.
        environ: environment mapping (default os.environ) for PADDLEDET_HOME.
    Raises PPDetSetupError naming the path and what was looked for.
    """
    root, looked = CHECKOUT.find(tool, ppdet_root, environ)
    if root is not None:
        return root
    if importlib.util.find_spec("ppdet") is not None:
        return None
    raise CHECKOUT.not_found(looked + ["an installed `ppdet` package (not importable)"])


def activate_ppdet(root):
    """Put checkout `root` first on sys.path and register PPBackbone; returns the imported ppdet package.

    Refuses when another `ppdet` was already imported (two PaddleDetections in one process)."""
    loaded = sys.modules.get("ppdet")
    if root is not None:
        if loaded is not None and not os.path.abspath(loaded.__file__).startswith(root + os.sep):
            raise PPDetSetupError(f"ppdet is already imported from {loaded.__file__}, not from {root}")
        if root not in sys.path:
            sys.path.insert(0, root)
    import ppdet  # noqa: F401
    from . import plugin
    plugin.register_ppdet()
    return sys.modules["ppdet"]


# ---------------------------------------------------------------------------- the runner
def _config_arg(args):
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def parse_args(argv):
    """(ppdet_root or None, tool path, tool args) from the runner's argv (without the program name)."""
    return CHECKOUT.parse_args(argv)


def run_tool(argv):
    """Locate PaddleDetection, register PPBackbone, check the -c config's PPBackbone chain, then run the
    tool as `__main__` with its own arguments."""
    root, tool, tool_args = parse_args(argv)
    root = find_ppdet_root(tool, root)
    config = _config_arg(tool_args)
    if config is not None and os.path.isfile(config):
        out_dir = os.path.join(tempfile.gettempdir(), f"ppbackbone-ppdet-{os.getpid()}")
        resolved = resolve_config(config, root, out_dir)
        check_backbone_sections(resolved)
        tool_args = [resolved if arg == config else arg.replace(config, resolved) for arg in tool_args]
    activate_ppdet(root)
    sys.argv = [tool] + tool_args
    runpy.run_path(tool, run_name="__main__")
