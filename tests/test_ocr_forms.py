"""PaddleOCR's forms of PP-HGNetV2 / PP-HGNet / PP-LCNet: native builders, outputs, weights and bad input.

Parity with PaddleOCR's own modules (keys, shapes, outputs) is in tests/test_ocr_forms_parity.py.
"""
import numpy as np
import paddle
import pytest

import ppbackbone
from ppbackbone.arch.native import build_native, native_names
from ppbackbone.errors import ConfigError, InputSizeError, UserError


def _ocr(name, **args):
    return build_native(name, host="PaddleOCR", **args)


def test_paddleocr_natives_are_listed_apart_from_paddledetection():
    assert {"PPHGNetV2_B4", "PPHGNet_small", "PPHGNetV2_B4_Formula", "PPHGNetV2_B6_Formula", "PPLCNet",
            "PPLCNetV2_base"} <= set(native_names(host="PaddleOCR"))
    assert "PPHGNetV2_B4" not in native_names()  # PaddleDetection's table
    # the registry alias keeps meaning PaddleClas's classifier
    assert ppbackbone.model_info("PPHGNetV2_B4").name == "hgnetv2_b4"


@pytest.mark.parametrize("name, args, preset, out_channels", [
    ("PPHGNetV2_B4", dict(det=True), "hgnetv2_b4_det", [128, 512, 1024, 2048]),
    ("PPHGNetV2_B4", dict(text_rec=True), "hgnetv2_b4_rec", 2048),
    ("PPHGNet_small", dict(det=True), "pphgnet_small_det", [256, 512, 768, 1024]),
    ("PPHGNet_small", dict(), "pphgnet_small_rec", 1024),
])
def test_native_forms_are_the_presets(name, args, preset, out_channels):
    """PaddleOCR's arguments (with the in_channels its builder adds) give the preset, key for key, and
    PaddleOCR's out_channels: a list for det, an int for rec."""
    model = _ocr(name, in_channels=3, **args)
    assert model.out_channels == out_channels
    assert list(model.state_dict()) == list(ppbackbone.create_model(preset).state_dict())


def test_rec_forms_pool_like_paddleocr(image):
    """Eval: avg_pool2d [3, 2] of the last map (48 high -> 1 row); training: adaptive pooling to [1, 40]."""
    model = ppbackbone.create_model("pphgnet_small_rec")
    x = paddle.to_tensor(np.random.RandomState(0).randn(1, 3, 48, 96).astype("float32"))
    model.eval()
    assert list(model(x).shape) == [1, 1024, 1, 12]  # last map 3 x 24
    model.train()
    assert list(model(x).shape) == [1, 1024, 1, 40]


@pytest.mark.parametrize("name", ["hgnetv2_b4_rec", "pphgnet_small_rec"])
def test_rec_input_too_low_for_the_pooling_is_refused(name):
    model = ppbackbone.create_model(name)
    model.eval()
    with pytest.raises(InputSizeError, match=r"last map is 2x8.*needs at least 3x2.*at least 33 pixels high"):
        model(paddle.zeros([1, 3, 32, 32]))


def test_unused_paddleocr_parameters_are_kept_trainable_and_declared(image):
    det, rec = ppbackbone.create_model("hgnetv2_b4_det"), ppbackbone.create_model("hgnetv2_b4_rec")
    assert "last_conv.weight" in det.state_dict() and "fc.weight" not in det.state_dict()
    assert {"last_conv.weight", "fc.weight", "fc.bias"} <= set(rec.state_dict())
    assert det.unused_param_prefixes == ("last_conv.",) and rec.unused_param_prefixes == ("last_conv.", "fc.")
    assert not rec.last_conv.weight.stop_gradient and not rec.fc.weight.stop_gradient  # as PaddleOCR's
    rec.train()
    paddle.mean(rec(image)).backward()
    assert rec.fc.weight.grad is None and rec.stem.stem1.conv.weight.grad is not None


