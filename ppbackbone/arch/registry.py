"""Model registry: `register_model`, `create_model`, `list_models`, PaddleClas/PaddleDetection aliases."""
import difflib
import fnmatch
import functools
import inspect
import numbers
from dataclasses import dataclass, field

__all__ = ["register_model", "create_model", "list_models", "model_info", "resolve_name", "ModelInfo",
           "fixed_args_builder", "check_scale", "check_choice", "PADDLECLAS_URL"]

# Where PaddleClas publishes its ImageNet weights (`<prefix><PaddleClasName>_pretrained.pdparams`).
PADDLECLAS_URL = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/legendary_models/"


@dataclass
class ModelInfo:
    """What the registry knows of one model name.

    builder: class or callable taking the keyword arguments `default_args` + the caller's overrides.
    num_params: parameter count of the default instance (trainable + frozen, without BN statistics),
        pinned by the generic tests (`test_num_params` for the smaller `test_args` instance that the
        generic suite builds when a family's full widths are too heavy for CI).
    url: where official weights are published (`create_model(..., pretrained=True)`).
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
    _MODELS[name] = entry
    for alias in entry.aliases:
        if alias in _MODELS or alias in _ALIASES:
            raise ValueError(f"Alias {alias!r} of {name!r} is already taken")
        _ALIASES[alias] = name
    return entry


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
        pretrained: None/False, True (the published weights, downloaded to the cache), or a path/URL
            of a .pdparams/.safetensors file; loaded through `load_weights`.
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
        from ..weights import load_weights
        if pretrained is True:
            if not entry.url:
                raise ValueError(f"{entry.name} has no published weights; pass a file path as pretrained=")
            pretrained = entry.url
        load_weights(model, pretrained)
    return model


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
