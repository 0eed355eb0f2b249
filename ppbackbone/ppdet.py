"""PaddleDetection plugin: any ppbackbone model as the `backbone` of a PaddleDetection config.

    import ppbackbone.ppdet          # registers `PPBackbone` in PaddleDetection's workspace

    # in the PaddleDetection YAML, in place of `backbone: CSPResNet` / `PPHGNetV2` / `LCNet`:
    PPYOLOE:
      backbone: PPBackbone
    PPBackbone:
      model: cspresnet_l             # any ppbackbone name or alias
      return_idx: [1, 2, 3]          # PaddleDetection's name for out_indices
      # any other create_model argument: lr_mult_list, freeze_at, freeze_norm, use_alpha, ...

The created layer *is* the ppbackbone model (no wrapper), so parameter names stay
`backbone.<reference names>` and PaddleDetection checkpoints and exporters (`convert_to_deploy`) work
unchanged. It reads `inputs['image']` and exposes `out_shape` like a native backbone.
"""
from .arch import create_model

__all__ = ["PPBackbone", "register_ppdet"]


class PPBackbone:
    """Factory registered in PaddleDetection's workspace: `PPBackbone(model=..., return_idx=...)`
    returns the ppbackbone model itself.

    Args:
        model (str): registered ppbackbone name or alias, e.g. hgnetv2_l, cspresnet_l, pplcnet_x1_0.
        return_idx (list): stage indices to return (None: the preset's default, e.g. [1, 2, 3]).
        pretrained (str): optional weights path/URL loaded through ppbackbone.load_weights.
    """

    def __new__(cls, model="hgnetv2_l", return_idx=None, pretrained=None, **kwargs):
        backbone = create_model(model, pretrained=pretrained, out_indices=return_idx, **kwargs)
        if backbone.out_indices is None:
            raise ValueError(f"PPBackbone: {model} was built as a classifier; set return_idx "
                             f"(stage indices 0..{len(backbone.feature_info) - 1}) for detection")
        return backbone

    def __init__(self, model="hgnetv2_l", return_idx=None, pretrained=None, **kwargs):
        pass  # never reached: __new__ returns the model; the signature is PaddleDetection's schema


def register_ppdet():
    """Register PPBackbone in PaddleDetection's workspace (idempotent). Needs PaddleDetection."""
    try:
        from ppdet.core.workspace import global_config, register
    except ImportError as err:
        raise ImportError(f"ppbackbone.ppdet needs PaddleDetection (the ppdet package): {err}") from None
    if "PPBackbone" not in global_config:
        register(PPBackbone)
    return PPBackbone


register_ppdet()
