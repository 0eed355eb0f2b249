"""HGNet against the references with shared weights: PaddleClas 2.6.0's PPHGNetV2_B0..B6 and
PPHGNet_tiny/small/base (keys, shapes, ParamAttr, outputs), and the detection presets against the
same stage modules (paddledet 2.6.0 predates PPHGNetV2; its develop-branch layout is PaddleClas's
stem/stages without the head, which is what is compared here)."""
import numpy as np
import paddle
import pytest
from conftest import import_reference, randomize_state

import ppbackbone

V2 = [f"B{i}" for i in range(7)]
V1 = ["tiny", "small", "base"]
DET = {"s": "B1", "m": "B2", "l": "B4", "x": "B5", "h": "B6"}
TOL = 1e-5


def reference(name):
    if name.startswith("PPHGNetV2"):
        return getattr(import_reference("ppcls.arch.backbone.legendary_models.pp_hgnet_v2"), name)
    return getattr(import_reference("ppcls.arch.backbone.legendary_models.pp_hgnet"), name)


@pytest.fixture(scope="module")
def shared_input():
    return paddle.to_tensor(np.random.RandomState(7).randn(2, 3, 64, 64).astype("float32"))


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _load_reference_into(ours, ref, tmp_path):
    path = str(tmp_path / "reference.pdparams")
    paddle.save(ref.state_dict(), path)
    return ppbackbone.load_weights(ours, path, verbose=False)


@pytest.mark.parametrize("ref_name", [f"PPHGNetV2_{v}" for v in V2] + [f"PPHGNet_{v}" for v in V1])
def test_classifier_matches_paddleclas(ref_name, tmp_path, shared_input):
    ref = randomize_state(reference(ref_name)(), seed=11)
    ours = ppbackbone.create_model(ref_name)
    assert _shapes(ours) == _shapes(ref), "state-dict keys or shapes differ from PaddleClas"
    report = _load_reference_into(ours, ref, tmp_path)
    assert not (report.missing or report.unexpected or report.mismatched or report.head_skipped)
    ref.eval()
    ours.eval()
    expected, got = ref(shared_input).numpy(), ours(shared_input).numpy()
    assert float(np.abs(expected).max()) > 1e-2, "degenerate outputs would make the comparison void"
    assert float(np.abs(expected - got).max()) <= TOL
    assert ppbackbone.count_params(ours) == ppbackbone.model_info(ref_name).num_params


def test_param_attrs_match_paddleclas():
    """Per parameter: learning rate (lr_mult, LAB lr_mult*lab_lr) and regularizer as PaddleClas sets them."""
    lr_mults = [0.1, 0.2, 0.3, 0.4, 0.5]
    ref = reference("PPHGNetV2_B0")(lr_mult_list=lr_mults)
    ours = ppbackbone.create_model("hgnetv2_b0", lr_mult_list=lr_mults)
    ref_params = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        other = ref_params[name]
        assert param.optimize_attr["learning_rate"] == pytest.approx(other.optimize_attr["learning_rate"]), name
        assert (param.regularizer is None) == (other.regularizer is None), name
        if param.regularizer is not None:
            assert float(param.regularizer._coeff) == float(other.regularizer._coeff), name


@pytest.mark.parametrize("arch", sorted(DET))
def test_detection_preset_feature_maps(arch, tmp_path, shared_input):
    """hgnetv2_{s,m,l,x,h}: stride 4/8/16/32 maps equal the reference stages with the same weights."""
    ref = randomize_state(reference(f"PPHGNetV2_{DET[arch]}")(), seed=12)
    ours = ppbackbone.create_model(f"hgnetv2_{arch}", out_indices=[0, 1, 2, 3])
    report = _load_reference_into(ours, ref, tmp_path)
    assert not (report.missing or report.unexpected or report.mismatched)
    assert sorted(report.head_skipped) == sorted(k for k in ref.state_dict()
                                                 if k.startswith(("fc.", "last_conv.", "lab.")))
    ref.eval()
    ours.eval()
    x = ref.stem(shared_input)
    expected = []
    for stage in ref.stages:
        x = stage(x)
        expected.append(x.numpy())
    got = ours(shared_input)
    assert ours.out_strides == [4, 8, 16, 32]
    for e, g in zip(expected, got):
        assert float(np.abs(e - g.numpy()).max()) <= TOL


@pytest.mark.parametrize("arch", ["s", "m"])
def test_paddledetection_s_m_layout_is_use_lab_false(arch):
    """PaddleDetection's S/M leave use_lab False: use_lab=False gives its key set (B1/B2 minus LAB)."""
    ref_keys = {k for k in reference(f"PPHGNetV2_{DET[arch]}")().state_dict()
                if ".lab." not in k and not k.startswith(("fc.", "last_conv.", "lab."))}
    ours = ppbackbone.create_model(f"hgnetv2_{arch}", use_lab=False)
    assert set(ours.state_dict()) == ref_keys
