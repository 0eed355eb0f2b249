"""Native PaddleDetection sections without PaddleDetection: PPHGNetV2 against a fixture made from
PaddleDetection develop's own class (tests/fixtures/make_pphgnetv2_det_fixture.py), the native table's
errors, the PaddleDetection checkout finder and the _BASE_-chain check of tools/ppdet_run.py."""
import importlib.util
import os

import numpy as np
import paddle
import pytest

from ppbackbone.arch.native import build_native, native_names
from ppbackbone.ppdet.config import PPDetSetupError, check_backbone_sections, resolve_config
from ppbackbone.ppdet.runner import find_ppdet_root, parse_args

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _generator():
    spec = importlib.util.spec_from_file_location("make_pphgnetv2_det_fixture",
                                                  os.path.join(FIXTURES, "make_pphgnetv2_det_fixture.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.fixture(scope="module")
def fixture():
    return dict(np.load(os.path.join(FIXTURES, "pphgnetv2_paddledet.npz")))


@pytest.mark.parametrize("case", list(GEN.CASES))
def test_native_pphgnetv2_section_is_paddledetections_backbone(fixture, case):
    """Keys in order, shapes, learning rates, regularizers, stop_gradient, trainable, frozen norms and
    out_shape equal PaddleDetection develop's PPHGNetV2 built from the same section."""
    model = build_native("PPHGNetV2", **GEN.CASES[case])
    ours = GEN.describe(model)
    for name in ("keys", "shapes", "lr", "reg", "stop_gradient", "trainable", "global_stats"):
        theirs = fixture[f"{case}/{name}"]
        assert ours[name].tolist() == theirs.tolist(), f"{case}: {name} differs"
    assert [s.channels for s in model.out_shape] == fixture[f"{case}/out_channels"].tolist()
    assert [s.stride for s in model.out_shape] == fixture[f"{case}/out_strides"].tolist()


def test_native_pphgnetv2_forward_equals_paddledetection(fixture):
    model = build_native("PPHGNetV2", **GEN.FORWARD)
    state = model.state_dict()
    weights = GEN.fixture_weights(list(state), [v.shape for v in state.values()])
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in weights.items()})
    model.eval()
    with paddle.no_grad():
        outs = model({"image": paddle.to_tensor(fixture["forward/input"])})
    assert len(outs) == 4
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out.numpy(), fixture[f"forward/out{i}"], rtol=1e-5, atol=1e-5)


def test_native_s_m_default_to_use_lab_false_while_our_names_keep_lab():
    from ppbackbone import create_model
    native_s = build_native("PPHGNetV2", arch="S")
    assert native_s.use_lab is False and not any(".lab." in k for k in native_s.state_dict())
    assert create_model("hgnetv2_s").use_lab is True  # ppbackbone's name keeps B1's LAB (documented)
    lab_s = build_native("PPHGNetV2", arch="S", use_lab=True)
    assert list(lab_s.state_dict()) == list(create_model("hgnetv2_s").state_dict())


@pytest.mark.parametrize("name, args, match", [
    ("PPHGNetV2", dict(), "PPHGNetV2 needs arch"),
    ("PPHGNetV2", dict(arch="l"), "arch='l' is not one of PaddleDetection's archs S, M, L, X, H"),
    ("PPHGNetV2", dict(arch="L", out_indices=[1]),
     r"PPHGNetV2 \(PaddleDetection\) has no argument\(s\) \['out_indices'\]"),
    ("CSPResNet", dict(use_checkpoint=True), "native argument use_checkpoint=True of CSPResNet is not supported"),
    ("CSPResNet", dict(freeze_at=0), r"CSPResNet \(PaddleDetection\) has no argument\(s\) \['freeze_at'\]"),
    ("LCNet", dict(act="hardswish"), "LCNet act='hardswish'; PaddleDetection's LCNet builds only"),
])
def test_native_argument_errors_name_the_argument_and_class(name, args, match):
    with pytest.raises(ValueError, match=match):
        build_native(name, **args)


def test_native_table_lists_the_three_families():
    assert {"PPHGNetV2", "CSPResNet", "LCNet"} <= set(native_names())


