"""PaddleOCR's forms of PP-HGNetV2 / PP-HGNet / PP-LCNet / PP-LCNetV2 and PaddleClas's PP-HGNetV2-B7 against
the reference modules, through tests/fixtures/ocr_forms_paddleocr.npz (made by make_ocr_forms_fixture.py from
PaddleOCR upstream 6d2110b7 and PaddleClas 34d76a6d; see its docstring).

Small-width cases: state-dict keys and shapes equal, outputs within 1e-5 (relative to the output scale) in
eval and training mode, fused (Rep) outputs within 1e-4. Full-size presets: keys in order, shapes, parameter
counts, and the spatial means of their outputs for the same weights.
"""
import importlib.util
import os

import numpy as np
import paddle
import pytest

import ppbackbone
from ppbackbone.arch.hgnet import B7_TEST_ARGS, PPHGNet, PPHGNetV2, rec_rows
from ppbackbone.arch.lcnet import PPLCNet
from ppbackbone.arch.lcnetv2 import PPLCNetV2
from ppbackbone.arch.native import build_native

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FIXTURE = np.load(os.path.join(FIXTURES, "ocr_forms_paddleocr.npz"))


def _module(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(FIXTURES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _module("make_ocr_forms_fixture")
WEIGHTS = _module("make_lcnetv3_fixture")  # fixture_weights / fixture_input: seeded by tensor name / shape
V2_TINY = dict(stem_channels=[3, 8, 8], class_expand=32, num_classes=10)

# ours for each fixture case (the generator's CASES build the references)
OURS = {
    "v2_det": lambda: PPHGNetV2(stage_config=GEN.V2_ROWS, ocr_form="det", **V2_TINY),
    "v2_rec": lambda: PPHGNetV2(stage_config=GEN.V2_REC_ROWS, ocr_form="rec", **V2_TINY),
    "v2_map": lambda: PPHGNetV2(stage_config=GEN.V2_ROWS, ocr_form="map", **V2_TINY),
    "v1_det": lambda: PPHGNet([8, 8, 16], GEN.V1_ROWS, layer_num=2, ocr_form="det"),
    "v1_rec": lambda: PPHGNet([8, 8, 16], GEN.V1_REC_ROWS, layer_num=2, ocr_form="rec"),
    "lcnetv2_det": lambda: PPLCNetV2(scale=0.25, depths=[1, 1, 2, 1], out_indices=[0, 1, 2, 3]),
    "lcnet_det": lambda: PPLCNet(scale=0.25, out_indices=[1, 2, 3, 4]),
    "b7_blocks1": lambda: ppbackbone.create_model("hgnetv2_b7", **B7_TEST_ARGS),
}
PRESETS = {
    "hgnetv2_b4_det": lambda: ppbackbone.create_model("hgnetv2_b4_det"),
    "hgnetv2_b4_rec": lambda: ppbackbone.create_model("hgnetv2_b4_rec"),
    "pphgnet_small_det": lambda: ppbackbone.create_model("pphgnet_small_det"),
    "pphgnet_small_rec": lambda: ppbackbone.create_model("pphgnet_small_rec"),
    "formula_b4": lambda: build_native("PPHGNetV2_B4_Formula", host="PaddleOCR", class_num=16),
    "formula_b6": lambda: build_native("PPHGNetV2_B6_Formula", host="PaddleOCR", class_num=16),
    "lcnetv2_base_det": lambda: build_native("PPLCNetV2_base", host="PaddleOCR", pretrained=False),
    "lcnet_x1_0_det": lambda: build_native("PPLCNet", host="PaddleOCR"),
}


# B6's rows are PaddleClas's hgnetv2_b6 (numerics in test_hgnet_parity.py) and the encoder wrapper's are checked on
# formula_b4: its 73M parameters only add minutes on a loaded CI machine, so keys and shapes only.
KEYS_ONLY = ("formula_b6",)


def _keys_shapes(prefix):
    shapes = [tuple(int(d) for d in s.split(",")) if s else () for s in FIXTURE[f"{prefix}/shapes"]]
    return list(FIXTURE[f"{prefix}/keys"]), shapes


def _preallocated(keys):
    """PaddleClas/PaddleOCR's PPLCNetV2 allocates each Rep block's fused conv (`dw_conv.weight/bias` beside its
    `dw_conv_list`); ppbackbone creates it only when fusing and its filter_state_dict drops these keys."""
    return [k for k in keys if k.endswith(("dw_conv.weight", "dw_conv.bias"))
            and any(o.startswith(k.rsplit(".dw_conv.", 1)[0] + ".dw_conv_list.") for o in keys)]


def _load(model, keys, shapes):
    """Load the fixture weights of the reference's keys; returns our keys (which must equal the reference's but for
    the pre-allocated fused convs)."""
    weights = WEIGHTS.fixture_weights(keys, shapes)
    state = model.filter_state_dict(weights) if hasattr(model, "filter_state_dict") else weights
    ours = list(model.state_dict())
    assert ours == [k for k in keys if k not in _preallocated(keys)]
    for key, value in state.items():
        assert tuple(model.state_dict()[key].shape) == value.shape, key
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    return weights


def _outs(model, x):
    out = model(x)
    if isinstance(out, dict):
        out = out["last_hidden_state"]
    return out if isinstance(out, (list, tuple)) else [out]


def _lazy(build):
    """Build without initialising parameters (the fixture's weights replace them all; a parameter the fixture
    does not set would fail the forward): the full-size presets build in seconds."""
    with paddle.LazyGuard():
        return build()


def _close(got, ref, tol):
    assert got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale)


def test_rec_rows_are_paddleocrs_rec_tables():
    """rec_rows (downsample everywhere, strides [2,1],[1,2],[2,1],[2,1]) turns the classifier rows into the rec
    tables of PaddleOCR's PPHGNetV2_B4 / PPHGNet_small (their full presets are checked below)."""
    assert rec_rows([r[:8] for r in GEN.V2_ROWS]) == GEN.V2_REC_ROWS
    assert rec_rows([r[:5] for r in GEN.V1_ROWS]) == GEN.V1_REC_ROWS


@pytest.mark.parametrize("case", list(GEN.CASES))
def test_small_forms_equal_the_reference(case):
    keys, shapes = _keys_shapes(case)
    model = _lazy(OURS[case])
    weights = _load(model, keys, shapes)
    x = paddle.to_tensor(WEIGHTS.fixture_input(GEN.CASES[case][2]))
    with paddle.no_grad():
        model.train()
        for i, out in enumerate(_outs(model, x)):
            _close(out.numpy(), FIXTURE[f"{case}/train_out{i}"], 1e-5)
        model.set_state_dict({k: paddle.to_tensor(v) for k, v in model.filter_state_dict(weights).items()}
                             if hasattr(model, "filter_state_dict") else weights)  # BN statistics moved
        model.eval()
        outs = _outs(model, x)
        for i, out in enumerate(outs):
            _close(out.numpy(), FIXTURE[f"{case}/out{i}"], 1e-5)
        if f"{case}/fused_out0" in FIXTURE:
            ppbackbone.reparameterize(model)
            assert not ppbackbone.has_unfused_blocks(model)
            for i, out in enumerate(_outs(model, x)):
                _close(out.numpy(), FIXTURE[f"{case}/fused_out{i}"], 1e-4)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_full_presets_equal_the_reference(preset):
    """Keys in order and shapes (nothing missing or unexpected when a PaddleOCR checkpoint's backbone loads),
    the parameter count, and the outputs' spatial means for the same weights."""
    keys, shapes = _keys_shapes(preset)
    model = _lazy(PRESETS[preset])
    if preset in KEYS_ONLY:
        assert list(model.state_dict()) == keys
        assert [tuple(int(d) for d in v.shape) for v in model.state_dict().values()] == shapes
        return
    _load(model, keys, shapes)
    n_prealloc = sum(int(np.prod(s)) for k, s in zip(keys, shapes) if k in _preallocated(keys))
    assert ppbackbone.count_params(model) == int(FIXTURE[f"{preset}/num_params"]) - n_prealloc
    model.eval()
    with paddle.no_grad():
        outs = _outs(model, paddle.to_tensor(WEIGHTS.fixture_input(GEN.PRESET_INPUT)))
    for i, out in enumerate(outs):
        out = out.numpy()
        means = out.mean(axis=(2, 3)) if out.ndim == 4 else out.mean(axis=1)
        _close(means, FIXTURE[f"{preset}/means{i}"], 1e-5)


def test_b7_is_paddleclas_b7_key_for_key():
    """PaddleClas 34d76a6d's PPHGNetV2_B7 (169M parameters): keys in order, shapes and count (built without
    initialising its weights; b7_blocks1 above checks the numerics of its rows)."""
    keys, shapes = _keys_shapes("hgnetv2_b7")
    model = _lazy(lambda: ppbackbone.create_model("hgnetv2_b7"))
    state = model.state_dict()
    assert list(state) == keys
    assert [tuple(int(d) for d in v.shape) for v in state.values()] == shapes
    assert ppbackbone.model_info("hgnetv2_b7").num_params == int(FIXTURE["hgnetv2_b7/num_params"]) == 169027176
