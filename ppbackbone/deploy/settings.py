"""Runtime settings: what a backend sets on its runtime besides threads and precision, their defaults and
their checks. `runtime_settings(runtime, overrides)` is what a backend applies; each backend's
`applied_settings()` reads them back from the runtime.

The defaults are the settings that measured fastest at batch 1 on this project's reference models, A/B in
one run (docs/deploy.md, "Runtime settings"); None leaves the runtime's own default.
"""
from ..errors import ConfigError

__all__ = ["SETTINGS", "runtime_settings", "describe_settings"]

_FLAG = (True, False)
_MAYBE_FLAG = (None, True, False)
# runtime -> key -> (default, allowed values or "int>=0"/"int>=1"/"int>=1|None", what it sets)
SETTINGS = {
    "paddle": {
        "ir_optim": (True, _FLAG, "Paddle Inference's graph passes (Config.switch_ir_optim)"),
        "onednn_cache_capacity": (0, "int>=0", "oneDNN kernels kept per input shape (Config.set_onednn_cache_capacity;"
                                               " 0: no limit)"),
        "new_executor": (None, _MAYBE_FLAG, "Config.enable_new_executor (None: Paddle's default)"),
    },
    "onnxruntime": {
        "graph_optimization_level": ("all", ("disable", "basic", "extended", "all"),
                                     "SessionOptions.graph_optimization_level (ORT_ENABLE_*)"),
        # off: a worker that spins after a run takes a core from the caller's next preprocessing or from another
        # session in the process (runtime="auto" and the benchmark interleave several); measured A/B, spinning
        # on was 0.97x (hgnetv2_b4, pplcnetv2_base) to 0.49x (pplcnet_x1_0) of off by the median
        "allow_spinning": (False, _FLAG, "session.intra_op.allow_spinning: idle worker threads spin for work"),
        "execution_mode": ("sequential", ("sequential", "parallel"), "SessionOptions.execution_mode"),
    },
    "openvino": {
        "performance_hint": ("LATENCY", ("LATENCY", "THROUGHPUT"), "PERFORMANCE_HINT"),
        "num_streams": (None, "int>=1|None", "NUM_STREAMS (None: what the hint picks)"),
        "cpu_pinning": (None, _MAYBE_FLAG, "ENABLE_CPU_PINNING (None: OpenVINO's default)"),
        "tbb_partitioner": (None, (None, "STATIC", "AUTO"), "TBB_PARTITIONER (None: OpenVINO's default)"),
    },
}


def _fits(value, allowed):
    if isinstance(allowed, tuple):
        return any(value is a or (type(value) is type(a) and value == a) for a in allowed)
    if value is None:
        return allowed.endswith("|None")
    return isinstance(value, int) and not isinstance(value, bool) and value >= int(allowed[5])


def runtime_settings(runtime, overrides=None):
    """{key: value} a backend of `runtime` applies: SETTINGS' defaults, then `overrides` (a dict). An unknown
    key or a value out of range is a ConfigError naming the runtime, the key, the value and what is allowed."""
    known = SETTINGS[runtime]
    out = {key: default for key, (default, _, _) in known.items()}
    for key, value in (overrides or {}).items():
        if key not in known:
            raise ConfigError(f"settings for runtime {runtime!r}: unknown key {key!r}; allowed: {', '.join(known)}")
        allowed = known[key][1]
        if not _fits(value, allowed):
            shown = (" or ".join(map(repr, allowed)) if isinstance(allowed, tuple) else
                     f"an integer >= {allowed[5]}" + (" or None" if allowed.endswith("|None") else ""))
            raise ConfigError(f"settings for runtime {runtime!r}: {key}={value!r}; expected {shown}")
        out[key] = value
    return out


def describe_settings(runtime, settings):
    """'key=value, ...' of the settings that differ from the defaults ('defaults' when none does)."""
    changed = [f"{k}={v}" for k, v in settings.items() if v != SETTINGS[runtime][k][0]]
    return ", ".join(changed) or "defaults"
