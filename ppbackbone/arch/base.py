"""The backbone contract, implemented once for every family.

A family subclasses `Backbone` and, in its constructor:
  1. checks `lr_mult_list` with `self.check_lr_mult_list(...)` and builds its stem and stages;
  2. calls `self.init_features(feature_info, out_indices)` (feature_info: one dict per stage,
     `{channels, stride, name}`, stride ascending);
  3. when `self.out_indices is None`, builds its classifier head with `self.build_head(...)`;
  4. calls `self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm)`.
It provides `groups()` (stem first, then one layer per stage: what lr_mult_list and freeze_at
index) and `forward_stages(x, last)` (one output per stage, stopping after stage `last`). The
defaults cover the common layout (a `self.stem` and a `self.stages` list, run in sequence); a
family overrides what differs. A family whose inputs have a lower bound sets `self.min_input_size`
(pixels per side) and `self.min_input_reason`; `forward` checks it before running. The rest of the
surface comes from here.
"""
from collections import namedtuple

import paddle
import paddle.nn as nn

from .layers import LearnableAffineBlock, conv_attr, freeze_batch_norm, get_act

__all__ = ["Backbone", "ShapeSpec"]

# Same fields as PaddleDetection's ShapeSpec, which its necks read (`.channels`, `.stride`).
ShapeSpec = namedtuple("ShapeSpec", ["channels", "height", "width", "stride"], defaults=[None] * 4)


