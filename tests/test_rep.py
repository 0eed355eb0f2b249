"""The fusion math of rep.py and the RepMixin protocol, on real Paddle convs and BNs."""
import numpy as np
import paddle
import paddle.nn as nn
import pytest
from conftest import randomize_state

import ppbackbone
from ppbackbone.arch.layers import ConvBNAct
from ppbackbone.arch.rep import RepMixin, conv_like, fold_bn, identity_kernel, pad_kernel


class RepVGGLike(nn.Layer, RepMixin):
    """3x3 ConvBN + 1x1 ConvBN + identity BN, summed: the pattern every Rep family fuses."""

    def __init__(self, channels, groups=1):
        super().__init__()
        self.conv3 = ConvBNAct(channels, channels, 3, groups=groups, act=None)
        self.conv1 = ConvBNAct(channels, channels, 1, groups=groups, act=None)
        self.identity = nn.BatchNorm2D(channels)
        self.groups = groups
        self.fused = None

    def forward(self, x):
        if self.fused is not None:
            return self.fused(x)
        return self.conv3(x) + self.conv1(x) + self.identity(x)

    def _fuse(self):
        k3, b3 = fold_bn(self.conv3.conv.weight, self.conv3.bn)
        k1, b1 = fold_bn(pad_kernel(self.conv1.conv.weight, 3), self.conv1.bn)
        channels = self.identity._num_features
        ki, bi = fold_bn(identity_kernel(channels, 3, self.groups), self.identity)
        self.fused = conv_like(self.conv3.conv, k3 + k1 + ki, b3 + b1 + bi)
        del self.conv3, self.conv1, self.identity


@pytest.mark.parametrize("groups", [1, 4])
def test_fused_block_equals_branches_in_eval_mode(groups):
    paddle.seed(0)
    block = randomize_state(RepVGGLike(8, groups=groups), seed=3)
    block.eval()
    x = paddle.randn([2, 8, 9, 9])
    expected = block(x).numpy()
    ppbackbone.reparameterize(block)
    assert block.deployed and not ppbackbone.has_unfused_blocks(block)
    assert not hasattr(block, "conv3") and isinstance(block.fused, nn.Conv2D)
    np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_convert_is_idempotent_and_aliased():
    block = RepVGGLike(4)
    block.eval()
    assert block.is_repped is False  # PaddleOCR's exporter reads it without a default
    block.re_parameterize()
    assert block.is_repped is True
    fused = block.fused
    block.convert_to_deploy()
    block.rep()
    assert block.fused is fused


def test_walker_fuses_nested_blocks():
    model = nn.Sequential(RepVGGLike(4), nn.ReLU(), nn.Sequential(RepVGGLike(4)))
    assert ppbackbone.has_unfused_blocks(model)
    ppbackbone.reparameterize(model)
    assert not ppbackbone.has_unfused_blocks(model)


def test_fold_bn_uses_running_statistics():
    conv = nn.Conv2D(3, 5, 3, padding=1, bias_attr=False)
    bn = randomize_state(nn.BatchNorm2D(5), seed=4)
    bn.eval()
    x = paddle.randn([1, 3, 6, 6])
    kernel, bias = fold_bn(conv.weight, bn)
    fused = conv_like(conv, kernel, bias)
    np.testing.assert_allclose(fused(x).numpy(), bn(conv(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_pad_kernel_rejects_shrinking():
    with pytest.raises(ValueError, match="cannot pad a 5x5 kernel to 3x3"):
        pad_kernel(paddle.zeros([1, 1, 5, 5]), 3)


def test_is_repped_changes_only_by_fusing():
    block = RepVGGLike(4)
    with pytest.raises(AttributeError):
        block.is_repped = True
    assert not block.is_repped and hasattr(block, "conv3")
