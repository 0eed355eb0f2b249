"""PP-LCNetV4: PaddleOCR's `PPLCNetV4`, the backbone of the PP-OCRv6 det and rec models.

Only PaddleOCR has this network (`ppocr/modeling/backbones/rec_lcnetv4.py`, commit 28ba0e3da67f);
parameter names, order, shapes and numerics equal it, so the `backbone.*` part of a PP-OCRv6
checkpoint loads unchanged (load_weights strips the prefix).

Registered names (one class, two forms, three sizes: rows of LCNETV4_DET / LCNETV4_REC):
- `pplcnetv4_{tiny,small,medium}_det`: PaddleOCR `PPLCNetV4(det=True, model_size=...)`, the
  PP-OCRv6 det configs. HGNetV2-style stem `stem` (stride 4; its 2x2 max-pool has no ceil_mode),
  stages `blocks_s1..blocks_s4` (strides 4, 8, 16, 32); returns the 4 maps (out_indices [0, 1, 2, 3]);
  `out_channels` is their width list, as PaddleOCR's.
- `pplcnetv4_{tiny,small,medium}_rec`: PaddleOCR `PPLCNetV4(model_size=...)` (det=False), the PP-OCRv6
  rec configs. Stem `conv1` (tiny: 3x3/2 ConvBN, GELU, 3x3/2 ConvBN; small/medium: the branch stem),
  stages `blocks2..blocks6` (blocks4/5 open with (2, 1) strides; blocks6 is empty in every size: its
  map is blocks5's). `model(x)` returns PaddleOCR's pooled map (`ocr_pool`: training
  adaptive_avg_pool2d to [1, 40], eval avg_pool2d [3, 2], which needs a map of height >= 3: inputs of
  height >= 33; PaddleOCR uses 48), and `out_channels` is then an int (the pooled width), as
  PaddleOCR sets it (`returns_single_map`). `forward_features(x)` gives the unpooled map; `out_indices`
  a list of stage maps.
  `feature_info[i]["stride"]` is the height stride, `stride_hw` (height, width).

Block (`LCNetV4Block`): token mixer = `rep_dw` (RepDWConv: BN(3x3 DW ConvBN + 1x1 DW conv + x)) when
stride 1 and in == out, else a strided DW ConvBN `dw_conv`; optional SE (`se`: mean-pool, ReLU,
hard-sigmoid); channel mixer `expand` (1x1 ConvBN, x2) -> GELU (erf) -> `compress` (1x1 ConvBN),
added to its input when stride 1 and in == out (then `compress`'s BN scale starts at 0, else at 1).

Fusion: every layer PaddleOCR gives a `rep()` (the model too) has `rep()` / `is_repped` (PaddleOCR's
protocol) and `convert_to_deploy()`; `ppbackbone.reparameterize(model)` (or `model.rep()`) gives PaddleOCR's
fused form key for key: `rep_dw.reparam_conv`, biased `dw_conv` / `expand` / `compress` convs, stem convs
`stemN.conv` with a bias and no `bn`. Like PaddleOCR, the tiny rec stem (`conv1.0`, `conv1.2`) is
never fused. Math from arch/rep.py (fold_bn, pad_kernel, identity_kernel).

ParamAttr: BNs of the ConvBN layers (and of `rep_dw`) take the optimizer's weight decay, as in
PaddleOCR; the stem's BNs have L2Decay(0). `lr_mult_list` (det: 5 = [stem, blocks_s1..s4]; rec: 6 =
[conv1, blocks2..blocks6]) scales every parameter of its group, ppbackbone's contract. PaddleOCR applies
its rec `lr_mult_list` to the SE convs and the branch stem only, and ignores it in the det form; at
its default (all 1.0, what every PP-OCRv6 config uses) the two are the same.

PaddleOCR's own signature: the native class `PPLCNetV4` of host PaddleOCR (arch/native.py; PADDLEOCR_ARGS:
det=False, model_size="small", in_channels=3, lr_mult_list=[1.0] * 6; `in_channels`, which PaddleOCR's model
passes, is taken out of the section by ppbackbone.ppocr), so a PaddleOCR `Backbone` section with
`name: PPBackbone, model: PPLCNetV4` (ppbackbone.ppocr) or `build_native("PPLCNetV4", host="PaddleOCR",
**section)` builds the preset above, key-equal to PaddleOCR's module; arguments PaddleOCR would swallow,
ignore or apply only in part are errors naming them (`build_paddleocr_lcnetv4`).
"""
import paddle
import paddle.nn as nn

