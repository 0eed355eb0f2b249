"""The export-directory format (ppbackbone.deploy.export_dir): inference.yml in PaddleClas's/PaddleX's layout,
old format_version 1 directories, official PaddleClas/PaddleX directories, PaddleX model names, and
PaddleX itself reading our export (when the `paddlex` package is installed).

Inputs are 64x64 and classifiers have 10 classes.
"""
import importlib.metadata
import os
import shutil

import numpy as np
import paddle
import pytest
import yaml
from conftest import IMAGE_SIZE, randomize_state
from PIL import Image

import ppbackbone
from ppbackbone.data.transforms import build_transforms
from ppbackbone.deploy.export import ExportError, export_model
from ppbackbone.deploy.export_dir import (INFERENCE_YML, ModelDirError, check_paddlex_name, from_paddlex_ops, read_export,
                                   to_paddlex_ops)
from ppbackbone.deploy.predictor import Predictor

SHAPE = [3, IMAGE_SIZE, IMAGE_SIZE]
LABELS = [f"class_{i}" for i in range(10)]
# The quickstart's Eval ops at the test size (cv2 bilinear: PaddleX spells it LINEAR).
EVAL_OPS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
            {"ResizeImage": {"resize_short": IMAGE_SIZE + 8, "interpolation": "bilinear"}},
            {"CropImage": {"size": IMAGE_SIZE}},
            {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "order": ""}}]


def _quiet(*args):
    pass


def _images(folder, count=3):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(7)
    paths = []
    for i in range(count):
        pixels = rng.randint(0, 256, (70 + 5 * i, 90, 3), dtype=np.uint8)
        pixels[5:40, 10 + 6 * i:60, i % 3] = 255
        paths.append(os.path.join(folder, f"im{i}.jpg"))
        Image.fromarray(pixels).save(paths[-1], quality=95)
    return paths


def _config(tmp_path, labels=True):
    config = {"Arch": {"name": "hgnetv2_b0", "class_num": 10}, "Global": {"image_shape": SHAPE},
              "DataLoader": {"Eval": {"dataset": {"transform_ops": EVAL_OPS}}}}
    if labels:
        label_file = tmp_path / "labels.txt"
        label_file.write_text("".join(f"{i} {name}\n" for i, name in enumerate(LABELS)))
        config["Infer"] = {"PostProcess": {"name": "Topk", "topk": 3, "class_id_map_file": str(label_file)}}
    return config


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    model = ppbackbone.create_model("hgnetv2_b0", num_classes=10)
    randomize_state(model, 0)
    with paddle.no_grad():  # a small head keeps the scores apart from 0 and 1, so that their order means something
        model.fc.weight.set_value(model.fc.weight * 0.002)
    return ppbackbone.save_weights(model, str(tmp_path_factory.mktemp("w") / "b0.safetensors"))


# ------------------------------------------------------------------------------------------------ PaddleX names
def test_paddlex_names_fit_the_model_or_are_refused(tmp_path, weights):
    assert check_paddlex_name("hgnetv2_b0", None) == "PP-HGNetV2-B0"
    assert check_paddlex_name("pplcnetv2_base", None) == "PP-LCNetV2_base"
    assert check_paddlex_name("pplcnet_x1_0", "PP-LCNet_x1_0_doc_ori") == "PP-LCNet_x1_0_doc_ori"  # a task model
    assert check_paddlex_name("hgnetv2_b0", "none") is None and check_paddlex_name("hgnetv2_l", None) is None
    with pytest.raises(ValueError, match=r"--paddlex-name=PP-HGNetV2-B4 does not fit hgnetv2_b0: expected "
                                         r"PP-HGNetV2-B0 or a PaddleX task model of it"):
        check_paddlex_name("hgnetv2_b0", "PP-HGNetV2-B4")
    with pytest.raises(ValueError, match=r"=PP-HGNetV2-B0 does not fit vanillanet_5: expected none "
                                         r"\(vanillanet_5 has no PaddleX model\)"):
        check_paddlex_name("vanillanet_5", "PP-HGNetV2-B0")
    save_dir = tmp_path / "out"
    with pytest.raises(ExportError, match="PP-LCNet_x1_0 does not fit hgnetv2_b0"):
        export_model(_config(tmp_path), save_dir=str(save_dir), weights=weights, paddlex_name="PP-LCNet_x1_0",
                     log=_quiet)
    assert not save_dir.exists()


