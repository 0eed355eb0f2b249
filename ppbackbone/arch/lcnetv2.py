"""PP-LCNetV2: PaddleClas `PPLCNetV2_small / base / large`, with exact Rep fusion.

Registered names `pplcnetv2_small, pplcnetv2_base, pplcnetv2_large`, aliases PaddleClas's
`PPLCNetV2_*`. Parameter names equal PaddleClas's (`stem.0`, `stem.1.dw_conv`, `stages.i.j.dw_conv_list.k`,
`...se.conv1/conv2`, `...pw_conv_1/pw_conv_2` or `...pw_conv`, head `last_conv`, `fc`).

The network: stem (3x3/2 ConvBN+ReLU, then a plain depthwise-separable block) -> 4 stages of
`RepDepthwiseSeparable` blocks (each stage's first block has stride 2) -> GAP -> 1x1 `last_conv`
(1280) -> ReLU -> dropout -> fc. Stages 3 and 4 use Rep blocks: depthwise ConvBN branches of kernel
5, 3 and 1 (5 and 3 at stride 2), summed, then the activation. `convert_to_deploy()` (PaddleClas:
`re_parameterize()`) folds them into one biased depthwise conv and deletes the branches.

Checkpoint keys `...dw_conv.{weight,bias}` of Rep blocks: PaddleClas allocates the fused conv up
front, so every official checkpoint carries these two tensors even though training never touches them
(they hold their initial values until PaddleClas's `re_parameterize()` writes the fused kernel).
Ours creates the fused conv, under the same name, only when fusing. `filter_state_dict` therefore
drops them when loading into an unfused model (nothing unexpected; the branches are what count) and
refuses the two ambiguous cases with a clear error: an unfused checkpoint into a fused model (load
first, then fuse) and a fused-only checkpoint into an unfused model (fuse first, then load).
"""
import paddle.nn as nn

from .base import Backbone
from .layers import ConvBNAct, SEModule, get_act, make_divisible
from .registry import check_choice, check_scale, fixed_args_builder, paddleclas_weights, register_model
from .rep import RepMixin, conv_like, fold_bn, pad_kernel

__all__ = ["PPLCNetV2", "RepDepthwiseSeparable", "LCNETV2_STAGES", "LCNETV2_CFGS"]

# Stage rows [channels, kernel, split_pw, use_rep, use_se, use_shortcut]; a stage's first block maps
# make_divisible(channels * scale) to make_divisible(2 * channels * scale) with stride 2.
LCNETV2_STAGES = [
    [64, 3, False, False, False, False],
    [128, 3, False, False, False, False],
    [256, 5, True, True, True, False],
    [512, 5, False, True, False, True],
]
LCNETV2_CFGS = {
    "small": dict(scale=0.75, depths=[2, 2, 4, 2]),
    "base": dict(scale=1.0, depths=[2, 2, 6, 2]),
    "large": dict(scale=1.25, depths=[2, 2, 8, 2]),
}
LCNETV2_ACTS = ("relu", "hardswish", "relu6", "prelu", "leaky_relu")


def _v2_act(name):
    # PaddleClas's two extra choices, with its parameters (LeakyReLU slope 0.1).
    if name == "prelu":
        return nn.PReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope=0.1)
    return get_act(name)


