"""PP-LCNetV3: PaddleOCR's `PPLCNetV3` (PP-OCRv4/v5 mobile det and rec backbones) and an ImageNet
classifier built from the same blocks.

Only PaddleOCR has this network (`ppocr/modeling/backbones/rec_lcnetv3.py`); PaddleClas has none.
Parameter names equal PaddleOCR's (`conv1`, `blocksN.i.dw_conv.{identity,conv_kxk.j,conv_1x1,lab,act.lab}`,
`blocksN.i.se.conv1/conv2`, `blocksN.i.pw_conv...`, det projections `layer_list.i`), so
`PPLCNetV3_x0_75_ocr_det.pdparams` and the `backbone.*` part of PP-OCR checkpoints load unchanged.

Registered names (one class, three layouts, chosen by the `det` / `rec` flags):
- `pplcnetv3_x0_35, x0_5, x0_75, x1_0`: ImageNet classifiers (det layout of blocks, all first strides
  2) with a PP-LCNet v1 head: GAP -> 1x1 `last_conv` (1280) -> hardswish -> dropout 0.2 -> fc.
  Nobody publishes ImageNet weights for these. `det=True` / `rec=True` on these names gives the
  PaddleOCR backbone at that width (e.g. `create_model("pplcnetv3_x0_5", det=True)`).
- `pplcnetv3_x0_75_det` (alias `PPLCNetV3_x0_75_ocr_det`, the released weights' name): PaddleOCR
  `PPLCNetV3(scale=0.75, det=True)`, as in the PP-OCRv4/v5 mobile det configs. Feature mode: stages
  blocks2..blocks6; blocks3..blocks6 are returned through PaddleOCR's 1x1 `layer_list` convs to
  int([16, 24, 56, 480] * scale) channels; default out_indices [1, 2, 3, 4] = PaddleOCR's 4 outputs.
- `pplcnetv3_x0_95_rec`: PaddleOCR `PPLCNetV3(scale=0.95)` (det=False), as in the PP-OCRv4/v5 mobile
  rec configs: strides (2, 1) / (1, 2) in later blocks. Like PaddleOCR's backbone, `model(x)` returns the
  blocks6 map pooled by PaddleOCR's final pooling (`ocr_pool`: training adaptive_avg_pool2d to [1, 40],
  eval avg_pool2d [3, 2]): [N, 480, 1, 40] for a 48x320 input. The unpooled map stays available:
  `forward_features(x)` ([N, 480, 3, 80] at 48x320), or `out_indices` (e.g. [4]) for a list of stage maps.
  `feature_info[i]["stride"]` is the height stride; `stride_hw` gives (height, width).
In det/rec layouts `num_classes` is ignored (no classifier).

Block: `LearnableRepLayer` = identity BN (in == out, stride 1) + `conv_kxk_num` kxk ConvBN branches
+ a 1x1 ConvBN branch (k > 1), summed -> LAB -> (unless stride 2) hardswish -> LAB; LAB learning
rate lr_mult * lab_lr (0.1). `convert_to_deploy()` (PaddleOCR: `rep()`) folds all branches into one
biased conv `reparam_conv` (PaddleOCR's name) and deletes them, like PaddleOCR's current `rep()`.
Widths: make_divisible(c * scale, 16); conv1 (3x3/2 ConvBN) has no activation.
"""
import paddle.nn as nn
from paddle import ParamAttr

from .base import Backbone
from .layers import ConvBNAct, LearnableAffineBlock, SEModule, make_divisible, ocr_rec_pool
from .native import register_native
from .registry import check_scale, fixed_args_builder, register_model
from .rep import RepMixin, conv_like, fold_bn, identity_kernel, pad_kernel

__all__ = ["PPLCNetV3", "LearnableRepLayer", "LCNetV3Block", "LCNETV3_BLOCKS", "LCNETV3_SCALES"]

_OCR_URL = "https://paddleocr.bj.bcebos.com/pretrained/"

