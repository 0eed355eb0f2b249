"""YAML configs in PaddleClas's schema: loading, `_BASE_` inheritance, `-o a.b.c=value` overrides.

Errors name the file or key, the value, and what was expected.
"""
import copy
import os
import re
import reprlib

import yaml

from .errors import (ConfigError, InputFileError, LimitError, check_keys, check_op_list,  # noqa: F401 (re-exported)
                     check_regular_file, get_value, limit, limit_hint, suggest, warn_once)

__all__ = ["load_config", "apply_overrides", "parse_override", "ConfigError", "ConfigLoader", "BoundedLoader",
           "YamlLimitError", "load_yaml",
           "KNOWN_SECTIONS", "validate_config", "check_keys", "check_op_list", "get_value", "warn_once"]

# Top-level sections of a PaddleClas config.
KNOWN_SECTIONS = ("Global", "AMP", "EMA", "Arch", "Loss", "Optimizer", "DataLoader", "Metric", "Infer")


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader within the limits yaml_max_depth (nesting, checked before PyYAML recurses) and
    yaml_max_nodes (values once aliases are written out; an alias inside its own anchor is refused): a
    YamlLimitError (a ConfigError) naming the source and line. For every YAML a user hands us (configs,
    inference.yml, PaddleDetection/PaddleOCR configs)."""

    def compose_node(self, parent, index):
        # PyYAML composes nested values recursively: a limit here, before the interpreter's
        depth = self.yaml_depth = getattr(self, "yaml_depth", 0) + 1
        if depth > limit("yaml_max_depth"):
            _too_deep(self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.yaml_depth = depth - 1

    def fetch_flow_collection_start(self, token_class):
        # the scanner's work per token grows with the number of open [ and {: limited before the composer sees them
        if self.flow_level >= limit("yaml_max_depth"):
            _too_deep(self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_document(self):
        node = super().compose_document()
        _check_expanded_size(node)
        return node


class ConfigLoader(BoundedLoader):
    """PyYAML's safe loader with two fixes for configs.

    - Numbers in exponent form without a dot (`1e12`, `5e-4`) are floats, as in YAML 1.2 and as people mean
      them; YAML 1.1 (PyYAML) reads them as strings.
    - A key repeated in one mapping is an error naming the file, the key and both lines; PyYAML keeps the last
      one silently.
    """

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ConfigError(f"{_source(key_node.start_mark)}: duplicate key {key!r} in the same mapping, at "
                                  f"lines {first_line[key]} and {line}; YAML would silently keep only the last one. "
                                  f"Remove one of them.")
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


class YamlLimitError(ConfigError, LimitError):
    """YAML nested deeper, or expanding (through aliases) to more values, than the named limits allow."""


def _too_deep(mark):
    raise YamlLimitError(f"{_source(mark)}: values nested more than {limit('yaml_max_depth')} levels deep at line "
                         f"{mark.line + 1} ({limit_hint('yaml_max_depth')})")


def _check_expanded_size(root):
    """YamlLimitError when the document, with every alias (*name) written out, has more values than the limit
    yaml_max_nodes (`&a [*b, *b]` ten levels deep is a few lines and a billion values), or an alias inside its
    own anchor. Each node is counted once, children first, without recursion."""
    most = limit("yaml_max_nodes")
    sizes, active, stack = {}, {id(root)}, [(root, iter(_node_children(root)))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            active.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _node_children(node))
            if sizes[id(node)] > most:
                raise YamlLimitError(f"{_source(node.start_mark)}: the value at line {node.start_mark.line + 1} expands "
                                     f"to more than {most} values once its aliases (*name) are written out "
                                     f"({limit_hint('yaml_max_nodes')})")
        elif id(child) in active:
            raise YamlLimitError(f"{_source(child.start_mark)}: the alias at line {child.start_mark.line + 1} refers to "
                                 f"a value that contains it (an endless value)")
        elif id(child) not in sizes:
            active.add(id(child))
            stack.append((child, iter(_node_children(child))))


def _node_children(node):
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else ()


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _source(mark):
    return "YAML text" if mark.name in ("<unicode string>", "<string>", "<byte string>") else mark.name


def load_yaml(stream):
    """Parse YAML text or an open file with ConfigLoader (see there): nesting and alias expansion within the
    limits yaml_max_depth and yaml_max_nodes. Raises yaml.YAMLError or ConfigError (YamlLimitError past a limit)."""
    try:
        return yaml.load(stream, Loader=ConfigLoader)
    except RecursionError:  # only when yaml_max_depth was raised past what the interpreter's stack holds
        raise YamlLimitError(f"{getattr(stream, 'name', 'YAML text')}: values nested too deeply for this reader "
                             f"({limit_hint('yaml_max_depth')}; lower it)") from None


def _read_yaml(path):
    try:
        check_regular_file(path, "Config file")
    except InputFileError as err:
        raise ConfigError(str(err)) from None
    with open(path, encoding="utf-8") as f:
        try:
            data = load_yaml(f) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"Config file {path} is not valid YAML: {err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"Config file {path} is not UTF-8 text ({err.reason} at byte {err.start}): is it a "
                              f"YAML config?") from None
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
    given = data.pop("_BASE_", None)
    bases = [] if given is None else [given] if isinstance(given, str) else given
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: _BASE_={given!r} is not valid: expected a config path or a "
                          f"list of config paths (relative to this file), e.g. _BASE_: ../base.yaml")
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
        value = load_yaml(raw) if raw.strip() else ""
    except ConfigError as err:
        raise ConfigError(f"Override {text!r}: {err}") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"Override {text!r}: the value {raw!r} is not valid YAML ({problem}). A list is written "
                          f"[0.1, 0.2], a mapping {{a: 1}}; to pass it as text, quote it: -o \"{key}='...'\"") from None
    return key.split("."), value


def apply_overrides(config, overrides):
    """Apply `-o` overrides in order. A new key may be added inside an existing section; a path
    through a missing section or a non-mapping is an error naming the key."""
    config = copy.deepcopy(config)
    for text in overrides or []:
        parts, value = parse_override(text)
        if parts[0] not in config and parts[0] not in KNOWN_SECTIONS:
            raise ConfigError(f"Override {text!r}: unknown section {parts[0]!r}."
                              f"{suggest(parts[0], KNOWN_SECTIONS)} Sections: {', '.join(KNOWN_SECTIONS)}")
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
                                      f"{suggest(part, node.keys())}")
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


def load_config(path, overrides=None, validate=True):
    """Read a config (following `_BASE_`), apply `-o` overrides, and check it: sections, the keys
    inside them (unknown keys are errors with a suggestion; PaddleClas keys we recognise but do not
    support are warned about once, by name), op lists (losses, metrics, transforms, batch ops),
    the optimizer and lr schedule, and the model name."""
    config = apply_overrides(_load_with_bases(path), overrides)
    unknown = [k for k in config if k not in KNOWN_SECTIONS and k not in UNSUPPORTED_SECTIONS]
    if unknown:
        raise ConfigError(f"{path}: unknown top-level section(s) {unknown}.{suggest(unknown[0], KNOWN_SECTIONS)}"
                          f" Known: {', '.join(KNOWN_SECTIONS)}")
    arch = config.get("Arch")
    if not isinstance(arch, dict) or "name" not in arch:
        raise ConfigError(f"{path}: Arch.name is required (a model name such as hgnetv2_b4; "
                          f"see ppbackbone.list_models())")
    if validate:
        try:
            validate_config(config)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    return config


# ------------------------------------------------------------------------------------------------
# schema validation

# Keys each section accepts. Arch passes everything to create_model (which checks it); the
# Optimizer, lr, Loss, Metric and data sections are checked against their builders.
SECTION_KEYS = {
    "Global": ("checkpoints", "pretrained_model", "output_dir", "device", "save_interval", "eval_during_train",
               "eval_interval", "start_eval_epoch", "epochs", "print_batch_step", "use_visualdl", "image_shape",
               "save_inference_dir", "seed", "update_freq", "overwrite", "eval_mode", "retrieval_feature_from",
               "feature_normalize", "sim_block_size", "to_static", "allow_nonfinite_weights", "cpu_threads"),
    "AMP": ("use_amp", "scale_loss", "use_dynamic_loss_scaling", "level", "use_promote", "dtype"),
    "EMA": ("decay",),
    "Infer": ("infer_imgs", "batch_size", "transforms", "PostProcess"),
    "Loss": ("Train", "Eval"),
    "Metric": ("Train", "Eval"),
    "DataLoader": ("Train", "Eval"),
}
# PaddleClas keys we know but do not implement: a warning (once, by name) when they are set to
# something other than an off value.
UNSUPPORTED_KEYS = {
    "Global": {               "use_dali": "DALI loaders are not supported; the paddle.io loader is used",
               "image_channel": "3-channel images only", "train_mode": "plain supervised training only",
               "use_multilabel": "single-label classification only",
               "use_distillation": "use Arch.name: DistillationModel", "distillation": "use Arch.name: "
               "DistillationModel", "re_ranking": "retrieval ranks by cosine similarity (no k-reciprocal re-ranking)",
               "profiler_options": "no profiler hooks",
               "uniform_output_enabled": "export is tools/export.py", "pdx_model_name": "PaddleX metadata",
               "use_sync_bn": "no SyncBatchNorm", "pretrained_list": "Arch.pretrained_list (DistillationModel)",
               "freeze_params_list": "Arch.freeze_params_list (DistillationModel) or Arch.freeze_at",
               "models": "Arch.models (DistillationModel)"},
    "AMP": {"use_fp16_test": "evaluation runs in float32"},
}
UNSUPPORTED_SECTIONS = ("Slim",)
DATALOADER_MODE_KEYS = ("dataset", "sampler", "loader")
SAMPLER_KEYS = {"DistributedBatchSampler": ("name", "batch_size", "drop_last", "shuffle"),
                "BatchSampler": ("name", "batch_size", "drop_last", "shuffle"),
                "MultiScaleSampler": ("name", "scales", "first_bs", "divided_factor", "is_training", "shuffle"),
                "PKSampler": ("name", "batch_size", "sample_per_id", "shuffle", "drop_last", "id_list", "ratio",
                              "sample_method"),
                "RASampler": ("name", "batch_size", "shuffle", "drop_last", "num_repeats")}
# Samplers PaddleClas has that we replace by DistributedBatchSampler (with a warning).
UNSUPPORTED_SAMPLERS = {"DistributedRandomIdentitySampler": ("num_instances",)}
# Arch names that are not registry models but built of them (PaddleClas's ppcls/arch/__init__.py).
COMPOUND_MODELS = ("RecModel", "DistillationModel")
# DataLoader.Eval of a retrieval config: a gallery and a query set, each a loader section.
RETRIEVAL_SETS = ("Gallery", "Query")
LOADER_KEYS = ("num_workers", "use_shared_memory", "persistent_workers")


def _section(config, name):
    value = config.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"section {name} must be a mapping, got {type(value).__name__}: {value!r}")
    return value


def validate_config(config):
    """Check every section's keys against what ppbackbone implements (see module docstring).
    Raises ConfigError naming the first bad key; returns the config unchanged."""
    from .arch.registry import resolve_name
    from .data.transforms import TRANSFORMS, UNSUPPORTED_TRANSFORMS
    from .engine.optim import check_optimizer_config
    from .engine.losses import LOSSES
    from .engine.metrics import METRICS

    check_names(config)
    for key, (ok, expect) in VALUE_CHECKS.items():
        get_value(config, key, None, check=lambda v, ok=ok: ok(v), expect=expect)
    for name in ("Global", "AMP", "EMA", "Infer"):
        check_keys(_section(config, name), SECTION_KEYS[name], name, UNSUPPORTED_KEYS.get(name))
    if config["Arch"]["name"] not in COMPOUND_MODELS:
        try:
            resolve_name(config["Arch"]["name"])
        except ValueError as err:
            raise ConfigError(f"Arch.name: {err}{' (or RecModel / DistillationModel)'}") from None
    check_arch_values(config["Arch"])
    for section, registry in (("Loss", LOSSES), ("Metric", METRICS)):
        body = _section(config, section)
        check_keys(body, SECTION_KEYS[section], section)
        for mode, entries in body.items():
            check_op_list(entries, registry, f"{section}.{mode}")
    if "Optimizer" in config:
        check_optimizer_config(config["Optimizer"])
    loaders = _section(config, "DataLoader")
    check_keys(loaders, SECTION_KEYS["DataLoader"], "DataLoader")
    for mode, body in loaders.items():
        if mode == "Eval" and isinstance(body, dict) and any(k in body for k in RETRIEVAL_SETS):
            check_keys(body, RETRIEVAL_SETS, "DataLoader.Eval")
            for part, section in body.items():
                _validate_loader(section, f"DataLoader.Eval.{part}")
        else:
            _validate_loader(body, f"DataLoader.{mode}")
    infer = _section(config, "Infer")
    if infer.get("transforms") is not None:
        check_op_list(infer["transforms"], TRANSFORMS, "Infer.transforms", unsupported=UNSUPPORTED_TRANSFORMS)
    if isinstance(infer.get("PostProcess"), dict):
        check_keys(infer["PostProcess"], ("name", "topk", "class_id_map_file", "savefile"), "Infer.PostProcess")
    return config


def check_names(node, where="", seen=None):
    """ConfigError naming the key when a `name` (of a model, optimizer, schedule, dataset, sampler, head...)
    anywhere in `node` holds something other than a string. Shared values (YAML aliases) are visited once."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        path = f"{where}.{key}" if where else str(key)
        if key == "name" and value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}={reprlib.repr(value)} is not valid: expected a name (a string), e.g. "
                              f"{path}=hgnetv2_b0")
        if isinstance(value, (dict, list)):
            check_names(value, path, seen)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value):
    return isinstance(value, list) and bool(value) and all(_is_int(v) for v in value)


