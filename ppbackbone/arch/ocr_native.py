"""PaddleOCR's backbone classes, built from PaddleOCR's own arguments (host "PaddleOCR" of native.py).

What a PaddleOCR config's `Architecture.Backbone` section names, with its keys (and the `in_channels` that
PaddleOCR's `build_backbone` always adds), gives the ppbackbone model that is PaddleOCR's module key for key:

    from ppbackbone.arch.native import build_native, native_names
    build_native("PPHGNetV2_B4", host="PaddleOCR", in_channels=3, det=True)        # PP-OCRv5 server det
    build_native("PPHGNetV2_B4", host="PaddleOCR", in_channels=3, text_rec=True)   # PP-OCRv5 server rec
    native_names(host="PaddleOCR")

| PaddleOCR class (upstream 6d2110b7) | forms | ppbackbone preset |
|---|---|---|
| PPHGNetV2_B4 (rec_pphgnetv2.py) | det=True / text_rec=True | hgnetv2_b4_det / hgnetv2_b4_rec |
| PPHGNet_small (rec_hgnet.py) | det=True / det=False | pphgnet_small_det / pphgnet_small_rec |
| PPHGNetV2_B4_Formula, PPHGNetV2_B6_Formula (rec_pphgnetv2.py) | class_num | PPHGNetV2Formula around hgnetv2_b4 / b6 rows, ocr_form "map" |
| PPLCNet (det_pp_lcnet.py, SLANet) | scale, pretrained, use_ssld | PPLCNet(scale), out_indices [1, 2, 3, 4] (= pplcnet_x*) |
| PPLCNetV2_base (det_pp_lcnet_v2.py, SLANet_lcnetv2) | out_indx | pplcnetv2_base, out_indices [0, 1, 2, 3] |

The returned models follow PaddleOCR's contract: `out_channels` is a list for det forms and an int for rec
forms, and every Rep block answers `rep()` / `is_repped` (PaddleOCR's exporter). Arguments PaddleOCR's class
takes but ppbackbone cannot honour are refused with an error naming them (never ignored): `in_channels` other
than 3, `pretrained` on the HGNet classes (PaddleOCR's own code ignores it there; use Global.pretrained_model).
PaddleOCR's PPLCNetV2_base always downloads PaddleClas's PPLCNetV2_base SSLD weights when built; ppbackbone does
the same (through its weights cache), and adds one argument PaddleOCR lacks, `pretrained` (default True), to
build it offline.
"""
from collections import OrderedDict

import paddle
import paddle.nn as nn

from ..errors import ConfigError
from .hgnet import HGV2_CFGS, PPHGNetV2
from .lcnet import PPLCNet
from .native import register_native
from .registry import create_model, model_info

__all__ = ["PPHGNetV2Formula", "FormulaEncoderOutput"]

_REF = "PaddleOCR (upstream 6d2110b7) ppocr/modeling/backbones/"


def _rgb_only(name, in_channels):
    if in_channels != 3:
        raise ConfigError(f"PaddleOCR Backbone {name}: in_channels={in_channels!r}; ppbackbone builds it for 3 "
                          f"(RGB) inputs only")


def build_ocr_pphgnetv2_b4(in_channels, det, text_rec, use_last_conv, class_expand, dropout_prob, class_num,
                           lr_mult_list, out_indices):
    """PaddleOCR's `PPHGNetV2_B4(det=True)` (PP-OCRv5 server det) or `(text_rec=True)` (server rec)."""
    _rgb_only("PPHGNetV2_B4", in_channels)
    if bool(det) == bool(text_rec):
        raise ConfigError(f"PaddleOCR Backbone PPHGNetV2_B4: det={det!r}, text_rec={text_rec!r}; ppbackbone builds its "
                          f"two forms, det=True (PP-OCRv5 server det) or text_rec=True (server rec)")
    if text_rec and out_indices is not None:
        raise ConfigError(f"PaddleOCR Backbone PPHGNetV2_B4: out_indices={out_indices!r} has no effect in the "
                          f"text_rec form (it returns the pooled last map); remove it")
    return create_model("hgnetv2_b4_det" if det else "hgnetv2_b4_rec", num_classes=class_num,
                        out_indices=out_indices, use_last_conv=use_last_conv, class_expand=class_expand,
                        dropout_prob=dropout_prob, lr_mult_list=lr_mult_list)


def build_ocr_pphgnet_small(in_channels, det, out_indices):
    """PaddleOCR's `PPHGNet_small(det=True)` (PP-OCRv4 server det) or `()` (server rec)."""
    _rgb_only("PPHGNet_small", in_channels)
    if not det and out_indices is not None:
        raise ConfigError(f"PaddleOCR Backbone PPHGNet_small: out_indices={out_indices!r} has no effect in the rec "
                          f"form (det=False: it returns the pooled last map); remove it")
    return create_model("pphgnet_small_det" if det else "pphgnet_small_rec", out_indices=out_indices)