# Block rows [kernel, in, out, stride, use_se] at scale 1.0. "det" is also the classifier's layout.
LCNETV3_BLOCKS = {
    "det": {
        "blocks2": [[3, 16, 32, 1, False]],
        "blocks3": [[3, 32, 64, 2, False], [3, 64, 64, 1, False]],
        "blocks4": [[3, 64, 128, 2, False], [3, 128, 128, 1, False]],
        "blocks5": [[3, 128, 256, 2, False]] + [[5, 256, 256, 1, False]] * 4,
        "blocks6": [[5, 256, 512, 2, True], [5, 512, 512, 1, True], [5, 512, 512, 1, False],
                    [5, 512, 512, 1, False]],
    },
    "rec": {
        "blocks2": [[3, 16, 32, 1, False]],
        "blocks3": [[3, 32, 64, 1, False], [3, 64, 64, 1, False]],
        "blocks4": [[3, 64, 128, (2, 1), False], [3, 128, 128, 1, False]],
        "blocks5": [[3, 128, 256, (1, 2), False]] + [[5, 256, 256, 1, False]] * 4,
        "blocks6": [[5, 256, 512, (2, 1), True], [5, 512, 512, 1, True], [5, 512, 512, (2, 1), False],
                    [5, 512, 512, 1, False]],
    },
}
# Output widths of PaddleOCR's det projections (`layer_list`), times scale, truncated by int().
DET_PROJECTIONS = [16, 24, 56, 480]
LCNETV3_SCALES = {"x0_35": 0.35, "x0_5": 0.5, "x0_75": 0.75, "x1_0": 1.0}


def _v3_width(channels, scale):
    return make_divisible(channels * scale, 16)


class RepIdentityBN(nn.BatchNorm2D):
    """BatchNorm of a LearnableRepLayer's identity branch.

    Like PaddleOCR's, its weight and bias carry the stage's lr_mult but no L2Decay(0.0): they take the
    optimizer's global weight decay (`global_weight_decay` tells the generic ParamAttr test so).
    """
    global_weight_decay = True

    def __init__(self, num_features, lr_mult=1.0):
        super().__init__(num_features, weight_attr=ParamAttr(learning_rate=lr_mult),
                         bias_attr=ParamAttr(learning_rate=lr_mult))


class HardswishLAB(nn.Layer):
    """hardswish then a LearnableAffineBlock (PaddleOCR's `Act`; parameters `lab.scale/bias`)."""

    def __init__(self, lr_mult=1.0, lab_lr=0.1):
        super().__init__()
        self.act = nn.Hardswish()
        self.lab = LearnableAffineBlock(lr_mult=lr_mult, lab_lr=lab_lr)

    def forward(self, x):
        return self.lab(self.act(x))


