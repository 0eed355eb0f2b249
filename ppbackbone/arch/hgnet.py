"""PP-HGNet (v1) and PP-HGNetV2: PaddleClas classifiers and PaddleDetection (RT-DETR) backbones.

Parameter names equal PaddleClas's `PPHGNet_*` / `PPHGNetV2_B*` and PaddleDetection's
`PPHGNetV2(arch=...)`, so their checkpoints load without renaming. Architecture is data: the
stage tables below; a variant is a row.
"""
import paddle
import paddle.nn as nn

from ..errors import ConfigError
from .base import Backbone
from .layers import ConvBNAct, ESEModule
from .native import REQUIRED, register_native
from .registry import paddleclas_weights, register_model

__all__ = ["PPHGNetV2", "PPHGNet", "HGV2_CFGS", "HGV1_CFGS"]

# Stage row: [in, mid, out, blocks, downsample, light_block, kernel, layer_num].
HGV2_CFGS = {
    "b0": dict(stem_channels=[3, 16, 16], use_lab=True, stage_config=[
        [16, 16, 64, 1, False, False, 3, 3], [64, 32, 256, 1, True, False, 3, 3],
        [256, 64, 512, 2, True, True, 5, 3], [512, 128, 1024, 1, True, True, 5, 3]]),
    "b1": dict(stem_channels=[3, 24, 32], use_lab=True, stage_config=[
        [32, 32, 64, 1, False, False, 3, 3], [64, 48, 256, 1, True, False, 3, 3],
        [256, 96, 512, 2, True, True, 5, 3], [512, 192, 1024, 1, True, True, 5, 3]]),
    "b2": dict(stem_channels=[3, 24, 32], use_lab=True, stage_config=[
        [32, 32, 96, 1, False, False, 3, 4], [96, 64, 384, 1, True, False, 3, 4],
        [384, 128, 768, 3, True, True, 5, 4], [768, 256, 1536, 1, True, True, 5, 4]]),
    "b3": dict(stem_channels=[3, 24, 32], use_lab=True, stage_config=[
        [32, 32, 128, 1, False, False, 3, 5], [128, 64, 512, 1, True, False, 3, 5],
        [512, 128, 1024, 3, True, True, 5, 5], [1024, 256, 2048, 1, True, True, 5, 5]]),
    "b4": dict(stem_channels=[3, 32, 48], use_lab=False, stage_config=[
        [48, 48, 128, 1, False, False, 3, 6], [128, 96, 512, 1, True, False, 3, 6],
        [512, 192, 1024, 3, True, True, 5, 6], [1024, 384, 2048, 1, True, True, 5, 6]]),
    "b5": dict(stem_channels=[3, 32, 64], use_lab=False, stage_config=[
        [64, 64, 128, 1, False, False, 3, 6], [128, 128, 512, 2, True, False, 3, 6],
        [512, 256, 1024, 5, True, True, 5, 6], [1024, 512, 2048, 2, True, True, 5, 6]]),
    "b6": dict(stem_channels=[3, 48, 96], use_lab=False, stage_config=[
        [96, 96, 192, 2, False, False, 3, 6], [192, 192, 512, 3, True, False, 3, 6],
        [512, 384, 1024, 6, True, True, 5, 6], [1024, 768, 2048, 3, True, True, 5, 6]]),
}
# PaddleDetection's RT-DETR presets are the classifiers' stage tables. Our names hgnetv2_s/m keep
# use_lab=True (B1/B2's LAB weights load whole); the native section `model: PPHGNetV2, arch: S` is
# PaddleDetection's use_lab=False, key for key (see register_native below).
HGV2_DET_ARCHS = {"s": "b1", "m": "b2", "l": "b4", "x": "b5", "h": "b6"}

# PP-HGNet v1 stage row: [in, mid, out, blocks, downsample].
HGV1_CFGS = {
    "tiny": dict(stem_channels=[48, 48, 96], layer_num=5, dropout_prob=0.0, stage_config=[
        [96, 96, 224, 1, False], [224, 128, 448, 1, True], [448, 160, 512, 2, True], [512, 192, 768, 1, True]]),
    "small": dict(stem_channels=[64, 64, 128], layer_num=6, dropout_prob=0.0, stage_config=[
        [128, 128, 256, 1, False], [256, 160, 512, 1, True], [512, 192, 768, 2, True],
        [768, 224, 1024, 1, True]]),
    "base": dict(stem_channels=[96, 96, 160], layer_num=7, dropout_prob=0.2, stage_config=[
        [160, 192, 320, 1, False], [320, 224, 640, 2, True], [640, 256, 960, 3, True],
        [960, 288, 1280, 2, True]]),
}


