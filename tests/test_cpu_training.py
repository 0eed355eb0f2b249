"""Training on CPU: convolutions as unfold + matmul give paddle's kernel's results (depthwise bit for bit),
Global.cpu_threads, and AMP.dtype=bfloat16 refused with the reason (paddle has no bf16 CPU training
kernels; a CPU without bf16 instructions is named as such); a bad AMP.dtype is an error naming the key."""
import os

import numpy as np
import paddle
import pytest

import ppbackbone.engine.run_setup as run_setup
from ppbackbone.config import load_config
from ppbackbone.engine import Trainer
from ppbackbone.engine.conv_matmul import MatmulConv2D, use_matmul_convs
from ppbackbone.errors import ConfigError

QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.yaml")


@pytest.mark.parametrize("shape, out, kernel, stride, padding, dilation, groups, bias", [
    ((4, 16, 16, 16), 16, 3, 2, 1, 1, 16, False),         # hgnetv2's depthwise downsample
    ((4, 8, 4, 4), 8, 5, 1, 2, 1, 8, False),              # its depthwise light blocks at the last stages
    ((2, 6, 9, 7), 6, 3, 1, [0, 2, 1, 1], 2, 6, True),    # uneven padding, dilation, odd sizes, bias
    ((4, 16, 8, 8), 24, 1, 1, 0, 1, 1, False),            # dense 1x1 (no unfold)
    ((4, 3, 16, 16), 8, 3, 2, 1, 1, 1, True),             # dense 3x3 stride 2, bias
    ((2, 5, 7, 9), 4, 2, 1, [1, 0, 0, 1], 1, 1, False),   # dense 2x2, uneven padding
])
def test_matmul_conv_equals_paddle_kernel(shape, out, kernel, stride, padding, dilation, groups, bias):
    """Depthwise: bitwise paddle's kernel (forward and gradients); dense: up to float rounding."""
    rng = np.random.RandomState(0)
    layers = []
    for _ in range(2):
        paddle.seed(0)
        layers.append(paddle.nn.Conv2D(shape[1], out, kernel, stride, padding, dilation, groups=groups,
                                       bias_attr=None if bias else False))
    reference, layer = layers
    assert use_matmul_convs(layer) == 1 and isinstance(layer, MatmulConv2D)
    x_np = rng.randn(*shape).astype("float32")
    results = []
    for conv in (reference, layer):
        x = paddle.to_tensor(x_np, stop_gradient=False)
        y = conv(x)
        (y * y).sum().backward()
        results.append([y.numpy(), x.grad.numpy()] + [p.grad.numpy() for p in conv.parameters()])
    tolerance = 0 if groups > 1 else 1e-5
    for ours, theirs in zip(results[1], results[0]):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance * np.abs(theirs).max())
    assert set(layer.state_dict()) == set(reference.state_dict())


def test_matmul_convs_switch_only_plain_depthwise_and_dense_layers():
    model = paddle.nn.Sequential(paddle.nn.Conv2D(4, 4, 3, groups=4), paddle.nn.Conv2D(4, 8, 3, groups=2),
                                 paddle.nn.Conv2D(8, 8, 1), paddle.nn.Conv2D(8, 8, 3, padding="SAME", groups=8),
                                 paddle.nn.Conv2D(8, 8, 3, padding=1, padding_mode="reflect"))
    assert use_matmul_convs(model) == 2
    assert [type(m).__name__ for m in model] == ["MatmulConv2D", "Conv2D", "MatmulConv2D", "Conv2D", "Conv2D"]


def test_large_outputs_keep_paddles_kernel():
    """Above MAX_OUTPUT_PIXELS the layer calls paddle's kernel (same numbers bit for bit)."""
    paddle.seed(0)
    conv = paddle.nn.Conv2D(2, 2, 3, padding=1, groups=2)
    x = paddle.to_tensor(np.random.RandomState(0).randn(1, 2, 12, 12).astype("float32"))  # 144 > 128 pixels
    expected = conv(x).numpy()
    use_matmul_convs(conv)
    np.testing.assert_array_equal(conv(x).numpy(), expected)


def _config(tmp_path, *overrides):
    return load_config(QUICKSTART, [f"Global.output_dir={tmp_path}", "Global.eval_during_train=False",
                                    "Arch.name=pplcnet_x0_25", "DataLoader.Train.loader.num_workers=0",
                                    *overrides])


def test_cpu_threads_key(tmp_path):
    trainer = Trainer(_config(tmp_path, "Global.cpu_threads=1", "Global.to_static=False"))
    trainer.release_lock()
    assert trainer.cpu_threads == 1
    with pytest.raises(ConfigError, match=r"Global.cpu_threads=0 is not valid: expected a positive int"):
        Trainer(_config(tmp_path / "b", "Global.cpu_threads=0"))


def test_bf16_amp_on_cpu_is_refused_with_the_reason(tmp_path):
    """This paddle has no bfloat16 CPU training kernels: with bf16 instructions the error names paddle's
    refusal; without them, the missing CPU flags."""
    amp = ["AMP.use_amp=True", "AMP.dtype=bfloat16", "AMP.level=O1"]
    if any(flag in run_setup._cpu_flags() for flag in ("avx512_bf16", "amx_bf16")):
        with pytest.raises(ConfigError, match=r"AMP.dtype=bfloat16 with Global.device=cpu: this CPU has bf16 "
                                              r"instructions, but PaddlePaddle .* cannot train in bfloat16"):
            Trainer(_config(tmp_path / "flags", *amp))
    original = run_setup._cpu_flags
    try:
        run_setup._cpu_flags = lambda: ["avx2", "avx512f"]
        with pytest.raises(ConfigError, match=r"needs a CPU with AVX512-BF16 or AMX-BF16; this one has neither "
                                              r"\(/proc/cpuinfo flags: avx2 avx512f\)"):
            Trainer(_config(tmp_path / "noflags", *amp))
    finally:
        run_setup._cpu_flags = original


def test_bad_amp_dtype_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"AMP.dtype='fp8' is not valid: expected float16 or bfloat16"):
        Trainer(_config(tmp_path, "AMP.use_amp=True", "AMP.dtype=fp8"))