# ------------------------------------------------------------------------------------------------ transform ops
def test_ops_in_paddlex_spelling_build_the_same_preprocessing(tmp_path):
    written = to_paddlex_ops(EVAL_OPS + [{"ToCHWImage": None}])
    assert written == [{"ResizeImage": {"resize_short": IMAGE_SIZE + 8, "interpolation": "LINEAR"}},
                       {"CropImage": {"size": IMAGE_SIZE}},
                       {"NormalizeImage": {"scale": 1.0 / 255.0, "mean": [0.485, 0.456, 0.406],
                                           "std": [0.229, 0.224, 0.225], "order": "", "channel_num": 3}},
                       {"ToCHWImage": None}]
    path = _images(str(tmp_path))[0]
    data = open(path, "rb").read()
    expected = build_transforms(EVAL_OPS + [{"ToCHWImage": None}])(data)
    np.testing.assert_array_equal(build_transforms(from_paddlex_ops(written))(data), expected)
    with pytest.raises(ValueError, match="DecodeImage .*to_rgb: True"):
        to_paddlex_ops([{"DecodeImage": {"to_rgb": False}}])
    with pytest.raises(ValueError, match="NormalizeImage order 'chw'.*order: ''"):
        to_paddlex_ops([{"NormalizeImage": {"order": "chw"}}])


# ------------------------------------------------------------------------------------------------ old and foreign dirs
def test_format_version_1_directory_still_reads(tmp_path, weights):
    """A directory written before format 2 (DecodeImage in PreProcess, PostProcess {name: Topk, softmax},
    logits out of the graph) predicts as the same model exported now."""
    current = str(tmp_path / "v2")
    export_model(_config(tmp_path), save_dir=current, weights=weights, softmax=False, latency_runs=0, log=_quiet)
    old = tmp_path / "v1"
    shutil.copytree(current, old)
    info = yaml.safe_load(open(old / INFERENCE_YML))
    info = {"format_version": 1, "Model": {k: v for k, v in info["Model"].items() if k != "softmax_in_graph"},
            "Input": info["Input"], "Outputs": info["Outputs"],
            "PreProcess": {"transform_ops": EVAL_OPS + [{"ToCHWImage": None}]},
            "PostProcess": {"name": "Topk", "topk": 3, "softmax": True, "label_list": LABELS}}
    (old / INFERENCE_YML).write_text(yaml.safe_dump(info))
    assert read_export(str(old)).format_version == 1
    images = _images(str(tmp_path / "img"))
    expected = Predictor(current, threads=2).predict(images)
    got = Predictor(str(old), threads=2).predict(images)
    for a, b in zip(expected, got):
        assert a["class_ids"] == b["class_ids"] and a["label_names"] == b["label_names"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6)
    info["format_version"] = 3
    (old / INFERENCE_YML).write_text(yaml.safe_dump(info))
    with pytest.raises(ModelDirError, match="format_version 3; this ppbackbone reads 1 to 2"):
        Predictor(str(old))


