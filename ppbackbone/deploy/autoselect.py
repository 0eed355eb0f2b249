"""Predictor(runtime="auto"): measure the installed runtimes x the verified precisions of an export
once on this machine, pick the fastest, and cache the choice in the export directory.

"Fastest" has two meanings (`objective`): "latency", the median time of one image (batch 1), or
"throughput", images per second at the batch size the Predictor runs (`batch_size`): a runtime that
wins at batch 1 may lose at batch 32, where the GEMMs are larger and per-call overheads shrink.

The cache (runtime_choice.json) is keyed by what the figures depend on: the CPU's model and feature
flags, the runtime versions, the thread count, the objective and the batch size it was measured at.
Another machine, an upgraded runtime, another thread count, objective or batch size measures again. Only precisions the export was verified at (inference.yml's
Precisions) are candidates, each on the runtimes it was verified on, so the choice never trades
accuracy the exporter did not check.
"""
import hashlib
import json
import os
import time

import numpy as np

from ..errors import ConfigError, check_positive_int
from ..progress import progress
from .export_dir import CHOICE_FILE, write_text_atomic
from .settings import runtime_settings
from .runtimes import (RUNTIMES, RUNTIME_PRECISIONS, bf16_supported, cpu_features, create_backend, installed_runtimes,
                       runtime_versions)

__all__ = ["candidates", "choose", "machine_key", "measure", "choice_key", "OBJECTIVES"]

_CHOICE_VERSION = 1
OBJECTIVES = ("latency", "throughput")


def machine_key(threads):
    """What a measurement depends on: CPU model and flags, runtime versions, threads, default settings."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    flags = " ".join(cpu_features())
    return {"cpu": model, "cpu_flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16],
            "cores": os.cpu_count(), "threads": int(threads), "versions": runtime_versions(),
            # the backends' default settings: when they change, the choice is measured again
            "settings": {runtime: runtime_settings(runtime) for runtime in RUNTIMES}}


def choice_key(threads, objective="latency", batch_size=1):
    """The cache key of a choice: the machine (machine_key), what was optimised and at which batch size
    (latency: always batch 1)."""
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} is not valid: expected {' or '.join(OBJECTIVES)}")
    batch_size = 1 if objective == "latency" else check_positive_int(batch_size, "batch_size")
    return dict(machine_key(threads), objective=objective, batch=batch_size)


def candidates(export):
    """[(runtime, precision)] this machine can run for `export`: verified precisions on the runtimes
    they were verified on (directories that do not record it: fp32 on every runtime it has files for),
    installed here, bf16 only on CPUs that compute it."""
    installed = installed_runtimes()
    out = []
    for precision, record in export.precisions.items():
        if precision == "bf16" and not bf16_supported():
            continue
        verified = (record or {}).get("verified_on")
        if verified is None:  # format 1 and PaddleClas directories: fp32 files as they are
            verified = ["paddle"] + (["onnxruntime", "openvino"] if export.onnx_file else [])
        for runtime in verified:
            if runtime in installed and precision in RUNTIME_PRECISIONS[runtime]:
                out.append((runtime, precision))
    return out


def measure(backends, batch, warmup=3, runs=20, rounds=4):
    """{(runtime, precision): median ms} of runs on `batch`, interleaved in rounds so that load from other
    processes spreads over every candidate."""
    times = {key: [] for key in backends}
    per_round = max(1, runs // rounds)
    bar = progress(total=len(backends) * (warmup + rounds * per_round), unit="run",
                   desc=f"runtime=auto: timing {len(backends)} runtime/precision candidates")
    for backend in backends.values():
        for _ in range(warmup):
            backend.run(batch)
            bar.update()
    for _ in range(rounds):
        for key, backend in backends.items():
            for _ in range(per_round):
                start = time.perf_counter()
                backend.run(batch)
                times[key].append((time.perf_counter() - start) * 1000.0)
                bar.update()
    bar.close()
    return {key: float(np.median(values)) for key, values in times.items()}


def _read_cache(path, key):
    if not os.path.isfile(path):  # absent, or not a file (a FIFO would block): measured again, then replaced
        return None
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("version") != _CHOICE_VERSION or cached.get("key") != key:
        return None
    return cached


def choose(export, input_shape, threads, device="cpu", onednn=True, log=print, objective="latency", batch_size=1):
    """(backend, record) for the fastest verified (runtime, precision) of `export` here: the lowest batch-1
    median for objective "latency", the most images per second at `batch_size` for "throughput". The
    record ({choice, measurements_ms, key, objective, batch, cached}) is also written to
    <export>/runtime_choice.json."""
    key = choice_key(threads, objective, batch_size)
    found = candidates(export)
    if not found:
        raise ConfigError(f"runtime='auto': no runtime installed here runs {export.path} (verified: "
                         f"{dict((p, (r or {}).get('verified_on')) for p, r in export.precisions.items())}; "
                         f"installed: {', '.join(installed_runtimes())})")
    path = export.file(CHOICE_FILE)
    cached = _read_cache(path, key)
    if cached and tuple(cached["choice"]) in found:
        runtime, precision = cached["choice"]
        log(f"runtime=auto: {runtime} {precision} (measured earlier on this machine for {objective} at batch "
            f"{key['batch']}, cached in {path})")
        backend = create_backend(export, runtime, precision, device=device, threads=threads, onednn=onednn)
        return backend, dict(cached, cached=True)
    backends = {(r, p): create_backend(export, r, p, device=device, threads=threads, onednn=onednn) for r, p in found}
    batch = np.random.RandomState(0).standard_normal([key["batch"]] + list(input_shape)).astype("float32")
    figures = measure(backends, batch, runs=20 if key["batch"] == 1 else 8, rounds=4)
    choice = min(figures, key=figures.get)  # per batch: the same order as per image
    ranked = sorted(figures.items(), key=lambda kv: kv[1])
    record = {"version": _CHOICE_VERSION, "key": key, "choice": list(choice), "objective": objective,
              "measurements_ms": [{"runtime": r, "precision": p, "median_ms": round(ms, 3),
                                   "images_per_s": round(key["batch"] * 1000.0 / ms, 2)} for (r, p), ms in ranked],
              "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "batch": key["batch"]}
    try:
        write_text_atomic(path, json.dumps(record, indent=1) + "\n")
        where = f"cached in {path}"
    except OSError as err:  # a read-only export directory still predicts; it measures again next time
        where = f"not cached ({path}: {err.strerror or err})"
    if objective == "latency":
        shown = "the fastest of " + ", ".join(f"{r} {p} {ms:.2f} ms" for (r, p), ms in ranked)
    else:
        shown = "the highest throughput of " + ", ".join(f"{r} {p} {key['batch'] * 1000.0 / ms:.1f} images/s"
                                                         for (r, p), ms in ranked)
    log(f"runtime=auto: picked {choice[0]} {choice[1]}, {shown} (batch {key['batch']}, {threads} threads, median); "
        f"{where}")
    for other in backends:
        if other != choice:
            backends[other] = None
    return backends[choice], dict(record, cached=False)
