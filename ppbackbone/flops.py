"""The two halves of a compute floor: a model's multiply-accumulates (by hooks on Conv2D and Linear) and
this machine's measured fp32 matrix-multiply rate (a short GEMM probe).

`paddle.flops` raises TypeError on Paddle 3.3.1 with numpy 2.x, hence this counter. It counts the
MACs of convolutions and fully-connected layers only (the figure papers publish as "FLOPs"); one MAC is
two floating-point operations. `floor ms = 2 * MACs / GEMM rate`: the time the model's convolutions and
matmuls would take at the best dense fp32 rate this machine reaches.
"""
import contextlib
import time

import numpy as np
import paddle
import paddle.nn as nn

__all__ = ["count_macs", "gemm_rate"]


def count_macs(model, input_size=224, batch=1):
    """MACs of one eval forward of `model` on a [batch, 3, H, W] zero input; `input_size` is a side or (H, W)."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    total = [0]

    def conv_hook(layer, inputs, output):
        kernel = layer.weight.shape  # [out, in/groups, kh, kw]
        total[0] += int(output.numel()) * kernel[1] * kernel[2] * kernel[3]

    def linear_hook(layer, inputs, output):
        total[0] += int(output.numel()) * layer.weight.shape[0]

    hooks = []
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, nn.Conv2D):
            hooks.append(layer.register_forward_post_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            hooks.append(layer.register_forward_post_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros([batch, 3, height, width]))
    finally:
        for hook in hooks:
            hook.remove()
        if was_training:
            model.train()
    return total[0]


def _blas_limits(threads):
    """A context limiting numpy's BLAS to `threads` (threadpoolctl), or None when that cannot be done."""
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=int(threads), user_api="blas")


def gemm_rate(threads=None, size=1024, seconds=1.0):
    """This machine's fp32 matrix-multiply rate, measured: numpy float32 `size` x `size` products repeated
    for about `seconds` with the BLAS limited to `threads` (when threadpoolctl is installed); the rate of
    the fastest product (other processes only slow a run down, so the fastest is the closest to the peak).

    Returns {"gflops": rate in GFLOP/s, "size", "threads": the BLAS threads (None: not limited, the BLAS
    default), "runs", "blas": the library numpy uses}."""
    rng = np.random.RandomState(0)
    a, b = (rng.standard_normal((size, size)).astype("float32") for _ in range(2))
    out = np.empty((size, size), dtype="float32")
    limits = _blas_limits(threads)
    with limits if limits is not None else contextlib.nullcontext():
        np.matmul(a, b, out=out)  # warm-up: thread start, page faults
        best, runs, start = float("inf"), 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < seconds:
            begin = time.perf_counter()
            np.matmul(a, b, out=out)
            best, runs = min(best, time.perf_counter() - begin), runs + 1
    return {"gflops": round(2.0 * size ** 3 / best / 1e9, 1), "size": size,
            "threads": int(threads) if limits is not None else None, "runs": runs, "blas": _blas_name()}


def _blas_name():
    """The BLAS numpy was built with (name and version), as numpy reports it."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.25 has no mode="dicts"; its layout is not an API
        return "numpy's BLAS"
