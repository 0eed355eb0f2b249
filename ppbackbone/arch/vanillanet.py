"""VanillaNet (huawei-noah/VanillaNet, PyTorch) in Paddle: train form, deep-training schedule, deploy fusion.

Parameter names are the official ones (`stem1.0.weight`, `stages.3.conv2.1._mean`, `stages.3.act.weight`,
`cls2.0.bias`; deploy form `stem.0`, `stages.i.conv`, `stages.i.act.{weight,bias}`, `cls.2`) with Paddle's BN
names (`_mean`/`_variance` for torch's running_mean/running_var); `ppbackbone.convert` turns an official .pth
into a Paddle checkpoint.

Deep training: every `leaky_relu(x, act_learn)` blends identity (act_learn = 1) and ReLU (0). A model built with
`act_learn_schedule="linear"|"cosine"` and `decay_epochs` sets act_learn from 0 to 1 over `decay_epochs` through
`on_epoch_begin(epoch, total_epochs)`, which ppbackbone's trainer calls at every epoch start. Deploy fusion
(`convert_to_deploy`, through `ppbackbone.reparameterize`) folds every BN and merges each pair of 1x1 convs; it is
exact only at act_learn == 1 and refuses otherwise.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, TruncatedNormal

from .base import Backbone
from .layers import conv_attr, norm_attrs
from .rep import RepMixin, fold_bn
from .registry import register_model

__all__ = ["VanillaNet", "act_learn_at", "VANILLA_CFGS"]

_BN_EPS = 1e-6
_W4 = [128 * 4, 128 * 4, 256 * 4, 512 * 4]  # prefix shared by 7..13
# (dims, strides[, ada_pool]); dims in units of 128*4 (x1_5: 128*6).
VANILLA_CFGS = {
    "5": dict(dims=[512, 1024, 2048, 4096], strides=[2, 2, 2]),
    "6": dict(dims=[512, 1024, 2048, 4096, 4096], strides=[2, 2, 2, 1]),
    "7": dict(dims=[512, 512, 1024, 2048, 4096, 4096], strides=[1, 2, 2, 2, 1]),
    "8": dict(dims=[512, 512, 1024, 2048, 2048, 4096, 4096], strides=[1, 2, 2, 1, 2, 1]),
    "9": dict(dims=[512, 512, 1024, 2048, 2048, 2048, 4096, 4096], strides=[1, 2, 2, 1, 1, 2, 1]),
    "10": dict(dims=[512, 512, 1024] + [2048] * 4 + [4096] * 2, strides=[1, 2, 2, 1, 1, 1, 2, 1]),
    "11": dict(dims=[512, 512, 1024] + [2048] * 5 + [4096] * 2, strides=[1, 2, 2, 1, 1, 1, 1, 2, 1]),
    "12": dict(dims=[512, 512, 1024] + [2048] * 6 + [4096] * 2, strides=[1, 2, 2, 1, 1, 1, 1, 1, 2, 1]),
    "13": dict(dims=[512, 512, 1024] + [2048] * 7 + [4096] * 2, strides=[1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1]),
    "13_x1_5": dict(dims=[768, 768, 1536] + [3072] * 7 + [6144] * 2, strides=[1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1]),
    "13_x1_5_ada_pool": dict(dims=[768, 768, 1536] + [3072] * 7 + [6144] * 2,
                             strides=[1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1],
                             ada_pool=[0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0]),
}
# Deploy-form parameter counts of the 1000-class models, as published (M).
PUBLISHED_DEPLOY_M = {"5": 15.5, "6": 32.5, "7": 32.8, "8": 37.1, "9": 41.4, "10": 45.7, "11": 50.0, "12": 54.3,
                      "13": 58.6, "13_x1_5": 127.8, "13_x1_5_ada_pool": 127.8}


def act_learn_at(epoch, decay_epochs, mode="linear"):
    """act_learn for `epoch` (0-based) of the deep-training schedule: 0 -> 1 over `decay_epochs`, then 1."""
    if decay_epochs <= 0 or epoch >= decay_epochs:
        return 1.0
    progress = max(epoch, 0) / decay_epochs
    if mode == "linear":
        return progress
    if mode == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * progress))
    raise ValueError(f"act_learn_schedule {mode!r}: expected 'linear' or 'cosine'")


def _blend(x, act_learn):
    """leaky_relu(x, act_learn): ReLU at 0, identity at 1. At 1 it is skipped: exact, cheaper, and Paddle
    Inference 3.3.1's oneDNN passes crash (SIGSEGV) on a leaky_relu with slope 1 in an unfused export."""
    return x if act_learn == 1 else F.leaky_relu(x, act_learn)


