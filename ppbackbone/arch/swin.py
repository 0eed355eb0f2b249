"""Swin Transformer: PaddleClas's `SwinTransformer_*` classifiers and PaddleDetection's `SwinTransformer` backbone.

Registered names: `swin_{tiny,small,base,large}_patch4_window7_224`, `swin_{base,large}_patch4_window12_384`
(aliases PaddleClas's `SwinTransformer_*`), and `swin_transformer` (alias `SwinTransformer`): PaddleDetection's
defaults (tiny widths, feature mode, out_indices 0..3).

Parameter names equal both references' (`patch_embed.proj`, `patch_embed.norm`, `layers.i.blocks.j.{norm1,
attn.qkv, attn.proj, attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`, `layers.i.downsample.{norm,
reduction}`; the int64 buffer `attn.relative_position_index` is in the state dict as in both). A classifier adds
PaddleClas's `norm` + `head`; feature mode adds PaddleDetection's `norm{i}` for every returned stage i. So
PaddleClas `.pdparams` load into classifiers and PaddleDetection checkpoints into feature mode with no renaming.

Stage i (`layers.i`) is its blocks; its feature map (stride 4 * 2**i, before `layers.i.downsample`) is what
feature mode returns, as PaddleDetection does; the patch merging at the end of the stage feeds stage i + 1.
Inputs of any size run: the patch embedding, each window partition and each patch merging pad with zeros as the
references do. The references disagree on one padding detail (see `pad_mode`); shifted-window attention masks
are the references' (-100 between tokens of different regions of the rolled, padded grid).
"""
import functools

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant, TruncatedNormal

from ..errors import ConfigError
from .base import Backbone
from .native import register_native
from .registry import check_choice, paddleclas_weights, register_model

__all__ = ["SwinTransformer", "SWIN_CFGS", "window_partition", "window_reverse"]

# Variant rows: PaddleClas's SwinTransformer_<key> constructors (drop_path_rate as they set it: 0.1 is the
# class default the large models keep).
SWIN_CFGS = {
    "tiny_patch4_window7_224": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                    drop_path_rate=0.2),
    "small_patch4_window7_224": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                     drop_path_rate=0.3),
    "base_patch4_window7_224": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=7,
                                    drop_path_rate=0.5),
    "base_patch4_window12_384": dict(img_size=384, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
                                     window_size=12, drop_path_rate=0.5),
    "large_patch4_window7_224": dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=7,
                                     drop_path_rate=0.1),
    "large_patch4_window12_384": dict(img_size=384, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48],
                                      window_size=12, drop_path_rate=0.1),
}
PAD_MODES = ("paddleclas", "paddledet")
_MASK_VALUE = -100.0  # both references' value between tokens of different shifted regions


def _linear(in_features, out_features, lr_mult=1.0, bias=True):
    """nn.Linear with the references' init (truncated normal std 0.02, zero bias) and the stage's lr_mult."""
    weight_attr = ParamAttr(learning_rate=lr_mult, initializer=TruncatedNormal(std=0.02))
    bias_attr = ParamAttr(learning_rate=lr_mult, initializer=Constant(0.0)) if bias else False
    return nn.Linear(in_features, out_features, weight_attr=weight_attr, bias_attr=bias_attr)


def _layer_norm(dim, lr_mult=1.0):
    return nn.LayerNorm(dim, weight_attr=ParamAttr(learning_rate=lr_mult, initializer=Constant(1.0)),
                        bias_attr=ParamAttr(learning_rate=lr_mult, initializer=Constant(0.0)))


