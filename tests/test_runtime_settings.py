"""Runtime settings (ppbackbone/deploy/settings.py) reach each runtime and read back from it; bad ones are
one clear error; the settings A/B tool runs. No time is asserted."""
import importlib.util
import os
import sys

import numpy as np
import pytest

from ppbackbone.deploy.settings import SETTINGS, runtime_settings
from ppbackbone.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("paddle2onnx", "onnx", "onnxruntime"))
HAS_OPENVINO = HAS_ONNX and importlib.util.find_spec("openvino") is not None
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="paddle2onnx/onnx/onnxruntime not installed "
                                                     "(optional: pip install ppbackbone[onnx])")
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino (and paddle2onnx/onnxruntime) not installed "
                                                             "(optional: pip install ppbackbone[onnx,openvino])")
SIZE = 32


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from ppbackbone.deploy.export import export_model
    directory = str(tmp_path_factory.mktemp("settings") / "export")
    config = {"Arch": {"name": "pplcnet_x0_25", "class_num": 10}, "Global": {"image_shape": [3, SIZE, SIZE]}}
    export_model(config, save_dir=directory, allow_random_weights=True, onnx=HAS_ONNX, latency_runs=0,
                 log=lambda *a: None)
    return directory


def _batch():
    return np.random.RandomState(0).standard_normal([1, 3, SIZE, SIZE]).astype("float32")


def test_bad_settings_are_one_error_naming_runtime_key_and_value():
    with pytest.raises(ConfigError, match=r"runtime 'openvino': unknown key 'num_stream'; allowed: .*num_streams"):
        runtime_settings("openvino", {"num_stream": 1})
    with pytest.raises(ConfigError, match=r"runtime 'openvino': num_streams=0; expected an integer >= 1 or None"):
        runtime_settings("openvino", {"num_streams": 0})
    with pytest.raises(ConfigError, match=r"runtime 'onnxruntime': graph_optimization_level='fast'; expected "
                                          r"'disable' or 'basic' or 'extended' or 'all'"):
        runtime_settings("onnxruntime", {"graph_optimization_level": "fast"})
    with pytest.raises(ConfigError, match=r"runtime 'paddle': ir_optim=1; expected True or False"):
        runtime_settings("paddle", {"ir_optim": 1})  # 1 is not a flag
    assert runtime_settings("paddle") == {k: v[0] for k, v in SETTINGS["paddle"].items()}


def test_paddle_settings_reach_the_config_and_handles_are_reused(export):
    from ppbackbone.deploy.runtimes import PaddleBackend
    files = [os.path.join(export, f) for f in ("inference.json", "inference.pdiparams")]
    default = PaddleBackend(*files, threads=1)
    assert default.applied_settings() == {"ir_optim": True, "onednn": True, "threads": 1}
    assert PaddleBackend(*files, threads=1, onednn=False).applied_settings()["onednn"] is False
    changed = PaddleBackend(*files, threads=1, settings={"ir_optim": False, "onednn_cache_capacity": 2,
                                                         "new_executor": True})
    assert changed.applied_settings()["ir_optim"] is False
    batch = _batch()
    first = default.run(batch)[0]
    np.testing.assert_allclose(changed.run(batch)[0], first, atol=1e-5)
    two = np.concatenate([batch, -batch])  # another shape through the same handles, then back
    assert default.run(two)[0].shape[0] == 2
    np.testing.assert_array_equal(default.run(batch)[0], first)


@needs_onnx
def test_onnxruntime_settings_read_back_from_the_session(export):
    from ppbackbone.deploy.runtimes import OnnxRuntimeBackend
    onnx_file = os.path.join(export, "inference.onnx")
    default = OnnxRuntimeBackend(onnx_file, threads=1)
    assert default.applied_settings() == {"graph_optimization_level": "all", "execution_mode": "sequential",
                                          "allow_spinning": False, "threads": 1}
    changed = OnnxRuntimeBackend(onnx_file, threads=1, settings={
        "graph_optimization_level": "basic", "allow_spinning": True, "execution_mode": "parallel"})
    assert changed.applied_settings() == {"graph_optimization_level": "basic", "execution_mode": "parallel",
                                          "allow_spinning": True, "threads": 1}
    np.testing.assert_allclose(changed.run(_batch())[0], default.run(_batch())[0], atol=1e-5)


@needs_openvino
def test_openvino_settings_read_back_from_the_compiled_model(export):
    from ppbackbone.deploy.runtimes import OpenVinoBackend
    onnx_file = os.path.join(export, "inference.onnx")
    default = OpenVinoBackend(onnx_file, threads=1)
    properties = default.applied_settings()
    assert properties["PERFORMANCE_HINT"].endswith("LATENCY") and properties["INFERENCE_NUM_THREADS"] == "1"
    assert "float32" in properties["INFERENCE_PRECISION_HINT"] or "f32" in properties["INFERENCE_PRECISION_HINT"]
    changed = OpenVinoBackend(onnx_file, threads=1, settings={"performance_hint": "THROUGHPUT", "num_streams": 1,
                                                              "cpu_pinning": False})
    properties = changed.applied_settings()
    assert properties["PERFORMANCE_HINT"].endswith("THROUGHPUT") and properties["NUM_STREAMS"] == "1"
    assert properties["ENABLE_CPU_PINNING"] == "False"
    batch = _batch()
    out = default.run(batch)[0]
    assert default.run(batch * 0)[0] is not out  # outputs are copied out of the request, not views it reuses
    np.testing.assert_allclose(changed.run(batch)[0], out, atol=1e-5)


def test_settings_benchmark_tool_runs(capsys):
    """tools/benchmark.py settings: every Paddle trial of one small model, timed (no time asserted)."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    assert benchmark.main(["settings", "--model", "pplcnet_x0_25", "--runtimes", "paddle", "--image-size", str(SIZE),
                           "--warmup", "0", "--runs", "1", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| model | runtime | trial | median (min) ms | defaults / trial |" in out
    for label, _, _ in __import__("ppbackbone.benchmarks.settings_ab", fromlist=["TRIALS"]).TRIALS["paddle"]:
        assert f"| pplcnet_x0_25 | Paddle Inference (oneDNN) | {label} |" in out


def test_a_latency_record_part_replaces_the_part_that_timed_its_models():
    """tools/docs_figures.py latency --models X: X's new part replaces the old part holding X; others stay."""
    from ppbackbone.benchmarks.figures import _merge_part
    old = {"parts": [{"models": ["hgnetv2_b0", "hgnetv2_b4"], "date": "old"},
                     {"models": ["pplcnet_x1_0"], "date": "old"}]}
    merged = _merge_part(old, {"models": ["pplcnet_x1_0"], "date": "new"})
    assert [(p["models"], p["date"]) for p in merged["parts"]] == [(["hgnetv2_b0", "hgnetv2_b4"], "old"),
                                                                  (["pplcnet_x1_0"], "new")]
    assert _merge_part(None, {"models": ["hgnetv2_b4"], "date": "new"}) == {"parts": [{"models": ["hgnetv2_b4"],
                                                                                       "date": "new"}]}