def build_ocr_pplcnet(in_channels, scale, pretrained, use_ssld):
    """PaddleOCR's `PPLCNet(scale, pretrained, use_ssld)` (SLANet): PaddleClas's PP-LCNet returning blocks3..6."""
    _rgb_only("PPLCNet", in_channels)
    model = PPLCNet(scale=scale, out_indices=[1, 2, 3, 4])
    model.model_name = "PPLCNet"
    if pretrained:
        name = f"pplcnet_x{scale}".replace(".", "_")
        try:
            entry = model_info(name)
        except ValueError:
            raise ConfigError(f"PaddleOCR Backbone PPLCNet: pretrained=True with scale={scale!r}; PaddleClas publishes "
                              f"weights for scales 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5") from None
        tag = "ssld" if use_ssld else "in1k"
        if tag not in entry.weights:
            raise ConfigError(f"PaddleOCR Backbone PPLCNet: use_ssld={use_ssld!r} but PaddleClas has no SSLD weights "
                              f"for scale {scale} (its tags: {', '.join(entry.weights)})")
        from ..weights.io import load_weights
        load_weights(model, entry.weights[tag])
    return model


def build_ocr_pplcnetv2_base(in_channels, out_indx, pretrained):
    """PaddleOCR's `PPLCNetV2_base(out_indx)` (SLANet_lcnetv2): stages numbered 1..4; it always loads PaddleClas's
    PPLCNetV2_base SSLD weights (`pretrained`, ppbackbone's own argument, turns that off)."""
    _rgb_only("PPLCNetV2_base", in_channels)
    bad = [i for i in out_indx if i not in (1, 2, 3, 4)]
    if bad or not out_indx:
        raise ConfigError(f"PaddleOCR Backbone PPLCNetV2_base: out_indx={out_indx!r}; it numbers the stages 1..4")
    return create_model("pplcnetv2_base", pretrained="ssld" if pretrained else None,
                        out_indices=[i - 1 for i in out_indx])


class FormulaEncoderOutput(OrderedDict):
    """The PP-FormulaNet encoder's output as PaddleOCR's heads read it (like its DonutSwinModelOutput):
    `out.last_hidden_state`, `out["last_hidden_state"]` or `out[0]` ([N, H*W, C])."""

    def __init__(self, last_hidden_state):
        super().__init__(last_hidden_state=last_hidden_state, pooler_output=None, hidden_states=None,
                         attentions=False, reshaped_hidden_states=None)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        return super().__getitem__(key) if isinstance(key, str) else tuple(self.values())[key]


class PPHGNetV2Formula(nn.Layer):
    """PaddleOCR's `PPHGNetV2_B4_Formula` / `PPHGNetV2_B6_Formula` (PP-FormulaNet-S / -L encoders).

    Holds the HGNetV2 in `pphgnet_b4` / `pphgnet_b6` (PaddleOCR's attribute names; ocr_form "map": the last map,
    with PaddleOCR's unused last_conv and fc of `class_num` outputs). A 1-channel image is repeated to 3;
    the map [N, C, H, W] comes out as FormulaEncoderOutput([N, H*W, C]). In training the input is PaddleOCR's
    (pixel_values, label, attention_mask) and the output (encoder output, label, attention_mask).
    """

    def __init__(self, variant, in_channels=3, class_num=1000):
        super().__init__()
        self.in_channels = in_channels  # PaddleOCR records it; the network always takes 3 channels
        self.out_channels = 2048
        self.attr = f"pphgnet_{variant}"
        setattr(self, self.attr, PPHGNetV2(**dict(HGV2_CFGS[variant], ocr_form="map"), num_classes=class_num))

    def forward(self, inputs):
        if self.training:
            pixel_values, label, attention_mask = inputs
        else:
            pixel_values = inputs[0] if isinstance(inputs, list) else inputs
        if pixel_values.shape[1] == 1:
            pixel_values = paddle.repeat_interleave(pixel_values, repeats=3, axis=1)
        fmap = getattr(self, self.attr)(pixel_values)
        n, c, h, w = fmap.shape
        out = FormulaEncoderOutput(fmap.reshape([n, c, h * w]).transpose([0, 2, 1]))
        return (out, label, attention_mask) if self.training else out


def _formula_builder(variant):
    def build(in_channels, class_num):
        return PPHGNetV2Formula(variant, in_channels=in_channels, class_num=class_num)
    build.__name__ = f"build_ocr_pphgnetv2_{variant}_formula"
    return build


register_native("PPHGNetV2_B4", build_ocr_pphgnetv2_b4, host="PaddleOCR",
                defaults=dict(in_channels=3, det=False, text_rec=False, use_last_conv=True, class_expand=2048,
                              dropout_prob=0.0, class_num=1000, lr_mult_list=[1.0] * 5, out_indices=None,
                              pretrained=False, use_ssld=False),
                unsupported=dict(pretrained=False, use_ssld=False), reference=_REF + "rec_pphgnetv2.py (a836921)")
register_native("PPHGNet_small", build_ocr_pphgnet_small, host="PaddleOCR",
                defaults=dict(in_channels=3, det=False, out_indices=None, pretrained=False, use_ssld=False),
                unsupported=dict(pretrained=False, use_ssld=False), reference=_REF + "rec_hgnet.py")
for _variant in ("b4", "b6"):
    register_native(f"PPHGNetV2_{_variant.upper()}_Formula", _formula_builder(_variant), host="PaddleOCR",
                    defaults=dict(in_channels=3, class_num=1000), reference=_REF + "rec_pphgnetv2.py (a836921)")
register_native("PPLCNet", build_ocr_pplcnet, host="PaddleOCR",
                defaults=dict(in_channels=3, scale=1.0, pretrained=False, use_ssld=False),
                reference=_REF + "det_pp_lcnet.py")
register_native("PPLCNetV2_base", build_ocr_pplcnetv2_base, host="PaddleOCR",
                defaults=dict(in_channels=3, out_indx=[1, 2, 3, 4], pretrained=True),
                reference=_REF + "det_pp_lcnet_v2.py")
