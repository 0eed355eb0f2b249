"""PP-LCNet family beyond the generic suite: PP-LCNetV3 against PaddleOCR (checked-in fixture made by
tests/fixtures/make_lcnetv3_fixture.py), Rep fusion with non-trivial weights and statistics, export,
checkpoint handling, and bad input."""
import os

import numpy as np
import paddle
import pytest
from conftest import randomize_state

import ppbackbone
from ppbackbone.arch.lcnetv3 import LearnableRepLayer
from ppbackbone.arch.rep import RepMixin

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FIXTURE = os.path.join(FIXTURES, "lcnetv3_paddleocr.npz")


def _fixture_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_lcnetv3_fixture",
                                                  os.path.join(FIXTURES, "make_lcnetv3_fixture.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _shapes(data, case, field="shapes"):
    return [tuple(int(v) for v in s.split(",")) if s else () for s in data[f"{case}/{field}"]]


def _as_list(out):
    return out if isinstance(out, list) else [out]


# -------------------------------------------------------------------- PP-LCNetV3 vs PaddleOCR
@pytest.mark.parametrize("preset,name", [("det_x0_75", "pplcnetv3_x0_75_det"), ("rec_x0_95", "pplcnetv3_x0_95_rec")])
def test_v3_presets_have_paddleocr_keys_and_shapes(fixture, preset, name):
    """The released layouts (PPLCNetV3_x0_75_ocr_det.pdparams; the PP-OCR mobile rec backbone)."""
    model = ppbackbone.create_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = dict(zip(fixture[f"{preset}/keys"].tolist(), _shapes(fixture, preset)))
    assert ours == theirs
    assert ppbackbone.count_params(model) == ppbackbone.model_info(name).num_params
    ppbackbone.reparameterize(model)  # fused: PaddleOCR's keys after its rep() (`reparam_conv`)
    fused = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs_fused = dict(zip(fixture[f"{preset}/fused_keys"].tolist(), _shapes(fixture, preset, "fused_shapes")))
    assert fused == theirs_fused


def _paddleocr_model(fixture, case, tmp_path):
    """PaddleOCR's PPLCNetV3(scale=0.35, det=...) through our registry (a classifier name + det/rec), with the
    fixture's weights, and the case's input."""
    maker = _fixture_module()
    keys = fixture[f"{case}/keys"].tolist()
    weights = maker.fixture_weights(keys, _shapes(fixture, case))
    sums = np.array([[w.astype("float64").sum(), (w.astype("float64") ** 2).sum()] for w in weights.values()])
    np.testing.assert_allclose(sums, fixture[f"{case}/checksums"], rtol=1e-6, atol=1e-6,
                               err_msg="fixture_weights no longer reproduces the fixture's weights")
    model = ppbackbone.create_model("pplcnetv3_x0_35", **{"det" if case == "det" else "rec": True})
    assert list(model.state_dict()) == keys
    path = ppbackbone.save_weights(weights, str(tmp_path / "fixture.safetensors"))
    report = ppbackbone.load_weights(model, path, verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched)
    x = fixture.get(f"{case}/input")
    if x is None:  # compact case: the generator's seeded input
        x = maker.fixture_input(maker.CASES[case]["input_shape"])
    return model, paddle.to_tensor(x)


@pytest.mark.parametrize("case", ["det", "rec", "rec320"])
def test_v3_matches_paddleocr_unfused_and_fused(fixture, case, tmp_path):
    """det: PaddleOCR's 4 projected maps; rec: its pooled output, returned by model(x) as PaddleOCR's is."""
    model, x = _paddleocr_model(fixture, case, tmp_path)
    model.eval()

    def run():
        return _as_list(model(x))

    expected = [fixture[f"{case}/out{i}"] for i in range(4 if case == "det" else 1)]
    got = run()
    assert [tuple(g.shape) for g in got] == [e.shape for e in expected]
    scale = max(float(np.abs(e).max()) for e in expected)
    assert scale > 1e-2
    for e, g in zip(expected, got):
        assert float(np.abs(e - g.numpy()).max()) <= 1e-5

    ppbackbone.reparameterize(model)
    assert not ppbackbone.has_unfused_blocks(model)
    assert not any(".conv_kxk." in k or ".conv_1x1." in k or ".identity." in k for k in model.state_dict())
    fused_expected = [fixture[f"{case}/fused_out{i}"] for i in range(len(expected))]
    for e, f, g in zip(expected, fused_expected, run()):
        assert float(np.abs(f - g.numpy()).max()) <= 1e-5 * max(1.0, scale)  # PaddleOCR's rep() output
        assert float(np.abs(e - g.numpy()).max()) <= 1e-4 * max(1.0, scale)  # our unfused output


@pytest.mark.parametrize("case", ["det", "rec"])
def test_v3_param_attrs_match_paddleocr(fixture, case):
    lr_mults = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    model = ppbackbone.create_model("pplcnetv3_x0_35", lr_mult_list=lr_mults, **{case: True})
    params = dict(model.named_parameters())
    names = fixture[f"{case}/param_names"].tolist()
    assert sorted(params) == sorted(names)
    for name, lr, has_reg in zip(names, fixture[f"{case}/lr"], fixture[f"{case}/has_reg"]):
        assert params[name].optimize_attr["learning_rate"] == pytest.approx(float(lr)), name
        assert (params[name].regularizer is not None) == bool(has_reg), name


def test_v3_rec_training_output_matches_paddleocr(fixture, tmp_path):
    """Training mode ends with adaptive_avg_pool2d to [1, 40] (BN on batch statistics), as PaddleOCR's."""
    model, x = _paddleocr_model(fixture, "rec320", tmp_path)
    model.train()
    got = model(x).numpy()
    expected = fixture["rec320/train_out0"]
    assert got.shape == expected.shape == (2, 176, 1, 40)
    assert float(np.abs(got - expected).max()) <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_v3_rec_preset_returns_paddleocr_output_and_keeps_the_map():
    model = ppbackbone.create_model("pplcnetv3_x0_95_rec")
    assert model.out_indices is None and model.feature_info[-1]["channels"] == 480
    assert model.feature_info[-1]["stride_hw"] == (16, 4)
    x = paddle.randn([1, 3, 48, 320])
    model.eval()
    pooled = model(x)
    assert pooled.shape == [1, 480, 1, 40]  # PaddleOCR's PPLCNetV3(det=False) output
    fmap = model.forward_features(x)
    assert fmap.shape == [1, 480, 3, 80]  # the unpooled blocks6 map
    np.testing.assert_allclose(model.ocr_pool(fmap).numpy(), pooled.numpy(), rtol=1e-6, atol=1e-6)
    features = ppbackbone.create_model("pplcnetv3_x0_95_rec", out_indices=[3, 4])
    features.eval()
    assert [list(t.shape) for t in features(x)] == [[1, 240, 12, 80], [1, 480, 3, 80]]
    model.train()
    assert model(paddle.randn([2, 3, 32, 160])).shape == [2, 480, 1, 40]


def test_v3_classifier_takes_the_ocr_det_checkpoint(tmp_path):
    """The released det backbone fine-tunes as a classifier: its projections are skipped, not unexpected."""
    det = randomize_state(ppbackbone.create_model("PPLCNetV3_x0_75_ocr_det"), seed=41)
    path = ppbackbone.save_weights(det, str(tmp_path / "det.pdparams"))
    cls = ppbackbone.create_model("pplcnetv3_x0_75", num_classes=10)
    report = ppbackbone.load_weights(cls, path, verbose=False)
    assert not report.unexpected and not report.mismatched
    assert sorted(report.head_skipped) == sorted(k for k in det.state_dict() if k.startswith("layer_list."))
    assert sorted(report.missing) == sorted(k for k in cls.state_dict() if k.startswith(("last_conv.", "fc.")))


def test_v3_checkpoint_state_mismatches_are_refused(tmp_path):
    unfused = randomize_state(ppbackbone.create_model("pplcnetv3_x0_75_det"), seed=42)
    unfused_path = ppbackbone.save_weights(unfused, str(tmp_path / "unfused.pdparams"))
    fused = ppbackbone.reparameterize(ppbackbone.create_model("pplcnetv3_x0_75_det"))
    with pytest.raises(ValueError, match="load the weights into the unfused model"):
        ppbackbone.load_weights(fused, unfused_path, verbose=False)
    ppbackbone.reparameterize(unfused)
    assert any(k.endswith(".reparam_conv.weight") for k in unfused.state_dict())  # PaddleOCR's fused name
    fused_path = ppbackbone.save_weights(unfused, str(tmp_path / "fused.pdparams"))
    with pytest.raises(ValueError, match="reparameterize.*before loading"):
        ppbackbone.load_weights(ppbackbone.create_model("pplcnetv3_x0_75_det"), fused_path, verbose=False)
    report = ppbackbone.load_weights(fused, fused_path, verbose=False)
    assert not (report.missing or report.unexpected)


def test_v3_paddleocr_rep_alias_and_stride2_act():
    layer = LearnableRepLayer(8, 8, 3, stride=2, groups=8, num_conv_branches=4)
    assert not layer.use_act and layer.identity is None
    assert all(p.stop_gradient for p in layer.act.parameters())  # allocated, never used (as PaddleOCR)
    layer.eval()
    x = paddle.randn([1, 8, 9, 9])
    before = layer(x).numpy()
    layer.rep()
    assert layer.deployed and not hasattr(layer, "conv_kxk") and not hasattr(layer, "conv_1x1")
    np.testing.assert_allclose(layer(x).numpy(), before, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------- fusion with real statistics
@pytest.mark.parametrize("name", ["pplcnetv2_base", "pplcnetv3_x1_0", "pplcnetv3_x0_75_det",
                                  "pplcnetv3_x0_95_rec"])
def test_fusion_is_exact_with_random_weights_and_statistics(name, image):
    """The generic suite fuses fresh models (BN statistics 0/1); here every tensor is random."""
    model = randomize_state(ppbackbone.create_model(name, num_classes=10), seed=43)
    model.eval()
    before = [t.numpy() for t in _as_list(model(image))]
    ppbackbone.reparameterize(model)
    assert not ppbackbone.has_unfused_blocks(model)
    assert all(layer.deployed for layer in model.sublayers() if isinstance(layer, RepMixin))
    after = [t.numpy() for t in _as_list(model(image))]
    for a, b in zip(before, after):
        scale = max(1.0, float(np.abs(a).max()))
        assert np.isfinite(a).all() and float(np.abs(a - b).max()) <= 1e-4 * scale


def test_fused_v3_det_exports_and_reloads(tmp_path, image):
    model = randomize_state(ppbackbone.create_model("pplcnetv3_x0_75_det"), seed=44)
    model.eval()
    ppbackbone.reparameterize(model)
    expected = [t.numpy() for t in model(image)]
    spec = [paddle.static.InputSpec([None, 3, 64, 64], "float32", "x")]
    prefix = str(tmp_path / "inference")
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
    loaded = paddle.jit.load(prefix)
    loaded.eval()
    for e, g in zip(expected, _as_list(loaded(image))):
        np.testing.assert_allclose(e, g.numpy(), rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------- names and bad input
def test_aliases_are_the_reference_names():
    for alias, name in [("PPLCNet_x1_0", "pplcnet_x1_0"), ("PPLCNet_x0_25", "pplcnet_x0_25"),
                        ("PPLCNetV2_base", "pplcnetv2_base"), ("PPLCNetV2_small", "pplcnetv2_small"),
                        ("PPLCNetV3_x0_75_ocr_det", "pplcnetv3_x0_75_det")]:
        assert ppbackbone.arch.resolve_name(alias) == name


@pytest.mark.parametrize("name,kwargs,match", [
    ("pplcnet_x1_0", dict(scale=0.6), r"pplcnet_x1_0 has scale=1.0, fixed by its name; got scale=0.6.*pplcnet_x0_75"),
    ("pplcnetv2_base", dict(scale=0.5), r"scale=1.0, fixed by its name.*pplcnetv2_small \(scale=0.75"),
    ("pplcnetv2_base", dict(depths=[2, 2, 2, 2]), r"depths=\[2, 2, 6, 2\], fixed by its name"),
    ("pplcnetv3_x0_5", dict(scale=0.75), r"scale=0.5, fixed.*pplcnetv3_x0_75"),
    ("pplcnetv3_x0_75_det", dict(det=False), r"det=True, fixed by its name"),
    ("PPLCNet", dict(scale=0.6), r"pplcnet: scale=0.6 is not in its table; allowed: 0.25, 0.35, 0.5"),
    ("LCNet", dict(scale=3.0), r"lcnet: scale=3.0 is not in its table"),
    ("pplcnet_x1_0", dict(stride_list=[2, 2, 2, 2]), r"stride_list has 4 entries; PP-LCNet needs 5"),
    ("pplcnet_x1_0", dict(stride_list=[2, 2, 0, 2, 2]), r"positive int"),
    ("pplcnet_x1_0", dict(feature_maps=[2, 3, 4, 5, 5]), r"feature_maps has 5 entries; it takes 1 to 4"),
    ("pplcnet_x1_0", dict(feature_maps=[]), r"feature_maps has 0 entries"),
    ("pplcnet_x1_0", dict(feature_maps=[1, 3]), r"feature_maps \[1, 3\].*in \[2, 3, 4, 5\]"),
    ("pplcnet_x1_0", dict(feature_maps=[3, 3]), r"distinct"),
    ("pplcnet_x1_0", dict(feature_maps=[3, 4, 5], out_indices=[1, 2]), r"disagree"),
    ("pplcnet_x1_0", dict(act="gelu"), r"act='gelu' is not supported; allowed: 'hardswish', 'hard_swish'"),
    ("pplcnetv2_base", dict(act="swish"), r"act='swish' is not supported"),
    ("pplcnet_x1_0", dict(lr_mult_list=[1.0] * 5), r"lr_mult_list has 5 entries; PPLCNet needs 6: \[conv1, blocks2"),
    ("pplcnetv3_x0_5", dict(det=True, rec=True), r"det=True and rec=True exclude each other"),
    ("pplcnetv3_x0_5", dict(conv_kxk_num=0), r"conv_kxk_num=0.*at least 1"),
    ("pplcnet_x1_0", dict(out_indices=[5]), r"out_indices \[5\] out of range.*blocks2"),
])
def test_bad_input_names_what_is_allowed(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ppbackbone.create_model(name, **kwargs)


def test_fixed_scale_name_accepts_its_own_scale_and_unknown_names_suggest():
    assert ppbackbone.create_model("pplcnet_x0_5", scale=0.5, num_classes=0).scale == 0.5
    with pytest.raises(ValueError, match="Did you mean: .*pplcnet_x1_0"):
        ppbackbone.create_model("pplcnet_x1_1")
    with pytest.raises(TypeError, match="unknown argument.*scal"):
        ppbackbone.create_model("pplcnet_x1_0", scal=1.0)
