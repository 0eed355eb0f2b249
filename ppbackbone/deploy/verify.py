"""Checking an export against the dygraph model: the outputs' difference relative to their scale, and the
reload with Paddle Inference (CPU, oneDNN) with its batch-1 latency."""
import os
import time

import numpy as np

from ..errors import ExportError
from .export_dir import PARAMS_FILE
from .runtimes import PaddleBackend
from .staging import _blame_full_disk


def _compare(reference, got, names, tolerance, what):
    """(max abs difference, max difference / output scale) over the outputs; raises ExportError when
    an output differs by more than `tolerance` x its scale (max(1, max |dygraph output|))."""
    if len(got) != len(reference):
        raise ExportError(f"{what} returned {len(got)} outputs, the dygraph model {len(reference)}")
    worst, worst_relative = 0.0, 0.0
    for name, ref, out in zip(names, reference, got):
        if tuple(ref.shape) != tuple(out.shape):
            raise ExportError(f"{what} output {name!r} has shape {list(out.shape)}, the dygraph model "
                              f"{list(ref.shape)}")
        diff = float(np.abs(ref.astype("float64") - out.astype("float64")).max())
        scale = max(1.0, float(np.abs(ref).max()))
        if not np.isfinite(diff) or diff > tolerance * scale:
            raise ExportError(f"VERIFICATION FAILED: {what} output {name!r} differs from the dygraph model by "
                              f"{diff:.3g} (allowed {tolerance * scale:.3g} = {tolerance:g} x output scale "
                              f"{scale:.3g}); the export was not written")
        worst, worst_relative = max(worst, diff), max(worst_relative, diff / scale)
    return worst, worst_relative


def _median_latency_ms(backend, batch, runs):
    backend.run(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.run(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def _verify_paddle(tmp_dir, model_file, sample, reference, names, tolerance, threads, latency_runs, info, log):
    """Reload with Paddle Inference (CPU, oneDNN) and compare with the dygraph model; returns the figures
    for inference.yml's Verification and records the output names Paddle Inference really shows."""
    try:
        backend = PaddleBackend(os.path.join(tmp_dir, model_file), os.path.join(tmp_dir, PARAMS_FILE),
                                device="cpu", threads=threads, onednn=True)
    except ValueError as err:  # ModelDirError
        _blame_full_disk(tmp_dir)
        raise ExportError(f"VERIFICATION FAILED: the saved model does not load in Paddle Inference: {err}") from None
    try:
        diff, relative = _compare(reference, backend.run(sample), names, tolerance, "Paddle Inference (CPU, oneDNN)")
    except ExportError:
        _blame_full_disk(tmp_dir)
        raise
    figures = {"paddle_inference_max_abs_diff": diff, "paddle_inference_max_rel_diff": relative}
    for entry, actual in zip(info["Outputs"], backend.output_names):
        entry["name"] = actual  # ours unless renaming was not possible (legacy format)
    log(f"Verified with Paddle Inference (CPU, oneDNN, {threads} threads): max abs diff {diff:.3g} vs the "
        f"dygraph model ({relative:.2g} of the output scale; tolerance {tolerance:g})")
    if latency_runs:
        latency = _median_latency_ms(backend, sample[:1], latency_runs)
        figures["paddle_inference_latency_ms"] = round(latency, 3)
        log(f"Paddle Inference batch-1 {sample.shape[2]}x{sample.shape[3]} latency: {latency:.2f} ms "
            f"(median of {latency_runs}, {threads} threads)")
    return figures
