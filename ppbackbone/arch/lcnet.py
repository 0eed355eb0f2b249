"""PP-LCNet (v1): PaddleClas `PPLCNet_x0_25 .. x2_5` and PaddleDetection's `LCNet` (PicoDet).

Registered names: `pplcnet_x0_25, x0_35, x0_5, x0_75, x1_0, x1_5, x2_0, x2_5`, aliases PaddleClas's
`PPLCNet_*`. Parameter names equal PaddleClas's and PaddleDetection's (`conv1`, `blocksN.i.dw_conv`,
`blocksN.i.se.conv1/conv2`, `blocksN.i.pw_conv`, head `last_conv`, `fc`), so both references'
`.pdparams` load without renaming.

Feature mode (no head) is PaddleDetection's `LCNet(scale, feature_maps=[3, 4, 5])`: pass
`feature_maps` (PaddleDetection's numbering, 2..5 = blocks3..blocks6) or `out_indices` (ours:
0..4 = blocks2..blocks6); `feature_info` gives channels and strides (PaddleDetection's
`out_shape` has no stride). A fixed-scale name refuses another `scale`.

The network: conv1 3x3/2 -> blocks2..blocks6 of depthwise-separable blocks (depthwise kxk ConvBN
+ act, SE only in blocks6, pointwise 1x1 ConvBN + act; 5x5 kernels from blocks5.1 on) -> GAP ->
1x1 `last_conv` (1280) -> act -> dropout -> fc. No multi-branch blocks: nothing to fuse.
"""
import paddle.nn as nn

from ..errors import ConfigError
from .base import Backbone
from .layers import ConvBNAct, SEModule, make_divisible
from .native import register_native
from .registry import check_choice, check_scale, fixed_args_builder, paddleclas_weights, register_model

__all__ = ["PPLCNet", "DepthwiseSeparable", "LCNET_BLOCKS", "LCNET_SCALES"]

# Block rows [kernel, in, out, stride, use_se] at scale 1.0; channels go through make_divisible(c * scale).
# The first stride of blocks3..blocks6 is replaced by stride_list[1:] (a copy: this table is never mutated).
LCNET_BLOCKS = {
    "blocks2": [[3, 16, 32, 1, False]],
    "blocks3": [[3, 32, 64, 2, False], [3, 64, 64, 1, False]],
    "blocks4": [[3, 64, 128, 2, False], [3, 128, 128, 1, False]],
    "blocks5": [[3, 128, 256, 2, False]] + [[5, 256, 256, 1, False]] * 5,
    "blocks6": [[5, 256, 512, 2, True], [5, 512, 512, 1, True]],
}
LCNET_SCALES = {"x0_25": 0.25, "x0_35": 0.35, "x0_5": 0.5, "x0_75": 0.75, "x1_0": 1.0, "x1_5": 1.5,
                "x2_0": 2.0, "x2_5": 2.5}
# PaddleClas spells hard swish `hardswish`, PaddleDetection `hard_swish`; both mean nn.Hardswish.
LCNET_ACTS = ("hardswish", "hard_swish", "relu", "relu6")


class DepthwiseSeparable(nn.Layer):
    """Depthwise kxk ConvBN + act [-> SE (hard-sigmoid gate)] -> pointwise 1x1 ConvBN + act."""

    def __init__(self, in_channels, out_channels, stride, dw_size=3, use_se=False, act="hardswish",
                 lr_mult=1.0):
        super().__init__()
        self.dw_conv = ConvBNAct(in_channels, in_channels, dw_size, stride, groups=in_channels, act=act,
                                 lr_mult=lr_mult)
        self.se = SEModule(in_channels, gate="hardsigmoid", lr_mult=lr_mult) if use_se else None
        self.pw_conv = ConvBNAct(in_channels, out_channels, 1, act=act, lr_mult=lr_mult)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw_conv(x)


