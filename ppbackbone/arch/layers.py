"""Layers shared by every family: ParamAttr helpers, activations, ConvBNAct, LAB, SE/ESE.

Parameter names follow PaddleClas / PaddleDetection (`conv`, `bn`, `lab`, ...) so that official
checkpoints load without renaming. Families build from these pieces; none re-implements them.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, KaimingNormal
from paddle.regularizer import L2Decay

from ..errors import InputSizeError

__all__ = [
    "make_divisible", "conv_attr", "norm_attrs", "get_act", "FrozenBatchNorm2D", "ConvBNAct",
    "LearnableAffineBlock", "ESEModule", "SEModule", "ocr_rec_pool", "OCR_REC_EVAL_POOL",
]

# PaddleOCR's rec backbones (PPLCNetV3/V4, PPHGNet_small, PPHGNetV2_B4 text_rec) end with this pooling of
# their last map: avg_pool2d([3, 2]) in eval, adaptive_avg_pool2d([1, 40]) in training; the two agree for
# PaddleOCR's 48x320 input (a 3x80 map).
OCR_REC_EVAL_POOL = (3, 2)
OCR_REC_TRAIN_POOL = (1, 40)


def make_divisible(value, divisor=8, min_value=None):
    """Round `value` to the nearest multiple of `divisor` (never below 90% of `value`).

    Same rounding as PaddleClas/MobileNet, used for PP-LCNet widths.
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def conv_attr(lr_mult=1.0, initializer="kaiming"):
    """ParamAttr for a conv weight: the stage's learning-rate multiplier and, by default, the
    Kaiming-normal initialisation the references give every conv."""
    if initializer == "kaiming":
        initializer = KaimingNormal()
    return ParamAttr(learning_rate=lr_mult, initializer=initializer)


def norm_attrs(lr_mult=1.0, global_decay=False):
    """(weight_attr, bias_attr) for a BatchNorm: no weight decay (`global_decay`: the optimizer's, for
    references that leave their BN to it), the stage's lr multiplier."""
    if global_decay:
        return ParamAttr(learning_rate=lr_mult), ParamAttr(learning_rate=lr_mult)
    return (ParamAttr(regularizer=L2Decay(0.0), learning_rate=lr_mult),
            ParamAttr(regularizer=L2Decay(0.0), learning_rate=lr_mult))


class _Swish(nn.Layer):
    """x * sigmoid(x), written out: the `trt` form PaddleDetection uses for TensorRT."""

    def forward(self, x):
        return x * nn.functional.sigmoid(x)


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "hard_swish": nn.Hardswish,
    "swish": nn.Swish,
    "silu": nn.Silu,
    "swish_trt": _Swish,
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def get_act(name):
    """Activation layer by name (None or "identity" gives nn.Identity). Raises on an unknown name."""
    if name is None:
        return nn.Identity()
    if isinstance(name, nn.Layer):
        return name
    key = str(name).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; expected one of: {', '.join(sorted(_ACTIVATIONS))}")
    return _ACTIVATIONS[key]()


class FrozenBatchNorm2D(nn.BatchNorm2D):
    """BatchNorm with global statistics and untrainable affine parameters, same parameter names.

    It stays frozen in `train()` mode, which is what PaddleDetection's `freeze_norm` means.
    """

    def __init__(self, num_features, momentum=0.9, epsilon=1e-5):
        frozen = ParamAttr(learning_rate=0.0, regularizer=L2Decay(0.0), trainable=False)
        super().__init__(num_features, momentum=momentum, epsilon=epsilon, weight_attr=frozen,
                         bias_attr=ParamAttr(learning_rate=0.0, regularizer=L2Decay(0.0), trainable=False),
                         use_global_stats=True)
        for param in self.parameters():
            param.stop_gradient = True

    @classmethod
    def from_bn(cls, bn):
        frozen = cls(bn._num_features, momentum=bn._momentum, epsilon=bn._epsilon)
        for name in ("weight", "bias", "_mean", "_variance"):
            getattr(frozen, name).set_value(getattr(bn, name))
        return frozen


def freeze_batch_norm(layer):
    """Replace every BatchNorm2D below `layer` by FrozenBatchNorm2D in place, keeping its values."""
    for name, child in layer.named_children():
        if isinstance(child, nn.BatchNorm2D) and not isinstance(child, FrozenBatchNorm2D):
            setattr(layer, name, FrozenBatchNorm2D.from_bn(child))
        else:
            freeze_batch_norm(child)
    return layer


class LearnableAffineBlock(nn.Layer):
    """y = scale * x + bias with scalar `scale`/`bias` (HGNetv2, PP-LCNetV3).

    Learning rate `lr_mult * lab_lr`; like both references, no L2Decay(0) on these parameters.
    """

    def __init__(self, scale_value=1.0, bias_value=0.0, lr_mult=1.0, lab_lr=0.01):
        super().__init__()
        self.lab_lr = lab_lr
        self.scale = self.create_parameter(
            shape=[1], default_initializer=Constant(scale_value),
            attr=ParamAttr(learning_rate=lr_mult * lab_lr))
        self.bias = self.create_parameter(
            shape=[1], default_initializer=Constant(bias_value),
            attr=ParamAttr(learning_rate=lr_mult * lab_lr))

    def forward(self, x):
        return self.scale * x + self.bias


