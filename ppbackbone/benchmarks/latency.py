"""Latency of exported models per runtime x precision: ppbackbone fused and unfused, and PaddleClas's
export of the same model on Paddle Inference fp32 (what PaddleClas gives by default), in one run.

Each variant is exported the same way (eval -> [fuse] -> softmax -> to_static with a dynamic batch ->
jit.save, as PaddleClas's exporter does) from the same weights: ours are random (the figures do not
depend on the values) and copied into the reference model when its parameter names match. Columns
are every installed runtime at every precision it runs here: fp32; bf16 on CPUs with AVX512-BF16/
AMX (Paddle Inference oneDNN, OpenVINO); int8 (ONNX Runtime on the QDQ file, OpenVINO on NNCF's file
where NNCF is installed, else the QDQ file; quantized here on random calibration images: timing only,
accuracy is what tools/export.py --precision int8 verifies). Variants of one runtime are timed in interleaved rounds so that load from other
processes spreads over all of them; the figure is the median of every timed run, in ms, batch 1.
The fastest cell of ppbackbone's fused export is marked: it is what Predictor(runtime="auto") picks
when the export was verified at that precision.
"""
import importlib
import os
import re
import shutil
import site
import sys
import tempfile
import time
import warnings

import numpy as np
import paddle

from ..arch import create_model, has_unfused_blocks, model_info, reparameterize
from ..deploy.export import export_model, program_op_counts, save_static
from ..deploy.export_dir import ONNX_FILE, ONNX_INT8_FILE, OPENVINO_INT8_FILE, PARAMS_FILE
from ..deploy.int8_openvino import float_stride, nncf_installed, quantize_openvino
from ..deploy.runtimes import (RUNTIME_LABELS, RUNTIME_PRECISIONS, OnnxRuntimeBackend, OpenVinoBackend, PaddleBackend,
                        bf16_supported, cpu_features, installed_runtimes, modules_import)
from ..errors import ConfigError, UserError, suggest
from ..flops import count_macs, gemm_rate
from ..progress import progress
from ..weights.io import save_weights
from .floor import floor_fraction, floor_ms, format_floor

__all__ = ["latency_benchmark", "available_runtimes", "available_precisions", "build_reference", "format_markdown",
           "result_to_json", "result_from_json",
           "check_references", "ReferenceUnavailable", "RUNTIME_LABELS"]


class ReferenceUnavailable(UserError, ImportError):
    """PaddleClas (the reference timed beside ours) is not installed: the environment, not a bug."""


def available_runtimes():
    """Runtimes usable here: paddle always; onnxruntime/openvino when they and paddle2onnx import."""
    converter = modules_import("paddle2onnx", "onnx")
    return ["paddle"] + [r for r in installed_runtimes() if r != "paddle" and converter]


def available_precisions(runtimes):
    """fp32 always; bf16 on CPUs with it; int8 when the quantizer imports and a runtime runs it."""
    found = ["fp32"]
    if bf16_supported() and any("bf16" in RUNTIME_PRECISIONS[r] for r in runtimes):
        found.append("bf16")
    if modules_import("onnxruntime.quantization", "ml_dtypes") and any("int8" in RUNTIME_PRECISIONS[r]
                                                                     for r in runtimes):
        found.append("int8")
    return found


def _paddleclas_backbones():
    """ppcls.arch.backbone from the paddleclas wheel (which keeps `ppcls` under `paddleclas/`)."""
    try:
        return importlib.import_module("ppcls.arch.backbone")
    except ImportError:
        for base in site.getsitepackages() + [site.getusersitepackages()]:
            candidate = os.path.join(base, "paddleclas")
            if os.path.isdir(os.path.join(candidate, "ppcls")) and candidate not in sys.path:
                sys.path.append(candidate)
        try:
            return importlib.import_module("ppcls.arch.backbone")
        except ImportError as err:
            raise ReferenceUnavailable(f"PaddleClas is not importable ({err}); install it to time the reference "
                                       f"(pip install --no-deps paddleclas==2.6.0, as the README's test command "
                                       f"does)") from None