from ..errors import ConfigError, suggest
from ..weights.io import WeightsError
from .base import Backbone
from .layers import ConvBNAct, SEModule, conv_attr, get_act, norm_attrs, ocr_rec_pool
from .native import register_native
from .registry import fixed_args_builder, register_model
from .rep import RepMixin, conv_like, fold_bn, has_unfused_blocks, identity_kernel, pad_kernel

__all__ = ["PPLCNetV4", "LCNetV4Block", "RepDWConv", "LCNETV4_DET", "LCNETV4_REC", "LCNETV4_SIZES",
           "PADDLEOCR_ARGS", "build_paddleocr_lcnetv4"]

LCNETV4_SIZES = ("tiny", "small", "medium")


def _stage(c_in, c_out, stride, se):
    """Block rows [kernel, in, out, stride, use_se] of one stage: the first maps c_in -> c_out at
    `stride`, the rest keep c_out at stride 1; `se` has one flag per block ("1": SE)."""
    return [[3, c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, flag == "1"]
            for i, flag in enumerate(se)]


# det: stem (mid, out) and 4 stages; every size has the same depths and SE pattern.
LCNETV4_DET = {
    size: dict(stem=(mid, c0), stages=dict(
        blocks_s1=_stage(c0, c0, 1, "10"), blocks_s2=_stage(c0, c1, 2, "010"),
        blocks_s3=_stage(c1, c2, 2, "01010"), blocks_s4=_stage(c2, c3, 2, "010")))
    for size, (mid, c0, c1, c2, c3) in dict(tiny=(16, 32, 48, 64, 160), small=(24, 48, 96, 192, 384),
                                            medium=(64, 128, 256, 512, 896)).items()
}
# rec: stem (mid, out) and type ("simple": ConvBN, GELU, ConvBN; "branch": the det stem), 5 stages.
LCNETV4_REC = {
    "tiny": dict(stem=(24, 48), stem_type="simple", stages=dict(
        blocks2=_stage(48, 48, 1, "1"), blocks3=_stage(48, 48, 1, "0"), blocks4=_stage(48, 96, (2, 1), "010"),
        blocks5=_stage(96, 160, (2, 1), "0100"), blocks6=[])),
    "small": dict(stem=(48, 96), stem_type="branch", stages=dict(
        blocks2=_stage(96, 96, 1, "1"), blocks3=_stage(96, 96, 1, "00"), blocks4=_stage(96, 192, (2, 1), "0101010"),
        blocks5=_stage(192, 384, (2, 1), "010"), blocks6=[])),
    "medium": dict(stem=(64, 128), stem_type="branch", stages=dict(
        blocks2=_stage(128, 128, 1, "1"), blocks3=_stage(128, 256, 1, "001"),
        blocks4=_stage(256, 512, (2, 1), "0101010"), blocks5=_stage(512, 768, (2, 1), "010"), blocks6=[])),
}


def _conv_bn(c_in, c_out, kernel=1, stride=1, groups=1, lr_mult=1.0):
    """PaddleOCR's `Conv2D_BN`: conv (no bias, default init) + BN under the global weight decay."""
    return ConvBNAct(c_in, c_out, kernel, stride, groups=groups, act=None, lr_mult=lr_mult, conv_init=None,
                     norm_global_decay=True)


def _folded(conv_bn):
    """A ConvBN as one biased conv (its BN running statistics folded in)."""
    return conv_like(conv_bn.conv, *fold_bn(conv_bn.conv.weight, conv_bn.bn))


class StemConvBNAct(ConvBNAct, RepMixin):
    """ConvBNAct (ReLU, BN with L2Decay(0)) whose fusion folds the BN into a biased `conv` and drops
    `bn`, as PaddleOCR's PP-LCNetV4 `ConvBNAct.rep()`."""

    def __init__(self, c_in, c_out, kernel, stride=1, padding=None, lr_mult=1.0):
        super().__init__(c_in, c_out, kernel, stride, padding=padding, act="relu", lr_mult=lr_mult, conv_init=None)

    def forward(self, x):
        x = self.conv(x)
        if not self.deployed:
            x = self.bn(x)
        return self.act(x)

    def _fuse(self):
        self.conv = _folded(self)
        del self.bn


