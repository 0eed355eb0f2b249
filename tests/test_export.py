"""Export and deploy: export + reload + compare for one model of every registered family (Rep blocks
fused), inference.yml derived from the config and read back, the Predictor on image files written
here, and the refusals (no weights, wrong weights, corrupted export directory, bad input).

Inputs are 64x64; each export is verified inside export_model and compared again here.
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml
from conftest import IMAGE_SIZE, ROOT, randomize_state
from PIL import Image

import ppbackbone
from ppbackbone.config import load_config
from ppbackbone.data.transforms import build_transforms
from ppbackbone.deploy.export import DEFAULT_TOLERANCE, ExportError, export_model
from ppbackbone.deploy.export_dir import INFERENCE_YML, read_inference_config, write_inference_config
from ppbackbone.deploy.predictor import ImageError, ModelDirError, Predictor
from ppbackbone.deploy.staging import _check_save_dir, _publish

SHAPE = [3, IMAGE_SIZE, IMAGE_SIZE]


def _has(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


HAS_ONNX = all(_has(m) for m in ("paddle2onnx", "onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="paddle2onnx/onnx/onnxruntime not installed "
                                                     "(optional: pip install ppbackbone[onnx])")


def family_representatives():
    """The smallest registered model of each family: a new family is covered by registering it."""
    families = {}
    for name in ppbackbone.list_models():
        info = ppbackbone.model_info(name)
        families.setdefault(info.family or name, []).append(info)
    return sorted(min(infos, key=lambda i: (i.num_params or float("inf"), i.name)).name
                  for infos in families.values())


def _arch(name, **extra):
    info = ppbackbone.model_info(name)
    arch = {"name": name, **info.test_args, **extra}
    if info.default_args.get("out_indices") is None and "out_indices" not in arch:
        arch.setdefault("class_num", 10)
    return arch


def _weights_for(config, path, seed=0):
    """Random but non-trivial weights (BN statistics too) for the config's model, saved to `path`."""
    model = _build(config)
    randomize_state(model, seed)
    return ppbackbone.save_weights(model, path)


def _build(config):
    from ppbackbone.arch import build_model
    return build_model(config, pretrained=False)


def _dygraph_outputs(config, weights, batch):
    model = _build(config)
    ppbackbone.load_weights(model, weights, verbose=False)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(batch))
    return [t.numpy() for t in (out if isinstance(out, list) else [out])]


def _assert_close(expected, got):
    for a, b in zip(expected, got):
        assert a.shape == b.shape
        scale = max(1.0, float(np.abs(a).max()))
        assert float(np.abs(a - b).max()) <= DEFAULT_TOLERANCE * scale


def _quiet(*args):
    pass


def _write_images(folder, count=3, size=(80, 60)):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(1)
    paths = []
    for i in range(count):
        pixels = rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        pixels[10:40, 10 + 5 * i:50, i % 3] = 255  # some structure, different per image
        path = os.path.join(folder, f"img{i}.{'jpg' if i % 2 == 0 else 'png'}")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------ families
@pytest.mark.parametrize("name", family_representatives())
def test_export_reload_compare_every_family(name, tmp_path):
    """Export (fused) -> Paddle Inference reload -> same outputs as the unfused dygraph model (logits:
    the softmax is left out, so that the comparison is not flattened by it)."""
    config = {"Arch": _arch(name), "Global": {"image_shape": SHAPE}}
    weights = _weights_for(config, str(tmp_path / "w.safetensors"))
    result = export_model(config, save_dir=str(tmp_path / "export"), weights=weights, latency_runs=0, softmax=False,
                          log=_quiet)
    assert result.inference_config["Model"]["fused"] is True
    assert os.path.isfile(tmp_path / "export" / "inference.json")
    assert os.path.isfile(tmp_path / "export" / "inference.pdiparams")
    batch = np.random.RandomState(3).standard_normal([3] + SHAPE).astype("float32")
    expected = _dygraph_outputs(config, weights, batch)
    predictor = Predictor(str(tmp_path / "export"), threads=2)
    got = predictor.run(batch)
    assert list(got) == [o["name"] for o in result.inference_config["Outputs"]]
    _assert_close(expected, list(got.values()))
    # nothing but the export itself next to it (no temp dirs left behind)
    assert sorted(os.listdir(tmp_path)) == ["export", "w.safetensors"]


