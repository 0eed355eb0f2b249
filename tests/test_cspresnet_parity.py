"""CSPResNet against PaddleDetection 2.6.0's with shared weights: keys, shapes, feature maps, fusion."""
import numpy as np
import paddle
import pytest
from conftest import randomize_state

import ppbackbone
from ppbackbone.arch.cspresnet import CSP_CFGS

TOL = 1e-5
# Feature-mode parameter counts with BN statistics, as REFERENCES.md measured PaddleDetection's (large stem).
PUBLISHED_M = {"s": 3.00, "m": 9.33, "l": 21.19, "x": 40.28}


def reference(**kwargs):
    from ppdet.modeling.backbones.cspresnet import CSPResNet
    return CSPResNet(**kwargs)


@pytest.fixture(scope="module")
def image():
    return paddle.to_tensor(np.random.RandomState(3).randn(2, 3, 64, 64).astype("float32"))


def _compare(ref, ours, image, tmp_path):
    randomize_state(ref, seed=21)
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    path = str(tmp_path / "ppdet.pdparams")
    paddle.save(ref.state_dict(), path)
    report = ppbackbone.load_weights(ours, path, verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched)
    ref.eval()
    ours.eval()
    expected = [t.numpy() for t in ref({"image": image})]
    got = [t.numpy() for t in ours(image)]
    for e, g in zip(expected, got):
        assert float(np.abs(e).max()) > 1e-2
        assert float(np.abs(e - g).max()) <= TOL * max(1.0, float(np.abs(e).max()))
    return expected


@pytest.mark.parametrize("size", ["s", "m", "l", "x"])
@pytest.mark.parametrize("use_alpha", [True, False], ids=["plus", "legacy"])
def test_feature_maps_match_paddledetection(size, use_alpha, image, tmp_path):
    depth, width = CSP_CFGS[size]
    kwargs = dict(use_large_stem=True, use_alpha=use_alpha, depth_mult=depth, width_mult=width)
    ref = reference(return_idx=[0, 1, 2, 3], **kwargs)
    ours = ppbackbone.create_model(f"cspresnet_{size}", use_alpha=use_alpha, out_indices=[0, 1, 2, 3])
    expected = _compare(ref, ours, image, tmp_path)
    assert ours.out_strides == [s.stride for s in ref.out_shape] == [4, 8, 16, 32]
    assert ours.out_channels == [s.channels for s in ref.out_shape]
    n_all = sum(int(p.numel()) for p in ours.parameters())
    if use_alpha:
        assert round(n_all / 1e6, 2) == PUBLISHED_M[size]
    # fused: same maps as PaddleDetection's unfused model, one conv per RepVgg block, no alpha left
    ppbackbone.reparameterize(ours)
    assert not ppbackbone.has_unfused_blocks(ours)
    assert not [k for k in ours.state_dict() if k.endswith(".alpha") or ".conv2.conv1." in k]
    for e, g in zip(expected, ours(image)):
        assert float(np.abs(e - g.numpy()).max()) <= 1e-4 * max(1.0, float(np.abs(e).max()))


def test_paddledetection_defaults_and_trt_swish(image, tmp_path):
    _compare(reference(), ppbackbone.create_model("CSPResNet"), image, tmp_path)
    _compare(reference(trt=True, width_mult=0.5, depth_mult=0.33, return_idx=[1, 2, 3]),
             ppbackbone.create_model("cspresnet", trt=True, width_mult=0.5, depth_mult=0.33), image, tmp_path)


def test_fused_weights_equal_paddledetection_convert_to_deploy(tmp_path):
    ref = randomize_state(reference(use_large_stem=True, use_alpha=True, width_mult=0.5, depth_mult=0.33), seed=8)
    path = str(tmp_path / "s.pdparams")
    paddle.save(ref.state_dict(), path)
    ours = ppbackbone.create_model("cspresnet_s", out_indices=[1, 2, 3], pretrained=path)
    ref.eval()
    ours.eval()
    for layer in ref.sublayers():
        if hasattr(layer, "convert_to_deploy"):
            layer.convert_to_deploy()
    ppbackbone.reparameterize(ours)
    ref_state = ref.state_dict()
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(value.numpy(), ref_state[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    # PaddleDetection keeps the folded alpha; ours drops it
    assert sorted(set(ref_state) - set(ours.state_dict())) == sorted(k for k in ref_state if k.endswith(".alpha"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(width_mult=0), "width_mult must be > 0"),
    (dict(depth_mult=-1), "depth_mult must be > 0"),
    (dict(act="swishh"), "act: Unknown activation 'swishh'"),
    (dict(return_idx=[4]), "out_indices \\[4\\] out of range"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ppbackbone.create_model("cspresnet", **kwargs)


def test_classifier_head_and_imagenet_backbone_weights(image, tmp_path):
    """The ImageNet classifier (GAP + fc) trains; its backbone weights load into the detection mode."""
    cls = randomize_state(ppbackbone.create_model("cspresnet_s", num_classes=10), seed=2)
    cls.eval()
    assert list(cls(image).shape) == [2, 10]
    path = ppbackbone.save_weights(cls, str(tmp_path / "cls"))
    det = ppbackbone.create_model("cspresnet_s", out_indices=[1, 2, 3], pretrained=path)
    assert sorted(ppbackbone.load_weights(det, path, verbose=False).head_skipped) == ["fc.bias", "fc.weight"]
