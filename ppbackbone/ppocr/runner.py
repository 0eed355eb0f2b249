"""Running PaddleOCR's own tools with ppbackbone's PPBackbone (no PYTHONPATH needed).

`tools/ppocr_run.py` is a thin front to `run_tool(argv)`:

    python tools/ppocr_run.py [--ppocr-root DIR] <PaddleOCR>/tools/train.py -c cfg.yml [tool args]

The PaddleOCR checkout (a folder holding `ppocr/modeling/backbones/__init__.py` and `tools/program.py`: its
training code, which is not on PyPI) is found, in this order, from `--ppocr-root DIR`, from the tool's own path
(the nearest folder above it that is a checkout), and from the PADDLEOCR_HOME environment variable. A path
given explicitly that is not a checkout is an error naming it and what was looked for.

The config given with -c is checked (ppbackbone.ppocr.config) and its relative input paths (dictionaries,
images) are resolved against the checkout. This module imports PaddleOCR (and the plugin hooks,
ppbackbone.ppocr) only after locating it.

Paddle Inference 3.3 with oneDNN (the CPU default of PaddleOCR's inference scripts) stops on every interp op (a det
neck's upsample): its oneDNN executor cannot convert their `scale` attribute, an array of doubles (Paddle issue
#79749). A tool stopping that way is one error (OneDNNInterpError) naming the remedy, `--enable_mkldnn False`,
instead of a traceback that looks like a bug of ours (docs/ppocr.md, "Why the det demo turns oneDNN off").
"""
import os
import runpy
import sys
import tempfile

from ..errors import UserError
from ..host_checkout import HostCheckout
from .config import PPOCRSetupError, check_ppbackbone_sections, load_config, resolve_config, resolve_overrides

__all__ = ["find_ppocr_root", "activate_ppocr", "parse_args", "run_tool", "MARKERS", "OneDNNInterpError"]

MARKERS = (os.path.join("ppocr", "modeling", "backbones", "__init__.py"), os.path.join("tools", "program.py"))
USAGE = "usage: python tools/ppocr_run.py [--ppocr-root DIR] /path/to/PaddleOCR/tools/<tool>.py [tool args]"


# Paddle Inference 3.3's message when its oneDNN executor meets an interp op's `scale` (Paddle issue #79749)
ONEDNN_INTERP_MESSAGE = "ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute<pir::DoubleAttribute>]"


class OneDNNInterpError(UserError, RuntimeError):
    """Paddle Inference with oneDNN cannot run the model's interp ops; the tool runs with --enable_mkldnn False."""


CHECKOUT = HostCheckout("PaddleOCR", MARKERS, "--ppocr-root", "PADDLEOCR_HOME", PPOCRSetupError, USAGE,
                       hint=" (the training code of github.com/PaddlePaddle/PaddleOCR; the paddleocr wheel does "
                            "not have it)")


def find_ppocr_root(tool=None, ppocr_root=None, environ=None):
    """The PaddleOCR checkout to use.

    Args:
        tool: path of the PaddleOCR script to run (its checkout is searched above it).
        ppocr_root: an explicit checkout (--ppocr-root); wins over everything.
        environ: environment mapping (default os.environ) for PADDLEOCR_HOME.
    Raises PPOCRSetupError naming the path and what was looked for.
    """
    root, looked = CHECKOUT.find(tool, ppocr_root, environ)
    if root is None:
        raise CHECKOUT.not_found(looked)
    return root


def activate_ppocr(root):
    """Put checkout `root` first on sys.path and arm the plugin (it patches PaddleOCR's builders when they are
    imported, or now if they are). Refuses when a `ppocr` from elsewhere is already imported."""
    loaded = sys.modules.get("ppocr")
    if loaded is not None and not os.path.abspath(getattr(loaded, "__file__", "") or "").startswith(root + os.sep):
        raise PPOCRSetupError(f"ppocr is already imported from {loaded.__file__}, not from {root}")
    if root not in sys.path:
        sys.path.insert(0, root)
    from . import plugin  # importing the package arms the hooks
    plugin.register_ppocr()


def _config_arg(args):
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            return i + 1, args[i + 1]
        if arg.startswith("--config="):
            return i, arg.split("=", 1)[1]
    return None, None


def parse_args(argv):
    """(ppocr_root or None, tool path, tool args) from the runner's argv (without the program name)."""
    return CHECKOUT.parse_args(argv)


def prepare_args(tool_args, root):
    """The tool's arguments with the -c config checked and its (and -o's) relative input paths resolved."""
    tool_args = resolve_overrides(tool_args, root)
    at, config = _config_arg(tool_args)
    if config is None:
        return tool_args
    if not os.path.isfile(config):
        raise PPOCRSetupError(f"config not found: {config}")
    out_dir = os.path.join(tempfile.gettempdir(), f"ppbackbone-ppocr-{os.getpid()}")
    resolved, _ = resolve_config(config, root, out_dir)
    check_ppbackbone_sections(load_config(resolved), config)
    tool_args = list(tool_args)
    tool_args[at] = tool_args[at].replace(config, resolved)
    return tool_args


def run_tool(argv):
    """Locate PaddleOCR, check the -c config, arm the plugin, then run the tool as `__main__` with its arguments."""
    root, tool, tool_args = parse_args(argv)
    root = find_ppocr_root(tool, root)
    tool_args = prepare_args(tool_args, root)
    activate_ppocr(root)
    sys.argv = [tool] + tool_args
    try:
        runpy.run_path(tool, run_name="__main__")
    except NotImplementedError as err:
        if ONEDNN_INTERP_MESSAGE not in str(err):
            raise
        import paddle
        raise OneDNNInterpError(
            f"{os.path.basename(tool)}: Paddle Inference {paddle.__version__} with oneDNN (the CPU default) cannot run "
            f"this model's interp ops (a det neck's upsample: their `scale` is an array of doubles, which its oneDNN "
            f"executor does not convert; Paddle issue #79749, PaddleOCR's own det exports stop the same way); run it "
            f"with --enable_mkldnn False") from err