def reference_name(name):
    """The PaddleClas builder named in `name`'s registry entry (`reference="PaddleClas X..."`), or None."""
    match = re.search(r"PaddleClas ([A-Za-z0-9_]+)(?![A-Za-z0-9_(])", model_info(name).reference or "")
    return match.group(1) if match else None


def build_reference(reference, class_num=1000):
    """A PaddleClas backbone by its builder name (`PPHGNetV2_B0`, `PPLCNetV2_base`)."""
    return _reference_builder(reference)(class_num=class_num)


def _reference_builder(reference):
    module = _paddleclas_backbones()
    builder = getattr(module, reference, None)
    if builder is None or not callable(builder):
        names = [n for n in dir(module) if n[:1].isupper() and callable(getattr(module, n))]
        raise ConfigError(f"--reference {reference}: PaddleClas has no backbone builder of that name."
                          f"{suggest(reference, names)}")
    return builder


def check_references(models, references, with_reference=True):
    """Before any work: PaddleClas imports and has every builder the run will time (the bare `references`,
    and the registry's reference of each of `models` unless `with_reference` is False)."""
    needed = list(references) + ([r for r in map(reference_name, models) if r] if with_reference else [])
    for reference in needed:
        try:
            _reference_builder(reference)
        except ReferenceUnavailable as err:
            hint = " or pass --no-reference" if reference not in references else ""
            raise ReferenceUnavailable(f"{err}{hint}") from None


def _fuse_reference(model):
    """PaddleClas's exporter calls re_parameterize() on every sublayer that has it."""
    for layer in model.sublayers():
        if callable(getattr(layer, "re_parameterize", None)):
            layer.re_parameterize()
    return model


def _has_reference_rep(model):
    return any(callable(getattr(layer, "re_parameterize", None)) for layer in model.sublayers())


def _columns(runtimes, precisions):
    return [(r, p) for r in runtimes for p in RUNTIME_PRECISIONS[r] if p in precisions]


def _backend(directory, model_file, runtime, precision, threads, settings=None):
    """The backend of one cell; `settings`: that runtime's settings over the defaults (deploy/settings.py)."""
    if runtime == "paddle":
        return PaddleBackend(os.path.join(directory, model_file), os.path.join(directory, PARAMS_FILE),
                             threads=threads, precision=precision, settings=settings)
    onnx_file = os.path.join(directory, ONNX_INT8_FILE if precision == "int8" else ONNX_FILE)
    if runtime == "openvino" and precision == "int8" and os.path.isfile(os.path.join(directory, OPENVINO_INT8_FILE)):
        onnx_file = os.path.join(directory, OPENVINO_INT8_FILE)  # NNCF's, what the exporter verifies for OpenVINO
    if runtime == "onnxruntime":
        return OnnxRuntimeBackend(onnx_file, threads=threads, precision=precision, settings=settings)
    return OpenVinoBackend(onnx_file, threads=threads, precision=precision, settings=settings)


def _time_interleaved(backends, batch, warmup, runs, rounds):
    """{key: (median ms, min ms)}. Keys are (implementation, variant, runtime, precision[, model]); the
    entries of one runtime are timed in interleaved rounds (what is compared shares the machine's state), one
    runtime after the other with a pause between, so that one runtime's idle spinning threads do not
    slow another's."""
    times = {key: [] for key in backends}
    per_round = max(1, runs // rounds)
    bar = progress(total=len(backends) * (warmup + rounds * per_round), desc=f"timing {len(backends)} cells",
                   unit="run")
    for runtime in dict.fromkeys(key[2] for key in backends):
        group = {key: b for key, b in backends.items() if key[2] == runtime}
        time.sleep(0.5)
        for backend in group.values():
            for _ in range(warmup):
                backend.run(batch)
                bar.update()
        for _ in range(rounds):
            for key, backend in group.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    backend.run(batch)
                    times[key].append((time.perf_counter() - start) * 1000.0)
                    bar.update()
    bar.close()
    return {key: (float(np.median(values)), float(np.min(values))) for key, values in times.items()}


def _compare_programs(variants):
    """Whether ours and the reference's fused programs hold the same operations (a timing
    difference between identical programs is noise; a different op mix explains a real one)."""
    def counts(implementation):
        key = next(k for k in variants if k[0].startswith(implementation) and k[1] != "unfused")
        directory, model_file = variants[key]
        return program_op_counts(os.path.join(directory, model_file))
    ours, ref = counts("ppbackbone"), counts("PaddleClas")
    if ours is None or ref is None:
        return "programs not compared (legacy format)"
    if ours == ref:
        return f"same operations in both programs ({sum(ours.values())} ops)"
    diff = {op: (ours.get(op, 0), ref.get(op, 0)) for op in sorted(set(ours) | set(ref))
            if ours.get(op, 0) != ref.get(op, 0)}
    return "programs differ (op: ppbackbone, PaddleClas): " + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items())


