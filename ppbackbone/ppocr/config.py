"""PaddleOCR config files as ppbackbone reads them, without importing PaddleOCR.

- `resolve_config(path, root, out_dir)`: PaddleOCR reads its configs' input files (`character_dict_path`,
  `infer_img`, ...) relative to the working directory, which its docs take to be the checkout. A config kept
  outside the checkout (configs/ppocr/) gets each such relative path that does not exist from the working
  directory but does in the checkout rewritten to the checkout's file. PaddleOCR configs have no includes.
  Paths into the OCR demo set (`ppbackbone://ocr_demo/...`, ppbackbone.ppocr.demo) become its folder.
- `resolve_overrides(args, root)`: the same for `-o Global.infer_img=...` style overrides and other arguments.
- `check_ppbackbone_sections(config)`: what PaddleOCR would only find out late: a rec PPBackbone needs an
  algorithm whose export input is 48 pixels high (SVTR_LCNet / SVTR_HGNet), as PaddleOCR's own rec forms do.
Used by tools/ppocr_run.py (ppbackbone.ppocr.runner).
"""
import os

import yaml

from ..config import BoundedLoader
from ..errors import ConfigError, InputFileError, check_regular_file
from .demo import expand_demo_paths

__all__ = ["PPOCRSetupError", "INPUT_PATH_KEYS", "REC_ALGORITHMS", "load_config", "resolve_config",
           "resolve_overrides", "check_ppbackbone_sections", "architectures"]

# Config keys whose values are files PaddleOCR reads (PaddleOCR's configs name them relative to the checkout).
INPUT_PATH_KEYS = ("character_dict_path", "rec_char_dict_path", "confuse_dict_path", "infer_img", "font_path",
                   "vis_font_path")
# PaddleOCR's rec algorithms whose exporter input is [None, 3, 48, -1]: the height the rec forms' eval pooling takes.
REC_ALGORITHMS = ("SVTR_LCNet", "SVTR_HGNet")


class PPOCRSetupError(ConfigError):
    """PaddleOCR could not be located / a config cannot run with PPBackbone."""


def load_config(path):
    """A PaddleOCR config file as a dict (plain YAML: anchors expanded)."""
    try:
        check_regular_file(path, "config")
        with open(path, encoding="utf-8") as f:
            cfg = yaml.load(f, Loader=BoundedLoader) or {}
    except InputFileError as err:
        raise PPOCRSetupError(str(err)) from None
    except OSError as err:
        raise PPOCRSetupError(f"cannot read config {path}: {err}") from None
    except yaml.YAMLError as err:
        raise PPOCRSetupError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise PPOCRSetupError(f"{path}: a PaddleOCR config is a mapping (Global, Architecture, ...), got "
                              f"{type(cfg).__name__}")
    return cfg


def _in_checkout(value, root, cwd):
    """The checkout's file for a relative input path missing from `cwd`, else None."""
    if not isinstance(value, str) or not value or "://" in value or os.path.isabs(os.path.expanduser(value)):
        return None
    if os.path.exists(os.path.join(cwd, value)):
        return None
    candidate = os.path.normpath(os.path.join(root, value))
    return candidate if os.path.exists(candidate) else None


def _resolve_paths(node, root, cwd, where, changes):
    if isinstance(node, dict):
        for key, value in node.items():
            found = _in_checkout(value, root, cwd) if key in INPUT_PATH_KEYS else None
            if found is not None:
                node[key] = found
                changes.append(f"{where}{key}")
            else:
                _resolve_paths(value, root, cwd, f"{where}{key}.", changes)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _resolve_paths(value, root, cwd, f"{where}{i}.", changes)


def resolve_config(config_path, root, out_dir, cwd=None):
    """`config_path` itself when every relative input path of it exists from `cwd` (default: the working
    directory) or is found nowhere, else a copy in `out_dir` (same file name) with those paths pointing into
    checkout `root`. Returns (path, [dotted keys changed])."""
    cwd = os.getcwd() if cwd is None else cwd
    changes = []
    cfg = expand_demo_paths(load_config(config_path), changes)
    if root is not None:
        _resolve_paths(cfg, root, cwd, "", changes)
    if not changes:
        return config_path, changes
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, os.path.basename(config_path))
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# {os.path.abspath(config_path)} with {', '.join(changes)} resolved against {root} by ppbackbone\n")
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
    os.replace(tmp, out)
    return out, changes


def resolve_overrides(args, root, cwd=None):
    """Tool arguments with `Section.key=relative/path` overrides of INPUT_PATH_KEYS resolved like resolve_config,
    and demo-set paths expanded in any argument."""
    cwd = os.getcwd() if cwd is None else cwd
    out = []
    for arg in expand_demo_paths(list(args)):
        key, sep, value = arg.partition("=")
        found = _in_checkout(value, root, cwd) if sep and root and key.rsplit(".", 1)[-1] in INPUT_PATH_KEYS else None
        out.append(f"{key}={found}" if found else arg)
    return out


def architectures(cfg):
    """[(dotted path, Architecture-like section)]: the Architecture, or each model of a Distillation one."""
    arch = cfg.get("Architecture") or {}
    if not isinstance(arch, dict):
        return []
    if isinstance(arch.get("Models"), dict):
        return [(f"Architecture.Models.{k}", v) for k, v in arch["Models"].items() if isinstance(v, dict)]
    return [("Architecture", arch)]


def check_ppbackbone_sections(cfg, path="<config>"):
    """Refuse what PaddleOCR would only fail on late, naming the key: a rec PPBackbone under an algorithm
    whose exporter input is not 48 pixels high. Returns the PPBackbone sections [(where, section)]."""
    found = []
    for where, arch in architectures(cfg):
        backbone = arch.get("Backbone")
        if not isinstance(backbone, dict) or backbone.get("name") != "PPBackbone":
            continue
        found.append((f"{where}.Backbone", backbone))
        algorithm = arch.get("algorithm")
        if arch.get("model_type") == "rec" and algorithm not in REC_ALGORITHMS:
            raise PPOCRSetupError(
                f"{path}: {where}.algorithm={algorithm!r} with a rec PPBackbone; use {' or '.join(REC_ALGORITHMS)} "
                f"(PaddleOCR exports those with a [3, 48, -1] input, the height the rec forms' pooling takes)")
    return found