def _trunc_normal_attr(lr_mult):
    return conv_attr(lr_mult, TruncatedNormal(std=0.02))


def _conv(c_in, c_out, k, stride=1, padding=0, lr_mult=1.0):
    return nn.Conv2D(c_in, c_out, k, stride=stride, padding=padding, weight_attr=_trunc_normal_attr(lr_mult),
                     bias_attr=ParamAttr(initializer=Constant(0.0), learning_rate=lr_mult))


def _bn(channels, lr_mult=1.0):
    weight_attr, bias_attr = norm_attrs(lr_mult)
    return nn.BatchNorm2D(channels, epsilon=_BN_EPS, weight_attr=weight_attr, bias_attr=bias_attr)


def _merge_1x1(k_outer, b_outer, k_inner, b_inner):
    """outer(inner(x)) for an outer 1x1 conv after any inner conv: one (kernel, bias)."""
    outer = k_outer[:, :, 0, 0]
    kernel = paddle.einsum("oi,icjk->ocjk", outer, k_inner)
    return kernel, b_outer + paddle.matmul(outer, b_inner)


class Activation(nn.Layer, RepMixin):
    """ReLU, then a depthwise (2*act_num+1)^2 conv (`weight`) and BN (eps 1e-6); fused: biased conv."""

    def __init__(self, dim, act_num=3, lr_mult=1.0):
        super().__init__()
        size = act_num * 2 + 1
        self.act_num = act_num
        self.weight = self.create_parameter([dim, 1, size, size], attr=_trunc_normal_attr(lr_mult))
        self.bias = None
        self.bn = _bn(dim, lr_mult)

    def forward(self, x):
        x = F.conv2d(F.relu(x), self.weight, self.bias, padding=self.act_num, groups=self.weight.shape[0])
        return x if self.bn is None else self.bn(x)

    def _fuse(self):
        kernel, bias = fold_bn(self.weight, self.bn)
        self.weight.set_value(kernel)
        self.bias = self.create_parameter([kernel.shape[0]], is_bias=True)
        self.bias.set_value(bias)
        del self.bn
        self.bn = None


class Block(nn.Layer, RepMixin):
    """1x1 conv+BN, leaky_relu(act_learn), 1x1 conv+BN, pool, Activation; fused: one biased 1x1 `conv`."""

    def __init__(self, dim, dim_out, act_num=3, stride=2, ada_pool=0, lr_mult=1.0):
        super().__init__()
        self.act_learn = 1.0
        self.conv1 = nn.Sequential(_conv(dim, dim, 1, lr_mult=lr_mult), _bn(dim, lr_mult))
        self.conv2 = nn.Sequential(_conv(dim, dim_out, 1, lr_mult=lr_mult), _bn(dim_out, lr_mult))
        self.conv = None
        self.ada_pool = ada_pool
        if stride == 1:
            self.pool = nn.Identity()
        elif ada_pool:
            self.pool = nn.AdaptiveMaxPool2D((ada_pool, ada_pool))
        else:
            self.pool = nn.MaxPool2D(stride)
        self.act = Activation(dim_out, act_num, lr_mult)

    def forward(self, x):
        if self.conv is not None:
            x = self.conv(x)
        else:
            x = self.conv2(_blend(self.conv1(x), self.act_learn))
        return self.act(self.pool(x))

    def _fuse(self):
        _check_exact(self.act_learn)
        k1, b1 = fold_bn(self.conv1[0].weight, self.conv1[1], self.conv1[0].bias)
        k2, b2 = fold_bn(self.conv2[0].weight, self.conv2[1], self.conv2[0].bias)
        kernel, bias = _merge_1x1(k2, b2, k1, b1)
        conv = nn.Conv2D(kernel.shape[1], kernel.shape[0], 1)
        conv.weight.set_value(kernel)
        conv.bias.set_value(bias)
        del self.conv1, self.conv2
        self.conv = conv
        self.act.convert_to_deploy()