def _export_ours(name, weights, directory, image_size, fuse, onnx, int8, threads):
    config = {"Arch": {"name": name}, "Global": {"image_shape": [3, *image_size]}}
    with warnings.catch_warnings():  # a timing export is never deployed: its inference.yml preprocessing is moot
        warnings.filterwarnings("ignore", message="The config has no DataLoader.Eval.dataset.transform_ops")
        result = export_model(config, save_dir=directory, weights=weights, fuse=fuse, onnx=onnx, threads=threads,
                              latency_runs=0, log=lambda *a: None)
    if int8:  # timing only: random calibration images; tools/export.py --precision int8 verifies accuracy
        from ..deploy.precision import quantize_int8
        calib = np.random.RandomState(1).standard_normal([8, 3, *image_size]).astype("float32")
        quantize_int8(os.path.join(directory, ONNX_FILE), os.path.join(directory, ONNX_INT8_FILE), calib)
        if nncf_installed():  # what --precision int8 writes for OpenVINO (int8_quantizer="auto")
            quantize_openvino(os.path.join(directory, ONNX_FILE), os.path.join(directory, OPENVINO_INT8_FILE), calib,
                              max_float_stride=float_stride(name))
    return result.inference_config["Model"]["model_file"]


def _export_reference(model, directory, image_size, fuse):
    os.makedirs(directory, exist_ok=True)
    model.eval()
    if fuse:
        _fuse_reference(model)
    # PaddleClas's exporter ends a classifier in softmax (Arch.infer_add_softmax, default True), as ours does.
    model = paddle.nn.Sequential(model, paddle.nn.Softmax(axis=-1))
    return save_static(model, directory, [3, *image_size], log=lambda *a: None)


def latency_benchmark(models=(), references=(), runtimes=None, precisions=None, image_size=224, threads=2,
                      warmup=10, runs=100, rounds=20, with_reference=True, workdir=None, log=print,
                      interleave_models=False):
    """Time the exported `models` (registered names) at every runtime x precision, and their PaddleClas
    reference (plus the bare PaddleClas `references`, builder names) on Paddle Inference fp32.

    `image_size`: an int (square) or (height, width). `interleave_models`: time every model's cells in
    the same interleaved rounds (for ratios between models; default: one model after the other).

    Returns {"rows": [{model, implementation, variant, cells: {(runtime, precision): (median, min)}}],
    "columns", "checks" (notes per model, e.g. max |ours - reference| when the reference got our
    weights), settings, versions, CPU flags, load}. Exports go to `workdir` (default: a temporary
    directory, removed afterwards).
    """
    check_references(models, references, with_reference)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    args = (models, references, runtimes, precisions, size, threads, warmup, runs, rounds, with_reference)
    if workdir is not None:
        return _latency_benchmark(*args, workdir, log, interleave_models)
    workdir = tempfile.mkdtemp(prefix="ppbackbone-latency-")
    try:
        return _latency_benchmark(*args, workdir, log, interleave_models)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ours(name, workdir, image_size, onnx, int8, threads):
    """{("ppbackbone", variant): (dir, program file)} and the model (its weights feed the reference)."""
    ours = create_model(name)
    weights = save_weights(ours, os.path.join(workdir, f"{name}.safetensors"))
    rep = has_unfused_blocks(ours)
    variants = {}
    for fuse in ([True, False] if rep else [True]):
        variant = ("fused" if fuse else "unfused") if rep else "no Rep blocks"
        directory = os.path.join(workdir, f"{name}-ours-{'fused' if fuse else 'unfused'}")
        variants[("ppbackbone", variant)] = (directory, _export_ours(name, weights, directory, image_size, fuse,
                                                                     onnx, int8, threads))
    return variants, ours


