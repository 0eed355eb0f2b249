"""Model registry: `register_model`, `create_model`, `list_models`, PaddleClas/PaddleDetection aliases."""
import difflib
import fnmatch
import functools
import inspect
import numbers
import os
from dataclasses import dataclass, field

__all__ = ["register_model", "create_model", "list_models", "model_info", "resolve_name", "ModelInfo",
           "pretrained_cfg", "fixed_args_builder", "check_scale", "check_choice", "PADDLECLAS_URL",
           "paddleclas_weights", "pretrained_source"]

# Where PaddleClas publishes its ImageNet weights (`<prefix><PaddleClasName>_pretrained.pdparams`).
PADDLECLAS_URL = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/legendary_models/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What published weights expect when a family says nothing else: PaddleClas's default evaluation
# (resize the short side to 256, centre crop 224, bilinear, ImageNet mean/std).
DEFAULT_PRETRAINED_CFG = dict(input_size=(3, 224, 224), resize_short=256, interpolation="bilinear",
                              mean=IMAGENET_MEAN, std=IMAGENET_STD)


@dataclass
class ModelInfo:
    """What the registry knows of one model name.

    builder: class or callable taking the keyword arguments `default_args` + the caller's overrides.
    num_params: parameter count of the default instance (trainable + frozen, without BN statistics),
        pinned by the generic tests (`test_num_params` for the smaller `test_args` instance that the
        generic suite builds when a family's full widths are too heavy for CI).
    url: where the default official weights are published (`create_model(..., pretrained=True)`).
    weights: every published set of weights by tag ({"ssld_stage1": url, "ssld": url}); `url` is
        the one of `default_tag`. `create_model(name, pretrained="ssld")` picks one by tag.
    pretrained: what the weights expect at inference, over DEFAULT_PRETRAINED_CFG (input_size,
        resize_short, interpolation, mean, std); read it through `pretrained_cfg(name)`.
    reference: the reference implementation it is weight-compatible with.
    """
    name: str
    builder: object
    default_args: dict = field(default_factory=dict)
    aliases: tuple = ()
    family: str = ""
    num_params: int = None
    url: str = None
    reference: str = ""
    test_args: dict = field(default_factory=dict)
    test_num_params: int = None  # parameter count of the `test_args` instance, when test_args is set
    weights: dict = field(default_factory=dict)
    default_tag: str = None
    pretrained: dict = field(default_factory=dict)

    def accepted_args(self):
        """Names of the keyword arguments the builder accepts (None when it takes **kwargs)."""
        target = self.builder.__init__ if inspect.isclass(self.builder) else self.builder
        params = inspect.signature(target).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return None
        return [n for n, p in params.items() if n != "self"]


_MODELS = {}
_ALIASES = {}


def register_model(name, builder, default_args=None, aliases=(), **info):
    """Register `name` (snake_case) built by `builder(**default_args, **overrides)`.

    `aliases` are other accepted spellings (PaddleClas/PaddleDetection names). Extra keyword
    arguments fill ModelInfo (family, num_params, url, reference, test_args). Returns the ModelInfo.
    """
    if name in _MODELS or name in _ALIASES:
        raise ValueError(f"Model name {name!r} is registered twice")
    entry = ModelInfo(name=name, builder=builder, default_args=dict(default_args or {}),
                      aliases=tuple(aliases), **info)
    _check_weights(entry)
    _MODELS[name] = entry
    for alias in entry.aliases:
        if alias in _MODELS or alias in _ALIASES:
            raise ValueError(f"Alias {alias!r} of {name!r} is already taken")
        _ALIASES[alias] = name
    return entry