def pad_amounts(height, width, unit, mode):
    """(pad_bottom, pad_right) that make a height x width grid a multiple of `unit`.

    "paddledet" (and the original Swin): the least padding per side. "paddleclas" (PaddleClas 2.6.0's
    `pading_for_not_divisible`): when either side is not a multiple, BOTH get `unit - side % unit`, so a side
    that was already a multiple gains a whole unit of zeros. The two agree whenever both sides or neither side
    is a multiple (every square input).
    """
    rest_h, rest_w = height % unit, width % unit
    if mode == "paddleclas":
        return (0, 0) if rest_h == 0 and rest_w == 0 else (unit - rest_h, unit - rest_w)
    return (-height) % unit, (-width) % unit


def pad_bottom_right(x, pad_b, pad_r, channels_last=True):
    """Zero-pad a [B, H, W, C] (or [B, C, H, W]) map by pad_b rows and pad_r columns at the bottom/right.

    Zeros are concatenated rather than padded: the references' `F.pad` with an 8-entry list corrupts the heap in
    Paddle Inference 3.3.1, and its 2-D pad (pad3d) leaves the exported graph unloadable there."""
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    for axis, amount in ((h_axis, pad_b), (w_axis, pad_r)):
        if amount:
            edge = paddle.slice(x, axes=[axis], starts=[0], ends=[1])
            repeats = [1] * len(x.shape)
            repeats[axis] = amount
            x = paddle.concat([x, paddle.zeros_like(edge).tile(repeats)], axis=axis)
    return x


def window_partition(x, window_size, height, width):
    """[B, height, width, C] (multiples of window_size) -> [B * nW, window_size, window_size, C].

    height and width are given, not read from x.shape: after a pad, a static graph may not know them."""
    channels = x.shape[-1]
    x = x.reshape([-1, height // window_size, window_size, width // window_size, window_size, channels])
    return x.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, window_size, window_size, channels])