def _reference(reference, label, ours, workdir, image_size, checks, gflops):
    """PaddleClas's fused export of `reference` (our weights copied in when the names match)."""
    model = build_reference(reference)
    if ours is not None:
        # Every tensor of ours must exist in the reference (which may hold more, e.g. PaddleClas's
        # placeholders for the fused convs, filled by re_parameterize()).
        ref_state, state = model.state_dict(), ours.state_dict()
        if all(k in ref_state and list(ref_state[k].shape) == list(v.shape) for k, v in state.items()):
            for key, value in state.items():
                ref_state[key].set_value(value)
            checks[label] = "weights copied"
        else:
            checks[label] = "reference parameter names differ: weights not copied"
    rep = _has_reference_rep(model)
    variant = "fused" if rep else "no Rep blocks"
    directory = os.path.join(workdir, f"{label}-paddleclas")
    variants = {(f"PaddleClas {reference}", variant): (directory, _export_reference(model, directory, image_size, rep))}
    gflops[(f"PaddleClas {reference}", variant)] = 2 * count_macs(model, image_size) / 1e9  # fused by the export
    return variants


def _model_backends(name, bare_reference, label, columns, batch, settings, checks, gflops):
    """(variants, backends) of one model: ours fused/unfused and its PaddleClas reference, exported and
    loaded; `checks[label]` notes the reference comparison, `gflops[(implementation, variant)]` each
    variant's GFLOPs (2 x the MACs of its convolutions and matmuls)."""
    workdir, image_size, onnx, int8, threads, with_reference = settings
    paddle.seed(0)
    variants, ours = _ours(name, workdir, image_size, onnx, int8, threads) if name else ({}, None)
    reference = bare_reference or (reference_name(name) if with_reference else None)
    if reference:
        variants.update(_reference(reference, label, ours, workdir, image_size, checks, gflops))
    elif name is not None and with_reference:
        checks[label] = "no PaddleClas builder in the registry entry: reference not timed"
    if ours is not None:  # after the reference took its weights (fusion renames them)
        for implementation, variant in variants:
            if variant == "unfused":
                gflops[(implementation, variant)] = 2 * count_macs(ours, image_size) / 1e9
        reparameterize(ours)
        gflops[next(k for k in variants if k[0] == "ppbackbone" and k[1] != "unfused")] = (
            2 * count_macs(ours, image_size) / 1e9)
    backends = {}
    for (implementation, variant), (directory, model_file) in variants.items():
        # PaddleClas's export is timed as PaddleClas deploys it: Paddle Inference, fp32.
        cells = columns if implementation == "ppbackbone" else [("paddle", "fp32")]
        for runtime, precision in cells:
            backends[(implementation, variant, runtime, precision)] = _backend(directory, model_file, runtime,
                                                                               precision, threads)
    if name is not None and reference:
        checks[label] = "; ".join([checks[label], _compare_programs(variants)])
        if checks[label].startswith("weights copied"):
            ours_key = next(k for k in backends if k[0] == "ppbackbone" and k[2:] == ("paddle", "fp32"))
            ref_key = next(k for k in backends if k[0].startswith("PaddleClas"))
            a, b = backends[ours_key].run(batch)[0], backends[ref_key].run(batch)[0]
            checks[label] += f"; max |ppbackbone - PaddleClas| = {float(np.abs(a - b).max()):.3g}"
    return variants, backends


def _rows(label, variants, medians, gflops):
    """Table rows of one model from the timings (keys: implementation, variant, runtime, precision[, model])."""
    return [{"model": label, "implementation": implementation, "variant": variant,
             "gflops": round(gflops[(implementation, variant)], 4) if (implementation, variant) in gflops else None,
             "cells": {key[2:4]: value for key, value in medians.items()
                       if key[:2] == (implementation, variant) and key[4:] in ((), (label,))}}
            for implementation, variant in variants]


