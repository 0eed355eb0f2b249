"""CSPResNet: the PP-YOLOE / PP-YOLOE+ backbone (PaddleDetection `CSPResNet`), plus a GAP + fc head.

Parameter names equal PaddleDetection's (`stem.conv1.conv.weight`, `stages.2.blocks.0.conv2.conv1.bn._mean`,
`stages.1.attn.fc.weight`, `stages.3.blocks.0.conv2.alpha`, ...), so its checkpoints load unchanged.
Widths and depths are scaled exactly as PaddleDetection does: `max(round(c * width_mult), 1)`.

Names: `cspresnet_{t,s,m,l,x}` are the PP-YOLOE+ settings (large stem, learnable alpha) with an ImageNet
classifier head by default; give `out_indices` (or PaddleDetection's `return_idx`) for the detection
backbone. `use_alpha=False` gives the legacy PP-YOLOE backbone. `cspresnet` (alias `CSPResNet`) is
PaddleDetection's class with its own defaults (feature mode, return_idx [1, 2, 3], small stem).
"""
import numbers

import paddle
import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Constant

from .base import Backbone
from .layers import ConvBNAct, ESEModule, get_act
from .rep import RepMixin, conv_like, fold_bn, pad_kernel
from .native import register_native
from .registry import register_model

__all__ = ["CSPResNet", "RepVggBlock", "CSP_CFGS"]

_DET_URL = "https://paddledet.bj.bcebos.com/models/pretrained/"

