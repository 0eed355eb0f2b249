"""Throughput mode, on a real tiny export (pplcnet_x0_25 at 64 px): Predictor batching gives the batch-1
answers in order on every installed runtime (preprocessing overlapped or not), a bad image in a batch is
named, runtime="auto" keys its cached choice by the objective, bad batch sizes are one clear error, and
`tools/benchmark.py throughput` / `predict` produce their tables with PaddleClas's column. No time is
asserted anywhere."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from ppbackbone.deploy.export import export_model
from ppbackbone.deploy.predictor import ImageError, Predictor
from ppbackbone.deploy.runtimes import modules_import
from ppbackbone.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
HAS_ONNX = modules_import("paddle2onnx", "onnx", "onnxruntime")
HAS_OPENVINO = HAS_ONNX and modules_import("openvino")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    save_dir = str(tmp_path_factory.mktemp("throughput") / "model")
    config = {"Arch": {"name": "pplcnet_x0_25", "class_num": 10}, "Global": {"image_shape": [3, SIZE, SIZE]}}
    export_model(config, save_dir=save_dir, allow_random_weights=True, onnx=HAS_ONNX, latency_runs=0,
                 log=lambda *a, **k: None)
    return save_dir


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """13 distinct images of several sizes and formats (13: batches of 5 leave a short last one)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    files = []
    for i in range(13):
        path = folder / f"{i:02d}.{'png' if i % 3 else 'jpg'}"
        Image.fromarray(rng.randint(0, 256, (70 + 3 * i, 80 + 5 * (i % 4), 3), dtype=np.uint8)).save(path)
        files.append(str(path))
    return files


def _runtime(name):
    if name == "onnxruntime" and not HAS_ONNX:
        pytest.skip("needs paddle2onnx, onnx and onnxruntime (pip install ppbackbone[onnx])")
    if name == "openvino" and not HAS_OPENVINO:
        pytest.skip("needs ppbackbone[onnx] and openvino (pip install ppbackbone[openvino])")
    return name


def _assert_same(results, expected):
    assert len(results) == len(expected)
    for i, (got, want) in enumerate(zip(results, expected)):
        assert got["class_ids"] == want["class_ids"], i
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-4, atol=1e-6, err_msg=str(i))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("runtime", ["paddle", "onnxruntime", "openvino"])
def test_batched_predictions_equal_batch_1_in_order(tiny_export, image_files, runtime):
    """batch_size=5 over 13 images (the last batch short), preprocessing overlapped or in the calling
    thread, gives each image's batch-1 result in the images' order."""
    one = Predictor(tiny_export, threads=1, runtime=_runtime(runtime), batch_size=1, preprocess_workers=0)
    expected = [one.predict(path)[0] for path in image_files]
    assert len({tuple(r["class_ids"]) + tuple(r["scores"]) for r in expected}) > 1  # distinct answers: order matters
    for workers in (0, 2):
        batched = Predictor(tiny_export, threads=1, runtime=runtime, batch_size=5, preprocess_workers=workers)
        assert batched.batch_size == 5
        _assert_same(batched.predict(image_files), expected)
        _assert_same(batched.predict(image_files, batch_size=13), expected)  # a per-call batch size still works
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in image_files[:4]]
    _assert_same(batched.predict(arrays), expected[:4])