# ------------------------------------------------------------------------------------------------ one export
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """hgnetv2_b0 from its real config at 64x64 with a label file; ONNX too when installed."""
    root = tmp_path_factory.mktemp("export")
    labels = root / "labels.txt"
    labels.write_text("".join(f"{i} class_{i}\n" for i in range(10)))
    config = load_config(os.path.join(ROOT, "configs", "hgnetv2_b0.yaml"), [
        "Arch.class_num=10", f"Global.image_shape={SHAPE}",
        "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=73",
        f"DataLoader.Eval.dataset.transform_ops.2.CropImage.size={IMAGE_SIZE}",
        f"Infer.PostProcess.class_id_map_file={labels}", f"Global.save_inference_dir={root / 'model'}"])
    weights = _weights_for(config, str(root / "best_model.pdparams"))
    config["Global"]["pretrained_model"] = str(root / "best_model")  # a path prefix, as PaddleClas writes it
    result = export_model(config, onnx=HAS_ONNX, latency_runs=0, log=_quiet)
    return {"config": config, "weights": weights, "dir": str(root / "model"), "result": result, "root": root}


def test_inference_yml_is_derived_from_the_training_config(exported):
    info = read_inference_config(exported["dir"])
    config = exported["config"]
    # PaddleClas's/PaddleX's layout: the Eval ops after decoding, a numeric scale, channel_num.
    eval_ops = config["DataLoader"]["Eval"]["dataset"]["transform_ops"]
    assert [next(iter(op)) for op in eval_ops] == ["DecodeImage", "ResizeImage", "CropImage", "NormalizeImage"]
    resize = dict(eval_ops[1]["ResizeImage"], interpolation="BICUBIC")  # PaddleX's spelling (bicubic + pil)
    normalize = dict(eval_ops[3]["NormalizeImage"], scale=1.0 / 255.0, channel_num=3)
    assert info["PreProcess"]["transform_ops"] == [{"ResizeImage": resize}, eval_ops[2],
                                                   {"NormalizeImage": normalize}, {"ToCHWImage": None}]
    assert info["Global"] == {"model_name": "PP-HGNetV2-B0"} and info["format_version"] == 2
    assert info["Input"] == {"name": "x", "shape": [-1] + SHAPE, "dtype": "float32", "layout": "NCHW",
                             "channel_order": "RGB"}
    assert info["Model"]["name"] == "hgnetv2_b0" and info["Model"]["fused"] is True
    assert info["Model"]["weights"].endswith("best_model.pdparams") and len(info["Model"]["weights_sha256"]) == 64
    assert info["PostProcess"] == {"Topk": {"topk": 5, "label_list": [f"class_{i}" for i in range(10)]}}
    assert info["Model"]["softmax_in_graph"] is True and info["Outputs"] == [{"name": "probs"}]
    assert info["Versions"]["paddle"] == paddle.__version__
    assert info["Versions"]["ppbackbone"] == ppbackbone.__version__
    assert info["Verification"]["paddle_inference_max_rel_diff"] <= DEFAULT_TOLERANCE


def test_inference_yml_round_trip(exported, tmp_path):
    info = read_inference_config(exported["dir"])
    write_inference_config(info, str(tmp_path / INFERENCE_YML))
    assert read_inference_config(str(tmp_path)) == info


def test_predictor_on_image_files_matches_training_preprocessing(exported, tmp_path):
    paths = _write_images(str(tmp_path / "images"))
    predictor = Predictor(exported["dir"], threads=2, topk=3)
    results = predictor.predict(paths)
    # The same images through the training-side transforms and the dygraph model.
    ops = build_transforms(exported["config"]["DataLoader"]["Eval"]["dataset"]["transform_ops"] + ["ToCHWImage"])
    batch = np.stack([ops(open(p, "rb").read()) for p in paths]).astype("float32")
    logits = _dygraph_outputs(exported["config"], exported["weights"], batch)[0]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for result, row in zip(results, probs):
        assert result["class_ids"] == [int(i) for i in np.argsort(-row, kind="stable")[:3]]
        np.testing.assert_allclose(result["scores"], row[result["class_ids"]], atol=1e-4)
        assert result["label_names"] == [f"class_{i}" for i in result["class_ids"]]
    # one path, bytes and a decoded array give the same answer
    with open(paths[0], "rb") as f:
        data = f.read()
    array = np.asarray(Image.open(paths[0]).convert("RGB"))
    for single in (paths[0], data, array):
        assert predictor.predict(single)[0]["class_ids"] == results[0]["class_ids"]