@pytest.mark.parametrize("classifier, det, head", [
    ("hgnetv2_b4", "hgnetv2_b4_det", ["fc.bias", "fc.weight"]),
    ("pphgnet_small", "pphgnet_small_det", ["fc.bias", "fc.weight", "last_conv.weight"]),
])
def test_paddleclas_classifier_weights_load_into_the_det_form(tmp_path, classifier, det, head):
    """Same layout: everything loads, the classifier's head is skipped, nothing missing."""
    path = str(tmp_path / "w.pdparams")
    paddle.save(ppbackbone.create_model(classifier).state_dict(), path)
    report = ppbackbone.load_weights(ppbackbone.create_model(det), path, verbose=False)
    assert not report.missing and not report.unexpected
    assert sorted(report.head_skipped) == head


@pytest.mark.parametrize("source, target, match", [
    ("hgnetv2_b4_det", "hgnetv2_b4_rec", r"has no stages\.0\.downsample\.conv\.weight.*det/classifier form"),
    ("hgnetv2_b4_rec", "hgnetv2_b4_det", r"has stages\.0\.downsample\.conv\.weight.*PaddleOCR's rec form"),
    ("pphgnet_small_rec", "pphgnet_small", r"PaddleOCR's rec form.*pphgnet_small"),
])
def test_checkpoint_of_another_form_is_refused(tmp_path, source, target, match):
    path = str(tmp_path / "w.pdparams")
    paddle.save({f"backbone.{k}": v for k, v in ppbackbone.create_model(source).state_dict().items()}, path)
    with pytest.raises(ConfigError, match=match):
        ppbackbone.load_weights(ppbackbone.create_model(target), path, verbose=False)


def test_checkpoint_of_another_size_is_refused(tmp_path):
    path = str(tmp_path / "w.pdparams")
    paddle.save(ppbackbone.create_model("hgnetv2_b4_rec", use_last_conv=False).state_dict(), path)
    small = ppbackbone.create_model("pphgnet_small_rec")
    with pytest.raises(UserError, match="pphgnet_small_rec"):
        ppbackbone.load_weights(small, path, verbose=False)


@pytest.mark.parametrize("name, args, match", [
    ("PPHGNetV2_B4", dict(), r"det=False, text_rec=False; ppbackbone builds its two forms"),
    ("PPHGNetV2_B4", dict(det=True, text_rec=True), r"det=True, text_rec=True"),
    ("PPHGNetV2_B4", dict(det=True, in_channels=1), r"in_channels=1.*3 \(RGB\)"),
    ("PPHGNetV2_B4", dict(text_rec=True, out_indices=[3]), r"out_indices=\[3\] has no effect in the text_rec form"),
    ("PPHGNetV2_B4", dict(det=True, pretrained=True), r"native argument pretrained=True of PPHGNetV2_B4"),
    ("PPHGNetV2_B4", dict(det=True, model_size="tiny"), r"no argument\(s\) \['model_size'\]"),
    ("PPHGNet_small", dict(out_indices=[1]), r"out_indices=\[1\] has no effect in the rec form"),
    ("PPLCNetV2_base", dict(out_indx=[0, 1], pretrained=False), r"out_indx=\[0, 1\]; it numbers the stages 1\.\.4"),
    ("PPLCNet", dict(scale=0.6, pretrained=True), r"scale=0\.6; PaddleClas publishes weights for scales"),
    ("PPLCNet", dict(scale=0.35, pretrained=True, use_ssld=True), r"no SSLD weights for scale 0\.35"),
    ("PPHGNetV2_B5", dict(), r"'PPHGNetV2_B5' is not a PaddleOCR backbone class that ppbackbone builds.*Did you mean: PPHGNetV2_B4"),
])
def test_native_bad_arguments_name_the_value_and_what_fits(name, args, match):
    with pytest.raises(ConfigError, match=match):
        _ocr(name, **args)