# (depth_mult, width_mult) of PP-YOLOE(+) t/s/m/l/x.
CSP_CFGS = {"t": (0.33, 0.375), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


def _conv_bn(c_in, c_out, k, stride=1, act=None, lr_mult=1.0):
    # PaddleDetection leaves conv weights at Paddle's default initialisation.
    return ConvBNAct(c_in, c_out, k, stride=stride, act=act, lr_mult=lr_mult, conv_init=None)


class RepVggBlock(nn.Layer, RepMixin):
    """act(conv3x3bn(x) + alpha * conv1x1bn(x)); fused: act(conv(x)) with one biased 3x3 `conv`."""

    def __init__(self, channels, act="relu", use_alpha=False, lr_mult=1.0):
        super().__init__()
        self.conv1 = _conv_bn(channels, channels, 3, lr_mult=lr_mult)
        self.conv2 = _conv_bn(channels, channels, 1, lr_mult=lr_mult)
        self.act = get_act(act)
        self.alpha = (self.create_parameter([1], attr=ParamAttr(initializer=Constant(1.0), learning_rate=lr_mult))
                      if use_alpha else None)
        self.conv = None

    def _effective_alpha(self):
        # PaddleDetection writes `if self.alpha:`, and a Paddle tensor is truthy only when > 0: an alpha
        # that went <= 0 in training is ignored (weight 1), and released checkpoints were evaluated so.
        return paddle.where(self.alpha > 0, self.alpha, paddle.ones_like(self.alpha))

    def forward(self, x):
        if self.conv is not None:
            return self.act(self.conv(x))
        branch = self.conv2(x)
        if self.alpha is not None:
            branch = self._effective_alpha() * branch
        return self.act(self.conv1(x) + branch)

    def _fuse(self):
        k3, b3 = fold_bn(self.conv1.conv.weight, self.conv1.bn)
        k1, b1 = fold_bn(pad_kernel(self.conv2.conv.weight, 3), self.conv2.bn)
        if self.alpha is not None:
            alpha = self._effective_alpha()
            k1, b1 = alpha * k1, alpha * b1
        self.conv = conv_like(self.conv1.conv, k3 + k1, b3 + b1)
        del self.conv1, self.conv2
        if self.alpha is not None:
            del self.alpha  # folded in: no unused parameter stays behind
            self.alpha = None


class BasicBlock(nn.Layer):
    """3x3 ConvBNAct -> RepVggBlock, plus the input."""

    def __init__(self, channels, act, use_alpha=False, lr_mult=1.0):
        super().__init__()
        self.conv1 = _conv_bn(channels, channels, 3, act=act, lr_mult=lr_mult)
        self.conv2 = RepVggBlock(channels, act=act, use_alpha=use_alpha, lr_mult=lr_mult)

    def forward(self, x):
        return x + self.conv2(self.conv1(x))


class CSPResStage(nn.Layer):
    """3x3/2 conv_down to mid=(in+out)//2; two 1x1 halves, blocks on one; concat; ESE (`attn`); 1x1 conv3."""

    def __init__(self, c_in, c_out, num_blocks, act, use_alpha=False, lr_mult=1.0):
        super().__init__()
        mid = (c_in + c_out) // 2
        self.conv_down = _conv_bn(c_in, mid, 3, stride=2, act=act, lr_mult=lr_mult)
        self.conv1 = _conv_bn(mid, mid // 2, 1, act=act, lr_mult=lr_mult)
        self.conv2 = _conv_bn(mid, mid // 2, 1, act=act, lr_mult=lr_mult)
        self.blocks = nn.Sequential(*[BasicBlock(mid // 2, act, use_alpha, lr_mult) for _ in range(num_blocks)])
        # F.hardsigmoid's slope 1/6 and offset 0.5, as PaddleDetection's get_act_fn("hardsigmoid")
        self.attn = ESEModule(mid, gate="hardsigmoid", conv_name="fc", lr_mult=lr_mult, conv_init=None, pool="mean")
        self.conv3 = _conv_bn(mid, c_out, 1, act=act, lr_mult=lr_mult)

    def forward(self, x):
        x = self.conv_down(x)
        y = paddle.concat([self.conv1(x), self.blocks(self.conv2(x))], axis=1)
        return self.conv3(self.attn(y))


class CSPResNet(Backbone):
    """CSPResNet (PaddleDetection's arguments) with the ppbackbone contract.

    Args:
        layers / channels: blocks per stage and [stem, stage1..stage4] widths before scaling.
        act: activation name ("swish" in PP-YOLOE); `trt=True` uses the x * sigmoid(x) form of swish.
        use_large_stem: three 3x3 stem convs instead of two (PP-YOLOE and PP-YOLOE+).
        width_mult / depth_mult: scaling as PaddleDetection: max(round(c * w), 1), max(round(n * d), 1).
        use_alpha: learnable alpha on the RepVgg 1x1 branch (PP-YOLOE+).
        return_idx: PaddleDetection's name for out_indices (wins when both are given).
    """

    def __init__(self, layers=(3, 6, 6, 3), channels=(64, 128, 256, 512, 1024), act="swish",
                 use_large_stem=False, width_mult=1.0, depth_mult=1.0, trt=False, use_alpha=False,
                 num_classes=1000, out_indices=None, return_idx=None, lr_mult_list=None, freeze_at=-1,
                 freeze_stem_only=False, freeze_norm=False):
        super().__init__()
        for name, value in (("width_mult", width_mult), ("depth_mult", depth_mult)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"CSPResNet: {name} must be a number > 0, got {value!r}")
        if len(channels) != len(layers) + 1:
            raise ValueError(f"CSPResNet: channels needs len(layers) + 1 = {len(layers) + 1} entries "
                             f"(stem + one per stage), got {len(channels)}")
        out_indices = return_idx if return_idx is not None else out_indices
        # PaddleDetection's trt flag swaps swish and silu alike for the x * sigmoid(x) form.
        act_name = "swish_trt" if trt and act in ("swish", "silu") else act
        try:
            get_act(act_name)
        except ValueError as err:
            raise ValueError(f"CSPResNet: act: {err}") from None
        channels = [max(round(c * width_mult), 1) for c in channels]
        layers = [max(round(n * depth_mult), 1) for n in layers]
        self.group_names = ("stem",) + tuple(f"stage{i + 1}" for i in range(len(layers)))
        lr_mults = self.check_lr_mult_list(lr_mult_list)

        stem = [("conv1", _conv_bn(3, channels[0] // 2, 3, stride=2, act=act_name, lr_mult=lr_mults[0]))]
        if use_large_stem:
            stem.append(("conv2", _conv_bn(channels[0] // 2, channels[0] // 2, 3, act=act_name, lr_mult=lr_mults[0])))
            stem.append(("conv3", _conv_bn(channels[0] // 2, channels[0], 3, act=act_name, lr_mult=lr_mults[0])))
        else:
            stem.append(("conv2", _conv_bn(channels[0] // 2, channels[0], 3, act=act_name, lr_mult=lr_mults[0])))
        self.stem = nn.Sequential(*stem)
        self.stages = nn.Sequential(*[
            (str(i), CSPResStage(channels[i], channels[i + 1], layers[i], act_name, use_alpha, lr_mults[i + 1]))
            for i in range(len(layers))])
        try:
            self.init_features([dict(channels=channels[i + 1], stride=4 * 2 ** i, name=f"stages.{i}")
                                for i in range(len(layers))], out_indices)
        except ValueError as err:
            if return_idx is None:
                raise
            raise ValueError(f"CSPResNet: return_idx (PaddleDetection's name for out_indices): {err}") from None
        if self.out_indices is None:
            self.build_head(num_classes)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)


# Parameter counts of the default instances (BN statistics excluded); the feature-mode counts with BN
# statistics equal REFERENCES.md's PaddleDetection figures (tests/test_cspresnet_parity.py).
NUM_PARAMS = {"cspresnet_t": 2070262, "cspresnet_s": 3505982, "cspresnet_m": 10086436, "cspresnet_l": 22183770,
              "cspresnet_x": 41521664, "cspresnet": 21149472}

for _size, (_depth, _width) in CSP_CFGS.items():
    register_model(f"cspresnet_{_size}", CSPResNet,
                   dict(use_large_stem=True, use_alpha=True, depth_mult=_depth, width_mult=_width),
                   family="cspresnet", num_params=NUM_PARAMS[f"cspresnet_{_size}"],
                   url=f"{_DET_URL}CSPResNetb_{_size}_pretrained.pdparams",
                   pretrained=dict(interpolation="bicubic"),  # as configs/cspresnet_*.yaml evaluate
                   reference=f"PaddleDetection CSPResNet (PP-YOLOE+ {_size}: depth {_depth}, width {_width})")

register_model("cspresnet", CSPResNet, dict(out_indices=[1, 2, 3]), aliases=("CSPResNet",), family="cspresnet",
               num_params=NUM_PARAMS["cspresnet"], reference="PaddleDetection CSPResNet (its defaults)")


def build_native_cspresnet(layers, channels, act, return_idx, depth_wise, use_large_stem, width_mult, depth_mult,
                           trt, use_alpha):
    """PaddleDetection's `CSPResNet(...)` with its own defaults. `depth_wise` is accepted and, as there,
    has no effect."""
    del depth_wise  # unused by PaddleDetection's CSPResNet too
    return CSPResNet(layers=layers, channels=channels, act=act, use_large_stem=use_large_stem, width_mult=width_mult,
                     depth_mult=depth_mult, trt=trt, use_alpha=use_alpha, return_idx=return_idx)


register_native("CSPResNet", build_native_cspresnet,
                defaults=dict(layers=[3, 6, 6, 3], channels=[64, 128, 256, 512, 1024], act="swish",
                              return_idx=[1, 2, 3], depth_wise=False, use_large_stem=False, width_mult=1.0,
                              depth_mult=1.0, trt=False, use_checkpoint=False, use_alpha=False),
                unsupported={"use_checkpoint": False}, shared=("width_mult", "depth_mult", "trt"),
                reference="PaddleDetection ppdet/modeling/backbones/cspresnet.py CSPResNet (2.6.0 = develop)")
