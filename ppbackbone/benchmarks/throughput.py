"""Throughput of exported models: images per second at several batch sizes (1, 8, 32 by default) per
runtime x precision, for ppbackbone's export and PaddleClas's export of the same model (same weights,
Paddle Inference fp32, as PaddleClas deploys it) in one run; and `Predictor.predict` over a folder of
images at batch 1 vs batch N, with preprocessing overlapped with inference or not.

The exports, runtimes, precisions and the reference are latency.py's (one place: `_model_backends`);
this module times them on batches instead of single images. Every export has a dynamic batch
(input [None, 3, H, W]) and every backend takes any batch as it is (the fp32 and int8 ONNX files keep
the dynamic dimension, OpenVINO compiles it dynamic). The cells of one model and batch size are timed
in interleaved rounds; a figure is batch / median time of one call, in images per second.
"""
import os
import statistics
import tempfile
import time
import warnings

import numpy as np

from ..deploy.export_dir import write_text_atomic
from ..deploy.runtimes import cpu_features
from ..errors import ConfigError, check_positive_int
from ..progress import progress
from .latency import (RUNTIME_LABELS, _columns, _load_average, _model_backends, _time_interleaved, _versions,
                      available_precisions, available_runtimes, check_references)

__all__ = ["throughput_benchmark", "format_markdown", "rows_for_json", "check_batch_sizes", "predict_throughput",
           "format_predict_markdown", "predict_benchmark", "result_from_json", "run_record", "merge_record",
           "render_record", "write_outputs", "DEFAULT_BATCH_SIZES"]

DEFAULT_BATCH_SIZES = (1, 8, 32)


def check_batch_sizes(values, flag="--batch-sizes"):
    """The batch sizes as ints >= 1, or one ConfigError naming `flag`."""
    if isinstance(values, (int, str)) or not list(values):
        raise ConfigError(f"{flag}={values!r} is not valid: expected one or more positive integers")
    return [check_positive_int(value, flag) for value in values]


def throughput_benchmark(models=(), references=(), runtimes=None, precisions=None, batch_sizes=DEFAULT_BATCH_SIZES,
                         image_size=224, threads=2, warmup=2, runs=12, rounds=4, with_reference=True, workdir=None,
                         log=print):
    """Images per second of the exported `models` (registered names) at each of `batch_sizes` on every
    runtime x precision, and of their PaddleClas reference (plus the bare PaddleClas `references`) on
    Paddle Inference fp32. `image_size`: an int or (height, width). `runs` timed calls per cell and batch
    size, split into `rounds` interleaved rounds.

    Returns {"rows": [{model, implementation, variant, cells: {(runtime, precision, batch):
    {images_per_s, median_ms, min_ms}}}], "columns", "batch_sizes", "checks", settings, versions, CPU
    flags, load}. Rep models are timed fused (the export that is deployed)."""
    batch_sizes = check_batch_sizes(batch_sizes)
    check_references(models, references, with_reference)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    with tempfile.TemporaryDirectory(prefix="ppbackbone-throughput-", dir=workdir,
                                     ignore_cleanup_errors=True) as folder:
        return _throughput(models, references, runtimes, precisions, batch_sizes, size, threads,
                           (warmup, runs, rounds), with_reference, folder, log)


def _throughput(models, references, runtimes, precisions, batch_sizes, size, threads, timing, with_reference,
                workdir, log):
    runtimes = list(runtimes or available_runtimes())
    precisions = [p for p in (precisions or available_precisions(runtimes)) if p in available_precisions(runtimes)]
    columns = _columns(runtimes, precisions)
    load_before = _load_average()
    settings = (workdir, size, any(r != "paddle" for r in runtimes), "int8" in precisions, threads, with_reference)
    probe = np.random.RandomState(0).standard_normal([1, 3, *size]).astype("float32")
    rows, checks = [], {}
    for name, bare_reference in [(name, None) for name in models] + [(None, ref) for ref in references]:
        label = name or bare_reference
        log(f"== {label}: exporting")
        gflops = {}
        variants, backends = _model_backends(name, bare_reference, label, columns, probe, settings, checks, gflops)
        backends = {key: b for key, b in backends.items() if key[1] != "unfused"}
        cells = {}
        for batch_size in batch_sizes:
            log(f"== {label}: batch {batch_size}, timing {len(backends)} runtime/precision cells "
                f"({timing[2]} interleaved rounds)")
            batch = np.random.RandomState(batch_size).standard_normal([batch_size, 3, *size]).astype("float32")
            for key, (median, low) in _time_interleaved(backends, batch, *timing).items():
                cells.setdefault(key[:2], {})[key[2:4] + (batch_size,)] = {
                    "images_per_s": batch_size * 1000.0 / median, "median_ms": median, "min_ms": low}
        rows += [{"model": label, "implementation": impl, "variant": variant, "cells": cells[(impl, variant)],
                  "gflops": round(gflops[(impl, variant)], 4) if (impl, variant) in gflops else None}
                 for impl, variant in variants if (impl, variant) in cells]
        del backends
    flags = [f for f in cpu_features() if f.startswith(("avx", "amx", "fma", "f16c"))]
    return {"rows": rows, "columns": columns, "batch_sizes": batch_sizes, "checks": checks, "runtimes": runtimes,
            "precisions": precisions, "image_size": list(size), "threads": threads, "warmup": timing[0],
            "runs": timing[1], "rounds": timing[2], "versions": _versions(), "cpu_flags": flags,
            "load_average": [load_before, _load_average()], "cpus": os.cpu_count(), "date": _now()}


