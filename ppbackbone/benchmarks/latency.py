"""Latency of exported models: ppbackbone vs the PaddleClas implementation, fused vs unfused, on
Paddle Inference (CPU, oneDNN) and, when installed, ONNX Runtime and OpenVINO (both fp32).

Each variant is exported the same way (eval -> [fuse] -> softmax -> to_static with a dynamic batch ->
jit.save, as PaddleClas's exporter does) from the same weights: ours are random (the figures do not depend on the
values) and copied into the reference model when its parameter names match. Variants are timed in
interleaved rounds so that load from other processes spreads over all of them; the figure is the
median of every timed run, in milliseconds, batch 1.
"""
import importlib
import os
import re
import shutil
import site
import sys
import tempfile
import time

import numpy as np
import paddle

from ..arch import create_model, has_unfused_blocks, model_info
from ..export import convert_to_onnx, export_model, program_op_counts, save_static
from ..export_dir import ONNX_FILE, PARAMS_FILE
from ..runtimes import OnnxRuntimeBackend, OpenVinoBackend, PaddleBackend
from ..weights import save_weights

__all__ = ["latency_benchmark", "available_runtimes", "build_reference", "format_markdown", "RUNTIME_LABELS"]

RUNTIME_LABELS = {"paddle": "Paddle Inference (oneDNN)", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def available_runtimes():
    """Runtimes usable here: paddle always; onnxruntime/openvino when they and paddle2onnx import."""
    found = ["paddle"]
    for runtime, modules in (("onnxruntime", ("paddle2onnx", "onnx", "onnxruntime")),
                             ("openvino", ("paddle2onnx", "onnx", "openvino"))):
        try:
            for module in modules:
                importlib.import_module(module)
            found.append(runtime)
        except ImportError:
            pass
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
            raise ImportError(f"PaddleClas is not importable ({err}); install paddleclas to benchmark "
                              f"the reference") from None


def reference_name(name):
    """The PaddleClas builder named in `name`'s registry entry (`reference="PaddleClas X..."`), or None."""
    match = re.search(r"PaddleClas ([A-Za-z0-9_]+)(?![A-Za-z0-9_(])", model_info(name).reference or "")
    return match.group(1) if match else None


def build_reference(reference, class_num=1000):
    """A PaddleClas backbone by its builder name (`PPHGNetV2_B0`, `PPLCNetV2_base`)."""
    module = _paddleclas_backbones()
    builder = getattr(module, reference, None)
    if builder is None:
        raise ValueError(f"PaddleClas has no backbone {reference!r}")
    return builder(class_num=class_num)


def _fuse_reference(model):
    """PaddleClas's exporter calls re_parameterize() on every sublayer that has it."""
    for layer in model.sublayers():
        if callable(getattr(layer, "re_parameterize", None)):
            layer.re_parameterize()
    return model


def _has_reference_rep(model):
    return any(callable(getattr(layer, "re_parameterize", None)) for layer in model.sublayers())


def _backends(model_dir, model_file, runtimes, threads):
    out = {}
    for runtime in runtimes:
        if runtime == "paddle":
            out[runtime] = PaddleBackend(os.path.join(model_dir, model_file), os.path.join(model_dir, PARAMS_FILE),
                                         threads=threads)
        elif runtime == "onnxruntime":
            out[runtime] = OnnxRuntimeBackend(os.path.join(model_dir, ONNX_FILE), threads=threads)
        else:
            out[runtime] = OpenVinoBackend(os.path.join(model_dir, ONNX_FILE), threads=threads)
    return out


def _time_interleaved(backends, batch, warmup, runs, rounds):
    """{key: (median ms, min ms)}. Keys end with the runtime; the variants of one runtime are timed
    in interleaved rounds (what is compared shares the machine's state), one runtime after the
    other with a pause between, so that one runtime's idle spinning threads do not slow another's."""
    times = {key: [] for key in backends}
    per_round = max(1, runs // rounds)
    for runtime in dict.fromkeys(key[-1] for key in backends):
        group = {key: b for key, b in backends.items() if key[-1] == runtime}
        time.sleep(0.5)
        for backend in group.values():
            for _ in range(warmup):
                backend.run(batch)
        for _ in range(rounds):
            for key, backend in group.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    backend.run(batch)
                    times[key].append((time.perf_counter() - start) * 1000.0)
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


def _export_ours(name, weights, directory, image_size, fuse, onnx, threads):
    config = {"Arch": {"name": name}, "Global": {"image_shape": [3, image_size, image_size]}}
    result = export_model(config, save_dir=directory, weights=weights, fuse=fuse, onnx=onnx, threads=threads,
                          latency_runs=0, log=lambda *a: None)
    return result.inference_config["Model"]["model_file"]


def _export_reference(model, directory, image_size, fuse, onnx):
    os.makedirs(directory, exist_ok=True)
    model.eval()
    if fuse:
        _fuse_reference(model)
    # PaddleClas's exporter ends a classifier in softmax (Arch.infer_add_softmax, default True), as ours does.
    model = paddle.nn.Sequential(model, paddle.nn.Softmax(axis=-1))
    model_file = save_static(model, directory, [3, image_size, image_size], log=lambda *a: None)
    if onnx:
        convert_to_onnx(os.path.join(directory, model_file), os.path.join(directory, PARAMS_FILE),
                        os.path.join(directory, ONNX_FILE))
    return model_file


def latency_benchmark(models=(), references=(), runtimes=None, image_size=224, threads=2, warmup=10, runs=100,
                      rounds=20, with_reference=True, workdir=None, log=print):
    """Time the exported `models` (registered names) and bare PaddleClas `references` (builder names).

    Returns {"rows": [{model, implementation, variant, <runtime>: median ms}], "checks": notes per
    model (e.g. max |ours - reference| when the reference got our weights), settings, versions}.
    Exports go to `workdir` (default: a temporary directory, removed afterwards).
    """
    if workdir is not None:
        return _latency_benchmark(models, references, runtimes, image_size, threads, warmup, runs, rounds,
                                  with_reference, workdir, log)
    workdir = tempfile.mkdtemp(prefix="ppbackbone-latency-")
    try:
        return _latency_benchmark(models, references, runtimes, image_size, threads, warmup, runs, rounds,
                                  with_reference, workdir, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _latency_benchmark(models, references, runtimes, image_size, threads, warmup, runs, rounds, with_reference,
                       workdir, log):
    runtimes = list(runtimes or available_runtimes())
    load_before = _load_average()
    onnx = any(r != "paddle" for r in runtimes)
    batch = np.random.RandomState(0).standard_normal([1, 3, image_size, image_size]).astype("float32")
    rows, checks = [], {}
    jobs = [(name, None) for name in models] + [(None, ref) for ref in references]
    for name, bare_reference in jobs:
        label = name or bare_reference
        log(f"== {label}: exporting")
        variants = {}  # (implementation, variant) -> export dir, program file
        paddle.seed(0)
        if name is not None:
            ours = create_model(name)
            weights = save_weights(ours, os.path.join(workdir, f"{name}.safetensors"))
            rep = has_unfused_blocks(ours)
            for fuse in ([True, False] if rep else [True]):
                variant = ("fused" if fuse else "unfused") if rep else "no Rep blocks"
                directory = os.path.join(workdir, f"{name}-ours-{'fused' if fuse else 'unfused'}")
                variants[("ppbackbone", variant)] = (directory, _export_ours(name, weights, directory, image_size,
                                                                            fuse, onnx, threads))
        reference = bare_reference or (reference_name(name) if with_reference else None)
        if reference:
            probe = build_reference(reference)
            rep = _has_reference_rep(probe)
            state = ours.state_dict() if name is not None else None
            for fuse in ([True, False] if rep else [True]):
                model = build_reference(reference)
                if state is not None:
                    # Every tensor of ours must exist in the reference (which may hold more, e.g.
                    # PaddleClas's placeholders for the fused convs, filled by re_parameterize()).
                    ref_state = model.state_dict()
                    if all(k in ref_state and list(ref_state[k].shape) == list(v.shape) for k, v in state.items()):
                        for key, value in state.items():
                            ref_state[key].set_value(value)
                        checks.setdefault(label, "weights copied")
                    else:
                        checks[label] = "reference parameter names differ: weights not copied"
                variant = ("fused" if fuse else "unfused") if rep else "no Rep blocks"
                directory = os.path.join(workdir, f"{label}-paddleclas-{'fused' if fuse else 'unfused'}")
                variants[(f"PaddleClas {reference}", variant)] = (directory, _export_reference(
                    model, directory, image_size, fuse, onnx))
        elif name is not None and with_reference:
            checks[label] = "no PaddleClas builder in the registry entry: reference not timed"
        backends = {}
        for key, (directory, model_file) in variants.items():
            for runtime, backend in _backends(directory, model_file, runtimes, threads).items():
                backends[key + (runtime,)] = backend
        if name is not None and reference:
            checks[label] = "; ".join([checks[label], _compare_programs(variants)])
        if name is not None and reference and checks[label].startswith("weights copied"):
            ours_key = next(k for k in backends if k[0] == "ppbackbone" and k[2] == "paddle")
            ref_key = next(k for k in backends if k[0].startswith("PaddleClas") and k[2] == "paddle")
            a, b = backends[ours_key].run(batch)[0], backends[ref_key].run(batch)[0]
            checks[label] += f"; max |ppbackbone - PaddleClas| = {float(np.abs(a - b).max()):.3g}"
        log(f"== {label}: timing {len(backends)} runtime/variant pairs ({rounds} interleaved rounds)")
        medians = _time_interleaved(backends, batch, warmup, runs, rounds)
        for (implementation, variant) in variants:
            row = {"model": label, "implementation": implementation, "variant": variant}
            row.update({runtime: medians[(implementation, variant, runtime)][0] for runtime in runtimes})
            row["min"] = {runtime: medians[(implementation, variant, runtime)][1] for runtime in runtimes}
            rows.append(row)
        del backends
    return {"rows": rows, "checks": checks, "runtimes": runtimes, "image_size": image_size, "threads": threads,
            "versions": _versions(), "load_average": [load_before, _load_average()], "cpus": os.cpu_count()}


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


def format_markdown(result):
    """The figures as a Markdown table, then the ratios the targets are stated in."""
    runtimes = result["runtimes"]
    head = ["model", "implementation", "variant"] + [f"{RUNTIME_LABELS[r]} ms" for r in runtimes]
    lines = [f"Batch 1, {result['image_size']}x{result['image_size']}, {result['threads']} threads, fp32; "
             f"median (min) ms; ratios from the medians. Versions: " +
             ", ".join(f"{k} {v}" for k, v in result["versions"].items()) +
             f". Machine: {result['cpus']} CPUs, 1-min load average {result['load_average'][0]} before / "
             f"{result['load_average'][1]} after the run.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        lines.append("| " + " | ".join([row["model"], row["implementation"], row["variant"]] +
                                       [f"{row[r]:.2f} ({row['min'][r]:.2f})" for r in runtimes]) + " |")
    ratios = []
    by_model = {}
    for row in result["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    for model, rows in by_model.items():
        for impl in dict.fromkeys(r["implementation"] for r in rows):
            fused = next((r for r in rows if r["implementation"] == impl and r["variant"] == "fused"), None)
            unfused = next((r for r in rows if r["implementation"] == impl and r["variant"] == "unfused"), None)
            if fused and unfused:
                ratios.append(f"| {model} | {impl}: unfused / fused | " +
                              " | ".join(f"{unfused[r] / fused[r]:.2f}x" for r in runtimes) + " |")
        ours = [r for r in rows if r["implementation"] == "ppbackbone"]
        refs = [r for r in rows if r["implementation"].startswith("PaddleClas")]
        for a in ours:
            for b in refs:
                if a["variant"] == b["variant"]:
                    ratios.append(f"| {model} | PaddleClas / ppbackbone ({a['variant']}) | " +
                                  " | ".join(f"{b[r] / a[r]:.2f}x" for r in runtimes) + " |")
    if ratios:
        lines += ["", "| model | ratio (> 1: the first is slower) | " +
                  " | ".join(RUNTIME_LABELS[r] for r in runtimes) + " |",
                  "|" + "---|" * (2 + len(runtimes))] + ratios
    if result["checks"]:
        lines += [""] + [f"- {model}: {note}" for model, note in result["checks"].items()]
    return "\n".join(lines)
