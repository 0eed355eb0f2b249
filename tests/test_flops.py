"""The MAC counter (paddle.flops is broken on Paddle 3.3.1 + numpy 2)."""
import paddle.nn as nn

import ppbackbone
from ppbackbone.flops import count_macs


def test_single_conv_and_linear_are_counted_exactly():
    model = nn.Sequential(nn.Conv2D(3, 8, 3, stride=2, padding=1, groups=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    # conv: 8x4x4 outputs x (3x3x3) MACs; linear: 5 outputs x 128 inputs
    assert count_macs(model, input_size=8) == 8 * 4 * 4 * 27 + 5 * 128


def test_hgnetv2_b4_matches_the_reference_hook_count():
    # REFERENCES.md: a hook counter gives PPHGNetV2_B4 2.73G MACs at 224x224
    assert round(count_macs(ppbackbone.create_model("hgnetv2_b4")) / 1e9, 2) == 2.73


def test_gemm_probe_gives_a_positive_finite_rate():
    """The fp32 GEMM probe (the floor's denominator) measures something; no speed is asserted."""
    import math

    from ppbackbone.flops import gemm_rate
    probe = gemm_rate(threads=1, size=128, seconds=0.05)
    assert math.isfinite(probe["gflops"]) and probe["gflops"] > 0
    assert probe["size"] == 128 and probe["runs"] >= 3 and probe["blas"]
    assert probe["threads"] in (1, None)  # None: threadpoolctl missing, the BLAS was not limited


def test_count_macs_takes_height_and_width():
    from ppbackbone.flops import count_macs
    model = nn.Conv2D(3, 4, 3, padding=1)
    assert count_macs(model, input_size=(8, 16)) == 8 * 16 * 4 * 27
