"""Convolutions with small outputs as unfold + one matmul over the whole batch, for training and
evaluation on CPU.

paddle 3.3.1's CPU conv2d / depthwise_conv2d kernels run an im2col and a GEMM per image (and per
channel for depthwise), forward and backward. At the small feature maps of the quickstart (hgnetv2_b0,
batch 32, 64x64: 16x16 down to 1x1 pixels) those GEMMs are tiny, so the loops cost more than the
arithmetic: the 12 depthwise layers took about 400 ms of a 700 ms step. `F.unfold` (one im2col for the
batch) and one broadcast matmul do the same products:
- depthwise (groups == channels): outputs and gradients bitwise equal to paddle's kernel;
- dense (groups == 1): outputs equal up to float rounding, and gradients up to the order in which the
  weight gradient sums the images (relative differences about 1e-7; tests/test_cpu_training.py).
Layers whose output has more pixels keep paddle's kernel (there the arithmetic dominates and the unfold
form was measured slower), as do grouped convolutions in between and non-zero padding modes.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["use_matmul_convs", "MatmulConv2D", "MAX_OUTPUT_PIXELS"]

# Output pixels per image up to which the matmul form is used, forward + backward measured on 2 cores
# (AVX-512). Depthwise: 64 pixels (32x64x16x16, 3x3 stride 2) 1.5x faster, 16 pixels (32x512x4x4) 7x, 196
# pixels (32x64x28x28 stride 2) equal, 784 and more 2.2-2.6x slower. Dense: up to 961 pixels 1.3-4x
# faster on most of hgnetv2_b0's layers at 64x64 (1.7x over all of them).
MAX_OUTPUT_PIXELS = {"depthwise": 128, "dense": 1024}
MAX_COLUMN_BYTES = 2 << 20  # per image: bounds the unfolded columns (64 MB at batch 32)


def _unfold_paddings(padding):
    """Conv2D's [top, bottom, left, right] (or [h, w]) as F.unfold's [top, left, bottom, right]."""
    if len(padding) == 2:
        return [int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])]
    top, bottom, left, right = (int(v) for v in padding)
    return [top, left, bottom, right]


class MatmulConv2D(nn.Conv2D):
    """A depthwise or dense nn.Conv2D computed as unfold + matmul when its output is small; the same
    parameters, state dict and (up to float rounding) result."""

    def forward(self, x):
        h, w = int(x.shape[2]), int(x.shape[3])
        kh, kw = self._kernel_size
        (sh, sw), (dh, dw) = self._stride, self._dilation
        paddings = _unfold_paddings(self._updated_padding)
        ho = (h + paddings[0] + paddings[2] - dh * (kh - 1) - 1) // sh + 1
        wo = (w + paddings[1] + paddings[3] - dw * (kw - 1) - 1) // sw + 1
        cin, cout, depthwise = self._in_channels, self._out_channels, self._groups > 1
        if h < 0 or w < 0 or ho * wo > MAX_OUTPUT_PIXELS["depthwise" if depthwise else "dense"] \
                or cin * kh * kw * ho * wo * 4 > MAX_COLUMN_BYTES:  # unknown (static) or large: paddle's kernel
            return super().forward(x)
        if (kh, kw, sh, sw) == (1, 1, 1, 1) and not any(paddings):
            cols = x.reshape([-1, cin, h * w])
        else:
            cols = F.unfold(x, [kh, kw], [sh, sw], paddings, [dh, dw])
        if depthwise:
            out = paddle.matmul(self.weight.reshape([1, cin, 1, kh * kw]), cols.reshape([-1, cin, kh * kw, ho * wo]))
        else:
            out = paddle.matmul(self.weight.reshape([cout, cin * kh * kw]), cols)
        out = out.reshape([-1, cout, ho, wo])
        return out if self.bias is None else out + self.bias.reshape([1, cout, 1, 1])


def _eligible(layer):
    if type(layer) is not nn.Conv2D or layer._data_format != "NCHW" or layer._padding_mode != "zeros" \
            or layer._padding_algorithm != "EXPLICIT":
        return False
    return layer._groups == 1 or layer._groups == layer._in_channels == layer._out_channels


def use_matmul_convs(model):
    """Switch every plain depthwise or dense nn.Conv2D of `model` to MatmulConv2D (in place: the same
    parameters). Returns how many layers were switched."""
    count = 0
    for layer in model.sublayers(include_self=True):
        if _eligible(layer):
            layer.__class__ = MatmulConv2D
            count += 1
    return count