def _now():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _best(row, batch_size):
    """The (runtime, precision) of a row with the most images per second at `batch_size`."""
    cells = {key[:2]: value for key, value in row["cells"].items() if key[2] == batch_size}
    return max(cells, key=lambda key: cells[key]["images_per_s"]) if cells else None


def format_markdown(result):
    """Images per second as a Markdown table (one row per model, implementation and batch size; the best
    cell of each ppbackbone row marked), then the speed-ups over PaddleClas's export at each batch size."""
    columns = [tuple(c) for c in result["columns"]]
    head = ["model", "implementation", "batch"] + [f"{RUNTIME_LABELS[r]} {p}" for r, p in columns]
    height, width = result["image_size"]
    load = result["load_average"]
    lines = [f"Images per second (higher is faster), {height}x{width}, {result['threads']} threads; batch / median "
             f"time of one call ({result['runs']} calls per cell in {result['rounds']} interleaved rounds). Versions: "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) +
             f". Machine: {result['cpus']} CPUs ({' '.join(result['cpu_flags'])}), 1-min load average {load[0]} "
             f"before / {load[1]} after the run, {result['date']}. int8 timed on random calibration (accuracy: "
             f"tools/export.py --precision int8).", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        for batch_size in result["batch_sizes"]:
            best = _best(row, batch_size) if row["implementation"] == "ppbackbone" else None
            cells = []
            for column in columns:
                value = row["cells"].get(column + (batch_size,))
                text = "-" if value is None else f"{value['images_per_s']:.1f}"
                cells.append(f"**{text}** <-" if column == best else text)
            lines.append("| " + " | ".join([row["model"], row["implementation"], str(batch_size)] + cells) + " |")
    lines += ["", "`<-`: the most images per second of ppbackbone's export at that batch size, what "
                  "Predictor(runtime=\"auto\", objective=\"throughput\", batch_size=N) picks when the export is "
                  "verified at that precision."]
    lines += _ratio_lines(result)
    if result["checks"]:
        lines += [""] + [f"- {model}: {note}" for model, note in result["checks"].items()]
    return "\n".join(lines)