class PPLCNet(Backbone):
    """PP-LCNet v1 classifier / feature extractor.

    Args:
        scale: width multiplier (channels make_divisible(c * scale, 8)).
        num_classes: fc size (PaddleClas `class_num`); 0 for pooled features.
        dropout_prob: dropout after last_conv (only with use_last_conv, as in PaddleClas).
        class_expand: last_conv width (1280).
        use_last_conv: GAP -> 1x1 last_conv -> act -> dropout before the fc.
        act: "hardswish" (PaddleClas) / "hard_swish" (PaddleDetection), "relu" or "relu6".
        lr_mult_list: 6 multipliers [conv1, blocks2, blocks3, blocks4, blocks5, blocks6].
        stride_list: 5 strides [conv1, blocks3..blocks6 first block] (default all 2).
        feature_maps: PaddleDetection's selection of outputs, values in 2..5 (blocks3..blocks6);
            an alternative to out_indices (feature mode: no head).
        out_indices: stages to return, 0..4 = blocks2..blocks6 (feature mode: no head).
        freeze_at / freeze_stem_only / freeze_norm: see Backbone.apply_freeze (stem = conv1).
    """
    group_names = ("conv1", "blocks2", "blocks3", "blocks4", "blocks5", "blocks6")
    stage_names = ("blocks2", "blocks3", "blocks4", "blocks5", "blocks6")

    def __init__(self, scale=1.0, num_classes=1000, dropout_prob=0.2, class_expand=1280, use_last_conv=True,
                 act="hardswish", lr_mult_list=None, stride_list=None, feature_maps=None, out_indices=None,
                 freeze_at=-1, freeze_stem_only=False, freeze_norm=False):
        super().__init__()
        self.scale = check_scale(scale)
        act = check_choice("act", act, LCNET_ACTS)
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        strides = check_stride_list(stride_list)
        out_indices = feature_maps_to_out_indices(feature_maps, out_indices)

        def width(channels):
            return make_divisible(channels * self.scale)

        self.conv1 = ConvBNAct(3, width(16), 3, stride=strides[0], act=act, lr_mult=lr_mults[0])
        feature_info, total_stride = [], strides[0]
        first_strides = {"blocks2": None, "blocks3": strides[1], "blocks4": strides[2], "blocks5": strides[3],
                         "blocks6": strides[4]}
        for i, stage in enumerate(self.stage_names):
            blocks = []
            for j, (k, c_in, c_out, s, se) in enumerate(LCNET_BLOCKS[stage]):
                if j == 0 and first_strides[stage] is not None:
                    s = first_strides[stage]
                total_stride *= s
                blocks.append(DepthwiseSeparable(width(c_in), width(c_out), s, k, se, act, lr_mults[i + 1]))
            setattr(self, stage, nn.Sequential(*blocks))
            feature_info.append(dict(channels=width(LCNET_BLOCKS[stage][-1][2]), stride=total_stride, name=stage))
        self.init_features(feature_info, out_indices)
        if self.out_indices is None:
            self.build_head(num_classes, class_expand if use_last_conv else None, act=act,
                            dropout=dropout_prob if use_last_conv else 0.0)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)

    def groups(self):
        return [self.conv1] + [getattr(self, name) for name in self.stage_names]


def check_stride_list(stride_list):
    """[conv1, blocks3, blocks4, blocks5, blocks6] strides: 5 positive ints (default all 2)."""
    if stride_list is None:
        return [2] * 5
    values = list(stride_list) if isinstance(stride_list, (list, tuple)) else None
    if values is None or len(values) != 5:
        got = f"{len(values)} entries" if values is not None else repr(stride_list)
        raise ValueError(f"stride_list has {got}; PP-LCNet needs 5 strides: [conv1, blocks3, blocks4, "
                         f"blocks5, blocks6] (default [2, 2, 2, 2, 2])")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ValueError(f"stride_list {values}: every stride must be a positive int, got {bad}")
    return values


def feature_maps_to_out_indices(feature_maps, out_indices):
    """PaddleDetection's `feature_maps` (2..5 = blocks3..blocks6) as our out_indices (1..4)."""
    if feature_maps is None:
        return out_indices
    values = list(feature_maps) if isinstance(feature_maps, (list, tuple)) else None
    allowed = (2, 3, 4, 5)
    if values is None or not 1 <= len(values) <= 4:
        got = f"{len(values)} entries" if values is not None else repr(feature_maps)
        raise ValueError(f"feature_maps has {got}; it takes 1 to 4 distinct values from {list(allowed)} "
                         f"(2..5 = blocks3..blocks6, PaddleDetection's default [3, 4, 5])")
    bad = [v for v in values if v not in allowed]
    if bad or len(set(values)) != len(values):
        raise ValueError(f"feature_maps {values}: values must be distinct and in {list(allowed)} "
                         f"(2..5 = blocks3..blocks6, stride 4..32); got {bad or 'duplicates'}")
    derived = sorted(v - 1 for v in values)
    if out_indices is not None and sorted(out_indices) != derived:
        raise ValueError(f"feature_maps {values} and out_indices {list(out_indices)} disagree; pass one "
                         f"(feature_maps N = out_indices N-1)")
    return derived


