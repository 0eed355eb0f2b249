"""Re-parameterization: the fusion math, written once, and the walker that fuses a whole model.

A block with train-time branches subclasses `RepMixin` and implements `_fuse()`, which builds the
single biased conv from `fold_bn` / `pad_kernel` / `identity_kernel` and deletes the branches.
`convert_to_deploy()` (PaddleDetection's name, so its exporter fuses our blocks too) is idempotent;
`re_parameterize()` (PaddleClas) and `rep()` (PaddleOCR) are aliases.
Fusion uses BN running statistics: the fused block equals the unfused one in eval mode.

PaddleOCR's exporter walks `model.sublayers()` (parents first) and calls `layer.rep()` on every layer
that has `rep` and is `not layer.is_repped`; some of its versions read `is_repped` without a default,
so every RepMixin layer answers it: `is_repped` is the fused state (`deployed`), read-only (it changes
only by fusing). Walking a model that way gives what `reparameterize(model)` gives.
"""
import paddle
import paddle.nn as nn

__all__ = ["fold_bn", "pad_kernel", "identity_kernel", "conv_like", "RepMixin", "reparameterize",
           "has_unfused_blocks"]


def fold_bn(kernel, bn, conv_bias=None):
    """Fold an eval-mode BatchNorm into the preceding conv: returns (kernel, bias) tensors.

    `kernel` may be None for an identity branch's kernel already passed in by the caller; `bn` is a
    BatchNorm2D whose running statistics (`_mean`, `_variance`) are used.
    """
    std = paddle.sqrt(bn._variance + bn._epsilon)
    gamma = bn.weight if bn.weight is not None else paddle.ones_like(std)
    beta = bn.bias if bn.bias is not None else paddle.zeros_like(std)
    scale = gamma / std
    mean = bn._mean if conv_bias is None else bn._mean - conv_bias
    return kernel * scale.reshape([-1, 1, 1, 1]), beta - mean * scale


def pad_kernel(kernel, size):
    """Zero-pad a [out, in/groups, k, k] kernel symmetrically to `size` x `size`."""
    k = kernel.shape[-1]
    if k == size:
        return kernel
    if k > size or (size - k) % 2:
        raise ValueError(f"cannot pad a {k}x{k} kernel to {size}x{size}")
    p = (size - k) // 2
    return nn.functional.pad(kernel, [p, p, p, p])


def identity_kernel(channels, size, groups=1, dtype="float32"):
    """The [channels, channels/groups, size, size] kernel of the identity map (1 at the centre)."""
    per_group = channels // groups
    kernel = paddle.zeros([channels, per_group, size, size], dtype=dtype)
    idx = paddle.arange(channels)
    centre = size // 2
    kernel[idx, idx % per_group, centre, centre] = 1.0
    return kernel


def conv_like(conv, kernel, bias):
    """A new biased Conv2D with `conv`'s geometry (stride, padding, groups, dilation) and the
    given kernel/bias (a deploy-time layer: default ParamAttr)."""
    fused = nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size, conv._stride,
                      padding=conv._padding, dilation=conv._dilation, groups=conv._groups,
                      padding_mode=conv._padding_mode)
    fused.weight.set_value(kernel.astype(fused.weight.dtype))
    fused.bias.set_value(bias.astype(fused.bias.dtype))
    return fused


class RepMixin:
    """Mixin for a block with train-time branches. Implement `_fuse()`; the rest is given."""

    @property
    def deployed(self):
        """True once the training branches are fused (convert_to_deploy ran)."""
        return getattr(self, "_deployed", False)

    @property
    def is_repped(self):
        """PaddleOCR's name of `deployed` (its exporter skips layers that answer True)."""
        return self.deployed

    def convert_to_deploy(self):
        """Fuse the training branches into one biased conv (no-op when already fused)."""
        if not self.deployed:
            with paddle.no_grad():
                self._fuse()
            self._deployed = True
        return self

    def re_parameterize(self):
        """PaddleClas name of convert_to_deploy()."""
        return self.convert_to_deploy()

    def rep(self):
        """PaddleOCR name of convert_to_deploy() (its exporter calls it unless `is_repped`)."""
        return self.convert_to_deploy()

    def _fuse(self):
        raise NotImplementedError


def reparameterize(model):
    """Call `convert_to_deploy()` on every sublayer of `model` that has one; returns `model`.

    Works on any Paddle layer (ours, or a PaddleDetection model holding our blocks). Idempotent.
    The fused model reproduces the unfused model's eval-mode outputs.
    """
    # Children before parents, the model itself last (a model may own top-level branches too).
    for layer in list(reversed(model.sublayers())) + [model]:
        convert = getattr(layer, "convert_to_deploy", None)
        if callable(convert):
            convert()
    return model


def has_unfused_blocks(model):
    """True when some RepMixin block below `model` still has its training branches."""
    return any(isinstance(layer, RepMixin) and not layer.deployed
               for layer in model.sublayers(include_self=True))
