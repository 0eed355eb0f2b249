"""Running PaddleDetection's own tools with ppbackbone registered (no PYTHONPATH needed).

`tools/ppdet_run.py` is a thin front to `run_tool(argv)`:

    python tools/ppdet_run.py [--ppdet-root DIR] <PaddleDetection>/tools/train.py -c cfg.yml [tool args]

The PaddleDetection checkout (a folder holding `ppdet/__init__.py`) is found, in this order, from
`--ppdet-root DIR`, from the tool's own path (the nearest folder above it holding ppdet/__init__.py),
from the PADDLEDET_HOME environment variable, and last an installed `ppdet` package (paddledet
wheel). A path given explicitly that is not a checkout is an error naming it and what was looked for.

This module does not import PaddleDetection (so it can locate it first) and holds the check of a
config's `_BASE_` chain for PPBackbone sections (`check_backbone_sections`).
"""
import importlib.util
import os
import runpy
import sys
import tempfile

import yaml

__all__ = ["find_ppdet_root", "activate_ppdet", "check_backbone_sections", "resolve_config", "run_tool",
           "PPDetSetupError", "PORTABLE_KEYS"]

MARKER = os.path.join("ppdet", "__init__.py")
USAGE = "usage: python tools/ppdet_run.py [--ppdet-root DIR] /path/to/PaddleDetection/tools/<tool>.py [tool args]"
# PPBackbone keys that mean the same for every model; any other key is written for one model.
PORTABLE_KEYS = ("return_idx", "freeze_at", "freeze_stem_only", "freeze_norm")


class PPDetSetupError(ValueError):
    """PaddleDetection could not be located / a PPBackbone config chain is inconsistent."""


def _is_checkout(path):
    return os.path.isfile(os.path.join(path, MARKER))


def _checked(path, source):
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise PPDetSetupError(f"{source}={path}: no such directory (expected a PaddleDetection checkout "
                              f"holding {MARKER})")
    if not _is_checkout(path):
        raise PPDetSetupError(f"{source}={path} is not a PaddleDetection checkout: {os.path.join(path, MARKER)} "
                              f"not found")
    return path


def find_ppdet_root(tool=None, ppdet_root=None, environ=None):
    """The PaddleDetection checkout to use, or None when only an installed `ppdet` package is found.

    Args:
        tool: path of the PaddleDetection script to run (its checkout is searched above it).
        ppdet_root: an explicit checkout (--ppdet-root); wins over everything.
        environ: environment mapping (default os.environ) for PADDLEDET_HOME.
    Raises PPDetSetupError naming the path and what was looked for.
    """
    environ = os.environ if environ is None else environ
    if ppdet_root:
        return _checked(ppdet_root, "--ppdet-root")
    looked = []
    if tool:
        folder = os.path.dirname(os.path.abspath(tool))
        while True:
            if _is_checkout(folder):
                return folder
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        looked.append(f"{MARKER} in the folders above {os.path.abspath(tool)}")
    if environ.get("PADDLEDET_HOME"):
        return _checked(environ["PADDLEDET_HOME"], "PADDLEDET_HOME")
    looked.append("PADDLEDET_HOME (unset)")
    if importlib.util.find_spec("ppdet") is not None:
        return None
    looked.append("an installed `ppdet` package (not importable)")
    raise PPDetSetupError("PaddleDetection not found; looked for " + "; ".join(looked)
                          + ". Pass --ppdet-root DIR or set PADDLEDET_HOME to a PaddleDetection checkout")


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
    from . import ppdet as plugin  # registers PPBackbone
    plugin.register_ppdet()
    return sys.modules["ppdet"]


# ---------------------------------------------------------------------------- config chain check
class _TagTolerantLoader(yaml.SafeLoader):
    """Reads PaddleDetection configs without its classes: a `!Tag` value (`!COCODataSet {...}`,
    `!PiecewiseDecay`) becomes its plain mapping / list / scalar; only _BASE_ and PPBackbone are read here."""


def _untagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TagTolerantLoader.add_multi_constructor("!", _untagged)


def _load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_TagTolerantLoader) or {}
    except OSError as err:
        raise PPDetSetupError(f"cannot read config {path}: {err}") from None


def _backbone_section(path):
    """(PPBackbone section as merged by PaddleDetection's _BASE_ rules, {key: file that set it})."""
    cfg = _load_yaml(path)
    section, origin = {}, {}
    for base in cfg.get("_BASE_", []) or []:
        base = os.path.expanduser(base)
        base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        _merge(section, origin, *_backbone_section(base_path), where=path)
    own = cfg.get("PPBackbone") or {}
    if not isinstance(own, dict):
        raise PPDetSetupError(f"{path}: PPBackbone must be a mapping, got {own!r}")
    _merge(section, origin, own, {k: path for k in own}, where=path)
    return section, origin