class RepDepthwiseSeparable(nn.Layer, RepMixin):
    """Depthwise conv (Rep: summed ConvBN branches of kernels dw_size, dw_size-2, .. 1, then act;
    plain: one ConvBN + ReLU) [-> SE (sigmoid gate)] -> pointwise 1x1 (or two, `split_pw`)
    [-> + input when `use_shortcut` and the shapes allow]."""

    def __init__(self, in_channels, out_channels, stride, dw_size=3, split_pw=False, use_rep=False,
                 use_se=False, use_shortcut=False, act="relu", lr_mult=1.0):
        super().__init__()
        self.use_rep = use_rep
        self.dw_size = dw_size
        self.use_shortcut = use_shortcut and stride == 1 and in_channels == out_channels
        if use_rep:
            # The 1x1 branch is left out at stride 2, as in PaddleClas.
            kernels = [k for k in range(dw_size, 0, -2) if not (k == 1 and stride != 1)]
            self.dw_conv_list = nn.LayerList([
                ConvBNAct(in_channels, in_channels, k, stride, groups=in_channels, act=None, lr_mult=lr_mult)
                for k in kernels])
        else:
            # PaddleClas's plain depthwise conv always uses ReLU, whatever the model's activation.
            self.dw_conv = ConvBNAct(in_channels, in_channels, dw_size, stride, groups=in_channels, act="relu",
                                     lr_mult=lr_mult)
        self.act = _v2_act(act)
        self.se = SEModule(in_channels, gate="sigmoid", act=_v2_act(act), lr_mult=lr_mult) if use_se else None
        if split_pw:
            mid = int(out_channels * 0.5)
            self.pw_conv_1 = ConvBNAct(in_channels, mid, 1, act=_v2_act(act), lr_mult=lr_mult)
            self.pw_conv_2 = ConvBNAct(mid, out_channels, 1, act=_v2_act(act), lr_mult=lr_mult)
            self.pointwise = [self.pw_conv_1, self.pw_conv_2]
        else:
            self.pw_conv = ConvBNAct(in_channels, out_channels, 1, act=_v2_act(act), lr_mult=lr_mult)
            self.pointwise = [self.pw_conv]

    def forward(self, x):
        identity = x
        if not self.use_rep:
            x = self.dw_conv(x)
        elif self.deployed:
            x = self.act(self.dw_conv(x))
        else:
            y = self.dw_conv_list[0](x)
            for branch in self.dw_conv_list[1:]:
                y = y + branch(x)
            x = self.act(y)
        if self.se is not None:
            x = self.se(x)
        for layer in self.pointwise:
            x = layer(x)
        return x + identity if self.use_shortcut else x

    def _fuse(self):
        if not self.use_rep:
            return
        kernel, bias = 0, 0
        for branch in self.dw_conv_list:
            k, b = fold_bn(branch.conv.weight, branch.bn)
            kernel = kernel + pad_kernel(k, self.dw_size)
            bias = bias + b
        fused = conv_like(self.dw_conv_list[0].conv, kernel, bias)
        del self.dw_conv_list
        self.dw_conv = fused


class PPLCNetV2(Backbone):
    """PP-LCNetV2 classifier / feature extractor.

    Args:
        scale: width multiplier; depths: blocks per stage (4 entries).
        num_classes, dropout_prob, class_expand, use_last_conv: head, as PaddleClas
            (dropout only with use_last_conv).
        last_stride: stride of stage 4's first block (2; PaddleClas's ShiTu variant: 1).
        head_act: activation after last_conv (default: `act`; the ShiTu variant: None, none);
        last_conv_bias: give last_conv a bias (the ShiTu variant does).
        act: "relu" (default), "hardswish", "relu6", "prelu" or "leaky_relu" (PaddleClas's choices).
        lr_mult_list: 5 multipliers [stem, stage1..stage4] (PaddleClas has none: all 1.0, the default).
        out_indices: stages to return, 0..3 (strides 4, 8, 16, 32); feature mode, no head.
        freeze_at / freeze_stem_only / freeze_norm: see Backbone.apply_freeze.
    """
    group_names = ("stem", "stage1", "stage2", "stage3", "stage4")

    def __init__(self, scale=1.0, depths=(2, 2, 6, 2), num_classes=1000, dropout_prob=0.0, use_last_conv=True,
                 class_expand=1280, act="relu", lr_mult_list=None, out_indices=None, freeze_at=-1,
                 freeze_stem_only=False, freeze_norm=False, last_stride=2, head_act="same", last_conv_bias=False):
        super().__init__()
        self.scale = check_scale(scale)
        act = check_choice("act", act, LCNETV2_ACTS)
        depths = list(depths) if isinstance(depths, (list, tuple)) else depths
        if (not isinstance(depths, list) or len(depths) != len(LCNETV2_STAGES)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths)):
            raise ValueError(f"depths={depths!r}: PP-LCNetV2 needs {len(LCNETV2_STAGES)} positive ints, "
                             f"blocks per stage (base: [2, 2, 6, 2])")
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride={last_stride!r}: use 2 (PP-LCNetV2) or 1 (PP-ShiTuV2's variant)")

        def width(channels):
            return make_divisible(channels * self.scale)

        self.stem = nn.Sequential(
            ConvBNAct(3, width(32), 3, stride=2, act=_v2_act(act), lr_mult=lr_mults[0]),
            RepDepthwiseSeparable(width(32), width(64), stride=1, dw_size=3, act=act, lr_mult=lr_mults[0]))
        self.stages = nn.LayerList()
        feature_info, stride = [], 2
        for i, (channels, kernel, split_pw, use_rep, use_se, use_shortcut) in enumerate(LCNETV2_STAGES):
            first_stride = last_stride if i == len(LCNETV2_STAGES) - 1 else 2
            stride *= first_stride
            self.stages.append(nn.Sequential(*[
                RepDepthwiseSeparable(width(channels if j == 0 else 2 * channels), width(2 * channels),
                                      stride=first_stride if j == 0 else 1, dw_size=kernel, split_pw=split_pw,
                                      use_rep=use_rep, use_se=use_se, use_shortcut=use_shortcut, act=act,
                                      lr_mult=lr_mults[i + 1])
                for j in range(depths[i])]))
            feature_info.append(dict(channels=width(2 * channels), stride=stride, name=f"stages.{i}"))
        self.init_features(feature_info, out_indices)
        if self.out_indices is None:
            self.build_head(num_classes, class_expand if use_last_conv else None,
                            act=_v2_act(act) if head_act == "same" else get_act(head_act),
                            dropout=dropout_prob if use_last_conv else 0.0, last_conv_bias=last_conv_bias)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)

    def filter_state_dict(self, state_dict):
        """Reconcile PaddleClas's pre-allocated fused conv (`...dw_conv.{weight,bias}` of Rep blocks)
        with this model's fused/unfused state (see the module docstring)."""
        state = dict(state_dict)
        for prefix, block in self.named_sublayers():
            if not (isinstance(block, RepDepthwiseSeparable) and block.use_rep):
                continue
            fused_keys = [f"{prefix}.dw_conv.weight", f"{prefix}.dw_conv.bias"]
            has_branches = any(k.startswith(f"{prefix}.dw_conv_list.") for k in state)
            if block.deployed and has_branches:
                raise ValueError(
                    f"The checkpoint holds the training branches of {prefix} (`{prefix}.dw_conv_list.*`) but "
                    f"the model is already fused: load the weights into the unfused model, then call "
                    f"ppbackbone.reparameterize(model)")
            if not block.deployed:
                if not has_branches and all(k in state for k in fused_keys):
                    raise ValueError(
                        f"The checkpoint is fused ({prefix} has only `dw_conv.weight/bias`, no "
                        f"`dw_conv_list.*`): call ppbackbone.reparameterize(model) before loading it")
                for key in fused_keys:
                    state.pop(key, None)
        return state