def _latency_benchmark(models, references, runtimes, precisions, image_size, threads, warmup, runs, rounds,
                       with_reference, workdir, log, interleave_models=False):
    runtimes = list(runtimes or available_runtimes())
    precisions = [p for p in (precisions or available_precisions(runtimes)) if p in available_precisions(runtimes)]
    columns = _columns(runtimes, precisions)
    load_before = _load_average()
    settings = (workdir, image_size, any(r != "paddle" for r in runtimes), "int8" in precisions, threads,
                with_reference)
    batch = np.random.RandomState(0).standard_normal([1, 3, *image_size]).astype("float32")
    rows, checks, pending = [], {}, []
    log(f"== fp32 GEMM probe ({threads} threads)")
    gemm = gemm_rate(threads)
    for name, bare_reference in [(name, None) for name in models] + [(None, ref) for ref in references]:
        label = name or bare_reference
        log(f"== {label}: exporting")
        gflops = {}
        variants, backends = _model_backends(name, bare_reference, label, columns, batch, settings, checks, gflops)
        if interleave_models:  # timed below, together with the other models
            pending.append((label, variants, backends, gflops))
            continue
        log(f"== {label}: timing {len(backends)} runtime/precision/variant cells ({rounds} interleaved rounds)")
        rows += _rows(label, variants, _time_interleaved(backends, batch, warmup, runs, rounds), gflops)
        del backends
    if pending:
        together = {key + (label,): b for label, _, backends, _ in pending for key, b in backends.items()}
        log(f"== timing {len(together)} cells of {len(pending)} models in the same {rounds} interleaved rounds")
        medians = _time_interleaved(together, batch, warmup, runs, rounds)
        for label, variants, _, gflops in pending:
            rows += _rows(label, variants, medians, gflops)
    flags = [f for f in cpu_features() if f.startswith(("avx", "amx", "fma", "f16c"))]
    return {"rows": rows, "columns": columns, "checks": checks, "runtimes": runtimes, "precisions": precisions,
            "image_size": list(image_size), "threads": threads, "interleave_models": interleave_models,
            "versions": _versions(), "cpu_flags": flags, "gemm": gemm, "load_average": [load_before, _load_average()],
            "cpus": os.cpu_count()}