class StemBlock(nn.Layer, RepMixin):
    """HGNetV2-style stem (stride 4): stem1 3x3/2; stem2a/stem2b 2x2 "SAME" convs beside a 2x2 "SAME"
    max-pool (no ceil_mode); concat (pool first); stem3 3x3/2; stem4 1x1. ReLU, no LAB."""

    def __init__(self, in_channels, mid_channels, out_channels, lr_mult=1.0):
        super().__init__()
        self.stem1 = StemConvBNAct(in_channels, mid_channels, 3, 2, lr_mult=lr_mult)
        self.stem2a = StemConvBNAct(mid_channels, mid_channels // 2, 2, padding="SAME", lr_mult=lr_mult)
        self.stem2b = StemConvBNAct(mid_channels // 2, mid_channels, 2, padding="SAME", lr_mult=lr_mult)
        self.stem3 = StemConvBNAct(mid_channels * 2, mid_channels, 3, 2, lr_mult=lr_mult)
        self.stem4 = StemConvBNAct(mid_channels, out_channels, 1, lr_mult=lr_mult)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=1, padding="SAME")

    def forward(self, x):
        x = self.stem1(x)
        x = paddle.concat([self.pool(x), self.stem2b(self.stem2a(x))], axis=1)
        return self.stem4(self.stem3(x))

    def _fuse(self):
        for layer in (self.stem1, self.stem2a, self.stem2b, self.stem3, self.stem4):
            layer.convert_to_deploy()


class RepDWConv(nn.Layer, RepMixin):
    """BN(kxk DW ConvBN(x) + 1x1 DW conv(x) + x); fused: one biased kxk DW conv `reparam_conv`."""

    def __init__(self, channels, kernel_size=3, lr_mult=1.0):
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.conv = _conv_bn(channels, channels, kernel_size, groups=channels, lr_mult=lr_mult)
        self.conv1 = nn.Conv2D(channels, channels, 1, groups=channels, weight_attr=conv_attr(lr_mult, None),
                               bias_attr=False)
        weight_attr, bias_attr = norm_attrs(lr_mult, global_decay=True)
        self.bn = nn.BatchNorm2D(channels, weight_attr=weight_attr, bias_attr=bias_attr)
        self.bn.global_weight_decay = True

    def forward(self, x):
        if self.deployed:
            return self.reparam_conv(x)
        return self.bn(self.conv(x) + self.conv1(x) + x)

    def _fuse(self):
        kernel, bias = fold_bn(self.conv.conv.weight, self.conv.bn)
        kernel = (kernel + pad_kernel(self.conv1.weight, self.kernel_size)
                  + identity_kernel(self.channels, self.kernel_size, groups=self.channels))
        self.reparam_conv = conv_like(self.conv.conv, *fold_bn(kernel, self.bn, conv_bias=bias))
        del self.conv, self.conv1, self.bn


class LCNetV4Block(nn.Layer, RepMixin):
    """Token mixer (`rep_dw` or strided `dw_conv`, optional `se`) -> channel mixer (`expand`, act,
    `compress`), residual when stride 1 and in == out. Fused: the ConvBNs become biased convs."""

    def __init__(self, in_channels, out_channels, stride, dw_size=3, use_se=False, lr_mult=1.0, expand_ratio=2,
                 act="gelu"):
        super().__init__()
        self.has_residual = in_channels == out_channels and stride == 1
        self.token_mixer = nn.Sequential()
        if self.has_residual:
            self.token_mixer.add_sublayer("rep_dw", RepDWConv(in_channels, dw_size, lr_mult=lr_mult))
        else:
            self.token_mixer.add_sublayer("dw_conv", _conv_bn(in_channels, in_channels, dw_size, stride,
                                                              groups=in_channels, lr_mult=lr_mult))
        if use_se:
            self.token_mixer.add_sublayer("se", SEModule(in_channels, lr_mult=lr_mult, pool="mean", conv_init=None))
        hidden = int(in_channels * expand_ratio)
        self.channel_mixer = nn.Sequential()
        self.channel_mixer.add_sublayer("expand", _conv_bn(in_channels, hidden, lr_mult=lr_mult))
        self.channel_mixer.add_sublayer("act", get_act(act))
        compress = _conv_bn(hidden, out_channels, lr_mult=lr_mult)
        if self.has_residual:  # the residual branch starts as zero
            compress.bn.weight.set_value(paddle.zeros_like(compress.bn.weight))
        self.channel_mixer.add_sublayer("compress", compress)

    def forward(self, x):
        x = self.token_mixer(x)
        if self.has_residual:
            return x + self.channel_mixer(x)
        return self.channel_mixer(x)

    def _fuse(self):
        if self.has_residual:
            self.token_mixer.rep_dw.convert_to_deploy()
        else:
            self.token_mixer.dw_conv = _folded(self.token_mixer.dw_conv)
        self.channel_mixer.expand = _folded(self.channel_mixer.expand)
        self.channel_mixer.compress = _folded(self.channel_mixer.compress)


def _pair(stride):
    return tuple(stride) if isinstance(stride, (tuple, list)) else (stride, stride)


class PPLCNetV4(Backbone, RepMixin):
    """PP-LCNetV4: PaddleOCR's det form (`det=True`, 4 maps) or rec form (pooled map; see the module doc).

    Args:
        model_size: "tiny", "small" or "medium" (a row of LCNETV4_DET / LCNETV4_REC).
        det: the det form; otherwise the rec form.
        in_channels: input channels (PaddleOCR's rec form always takes 3).
        lr_mult_list: det 5 multipliers [stem, blocks_s1..blocks_s4]; rec 6 [conv1, blocks2..blocks6].
        out_indices: stages to return (det default: all 4; rec default None: the pooled map).
        num_classes: ignored (no classifier form; accepted because create_model passes it).
        freeze_at / freeze_stem_only / freeze_norm: see Backbone.apply_freeze.
    """

    def __init__(self, model_size="small", det=False, in_channels=3, lr_mult_list=None, out_indices=None,
                 num_classes=1000, freeze_at=-1, freeze_stem_only=False, freeze_norm=False):
        super().__init__()
        self.det = bool(det)
        self.returns_single_map = not self.det  # rec: PaddleOCR's pooled map; out_channels an int
        self.ocr_task = "det" if self.det else "rec"  # PaddleOCR's export input spec (Backbone.export_input_shape)
        form = "det" if self.det else "rec"
        tables = LCNETV4_DET if self.det else LCNETV4_REC
        if model_size not in tables:
            raise ConfigError(f"PP-LCNetV4 has no model_size={model_size!r} ({form} form); sizes: "
                              f"{', '.join(tables)}.{suggest(model_size, tables)}")
        self.model_size = model_size
        cfg = tables[model_size]
        self.stem_name = "stem" if self.det else "conv1"
        self.stage_names = tuple(cfg["stages"])
        self.group_names = (self.stem_name,) + self.stage_names
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        mid, out = cfg["stem"]
        if cfg.get("stem_type") == "simple":  # PaddleOCR never fuses this stem
            stem = nn.Sequential(_conv_bn(in_channels, mid, 3, 2, lr_mult=lr_mults[0]), get_act("gelu"),
                                 _conv_bn(mid, out, 3, 2, lr_mult=lr_mults[0]))
        else:
            stem = StemBlock(in_channels, mid, out, lr_mult=lr_mults[0])
        setattr(self, self.stem_name, stem)
        feature_info, stride_hw, channels = [], (4, 4), out
        for i, name in enumerate(self.stage_names):
            blocks = []
            for kernel, c_in, c_out, stride, use_se in cfg["stages"][name]:
                stride_hw = tuple(a * b for a, b in zip(stride_hw, _pair(stride)))
                blocks.append(LCNetV4Block(c_in, c_out, stride, kernel, use_se, lr_mult=lr_mults[i + 1]))
                channels = c_out
            setattr(self, name, nn.Sequential(*blocks))
            info = dict(channels=channels, stride=stride_hw[0], name=name)
            if not self.det:
                info["stride_hw"] = stride_hw
            feature_info.append(info)
        if self.det and out_indices is None:
            out_indices = list(range(len(feature_info)))
        self.init_features(feature_info, out_indices)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)

    def groups(self):
        return [getattr(self, self.stem_name)] + [getattr(self, name) for name in self.stage_names]

    def forward_head(self, x, pre_logits=False):
        """The rec form's head: PaddleOCR's pooling of the last map (`ocr_pool`)."""
        return self.ocr_pool(x)

    def ocr_pool(self, x):
        """PaddleOCR's rec pooling (layers.ocr_rec_pool): adaptive_avg_pool2d to [1, 40] in training,
        avg_pool2d [3, 2] in eval, which refuses a map under 3x2 naming the input height that fits."""
        name = getattr(self, "model_name", f"PPLCNetV4(model_size={self.model_size!r})")
        return ocr_rec_pool(x, self.training, name, self.feature_info[-1]["stride"])

    def _fuse(self):
        """PaddleOCR's `PPLCNetV4.rep()`: fuse every Rep layer below (children first)."""
        for layer in reversed(self.sublayers()):
            if isinstance(layer, RepMixin):
                layer.convert_to_deploy()

    def filter_state_dict(self, state_dict):
        """Refuse a checkpoint of the other form, of another size, or fused for an unfused model (and
        the reverse), naming what it is and what fits."""
        found = _checkpoint_layout(state_dict)
        if found is not None:
            form, size = found
            name = getattr(self, "model_name", type(self).__name__)
            mine = "det" if self.det else "rec"
            if (form, size) != (mine, self.model_size):
                what = f"the {form} form" + (f", model_size {size}" if size else " of no PP-LCNetV4 size")
                raise WeightsError(f"The checkpoint holds PP-LCNetV4 {what}; {name} is the {mine} form, model_size "
                                   f"{self.model_size}" + (f": load it into pplcnetv4_{size}_{form}" if size else ""))
        fused_file = any(".reparam_conv." in k for k in state_dict)
        unfused_file = any(".rep_dw.conv1." in k for k in state_dict)
        fused_model = not has_unfused_blocks(self)
        if fused_model and unfused_file and not fused_file:
            raise WeightsError("The checkpoint holds PP-LCNetV4's training branches but the model is fused: load "
                               "the weights into the unfused model, then call ppbackbone.reparameterize(model)")
        if not fused_model and fused_file and not unfused_file:
            raise WeightsError("The checkpoint is a fused PP-LCNetV4 (rep_dw.reparam_conv): call "
                               "ppbackbone.reparameterize(model) (PaddleOCR: rep()) before loading it")
        return state_dict