@needs_onnx
def test_onnxruntime_predictor_agrees_with_paddle(exported, tmp_path):
    assert os.path.isfile(os.path.join(exported["dir"], "inference.onnx"))
    batch = np.random.RandomState(5).standard_normal([2] + SHAPE).astype("float32")
    paddle_out = Predictor(exported["dir"], threads=2).run(batch)["probs"]
    onnx_out = Predictor(exported["dir"], threads=2, runtime="onnxruntime").run(batch)["probs"]
    _assert_close([paddle_out], [onnx_out])


def test_infer_tool_prints_each_image_and_reports_unreadable_ones(exported, tmp_path, capsys):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import infer
    finally:
        sys.path.pop(0)
    folder = tmp_path / "images"
    paths = _write_images(str(folder), count=2)
    (folder / "broken.jpg").write_bytes(b"not an image")
    code = infer.main(["--model_dir", exported["dir"], "--image", str(folder), "--topk", "2"])
    out, err = capsys.readouterr()
    assert code == 3  # finished, some inputs skipped (ppbackbone.cli.EXIT_PARTIAL)
    assert "broken.jpg" in err and "Could not read image" in err and "1 of 3 images could not be read" in err
    for path in paths:
        assert f"{path}: " in out and "(class_" in out


def test_unreadable_and_missing_images_are_clear_errors(exported, tmp_path):
    predictor = Predictor(exported["dir"], threads=2)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(ImageError, match="bad.png"):
        predictor.predict(str(bad))
    with pytest.raises(ImageError, match="missing.jpg"):
        predictor.predict(str(tmp_path / "missing.jpg"))


# ------------------------------------------------------------------------------------------------ feature mode
def test_feature_mode_export_has_named_outputs(tmp_path):
    config = {"Arch": {"name": "hgnetv2_b0", "out_indices": [1, 3]}, "Global": {"image_shape": SHAPE}}
    weights = _weights_for(config, str(tmp_path / "w.pdparams"))
    result = export_model(config, save_dir=str(tmp_path / "feat"), weights=weights, latency_runs=0, log=_quiet)
    outputs = result.inference_config["Outputs"]
    assert [o["name"] for o in outputs] == ["stage1", "stage3"]
    assert [o["stride"] for o in outputs] == [8, 32]
    predictor = Predictor(str(tmp_path / "feat"), threads=2)
    assert predictor.backend.output_names == ["stage1", "stage3"]  # the names Paddle Inference shows
    images = _write_images(str(tmp_path / "images"), count=1)
    (features,) = predictor.predict(images)
    assert {k: v.shape[0] for k, v in features.items()} == {"stage1": outputs[0]["channels"],
                                                          "stage3": outputs[1]["channels"]}
    assert features["stage1"].shape[1:] == (IMAGE_SIZE // 8, IMAGE_SIZE // 8)
    batch = np.random.RandomState(2).standard_normal([2] + SHAPE).astype("float32")
    _assert_close(_dygraph_outputs(config, weights, batch), list(predictor.run(batch).values()))


# ------------------------------------------------------------------------------------------------ refusals
def _small_config(tmp_path, **global_keys):
    return {"Arch": {"name": "hgnetv2_b0", "class_num": 10}, "Global": {"image_shape": SHAPE, **global_keys}}


def _nothing_written(tmp_path, save_dir):
    assert not os.path.exists(save_dir)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], "a temp dir was left behind"