# Arch keys that mean the same in every family: (check, what is expected). The model checks the rest
# (and these again, against its own layout: lengths, ranges).
ARCH_VALUE_CHECKS = {
    "class_num": (lambda v: _is_int(v) and v >= 0, "an integer >= 0, the number of classes"),
    "lr_mult_list": (lambda v: isinstance(v, (list, tuple)) and bool(v) and all(_is_number(x) and x >= 0 for x in v),
                     "a list of numbers >= 0, one per group (stem first), e.g. [0.1, 0.2, 0.4, 0.6, 0.8]"),
    "out_indices": (_int_list, "a list of stage indices, e.g. [1, 2, 3]"),
    "return_idx": (_int_list, "a list of stage indices, e.g. [1, 2, 3]"),
    "freeze_at": (_is_int, "an integer: -1 (nothing), 0 (stem) or a stage index"),
    "freeze_stem_only": (lambda v: isinstance(v, bool), "True or False"),
    "freeze_norm": (lambda v: isinstance(v, bool), "True or False"),
    "use_lab": (lambda v: isinstance(v, bool), "True or False"),
    "use_last_conv": (lambda v: isinstance(v, bool), "True or False"),
    "pretrained": (lambda v: isinstance(v, (bool, str)), "True/False or a weights path or URL"),
    "class_expand": (lambda v: _is_int(v) and v > 0, "an integer > 0"),
    "dropout_prob": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "drop_rate": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "lab_lr": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
}