def _stage_widths(state_dict, stage_names):
    """(blocks, out width) per stage from a checkpoint's `compress` convs (fused or not)."""
    found = []
    for name in stage_names:
        last = None
        for i in range(64):
            key = next((k for k in (f"{name}.{i}.channel_mixer.compress.conv.weight",
                                    f"{name}.{i}.channel_mixer.compress.weight") if k in state_dict), None)
            if key is None:
                break
            last = (i + 1, int(state_dict[key].shape[0]))
        found.append(last)
    return found


def _checkpoint_layout(state_dict):
    """(form, size) of a PP-LCNetV4 checkpoint (size None: no table row), or None when it is not one."""
    for form, tables in (("det", LCNETV4_DET), ("rec", LCNETV4_REC)):
        names = list(tables["small"]["stages"])
        if not any(k.startswith(f"{names[0]}.0.channel_mixer.") for k in state_dict):
            continue
        widths = _stage_widths(state_dict, names)
        for size, cfg in tables.items():
            if widths == [(len(rows), rows[-1][2]) if rows else None for rows in cfg["stages"].values()]:
                return form, size
        return form, None
    return None


# ---------------------------------------------------------------------------- registration
# Parameter counts (BN statistics excluded), equal to PaddleOCR's PPLCNetV4 (tests/test_lcnetv4.py against
# the fixture made from PaddleOCR's code).
NUM_PARAMS = {"pplcnetv4_tiny_det": 384700, "pplcnetv4_small_det": 2327028, "pplcnetv4_medium_det": 14122560,
              "pplcnetv4_tiny_rec": 510468, "pplcnetv4_small_rec": 2693160, "pplcnetv4_medium_rec": 14356768}