class LightConvBNAct(nn.Layer):
    """1x1 ConvBN (no act) then depthwise kxk ConvBNAct: HGNetv2's light layer."""

    def __init__(self, in_channels, out_channels, kernel_size, use_lab=False, lr_mult=1.0):
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, 1, act=None, lr_mult=lr_mult)
        self.conv2 = ConvBNAct(out_channels, out_channels, kernel_size, groups=out_channels,
                               use_lab=use_lab, lr_mult=lr_mult)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class HGBlock(nn.Layer):
    """HG block: `layer_num` layers, each feeding the next; the input and every layer output are
    concatenated and aggregated; blocks after a stage's first add their input.

    v2 aggregates with a squeeze 1x1 (out/2) and an excitation 1x1 (out); v1 with one 1x1
    `aggregation_conv` and an ESE attention `att`.
    """

    def __init__(self, in_channels, mid_channels, out_channels, layer_num, kernel_size=3,
                 identity=False, light_block=False, use_lab=False, lr_mult=1.0, version=2):
        super().__init__()
        self.identity = identity
        self.layers = nn.LayerList()
        for i in range(layer_num):
            layer_in = in_channels if i == 0 else mid_channels
            if light_block:
                layer = LightConvBNAct(layer_in, mid_channels, kernel_size, use_lab=use_lab, lr_mult=lr_mult)
            else:
                layer = ConvBNAct(layer_in, mid_channels, kernel_size, use_lab=use_lab, lr_mult=lr_mult)
            self.layers.append(layer)
        total = in_channels + layer_num * mid_channels
        if version == 2:
            self.aggregation_squeeze_conv = ConvBNAct(total, out_channels // 2, 1, use_lab=use_lab,
                                                      lr_mult=lr_mult)
            self.aggregation_excitation_conv = ConvBNAct(out_channels // 2, out_channels, 1,
                                                         use_lab=use_lab, lr_mult=lr_mult)
            self.aggregation = [self.aggregation_squeeze_conv, self.aggregation_excitation_conv]
        else:
            self.aggregation_conv = ConvBNAct(total, out_channels, 1, lr_mult=lr_mult)
            self.att = ESEModule(out_channels, gate="sigmoid", lr_mult=lr_mult)
            self.aggregation = [self.aggregation_conv, self.att]

    def forward(self, x):
        outputs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = paddle.concat(outputs, axis=1)
        for layer in self.aggregation:
            y = layer(y)
        return y + x if self.identity else y


class HGStage(nn.Layer):
    """Optional depthwise 3x3/2 ConvBN downsample (no activation), then `block_num` HG blocks."""

    def __init__(self, in_channels, mid_channels, out_channels, block_num, downsample, layer_num,
                 kernel_size=3, light_block=False, use_lab=False, lr_mult=1.0, version=2):
        super().__init__()
        self.downsample = (ConvBNAct(in_channels, in_channels, 3, stride=2, groups=in_channels, act=None,
                                     lr_mult=lr_mult) if downsample else None)
        self.blocks = nn.Sequential(*[
            HGBlock(in_channels if i == 0 else out_channels, mid_channels, out_channels, layer_num,
                    kernel_size, identity=i > 0, light_block=light_block, use_lab=use_lab,
                    lr_mult=lr_mult, version=version)
            for i in range(block_num)])

    def forward(self, x):
        if self.downsample is not None:
            x = self.downsample(x)
        return self.blocks(x)


