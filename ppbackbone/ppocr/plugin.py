"""PaddleOCR plugin: any ppbackbone model as the `Backbone` of a PaddleOCR config.

    import ppbackbone.ppocr          # PaddleOCR's backbone builder now knows `name: PPBackbone`

Two ways to fill the section, in place of `name: PPLCNetV3` / `PPHGNetV2_B4` / ...:

    Architecture:
      model_type: det
      algorithm: DB
      Backbone:                      # 1. the native section pasted as it is, `name` moved to `model`
        name: PPBackbone
        model: PPLCNetV3
        scale: 0.75
        det: True

      Backbone:                      # 2. a ppbackbone name with ppbackbone's arguments
        name: PPBackbone
        model: hgnetv2_b0            # any ppbackbone name or alias
        out_indices: [0, 1, 2, 3]    # det: optional, the stages at strides 4, 8, 16, 32 by default
        # any other create_model argument: lr_mult_list, freeze_at, freeze_norm, ...

A native section (`model` = a PaddleOCR class registered in ppbackbone.arch.native with host "PaddleOCR")
takes exactly that class's arguments and defaults and builds a model that is key for key PaddleOCR's
backbone (names, order, shapes, learning rates, trainability). `pretrained` (a weights file for ppbackbone's
load_weights) is accepted in both forms, except by a native class with its own `pretrained` argument
(PPHGNetV2_B4, PPLCNet, PPLCNetV2_base, ...): there it is that argument, as in PaddleOCR.

PaddleOCR's contract, kept by the model returned (it *is* the ppbackbone model, no wrapper, so parameter
names stay `backbone.<PaddleOCR's names>` and PaddleOCR checkpoints load unchanged):
- `in_channels` in (PaddleOCR's model passes it; ppbackbone models take 3-channel images);
- `out_channels` out: a list of 4 for det (its necks DBFPN / RSEFPN / LKPAN take 4 maps at strides
  4, 8, 16, 32, checked here), an int for rec (the rec forms end with PaddleOCR's pooling to height 1);
- `rep()` and `is_repped` on every re-parameterizable block (PaddleOCR's exporter calls them).

PaddleOCR has no plug-in hook: its `build_backbone` imports its classes inside the function and evals
a name from a support list, and `ppocr.modeling.architectures.base_model` binds the function at import.
`register_ppocr()` wraps the function in both modules (never editing PaddleOCR's files); the wrapper
builds `name: PPBackbone` sections and passes every other section to PaddleOCR's own builder.
"""
import functools

from ..arch import create_model
from ..arch.native import build_native, is_native, native_info, native_names
from ..arch.registry import list_models, resolve_name
from ..errors import ConfigError

__all__ = ["PPBackbone", "build_backbone", "create_backbone", "register_ppocr", "wrap_builder", "DET_STRIDES",
           "MODEL_TYPES", "BUILDER_MODULES"]

HOST = "PaddleOCR"
MODEL_TYPES = ("det", "rec")
# PaddleOCR's det necks (DBFPN, RSEFPN, LKPAN, ...) upsample by 2 from level to level and its det heads by 4.
DET_STRIDES = [4, 8, 16, 32]
# The modules whose `build_backbone` PaddleOCR calls: where the function lives, and where BaseModel reads it.
BUILDER_MODULES = ("ppocr.modeling.backbones", "ppocr.modeling.architectures.base_model")
_WHERE = "Architecture.Backbone (name: PPBackbone)"


def _det_indices(backbone, model, out_indices):
    """The stage indices a det model returns: the given ones, else the stages at DET_STRIDES."""
    if out_indices is not None:
        return out_indices
    by_stride = {}
    for i, info in enumerate(backbone.feature_info):
        by_stride.setdefault(info["stride"], i)
    if all(s in by_stride for s in DET_STRIDES):
        return [by_stride[s] for s in DET_STRIDES]
    raise ConfigError(f"{_WHERE}: model {model} has stages at strides {[f['stride'] for f in backbone.feature_info]}; "
                      f"PaddleOCR's det necks take 4 maps at strides {DET_STRIDES}")


def _preset(model, model_type, section):
    """A ppbackbone name with ppbackbone's arguments, in the form `model_type` needs."""
    try:
        name = resolve_name(model)
    except ValueError as err:
        raise ConfigError(f"{_WHERE}: model: {model!r} is neither a PaddleOCR class ppbackbone builds "
                          f"({', '.join(native_names(HOST))}) nor a ppbackbone name: {err}") from None
    out_indices = section.pop("out_indices", None)
    if model_type == "rec":
        if out_indices is not None:
            raise ConfigError(f"{_WHERE}: out_indices={out_indices} with model_type rec; a rec backbone returns "
                              f"one pooled map (use a rec form such as {', '.join(list_models('*_rec'))})")
        return create_model(name, **section)
    backbone = create_model(name, out_indices=out_indices, **section)
    if backbone.out_indices is None:  # a classifier name: its stages at the det strides
        backbone = create_model(name, out_indices=_det_indices(backbone, model, None), **section)
    return backbone


