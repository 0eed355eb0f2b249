"""Runtime settings A/B: each model's fused export on each runtime at fp32 under the default settings
(deploy/settings.py) and under each alternative, all of one runtime in the same interleaved rounds, so a
ratio compares two settings under the same load. What measured fastest across models is the default.

Trials per runtime (a trial changes one thing from the defaults; `threads` is the backend's thread count):
Paddle Inference: 1 thread, graph passes off, oneDNN cache capacity 1, the old executor, oneDNN off;
ONNX Runtime: 1 thread, spinning, extended (not all) graph optimizations, parallel execution;
OpenVINO: 1 thread, the THROUGHPUT hint, CPU pinning off, TBB's static partitioner;
both ONNX runtimes: the ONNX file converted at opset 13 instead of the default (deploy/onnx.py).
"""
import json
import os
import shutil
import tempfile

import numpy as np

from ..arch import create_model
from ..deploy.export_dir import PARAMS_FILE
from ..deploy.onnx import convert_to_onnx
from ..deploy.settings import runtime_settings
from ..progress import progress
from ..weights.io import save_weights
from .latency import RUNTIME_LABELS, _backend, _export_ours, _load_average, _time_interleaved, _versions

__all__ = ["TRIALS", "settings_benchmark", "format_settings", "add_settings"]

# runtime -> [(label, {settings}, threads or None for the run's)]; the first is the default
TRIALS = {
    "paddle": [("defaults", {}, None), ("1 thread", {}, 1), ("ir_optim=False", {"ir_optim": False}, None),
               ("onednn_cache_capacity=1", {"onednn_cache_capacity": 1}, None),
               ("new_executor=False", {"new_executor": False}, None), ("oneDNN off", {"onednn": False}, None)],
    "onnxruntime": [("defaults", {}, None), ("1 thread", {}, 1), ("allow_spinning=True", {"allow_spinning": True}, None),
                    ("graph_optimization_level=extended", {"graph_optimization_level": "extended"}, None),
                    ("execution_mode=parallel", {"execution_mode": "parallel"}, None)],
    "openvino": [("defaults", {}, None), ("1 thread", {}, 1),
                 ("performance_hint=THROUGHPUT", {"performance_hint": "THROUGHPUT"}, None),
                 ("cpu_pinning=False", {"cpu_pinning": False}, None),
                 ("tbb_partitioner=STATIC", {"tbb_partitioner": "STATIC"}, None)],
}
OLD_OPSET = 13
for _runtime in ("onnxruntime", "openvino"):
    TRIALS[_runtime].append((f"ONNX opset {OLD_OPSET}", {"opset": OLD_OPSET}, None))


def _trial_backend(directory, model_file, runtime, settings, threads):
    settings = dict(settings)
    if settings.pop("opset", None):  # the same model converted at the older opset
        from ..deploy.runtimes import OnnxRuntimeBackend, OpenVinoBackend
        backend = OnnxRuntimeBackend if runtime == "onnxruntime" else OpenVinoBackend
        return backend(os.path.join(directory, f"opset{OLD_OPSET}.onnx"), threads=threads, settings=settings)
    if settings.pop("onednn", True) is False:  # oneDNN on/off is the backend's argument, not a setting
        from ..deploy.runtimes import PaddleBackend
        return PaddleBackend(os.path.join(directory, model_file), os.path.join(directory, PARAMS_FILE),
                             threads=threads, onednn=False, settings=settings)
    return _backend(directory, model_file, runtime, "fp32", threads, settings)