def _load_average():
    """1-minute load average (other processes on the machine skew absolute figures; ratios less)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _versions():
    out = {"paddle": paddle.__version__}
    for module in ("paddle2onnx", "onnxruntime", "openvino"):
        try:
            out[module] = importlib.import_module(module).__version__
        except (ImportError, AttributeError):
            pass
    return out


def _choice(row):
    """The fastest cell of a row: (runtime, precision)."""
    return min(row["cells"], key=lambda cell: row["cells"][cell][0])


def format_markdown(result):
    """The figures as a Markdown table (the fastest cell of each ppbackbone row in bold, ppbackbone's
    fused choice marked), then the ratios the targets are stated in."""
    columns = [tuple(c) for c in result["columns"]]
    head = ["model", "implementation", "variant"] + [f"{RUNTIME_LABELS[r]} {p}" for r, p in columns]
    height, width = result["image_size"]
    interleaved = ", all models in the same interleaved rounds" if result.get("interleave_models") else ""
    lines = [f"Batch 1, {height}x{width}, {result['threads']} threads{interleaved}; median (min) ms; "
             f"ratios from the medians. Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) +
             f". Machine: {result['cpus']} CPUs ({' '.join(result['cpu_flags'])}), 1-min load average "
             f"{result['load_average'][0]} before / {result['load_average'][1]} after the run. int8 timed on "
             f"random calibration (accuracy: tools/export.py --precision int8).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        best = _choice(row) if row["implementation"] == "ppbackbone" else None
        cells = []
        for column in columns:
            if column not in row["cells"]:
                cells.append("-")
                continue
            median, low = row["cells"][column]
            text = f"{median:.2f} ({low:.2f})"
            cells.append(f"**{text}** <-" if column == best and row["variant"] != "unfused" else
                         f"**{text}**" if column == best else text)
        lines.append("| " + " | ".join([row["model"], row["implementation"], row["variant"]] + cells) + " |")
    lines += ["", "`<-`: the fastest cell of ppbackbone's export, what Predictor(runtime=\"auto\") picks when "
                  "the export is verified at that precision (tools/export.py --precision)."]
    lines += _ratio_lines(result)
    floor = format_floor(result, {c: f"{RUNTIME_LABELS[c[0]]} {c[1]}" for c in columns})
    lines += [""] + floor if floor else []
    if result["checks"]:
        lines += [""] + [f"- {model}: {note}" for model, note in result["checks"].items()]
    return "\n".join(lines)


def _ratio_lines(result):
    """The table of ratios the issue's targets are stated in (one line per model), or []."""
    ratios, lines = [], []
    by_model = {}
    for row in result["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    for model, rows in by_model.items():
        ours = next((r for r in rows if r["implementation"] == "ppbackbone" and r["variant"] != "unfused"), None)
        unfused = next((r for r in rows if r["implementation"] == "ppbackbone" and r["variant"] == "unfused"), None)
        ref = next((r for r in rows if r["implementation"].startswith("PaddleClas")), None)
        if ours is None:
            continue
        choice = _choice(ours)
        fp32 = {c: v for c, v in ours["cells"].items() if c[1] == "fp32"}
        best_fp32 = min(fp32, key=lambda c: fp32[c][0])
        line = f"| {model} | {choice[0]} {choice[1]} {ours['cells'][choice][0]:.2f} ms"
        if ref is not None:
            baseline = ref["cells"][("paddle", "fp32")][0]
            line += (f" | {baseline:.2f} ms | **{baseline / ours['cells'][choice][0]:.2f}x** | "
                     f"{best_fp32[0]} {baseline / fp32[best_fp32][0]:.2f}x")
        else:
            line += " | - | - | -"
        line += f" | {fp32[best_fp32][0] / fp32[('paddle', 'fp32')][0]:.2f}x" if ("paddle", "fp32") in fp32 else " | -"
        if unfused is not None and choice in unfused["cells"]:
            line += f" | {unfused['cells'][choice][0] / ours['cells'][choice][0]:.2f}x"
        else:
            line += " | -"
        ratios.append(line + " |")
    if ratios:
        lines += ["", "| model | choice (fastest, ppbackbone fused) | PaddleClas export, Paddle Inference fp32 | "
                      "speed-up of the choice | speed-up of the fastest fp32 | fastest fp32 / Paddle fp32 (ours) | "
                      "unfused / fused (choice) |", "|---|---|---|---|---|---|---|"] + ratios
    return lines


def result_to_json(result):
    """`result` (latency_benchmark's) as JSON-able data: cells as a list of {runtime, precision, median_ms,
    min_ms, floor_fraction}, each row with its floor_ms; `result_from_json` reads it back."""
    gemm = result.get("gemm")
    rows = [dict(row, floor_ms=floor_ms(row, gemm),
                 cells=[{"runtime": r, "precision": p, "median_ms": m, "min_ms": low,
                         "floor_fraction": floor_fraction(row, (r, p), gemm)}
                        for (r, p), (m, low) in row["cells"].items()]) for row in result["rows"]]
    return dict(result, rows=rows, columns=[list(c) for c in result["columns"]])


def result_from_json(data):
    """A result as latency_benchmark returns it, from `result_to_json`'s data (cells keyed by (runtime, precision))."""
    rows = [{k: v for k, v in dict(row, cells={(c["runtime"], c["precision"]): (c["median_ms"], c["min_ms"])
                                             for c in row["cells"]}).items() if k != "floor_ms"}
            for row in data["rows"]]
    return dict(data, rows=rows, columns=[tuple(c) for c in data["columns"]])


def plot_latency(result, path):
    """Draw `result` (latency_benchmark's) as runtime x precision bars per model row into `path` (PNG),
    titled with the machine and its load."""
    from ..engine.plots import latency_bars
    load = result["load_average"]
    height, width = result["image_size"]
    title = (f"batch 1, {height}x{width}, {result['threads']} threads; "
             f"{result['cpus']} CPUs ({' '.join(result['cpu_flags'][:6])}), load {load[0]}/{load[1]}")
    return latency_bars(result["rows"], path, title=title)

