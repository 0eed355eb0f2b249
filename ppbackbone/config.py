"""YAML configs in PaddleClas's schema: loading, `_BASE_` inheritance, `-o a.b.c=value` overrides.

Errors name the file or key, the value, and what was expected.
"""
import copy
import difflib
import os

import yaml

__all__ = ["load_config", "apply_overrides", "parse_override", "build_model", "ConfigError",
           "KNOWN_SECTIONS"]

# Top-level sections of a PaddleClas config.
KNOWN_SECTIONS = ("Global", "AMP", "EMA", "Arch", "Loss", "Optimizer", "DataLoader", "Metric", "Infer")


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message says which and why."""


def _read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"Config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _merge(base, update):
    """Deep-merge `update` into a copy of `base` (mappings merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_with_bases(path, seen=()):
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"_BASE_ cycle: {' -> '.join(seen + (path,))}")
    data = _read_yaml(path)
    bases = data.pop("_BASE_", [])
    bases = [bases] if isinstance(bases, str) else list(bases)
    merged = {}
    for base in bases:
        base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        merged = _merge(merged, _load_with_bases(base_path, seen + (path,)))
    return _merge(merged, data)


def parse_override(text):
    """'a.b.c=value' -> (['a', 'b', 'c'], value) with the value typed as YAML reads it."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like Section.key=value (e.g. Global.epochs=10)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"Override {text!r} has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _suggest(name, options):
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=3, cutoff=0.6)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def apply_overrides(config, overrides):
    """Apply `-o` overrides in order. A new key may be added inside an existing section; a path
    through a missing section or a non-mapping is an error naming the key."""
    config = copy.deepcopy(config)
    for text in overrides or []:
        parts, value = parse_override(text)
        if parts[0] not in config and parts[0] not in KNOWN_SECTIONS:
            raise ConfigError(f"Override {text!r}: unknown section {parts[0]!r}."
                              f"{_suggest(parts[0], KNOWN_SECTIONS)} Sections: {', '.join(KNOWN_SECTIONS)}")
        node = config
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"Override {text!r}: {'.'.join(parts[:depth + 1])} is not an index "
                                      f"of a {len(node)}-entry list")
                node = node[int(part)]
                continue
            if part not in node:
                if depth == 0:
                    node[part] = {}
                else:
                    raise ConfigError(f"Override {text!r}: no key {'.'.join(parts[:depth + 1])!r}."
                                      f"{_suggest(part, node.keys())}")
            node = node[part]
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"Override {text!r}: {'.'.join(parts[:depth + 1])} is a value, not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"Override {text!r}: {last!r} is not an index of a {len(node)}-entry list")
            node[int(last)] = value
        else:
            node[last] = value
    return config


def load_config(path, overrides=None):
    """Read a config (following `_BASE_`), apply `-o` overrides, and check its sections."""
    config = apply_overrides(_load_with_bases(path), overrides)
    unknown = [k for k in config if k not in KNOWN_SECTIONS]
    if unknown:
        raise ConfigError(f"{path}: unknown top-level section(s) {unknown}.{_suggest(unknown[0], KNOWN_SECTIONS)}"
                          f" Known: {', '.join(KNOWN_SECTIONS)}")
    arch = config.get("Arch")
    if not isinstance(arch, dict) or "name" not in arch:
        raise ConfigError(f"{path}: Arch.name is required (a model name such as hgnetv2_b4; "
                          f"see ppbackbone.list_models())")
    return config


def build_model(config, **extra):
    """Build the model the config's `Arch` section names. `class_num`, `pretrained` and any other
    Arch key go to create_model; `extra` overrides them (e.g. out_indices for feature export)."""
    from .arch import create_model
    arch = dict(config["Arch"])
    arch.update(extra)
    name = arch.pop("name")
    try:
        return create_model(name, **arch)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Arch section: {err}") from None