def _check_weights(entry):
    """`url`, `weights` and `default_tag` agree: the default URL is the default tag's."""
    entry.weights = dict(entry.weights)
    if entry.url and not entry.weights:
        entry.default_tag = entry.default_tag or "default"
        entry.weights = {entry.default_tag: entry.url}
    if entry.weights:
        entry.default_tag = entry.default_tag or next(iter(entry.weights))
        if entry.default_tag not in entry.weights:
            raise ValueError(f"{entry.name}: default_tag {entry.default_tag!r} is not among its weights "
                             f"{sorted(entry.weights)}")
        if entry.url not in (None, entry.weights[entry.default_tag]):
            raise ValueError(f"{entry.name}: url {entry.url} differs from its default tag's "
                             f"{entry.weights[entry.default_tag]}")
        entry.url = entry.weights[entry.default_tag]
    unknown = sorted(set(entry.pretrained) - set(DEFAULT_PRETRAINED_CFG))
    if unknown:
        raise ValueError(f"{entry.name}: unknown pretrained-config keys {unknown}; known: "
                         f"{', '.join(DEFAULT_PRETRAINED_CFG)}")


def paddleclas_weights(paddleclas_name, *tags):
    """{tag: URL} of PaddleClas weights named `<name>_<tag>_pretrained.pdparams` ("in1k": no suffix)."""
    return {tag: f"{PADDLECLAS_URL}{paddleclas_name}{'' if tag == 'in1k' else '_' + tag}_pretrained.pdparams"
            for tag in tags}


def pretrained_cfg(name, tag=None):
    """What a model's published weights expect at inference, as a dict:

    `model`, `tag` and `url` (None when nothing is published), `tags` (all of them), `input_size`
    (C, H, W), `resize_short` and `crop_pct` (= H / resize_short: resize the short side, then
    centre-crop H x W), `interpolation`, `mean`, `std`. `tag` picks one set of weights (default:
    the model's default tag).
    """
    entry = model_info(name)
    if tag is not None and tag not in entry.weights:
        raise ValueError(f"{entry.name} has no weights tagged {tag!r}; its tags: "
                         f"{', '.join(entry.weights) or 'none (no published weights)'}")
    tag = tag if tag is not None else entry.default_tag
    cfg = dict(DEFAULT_PRETRAINED_CFG, **entry.pretrained)
    cfg["input_size"] = tuple(cfg["input_size"])
    cfg["crop_pct"] = round(cfg["input_size"][1] / cfg["resize_short"], 4)
    return dict(model=entry.name, tag=tag, url=entry.weights.get(tag), tags=list(entry.weights), **cfg)


def resolve_name(name):
    """The registered snake_case name for `name` or one of its aliases; an error suggests close names."""
    if name in _MODELS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    # registered names last, so they win over an alias spelled the same but for case
    lowered = {k.lower(): k for k in list(_ALIASES) + list(_MODELS)}
    if str(name).lower() in lowered:
        return resolve_name(lowered[str(name).lower()])
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(lowered[c] for c in close)}?" if close else ""
    raise ValueError(f"Unknown model {name!r}.{hint} (list_models() shows all {len(_MODELS)} names)")


def model_info(name):
    """The ModelInfo of a registered name or alias."""
    return _MODELS[resolve_name(name)]


def list_models(pattern="*", family=None, include_aliases=False):
    """Sorted registered names matching the shell-style `pattern` (case-insensitive)."""
    names = list(_MODELS)
    if include_aliases:
        names += list(_ALIASES)
    if family is not None:
        names = [n for n in names if _MODELS[resolve_name(n)].family == family]
    return sorted(n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower()))


def create_model(name, pretrained=None, num_classes=1000, out_indices=None, **overrides):
    """Build a registered model.

    Args:
        name: snake_case name (`hgnetv2_b4`) or alias (`PPHGNetV2_B4`).
        pretrained: None/False, True (the default published weights, downloaded to the cache), a
            weight tag of the model ("ssld", see `pretrained_cfg(name)["tags"]`), or a path/URL of a
            .pdparams/.safetensors file; loaded through `load_weights`.
        num_classes: classifier size (`class_num` is accepted too, as in PaddleClas YAML); 0 for no fc.
        out_indices: stage indices to return as feature maps (feature mode: no classifier head).
        **overrides: any argument of the family's constructor (use_lab, lr_mult_list, freeze_at, ...).
    """
    entry = model_info(name)
    if "class_num" in overrides:
        num_classes = overrides.pop("class_num")
    args = dict(entry.default_args)
    args.update(overrides)
    args["num_classes"] = num_classes
    if out_indices is not None:
        args["out_indices"] = out_indices
    accepted = entry.accepted_args()
    if accepted is not None:
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            raise TypeError(f"{entry.name} got unknown argument(s) {unknown}; accepted: {', '.join(accepted)}")
    model = entry.builder(**args)
    model.model_name = entry.name
    if pretrained:
        from ..weights.io import load_weights
        load_weights(model, _pretrained_source(entry, pretrained))
    return model


