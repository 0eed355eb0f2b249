"""Model registry: `register_model`, `create_model`, `list_models`, PaddleClas/PaddleDetection aliases."""
import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field

__all__ = ["register_model", "create_model", "list_models", "model_info", "resolve_name", "ModelInfo"]


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