def _check_fit(backbone, model, model_type):
    """The model's output must be what PaddleOCR's necks take (see DET_STRIDES; rec: one map)."""
    is_rec_form = backbone.out_indices is None and isinstance(backbone.out_channels, int)
    if model_type == "rec":
        if not is_rec_form:
            raise ConfigError(f"{_WHERE}: model {model} does not build a rec form (PaddleOCR's rec models take one "
                              f"map pooled to height 1): use det: False (PaddleOCR's classes) or a rec preset "
                              f"({', '.join(list_models('*_rec'))})")
        return
    if backbone.out_indices is None:
        raise ConfigError(f"{_WHERE}: model {model} builds a rec form, but model_type is det: use det: True "
                          f"(PaddleOCR's classes) or a det preset ({', '.join(list_models('*_det'))})")
    strides = backbone.out_strides
    if strides != DET_STRIDES:
        raise ConfigError(f"{_WHERE}: model {model} returns {len(strides)} map(s) at strides {strides}; PaddleOCR's "
                          f"det necks take 4 maps at strides {DET_STRIDES} (its stages: "
                          f"{[f['stride'] for f in backbone.feature_info]}; set out_indices to pick them)")


def create_backbone(section, model_type):
    """The ppbackbone model for one `Architecture.Backbone` section with `name: PPBackbone` (see the module
    docstring). `section` is not changed. Errors are ConfigErrors naming the key, the value and what fits."""
    section = dict(section)
    section.pop("name", None)
    model = section.pop("model", None)
    in_channels = section.pop("in_channels", 3)
    native = is_native(model, HOST)
    # `pretrained` is the native class's own argument where it has one (PPLCNetV2_base), else ppbackbone's file
    pretrained = None if native and "pretrained" in native_info(model, HOST).defaults else section.pop("pretrained", None)
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{_WHERE}: model_type {model_type!r}; PPBackbone builds {', '.join(MODEL_TYPES)} backbones")
    if not model:
        raise ConfigError(f"{_WHERE} needs `model`: a PaddleOCR class ({', '.join(native_names(HOST))}) followed by "
                          f"its own arguments, or a ppbackbone name (e.g. {', '.join(list_models('*_' + model_type))})")
    if in_channels != 3:
        raise ConfigError(f"{_WHERE}: in_channels={in_channels} (from the Transform before it); ppbackbone models "
                          f"take 3-channel images")
    try:
        if native:
            backbone = build_native(model, host=HOST, **section)
            backbone.model_name = model
        else:
            backbone = _preset(model, model_type, section)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # the families' argument checks
        raise ConfigError(f"{_WHERE}: model {model}: {err}") from None
    _check_fit(backbone, model, model_type)
    if pretrained:
        from ..weights.io import load_weights
        load_weights(backbone, pretrained)
    return backbone


class PPBackbone:
    """`PPBackbone(model_type="det", model=..., ...)` returns the ppbackbone model itself (see create_backbone)."""

    def __new__(cls, model_type="det", **section):
        return create_backbone(section, model_type)


def build_backbone(config, model_type):
    """PaddleOCR's `build_backbone(config, model_type)` for `name: PPBackbone` (pops `name` like PaddleOCR's)."""
    config.pop("name", None)
    return create_backbone(config, model_type)


def wrap_builder(original):
    """PaddleOCR's builder `original`, also building `name: PPBackbone` sections (idempotent)."""
    if getattr(original, "ppbackbone_original", None) is not None:
        return original

    @functools.wraps(original)
    def build(config, model_type):
        if isinstance(config, dict) and config.get("name") == "PPBackbone":
            return build_backbone(config, model_type)
        return original(config, model_type)

    build.ppbackbone_original = original
    return build


def patch_module(module):
    """Replace `module.build_backbone` by its wrapped form (idempotent)."""
    module.build_backbone = wrap_builder(module.build_backbone)
    return module


def register_ppocr():
    """Wrap PaddleOCR's builder now (both modules that hold it; base_model when it gets imported). Needs
    PaddleOCR's training code (the `ppocr` package of a checkout) on sys.path."""
    import importlib

    from ..after_import import after_import
    try:
        backbones = importlib.import_module(BUILDER_MODULES[0])
    except ImportError as err:
        raise ImportError(f"ppbackbone.ppocr needs PaddleOCR's training code (the ppocr package of a PaddleOCR "
                          f"checkout): {err}. Run PaddleOCR's tools through tools/ppocr_run.py (it finds the "
                          f"checkout), or put the checkout on sys.path first") from None
    patch_module(backbones)
    after_import(BUILDER_MODULES[1], patch_module)
    return PPBackbone