def settings_benchmark(models, runtimes, image_size=224, threads=2, warmup=5, runs=100, rounds=10, log=print):
    """{"rows": [{model, runtime, trial, median_ms, min_ms, max_abs_diff}], ...machine}: every trial of
    TRIALS[runtime] on each model's fused fp32 export (random weights), one runtime's trials interleaved."""
    workdir = tempfile.mkdtemp(prefix="ppbackbone-settings-")
    rows, load_before = [], _load_average()
    batch = np.random.RandomState(0).standard_normal([1, 3, image_size, image_size]).astype("float32")
    try:
        for name in progress(models, desc="settings A/B", unit="model"):
            directory = os.path.join(workdir, name)
            weights = save_weights(create_model(name), os.path.join(workdir, f"{name}.safetensors"))
            onnx = any(r != "paddle" for r in runtimes)
            model_file = _export_ours(name, weights, directory, (image_size, image_size), True, onnx, False, threads)
            if onnx:
                convert_to_onnx(os.path.join(directory, model_file), os.path.join(directory, PARAMS_FILE),
                                os.path.join(directory, f"opset{OLD_OPSET}.onnx"), opset=OLD_OPSET)
            backends = {(name, label, runtime, "fp32"): _trial_backend(directory, model_file, runtime, settings,
                                                                      trial_threads or threads)
                        for runtime in runtimes for label, settings, trial_threads in TRIALS[runtime]}
            outputs = {key: backend.run(batch)[0] for key, backend in backends.items()}
            log(f"== {name}: timing {len(backends)} runtime x settings trials ({rounds} interleaved rounds)")
            times = _time_interleaved(backends, batch, warmup, runs, rounds)
            for key, (median, low) in times.items():
                default = outputs[(name, "defaults", key[2], "fp32")]
                rows.append({"model": name, "runtime": key[2], "trial": key[1], "median_ms": median, "min_ms": low,
                             "max_abs_diff": float(np.abs(outputs[key] - default).max())})
            del backends
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"rows": rows, "threads": threads, "image_size": image_size, "runs": runs, "rounds": rounds,
            "versions": _versions(), "load_average": [load_before, _load_average()],
            "defaults": {r: runtime_settings(r) for r in runtimes}}


def format_settings(result):
    """Markdown: per model and runtime, each trial's median (min) ms and default / trial (> 1: the trial is faster)."""
    lines = [f"Batch 1, {result['image_size']}x{result['image_size']}, fp32, {result['threads']} threads unless "
             f"the trial says otherwise; median (min) ms of {result['runs']} runs in {result['rounds']} interleaved "
             f"rounds; 1-min load average {result['load_average'][0]} before / {result['load_average'][1]} after.",
             "", "| model | runtime | trial | median (min) ms | defaults / trial |", "|---|---|---|---|---|"]
    defaults = {(r["model"], r["runtime"]): r["median_ms"] for r in result["rows"] if r["trial"] == "defaults"}
    for r in result["rows"]:
        ratio = defaults[(r["model"], r["runtime"])] / r["median_ms"]
        lines.append(f"| {r['model']} | {RUNTIME_LABELS[r['runtime']]} | {r['trial']} | {r['median_ms']:.2f} "
                     f"({r['min_ms']:.2f}) | {'**' if ratio > 1.05 else ''}{ratio:.2f}x{'**' if ratio > 1.05 else ''} |")
    return "\n".join(lines)


def add_settings(subparsers):
    """Register the `settings` mode on tools/benchmark.py's subparsers."""
    from ..cli import non_negative_int, positive_int
    p = subparsers.add_parser("settings", help="runtime settings A/B per model (fp32, fused, interleaved)")
    p.add_argument("--model", nargs="+", required=True, help="registered model names")
    p.add_argument("--runtimes", nargs="*", default=None, help="default: every installed one")
    p.add_argument("--image-size", type=positive_int, default=224)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--warmup", type=non_negative_int, default=5)
    p.add_argument("--runs", type=positive_int, default=100, help="timed runs per trial")
    p.add_argument("--rounds", type=positive_int, default=10, help="interleaved rounds the runs are split into")
    p.add_argument("--json", help="also write the figures to this file")
    p.set_defaults(func=run_settings)


def run_settings(args):
    from ..cli import check_model_names
    from ..errors import ConfigError
    from .latency import available_runtimes
    models = check_model_names(args.model)
    runtimes = args.runtimes or available_runtimes()
    unknown = [r for r in runtimes if r not in available_runtimes()]
    if unknown:
        raise ConfigError(f"--runtimes: {unknown} are unknown or not installed; available here: "
                          f"{', '.join(available_runtimes())}")
    result = settings_benchmark(models, runtimes, args.image_size, args.threads, args.warmup, args.runs, args.rounds)
    print(format_settings(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0