def _paddleclas_export(directory):
    """A directory as PaddleClas's exporter writes it, made from paddleclas 2.6.0's PPHGNetV2_B0:
    jit.save of the model + softmax (Arch.infer_add_softmax), and its inference.yml layout."""
    from ppbackbone.benchmarks.latency import build_reference
    paddle.seed(3)
    model = build_reference("PPHGNetV2_B0", class_num=10)
    randomize_state(model, 3)
    with paddle.no_grad():  # a small head keeps the scores apart from 0 and 1, so that their order means something
        model.fc.weight.set_value(model.fc.weight * 0.002)
    model.eval()
    graph = paddle.nn.Sequential(model, paddle.nn.Softmax(axis=-1))
    static = paddle.jit.to_static(graph, input_spec=[paddle.static.InputSpec([None] + SHAPE, "float32", "x")],
                                  full_graph=True)
    paddle.jit.save(static, os.path.join(directory, "inference"))
    infer_cfg = {"Global": {"model_name": "PP-HGNetV2-B0"},
                 "PreProcess": {"transform_ops": [
                     {"ResizeImage": {"resize_short": IMAGE_SIZE + 8}}, {"CropImage": {"size": IMAGE_SIZE}},
                     {"NormalizeImage": {"channel_num": 3, "mean": [0.485, 0.456, 0.406], "order": "",
                                         "scale": 0.00392156862745098, "std": [0.229, 0.224, 0.225]}},
                     {"ToCHWImage": None}]},
                 "PostProcess": {"Topk": {"topk": 5, "label_list": LABELS}}}
    with open(os.path.join(directory, INFERENCE_YML), "w") as f:
        yaml.dump(infer_cfg, f, default_flow_style=False, allow_unicode=True)
    return model, infer_cfg


def test_paddleclas_format_directory_runs_in_predictor(tmp_path):
    directory = str(tmp_path / "PP-HGNetV2-B0_infer")
    os.makedirs(directory)
    model, infer_cfg = _paddleclas_export(directory)
    predictor = Predictor(directory, threads=2)
    assert predictor.export.kind == "paddleclas" and predictor.mode == "classification"
    assert predictor.export.model_name == "PP-HGNetV2-B0" and predictor.softmax is False
    images = _images(str(tmp_path / "img"))
    results = predictor.predict(images)
    ops = build_transforms([{"DecodeImage": None}] + infer_cfg["PreProcess"]["transform_ops"])
    batch = np.stack([ops(open(p, "rb").read()) for p in images]).astype("float32")
    with paddle.no_grad():
        probs = paddle.nn.functional.softmax(model(paddle.to_tensor(batch)), axis=-1).numpy()
    for result, row in zip(results, probs):
        assert result["class_ids"] == [int(i) for i in np.argsort(-row, kind="stable")[:5]]
        np.testing.assert_allclose(result["scores"], row[result["class_ids"]], atol=1e-5)
        assert result["label_names"] == [LABELS[i] for i in result["class_ids"]]
    os.remove(os.path.join(directory, "inference.json"))
    with pytest.raises(ModelDirError, match="has inference.yml but none of inference.json, inference.pdmodel"):
        Predictor(directory)


# ------------------------------------------------------------------------------------------------ PaddleX
def _paddlex_missing():
    """Why PaddleX cannot run here, or None. It needs opencv-contrib-python and pypdfium2 beside it."""
    for dist in ("paddlex", "opencv-contrib-python", "pypdfium2"):
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return f"{dist} is not installed (PaddleX's check: pip install paddlex opencv-contrib-python pypdfium2)"
    return None


@pytest.mark.timeout(300)
@pytest.mark.skipif(_paddlex_missing() is not None, reason=str(_paddlex_missing()))
def test_paddlex_predicts_our_export_as_ppbackbone_does(tmp_path, weights):
    import paddlex
    save_dir = str(tmp_path / "b0")
    export_model(_config(tmp_path), save_dir=save_dir, weights=weights, latency_runs=0, log=_quiet)
    images = _images(str(tmp_path / "img"))
    ours = Predictor(save_dir, threads=2).predict(images)
    model = paddlex.create_model(model_name="PP-HGNetV2-B0", model_dir=save_dir, device="cpu")
    theirs = [dict(r) for r in model.predict(images, topk=3)]
    for a, b in zip(ours, theirs):
        assert np.ravel(b["class_ids"]).tolist() == a["class_ids"] and list(b["label_names"]) == a["label_names"]
        assert 0.05 < a["scores"][0] < 0.9  # probabilities (the graph's softmax), not saturated
        np.testing.assert_allclose(np.ravel(b["scores"]), a["scores"], atol=1e-4)