class StemBlock(nn.Layer):
    """HGNetv2 stem (stride 4): 3x3/2 conv; a 2x2 conv pair beside a 2x2 max-pool; concat; 3x3/2; 1x1."""

    def __init__(self, in_channels, mid_channels, out_channels, use_lab=False, lr_mult=1.0):
        super().__init__()
        kw = dict(use_lab=use_lab, lr_mult=lr_mult)
        self.stem1 = ConvBNAct(in_channels, mid_channels, 3, stride=2, **kw)
        self.stem2a = ConvBNAct(mid_channels, mid_channels // 2, 2, padding="SAME", **kw)
        self.stem2b = ConvBNAct(mid_channels // 2, mid_channels, 2, padding="SAME", **kw)
        self.stem3 = ConvBNAct(mid_channels * 2, mid_channels, 3, stride=2, **kw)
        self.stem4 = ConvBNAct(mid_channels, out_channels, 1, **kw)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=1, ceil_mode=True, padding="SAME")

    def forward(self, x):
        x = self.stem1(x)
        x = paddle.concat([self.pool(x), self.stem2b(self.stem2a(x))], axis=1)
        return self.stem4(self.stem3(x))


def _stage_feature_info(stage_config, stem_stride):
    info, stride = [], stem_stride
    for i, row in enumerate(stage_config):
        stride *= 2 if row[4] else 1
        info.append(dict(channels=row[2], stride=stride, name=f"stages.{i}"))
    return info


class PPHGNetV2(Backbone):
    """PP-HGNetV2: StemBlock + 4 HG stages (+ PaddleClas head: GAP, last_conv, ReLU, LAB, dropout, fc).

    Args:
        stem_channels: [in, mid, out] of the stem.
        stage_config: 4 rows [in, mid, out, blocks, downsample, light_block, kernel, layer_num].
        use_lab: LearnableAffineBlock after every activation (B0-B3).
        lr_mult_list: 5 multipliers [stem, stage1..stage4].
        out_indices: stages to return (feature mode, no head); PaddleDetection's `return_idx`.
        freeze_at / freeze_stem_only / freeze_norm: see Backbone.apply_freeze.
    """
    group_names = ("stem", "stage1", "stage2", "stage3", "stage4")

    def __init__(self, stem_channels, stage_config, use_lab=False, use_last_conv=True, class_expand=2048,
                 dropout_prob=0.0, num_classes=1000, lr_mult_list=None, out_indices=None, freeze_at=-1,
                 freeze_stem_only=False, freeze_norm=False):
        super().__init__()
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        self.use_lab = use_lab
        self.stem = StemBlock(*stem_channels, use_lab=use_lab, lr_mult=lr_mults[0])
        self.stages = nn.LayerList([
            HGStage(c_in, c_mid, c_out, blocks, down, layer_num, kernel, light_block=light,
                    use_lab=use_lab, lr_mult=lr_mults[i + 1])
            for i, (c_in, c_mid, c_out, blocks, down, light, kernel, layer_num) in enumerate(stage_config)])
        self.init_features(_stage_feature_info(stage_config, stem_stride=4), out_indices)
        if self.out_indices is None:
            self.build_head(num_classes, class_expand if use_last_conv else None, act="relu",
                            use_lab=use_lab, dropout=dropout_prob)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)


class PPHGNet(Backbone):
    """PP-HGNet (v1): three 3x3 ConvBNAct stem + max-pool, 4 HG stages with ESE, PaddleClas head.

    Args as PPHGNetV2, with `layer_num` per model and stage rows [in, mid, out, blocks, downsample].
    """
    group_names = ("stem", "stage1", "stage2", "stage3", "stage4")

    def __init__(self, stem_channels, stage_config, layer_num, use_last_conv=True, class_expand=2048,
                 dropout_prob=0.0, num_classes=1000, lr_mult_list=None, out_indices=None, freeze_at=-1,
                 freeze_stem_only=False, freeze_norm=False):
        super().__init__()
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        widths = [3] + list(stem_channels)
        self.stem = nn.Sequential(*[
            ConvBNAct(widths[i], widths[i + 1], 3, stride=2 if i == 0 else 1, lr_mult=lr_mults[0])
            for i in range(len(widths) - 1)])
        self.pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.stages = nn.LayerList([
            HGStage(c_in, c_mid, c_out, blocks, down, layer_num, lr_mult=lr_mults[i + 1], version=1)
            for i, (c_in, c_mid, c_out, blocks, down) in enumerate(stage_config)])
        self.init_features(_stage_feature_info(stage_config, stem_stride=4), out_indices)
        if self.out_indices is None:
            self.build_head(num_classes, class_expand if use_last_conv else None, act="relu",
                            dropout=dropout_prob)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)

    def forward_stages(self, x, last=None):
        x = self.pool(self.stem(x))
        outs = []
        for stage in self.stages_up_to(self.stages, last):
            x = stage(x)
            outs.append(x)
        return outs