_PRETRAINED = {  # PaddleOCR's PP-OCRv6 export sizes (d2s_train_image_shape); rec normalizes to [-1, 1]
    "det": dict(input_size=(3, 640, 640), resize_short=640),
    "rec": dict(input_size=(3, 48, 320), resize_short=48, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}
for _form in ("det", "rec"):
    _siblings = {f"pplcnetv4_{s}_{_form}": f"model_size={s!r}" for s in LCNETV4_SIZES}
    for _size in LCNETV4_SIZES:
        _name = f"pplcnetv4_{_size}_{_form}"
        _det = _form == "det"
        register_model(
            _name, fixed_args_builder(PPLCNetV4, _name, {"model_size": _size, "det": _det}, _siblings),
            dict(out_indices=[0, 1, 2, 3]) if _det else None, family="pplcnetv4", num_params=NUM_PARAMS[_name],
            pretrained=_PRETRAINED[_form],
            # The generic suite checks logits or feature lists; the pooled rec output is tested in test_lcnetv4.py.
            **({} if _det else dict(test_args=dict(out_indices=[4]), test_num_params=NUM_PARAMS[_name])),
            reference=f"PaddleOCR PPLCNetV4(det={_det}, model_size='{_size}') (PP-OCRv6 {_size} {_form})")


# ---------------------------------------------------------------------------- PaddleOCR's signature
PADDLEOCR_ARGS = dict(det=False, model_size="small", in_channels=3, lr_mult_list=[1.0] * 6)


def build_paddleocr_lcnetv4(det, model_size, lr_mult_list, in_channels=3):
    """The preset equal to PaddleOCR's `PPLCNetV4(det, model_size, in_channels, lr_mult_list)` (the native
    `PPLCNetV4` of host PaddleOCR: `build_native("PPLCNetV4", host="PaddleOCR", **section)`, which refuses
    arguments PaddleOCR's class does not take). Errors (ConfigError) name a model_size it does not have and
    arguments its form ignores (det: lr_mult_list; rec: in_channels other than 3) or applies to part of the
    network only (rec lr_mult_list other than 1.0): the preset's own arguments do those.
    """
    form = "det" if det else "rec"
    if model_size not in LCNETV4_SIZES:
        raise ConfigError(f"PPLCNetV4 (PaddleOCR) has no model_size={model_size!r}; sizes: "
                          f"{', '.join(LCNETV4_SIZES)}.{suggest(model_size, LCNETV4_SIZES)}")
    name = f"pplcnetv4_{model_size}_{form}"
    if not isinstance(lr_mult_list, (list, tuple)) or len(lr_mult_list) != 6:
        raise ConfigError(f"PPLCNetV4 (PaddleOCR): lr_mult_list={lr_mult_list!r} must be a list of 6 numbers")
    if any(float(v) != 1.0 for v in lr_mult_list):
        what = "ignores it" if det else "applies it to the SE convs and the branch stem only"
        raise ConfigError(f"PPLCNetV4 (PaddleOCR) {form} form {what}: lr_mult_list={list(lr_mult_list)} is not "
                          f"reproduced; use model: {name} with lr_mult_list (per group, every parameter)")
    if not det and in_channels != 3:
        raise ConfigError(f"PPLCNetV4 (PaddleOCR) rec form ignores in_channels={in_channels!r} (its stem takes 3 "
                          f"channels); use model: {name} with in_channels for another input")
    model = PPLCNetV4(model_size=model_size, det=bool(det), in_channels=in_channels)
    model.model_name = name
    return model


# PaddleOCR's model passes in_channels itself: ppbackbone.ppocr takes it out of the section (3 only)
register_native("PPLCNetV4", build_paddleocr_lcnetv4, host="PaddleOCR",
                defaults={k: v for k, v in PADDLEOCR_ARGS.items() if k != "in_channels"},
                reference="PaddleOCR ppocr/modeling/backbones/rec_lcnetv4.py (28ba0e3da67f; PP-OCRv6)")