def test_export_without_weights_is_refused_and_names_the_flag(tmp_path, capsys):
    save_dir = str(tmp_path / "out")
    with pytest.raises(ExportError, match=r"Global\.pretrained_model.*--random-weights"):
        export_model(_small_config(tmp_path), save_dir=save_dir, log=_quiet)
    _nothing_written(tmp_path, save_dir)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import export as export_tool
    finally:
        sys.path.pop(0)
    from ppbackbone.cli import main_guard
    code = main_guard(export_tool.main, ["-c", os.path.join(ROOT, "configs", "hgnetv2_b0.yaml"),
                                         "-o", f"Global.save_inference_dir={save_dir}"])
    err = capsys.readouterr().err
    assert code == 2 and "Error: " in err and "Global.pretrained_model" in err and "Traceback" not in err
    _nothing_written(tmp_path, save_dir)


def test_weights_of_another_model_missing_file_and_head_size_are_refused(tmp_path):
    save_dir = str(tmp_path / "out")
    other = _weights_for({"Arch": {"name": "pphgnet_tiny", "class_num": 10}}, str(tmp_path / "tiny.pdparams"))
    with pytest.raises(ExportError, match="another architecture"):
        export_model(_small_config(tmp_path), save_dir=save_dir, weights=other, log=_quiet)
    with pytest.raises(ExportError, match="not found"):
        export_model(_small_config(tmp_path, pretrained_model=str(tmp_path / "nope.pdparams")),
                     save_dir=save_dir, log=_quiet)
    head5 = _weights_for({"Arch": {"name": "hgnetv2_b0", "class_num": 5}}, str(tmp_path / "b0_5.pdparams"))
    with pytest.raises(ExportError, match=r"Arch\.class_num"):
        export_model(_small_config(tmp_path), save_dir=save_dir, weights=head5, log=_quiet)
    _nothing_written(tmp_path, save_dir)


def test_preprocessing_that_disagrees_with_the_input_shape_is_refused(tmp_path):
    config = load_config(os.path.join(ROOT, "configs", "hgnetv2_b0.yaml"),
                         ["Arch.class_num=10", f"Global.image_shape={SHAPE}"])  # Eval crops 224
    weights = _weights_for(config, str(tmp_path / "w.pdparams"))
    save_dir = str(tmp_path / "out")
    with pytest.raises(ExportError, match=r"produces \[3, 224, 224\].*Global.image_shape"):
        export_model(config, save_dir=save_dir, weights=weights, log=_quiet)
    _nothing_written(tmp_path, save_dir)


def test_missing_optional_dependencies_and_unknown_runtime(exported, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="Unknown runtime 'tensorrt'; allowed: auto, paddle, onnxruntime, openvino"):
        Predictor(exported["dir"], runtime="tensorrt")
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # import fails as if not installed
    save_dir = str(tmp_path / "out")
    with pytest.raises(ExportError, match="pip install paddle2onnx"):
        export_model(_small_config(tmp_path), save_dir=save_dir, allow_random_weights=True, onnx=True, log=_quiet)
    _nothing_written(tmp_path, save_dir)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        Predictor(exported["dir"], runtime="onnxruntime")