def _ratio_lines(result):
    ratios = []
    by_model = {}
    for row in result["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    first = result["batch_sizes"][0]
    for model, rows in by_model.items():
        ours = next((r for r in rows if r["implementation"] == "ppbackbone"), None)
        ref = next((r for r in rows if r["implementation"].startswith("PaddleClas")), None)
        if ours is None:
            continue
        for batch_size in result["batch_sizes"]:
            best = _best(ours, batch_size)
            value = ours["cells"][best + (batch_size,)]["images_per_s"]
            line = f"| {model} | {batch_size} | {best[0]} {best[1]} {value:.1f}"
            base = ref["cells"].get(("paddle", "fp32", batch_size)) if ref else None
            line += f" | {base['images_per_s']:.1f} | **{value / base['images_per_s']:.2f}x**" if base else " | - | -"
            at_first = ours["cells"].get(best + (first,))
            line += f" | {value / at_first['images_per_s']:.2f}x" if at_first else " | -"
            ratios.append(line + " |")
    if not ratios:
        return []
    return ["", f"| model | batch | best ppbackbone cell (images/s) | PaddleClas export, Paddle Inference fp32 "
                f"(images/s) | speed-up | that cell vs itself at batch {first} |", "|---|---|---|---|---|---|"] + ratios


def rows_for_json(result):
    """`result` with each row's cells as a list of {runtime, precision, batch, images_per_s, median_ms, min_ms}."""
    rows = [dict(row, cells=[dict(value, runtime=r, precision=p, batch=b)
                             for (r, p, b), value in row["cells"].items()]) for row in result["rows"]]
    return dict(result, rows=rows)


def result_from_json(data):
    """rows_for_json's output (a record read back) as throughput_benchmark returned it."""
    rows = [dict(row, cells={(c["runtime"], c["precision"], c["batch"]): {k: c[k] for k in
                                                                          ("images_per_s", "median_ms", "min_ms")}
                             for c in row["cells"]}) for row in data["rows"]]
    return dict(data, rows=rows, columns=[tuple(c) for c in data["columns"]])


# ----------------------------------------------------------------------------------------- the docs' record
# One recorded run per model (each a timing command of a few minutes), then the Predictor figure, timed with
# PREDICT_MODEL's run. `tools/docs_figures.py throughput --models M` redoes M's run only and keeps the others.
RECORD_MODELS = ("hgnetv2_b0", "hgnetv2_b4", "pplcnet_x1_0", "pplcnetv2_base")
PREDICT_MODEL = "pplcnet_x1_0"
PREDICT_COMMAND = f"python tools/benchmark.py predict --model {PREDICT_MODEL} --batch-sizes 1 8"


def run_record(models=RECORD_MODELS, kept=None, log=print):
    """docs/deploy.md's throughput record: `tools/benchmark.py throughput --model M` for each of `models`
    (with its defaults), and with PREDICT_MODEL's run the Predictor figure (PREDICT_COMMAND), each result
    with its command; merged into `kept` (an earlier record: the runs of the other models stay)."""
    runs = []
    for model in models:
        result = rows_for_json(throughput_benchmark([model], log=log))
        runs.append(dict(result, model=model, command=f"python tools/benchmark.py throughput --model {model}"))
    predict = None
    if PREDICT_MODEL in models or not (kept or {}).get("predict"):
        predict = dict(predict_benchmark(PREDICT_MODEL, batch_sizes=(1, 8), log=log), command=PREDICT_COMMAND)
    return merge_record(kept, runs, predict)


def _run_model(run):
    return run.get("model") or run["rows"][0]["model"]


def merge_record(kept, runs, predict=None):
    """`kept` (a throughput record, or None) with each of `runs` in place of the kept run of its model and
    `predict` (when given) in place of the kept Predictor figure; runs in RECORD_MODELS order."""
    merged = {_run_model(run): run for run in (kept or {}).get("runs", [])}
    merged.update((_run_model(run), run) for run in runs)
    order = {name: i for i, name in enumerate(RECORD_MODELS)}
    return {"runs": [merged[m] for m in sorted(merged, key=lambda m: (order.get(m, len(order)), m))],
            "predict": predict if predict is not None else (kept or {}).get("predict")}


def render_record(record, script):
    """The docs' throughput block from a record of run_record: each run's command and table, then the
    Predictor figure."""
    parts = []
    for run in record["runs"]:
        parts += [f"`{run['command']}`:", "", format_markdown(result_from_json(run)), ""]
    parts += [f"`{record['predict']['command']}`:", "", format_predict_markdown(record["predict"]), "",
              f"(Rendered from docs/records/throughput.json by `{script} --rerender`.)"]
    return "\n".join(parts)


def write_outputs(text, result, markdown=None, json_file=None):
    """The table and the raw figures into their files (each written whole, through a rename)."""
    import json
    if markdown:
        write_text_atomic(markdown, text + "\n")
    if json_file:
        write_text_atomic(json_file, json.dumps(result, indent=1) + "\n")


# ----------------------------------------------------------------------------------------- Predictor.predict
def predict_benchmark(model="pplcnet_x1_0", model_dir=None, images=None, count=128, **kwargs):
    """predict_throughput on `model_dir` (default: `model` exported here with random weights, its
    published preprocessing and size, into a temporary folder) over the images of the folder `images`
    (default: `count` JPEGs of 500x375 written there)."""
    from ..deploy.predictor import list_images
    from .train import write_benchmark_jpegs
    with tempfile.TemporaryDirectory(prefix="ppbackbone-predict-", ignore_cleanup_errors=True) as folder:
        if model_dir is None:
            model_dir = os.path.join(folder, model)
            _random_export(model, model_dir, kwargs.get("runtime", "paddle") != "paddle", kwargs.get("threads", 2))
        files = list_images(images if images else write_benchmark_jpegs(os.path.join(folder, "images"), count)[0])
        return predict_throughput(model_dir, files, **kwargs)


def _random_export(model, save_dir, onnx, threads):
    from ..deploy.export import export_model
    with warnings.catch_warnings():  # the model's published preprocessing (pretrained_cfg) is what is wanted
        warnings.filterwarnings("ignore", message="The config has no DataLoader.Eval.dataset.transform_ops")
        export_model({"Arch": {"name": model}}, save_dir=save_dir, allow_random_weights=True, onnx=onnx,
                     threads=threads, latency_runs=0, log=lambda *a: None)


def predict_throughput(model_dir, images, batch_sizes=(1, 8), workers=(0, None), threads=2, runtime="paddle",
                       precision="fp32", rounds=3, log=print):
    """Images per second of `Predictor.predict(images)` (decoding, preprocessing, the runtime and
    postprocessing) for every batch size x preprocess_workers setting (0: preprocessing in the calling
    thread, no overlap; None: the default pool that overlaps it with inference), timed in `rounds`
    interleaved rounds after one warm-up pass each; each setting's answers are checked against batch 1
    without overlap. Returns {"cells": [{batch, workers, images_per_s, runs}], settings, load, ...}."""
    from ..deploy.predictor import Predictor, default_preprocess_workers
    batch_sizes = check_batch_sizes(batch_sizes)
    settings = [(b, default_preprocess_workers() if w is None else w) for b in batch_sizes for w in workers]
    predictors = {key: Predictor(model_dir, threads=threads, runtime=runtime, precision=precision, batch_size=key[0],
                                 preprocess_workers=key[1], log=log) for key in settings}
    load_before = _load_average()
    reference = Predictor(model_dir, threads=threads, runtime=runtime, precision=precision, batch_size=1,
                          preprocess_workers=0).predict(images)
    checks = {key: _same_answers(p.predict(images), reference) for key, p in predictors.items()}  # also warm-up
    times = {key: [] for key in settings}
    bar = progress(total=rounds * len(settings), desc=f"Predictor.predict over {len(images)} images", unit="pass")
    for _ in range(rounds):
        for key, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict(images)
            times[key].append(time.perf_counter() - start)
            bar.update()
    bar.close()
    cells = [{"batch": b, "workers": w, "images_per_s": len(images) / statistics.median(times[(b, w)]),
              "runs_s": [round(t, 3) for t in times[(b, w)]], "same_answers_as_batch_1": checks[(b, w)]}
             for b, w in settings]
    flags = [f for f in cpu_features() if f.startswith(("avx", "amx", "fma", "f16c"))]
    first = next(iter(predictors.values()))
    return {"cells": cells, "model_dir": os.fspath(model_dir), "images": len(images), "rounds": rounds,
            "threads": threads, "runtime": first.runtime, "precision": first.precision,
            "input_shape": list(first.input_shape or []), "versions": _versions(), "cpu_flags": flags,
            "load_average": [load_before, _load_average()], "cpus": os.cpu_count(), "date": _now()}


def _same_answers(results, reference, rtol=1e-4, atol=1e-5):
    """True when `results` hold the reference's classes and scores (within float rounding)."""
    for got, want in zip(results, reference):
        if "class_ids" in want:
            if got["class_ids"][:1] != want["class_ids"][:1] or not np.allclose(got["scores"], want["scores"],
                                                                                  rtol=rtol, atol=atol):
                return False
        elif any(not np.allclose(got[k], want[k], rtol=rtol, atol=atol) for k in want):
            return False
    return len(results) == len(reference)


def format_predict_markdown(result):
    """The predict figures as a Markdown table: images/s per batch size x overlap, and the ratio to batch 1
    without overlap."""
    base = next((c for c in result["cells"] if c["batch"] == 1 and c["workers"] == 0), result["cells"][0])
    load = result["load_average"]
    lines = [f"Predictor.predict over {result['images']} images ({result['runtime']} {result['precision']}, input "
             f"{result['input_shape']}, {result['threads']} runtime threads): images per second, median of "
             f"{result['rounds']} interleaved passes. Machine: {result['cpus']} CPUs "
             f"({' '.join(result['cpu_flags'])}), 1-min load average {load[0]} before / {load[1]} after, "
             f"{result['date']}.",
             "",
             "| batch size | preprocessing | images/s | vs batch 1, not overlapped | same answers as batch 1 |",
             "|---|---|---|---|---|"]
    for cell in result["cells"]:
        how = "in the calling thread" if cell["workers"] == 0 else f"overlapped ({cell['workers']} threads)"
        lines.append(f"| {cell['batch']} | {how} | {cell['images_per_s']:.1f} | "
                     f"{cell['images_per_s'] / base['images_per_s']:.2f}x | "
                     f"{'yes' if cell['same_answers_as_batch_1'] else 'NO'} |")
    return "\n".join(lines)
