"""PaddleDetection config files as ppbackbone reads them, without importing PaddleDetection.

- `check_backbone_sections(path)`: a file of a `_BASE_` chain that changes `PPBackbone.model` must not
  silently inherit the base's model-specific keys (lr_mult_list, use_lab, pretrained, native arguments ...).
- `resolve_config(path, root, out_dir)`: a config kept outside a PaddleDetection checkout
  (configs/ppdet/<folder>/) gets its relative `_BASE_` entries from the checkout's configs/<folder>/.
Used by tools/ppdet_run.py (ppbackbone.ppdet.runner) and ppbackbone.ppdet.load_config.
"""
import os

import yaml

from ..config import BoundedLoader
from ..errors import ConfigError, InputFileError, check_regular_file

__all__ = ["PPDetSetupError", "check_backbone_sections", "resolve_config", "PORTABLE_KEYS"]

# PPBackbone keys that mean the same for every model; any other key is written for one model.
PORTABLE_KEYS = ("return_idx", "freeze_at", "freeze_stem_only", "freeze_norm")


class PPDetSetupError(ConfigError):
    """PaddleDetection could not be located / a PPBackbone config chain is inconsistent."""


class _TagTolerantLoader(BoundedLoader):
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
        check_regular_file(path, "config")
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_TagTolerantLoader) or {}
    except InputFileError as err:
        raise PPDetSetupError(str(err)) from None
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
