"""CSPResNet against PaddleDetection 2.6.0's with shared weights: keys, shapes, feature maps, fusion."""
import warnings

import numpy as np
import paddle
import pytest
from conftest import randomize_state

import ppbackbone
from ppbackbone.arch.cspresnet import CSP_CFGS

TOL = 1e-5
# Feature-mode parameter counts with BN statistics, as REFERENCES.md measured PaddleDetection's (large stem).
PUBLISHED_M = {"s": 3.00, "m": 9.33, "l": 21.19, "x": 40.28}
# Exact counts of paddledet 2.6.0's CSPResNet(use_large_stem=True, use_alpha=..., depth/width of the size),
# (with BN running statistics, without them = ppbackbone.count_params), for every setting we ship.
REFERENCE_COUNTS = {
    ("t", True): (1691226, 1685262), ("t", False): (1691220, 1685256),
    ("s", True): (3000934, 2992982), ("s", False): (3000928, 2992976),
    ("m", True): (9333900, 9317436), ("m", False): (9333888, 9317424),
    ("l", True): (21186770, 21158770), ("l", False): (21186752, 21158752),
    ("x", True): (40283224, 40240664), ("x", False): (40283200, 40240640),
}


def reference(**kwargs):
    from ppdet.modeling.backbones.cspresnet import CSPResNet
    return CSPResNet(**kwargs)


@pytest.fixture(scope="module")
def image():
    return paddle.to_tensor(np.random.RandomState(3).randn(2, 3, 64, 64).astype("float32"))


def _calibrate_bn(model, image):
    """Set every BN's running statistics to the batch statistics of `image` (one train-mode pass).

    With random statistics the maps grow with depth (x reaches 1e7), where only a relative tolerance
    means anything; calibrated, they have a trained network's magnitudes (|max| 6..9 here) and the
    issue's absolute 1e-5 is a real test."""
    norms = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]
    for bn in norms:
        bn._momentum = 0.0  # running = batch statistics
    model.train()
    with paddle.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Paddle notes that train-mode BN tracks global statistics
        model({"image": image})
    for bn in norms:
        bn._momentum = 0.9
    model.eval()
    return model


def _transfer(ref, ours, tmp_path):
    """ref's state -> ours through a .pdparams file and load_weights, which must match key for key."""
    path = str(tmp_path / "ppdet.pdparams")
    paddle.save(ref.state_dict(), path)
    report = ppbackbone.load_weights(ours, path, verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched)


def _maps(model, image):
    model.eval()
    return [t.numpy() for t in model({"image": image})]


def _compare(ref, ours, image, tmp_path):
    """Random weights, calibrated BN statistics: ours must give PaddleDetection's maps within TOL
    (absolute; they are bit-identical: the ops and their order are the same)."""
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    _calibrate_bn(randomize_state(ref, seed=21), image)
    _transfer(ref, ours, tmp_path)
    expected, got = _maps(ref, image), _maps(ours, image)
    for e, g in zip(expected, got):
        assert 1.0 < float(np.abs(e).max()) < 100.0
        assert float(np.abs(e - g).max()) <= TOL
    return expected


def _count_all(model):
    return sum(int(p.numel()) for p in model.parameters())


@pytest.mark.parametrize("size", ["t", "s", "m", "l", "x"])
@pytest.mark.parametrize("use_alpha", [True, False], ids=["plus", "legacy"])
def test_feature_maps_match_paddledetection(size, use_alpha, image, tmp_path):
    depth, width = CSP_CFGS[size]
    kwargs = dict(use_large_stem=True, use_alpha=use_alpha, depth_mult=depth, width_mult=width)
    ref = reference(return_idx=[0, 1, 2, 3], **kwargs)
    ours = ppbackbone.create_model(f"cspresnet_{size}", use_alpha=use_alpha, out_indices=[0, 1, 2, 3])
    _compare(ref, ours, image, tmp_path)
    assert ours.out_strides == [s.stride for s in ref.out_shape] == [4, 8, 16, 32]
    assert ours.out_channels == [s.channels for s in ref.out_shape]
    with_stats, without_stats = REFERENCE_COUNTS[(size, use_alpha)]
    assert _count_all(ref) == _count_all(ours) == with_stats
    assert ppbackbone.count_params(ours) == without_stats
    if size in PUBLISHED_M:
        assert round(with_stats / 1e6, 2) == PUBLISHED_M[size]
    # Fused vs PaddleDetection's unfused model. Fusion re-associates float32 sums, so the maps move by
    # rounding: checked relative to their scale, with uncalibrated random statistics (no BN channel of
    # near-zero variance to magnify the rounding, as a batch of two 64x64 images gives in stage 4).
    _transfer(randomize_state(ref, seed=22), ours, tmp_path)
    expected = _maps(ref, image)
    ppbackbone.reparameterize(ours)
    assert not ppbackbone.has_unfused_blocks(ours)
    assert not [k for k in ours.state_dict() if k.endswith(".alpha") or ".conv2.conv1." in k]
    for e, g in zip(expected, _maps(ours, image)):
        assert float(np.abs(e - g).max()) <= 1e-4 * max(1.0, float(np.abs(e).max()))