def test_form_argument_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match=r"ocr_form='text' is not supported; allowed: None, 'det', 'rec', 'map'"):
        ppbackbone.create_model("hgnetv2_b4", ocr_form="text")
    with pytest.raises(ValueError, match=r"hgnetv2_b4_det has ocr_form='det', fixed by its name; got ocr_form='rec'"):
        ppbackbone.create_model("hgnetv2_b4_det", ocr_form="rec")


def test_formula_encoder_output_and_training_tuple():
    model = _ocr("PPHGNetV2_B4_Formula", class_num=16)
    assert model.out_channels == 2048 and model.pphgnet_b4.fc.weight.shape == [2048, 16]
    model.eval()
    out = model(paddle.zeros([1, 1, 64, 64]))  # one channel: repeated to three
    assert list(out.last_hidden_state.shape) == [1, 4, 2048]
    assert out[0] is out["last_hidden_state"]
    model.train()
    label, mask = paddle.zeros([1, 4]), paddle.ones([1, 4])
    out, label_out, mask_out = model((paddle.zeros([1, 3, 64, 64]), label, mask))
    assert label_out is label and mask_out is mask and list(out[0].shape) == [1, 4, 2048]


# ------------------------------------------------------------------------------------------------ export
# The presets' code paths at small widths (the rows of tests/fixtures/make_ocr_forms_fixture.py).
TINY_V2_REC = dict(stem_channels=[3, 8, 8], class_expand=32, stage_config=[
    [8, 8, 16, 1, True, False, 3, 2, [2, 1]], [16, 8, 32, 1, True, False, 3, 2, [1, 2]],
    [32, 16, 64, 2, True, True, 5, 2, [2, 1]], [64, 16, 64, 1, True, True, 5, 2, [2, 1]]])
TINY_V1_DET = dict(stem_channels=[8, 8, 16], layer_num=2, stage_config=[
    [16, 8, 16, 1, False], [16, 8, 32, 1, True], [32, 16, 48, 2, True], [48, 16, 64, 1, True]])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("arch, shape, spec, other", [
    (dict(name="hgnetv2_b4_rec", **TINY_V2_REC), [3, 48, 96], [-1, 3, 48, -1], [2, 3, 48, 160]),
    (dict(name="pphgnet_small_det", **TINY_V1_DET), [3, 64, 64], [-1, 3, -1, -1], [2, 3, 96, 128]),
])
def test_ocr_forms_export_with_paddleocrs_input_specs(tmp_path, arch, shape, spec, other):
    """rec: [None, 3, 48, -1] (any width), det: [None, 3, -1, -1], as PaddleOCR's exporter; the export verifies
    itself at Global.image_shape, and Paddle Inference runs it again at another size against dygraph."""
    from conftest import randomize_state
    from ppbackbone.deploy.export import export_model
    from ppbackbone.deploy.predictor import Predictor
    config = {"Arch": arch, "Global": {"image_shape": shape}}
    model = randomize_state(ppbackbone.create_model(**arch), seed=1)
    weights = ppbackbone.save_weights(model, str(tmp_path / "w.safetensors"))
    result = export_model(config, save_dir=str(tmp_path / "export"), weights=weights, latency_runs=0,
                          log=lambda *a: None)
    assert result.inference_config["Input"]["shape"] == spec
    batch = np.random.RandomState(4).standard_normal(other).astype("float32")
    model.eval()
    with paddle.no_grad():
        expected = model(paddle.to_tensor(batch))
    expected = [t.numpy() for t in (expected if isinstance(expected, list) else [expected])]
    got = list(Predictor(str(tmp_path / "export"), threads=2).run(batch).values())
    for a, b in zip(expected, got):
        assert a.shape == b.shape
        assert float(np.abs(a - b).max()) <= 1e-4 * max(1.0, float(np.abs(a).max()))
