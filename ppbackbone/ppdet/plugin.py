"""PaddleDetection plugin: any ppbackbone model as the `backbone` of a PaddleDetection config.

    import ppbackbone.ppdet          # registers `PPBackbone` in PaddleDetection's workspace

Two ways to fill the section, in place of `backbone: CSPResNet` / `PPHGNetV2` / `LCNet`:

    RTDETR:
      backbone: PPBackbone
    PPBackbone:                      # 1. a native section pasted as it is, plus `model: <native class>`
      model: PPHGNetV2
      arch: L
      return_idx: [1, 2, 3]
      freeze_stem_only: True
      freeze_at: 0
      freeze_norm: True
      lr_mult_list: [0., 0.05, 0.05, 0.05, 0.05]

    PPBackbone:                      # 2. a ppbackbone name with ppbackbone's arguments
      model: cspresnet_l             # any ppbackbone name or alias
      return_idx: [1, 2, 3]          # PaddleDetection's name for out_indices
      # any other create_model argument: lr_mult_list, freeze_at, freeze_norm, use_alpha, ...

A native section (`model` = a class registered in ppbackbone.arch.native: PPHGNetV2, CSPResNet,
LCNet, ...) takes exactly the native class's arguments and defaults and builds a model that is key for
key the native backbone (names, order, shapes, learning rates, trainability, frozen norms). Shared
PaddleDetection keys the native class reads from the global config (CSPResNet's width_mult,
depth_mult, trt) are read the same way. `pretrained` (a weights file for ppbackbone's load_weights) is
accepted in both forms.

The created layer *is* the ppbackbone model (no wrapper), so parameter names stay
`backbone.<reference names>` and PaddleDetection checkpoints and exporters (`convert_to_deploy`) work
unchanged. It reads `inputs['image']` and exposes `out_shape` like a native backbone.
"""
from ..arch import create_model
from ..arch.native import build_native, is_native, native_info
from ..errors import ConfigError

__all__ = ["PPBackbone", "build_backbone", "register_ppdet", "load_config", "reset_config"]


def _shared_value(key):
    from ppdet.core.workspace import global_config
    return global_config.get(key)


def build_backbone(model="hgnetv2_l", return_idx=None, pretrained=None, **kwargs):
    """The ppbackbone model for one PPBackbone section (see the module docstring)."""
    if is_native(model):
        if return_idx is not None:
            kwargs["return_idx"] = return_idx
        for key in native_info(model).shared:  # PaddleDetection's __shared__: section, else global config
            if key not in kwargs and _shared_value(key) is not None:
                kwargs[key] = _shared_value(key)
        backbone = build_native(model, **kwargs)
        backbone.model_name = model
        if pretrained:
            from ..weights.io import load_weights
            load_weights(backbone, pretrained)
        return backbone
    backbone = create_model(model, pretrained=pretrained, out_indices=return_idx, **kwargs)
    if backbone.out_indices is None:
        raise ConfigError(f"PPBackbone: {model} was built as a classifier; set return_idx "
                         f"(stage indices 0..{len(backbone.feature_info) - 1}) for detection")
    return backbone


class PPBackbone:
    """Factory registered in PaddleDetection's workspace: `PPBackbone(model=..., ...)` returns the
    ppbackbone model itself.

    Args:
        model (str): a native PaddleDetection class name (PPHGNetV2, CSPResNet, LCNet: then the other
            keys are that class's own arguments), or a ppbackbone name/alias (hgnetv2_l, cspresnet_l, ...).
        return_idx (list): stage indices to return (None: the default of the model / native class).
        pretrained (str): optional weights path/URL loaded through ppbackbone.load_weights.
    """

    def __new__(cls, model="hgnetv2_l", return_idx=None, pretrained=None, **kwargs):
        return build_backbone(model, return_idx, pretrained, **kwargs)

    def __init__(self, model="hgnetv2_l", return_idx=None, pretrained=None, **kwargs):
        pass  # never reached: __new__ returns the model; the signature is PaddleDetection's schema


def reset_config():
    """Drop every value that earlier `load_config` calls merged into PaddleDetection's process-wide global
    config (registered modules keep their schemas), so that the next config inherits nothing from them."""
    from ppdet.core.config.schema import SchemaDict
    from ppdet.core.workspace import global_config
    for key in list(global_config):
        if isinstance(global_config[key], SchemaDict):
            global_config[key].clear()
        else:
            del global_config[key]


def load_config(path, fresh=False):
    """PaddleDetection's `load_config(path)` after ppbackbone's check of the file's _BASE_ chain (a base's
    model-specific PPBackbone keys must not carry over to another `model`: ppbackbone.ppdet.config.PPDetSetupError).

    PaddleDetection merges every loaded file into one global config; `fresh=True` first drops what earlier
    loads left there (`reset_config`), for building several detectors in one process."""
    from ppdet.core.workspace import load_config as ppdet_load_config

    from .config import check_backbone_sections
    check_backbone_sections(path)
    register_ppdet()
    if fresh:
        reset_config()
    return ppdet_load_config(path)


def register_ppdet(demo_datasets=True):
    """Register PPBackbone in PaddleDetection's workspace (idempotent), and with `demo_datasets` the demo
    set's !DetDemoDataSet / !DetDemoImageFolder (they import PaddleDetection's data package, which must not
    happen while PaddleDetection itself is still being imported). Needs PaddleDetection."""
    try:
        from ppdet.core.workspace import global_config, register
    except ImportError as err:
        raise ImportError(f"ppbackbone.ppdet needs PaddleDetection (the ppdet package): {err}. Run PaddleDetection's "
                          f"tools through tools/ppdet_run.py (it finds a checkout), or put the checkout on "
                          f"sys.path first") from None
    if "PPBackbone" not in global_config:
        register(PPBackbone)
    if demo_datasets:
        from . import demo  # noqa: F401
    return PPBackbone