# ---------------------------------------------------------------------------- registration
# Parameter counts of the unfused 1000-class instances, BN statistics excluded. PaddleClas's count
# (4.19M / 6.80M / 10.72M) is higher by exactly its pre-allocated fused depthwise convs
# (tests/test_lcnet_parity.py checks it); PaddleClas's docs publish 6.6M for base.
NUM_PARAMS = {"pplcnetv2_small": 4128552, "pplcnetv2_base": 6687208, "pplcnetv2_large": 10542120}

_SIBLINGS = {f"pplcnetv2_{k}": f"scale={v['scale']}, depths={v['depths']}" for k, v in LCNETV2_CFGS.items()}
for _size, _cfg in LCNETV2_CFGS.items():
    _name = f"pplcnetv2_{_size}"
    register_model(_name, fixed_args_builder(PPLCNetV2, _name, _cfg, _SIBLINGS), dict(dropout_prob=0.2),
                   aliases=(f"PPLCNetV2_{_size}",), family="pplcnetv2", num_params=NUM_PARAMS[_name],
                   weights=paddleclas_weights(f"PPLCNetV2_{_size}", *(("in1k", "ssld") if _size == "base" else ("in1k",))),
                   reference=f"PaddleClas PPLCNetV2_{_size}")

# PP-ShiTuV2's backbone (PaddleClas PPLCNetV2_base_ShiTu): base with no activation after a biased
# last_conv and stride 1 in stage 4 (output stride 16). Its recipe sets class_expand 512 and loads
# PPLCNetV2_base's weights (use_ssld: the "ssld" tag). Parameter count: PaddleClas's
# PPLCNetV2_base_ShiTu() less its pre-allocated fused convs (6690024 both).
register_model("pplcnetv2_base_shitu",
               fixed_args_builder(PPLCNetV2, "pplcnetv2_base_shitu",
                                  dict(LCNETV2_CFGS["base"], last_stride=1, head_act=None, last_conv_bias=True)),
               dict(dropout_prob=0.2), aliases=("PPLCNetV2_base_ShiTu",), family="pplcnetv2", num_params=6690024,
               weights=paddleclas_weights("PPLCNetV2_base", "in1k", "ssld"),
               reference="PaddleClas PPLCNetV2_base_ShiTu")