def window_reverse(windows, window_size, height, width):
    """Inverse of window_partition: [B * nW, ws, ws, C] -> [B, height, width, C]."""
    channels = windows.shape[-1]
    x = windows.reshape([-1, height // window_size, width // window_size, window_size, window_size, channels])
    return x.transpose([0, 1, 3, 2, 4, 5]).reshape([-1, height, width, channels])


def relative_position_index(window_size):
    """[ws*ws, ws*ws] int64: row of the bias table for each (query, key) pair of a window."""
    coords = np.stack(np.meshgrid(np.arange(window_size), np.arange(window_size), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window_size - 1)
    return (relative[:, :, 0] * (2 * window_size - 1) + relative[:, :, 1]).astype("int64")


@functools.lru_cache(maxsize=64)
def shifted_window_mask(height, width, window_size, shift_size):
    """[nW, ws*ws, ws*ws] float32 mask of a padded height x width grid rolled by -shift_size: 0 between tokens
    of the same region, -100 between tokens that were not neighbours before the roll (numpy, cached)."""
    regions = np.zeros((height, width), dtype="float32")
    bounds = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    label = 0
    for rows in bounds:
        for cols in bounds:
            regions[rows, cols] = label
            label += 1
    windows = regions.reshape(height // window_size, window_size, width // window_size, window_size)
    windows = windows.transpose(0, 2, 1, 3).reshape(-1, window_size * window_size)
    differ = windows[:, None, :] != windows[:, :, None]
    return np.where(differ, _MASK_VALUE, 0.0).astype("float32")


def drop_path(x, drop_prob, training):
    """Stochastic depth: drop whole samples of a residual branch with probability drop_prob (train only)."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    keep = paddle.floor(keep_prob + paddle.rand(shape, dtype=x.dtype))
    return x.divide(paddle.to_tensor(keep_prob, dtype=x.dtype)) * keep


class DropPath(nn.Layer):
    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training)


class Mlp(nn.Layer):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim, hidden, drop=0.0, lr_mult=1.0):
        super().__init__()
        self.fc1 = _linear(dim, hidden, lr_mult)
        self.act = nn.GELU()
        self.fc2 = _linear(hidden, dim, lr_mult)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Layer):
    """Multi-head self-attention inside windows, with a learned relative position bias per head.

    Parameters `qkv`, `proj`, `relative_position_bias_table` [(2ws-1)^2, heads]; buffer
    `relative_position_index` [ws^2, ws^2] (int64, saved like the references do).
    """

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0,
                 lr_mult=1.0):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = self.create_parameter(
            [(2 * window_size - 1) ** 2, num_heads],
            attr=ParamAttr(learning_rate=lr_mult, initializer=TruncatedNormal(std=0.02)))
        self.register_buffer("relative_position_index", paddle.to_tensor(relative_position_index(window_size)))
        self.qkv = _linear(dim, dim * 3, lr_mult, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = _linear(dim, dim, lr_mult)
        self.proj_drop = nn.Dropout(proj_drop)
        self.softmax = nn.Softmax(axis=-1)

    def relative_position_bias(self):
        """[1, heads, ws^2, ws^2]."""
        tokens = self.window_size * self.window_size
        bias = paddle.index_select(self.relative_position_bias_table, self.relative_position_index.reshape([-1]))
        return bias.reshape([tokens, tokens, -1]).transpose([2, 0, 1]).unsqueeze(0)

    def forward(self, x, mask=None):
        """x: [B * nW, N, C]; mask: [nW, N, N] or None."""
        _, tokens, channels = x.shape
        qkv = self.qkv(x).reshape([-1, tokens, 3, self.num_heads, channels // self.num_heads])
        qkv = qkv.transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = paddle.mm(q * self.scale, k.transpose([0, 1, 3, 2])) + self.relative_position_bias()
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.reshape([-1, windows, self.num_heads, tokens, tokens]) + mask.astype(attn.dtype).unsqueeze(1).unsqueeze(0)
            attn = attn.reshape([-1, self.num_heads, tokens, tokens])
        attn = self.attn_drop(self.softmax(attn))
        x = paddle.mm(attn, v).transpose([0, 2, 1, 3]).reshape([-1, tokens, channels])
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Layer):
    """norm1 -> (shifted) window attention -> residual (drop_path); norm2 -> mlp -> residual (drop_path)."""

    def __init__(self, dim, num_heads, window_size=7, shift_size=0, mlp_ratio=4.0, qkv_bias=True, qk_scale=None,
                 drop=0.0, attn_drop=0.0, drop_path=0.0, lr_mult=1.0, pad_mode="paddledet"):
        super().__init__()
        self.window_size, self.shift_size, self.pad_mode = window_size, shift_size, pad_mode
        self.norm1 = _layer_norm(dim, lr_mult)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop, lr_mult)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _layer_norm(dim, lr_mult)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, lr_mult)

    def forward(self, x, height, width):
        """x: [B, height * width, C] -> same shape."""
        channels = x.shape[-1]
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x).reshape([-1, height, width, channels])
        pad_b, pad_r = pad_amounts(height, width, ws, self.pad_mode)
        if pad_b or pad_r:
            y = pad_bottom_right(y, pad_b, pad_r)
        padded_h, padded_w = height + pad_b, width + pad_r
        mask = None
        if shift > 0:
            y = paddle.roll(y, shifts=(-shift, -shift), axis=(1, 2))
            mask = paddle.to_tensor(shifted_window_mask(padded_h, padded_w, ws, shift))
        windows = window_partition(y, ws, padded_h, padded_w).reshape([-1, ws * ws, channels])
        windows = self.attn(windows, mask).reshape([-1, ws, ws, channels])
        y = window_reverse(windows, ws, padded_h, padded_w)
        if shift > 0:
            y = paddle.roll(y, shifts=(shift, shift), axis=(1, 2))
        if pad_b or pad_r:
            y = y[:, :height, :width, :]
        x = x + self.drop_path(y.reshape([-1, height * width, channels]))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Layer):
    """2x2 neighbours concatenated (order (0,0), (1,0), (0,1), (1,1)) -> norm -> linear 4C -> 2C (no bias)."""

    def __init__(self, dim, lr_mult=1.0):
        super().__init__()
        self.reduction = _linear(4 * dim, 2 * dim, lr_mult, bias=False)
        self.norm = _layer_norm(4 * dim, lr_mult)

    def forward(self, x, height, width):
        channels = x.shape[-1]
        x = x.reshape([-1, height, width, channels])
        if height % 2 or width % 2:
            x = pad_bottom_right(x, height % 2, width % 2)
        x = paddle.concat([x[:, 0::2, 0::2, :], x[:, 1::2, 0::2, :], x[:, 0::2, 1::2, :], x[:, 1::2, 1::2, :]], -1)
        x = x.reshape([-1, ((height + 1) // 2) * ((width + 1) // 2), 4 * channels])
        return self.reduction(self.norm(x))


class BasicLayer(nn.Layer):
    """One stage: `depth` blocks (odd ones shift by window_size // 2) and, except in the last stage, the patch
    merging (`downsample`) that feeds the next stage."""

    def __init__(self, dim, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop,
                 drop_path, downsample, lr_mult, pad_mode):
        super().__init__()
        self.blocks = nn.LayerList([
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio,
                                 qkv_bias, qk_scale, drop, attn_drop, drop_path[i], lr_mult, pad_mode)
            for i in range(depth)])
        self.downsample = PatchMerging(dim, lr_mult) if downsample else None

    def forward(self, x, height, width):
        for block in self.blocks:
            x = block(x, height, width)
        return x


class PatchEmbed(nn.Layer):
    """patch_size x patch_size conv with stride patch_size (padding the image to a multiple), then LayerNorm.

    Returns (tokens [B, H*W, C], H, W)."""

    def __init__(self, patch_size=4, in_chans=3, embed_dim=96, patch_norm=True, lr_mult=1.0, pad_mode="paddledet"):
        super().__init__()
        self.patch_size, self.pad_mode = patch_size, pad_mode
        self.proj = nn.Conv2D(in_chans, embed_dim, patch_size, stride=patch_size,
                              weight_attr=ParamAttr(learning_rate=lr_mult), bias_attr=ParamAttr(learning_rate=lr_mult))
        self.norm = _layer_norm(embed_dim, lr_mult) if patch_norm else None

    def forward(self, x):
        pad_b, pad_r = pad_amounts(x.shape[2], x.shape[3], self.patch_size, self.pad_mode)
        if pad_b or pad_r:
            x = pad_bottom_right(x, pad_b, pad_r, channels_last=False)
        x = self.proj(x)
        height, width = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose([0, 2, 1])
        if self.norm is not None:
            x = self.norm(x)
        return x, height, width


class SwinTransformer(Backbone):
    """Swin Transformer classifier / feature extractor with PaddleClas's arguments.

    Args:
        img_size: the input size the classifier is built for (PaddleClas `img_size`, PaddleDetection
            `pretrain_img_size`); with `ape` the absolute position embedding has its patch grid. A classifier's
            window_size must tile that grid at every stage.
        patch_size, in_chans, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale,
        drop_rate, attn_drop_rate, drop_path_rate (linear over all blocks), ape, patch_norm: as PaddleClas.
        num_classes: head size (PaddleClas `class_num`); 0 for pooled features.
        out_indices: stages to return, 0..3 at strides 4, 8, 16, 32, each through its own LayerNorm `norm{i}`
            as PaddleDetection's backbone (feature mode, no classifier head).
        lr_mult_list: one multiplier per group [patch_embed, layers.0, ..., layers.3].
        freeze_at / freeze_stem_only: see Backbone.apply_freeze (stem = patch_embed, with ape's embedding).
        freeze_norm: LayerNorms have no statistics; their scale and shift stop training.
        pad_mode: how inputs that are not multiples of the patch/window are padded: "paddleclas" (PaddleClas 2.6.0)
            or "paddledet" (PaddleDetection, original Swin); they differ only for a non-square input with one
            side a multiple (see pad_amounts). Default: the reference of the mode, "paddleclas" for a classifier,
            "paddledet" in feature mode.
    """
    head_prefixes = ("norm.", "head.")

    def __init__(self, img_size=224, patch_size=4, in_chans=3, num_classes=1000, embed_dim=96, depths=(2, 2, 6, 2),
                 num_heads=(3, 6, 12, 24), window_size=7, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.1, ape=False, patch_norm=True, out_indices=None,
                 lr_mult_list=None, freeze_at=-1, freeze_stem_only=False, freeze_norm=False, pad_mode=None):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        _check_widths(embed_dim, depths, num_heads, window_size)
        self.group_names = ("patch_embed",) + tuple(f"layers.{i}" for i in range(len(depths)))
        lr_mults = self.check_lr_mult_list(lr_mult_list)
        self.img_size, self.patch_size, self.window_size, self.ape = int(img_size), patch_size, window_size, ape
        dims = [embed_dim * 2 ** i for i in range(len(depths))]
        self.init_features([dict(channels=d, stride=patch_size * 2 ** i, name=f"layers.{i}")
                            for i, d in enumerate(dims)], out_indices)
        if pad_mode is None:
            pad_mode = "paddleclas" if self.out_indices is None else "paddledet"
        self.pad_mode = check_choice("pad_mode", pad_mode, PAD_MODES)
        if self.out_indices is None:
            _check_window_tiles(self.img_size, patch_size, window_size, len(depths))

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm, lr_mults[0], self.pad_mode)
        grid = self.img_size // patch_size
        if ape:  # PaddleClas's layout [1, patches, C]
            self.absolute_pos_embed = self.create_parameter(
                [1, grid * grid, embed_dim], attr=ParamAttr(learning_rate=lr_mults[0],
                                                            initializer=TruncatedNormal(std=0.02)))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.LayerList()
        for i, depth in enumerate(depths):
            first = sum(depths[:i])
            self.layers.append(BasicLayer(dims[i], depth, num_heads[i], window_size, mlp_ratio, qkv_bias, qk_scale,
                                          drop_rate, attn_drop_rate, rates[first:first + depth],
                                          i < len(depths) - 1, lr_mults[i + 1], self.pad_mode))
        if self.out_indices is not None:
            for i in self.out_indices:
                self.add_sublayer(f"norm{i}", _layer_norm(dims[i], lr_mults[i + 1]))
        else:
            self.norm = _layer_norm(dims[-1], lr_mults[-1])
            self.avgpool = nn.AdaptiveAvgPool1D(1)
            self.num_features = dims[-1]
            self.reset_classifier(num_classes)
        self.apply_freeze(freeze_at, freeze_stem_only, freeze_norm=False)
        if ape and self.patch_embed in self._frozen_groups:
            self.absolute_pos_embed.stop_gradient = True
        if freeze_norm:
            for layer in self.sublayers():
                if isinstance(layer, nn.LayerNorm):
                    layer.weight.stop_gradient = layer.bias.stop_gradient = True

    # ---------------------------------------------------------------- contract
    def groups(self):
        return [self.patch_embed, *self.layers]

    def reset_classifier(self, num_classes):
        """Replace `head` by a Linear with `num_classes` outputs (0: pooled features out)."""
        if self.out_indices is not None:
            raise ValueError(f"SwinTransformer was built in feature mode (out_indices={self.out_indices}); it has "
                             f"no classifier to reset")
        self.num_classes = int(num_classes)
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.head = _linear(self.num_features, self.num_classes) if self.num_classes else nn.Identity()

    def check_input_size(self, x):
        """With `ape` a classifier adds its position embedding as is: only img_size x img_size fits."""
        super().check_input_size(x)
        if self.ape and self.out_indices is None:
            size = tuple(x.shape[-2:])
            if all(s is not None and s > 0 for s in size) and size != (self.img_size, self.img_size):
                raise ValueError(f"{getattr(self, 'model_name', 'SwinTransformer')} with ape=True adds an absolute "
                                 f"position embedding of {self.img_size}x{self.img_size} inputs: it takes only "
                                 f"{self.img_size}x{self.img_size}; got {size[0]}x{size[1]}")

    def filter_state_dict(self, state_dict):
        """Refuse a checkpoint of another window size (its bias tables have another row count), naming both;
        accept PaddleDetection's [1, C, H, W] absolute_pos_embed as PaddleClas's [1, H*W, C]."""
        key = next((k for k in state_dict if k.endswith("attn.relative_position_bias_table")), None)
        if key is not None and state_dict[key].shape[0] != (2 * self.window_size - 1) ** 2:
            rows = state_dict[key].shape[0]
            window = int(round((rows ** 0.5 + 1) / 2))
            raise ValueError(f"The checkpoint's {key} has {rows} rows: it is of a Swin with window_size {window} "
                             f"((2*{window}-1)^2 rows), and this model has window_size {self.window_size} "
                             f"({(2 * self.window_size - 1) ** 2} rows). Build the model with window_size="
                             f"{window} (e.g. swin_*_window{window}_*)")
        embed = state_dict.get("absolute_pos_embed")
        if embed is not None and embed.ndim == 4:
            state_dict = dict(state_dict)
            state_dict["absolute_pos_embed"] = embed.reshape(embed.shape[0], embed.shape[1], -1).transpose(0, 2, 1)
        return state_dict

    # ---------------------------------------------------------------- forward
    def embed(self, x):
        """Patch embedding (+ absolute position embedding) -> (tokens, H, W)."""
        x, height, width = self.patch_embed(x)
        if self.ape:
            pos = self.absolute_pos_embed
            grid = self.img_size // self.patch_size
            if (height, width) != (grid, grid):  # feature mode: resize as PaddleDetection does (bicubic)
                pos = pos.transpose([0, 2, 1]).reshape([1, -1, grid, grid])
                pos = F.interpolate(pos, size=(height, width), mode="bicubic").flatten(2).transpose([0, 2, 1])
            x = x + pos
        return self.pos_drop(x), height, width

    def forward_tokens(self, x, last=None):
        """Token outputs of stages 0..last as (tokens [B, H*W, C], H, W), before any output norm."""
        x, height, width = self.embed(x)
        outs = []
        for i, layer in enumerate(self.stages_up_to(self.layers, last)):
            if i > 0:
                x = self.layers[i - 1].downsample(x, height, width)
                height, width = (height + 1) // 2, (width + 1) // 2
            x = layer(x, height, width)
            outs.append((x, height, width))
        return outs

    def forward_stages(self, x, last=None):
        """NCHW maps of stages 0..last; in feature mode each returned stage goes through its norm{i}."""
        maps = []
        for i, (tokens, height, width) in enumerate(self.forward_tokens(x, last)):
            norm = getattr(self, f"norm{i}", None) if self.out_indices is not None else None
            if norm is not None:
                tokens = norm(tokens)
            maps.append(tokens.reshape([-1, height, width, tokens.shape[-1]]).transpose([0, 3, 1, 2]))
        return maps

    def forward_head(self, x, pre_logits=False):
        """norm -> average over tokens -> head, on the last stage's [B, C, H, W] map."""
        x = self.norm(x.flatten(2).transpose([0, 2, 1]))
        x = paddle.flatten(self.avgpool(x.transpose([0, 2, 1])), 1)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        if isinstance(x, dict):
            x = x["image"]
        if self.out_indices is None:
            self.check_input_size(x)
            tokens, _, _ = self.forward_tokens(x)[-1]  # no round trip through NCHW
            x = paddle.flatten(self.avgpool(self.norm(tokens).transpose([0, 2, 1])), 1)
            return self.head(x)
        return super().forward(x)


def _check_widths(embed_dim, depths, num_heads, window_size):
    if not isinstance(window_size, int) or isinstance(window_size, bool) or window_size < 1:
        raise ValueError(f"SwinTransformer: window_size must be a positive int, got {window_size!r}")
    if len(depths) != len(num_heads):
        raise ValueError(f"SwinTransformer: depths {depths} and num_heads {num_heads} need one entry per stage each")
    bad = [(embed_dim * 2 ** i, h) for i, h in enumerate(num_heads) if (embed_dim * 2 ** i) % h]
    if bad:
        raise ValueError(f"SwinTransformer: stage widths must divide into num_heads; (width, heads) {bad} do not "
                         f"(widths are embed_dim * 2**i = {[embed_dim * 2 ** i for i in range(len(depths))]})")


def _check_window_tiles(img_size, patch_size, window_size, num_stages):
    """A classifier's windows tile the patch grid of its img_size at every stage (224/4 = 56, 28, 14, 7 for 7)."""
    grids = [img_size // patch_size // 2 ** i for i in range(num_stages)]
    if any(g % window_size for g in grids):
        fits = [w for w in range(1, grids[-1] + 1) if all(g % w == 0 for g in grids)]
        raise ValueError(f"SwinTransformer: window_size {window_size} does not divide the patch grids {grids} of "
                         f"img_size {img_size} (patch_size {patch_size}); windows that fit: {fits}, or an img_size "
                         f"that is a multiple of {patch_size * 2 ** (num_stages - 1) * window_size} "
                         f"(patch_size * 2**{num_stages - 1} * window_size)")


# ---------------------------------------------------------------------------- registration
# Parameter counts of the 1000-class instances (equal to PaddleClas 2.6.0's, tests/test_swin_parity.py; the
# published 28.3M, 49.6M, 87.8M, 87.9M, 196.5M, 196.7M). The generic tests build a narrow model with one shifted
# block (`test_args`: depths 2, 1, 1, 1; to_static time grows with the block count) and keep each variant's window
# and img_size, so their 64x64 inputs exercise window padding.
NUM_PARAMS = {
    "swin_tiny_patch4_window7_224": 28288354, "swin_small_patch4_window7_224": 49606258,
    "swin_base_patch4_window7_224": 87768224, "swin_base_patch4_window12_384": 87903584,
    "swin_large_patch4_window7_224": 196532476, "swin_large_patch4_window12_384": 196735516,
    "swin_transformer": 27520698,  # feature mode: no norm/head, norm0..norm3
}
TEST_ARGS = dict(embed_dim=16, depths=[2, 1, 1, 1], num_heads=[1, 2, 4, 8], drop_path_rate=0.0)
TEST_NUM_PARAMS = {name: 449960 if "window12" in name else 444200 for name in NUM_PARAMS}
TEST_NUM_PARAMS["swin_transformer"] = 315424

# Weight tags as PaddleClas 2.6.0 builds their URLs: ImageNet-1k ("in1k"), ImageNet-22k ("22k", a 21841-class
# head) and 22k fine-tuned on 1k ("22kto1k", PaddleClas's default for large). Eval: resize 256 -> crop 224
# (438 -> 384), bicubic.
SWIN_WEIGHTS = {"tiny": ("in1k",), "small": ("in1k",), "base": ("in1k", "22kto1k", "22k"), "large": ("22kto1k", "22k")}

for _v, _cfg in SWIN_CFGS.items():
    _name, _size = f"swin_{_v}", _cfg.get("img_size", 224)
    register_model(_name, SwinTransformer, _cfg, aliases=(f"SwinTransformer_{_v}",), family="swin",
                   num_params=NUM_PARAMS.get(_name), test_args=TEST_ARGS, test_num_params=TEST_NUM_PARAMS.get(_name),
                   weights=paddleclas_weights(f"SwinTransformer_{_v}", *SWIN_WEIGHTS[_v.split("_")[0]]),
                   pretrained=dict(input_size=(3, _size, _size), resize_short=256 if _size == 224 else 438,
                                   interpolation="bicubic"),
                   reference=f"PaddleClas SwinTransformer_{_v}")

# PaddleDetection's SwinTransformer with its defaults (tiny widths, drop_path_rate 0.2, out_indices (0, 1, 2, 3)).
register_model("swin_transformer", SwinTransformer,
               dict(SWIN_CFGS["tiny_patch4_window7_224"], out_indices=[0, 1, 2, 3]), aliases=("SwinTransformer",),
               family="swin", num_params=NUM_PARAMS.get("swin_transformer"), test_args=TEST_ARGS,
               test_num_params=TEST_NUM_PARAMS.get("swin_transformer"),
               reference="PaddleDetection SwinTransformer (its defaults)")


# ---------------------------------------------------------------------------- PaddleDetection native section
# PaddleDetection develop's `arch` names (configs/rtdetr/rtdetr_swin_L_384_3x_coco.yml: arch: swin_L_384) are
# PaddleClas's variants; each sets pretrain_img_size, embed_dim, depths, num_heads and window_size.
PPDET_ARCHS = {"swin_T_224": "tiny_patch4_window7_224", "swin_S_224": "small_patch4_window7_224",
               "swin_B_224": "base_patch4_window7_224", "swin_L_224": "large_patch4_window7_224",
               "swin_B_384": "base_patch4_window12_384", "swin_L_384": "large_patch4_window12_384"}
_ARCH_KEYS = ("embed_dim", "depths", "num_heads", "window_size")


def build_native_swin(arch, pretrain_img_size, patch_size, in_chans, embed_dim, depths, num_heads, window_size,
                      mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, drop_path_rate, ape, patch_norm,
                      out_indices, frozen_stages):
    """PaddleDetection's `SwinTransformer(...)` (2.6.0 arguments, plus develop's `arch`). frozen_stages k: 0 and 1
    freeze patch_embed (with ape's embedding), k >= 2 also layers 0..k-2: our freeze_at k-2."""
    if arch is not None:
        if arch not in PPDET_ARCHS:
            raise ConfigError(f"PPBackbone: SwinTransformer arch={arch!r} is not one of {', '.join(PPDET_ARCHS)}")
        row = SWIN_CFGS[PPDET_ARCHS[arch]]
        embed_dim, depths, num_heads, window_size = (row[k] for k in _ARCH_KEYS)
        pretrain_img_size = row.get("img_size", 224)
    if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= len(depths) + 1:
        raise ConfigError(f"PPBackbone: SwinTransformer frozen_stages={frozen_stages!r}; expected -1 (nothing) .. "
                         f"{len(depths) + 1}")
    freeze = dict(freeze_at=-1) if frozen_stages < 0 else (
        dict(freeze_at=0, freeze_stem_only=True) if frozen_stages < 2 else dict(freeze_at=frozen_stages - 2))
    return SwinTransformer(img_size=pretrain_img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                           depths=depths, num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio,
                           qkv_bias=qkv_bias, qk_scale=qk_scale, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                           drop_path_rate=drop_path_rate, ape=ape, patch_norm=patch_norm,
                           out_indices=list(out_indices), pad_mode="paddledet", **freeze)


register_native("SwinTransformer", build_native_swin,
                defaults=dict(arch=None, pretrain_img_size=224, patch_size=4, in_chans=3, embed_dim=96,
                              depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4.0,
                              qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.2,
                              ape=False, patch_norm=True, out_indices=[0, 1, 2, 3], frozen_stages=-1),
                reference="PaddleDetection ppdet/modeling/backbones/swin_transformer.py SwinTransformer "
                          "(2.6.0; develop's arch names)")