def _merge(section, origin, new, new_origin, where):
    """section.update(new) (later files win, as in PaddleDetection), refusing model-specific keys that
    would carry over to another model."""
    if "model" in new and "model" in section and new["model"] != section["model"]:
        stale = sorted(k for k in section if k not in new and k != "model" and k not in PORTABLE_KEYS)
        if stale:
            inherited = ", ".join(f"{k}={section[k]!r} (from {origin[k]})" for k in stale)
            raise PPDetSetupError(
                f"{where}: PPBackbone.model changes from {section['model']!r} (set in {origin['model']}) to "
                f"{new['model']!r} (set in {new_origin['model']}) but would inherit {inherited}, written for "
                f"{section['model']!r}. Set them for {new['model']!r} next to its model (`key: ~` drops one); "
                f"only {', '.join(PORTABLE_KEYS)} carry over to another model")
    section.update(new)
    origin.update(new_origin)


def check_backbone_sections(config_path):
    """Check a PaddleDetection config and its _BASE_ chain: a file that changes `PPBackbone.model` must not
    silently inherit model-specific keys (lr_mult_list, use_lab, pretrained, native arguments, ...)
    written for the base's model. Returns the merged PPBackbone section ({} when there is none)."""
    return _backbone_section(os.path.abspath(config_path))[0]


# ---------------------------------------------------------------------------- shipped configs
def _base_candidates(config_path, base, root):
    config_dir = os.path.dirname(config_path)
    yield os.path.join(config_dir, base)  # PaddleDetection's own rule: next to the file
    if root is not None:  # a copy of configs/<folder>/x.yml kept outside the checkout (configs/ppdet/<folder>/)
        yield os.path.join(root, "configs", os.path.basename(config_dir), base)


def resolve_config(config_path, root, out_dir):
    """A config whose relative `_BASE_` entries all exist: `config_path` itself when they resolve next to
    it (PaddleDetection's rule), else a copy written to `out_dir` (same file name, so PaddleDetection's
    output folders keep their names) with each missing base taken from `<root>/configs/<folder>/`, where
    <folder> is the name of the config's own folder (configs/ppdet/rtdetr/x.yml -> configs/rtdetr/).
    A base found nowhere is an error naming it and the places looked at."""
    config_path = os.path.abspath(config_path)
    cfg = _load_yaml(config_path)
    bases = cfg.get("_BASE_") or []
    resolved, changed = [], False
    for base in bases:
        if os.path.isabs(os.path.expanduser(base)):
            resolved.append(base)
            continue
        tried = list(_base_candidates(config_path, base, root))
        found = next((os.path.normpath(p) for p in tried if os.path.isfile(p)), None)
        if found is None:
            raise PPDetSetupError(f"{config_path}: _BASE_ {base!r} not found; looked at "
                                  f"{', '.join(os.path.normpath(p) for p in tried)}")
        changed |= found != os.path.normpath(tried[0])
        resolved.append(found)
    if not changed:
        return config_path
    with open(config_path, encoding="utf-8") as f:
        text = f.read()
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, os.path.basename(config_path))
    body = "\n".join(_without_base_block(text.splitlines()))
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# {config_path} with _BASE_ resolved against {root} by ppbackbone\n")
        f.write("_BASE_: " + yaml.safe_dump(resolved, default_flow_style=True, width=10000).strip() + "\n")
        f.write(body + "\n")
    os.replace(tmp, out)
    return out


def _without_base_block(lines):
    """The config's lines without the `_BASE_:` entry (one line, a bracket list over lines, or a block list)."""
    out, skipping = [], False
    for line in lines:
        if line.startswith("_BASE_"):
            skipping = True
            continue
        if skipping and (not line.strip() or line[0] in " \t-]"):
            continue
        skipping = False
        out.append(line)
    return out


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
    argv = list(argv)
    root = None
    while argv and argv[0].startswith("--ppdet-root"):
        opt = argv.pop(0)
        if "=" in opt:
            root = opt.split("=", 1)[1]
        elif argv:
            root = argv.pop(0)
        else:
            raise PPDetSetupError(f"--ppdet-root needs a directory\n{USAGE}")
    if not argv or argv[0] in ("-h", "--help"):
        raise PPDetSetupError(USAGE)
    tool = argv.pop(0)
    if not os.path.isfile(tool):
        raise PPDetSetupError(f"tool script not found: {tool} (expected e.g. <PaddleDetection>/tools/train.py)"
                              f"\n{USAGE}")
    return root, os.path.abspath(tool), argv


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
