"""PP-HGNet (v1) and PP-HGNetV2: PaddleClas classifiers, PaddleDetection (RT-DETR) and PaddleOCR backbones.

Parameter names equal PaddleClas's `PPHGNet_*` / `PPHGNetV2_B*`, PaddleDetection's `PPHGNetV2(arch=...)`
and PaddleOCR's `PPHGNetV2_B4(det=/text_rec=)` / `PPHGNet_small(det=)`, so their checkpoints load without
renaming. Architecture is data: the stage tables below; a variant is a row.

PaddleOCR forms (`ocr_form`; PaddleOCR rec_pphgnetv2.py a836921, rec_hgnet.py of upstream 6d2110b7):
- "det" (PP-OCRv5 server det `PPHGNetV2_B4(det=True)`, PP-OCRv4 server det `PPHGNet_small(det=True)`): the
  classifier's stages; `model(x)` returns the 4 stage maps (out_indices [0, 1, 2, 3]). PaddleOCR's HGNetV2
  also builds `last_conv` (+ `lab` with use_lab) that its forward never uses; the det form keeps them.
- "rec" (PP-OCRv5 server rec `PPHGNetV2_B4(text_rec=True)`, PP-OCRv4 server rec `PPHGNet_small()`): the
  rec stage table (`rec_rows`: every stage downsamples, strides (h, w) [2, 1], [1, 2], [2, 1], [2, 1]), the
  HGNetV2 stem's stem3 at stride 1 (PP-HGNet v1: no max-pool), and `model(x)` = PaddleOCR's pooling of the
  last map (`ocr_rec_pool`: [N, C, 1, W/8] for an input 48 high). HGNetV2 keeps PaddleOCR's unused
  `last_conv` and `fc` (class_num 1000); PP-HGNet v1's rec form has no head.
- "map" (the PP-FormulaNet encoders' inner `PPHGNetV2(...)`, PaddleOCR's det=False, text_rec=False): the
  classifier's stages, `model(x)` = the unpooled last map; keeps the unused `last_conv` and `fc`.
Parameters PaddleOCR builds but never uses are kept (so its training checkpoints load with nothing missing
or unexpected), trainable as in PaddleOCR (they never get a gradient there either; `unused_param_prefixes`).
PaddleOCR's native classes and arguments build through `build_native(name, host="PaddleOCR", **args)`
(registered at the bottom; see native.py).
"""
import paddle
import paddle.nn as nn

from ..errors import ConfigError
from .base import Backbone
from .layers import ConvBNAct, ESEModule, LearnableAffineBlock, ocr_rec_pool
from .native import REQUIRED, register_native
from .registry import check_choice, fixed_args_builder, paddleclas_weights, register_model

__all__ = ["PPHGNetV2", "PPHGNet", "HGV2_CFGS", "HGV1_CFGS", "OCR_FORMS", "rec_rows"]

OCR_FORMS = (None, "det", "rec", "map")

# Stage row: [in, mid, out, blocks, downsample, light_block, kernel, layer_num(, stride)]; the optional 9th
# element (PaddleOCR's) is the downsample's stride, an int or [h, w] (default 2).
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
    # PaddleClas pp_hgnet_v2.py 34d76a6d (2023-09-26); PaddleClas's docs there list B7's weights as "coming soon"
    "b7": dict(stem_channels=[3, 64, 128], use_lab=False, stage_config=[
        [128, 128, 256, 2, False, False, 3, 7], [256, 256, 512, 4, True, False, 3, 7],
        [512, 512, 1024, 12, True, True, 5, 7], [1024, 1024, 2048, 4, True, True, 5, 7]]),
}
# PaddleDetection's RT-DETR presets are the classifiers' stage tables. Our names hgnetv2_s/m keep
# use_lab=True (B1/B2's LAB weights load whole); the native section `model: PPHGNetV2, arch: S` is
# PaddleDetection's use_lab=False, key for key (see register_native below).
HGV2_DET_ARCHS = {"s": "b1", "m": "b2", "l": "b4", "x": "b5", "h": "b6"}