def pretrained_source(name, pretrained):
    """The URL or path that `pretrained` (True, a weight tag such as "ssld", or a path/URL) names for the registered
    model `name`; ValueError for a tag it does not have."""
    return _pretrained_source(model_info(name), pretrained)


def _pretrained_source(entry, pretrained):
    """The URL or path that `pretrained` (True, a weight tag, or a path/URL) names for `entry`."""
    if pretrained is True:
        if not entry.url:
            raise ValueError(f"{entry.name} has no published weights; pass a file path as pretrained=")
        return entry.url
    if isinstance(pretrained, str) and pretrained in entry.weights:
        return entry.weights[pretrained]
    if isinstance(pretrained, str) and entry.weights and not any(c in pretrained for c in "/\\.") \
            and not os.path.exists(pretrained):
        raise ValueError(f"pretrained={pretrained!r} is neither a weights file nor a weight tag of {entry.name} "
                         f"(its tags: {', '.join(entry.weights)})")
    return pretrained


# ---------------------------------------------------------------------------- helpers for families
# What every family's registration and constructor share; families import them from here, never from
# each other.
def fixed_args_builder(cls, name, fixed=None, siblings=None, choices=None, defaults=None):
    """Builder of a registered name whose arguments `fixed` (e.g. {"scale": 0.75}) are set by the name.

    Passing a fixed argument with another value is an error naming the allowed value and the other
    variants (`siblings`: {name: "scale=0.75"}). `choices` ({"scale": (0.25, ...)}) restricts an
    argument to a table instead; `defaults` fill arguments the caller did not pass. The builder keeps
    `cls`'s signature, so the registry's unknown-argument check still applies.
    """
    fixed, choices, defaults = dict(fixed or {}), dict(choices or {}), dict(defaults or {})

    @functools.wraps(cls.__init__)
    def build(**kwargs):
        for key, value in fixed.items():
            if key in kwargs and not _same_value(kwargs[key], value):
                hint = ""
                if siblings:
                    hint = " Other variants: " + ", ".join(f"{n} ({v})" for n, v in siblings.items() if n != name) + "."
                raise ValueError(f"{name} has {key}={value!r}, fixed by its name; got {key}={kwargs[key]!r}."
                                 f"{hint}")
            kwargs[key] = value
        for key, allowed in choices.items():
            if key in kwargs and not any(_same_value(kwargs[key], a) for a in allowed):
                raise ValueError(f"{name}: {key}={kwargs[key]!r} is not in its table; allowed: "
                                 f"{', '.join(map(repr, allowed))}")
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        return cls(**kwargs)

    build.__name__ = build.__qualname__ = f"build_{name}"
    return build


def _same_value(a, b):
    """Equal, or the same number (1 == 1.0, but never a bool for a number)."""
    if a == b:
        return True
    return (isinstance(a, numbers.Number) and isinstance(b, numbers.Number) and not isinstance(a, bool)
            and abs(float(a) - float(b)) < 1e-9)


def check_scale(scale):
    """A width multiplier must be a positive number; returns it as a float."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Number) or not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return float(scale)


def check_choice(arg, value, allowed):
    """`value` of argument `arg` must be one of `allowed`; returns it."""
    if value not in allowed:
        raise ValueError(f"{arg}={value!r} is not supported; allowed: {', '.join(map(repr, allowed))}")
    return value