class LearnableRepLayer(nn.Layer, RepMixin):
    """identity BN + `num_conv_branches` kxk ConvBN + 1x1 ConvBN, summed -> LAB [-> hardswish -> LAB].

    The activation is skipped exactly when stride == 2 (PaddleOCR's test; a (2, 1) stride keeps it).
    Fused: one biased conv `reparam_conv` -> LAB [-> hardswish -> LAB].
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, num_conv_branches=1,
                 lr_mult=1.0, lab_lr=0.1):
        super().__init__()
        if not isinstance(num_conv_branches, int) or isinstance(num_conv_branches, bool) or num_conv_branches < 1:
            raise ValueError(f"conv_kxk_num={num_conv_branches!r}: PP-LCNetV3 needs at least 1 kxk branch "
                             f"(PaddleOCR's default is 4)")
        self.kernel_size = kernel_size
        self.groups = groups
        self.in_channels = in_channels
        self.use_act = stride != 2
        self.identity = RepIdentityBN(in_channels, lr_mult) if out_channels == in_channels and stride == 1 else None
        self.conv_kxk = nn.LayerList([
            ConvBNAct(in_channels, out_channels, kernel_size, stride, groups=groups, act=None, lr_mult=lr_mult)
            for _ in range(num_conv_branches)])
        self.conv_1x1 = (ConvBNAct(in_channels, out_channels, 1, stride, groups=groups, act=None, lr_mult=lr_mult)
                         if kernel_size > 1 else None)
        self.lab = LearnableAffineBlock(lr_mult=lr_mult, lab_lr=lab_lr)
        self.act = HardswishLAB(lr_mult=lr_mult, lab_lr=lab_lr)
        if not self.use_act:
            # PaddleOCR allocates this LAB at stride 2 too but never calls it: its parameters stay in
            # the checkpoint (kept for loading) and never get a gradient, so they are not trainable here.
            for param in self.act.parameters():
                param.stop_gradient = True

    def forward(self, x):
        if self.deployed:
            out = self.reparam_conv(x)
        else:
            # PaddleOCR's summation order: identity, 1x1, then the kxk branches.
            out = 0
            if self.identity is not None:
                out = out + self.identity(x)
            if self.conv_1x1 is not None:
                out = out + self.conv_1x1(x)
            for conv in self.conv_kxk:
                out = out + conv(x)
        out = self.lab(out)
        return self.act(out) if self.use_act else out

    def _fuse(self):
        kernel, bias = 0, 0
        if self.identity is not None:
            ident = identity_kernel(self.in_channels, self.kernel_size, self.groups)
            k, b = fold_bn(ident, self.identity)
            kernel, bias = kernel + k, bias + b
        if self.conv_1x1 is not None:
            k, b = fold_bn(self.conv_1x1.conv.weight, self.conv_1x1.bn)
            kernel, bias = kernel + pad_kernel(k, self.kernel_size), bias + b
        for branch in self.conv_kxk:
            k, b = fold_bn(branch.conv.weight, branch.bn)
            kernel, bias = kernel + k, bias + b
        self.reparam_conv = conv_like(self.conv_kxk[0].conv, kernel, bias)
        del self.conv_kxk
        if self.conv_1x1 is not None:
            del self.conv_1x1
        if self.identity is not None:
            del self.identity


class LCNetV3Block(nn.Layer):
    """Depthwise LearnableRepLayer [-> SE (hard-sigmoid gate)] -> pointwise 1x1 LearnableRepLayer."""

    def __init__(self, in_channels, out_channels, stride, dw_size, use_se=False, conv_kxk_num=4, lr_mult=1.0,
                 lab_lr=0.1):
        super().__init__()
        self.dw_conv = LearnableRepLayer(in_channels, in_channels, dw_size, stride, groups=in_channels,
                                         num_conv_branches=conv_kxk_num, lr_mult=lr_mult, lab_lr=lab_lr)
        self.se = SEModule(in_channels, gate="hardsigmoid", lr_mult=lr_mult) if use_se else None
        self.pw_conv = LearnableRepLayer(in_channels, out_channels, 1, 1, num_conv_branches=conv_kxk_num,
                                         lr_mult=lr_mult, lab_lr=lab_lr)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw_conv(x)


def _pair(stride):
    return tuple(stride) if isinstance(stride, (tuple, list)) else (stride, stride)


class PPLCNetV3(Backbone):
    """PP-LCNetV3: ImageNet classifier (default), PaddleOCR det backbone (`det=True`) or rec backbone
    (`rec=True`).

    Args:
        scale: width multiplier (make_divisible(c * scale, 16)).
        conv_kxk_num: kxk branches per LearnableRepLayer (PaddleOCR: 4).
        lr_mult_list: 6 multipliers [conv1, blocks2, blocks3, blocks4, blocks5, blocks6].
        lab_lr: LAB learning-rate factor (0.1).
        det: PaddleOCR's det layout and 1x1 projections; feature mode (default out_indices [1, 2, 3, 4]).
        rec: PaddleOCR's rec layout (PaddleOCR's `det=False`): `forward` returns PaddleOCR's pooled blocks6 map
            (`ocr_pool`); with out_indices, the unpooled stage maps.
        num_classes, dropout_prob, class_expand, use_last_conv: the classifier head (det/rec: ignored).
        out_indices: stages to return, 0..4 = blocks2..blocks6.
        freeze_at / freeze_stem_only / freeze_norm: see Backbone.apply_freeze (stem = conv1).
    """
    group_names = ("conv1", "blocks2", "blocks3", "blocks4", "blocks5", "blocks6")
    stage_names = ("blocks2", "blocks3", "blocks4", "blocks5", "blocks6")

    def __init__(self, scale=1.0, conv_kxk_num=4, lr_mult_list=None, lab_lr=0.1, det=False, rec=False,
                 num_classes=1000, dropout_prob=0.2, class_expand=1280, use_last_conv=True, out_indices=None,
                 freeze_at=-1, freeze_stem_only=False, freeze_norm=False):
        super().__init__()
        self.scale = check_scale(scale)
        if det and rec:
            raise ValueError("det=True and rec=True exclude each other: pick PaddleOCR's det or rec layout "
                             "(neither: the ImageNet classifier)")
        self.det, self.rec = bool(det), bool(rec)
        self.returns_single_map = self.rec
        self.ocr_task = "det" if self.det else "rec" if self.rec else None
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        rows = LCNETV3_BLOCKS["rec" if self.rec else "det"]

        self.conv1 = ConvBNAct(3, _v3_width(16, self.scale), 3, stride=2, act=None, lr_mult=lr_mults[0])
        feature_info, stride_hw = [], (2, 2)
        for i, name in enumerate(self.stage_names):
            blocks = []
            for k, c_in, c_out, s, se in rows[name]:
                stride_hw = tuple(a * b for a, b in zip(stride_hw, _pair(s)))
                blocks.append(LCNetV3Block(_v3_width(c_in, self.scale), _v3_width(c_out, self.scale), s, k, se,
                                           conv_kxk_num, lr_mults[i + 1], lab_lr))
            setattr(self, name, nn.Sequential(*blocks))
            info = dict(channels=_v3_width(rows[name][-1][2], self.scale), stride=stride_hw[0], name=name)
            if self.rec:
                info["stride_hw"] = stride_hw
            feature_info.append(info)
        if self.det:
            # PaddleOCR's 1x1 projections of blocks3..blocks6 (biased, default ParamAttr: no lr_mult).
            widths = [int(c * self.scale) for c in DET_PROJECTIONS]
            self.layer_list = nn.LayerList([
                nn.Conv2D(feature_info[i + 1]["channels"], w, 1) for i, w in enumerate(widths)])
            for i, w in enumerate(widths):
                feature_info[i + 1].update(channels=w, name=f"layer_list.{i}")
            out_indices = [1, 2, 3, 4] if out_indices is None else out_indices
        self.init_features(feature_info, out_indices)
        if self.out_indices is None and not self.rec:
            self.build_head(num_classes, class_expand if use_last_conv else None, act="hardswish",
                            dropout=dropout_prob if use_last_conv else 0.0)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)

    def groups(self):
        return [self.conv1] + [getattr(self, name) for name in self.stage_names]

    def forward_stages(self, x, last=None):
        x = self.conv1(x)
        outs = []
        for i, name in enumerate(self.stages_up_to(self.stage_names, last)):
            x = getattr(self, name)(x)
            outs.append(self.layer_list[i - 1](x) if self.det and i > 0 else x)
        return outs

    def forward_head(self, x, pre_logits=False):
        """Classifier: pool + head. Rec layout: PaddleOCR's pooling of the blocks6 map (`ocr_pool`)."""
        if self.rec:
            return self.ocr_pool(x)
        return super().forward_head(x, pre_logits)

    def ocr_pool(self, x):
        """PaddleOCR's rec-backbone pooling of the blocks6 map: adaptive [1, 40] in training,
        avg_pool [3, 2] in eval (the two agree for PaddleOCR's 48x320 input)."""
        return ocr_rec_pool(x, self.training, getattr(self, "model_name", "PPLCNetV3"),
                            self.feature_info[-1]["stride"])

    def is_head_key(self, key):
        """Classifier-head keys; for the classifier also the det projections (`layer_list.*`), so the
        released OCR det backbone loads into it with its projections skipped, not unexpected."""
        return super().is_head_key(key) or (not self.det and key.startswith("layer_list."))

    def filter_state_dict(self, state_dict):
        """Refuse a fused checkpoint for an unfused model and the reverse, naming the fix."""
        for prefix, layer in self.named_sublayers():
            if not isinstance(layer, LearnableRepLayer):
                continue
            has_fused = f"{prefix}.reparam_conv.weight" in state_dict
            has_branches = f"{prefix}.conv_kxk.0.conv.weight" in state_dict
            if layer.deployed and has_branches and not has_fused:
                raise ValueError(f"The checkpoint holds the training branches of {prefix} but the model is "
                                 f"fused: load the weights into the unfused model, then call "
                                 f"ppbackbone.reparameterize(model)")
            if not layer.deployed and has_fused and not has_branches:
                raise ValueError(f"The checkpoint is fused ({prefix}.reparam_conv): call "
                                 f"ppbackbone.reparameterize(model) before loading it")
        return state_dict