# PaddleOCR's rec forms: every stage downsamples, with these (h, w) strides, so a text line 48 high ends 3
# rows high and 8x narrower (PP-OCRv5 server rec: B4's rows; PP-OCRv4 server rec: PP-HGNet small's).
REC_STRIDES = ([2, 1], [1, 2], [2, 1], [2, 1])


def rec_rows(stage_config):
    """The rec form of a stage table: downsample on in every stage, REC_STRIDES as each row's stride."""
    rows = []
    for row, stride in zip(stage_config, REC_STRIDES):
        down_at = 4  # the downsample flag's place in both v1 and v2 rows
        rows.append(list(row[:down_at]) + [True] + list(row[down_at + 1:]) + [stride])
    return rows


# PP-HGNet v1 stage row: [in, mid, out, blocks, downsample(, stride)].
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
    """Optional depthwise 3x3 ConvBN downsample (no activation; `stride` 2 or (h, w)), then `block_num` HG blocks."""

    def __init__(self, in_channels, mid_channels, out_channels, block_num, downsample, layer_num,
                 kernel_size=3, light_block=False, use_lab=False, lr_mult=1.0, version=2, stride=2):
        super().__init__()
        self.downsample = (ConvBNAct(in_channels, in_channels, 3, stride=stride, groups=in_channels, act=None,
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
    """HGNetv2 stem (stride 4): 3x3/2 conv; a 2x2 conv pair beside a 2x2 max-pool; concat; 3x3/2; 1x1.
    PaddleOCR's text_rec form sets `stem3_stride` 1 (stem stride 2)."""

    def __init__(self, in_channels, mid_channels, out_channels, use_lab=False, lr_mult=1.0, stem3_stride=2):
        super().__init__()
        kw = dict(use_lab=use_lab, lr_mult=lr_mult)
        self.stem1 = ConvBNAct(in_channels, mid_channels, 3, stride=2, **kw)
        self.stem2a = ConvBNAct(mid_channels, mid_channels // 2, 2, padding="SAME", **kw)
        self.stem2b = ConvBNAct(mid_channels // 2, mid_channels, 2, padding="SAME", **kw)
        self.stem3 = ConvBNAct(mid_channels * 2, mid_channels, 3, stride=stem3_stride, **kw)
        self.stem4 = ConvBNAct(mid_channels, out_channels, 1, **kw)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=1, ceil_mode=True, padding="SAME")

    def forward(self, x):
        x = self.stem1(x)
        x = paddle.concat([self.pool(x), self.stem2b(self.stem2a(x))], axis=1)
        return self.stem4(self.stem3(x))


def _pair(stride):
    return tuple(stride) if isinstance(stride, (tuple, list)) else (stride, stride)


def _stage_strides(stage_config, stride_at):
    """Each row's downsample stride as (h, w): the row's element `stride_at` when present, else 2."""
    return [_pair(row[stride_at]) if len(row) > stride_at else (2, 2) for row in stage_config]


def _stage_feature_info(stage_config, stem_stride, stride_at):
    """feature_info of the stages; `stride_hw` (height, width) too where the two differ somewhere."""
    info, stride_hw = [], _pair(stem_stride)
    strides = _stage_strides(stage_config, stride_at)
    for i, (row, stride) in enumerate(zip(stage_config, strides)):
        if row[4]:
            stride_hw = (stride_hw[0] * stride[0], stride_hw[1] * stride[1])
        info.append(dict(channels=row[2], stride=stride_hw[0], name=f"stages.{i}", stride_hw=stride_hw))
    if all(f["stride_hw"][0] == f["stride_hw"][1] for f in info):
        for f in info:
            del f["stride_hw"]
    return info


class OCRFormMixin:
    """What PaddleOCR's forms of both HGNet versions share (see the module docstring): the output of
    `model(x)` (`returns_single_map`: out_channels an int, as PaddleOCR's), the unused parameters PaddleOCR
    keeps, and a check that a checkpoint's downsample layout is this model's."""

    def _init_ocr_form(self, ocr_form, out_indices):
        self.ocr_form = check_choice("ocr_form", ocr_form, OCR_FORMS)
        self.returns_single_map = ocr_form in ("rec", "map")  # PaddleOCR's out_channels: an int
        self.ocr_task = ocr_form if ocr_form in ("det", "rec") else None  # the export's free input sizes
        self._kept_unused = ()
        return [0, 1, 2, 3] if ocr_form == "det" and out_indices is None else out_indices

    def _keep_unused_head(self, class_expand, use_lab, num_classes, with_fc):
        """PaddleOCR's HGNetV2 head that its det/rec forward never calls: `last_conv` (+ `lab`) (+ `fc`)."""
        channels = self.feature_info[-1]["channels"]
        kept = []
        if class_expand:
            self.last_conv = nn.Conv2D(channels, class_expand, 1, bias_attr=False)
            kept.append("last_conv.")
            if use_lab:
                self.lab = LearnableAffineBlock()
                kept.append("lab.")
            channels = class_expand
        if with_fc:
            self.fc = nn.Linear(channels, num_classes)
            kept.append("fc.")
        self.unused_param_prefixes = self._kept_unused = tuple(kept)

    def forward_head(self, x, pre_logits=False):
        if self.ocr_form == "rec":
            info = self.feature_info[-1]
            return ocr_rec_pool(x, self.training, getattr(self, "model_name", type(self).__name__),
                                info.get("stride_hw", (info["stride"],))[0])
        if self.ocr_form == "map":
            return x
        return Backbone.forward_head(self, x, pre_logits)

    def is_head_key(self, key):
        """Classifier-head keys, except those PaddleOCR's form keeps as part of its backbone."""
        return Backbone.is_head_key(self, key) and not key.startswith(self._kept_unused)

    def filter_state_dict(self, state_dict):
        """Refuse a checkpoint whose stages downsample elsewhere (PaddleOCR's rec form vs det/classifier)."""
        for i, stage in enumerate(self.stages):
            key = f"stages.{i}.downsample.conv.weight"
            if not any(k.startswith(f"stages.{i}.blocks.") for k in state_dict):
                continue
            has, wants = key in state_dict, stage.downsample is not None
            if has != wants:
                name = getattr(self, "model_name", type(self).__name__)
                form = "PaddleOCR's rec form" if has else "a det/classifier form"
                raise ConfigError(
                    f"The checkpoint {'has' if has else 'has no'} {key}: it is {form} of the network, while {name} "
                    f"(ocr_form={self.ocr_form!r}) {'has no' if has else 'has a'} stage-{i + 1} downsample. Load it "
                    f"into the {'rec' if has else 'det or classifier'} form (e.g. "
                    f"{'hgnetv2_b4_rec / pphgnet_small_rec' if has else 'hgnetv2_b4 / hgnetv2_b4_det / pphgnet_small'})")
        return state_dict


class PPHGNetV2(OCRFormMixin, Backbone):
    """PP-HGNetV2: StemBlock + 4 HG stages (+ PaddleClas head: GAP, last_conv, ReLU, LAB, dropout, fc).

    Args:
        stem_channels: [in, mid, out] of the stem.
        stage_config: 4 rows [in, mid, out, blocks, downsample, light_block, kernel, layer_num(, stride)].
        use_lab: LearnableAffineBlock after every activation (B0-B3).
        lr_mult_list: 5 multipliers [stem, stage1..stage4].
        out_indices: stages to return (feature mode, no head); PaddleDetection's `return_idx`.
        freeze_at / freeze_stem_only / freeze_norm: see Backbone.apply_freeze.
        ocr_form: None (PaddleClas/PaddleDetection), or PaddleOCR's "det", "rec" or "map" (module docstring).
    """
    group_names = ("stem", "stage1", "stage2", "stage3", "stage4")

    def __init__(self, stem_channels, stage_config, use_lab=False, use_last_conv=True, class_expand=2048,
                 dropout_prob=0.0, num_classes=1000, lr_mult_list=None, out_indices=None, freeze_at=-1,
                 freeze_stem_only=False, freeze_norm=False, ocr_form=None):
        super().__init__()
        out_indices = self._init_ocr_form(ocr_form, out_indices)
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        self.use_lab = use_lab
        stem3_stride = 1 if ocr_form == "rec" else 2
        self.stem = StemBlock(*stem_channels, use_lab=use_lab, lr_mult=lr_mults[0], stem3_stride=stem3_stride)
        strides = _stage_strides(stage_config, stride_at=8)
        self.stages = nn.LayerList([
            HGStage(*row[:4], row[4], row[7], row[6], light_block=row[5], use_lab=use_lab,
                    lr_mult=lr_mults[i + 1], stride=list(strides[i]))
            for i, row in enumerate(stage_config)])
        self.init_features(_stage_feature_info(stage_config, 2 * stem3_stride, stride_at=8), out_indices)
        if ocr_form is not None:
            self._keep_unused_head(class_expand if use_last_conv else None, use_lab, num_classes,
                                   with_fc=ocr_form != "det")
        elif self.out_indices is None:
            self.build_head(num_classes, class_expand if use_last_conv else None, act="relu",
                            use_lab=use_lab, dropout=dropout_prob)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)


class PPHGNet(OCRFormMixin, Backbone):
    """PP-HGNet (v1): three 3x3 ConvBNAct stem + max-pool, 4 HG stages with ESE, PaddleClas head.

    Args as PPHGNetV2, with `layer_num` per model and stage rows [in, mid, out, blocks, downsample(, stride)].
    `ocr_form` "det" or "rec" (PaddleOCR's PPHGNet_small; its rec form has no max-pool and no head).
    """
    group_names = ("stem", "stage1", "stage2", "stage3", "stage4")

    def __init__(self, stem_channels, stage_config, layer_num, use_last_conv=True, class_expand=2048,
                 dropout_prob=0.0, num_classes=1000, lr_mult_list=None, out_indices=None, freeze_at=-1,
                 freeze_stem_only=False, freeze_norm=False, ocr_form=None):
        super().__init__()
        if ocr_form == "map":
            raise ValueError("PPHGNet has ocr_form None, 'det' or 'rec' (PaddleOCR's PPHGNet_small); "
                             "'map' is PP-HGNetV2's (PP-FormulaNet)")
        out_indices = self._init_ocr_form(ocr_form, out_indices)
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        widths = [3] + list(stem_channels)
        self.stem = nn.Sequential(*[
            ConvBNAct(widths[i], widths[i + 1], 3, stride=2 if i == 0 else 1, lr_mult=lr_mults[0])
            for i in range(len(widths) - 1)])
        # PaddleOCR's rec form has no max-pool after the stem
        self.pool = None if ocr_form == "rec" else nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        strides = _stage_strides(stage_config, stride_at=5)
        self.stages = nn.LayerList([
            HGStage(*row[:4], row[4], layer_num, lr_mult=lr_mults[i + 1], version=1, stride=list(strides[i]))
            for i, row in enumerate(stage_config)])
        self.init_features(_stage_feature_info(stage_config, 2 if self.pool is None else 4, stride_at=5),
                           out_indices)
        if self.out_indices is None and ocr_form is None:
            self.build_head(num_classes, class_expand if use_last_conv else None, act="relu",
                            dropout=dropout_prob)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)

    def forward_stages(self, x, last=None):
        x = self.stem(x)
        if self.pool is not None:
            x = self.pool(x)
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
    "hgnetv2_b7": 169027176, "hgnetv2_b4_det": 17747680, "hgnetv2_b4_rec": 19797208, "pphgnet_small_det": 20214720,
    "pphgnet_small_rec": 20216128,
}
# B7 (169M parameters, ~26 s to build on 2 cores) is too heavy for every generic test: they build its rows with
# one block per stage (B7's widths, kernels and layer_num); the full table is checked against PaddleClas's
# source key for key in tests/test_ocr_forms.py.
B7_TEST_ARGS = dict(stage_config=[row[:3] + [1] + row[4:] for row in HGV2_CFGS["b7"]["stage_config"]])
B7_TEST_NUM_PARAMS = 34954856