# ---------------------------------------------------------------------------- registration
# Parameter counts of the default (1000-class or feature-mode) instances, BN statistics excluded;
# checked by tests/test_models.py and against PaddleClas by tests/test_hgnet_parity.py.
# PPHGNetV2_L 13.55M and PPHGNet_tiny/small/base 14.74M/24.36M/71.58M agree with the references.
NUM_PARAMS = {
    "hgnetv2_b0": 5996550, "hgnetv2_b1": 6343158, "hgnetv2_b2": 11221356, "hgnetv2_b3": 16292216,
    "hgnetv2_b4": 19796680, "hgnetv2_b5": 39569064, "hgnetv2_b6": 75256776,
    "hgnetv2_s": 2197004, "hgnetv2_m": 6026626, "hgnetv2_l": 13553376, "hgnetv2_x": 33325760,
    "hgnetv2_h": 69013472,
    "pphgnet_tiny": 14735864, "pphgnet_small": 24360872, "pphgnet_base": 71578184,
}

# PaddleClas evaluates both with resize 232 (PP-HGNet small/base: 236) -> crop 224, bicubic.
for _v, _cfg in HGV2_CFGS.items():
    register_model(f"hgnetv2_{_v}", PPHGNetV2, _cfg, aliases=(f"PPHGNetV2_{_v.upper()}",), family="hgnetv2",
                   num_params=NUM_PARAMS[f"hgnetv2_{_v}"],
                   # ssld_stage1: PaddleClas's default (pretrained=True); ssld: the stage-2 (ImageNet-1k) weights
                   weights=paddleclas_weights(f"PPHGNetV2_{_v.upper()}", "ssld_stage1", "ssld"),
                   pretrained=dict(resize_short=232, interpolation="bicubic"),
                   reference="PaddleClas PPHGNetV2_" + _v.upper())

for _det, _v in HGV2_DET_ARCHS.items():
    _lab_note = f" stages with use_lab=True ({_v.upper()}'s LAB kept)" if HGV2_CFGS[_v]["use_lab"] else ""
    register_model(f"hgnetv2_{_det}", PPHGNetV2,
                   dict(HGV2_CFGS[_v], out_indices=[1, 2, 3], freeze_at=0, freeze_stem_only=True,
                        freeze_norm=True),
                   aliases=(f"PPHGNetV2_{_det.upper()}",), family="hgnetv2", num_params=NUM_PARAMS[f"hgnetv2_{_det}"],
                   reference=f"PaddleDetection PPHGNetV2(arch='{_det.upper()}'){_lab_note}")

for _v, _cfg in HGV1_CFGS.items():
    register_model(f"pphgnet_{_v}", PPHGNet, _cfg, aliases=(f"PPHGNet_{_v}",), family="pphgnet",
                   num_params=NUM_PARAMS[f"pphgnet_{_v}"],
                   # PaddleClas publishes no plain PPHGNet_base weights, only the SSLD ones
                   weights=paddleclas_weights(f"PPHGNet_{_v}", *(("ssld",) if _v == "base" else ("in1k", "ssld"))),
                   pretrained=dict(resize_short=232 if _v == "tiny" else 236, interpolation="bicubic"),
                   reference=f"PaddleClas PPHGNet_{_v}")


def build_native_pphgnetv2(arch, use_lab, lr_mult_list, return_idx, freeze_stem_only, freeze_at, freeze_norm):
    """PaddleDetection's `PPHGNetV2(arch, ...)` with its own defaults (use_lab False for every arch)."""
    archs = [a.upper() for a in HGV2_DET_ARCHS]
    if arch not in archs:
        raise ConfigError(f"PPBackbone: PPHGNetV2 arch={arch!r} is not one of PaddleDetection's archs "
                         f"{', '.join(archs)}")
    return PPHGNetV2(**dict(HGV2_CFGS[HGV2_DET_ARCHS[arch.lower()]], use_lab=use_lab), lr_mult_list=lr_mult_list,
                     out_indices=return_idx, freeze_at=freeze_at, freeze_stem_only=freeze_stem_only,
                     freeze_norm=freeze_norm)


register_native("PPHGNetV2", build_native_pphgnetv2,
                defaults=dict(arch=REQUIRED, use_lab=False, lr_mult_list=[1.0] * 5, return_idx=[1, 2, 3],
                              freeze_stem_only=True, freeze_at=0, freeze_norm=True),
                reference="PaddleDetection (develop) ppdet/modeling/backbones/hgnet_v2.py PPHGNetV2")
