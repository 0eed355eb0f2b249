"""Swin Transformer against the references with shared random weights: PaddleClas 2.6.0's SwinTransformer_*
classifiers (keys and shapes of every full-size variant; outputs of every variant's window, heads and img_size at
two blocks per stage and narrow widths, and of full-size tiny) and PaddleDetection 2.6.0's SwinTransformer
backbone (feature maps). Inputs are small (64x64, 96x96, non-square ones where padding differs)."""
import numpy as np
import paddle
import pytest
from conftest import import_reference, randomize_state as randomize

import ppbackbone
from ppbackbone.arch.swin import SWIN_CFGS

TOL = 1e-5  # relative to the output's magnitude
VARIANTS = list(SWIN_CFGS)


def paddleclas_module():
    return import_reference("ppcls.arch.backbone.legendary_models.swin_transformer")


def paddledet_class():
    from ppdet.modeling.backbones.swin_transformer import SwinTransformer
    return SwinTransformer


def narrow(cfg):
    """A variant's row at two blocks per stage and 8 channels per head: same windows, heads, img_size."""
    cfg = dict(cfg, depths=[2, 2, 2, 2])
    cfg["embed_dim"] = cfg["num_heads"][0] * 8
    return cfg


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def transfer(ref, ours, tmp_path):
    """ref's state -> ours through a .pdparams file and load_weights, which must match key for key."""
    path = str(tmp_path / "reference.pdparams")
    paddle.save(ref.state_dict(), path)
    report = ppbackbone.load_weights(ours, path, verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched or report.head_skipped), report.summary()


def assert_close(expected, got):
    scale = float(np.abs(expected).max())
    assert scale > 1e-2, "degenerate outputs would make the comparison void"
    assert expected.shape == got.shape
    assert float(np.abs(expected - got).max()) <= TOL * scale


def image(height, width, seed=5):
    return paddle.to_tensor(np.random.RandomState(seed).randn(2, 3, height, width).astype("float32"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_size_keys_shapes_and_counts_equal_paddleclas(variant):
    """Every full-size variant: state-dict keys, shapes (relative_position_index buffers included) and the
    parameter count equal PaddleClas's (built lazily: shapes without initialising 28M-197M values)."""
    with paddle.LazyGuard():
        ref = getattr(paddleclas_module(), f"SwinTransformer_{variant}")()
        ours = ppbackbone.create_model(f"swin_{variant}")
    assert shapes(ours) == shapes(ref)
    ref_count, our_count = (sum(int(np.prod(p.shape)) for p in m.parameters()) for m in (ref, ours))
    assert our_count == ref_count == ppbackbone.model_info(f"swin_{variant}").num_params
    index = ours.state_dict()["layers.0.blocks.0.attn.relative_position_index"]
    assert index.dtype == paddle.int64


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_equal_paddleclas(variant, tmp_path):
    """Each variant's window, heads and img_size (narrow, two blocks per stage) at a small input that needs
    window padding (64x64: stage grids 16, 8, 4, 2)."""
    cfg = narrow(SWIN_CFGS[variant])
    ref = randomize(paddleclas_module().SwinTransformer(**cfg, class_num=10), seed=1)
    ours = ppbackbone.create_model(f"swin_{variant}", num_classes=10, **cfg)
    assert shapes(ours) == shapes(ref)
    transfer(ref, ours, tmp_path)
    ref.eval()
    ours.eval()
    x = image(64, 64)
    assert_close(ref(x).numpy(), ours(x).numpy())


def test_full_size_tiny_equals_paddleclas(tmp_path):
    ref = randomize(paddleclas_module().SwinTransformer_tiny_patch4_window7_224(), seed=2)
    ours = ppbackbone.create_model("swin_tiny_patch4_window7_224")
    transfer(ref, ours, tmp_path)
    ref.eval()
    ours.eval()
    x = image(64, 64)
    assert_close(ref(x).numpy(), ours(x).numpy())


@pytest.mark.parametrize("size", [(96, 64), (64, 56), (30, 45)])
def test_padding_of_odd_and_non_square_inputs_equals_paddleclas(size, tmp_path):
    """PaddleClas pads a whole window (and patch) on a side that is already a multiple when the other is not:
    64x56 has a 16x14 grid, 14 a multiple of 7. 30x45 is no multiple of the patch either."""
    cfg = narrow(SWIN_CFGS["tiny_patch4_window7_224"])
    ref = randomize(paddleclas_module().SwinTransformer(**cfg, class_num=10), seed=3)
    ours = ppbackbone.create_model("swin_tiny_patch4_window7_224", num_classes=10, **cfg)
    transfer(ref, ours, tmp_path)
    ref.eval()
    ours.eval()
    x = image(*size)
    assert_close(ref(x).numpy(), ours(x).numpy())


def test_drop_path_in_training_equals_paddleclas(tmp_path):
    """Train mode with stochastic depth: the same random draws (same seed, same order) give the same outputs."""
    cfg = dict(narrow(SWIN_CFGS["small_patch4_window7_224"]), drop_path_rate=0.5)
    ref = randomize(paddleclas_module().SwinTransformer(**cfg, class_num=10), seed=4)
    ours = ppbackbone.create_model("swin_small_patch4_window7_224", num_classes=10, **cfg)
    transfer(ref, ours, tmp_path)
    ref.train()
    ours.train()
    x = image(64, 64)
    paddle.seed(123)
    expected = ref(x).numpy()
    paddle.seed(123)
    got = ours(x).numpy()
    assert_close(expected, got)
    paddle.seed(124)
    assert float(np.abs(ours(x).numpy() - got).max()) > 1e-3, "drop_path must be random in training"


@pytest.mark.parametrize("size", [(64, 96), (224, 64)])
def test_features_equal_paddledet(size, tmp_path):
    """PaddleDetection's backbone (out_indices 0..3, a norm per output) loads key for key into feature mode and
    gives the same maps; 224x64 has a 56x16 grid (56 a multiple of 7: its padding, not PaddleClas's)."""
    cfg = narrow(SWIN_CFGS["tiny_patch4_window7_224"])
    ref = randomize(paddledet_class()(**cfg, out_indices=(0, 1, 2, 3)), seed=6)
    ours = ppbackbone.create_model("swin_transformer", **cfg)
    assert shapes(ours) == shapes(ref)
    transfer(ref, ours, tmp_path)
    ref.eval()
    ours.eval()
    x = image(*size)
    expected = ref({"image": x})
    got = ours({"image": x})
    assert ours.out_strides == [4, 8, 16, 32] and [s.stride for s in ours.out_shape] == [4, 8, 16, 32]
    for e, g in zip(expected, got):
        assert_close(e.numpy(), g.numpy())


def test_paddledet_selected_outputs_and_classifier_weights(tmp_path):
    """out_indices (1, 2, 3): norm1..norm3 only. A PaddleClas classifier checkpoint loads into it with the head
    skipped and the output norms left fresh, as PaddleDetection loads ImageNet weights."""
    cfg = narrow(SWIN_CFGS["tiny_patch4_window7_224"])
    ref = randomize(paddledet_class()(**cfg, out_indices=(1, 2, 3)), seed=7)
    ours = ppbackbone.create_model("swin_transformer", out_indices=[1, 2, 3], **cfg)
    assert shapes(ours) == shapes(ref)
    transfer(ref, ours, tmp_path)
    ref.eval()
    ours.eval()
    x = image(64, 64)
    for e, g in zip(ref({"image": x}), ours(x)):
        assert_close(e.numpy(), g.numpy())
    classifier = paddleclas_module().SwinTransformer(**cfg)
    path = str(tmp_path / "classifier.pdparams")
    paddle.save(classifier.state_dict(), path)
    report = ppbackbone.load_weights(ours, path, verbose=False)
    assert sorted(report.missing) == [f"norm{i}.{p}" for i in (1, 2, 3) for p in ("bias", "weight")]
    assert sorted(report.head_skipped) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]


NATIVE_SECTIONS = {
    "frozen2": dict(embed_dim=24, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24], out_indices=[1, 2, 3],
                    frozen_stages=2, drop_path_rate=0.3),
    "frozen0_window12": dict(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[2, 4, 8, 16], window_size=12,
                             pretrain_img_size=384, frozen_stages=0),
}