# PaddleClas evaluates both with resize 232 (PP-HGNet small/base: 236) -> crop 224, bicubic.
for _v, _cfg in HGV2_CFGS.items():
    register_model(f"hgnetv2_{_v}", PPHGNetV2, _cfg, aliases=(f"PPHGNetV2_{_v.upper()}",), family="hgnetv2",
                   num_params=NUM_PARAMS[f"hgnetv2_{_v}"],
                   # ssld_stage1: PaddleClas's default (pretrained=True); ssld: the stage-2 (ImageNet-1k) weights.
                   # B7: only the URL of PaddleClas 34d76a6d's MODEL_URLS (weights announced, not verified here).
                   weights=paddleclas_weights(f"PPHGNetV2_{_v.upper()}",
                                              *(("ssld",) if _v == "b7" else ("ssld_stage1", "ssld"))),
                   pretrained=dict(resize_short=232, interpolation="bicubic"),
                   test_args=B7_TEST_ARGS if _v == "b7" else {},
                   test_num_params=B7_TEST_NUM_PARAMS if _v == "b7" else None,
                   reference="PaddleClas PPHGNetV2_" + _v.upper() + (" (pp_hgnet_v2.py 34d76a6d)" if _v == "b7" else ""))

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


# PaddleOCR's forms (module docstring) as rows: PP-OCRv5 server det / rec = PaddleOCR PPHGNetV2_B4(det=True) /
# (text_rec=True); PP-OCRv4 server det / rec = PaddleOCR PPHGNet_small(det=True) / (). The det forms take the
# PaddleClas ImageNet weights (same layout; the classifier's fc is skipped); the rec forms add stage 1's downsample.
_OCR_URL = "https://paddleocr.bj.bcebos.com/pretrained/"
_PADDLEX_URL = "https://paddle-model-ecology.bj.bcebos.com/paddlex/official_pretrained_model/"
# PaddleOCR's rec inputs: 48 high, normalised to [-1, 1]; det: ImageNet mean/std (PaddleOCR's DetResizeForTest).
_REC_CFG = dict(input_size=(3, 48, 320), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
OCR_PRESETS = {
    "hgnetv2_b4_det": (PPHGNetV2, dict(HGV2_CFGS["b4"], ocr_form="det"), "PPHGNetV2_B4(det=True)",
                       dict(ocr_det=f"{_PADDLEX_URL}PPHGNetV2_B4_ocr_det.pdparams"), {}),
    "hgnetv2_b4_rec": (PPHGNetV2, dict(HGV2_CFGS["b4"], stage_config=rec_rows(HGV2_CFGS["b4"]["stage_config"]),
                                       ocr_form="rec"), "PPHGNetV2_B4(text_rec=True)", {}, _REC_CFG),
    "pphgnet_small_det": (PPHGNet, dict(HGV1_CFGS["small"], ocr_form="det"), "PPHGNet_small(det=True)",
                          dict(ocr_det=f"{_OCR_URL}PPHGNet_small_ocr_det.pdparams"), {}),
    "pphgnet_small_rec": (PPHGNet, dict(HGV1_CFGS["small"], stage_config=rec_rows(HGV1_CFGS["small"]["stage_config"]),
                                        ocr_form="rec"), "PPHGNet_small()", {}, _REC_CFG),
}
for _name, (_cls, _cfg, _native, _weights, _pre) in OCR_PRESETS.items():
    _form = _cfg["ocr_form"]
    register_model(_name, fixed_args_builder(_cls, _name, {"ocr_form": _form}), {k: v for k, v in _cfg.items() if k != "ocr_form"},
                   family="hgnetv2" if _cls is PPHGNetV2 else "pphgnet", num_params=NUM_PARAMS[_name],
                   weights=_weights, pretrained=_pre,
                   # the generic suite checks logits or feature lists: the rec forms' pooled map is tested in
                   # tests/test_ocr_forms.py
                   test_args=dict(out_indices=[3]) if _form == "rec" else {},
                   test_num_params=NUM_PARAMS[_name] if _form == "rec" else None,
                   reference=f"PaddleOCR {_native} (upstream 6d2110b7)")


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
