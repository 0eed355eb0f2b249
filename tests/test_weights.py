"""load_weights / save_weights: formats, prefix stripping, head skipping, and refusals."""
import os

import numpy as np
import paddle
import pytest
from conftest import randomize_state

import ppbackbone
from ppbackbone.weights.io import download_weights, read_state_dict


@pytest.fixture(scope="module")
def b0():
    return randomize_state(ppbackbone.create_model("hgnetv2_b0", num_classes=10), seed=1)


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("suffix", [".safetensors", ".pdparams"])
def test_round_trip(tmp_path, b0, suffix, capsys):
    path = ppbackbone.save_weights(b0, str(tmp_path / ("w" + suffix)))
    assert path.endswith(suffix) and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    fresh = ppbackbone.create_model("hgnetv2_b0", num_classes=10)
    report = ppbackbone.load_weights(fresh, path)
    assert not report.missing and not report.unexpected and not report.mismatched
    for key, value in _state(b0).items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value)
    assert "loaded 275/275 tensors" in capsys.readouterr().out


def test_default_format_is_safetensors(tmp_path, b0):
    assert ppbackbone.save_weights(b0, str(tmp_path / "w")).endswith(".safetensors")


def test_paddleclas_style_prefix_without_suffix(tmp_path, b0):
    paddle.save(b0.state_dict(), str(tmp_path / "best_model.pdparams"))
    fresh = ppbackbone.create_model("hgnetv2_b0", num_classes=10)
    assert not ppbackbone.load_weights(fresh, str(tmp_path / "best_model")).missing


def test_backbone_prefix_of_a_detector_checkpoint_is_stripped(tmp_path, b0):
    state = {"backbone." + k: v for k, v in _state(b0).items() if not k.startswith(("fc.", "last_conv.", "lab."))}
    state["neck.conv.weight"] = np.zeros([2, 2], "float32")
    paddle.save(state, str(tmp_path / "det.pdparams"))
    det = ppbackbone.create_model("hgnetv2_b0", out_indices=[1, 2, 3])
    report = ppbackbone.load_weights(det, str(tmp_path / "det.pdparams"))
    assert not report.missing and not report.unexpected and report.ignored_prefix == 1


def test_classifier_weights_into_feature_mode_skip_the_head(tmp_path, b0):
    path = ppbackbone.save_weights(b0, str(tmp_path / "cls.safetensors"))
    det = ppbackbone.create_model("hgnetv2_b0", out_indices=[1, 2, 3])
    report = ppbackbone.load_weights(det, path)
    assert not report.missing and not report.unexpected
    assert sorted(report.head_skipped) == ["fc.bias", "fc.weight", "lab.bias", "lab.scale", "last_conv.weight"]


def test_head_of_another_size_is_skipped_with_one_line(tmp_path, b0, capsys):
    path = ppbackbone.save_weights(b0, str(tmp_path / "cls.safetensors"))
    other = ppbackbone.create_model("hgnetv2_b0", num_classes=3)
    report = ppbackbone.load_weights(other, path)
    assert sorted(report.head_skipped) == ["fc.bias", "fc.weight"]
    assert not report.mismatched and not report.missing
    assert "classifier head of another size skipped" in capsys.readouterr().out


def test_weights_of_another_architecture_are_refused(tmp_path, b0):
    path = ppbackbone.save_weights(b0, str(tmp_path / "b0.safetensors"))
    with pytest.raises(ValueError, match="another architecture"):
        ppbackbone.load_weights(ppbackbone.create_model("pphgnet_tiny"), path)


def test_weights_of_another_variant_with_other_shapes_are_refused(tmp_path):
    b1 = ppbackbone.create_model("hgnetv2_b1", num_classes=10)
    path = ppbackbone.save_weights(b1, str(tmp_path / "b1.safetensors"))
    with pytest.raises(ValueError, match="another shape|another architecture"):
        ppbackbone.load_weights(ppbackbone.create_model("hgnetv2_b0", num_classes=10), path)


def test_missing_and_corrupt_files_are_named(tmp_path):
    model = ppbackbone.create_model("hgnetv2_b0")
    with pytest.raises(FileNotFoundError, match="nope.pdparams"):
        ppbackbone.load_weights(model, str(tmp_path / "nope.pdparams"))
    corrupt = tmp_path / "corrupt.pdparams"
    corrupt.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="Could not read weights file .*corrupt.pdparams"):
        ppbackbone.load_weights(model, str(corrupt))
    corrupt_st = tmp_path / "corrupt.safetensors"
    corrupt_st.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        read_state_dict(str(corrupt_st))


def test_offline_url_names_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PPBACKBONE_HOME", str(tmp_path))
    url = "http://127.0.0.1:9/weights/PPHGNetV2_B0_ssld_stage1_pretrained.pdparams"
    expected = os.path.join(str(tmp_path), "weights", "PPHGNetV2_B0_ssld_stage1_pretrained.pdparams")
    with pytest.raises(RuntimeError, match="place it at " + expected.replace(".", r"\.")):
        download_weights(url)
    assert not os.path.exists(expected)


def test_cached_url_file_is_used(tmp_path, monkeypatch, b0):
    monkeypatch.setenv("PPBACKBONE_HOME", str(tmp_path))
    os.makedirs(tmp_path / "weights")
    paddle.save(b0.state_dict(), str(tmp_path / "weights" / "b0.pdparams"))
    model = ppbackbone.create_model("hgnetv2_b0", num_classes=10, pretrained="http://127.0.0.1:9/x/b0.pdparams")
    np.testing.assert_array_equal(model.fc.weight.numpy(), b0.fc.weight.numpy())