class Backbone(nn.Layer):
    """Base of every ppbackbone model.

    `forward(x)` gives logits (classifier) or, with `out_indices`, the list of selected stage
    outputs (stride ascending). `x` may also be PaddleDetection's `{"image": tensor}` dict.
    """

    # Top-level parameter prefixes of the classifier head (checkpoint keys starting with them are
    # head keys: skipped, not "unexpected", when the model is built without a head).
    head_prefixes = ("last_conv.", "lab.", "fc.")
    # Human names of the lr/freeze groups, stem first; used in error messages.
    group_names = ()
    # Parameter-name prefixes a reference builds but its forward never uses (PaddleOCR's HGNet forms keep the
    # classifier's last_conv/fc): kept for checkpoint compatibility, trainable as there, never given a gradient.
    unused_param_prefixes = ()
    # True for a model whose `forward` returns one map, the last stage's (pooled the way PaddleOCR's rec
    # backbones pool it), rather than logits or a list of maps: PaddleOCR's rec forms set it.
    returns_single_map = False
    # PaddleOCR's task of an OCR form ("det" or "rec"; None otherwise): what its exporter's input spec leaves free
    # (see export_input_shape).
    ocr_task = None

    def __init__(self):
        super().__init__()
        self.feature_info = []
        self.out_indices = None
        self.num_classes = 0
        self.num_features = 0
        self._frozen_groups = []
        self.min_input_size = None  # smallest height/width the model can take (None: no bound)
        self.min_input_reason = ""  # why, for the error message

    # ---------------------------------------------------------------- family hooks
    def groups(self):
        """[stem, stage1, ...]: the layers `lr_mult_list` and `freeze_at` refer to.

        Default: `[self.stem, *self.stages]`."""
        if not (hasattr(self, "stem") and hasattr(self, "stages")):
            raise NotImplementedError(f"{type(self).__name__} has no `stem` + `stages`: it must define groups()")
        return [self.stem, *self.stages]

    def forward_stages(self, x, last=None):
        """List with the outputs of stages 0..last (every stage when `last` is None): feature
        extraction runs no stage after the last one it returns.

        Default: the groups in sequence, collecting each stage's output."""
        stem, *stages = self.groups()
        x = stem(x)
        outs = []
        for stage in self.stages_up_to(stages, last):
            x = stage(x)
            outs.append(x)
        return outs

    @staticmethod
    def stages_up_to(stages, last=None):
        """The stages 0..last of a stage list (all when `last` is None), as a Python list."""
        stages = list(stages)
        return stages if last is None else stages[:last + 1]

    def filter_state_dict(self, state_dict):
        """Adapt a checkpoint of another layout of the same architecture (default: unchanged)."""
        return state_dict

    # ---------------------------------------------------------------- construction helpers
    def check_lr_mult_list(self, lr_mult_list):
        """Validate the per-group learning-rate multipliers (default: all 1.0); returns a list."""
        names = list(self.group_names)
        if lr_mult_list is None:
            return [1.0] * len(names)
        values = list(lr_mult_list)
        if len(values) != len(names):
            raise ValueError(f"lr_mult_list has {len(values)} entries; {type(self).__name__} needs "
                             f"{len(names)}: [{', '.join(names)}]")
        return [float(v) for v in values]

    def init_features(self, feature_info, out_indices):
        """Record per-stage feature_info and validate/store `out_indices` (None: classifier)."""
        self.feature_info = [dict(info) for info in feature_info]
        if out_indices is not None:
            out_indices = [int(i) for i in out_indices]
            n = len(self.feature_info)
            bad = [i for i in out_indices if not -n <= i < n]
            if bad or not out_indices:
                raise ValueError(f"out_indices {out_indices} out of range: {type(self).__name__} has "
                                 f"{n} stages, indices 0..{n - 1} "
                                 f"({', '.join(f['name'] for f in self.feature_info)})")
            out_indices = sorted(i % n for i in out_indices)
        self.out_indices = out_indices
        self.num_features = self.feature_info[-1]["channels"]

    def build_head(self, num_classes, class_expand=None, act="relu", use_lab=False, dropout=0.0,
                   act_name="act", lab_lr=0.01, last_conv_bias=False):
        """GAP [-> 1x1 last_conv (no bias unless `last_conv_bias`) -> act [-> LAB] -> dropout] -> flatten -> fc.

        The layout of PaddleClas's HGNet, PP-LCNet and CSPResNet classifiers: parameters
        `last_conv.weight`, `lab.{scale,bias}`, `fc.{weight,bias}`. `act_name` is the attribute
        the activation is stored under (no parameters; kept for readable printouts).
        """
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        in_channels = self.feature_info[-1]["channels"]
        self.last_conv = None
        self.lab = None
        if class_expand:
            self.last_conv = nn.Conv2D(in_channels, class_expand, 1, weight_attr=conv_attr(),
                                       bias_attr=None if last_conv_bias else False)
            self._head_act_name = act_name
            setattr(self, act_name, get_act(act))
            if use_lab:
                self.lab = LearnableAffineBlock(lab_lr=lab_lr)
            in_channels = class_expand
        self.dropout = nn.Dropout(p=dropout, mode="downscale_in_infer") if dropout else None
        self.flatten = nn.Flatten(start_axis=1, stop_axis=-1)
        self.num_features = in_channels
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes):
        """Replace the final fc by one with `num_classes` outputs (0: none, pooled features out)."""
        if self.out_indices is not None:
            raise ValueError(f"{type(self).__name__} was built in feature mode (out_indices="
                             f"{self.out_indices}); it has no classifier to reset")
        self.num_classes = int(num_classes)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.fc = nn.Linear(self.num_features, self.num_classes) if self.num_classes else nn.Identity()

    def apply_freeze(self, freeze_at=-1, freeze_stem_only=False, freeze_norm=False):
        """Freeze the stem (freeze_at >= 0) and, unless `freeze_stem_only`, stages 0..freeze_at;
        `freeze_norm` turns every BatchNorm into a frozen one (global statistics, not trainable,
        same parameter names). Frozen groups stay in eval mode through `train()`.

        One meaning for every family, PaddleDetection HGNetv2's: freeze_at=-1 freezes nothing.
        """
        groups = self.groups()
        last = len(groups) - 2
        if not isinstance(freeze_at, int) or not -1 <= freeze_at <= last:
            raise ValueError(f"freeze_at={freeze_at!r} out of range for {type(self).__name__}: -1 "
                             f"(nothing), 0 (stem{'' if freeze_stem_only else ' + stage 0'}) .. {last}")
        frozen = []
        if freeze_at >= 0:
            frozen = groups[:1] if freeze_stem_only else groups[:freeze_at + 2]
        for layer in frozen:
            for param in layer.parameters():
                param.stop_gradient = True
        self._frozen_groups = frozen
        if freeze_norm:
            freeze_batch_norm(self)
        if self.training:
            self.train()

    def feature_sizes(self, image_size):
        """(h, w) of every stage's output for an (h, w) input (or an int for a square one).

        Default: ceil(size / stride) per side (`stride_hw` where a stage has one); a family whose stages do
        not follow it (VanillaNet's padded stem and adaptive pools) overrides this."""
        h, w = image_size if isinstance(image_size, (tuple, list)) else (image_size, image_size)
        sizes = []
        for info in self.feature_info:
            sh, sw = info.get("stride_hw", (info["stride"], info["stride"]))
            sizes.append((-(-h // sh), -(-w // sw)))
        return sizes

    # ---------------------------------------------------------------- forward surface
    def train(self):
        super().train()
        for layer in self._frozen_groups:
            layer.eval()
        return self

    def check_input_size(self, x):
        """Refuse an input below the declared `min_input_size` before running anything.

        Unknown sizes (a static graph's -1) pass."""
        if not self.min_input_size:
            return
        height, width = x.shape[-2], x.shape[-1]
        if any(s is not None and 0 < s < self.min_input_size for s in (height, width)):
            name = getattr(self, "model_name", type(self).__name__)
            reason = f" ({self.min_input_reason})" if self.min_input_reason else ""
            raise ValueError(f"{name} takes inputs of at least {self.min_input_size}x{self.min_input_size} "
                             f"pixels{reason}; got {height}x{width}")

    def forward_features(self, x):
        """The last stage's feature map (before pooling)."""
        self.check_input_size(x)
        return self.forward_stages(x)[-1]

    def forward_head(self, x, pre_logits=False):
        """Pool + head on a last-stage feature map; `pre_logits` stops before the fc."""
        x = self.avg_pool(x)
        if self.last_conv is not None:
            x = getattr(self, self._head_act_name)(self.last_conv(x))
            if self.lab is not None:
                x = self.lab(x)
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.flatten(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        if isinstance(x, dict):
            x = x["image"]
        if self.out_indices is not None:
            self.check_input_size(x)
            outs = self.forward_stages(x, last=self.out_indices[-1])
            return [outs[i] for i in self.out_indices]
        return self.forward_head(self.forward_features(x))

    @property
    def out_feature_info(self):
        """feature_info of the returned maps (all stages for a classifier)."""
        if self.out_indices is None:
            return list(self.feature_info)
        return [self.feature_info[i] for i in self.out_indices]

    @property
    def out_channels(self):
        """Channels of the returned maps (a list), or, for a model whose `forward` returns one map
        (`returns_single_map`: PaddleOCR's rec forms), that map's channels as an int (PaddleOCR's contract)."""
        if self.out_indices is None and self.returns_single_map:
            return self.feature_info[-1]["channels"]
        return [f["channels"] for f in self.out_feature_info]

    @property
    def out_strides(self):
        return [f["stride"] for f in self.out_feature_info]

    @property
    def out_shape(self):
        """PaddleDetection's view of the returned maps: [ShapeSpec(channels=, stride=), ...]."""
        return [ShapeSpec(channels=f["channels"], stride=f["stride"]) for f in self.out_feature_info]

    def export_input_shape(self, image_shape):
        """[C, H, W] of the exported program's input for an export at `image_shape`, -1 where any size runs:
        PaddleOCR's specs for its forms (det [3, -1, -1]; rec [3, H, -1]: the height fixed, 48 in PP-OCR,
        the width free), else `image_shape` itself."""
        channels, height, width = image_shape
        if self.ocr_task == "det":
            return [channels, -1, -1]
        if self.ocr_task == "rec":
            return [channels, height, -1]
        return list(image_shape)

    def is_head_key(self, key):
        """True for a checkpoint key that belongs to the classifier head."""
        return key.startswith(self.head_prefixes)


def count_params(model):
    """Number of parameters (trainable or frozen), BN running statistics excluded."""
    # Paddle keeps BN statistics as (non-trainable) parameters named `_mean` / `_variance`.
    return int(sum(int(paddle.numel(p)) for name, p in model.named_parameters()
                   if not name.endswith(("._mean", "._variance"))))