@pytest.mark.timeout(60)
def test_a_bad_image_in_a_batch_is_named(tiny_export, image_files, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    files = image_files[:6] + [str(bad)] + image_files[6:9]
    predictor = Predictor(tiny_export, threads=1, batch_size=4)
    with pytest.raises(ImageError, match="Could not read image .*broken.jpg"):
        predictor.predict(files)
    results = list(predictor.iter_predict(files, skip_errors=True))  # what tools/infer.py does
    assert isinstance(results[6], ImageError) and "broken.jpg" in str(results[6])
    expected = Predictor(tiny_export, threads=1, batch_size=1, preprocess_workers=0).predict(image_files[:9])
    _assert_same(results[:6] + results[7:], expected)


@pytest.mark.parametrize("value", [0, -1, "x", 2.5, True])
def test_bad_batch_size_is_one_clear_error(tiny_export, value):
    with pytest.raises(ConfigError, match=rf"batch_size={value!r} is not valid: expected a positive integer"):
        Predictor(tiny_export, batch_size=value)
    predictor = Predictor(tiny_export, threads=1)
    with pytest.raises(ConfigError, match=r"batch_size=.* is not valid"):
        predictor.predict(np.zeros((70, 70, 3), "uint8"), batch_size=value)


def test_bad_objective_and_workers_are_named(tiny_export):
    with pytest.raises(ConfigError, match=r"objective='speed' is not valid: expected latency or throughput"):
        Predictor(tiny_export, objective="speed")
    with pytest.raises(ConfigError, match=r"preprocess_workers=-1 is not valid: expected an integer >= 0"):
        Predictor(tiny_export, preprocess_workers=-1)


def test_autoselect_objective_is_part_of_the_cache_key():
    from ppbackbone.deploy.autoselect import choice_key
    latency, throughput = choice_key(2, "latency"), choice_key(2, "throughput", 8)
    assert latency != throughput and latency["objective"] == "latency" and latency["batch"] == 1
    assert throughput["batch"] == 8 and throughput != choice_key(2, "throughput", 32)
    assert choice_key(2, "latency", 32) == latency  # latency is always measured at batch 1
    with pytest.raises(ConfigError, match="objective='fast' is not valid"):
        choice_key(2, "fast")


@pytest.mark.timeout(120)
def test_auto_runtime_caches_one_choice_per_objective(tiny_export, tmp_path):
    import shutil
    model_dir = str(tmp_path / "model")
    shutil.copytree(tiny_export, model_dir)
    lines = []
    batched = Predictor(model_dir, threads=1, runtime="auto", objective="throughput", batch_size=4,
                        log=lines.append)
    record = json.loads(open(os.path.join(model_dir, "runtime_choice.json")).read())
    assert record["objective"] == "throughput" and record["batch"] == 4 and record["key"]["batch"] == 4
    assert all(m["images_per_s"] > 0 for m in record["measurements_ms"])
    assert "the highest throughput of" in lines[-1] and "(batch 4," in lines[-1]
    latency = Predictor(model_dir, threads=1, runtime="auto", log=lines.append)  # another objective: measured again
    assert latency.choice["cached"] is False and latency.choice["objective"] == "latency"
    assert latency.choice["batch"] == 1 and "the fastest of" in lines[-1]
    again = Predictor(model_dir, threads=1, runtime="auto", log=lines.append)
    assert again.choice["cached"] is True and "measured earlier on this machine for latency" in lines[-1]
    assert batched.predict(np.zeros((70, 70, 3), "uint8"))[0]["class_ids"]


def _tool(name):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


@pytest.mark.timeout(120)
def test_throughput_benchmark_tool_has_the_reference_column(capsys, tmp_path):
    """The benchmark is not a test; this keeps the tool working (no time is asserted)."""
    benchmark = _tool("benchmark")
    out_json = tmp_path / "t.json"
    assert benchmark.main(["throughput", "--model", "pplcnet_x0_25", "--runtimes", "paddle", "--precisions", "fp32",
                           "--image-size", str(SIZE), "--batch-sizes", "1", "3", "--warmup", "0", "--runs", "1",
                           "--rounds", "1", "--json", str(out_json), "--markdown", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    for batch in (1, 3):
        assert f"| pplcnet_x0_25 | ppbackbone | {batch} |" in out
        assert f"| pplcnet_x0_25 | PaddleClas PPLCNet_x0_25 | {batch} |" in out
    assert "pplcnet_x0_25: weights copied; same operations in both programs" in out
    assert (tmp_path / "t.md").read_text().strip() == out[out.index("Images per second"):].strip()
    record = json.loads(out_json.read_text())
    assert record["batch_sizes"] == [1, 3] and record["image_size"] == [SIZE, SIZE]
    cells = {(row["implementation"], c["batch"]): c for row in record["rows"] for c in row["cells"]}
    assert set(cells) == {("ppbackbone", 1), ("ppbackbone", 3), ("PaddleClas PPLCNet_x0_25", 1),
                          ("PaddleClas PPLCNet_x0_25", 3)}
    assert all(c["images_per_s"] > 0 and c["runtime"] == "paddle" for c in cells.values())


@pytest.mark.parametrize("tool, argv", [
    ("benchmark", ["throughput", "--model", "pplcnet_x0_25", "--batch-sizes"]),
    ("benchmark", ["predict", "--batch-sizes"]),
    ("infer", ["--model_dir", "d", "--image", "i", "--batch-size"]),
])
def test_tools_refuse_bad_batch_sizes_naming_the_flag(tool, argv, capsys):
    """A usage error (exit status 2) naming the flag and the value, before any work."""
    for value in ("0", "-1", "x"):
        with pytest.raises(SystemExit) as exit_info:
            _tool(tool).main(argv + [value])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "expected an integer >= 1" in err and repr(value)[1:-1] in err, err
        assert ("--batch-sizes" if tool == "benchmark" else "--batch_size/--batch-size") in err


@pytest.mark.timeout(60)
def test_predict_benchmark_on_a_folder(tiny_export, image_files, capsys):
    benchmark = _tool("benchmark")
    folder = os.path.dirname(image_files[0])
    assert benchmark.main(["predict", "--model-dir", tiny_export, "--images", folder, "--batch-sizes", "1", "4",
                           "--rounds", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "Predictor.predict over 13 images" in out
    for row in ("| 1 | in the calling thread |", "| 4 | in the calling thread |", "| 4 | overlapped ("):
        assert row in out
    assert "| NO |" not in out  # every setting gives the batch-1 answers


@pytest.mark.timeout(60)
def test_preprocessing_threads_end_with_the_call(tiny_export, image_files):
    """A call's preprocessing pool ends with it: after a full call, after an error, and when the caller
    stops reading iter_predict early."""
    import threading

    def pool_threads():
        return [t for t in threading.enumerate() if t.name.startswith("ppbackbone-preprocess")]

    predictor = Predictor(tiny_export, threads=1, batch_size=2, preprocess_workers=2)
    predictor.predict(image_files)
    assert not pool_threads()
    with pytest.raises(ImageError):
        predictor.predict(image_files[:3] + [b"not an image"] + image_files[3:])
    assert not pool_threads()
    stream = predictor.iter_predict(image_files)
    next(stream)
    stream.close()
    assert not pool_threads()


def test_a_throughput_record_run_replaces_only_its_models_run():
    """tools/docs_figures.py throughput --models X: X's new run replaces X's kept run (an old run without a
    `model` key is known by its first row); the other runs and the Predictor figure stay unless redone."""
    from ppbackbone.benchmarks.throughput import merge_record
    kept = {"runs": [{"rows": [{"model": "hgnetv2_b0"}], "date": "old"},
                     {"rows": [{"model": "pplcnet_x1_0"}], "date": "old"}], "predict": {"date": "old"}}
    merged = merge_record(kept, [{"model": "pplcnet_x1_0", "rows": [], "date": "new"},
                                 {"model": "hgnetv2_b4", "rows": [], "date": "new"}])
    assert [(r.get("model") or r["rows"][0]["model"], r["date"]) for r in merged["runs"]] == [
        ("hgnetv2_b0", "old"), ("hgnetv2_b4", "new"), ("pplcnet_x1_0", "new")]
    assert merged["predict"] == {"date": "old"}
    assert merge_record(kept, [], {"date": "new"})["predict"] == {"date": "new"}
    alone = merge_record(None, [{"model": "hgnetv2_b0", "rows": []}], {"date": "new"})
    assert [r["model"] for r in alone["runs"]] == ["hgnetv2_b0"] and alone["predict"] == {"date": "new"}