def test_paddledetection_defaults_and_trt_swish(image, tmp_path):
    _compare(reference(), ppbackbone.create_model("CSPResNet"), image, tmp_path)
    # trt=True turns swish and silu alike into x * sigmoid(x) in PaddleDetection
    for act in ("swish", "silu"):
        _compare(reference(act=act, trt=True, width_mult=0.5, depth_mult=0.33, return_idx=[1, 2, 3]),
                 ppbackbone.create_model("cspresnet", act=act, trt=True, width_mult=0.5, depth_mult=0.33),
                 image, tmp_path)


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
    (dict(width_mult=0), "width_mult must be a number > 0, got 0"),
    (dict(depth_mult=-1), "depth_mult must be a number > 0, got -1"),
    (dict(width_mult="0.5"), "width_mult must be a number > 0, got '0.5'"),
    (dict(depth_mult=None), "depth_mult must be a number > 0, got None"),
    (dict(act="swishh"), "act: Unknown activation 'swishh'"),
    (dict(return_idx=[4]), "return_idx .*out_indices \\[4\\] out of range.*indices 0..3"),
    (dict(out_indices=[-5]), "out_indices \\[-5\\] out of range"),
    (dict(layers=[3, 6]), "channels needs len\\(layers\\) \\+ 1 = 3 entries"),
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


def test_imagenet_backbone_weights_load_into_the_plus_preset(image, tmp_path):
    """PaddleDetection's CSPResNetb_*_pretrained (ImageNet) weights belong to the legacy layout: large
    stem, no alpha, no head (super-gradients loads them strictly into CSPResNet(use_alpha=False)). Such a
    file loads into every mode of ours; the PP-YOLOE+ preset reports only its alphas as missing, and at
    their initial 1.0 it computes the legacy network exactly."""
    depth, width = CSP_CFGS["s"]
    legacy = randomize_state(reference(use_large_stem=True, use_alpha=False, depth_mult=depth, width_mult=width,
                                       return_idx=[1, 2, 3]), seed=5)
    path = str(tmp_path / "CSPResNetb_s_layout.pdparams")
    paddle.save(legacy.state_dict(), path)
    legacy.eval()
    expected = [t.numpy() for t in legacy({"image": image})]

    plain = ppbackbone.create_model("cspresnet_s", use_alpha=False, out_indices=[1, 2, 3])
    report = ppbackbone.load_weights(plain, path, verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched)

    plus = ppbackbone.create_model("cspresnet_s", out_indices=[1, 2, 3])
    report = ppbackbone.load_weights(plus, path, verbose=False)
    alphas = sorted(k for k in plus.state_dict() if k.endswith(".alpha"))
    assert alphas and sorted(report.missing) == alphas
    assert not (report.unexpected or report.mismatched)
    plus.eval()
    for e, g in zip(expected, plus(image)):
        assert float(np.abs(e - g.numpy()).max()) <= TOL * max(1.0, float(np.abs(e).max()))

    classifier = ppbackbone.create_model("cspresnet_s")
    report = ppbackbone.load_weights(classifier, path, verbose=False)
    assert sorted(report.missing) == sorted(alphas + ["fc.weight", "fc.bias"])


def test_param_attrs_equal_paddledetection_at_defaults():
    """lr_mult_list is ours (PaddleDetection's CSPResNet has none); at its default every parameter's
    learning rate, regularizer and trainability equal the reference's."""
    def attrs(param):
        reg = param.regularizer
        return (param.optimize_attr["learning_rate"], None if reg is None else (type(reg).__name__, float(reg._coeff)),
                param.trainable, param.stop_gradient)
    ref = dict(reference(use_large_stem=True, use_alpha=True, width_mult=0.375, depth_mult=0.33).named_parameters())
    ours = dict(ppbackbone.create_model("cspresnet_t", out_indices=[1, 2, 3]).named_parameters())
    assert sorted(ref) == sorted(ours)
    assert {k: attrs(p) for k, p in ours.items()} == {k: attrs(p) for k, p in ref.items()}