class ConvBNAct(nn.Layer):
    """Conv2D (no bias) -> BatchNorm2D -> activation [-> LAB].

    Args:
        padding: None for (k - 1) // 2, an int, or a string such as "SAME".
        act: activation name (see get_act) or None for none.
        use_lab: add a LearnableAffineBlock after the activation (only when there is one, as in
            HGNetv2/PP-LCNetV3).
        lr_mult: learning-rate multiplier of the conv weight and BN parameters.
        conv_init: initializer of the conv weight ("kaiming": KaimingNormal, None: Paddle's default).
        norm_global_decay: the BN takes the optimizer's weight decay (no L2Decay(0.0)), as in references
            whose BN has a default ParamAttr; the BN then says so (`global_weight_decay`).
    Parameters: `conv.weight`, `bn.{weight,bias,_mean,_variance}`, `lab.{scale,bias}`.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 act="relu", use_lab=False, lr_mult=1.0, lab_lr=0.01, conv_init="kaiming", norm_global_decay=False):
        super().__init__()
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride, padding=padding,
                              groups=groups, weight_attr=conv_attr(lr_mult, conv_init), bias_attr=False)
        weight_attr, bias_attr = norm_attrs(lr_mult, norm_global_decay)
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=weight_attr, bias_attr=bias_attr)
        if norm_global_decay:
            self.bn.global_weight_decay = True
        self.act = get_act(act) if act is not None else None
        self.lab = (LearnableAffineBlock(lr_mult=lr_mult, lab_lr=lab_lr)
                    if (use_lab and act is not None) else None)

    def forward(self, x):
        x = self.bn(self.conv(x))
        if self.act is not None:
            x = self.act(x)
        if self.lab is not None:
            x = self.lab(x)
        return x


class ESEModule(nn.Layer):
    """Effective squeeze-excitation: x * gate(conv1x1(GAP(x))), one biased 1x1 conv.

    `conv_name` keeps the reference's parameter name: "conv" in PP-HGNet, "fc" in CSPResNet.
    `pool` picks the reference's pooling op, so the result matches it bit for bit: "adaptive"
    (AdaptiveAvgPool2D, PaddleClas) or "mean" (`x.mean((2, 3))`, PaddleDetection); they differ in
    summation order only.
    """

    def __init__(self, channels, gate="sigmoid", conv_name="conv", lr_mult=1.0, conv_init="kaiming",
                 pool="adaptive"):
        super().__init__()
        if pool not in ("adaptive", "mean"):
            raise ValueError(f"ESEModule: pool={pool!r}; expected 'adaptive' or 'mean'")
        self._conv_name = conv_name
        self.avg_pool = nn.AdaptiveAvgPool2D(1) if pool == "adaptive" else None
        self.add_sublayer(conv_name, nn.Conv2D(channels, channels, 1, weight_attr=conv_attr(lr_mult, conv_init),
                                               bias_attr=ParamAttr(learning_rate=lr_mult)))
        self.gate = get_act(gate)

    def forward(self, x):
        pooled = self.avg_pool(x) if self.avg_pool is not None else paddle.mean(x, axis=[2, 3], keepdim=True)
        scale = self.gate(getattr(self, self._conv_name)(pooled))
        return x * scale


class SEModule(nn.Layer):
    """Squeeze-excitation: x * gate(conv2(act(conv1(GAP(x))))), reduction `reduction`.

    Parameters `conv1`, `conv2` (both biased) as in PaddleClas PP-LCNet v1/v2. `act` is the inner
    activation (ReLU; PP-LCNetV2 uses its model activation there). `pool` and `conv_init` as in
    ESEModule ("mean" and None: PaddleOCR PP-LCNetV4's `x.mean` and default initializer).
    """

    def __init__(self, channels, reduction=4, gate="hardsigmoid", lr_mult=1.0, act="relu", pool="adaptive",
                 conv_init="kaiming"):
        super().__init__()
        if pool not in ("adaptive", "mean"):
            raise ValueError(f"SEModule: pool={pool!r}; expected 'adaptive' or 'mean'")
        self.avg_pool = nn.AdaptiveAvgPool2D(1) if pool == "adaptive" else None
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1, weight_attr=conv_attr(lr_mult, conv_init),
                               bias_attr=ParamAttr(learning_rate=lr_mult))
        self.relu = get_act(act)
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1, weight_attr=conv_attr(lr_mult, conv_init),
                               bias_attr=ParamAttr(learning_rate=lr_mult))
        self.gate = get_act(gate)

    def forward(self, x):
        pooled = self.avg_pool(x) if self.avg_pool is not None else paddle.mean(x, axis=[2, 3], keepdim=True)
        scale = self.gate(self.conv2(self.relu(self.conv1(pooled))))
        return x * scale


def ocr_rec_pool(x, training, where="the rec backbone", height_stride=None):
    """PaddleOCR's rec-backbone pooling of the last map `x` [N, C, H, W] (see OCR_REC_EVAL_POOL).

    In eval mode a map under 3 rows or 2 columns cannot be pooled: InputSizeError naming the map size,
    the input height that fits (`height_stride`: the model's height stride) and PaddleOCR's 48.
    """
    if training:
        return F.adaptive_avg_pool2d(x, list(OCR_REC_TRAIN_POOL))
    kh, kw = OCR_REC_EVAL_POOL
    h, w = x.shape[2], x.shape[3]  # a static graph's free sizes are not ints (-1 or a tensor): not checked
    if any(isinstance(s, int) and 0 <= s < k for s, k in ((h, kh), (w, kw))):
        fits = (f"an input at least {(kh - 1) * height_stride + 1} pixels high (PaddleOCR's rec inputs are 48 "
                f"high)" if height_stride else "a larger input")
        raise InputSizeError(f"{where}: its last map is {h}x{w}, but PaddleOCR's eval pooling avg_pool2d({list(OCR_REC_EVAL_POOL)}) "
                             f"needs at least {kh}x{kw}: use {fits}")
    return F.avg_pool2d(x, list(OCR_REC_EVAL_POOL))