# ---------------------------------------------------------------------------- registration
# Parameter counts (unfused, BN statistics excluded). det/rec equal PaddleOCR's PPLCNetV3 (checked
# against the fixture made from PaddleOCR's code, tests/fixtures/lcnetv3_paddleocr.npz).
NUM_PARAMS = {"pplcnetv3_x0_35": 2290828, "pplcnetv3_x0_5": 3082216, "pplcnetv3_x0_75": 4947656,
              "pplcnetv3_x1_0": 7450200, "pplcnetv3_x0_75_det": 3324176, "pplcnetv3_x0_95_rec": 4891620}

_SIBLINGS = {f"pplcnetv3_{k}": f"scale={v}" for k, v in LCNETV3_SCALES.items()}
for _key, _scale in LCNETV3_SCALES.items():
    _name = f"pplcnetv3_{_key}"
    register_model(_name, fixed_args_builder(PPLCNetV3, _name, {"scale": _scale}, _SIBLINGS), family="pplcnetv3",
                   num_params=NUM_PARAMS[_name],
                   reference=f"PaddleOCR PPLCNetV3 blocks (scale={_scale}) + PP-LCNet v1 head; no published weights")

register_model("pplcnetv3_x0_75_det",
               fixed_args_builder(PPLCNetV3, "pplcnetv3_x0_75_det", {"scale": 0.75, "det": True, "rec": False}),
               dict(out_indices=[1, 2, 3, 4]), aliases=("PPLCNetV3_x0_75_ocr_det",), family="pplcnetv3",
               num_params=NUM_PARAMS["pplcnetv3_x0_75_det"], url=f"{_OCR_URL}PPLCNetV3_x0_75_ocr_det.pdparams",
               reference="PaddleOCR PPLCNetV3(scale=0.75, det=True) (PP-OCRv4/v5 mobile det)")
