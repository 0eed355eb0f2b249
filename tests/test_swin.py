"""Swin Transformer beyond the generic suite: bad input (window vs patch grid, a checkpoint of another window
size, the size an ape classifier takes, pad_mode), the two references' padding, ParamAttr and freezing."""
import numpy as np
import paddle
import pytest

import ppbackbone
from ppbackbone.arch.swin import TEST_ARGS, pad_amounts, shifted_window_mask


def small(name="swin_tiny_patch4_window7_224", **kwargs):
    return ppbackbone.create_model(name, **dict(TEST_ARGS, **kwargs))


def test_window_that_does_not_divide_the_patch_grid_is_refused():
    with pytest.raises(ValueError, match=r"window_size 8 does not divide the patch grids \[56, 28, 14, 7\] of "
                                         r"img_size 224.*windows that fit: \[1, 7\].*multiple of 256"):
        small(window_size=8)
    with pytest.raises(ValueError, match=r"window_size 7 does not divide.*\[24, 12, 6, 3\] of img_size 96.*"
                                         r"fit: \[1, 3\]"):
        small(img_size=96)
    # feature mode pads every map to whole windows, as PaddleDetection does: any img_size/window pair builds
    assert small(window_size=8, out_indices=[0, 1, 2, 3]).window_size == 8
    with pytest.raises(ValueError, match="window_size must be a positive int, got 0"):
        small(window_size=0, out_indices=[0])


def test_checkpoint_of_another_window_size_names_both(tmp_path):
    path = ppbackbone.save_weights(small("swin_base_patch4_window12_384"), str(tmp_path / "w12.pdparams"))
    with pytest.raises(ValueError, match=r"has 529 rows: it is of a Swin with window_size 12.*this model has "
                                         r"window_size 7 \(169 rows\).*window_size=12"):
        ppbackbone.load_weights(small("swin_base_patch4_window7_224"), path, verbose=False)


def test_ape_classifier_takes_only_its_img_size():
    model = small(ape=True, img_size=224)
    model.eval()
    with pytest.raises(ValueError, match=r"ape=True .* takes only 224x224; got 64x64"):
        model(paddle.zeros([1, 3, 64, 64]))
    features = small(ape=True, out_indices=[0, 3])  # feature mode resizes the embedding (PaddleDetection)
    features.eval()
    assert [list(o.shape) for o in features(paddle.zeros([1, 3, 64, 96]))] == [[1, 16, 16, 24], [1, 128, 2, 3]]


def test_unknown_pad_mode_and_mismatched_heads_are_refused():
    with pytest.raises(ValueError, match=r"pad_mode='same' is not supported; allowed: 'paddleclas', 'paddledet'"):
        small(pad_mode="same")
    with pytest.raises(ValueError, match=r"\(width, heads\) \[\(16, 3\)"):
        small(num_heads=[3, 6, 12, 24])


def test_the_references_padding_rules():
    # both pad the least when both sides (or neither) need it
    assert pad_amounts(16, 16, 7, "paddleclas") == pad_amounts(16, 16, 7, "paddledet") == (5, 5)
    assert pad_amounts(14, 21, 7, "paddleclas") == (0, 0)
    # PaddleClas adds a whole window on the side that was already a multiple
    assert pad_amounts(16, 14, 7, "paddleclas") == (5, 7)
    assert pad_amounts(16, 14, 7, "paddledet") == (5, 0)


def test_pad_modes_differ_only_where_the_references_do():
    x = paddle.to_tensor(np.random.RandomState(0).randn(1, 3, 64, 56).astype("float32"))
    square = x[:, :, :56, :]
    outs = {}
    for mode in ("paddleclas", "paddledet"):
        paddle.seed(0)
        model = small(pad_mode=mode, num_classes=4)
        model.eval()
        outs[mode] = (model(x).numpy(), model(square).numpy())
    assert np.abs(outs["paddleclas"][0] - outs["paddledet"][0]).max() > 1e-4
    np.testing.assert_allclose(outs["paddleclas"][1], outs["paddledet"][1], rtol=1e-6, atol=1e-6)


def test_shifted_window_mask_separates_rolled_regions():
    mask = shifted_window_mask(14, 14, 7, 3)
    assert mask.shape == (4, 49, 49)
    assert (mask[0] == 0).all()  # the top-left window holds one region
    assert set(np.unique(mask[3])) == {0.0, -100.0}
    assert (np.diagonal(mask, axis1=1, axis2=2) == 0).all()


def test_lr_mult_list_reaches_every_parameter_and_freeze_norm_stops_layer_norms():
    lr_mults = [0.1, 0.2, 0.3, 0.4, 0.5]
    model = small(lr_mult_list=lr_mults, out_indices=[0, 1, 2, 3])
    for name, param in model.named_parameters():
        group = 0 if name.startswith("patch_embed.") else 1 + int(name.split(".")[1] if name.startswith("layers.")
                                                                   else name[len("norm")])
        assert param.optimize_attr["learning_rate"] == pytest.approx(lr_mults[group]), name
    frozen = small(freeze_norm=True, freeze_at=1, num_classes=3)
    for name, param in frozen.named_parameters():
        is_norm = ".norm" in name or name.startswith("norm.") or name.split(".")[-2].startswith("norm")
        in_frozen_groups = name.startswith(("patch_embed.", "layers.0.", "layers.1."))
        assert param.stop_gradient == (is_norm or in_frozen_groups), name


def test_forward_features_and_head_compose_to_forward():
    model = small(num_classes=5)
    model.eval()
    x = paddle.to_tensor(np.random.RandomState(1).randn(2, 3, 64, 64).astype("float32"))
    features = model.forward_features(x)
    assert list(features.shape) == [2, 128, 2, 2]
    np.testing.assert_allclose(model.forward_head(features).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert list(model.forward_head(features, pre_logits=True).shape) == [2, 128]