# ---------------------------------------------------------------------------- registration
# Parameter counts of the 1000-class instances, BN statistics excluded; equal to PaddleClas 2.6.0's
# (tests/test_lcnet_parity.py) and to the published 1.5/1.6/1.9/2.4/3.0/4.5/6.5/9.0M.
NUM_PARAMS = {
    "pplcnet_x0_25": 1521184, "pplcnet_x0_35": 1643090, "pplcnet_x0_5": 1879576, "pplcnet_x0_75": 2357008,
    "pplcnet_x1_0": 2952520, "pplcnet_x1_5": 4499832, "pplcnet_x2_0": 6521512, "pplcnet_x2_5": 9017560,
    "lcnet": 1016160,  # PaddleDetection's LCNet(scale=1.0): feature mode, no head
}

_SIBLINGS = {f"pplcnet_{k}": f"scale={v}" for k, v in LCNET_SCALES.items()}
# PaddleClas's SSLD-distilled weights exist for these widths (docs: PP-LCNet and SSLD model lists)
_TAGS = {key: ("in1k", "ssld") for key in ("x0_25", "x0_5", "x1_0", "x2_5")}
for _key, _scale in LCNET_SCALES.items():
    _name = f"pplcnet_{_key}"
    register_model(_name, fixed_args_builder(PPLCNet, _name, {"scale": _scale}, _SIBLINGS),
                   aliases=(f"PPLCNet_{_key}",), family="pplcnet", num_params=NUM_PARAMS[_name],
                   weights=paddleclas_weights(f"PPLCNet_{_key}", *_TAGS.get(_key, ("in1k",))),
                   reference=f"PaddleClas PPLCNet_{_key}; PaddleDetection LCNet(scale={_scale})")

# The width as an argument, from the table: PaddleClas's current configs (`name: PPLCNet`, `scale: 1.0`)
# and PaddleDetection's `LCNet(scale, feature_maps=[3, 4, 5], act="hard_swish")` (feature mode).
register_model("pplcnet", fixed_args_builder(PPLCNet, "pplcnet", choices={"scale": tuple(LCNET_SCALES.values())}),
               aliases=("PPLCNet",), family="pplcnet", num_params=NUM_PARAMS["pplcnet_x1_0"],
               reference="PaddleClas PPLCNet(scale=...) (scale 1.0 by default)")


def _build_lcnet(**kwargs):
    """PaddleDetection's LCNet defaults: feature_maps [3, 4, 5] unless out_indices/feature_maps given."""
    if "feature_maps" not in kwargs and kwargs.get("out_indices") is None:
        kwargs["feature_maps"] = [3, 4, 5]
    return _build_pplcnet_table(**kwargs)


_build_pplcnet_table = fixed_args_builder(PPLCNet, "lcnet", choices={"scale": tuple(LCNET_SCALES.values())},
                                          defaults={"act": "hard_swish"})
_build_lcnet.__wrapped__ = PPLCNet.__init__  # the registry's argument check reads PPLCNet's signature
register_model("lcnet", _build_lcnet, aliases=("LCNet",), family="pplcnet", num_params=NUM_PARAMS["lcnet"],
               reference="PaddleDetection LCNet(scale=1.0, feature_maps=[3, 4, 5])")


def build_native_lcnet(scale, feature_maps, act):
    """PaddleDetection's `LCNet(scale, feature_maps, act)`: any positive scale, act hard_swish or relu6
    (the two it builds)."""
    if act not in ("hard_swish", "relu6"):
        raise ConfigError(f"PPBackbone: LCNet act={act!r}; PaddleDetection's LCNet builds only 'hard_swish' "
                         f"and 'relu6'")
    return PPLCNet(scale=scale, feature_maps=feature_maps, act=act)


register_native("LCNet", build_native_lcnet, defaults=dict(scale=1.0, feature_maps=[3, 4, 5], act="hard_swish"),
                reference="PaddleDetection ppdet/modeling/backbones/lcnet.py LCNet (2.6.0 = develop)")