register_model("pplcnetv3_x0_95_rec",
               fixed_args_builder(PPLCNetV3, "pplcnetv3_x0_95_rec", {"scale": 0.95, "rec": True, "det": False}),
               family="pplcnetv3", num_params=NUM_PARAMS["pplcnetv3_x0_95_rec"],
               # The generic suite checks logits or feature lists; the pooled output is tested in test_lcnet.py.
               test_args=dict(out_indices=[4]), test_num_params=NUM_PARAMS["pplcnetv3_x0_95_rec"],
               reference="PaddleOCR PPLCNetV3(scale=0.95) (PP-OCRv4/v5 mobile rec)")


def build_native_pplcnetv3(scale, conv_kxk_num, lr_mult_list, lab_lr, det):
    """PaddleOCR's `PPLCNetV3(scale, conv_kxk_num, lr_mult_list, lab_lr, det)`: det=True is the det layout with
    its 4 projected maps, det=False the rec layout with PaddleOCR's pooling (its `forward`). Trainability too
    is PaddleOCR's: the activation LAB of a stride-2 layer, which no forward uses, stays trainable there."""
    model = PPLCNetV3(scale=scale, conv_kxk_num=conv_kxk_num, lr_mult_list=lr_mult_list, lab_lr=lab_lr,
                      det=bool(det), rec=not det)
    for layer in model.sublayers():
        if isinstance(layer, LearnableRepLayer) and not layer.use_act:
            for param in layer.act.parameters():
                param.stop_gradient = False
    return model


register_native("PPLCNetV3", build_native_pplcnetv3,
                defaults=dict(scale=1.0, conv_kxk_num=4, lr_mult_list=[1.0] * 6, lab_lr=0.1, det=False),
                reference="PaddleOCR ppocr/modeling/backbones/rec_lcnetv3.py", host="PaddleOCR")