def test_corrupted_model_dir_gives_a_clear_error(exported, tmp_path):
    with pytest.raises(ModelDirError, match="does not exist"):
        Predictor(str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    shutil.copytree(exported["dir"], broken)
    os.remove(broken / INFERENCE_YML)
    with pytest.raises(ModelDirError, match="no inference.yml.*tools/export.py"):
        Predictor(str(broken))
    shutil.copy(os.path.join(exported["dir"], INFERENCE_YML), broken / INFERENCE_YML)
    program = (broken / "inference.json").read_bytes()
    (broken / "inference.json").write_bytes(program[: len(program) // 3])
    with pytest.raises(ModelDirError, match="corrupted or incomplete"):
        Predictor(str(broken))
    (broken / "inference.json").write_bytes(program)
    params = (broken / "inference.pdiparams").read_bytes()
    (broken / "inference.pdiparams").write_bytes(params[: len(params) // 2])
    with pytest.raises(ModelDirError, match="corrupted or incomplete"):
        Predictor(str(broken))
    os.remove(broken / "inference.pdiparams")
    with pytest.raises(ModelDirError, match="inference.pdiparams is missing"):
        Predictor(str(broken))
    (broken / INFERENCE_YML).write_text("Model: [unclosed")
    with pytest.raises(ModelDirError, match="not valid YAML"):
        Predictor(str(broken))


def test_save_dir_holding_other_files_is_refused_and_previous_export_replaced(tmp_path):
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an export"):
        _check_save_dir(str(foreign))
    previous = tmp_path / "model"
    previous.mkdir()
    (previous / INFERENCE_YML).write_text("old")
    (previous / "stale.onnx").write_text("old")
    _check_save_dir(str(previous))
    fresh = tmp_path / ".model.tmp-x"
    fresh.mkdir()
    (fresh / INFERENCE_YML).write_text("new")
    _publish(str(fresh), str(previous))
    assert os.listdir(previous) == [INFERENCE_YML] and (previous / INFERENCE_YML).read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["model", "project"]


def test_legacy_pdmodel_export(tmp_path):
    """Paddle started with FLAGS_enable_pir_api=0 writes inference.pdmodel; the Predictor reads it."""
    save_dir = str(tmp_path / "legacy")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export.py"), "--model", "hgnetv2_b0",
                           "-o", f"Global.image_shape={SHAPE}", "-o", f"Global.save_inference_dir={save_dir}",
                           "--random-weights", "--legacy-pdmodel"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RANDOMLY INITIALISED" in proc.stdout
    assert {"inference.pdmodel", "inference.pdiparams", INFERENCE_YML} <= set(os.listdir(save_dir))
    info = yaml.safe_load(open(os.path.join(save_dir, INFERENCE_YML)))
    assert info["Model"]["model_file"] == "inference.pdmodel" and info["Model"]["weights"] is None
    predictor = Predictor(save_dir, threads=2)
    assert predictor.run(np.zeros([1] + SHAPE, "float32"))[predictor.output_names[0]].shape == (1, 1000)


def test_verification_failure_is_loud_and_writes_nothing(tmp_path, monkeypatch):
    """A reloaded model that disagrees with dygraph fails the export; nothing reaches save_dir."""
    from ppbackbone.deploy import predictor as predictor_module
    real_run = predictor_module.PaddleBackend.run
    monkeypatch.setattr(predictor_module.PaddleBackend, "run",
                        lambda self, batch: [out + 0.01 * np.abs(out).max() for out in real_run(self, batch)])
    save_dir = str(tmp_path / "out")
    with pytest.raises(ExportError, match="VERIFICATION FAILED: Paddle Inference.*'probs' differs"):
        export_model(_small_config(tmp_path), save_dir=save_dir, allow_random_weights=True, log=_quiet)
    _nothing_written(tmp_path, save_dir)


def test_latency_benchmark_tool_runs(capsys, tmp_path):
    """The benchmark is not a test; this only keeps the tool working (no time is asserted), and its
    --plot bars a valid, non-blank PNG when matplotlib (the [plot] extra) is there."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    from ppbackbone.engine.plots import plots_available
    plot = ["--plot", str(tmp_path / "bars.png")] if plots_available() else []
    saved = ["--json", str(tmp_path / "run.json"), "--markdown", str(tmp_path / "run.md")]
    assert benchmark.main(["latency", "--model", "hgnetv2_b0", "--runtimes", "paddle", "--image-size",
                           str(IMAGE_SIZE), "--warmup", "1", "--runs", "2", "--rounds", "1"] + plot + saved) == 0
    if plot:
        from PIL import Image
        with Image.open(plot[1]) as im:
            pixels = np.asarray(im.convert("RGB"), dtype="float64")
        assert pixels.shape[0] >= 200 and pixels.shape[1] >= 300 and pixels.var() > 0
    out = capsys.readouterr().out
    assert "| hgnetv2_b0 | ppbackbone | no Rep blocks |" in out
    assert "| hgnetv2_b0 | PaddleClas PPHGNetV2_B0 | no Rep blocks |" in out
    assert "hgnetv2_b0: weights copied; same operations in both programs" in out
    assert "max |ppbackbone - PaddleClas| = " in out
    # the compute floor: the GEMM rate, each row's GFLOPs and floor, each cell's fraction, in every output
    assert "| model | implementation | variant | GFLOPs | floor ms | Paddle Inference (oneDNN) fp32 |" in out
    assert "fp32 floor: the GEMM probe measured" in out
    assert "fp32 floor: the GEMM probe measured" in (tmp_path / "run.md").read_text()
    import json
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["gemm"]["gflops"] > 0 and record["gemm"]["threads"] in (2, None)
    for row in record["rows"]:
        assert row["gflops"] > 0 and row["floor_ms"] > 0
        assert all(0 < cell["floor_fraction"] < 100 for cell in row["cells"])
    from ppbackbone.cli import main_guard
    assert main_guard(benchmark.main, ["latency", "--model", "hgnetv2_b0", "--runtimes", "tensorrt"]) == 2
    assert "tensorrt" in capsys.readouterr().err


def test_legacy_format_requested_without_the_flag_is_refused(tmp_path):
    save_dir = str(tmp_path / "out")
    with pytest.raises(ExportError, match="FLAGS_enable_pir_api=0"):
        export_model(_small_config(tmp_path), save_dir=save_dir, allow_random_weights=True, legacy_pdmodel=True,
                     log=_quiet)
    _nothing_written(tmp_path, save_dir)


def test_export_without_classifier_returns_embeddings(tmp_path):
    config = {"Arch": {"name": "hgnetv2_b0", "class_num": 0}, "Global": {"image_shape": SHAPE}}
    result = export_model(config, save_dir=str(tmp_path / "emb"), allow_random_weights=True, latency_runs=0,
                          log=_quiet)
    assert result.inference_config["Model"]["mode"] == "embedding"
    assert result.inference_config["PostProcess"] == {"NormalizeFeatures": None}  # PaddleX's embedding postprocess
    assert "Global" not in result.inference_config  # PaddleX's PP-HGNetV2-B0 is a classifier: no name fits
    (out,) = Predictor(str(tmp_path / "emb"), threads=2).predict(_write_images(str(tmp_path / "img"), count=1))
    assert list(out) == ["features"] and out["features"].shape == (ppbackbone.create_model("hgnetv2_b0").num_features,)
    assert abs(float(np.linalg.norm(out["features"])) - 1.0) < 1e-5


def test_preprocessing_defaults_come_from_the_registry_when_the_config_has_none():
    """No Global.image_shape and no transform ops: the export takes the model's pretrained_cfg (input size,
    resize_short -> crop, interpolation, mean/std); an unregistered Arch.name keeps the ImageNet default."""
    from ppbackbone.deploy.inference_yml import _check_preprocess, _image_shape, _preprocess_ops
    config = {"Arch": {"name": "SwinTransformer_base_patch4_window12_384"}}
    assert _image_shape(config) == [3, 384, 384]
    with pytest.warns(UserWarning, match="what swin_base_patch4_window12_384's published weights expect"):
        ops = _preprocess_ops(config, [3, 384, 384], feature_mode=False)
    assert ops[1:3] == [{"ResizeImage": {"resize_short": 438, "interpolation": "bicubic", "backend": "pil"}},
                        {"CropImage": {"size": 384}}]
    _check_preprocess(ops, [3, 384, 384])  # the ops build and give the input size
    with pytest.warns(UserWarning):
        features = _preprocess_ops(config, [3, 320, 320], feature_mode=True)
    assert features[1] == {"ResizeImage": {"size": [320, 320], "interpolation": "bicubic", "backend": "pil"}}
    unknown = {"Arch": {"name": "NotARegisteredModel"}}
    assert _image_shape(unknown) == [3, 224, 224]
    with pytest.warns(UserWarning, match="ImageNet default"):
        assert _preprocess_ops(unknown, [3, 224, 224], feature_mode=False)[1] == {"ResizeImage": {"size": [224, 224]}}


def test_export_of_a_demo_run_carries_the_demo_class_names(tmp_path, capsys):
    """The quickstart trains on the demo dataset, which has names but no class_id_map_file: its export lists
    them in inference.yml (PostProcess Topk label_list), Predictor results carry them and tools/infer.py prints
    them."""
    from ppbackbone.data import DEMO_CLASSES, ensure_demo_dataset
    from ppbackbone.cli import main_guard
    config = load_config(os.path.join(ROOT, "configs", "quickstart.yaml"),
                         [f"Global.save_inference_dir={tmp_path / 'model'}"])
    export_model(config, allow_random_weights=True, latency_runs=0, log=_quiet)
    info = read_inference_config(str(tmp_path / "model"))
    assert info["PostProcess"]["Topk"]["label_list"] == list(DEMO_CLASSES)
    image = os.path.join(ensure_demo_dataset(), "val", "star", "0000.jpg")
    result = Predictor(str(tmp_path / "model"), runtime="paddle", threads=1).predict([image])[0]
    assert result["label_names"] == [DEMO_CLASSES[i] for i in result["class_ids"]]
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import infer as infer_tool
    finally:
        sys.path.pop(0)
    assert main_guard(infer_tool.main, ["--model_dir", str(tmp_path / "model"), "--image", image, "--runtime",
                                        "paddle"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: {result['class_ids'][0]} ({result['label_names'][0]}) "), line


def test_native_noise_is_held_back_and_the_rest_kept(tmp_path, capfd):
    """Paddle's C++ "PIR not support input out tensor" line (every softmax in a static graph) is dropped from what
    a save prints; any other stderr output in the same block is written out, in order."""
    from ppbackbone.deploy.export import save_static
    from ppbackbone.deploy.quiet import without_native_noise
    layer = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.Flatten(), paddle.nn.Softmax(-1))
    layer.eval()
    with without_native_noise():
        os.write(2, b"kept before\n")
        save_static(layer, str(tmp_path / "m"), [3, 8, 8], log=_quiet)
        os.write(2, b"W0000 eager_utils.cc] Paddle static graph(PIR) not support input out tensor for now!!!!!\n"
                    b"kept after\n")
    err = capfd.readouterr().err
    assert "not support input out tensor" not in err and err.index("kept before") < err.index("kept after"), err
    assert os.path.isfile(tmp_path / "m" / "inference.json")
    if HAS_ONNX:  # paddle2onnx's progress lines and "ONNX model saved in <staging path>" are held back too
        from ppbackbone.deploy.onnx import convert_to_onnx
        convert_to_onnx(str(tmp_path / "m" / "inference.json"), str(tmp_path / "m" / "inference.pdiparams"),
                        str(tmp_path / "m" / "inference.onnx"))
        out = capfd.readouterr().out
        assert "[Paddle2ONNX]" not in out and "ONNX model saved" not in out, out
        assert os.path.isfile(tmp_path / "m" / "inference.onnx")


def test_benchmark_exports_do_not_warn_about_preprocessing(tmp_path):
    """A timing export (no config) is never deployed: the "no transform_ops" warning is not for it."""
    import warnings
    from ppbackbone.benchmarks import latency
    weights = ppbackbone.save_weights(ppbackbone.create_model("pplcnet_x0_25"), str(tmp_path / "w.safetensors"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        latency._export_ours("pplcnet_x0_25", weights, str(tmp_path / "e"), (32, 32), True, False, False, 1)
    assert not [w for w in caught if "transform_ops" in str(w.message)], [str(w.message) for w in caught]


def test_default_save_dir_is_per_model(tmp_path, monkeypatch):
    """Without Global.save_inference_dir the export goes to ./inference/<Arch.name>, so two models' exports do not
    replace each other (the configs no longer all say ./inference)."""
    monkeypatch.chdir(tmp_path)
    for name in ("pplcnet_x0_25", "pplcnet_x0_35"):
        export_model({"Arch": {"name": name, "class_num": 4}, "Global": {"image_shape": [3, 32, 32]}},
                     allow_random_weights=True, latency_runs=0, log=_quiet)
    assert sorted(os.listdir(tmp_path / "inference")) == ["pplcnet_x0_25", "pplcnet_x0_35"]
    with open(os.path.join(ROOT, ".gitignore"), encoding="utf-8") as f:
        assert {"output/", "inference/"} <= set(f.read().split())


def test_no_weights_hint_names_a_checkpoint_only_when_it_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"Arch": {"name": "hgnetv2_b0", "class_num": 10}, "Global": {"image_shape": SHAPE}}
    with pytest.raises(ExportError) as info:
        export_model(config, log=_quiet)
    assert "e.g." not in str(info.value)  # nothing trained here: no path to suggest
    os.makedirs(tmp_path / "output" / "hgnetv2_b0")
    (tmp_path / "output" / "hgnetv2_b0" / "best_model.pdparams").write_bytes(b"")
    with pytest.raises(ExportError, match=r"e\.g\. output/hgnetv2_b0/best_model, which this config's training "
                                          r"wrote"):
        export_model(config, log=_quiet)