def _check_exact(act_learn):
    if act_learn != 1:
        raise ValueError(f"VanillaNet deploy fusion needs act_learn == 1 (the end of deep training); it is "
                         f"{act_learn}, where merging the two 1x1 convs would change the outputs. Call "
                         f"model.set_act_learn(1.0) first if that is what you mean.")


def _min_input_size(stem_conv, strides, ada_pool):
    """Smallest square image every stage can take: no max-pool may see an empty map, no adaptive
    max-pool (ada_pool > 0 at a pooling stage) a map smaller than its output."""
    kernel, stride = stem_conv._kernel_size[0], stem_conv._stride[0]
    padding = stem_conv._padding if isinstance(stem_conv._padding, int) else stem_conv._padding[0]

    def fits(size):
        size = (size + 2 * padding - kernel) // stride + 1
        for pool_stride, pool_size in zip(strides, ada_pool):
            if size < 1 or (pool_stride > 1 and size < max(pool_size, pool_stride)):
                return False
            if pool_stride > 1:
                size = pool_size or size // pool_stride
        return size >= 1

    return next(size for size in range(1, 1 << 14) if fits(size))


class VanillaNet(Backbone, RepMixin):
    """VanillaNet with the official arguments (dims, strides, act_num, drop_rate, ada_pool, deploy).

    Args:
        dims: stem width, then one width per stage (len(strides) + 1 entries).
        strides: per-stage pooling stride (1: no pooling).
        act_num: the activation's depthwise kernel is (2*act_num+1)^2 (3 for ImageNet, 4 in RT-DETR).
        drop_rate: dropout before the head's first conv.
        ada_pool: per-stage adaptive max-pool output sizes (0: plain pooling).
        act_learn_schedule / decay_epochs: deep-training schedule applied by on_epoch_begin.
        deploy: build the fused form directly (to load deploy-form checkpoints).
    """
    head_prefixes = ("cls1.", "cls2.", "cls.")

    def __init__(self, dims, strides, act_num=3, drop_rate=0.0, ada_pool=None, num_classes=1000, out_indices=None,
                 lr_mult_list=None, freeze_at=-1, freeze_stem_only=False, freeze_norm=False, act_learn_schedule=None,
                 decay_epochs=100, deploy=False):
        super().__init__()
        if len(dims) != len(strides) + 1:
            raise ValueError(f"VanillaNet: dims needs len(strides) + 1 = {len(strides) + 1} entries, got {len(dims)}")
        if ada_pool is not None and len(ada_pool) != len(strides):
            raise ValueError(f"VanillaNet: ada_pool needs one entry per stage ({len(strides)}), got {len(ada_pool)}")
        if act_learn_schedule is not None:
            act_learn_at(0, decay_epochs, act_learn_schedule)  # validates the mode name
        self.group_names = ("stem",) + tuple(f"stage{i + 1}" for i in range(len(strides)))
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        self.act_learn = 1.0
        self.act_learn_schedule = act_learn_schedule
        self.decay_epochs = decay_epochs
        self.drop_rate = drop_rate
        # The official code (since f6d5bd0) gives the ada_pool variant a 4x4 stride-3 padding-1 stem (224 -> 75,
        # which its adaptive pools take to 38/19/10); the others a 4x4 stride-4 one.
        self.stem_stride, self.stem_padding = (3, 1) if ada_pool else (4, 0)
        self.stem1 = nn.Sequential(_conv(3, dims[0], 4, self.stem_stride, self.stem_padding, lr_mults[0]),
                                   _bn(dims[0], lr_mults[0]))
        self.stem2 = nn.Sequential(_conv(dims[0], dims[0], 1, lr_mult=lr_mults[0]), _bn(dims[0], lr_mults[0]),
                                   Activation(dims[0], act_num, lr_mults[0]))
        self.stem = None
        self.stages = nn.LayerList([
            Block(dims[i], dims[i + 1], act_num, strides[i], ada_pool[i] if ada_pool else 0, lr_mults[i + 1])
            for i in range(len(strides))])
        # ada_pool: its adaptive pools have no stride; the nominal strides 3/6/12/24 are exact at 224 (75/38/19/10).
        info, stride = [], self.stem_stride
        self.strides = list(strides)
        self.ada_pool = list(ada_pool) if ada_pool else None
        for i, s in enumerate(strides):
            stride *= s
            info.append(dict(channels=dims[i + 1], stride=stride, name=f"stages.{i}"))
        self.init_features(info, out_indices)
        # feature extraction runs the stages up to the last one it returns: only those bound the input
        run = len(strides) if self.out_indices is None else self.out_indices[-1] + 1
        self.min_input_size = _min_input_size(self.stem1[0], strides[:run], (ada_pool or [0] * len(strides))[:run])
        self.min_input_reason = ("its adaptive max-pools need inputs of at least their output size" if ada_pool
                                 else "its max-pools need at least one pixel to pool")
        self.cls1 = self.cls2 = self.cls = None
        if self.out_indices is None:
            self.reset_classifier(num_classes)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)
        if deploy:
            self.convert_to_deploy()

    # ------------------------------------------------------------------ contract
    def groups(self):
        # The stem is two Sequentials (one after fusion); group them in a container kept in a plain list,
        # so that it is not registered as a sublayer (which would rename parameters) and keeps its mode.
        layers = [layer for layer in (self.stem1, self.stem2, self.stem) if layer is not None]
        cached = self.__dict__.setdefault("_stem_group", [])
        if not cached or list(cached[0].children()) != layers:
            cached[:] = [nn.LayerList(layers)]
            cached[0].training = layers[0].training
        return [cached[0], *self.stages]

    def reset_classifier(self, num_classes):
        """Rebuild the conv head (pool, dropout, 1x1 conv + BN, leaky_relu, 1x1 conv) for `num_classes` > 0."""
        if self.out_indices is not None:
            raise ValueError(f"VanillaNet was built in feature mode (out_indices={self.out_indices}); "
                             f"it has no classifier to reset")
        if int(num_classes) <= 0:
            raise ValueError(f"VanillaNet's head is a conv stack ending in num_classes channels: num_classes must "
                             f"be > 0, got {num_classes}; use out_indices for features")
        self.num_classes = int(num_classes)
        dim = self.feature_info[-1]["channels"]
        self.cls1 = nn.Sequential(nn.AdaptiveAvgPool2D(1), nn.Dropout(self.drop_rate),
                                  _conv(dim, self.num_classes, 1), _bn(self.num_classes))
        self.cls2 = nn.Sequential(_conv(self.num_classes, self.num_classes, 1))
        self.cls = None
        self.num_features = dim

    def set_act_learn(self, value):
        """Set act_learn (0: ReLU ... 1: identity) of the stem, every block and the head."""
        self.act_learn = float(value)
        for stage in self.stages:
            stage.act_learn = float(value)

    def change_act(self, value):
        """The official name of set_act_learn."""
        self.set_act_learn(value)

    def on_epoch_begin(self, epoch, total_epochs=None):
        """Trainer hook: apply the deep-training schedule (no-op without one)."""
        if self.act_learn_schedule is not None and not self.deployed:
            self.set_act_learn(act_learn_at(epoch, self.decay_epochs, self.act_learn_schedule))

    def feature_sizes(self, image_size):
        """Exact (h, w) of every stage's output for an (h, w) input (or an int for a square one): the stem conv's
        arithmetic, then floor pooling or the adaptive pools' fixed sizes."""
        size = image_size if isinstance(image_size, (tuple, list)) else (image_size, image_size)
        size = [(s + 2 * self.stem_padding - 4) // self.stem_stride + 1 for s in size]
        sizes = []
        for i, stride in enumerate(self.strides):
            if stride != 1:
                ada = self.ada_pool[i] if self.ada_pool else 0
                size = [ada if ada else s // stride for s in size]
            sizes.append(tuple(size))
        return sizes

    # ------------------------------------------------------------------ forward
    def forward_stages(self, x, last=None):
        if self.stem is not None:
            x = self.stem(x)
        else:
            x = self.stem2(_blend(self.stem1(x), self.act_learn))
        outs = []
        for stage in self.stages_up_to(self.stages, last):
            x = stage(x)
            outs.append(x)
        return outs

    def forward_head(self, x, pre_logits=False):
        if pre_logits:
            return paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if self.cls is not None:
            x = self.cls(x)
        else:
            x = self.cls2(_blend(self.cls1(x), self.act_learn))
        return paddle.flatten(x, 1)

    # ------------------------------------------------------------------ deploy
    def _fuse(self):
        _check_exact(self.act_learn)
        for stage in self.stages:
            stage.convert_to_deploy()
        k1, b1 = fold_bn(self.stem1[0].weight, self.stem1[1], self.stem1[0].bias)
        k2, b2 = fold_bn(self.stem2[0].weight, self.stem2[1], self.stem2[0].bias)
        kernel, bias = _merge_1x1(k2, b2, k1, b1)
        conv = nn.Conv2D(3, kernel.shape[0], 4, stride=self.stem_stride, padding=self.stem_padding)
        conv.weight.set_value(kernel)
        conv.bias.set_value(bias)
        act = self.stem2[2]
        act.convert_to_deploy()
        del self.stem1, self.stem2
        self.stem1 = self.stem2 = None
        self.stem = nn.Sequential(conv, act)
        if self.cls1 is not None:
            k1, b1 = fold_bn(self.cls1[2].weight, self.cls1[3], self.cls1[2].bias)
            k2, b2 = self.cls2[0].weight, self.cls2[0].bias
            kernel, bias = _merge_1x1(k2, b2, k1, b1)
            head = nn.Conv2D(kernel.shape[1], kernel.shape[0], 1)
            head.weight.set_value(kernel)
            head.bias.set_value(bias)
            pool, dropout = self.cls1[0], self.cls1[1]
            del self.cls1, self.cls2
            self.cls1 = self.cls2 = None
            self.cls = nn.Sequential(pool, dropout, head)


# ---------------------------------------------------------------------------- registration
# Train-form parameter counts of the default (1000-class) instances, BN statistics excluded. The generic
# tests build the small `test_args` instances (full widths are 15-128M parameters); tests/test_vanillanet.py
# checks the published deploy counts of full-size 5, 6 and 13.
TEST_DIMS = {n: [d // 16 for d in cfg["dims"]] for n, cfg in VANILLA_CFGS.items()}
# Deploy-form counts of all eleven equal the published ones (measured once: 15.52, 32.51, 32.80, 37.10, 41.40,
# 45.69, 49.99, 54.29, 58.59, 127.80, 127.80M); vanillanet_5's train form 22.33M equals the Keras port's.
NUM_PARAMS = {"5": 22328800, "6": 56116704, "7": 56670176, "8": 65175520, "9": 73680864, "10": 82186208,
              "11": 90691552, "12": 99196896, "13": 107702240, "13_x1_5": 236942048, "13_x1_5_ada_pool": 236942048}
TEST_NUM_PARAMS = {"5": 1353760, "6": 1499424, "7": 1503296, "8": 1543360, "9": 1583424, "10": 1623488,
                   "11": 1663552, "12": 1703616, "13": 1743680, "13_x1_5": 2409968, "13_x1_5_ada_pool": 2409968}

for _v, _cfg in VANILLA_CFGS.items():
    _test_args = {"dims": TEST_DIMS[_v]}
    if "ada_pool" in _cfg:
        _test_args["ada_pool"] = [0, 11, 6, 0, 0, 0, 0, 0, 0, 3, 0]  # 64x64 -> 21 -> 11/6/3, as 224 -> 75 -> 38/19/10
    register_model(f"vanillanet_{_v}", VanillaNet, _cfg, family="vanillanet", num_params=NUM_PARAMS.get(_v),
                   pretrained=dict(interpolation="bicubic"),  # official eval: resize 256 -> crop 224, bicubic
                   test_num_params=TEST_NUM_PARAMS.get(_v), test_args=_test_args,
                   reference=f"huawei-noah/VanillaNet vanillanet_{_v}")