@pytest.mark.parametrize("case", sorted(NATIVE_SECTIONS))
def test_native_section_is_paddledetections_backbone(case, tmp_path):
    """`PPBackbone: {model: SwinTransformer, <its keys>}` builds PaddleDetection's backbone: keys, shapes,
    trainability (frozen_stages), outputs."""
    from ppbackbone.arch.native import build_native
    section = NATIVE_SECTIONS[case]
    ref = randomize(paddledet_class()(**section), seed=8)
    ours = build_native("SwinTransformer", **section)
    assert shapes(ours) == shapes(ref)
    ref_frozen = {k: p.stop_gradient for k, p in ref.named_parameters()}
    assert {k: p.stop_gradient for k, p in ours.named_parameters()} == ref_frozen
    transfer(ref, ours, tmp_path)
    ref.eval()
    ours.eval()
    x = image(64, 96)
    for e, g in zip(ref({"image": x}), ours({"image": x})):
        assert_close(e.numpy(), g.numpy())


def test_native_arch_names_and_bad_values():
    from ppbackbone.arch.native import build_native
    from ppbackbone.errors import ConfigError
    with paddle.LazyGuard():
        large = build_native("SwinTransformer", arch="swin_L_384", out_indices=[1, 2, 3])
    assert large.window_size == 12 and large.out_channels == [384, 768, 1536] and large.img_size == 384
    with pytest.raises(ConfigError, match=r"arch='swin_X_224' is not one of swin_T_224, .*swin_L_384"):
        build_native("SwinTransformer", arch="swin_X_224")
    with pytest.raises(ConfigError, match=r"frozen_stages=7; expected -1 \(nothing\) .. 5"):
        build_native("SwinTransformer", frozen_stages=7)


def test_native_ape_embedding_converts_and_interpolates_as_paddledet(tmp_path):
    """ape=True: PaddleDetection's [1, C, H, W] embedding loads into ours ([1, H*W, C], PaddleClas's layout) and
    is resized bicubically at another input size, as PaddleDetection does."""
    from ppbackbone.arch.native import build_native
    section = dict(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], ape=True, pretrain_img_size=64)
    ref = randomize(paddledet_class()(**section), seed=9)
    ours = build_native("SwinTransformer", **section)
    assert tuple(ref.state_dict()["absolute_pos_embed"].shape) == (1, 16, 16, 16)
    assert tuple(ours.state_dict()["absolute_pos_embed"].shape) == (1, 256, 16)
    transfer(ref, ours, tmp_path)
    ref.eval()
    ours.eval()
    for size in ((64, 64), (64, 96)):
        x = image(*size)
        for e, g in zip(ref({"image": x}), ours(x)):
            assert_close(e.numpy(), g.numpy())