# Other values with one meaning wherever they are read (the readers check the rest).
VALUE_CHECKS = {
    "Global.image_shape": (lambda v: isinstance(v, list) and len(v) == 3 and all(_is_int(x) and x > 0 for x in v),
                           "[3, height, width] with positive integer sizes, e.g. [3, 224, 224]"),
    "Infer.PostProcess.topk": (lambda v: _is_int(v) and v >= 1, "an integer >= 1, the classes shown per image"),
}


def check_arch_values(arch):
    """ConfigError naming the Arch key, its value and what it takes, for the keys in ARCH_VALUE_CHECKS."""
    for key, (ok, expect) in ARCH_VALUE_CHECKS.items():
        value = arch.get(key)
        if value is not None and not ok(value):
            raise ConfigError(f"Arch.{key}={value!r} is not valid: expected {expect}")


def _validate_loader(body, where):
    """Check one loader section (dataset, sampler, loader) of DataLoader."""
    from .data.batch_ops import BATCH_OPS
    from .data.dataset import DATASETS, dataset_keys
    from .data.transforms import TRANSFORMS, UNSUPPORTED_TRANSFORMS
    check_keys(body, DATALOADER_MODE_KEYS, where)
    dataset = body.get("dataset") or {}
    if dataset.get("name", "ImageNetDataset") not in DATASETS:
        raise ConfigError(f"{where}.dataset.name {dataset.get('name')!r} is not supported."
                          f"{suggest(dataset.get('name'), DATASETS)} Known: {', '.join(DATASETS)}")
    check_keys(dataset, ("name",) + tuple(dataset_keys(dataset.get("name", "ImageNetDataset"))),
               f"{where}.dataset")
    check_op_list(dataset.get("transform_ops"), TRANSFORMS, f"{where}.dataset.transform_ops",
                  unsupported=UNSUPPORTED_TRANSFORMS)
    check_op_list(dataset.get("batch_transform_ops"), BATCH_OPS, f"{where}.dataset.batch_transform_ops",
                  injected=("class_num",))
    sampler = body.get("sampler") or {}
    name = sampler.get("name", "DistributedBatchSampler") if isinstance(sampler, dict) else None
    if name in UNSUPPORTED_SAMPLERS:
        check_keys(sampler, ("name", "batch_size", "drop_last", "shuffle") + UNSUPPORTED_SAMPLERS[name],
                   f"{where}.sampler")
    elif name in SAMPLER_KEYS:
        check_keys(sampler, SAMPLER_KEYS[name], f"{where}.sampler")
    else:
        raise ConfigError(f"{where}.sampler.name {name!r} is not supported.{suggest(name, SAMPLER_KEYS)} "
                          f"Known: {', '.join(SAMPLER_KEYS)}")
    check_keys(body.get("loader") or {}, LOADER_KEYS, f"{where}.loader")