# ---------------------------------------------------------------------------- finding PaddleDetection
def _checkout(root):
    os.makedirs(root / "ppdet")
    (root / "ppdet" / "__init__.py").write_text("")
    os.makedirs(root / "tools")
    (root / "tools" / "train.py").write_text("")
    return str(root)


def test_checkout_is_found_from_the_tool_path(tmp_path):
    root = _checkout(tmp_path / "PaddleDetection")
    assert find_ppdet_root(os.path.join(root, "tools", "train.py"), environ={}) == root


def test_explicit_root_and_env_are_checked_and_named(tmp_path):
    root = _checkout(tmp_path / "pd")
    elsewhere = tmp_path / "script.py"
    elsewhere.write_text("")
    assert find_ppdet_root(str(elsewhere), environ={"PADDLEDET_HOME": root}) == root
    assert find_ppdet_root(str(elsewhere), ppdet_root=root, environ={}) == root
    with pytest.raises(PPDetSetupError,
                       match=r"--ppdet-root=.*not a PaddleDetection checkout: .*ppdet/__init__.py not found"):
        find_ppdet_root(str(elsewhere), ppdet_root=str(tmp_path), environ={})
    with pytest.raises(PPDetSetupError, match=r"PADDLEDET_HOME=.*nope: no such directory"):
        find_ppdet_root(str(elsewhere), environ={"PADDLEDET_HOME": str(tmp_path / "nope")})


def test_tool_path_must_exist(tmp_path):
    with pytest.raises(PPDetSetupError, match="tool script not found: .*train.py"):
        parse_args([str(tmp_path / "train.py"), "-c", "x.yml"])
    root = _checkout(tmp_path / "pd")
    assert parse_args(["--ppdet-root", root, os.path.join(root, "tools", "train.py"), "-c", "x.yml"])[0] == root


# ---------------------------------------------------------------------------- config chains
def _write(path, text):
    path.write_text(text)
    return str(path)


def test_changing_model_refuses_a_base_lr_mult_list(tmp_path):
    _write(tmp_path / "base.yml", "PPBackbone:\n  model: hgnetv2_l\n  return_idx: [1, 2, 3]\n"
                                  "  lr_mult_list: [0., 0.05, 0.05, 0.05, 0.05]\n")
    child = _write(tmp_path / "child.yml", "_BASE_: ['base.yml']\nPPBackbone:\n  model: cspresnet_s\n")
    with pytest.raises(PPDetSetupError, match=r"changes from 'hgnetv2_l' .* to 'cspresnet_s' .* would inherit "
                                              r"lr_mult_list=\[0.0, 0.05"):
        check_backbone_sections(child)
    fixed = _write(tmp_path / "fixed.yml", "_BASE_: ['base.yml']\nPPBackbone:\n  model: cspresnet_s\n"
                                           "  lr_mult_list: ~\n")
    assert check_backbone_sections(fixed) == {"model": "cspresnet_s", "return_idx": [1, 2, 3], "lr_mult_list": None}
    same = _write(tmp_path / "same.yml", "_BASE_: ['base.yml']\nPPBackbone:\n  freeze_at: -1\n")
    assert check_backbone_sections(same)["lr_mult_list"] == [0.0, 0.05, 0.05, 0.05, 0.05]


def test_shipped_config_bases_resolve_against_the_checkout(tmp_path):
    root = _checkout(tmp_path / "pd")
    os.makedirs(os.path.join(root, "configs", "rtdetr", "_base_"))
    _write(tmp_path / "pd" / "configs" / "rtdetr" / "_base_" / "a.yml", "x: 1\n")
    os.makedirs(tmp_path / "ours" / "rtdetr")
    ours = _write(tmp_path / "ours" / "rtdetr" / "r.yml", "_BASE_: [\n  '_base_/a.yml',\n]\nPPBackbone:\n  model: x\n")
    out = resolve_config(ours, root, str(tmp_path / "out"))
    assert os.path.basename(out) == "r.yml" and out != ours
    text = open(out).read()
    assert os.path.join(root, "configs", "rtdetr", "_base_", "a.yml") in text and "PPBackbone:" in text
    with pytest.raises(PPDetSetupError, match=r"_BASE_ '_base_/a.yml' not found; looked at"):
        resolve_config(ours, None, str(tmp_path / "out"))
