"""Inference runtimes: one small backend class per runtime, each `run(batch) -> [arrays]`.

    PaddleBackend(model_file, params_file, precision="fp32"|"bf16")   Paddle Inference (oneDNN on CPU)
    OnnxRuntimeBackend(onnx_file)                                     ONNX Runtime (CPU); fp32 or int8 QDQ files
    OpenVinoBackend(onnx_file, precision="fp32"|"bf16")               OpenVINO (CPU)

The exporter verifies with them and the Predictor runs with them; neither imports the other. Each takes
`settings` (deploy/settings.py: graph passes, spinning, performance hints, ...; the defaults are measured) and
reports what its runtime applied with `applied_settings()`.
`create_backend(export_dir, runtime, precision)` picks the file of an export directory for a
runtime x precision pair. bf16 needs a CPU with AVX512-BF16 (or AMX), checked here at run time.
"""
import contextlib
import importlib
import os
import threading

import numpy as np

from ..errors import ConfigError, UserError
from .export_dir import ONNX_FILE, ONNX_INT8_FILE, ModelDirError
from . import signal_stack
from .settings import runtime_settings

__all__ = ["PaddleBackend", "OnnxRuntimeBackend", "OpenVinoBackend", "create_backend", "RUNTIMES", "DEVICES",
           "PRECISIONS", "RUNTIME_PRECISIONS", "RuntimeNotInstalled", "RUNTIME_LABELS", "BF16_FLAGS", "PrecisionError", "cpu_features", "bf16_supported",
           "require_bf16", "installed_runtimes", "int8_file", "runtime_versions", "default_threads"]

RUNTIMES = ("paddle", "onnxruntime", "openvino")
DEVICES = ("cpu", "gpu")
PRECISIONS = ("fp32", "bf16", "int8")
# What each runtime runs here: bf16 through oneDNN / OpenVINO's CPU plugin, int8 as the QDQ ONNX file.
# (Paddle Inference 3.3.1 has no loader for QDQ ONNX and its own int8 path needs PaddleSlim programs.)
RUNTIME_PRECISIONS = {"paddle": ("fp32", "bf16"), "onnxruntime": ("fp32", "int8"),
                      "openvino": ("fp32", "bf16", "int8")}
# Python modules each runtime needs.
RUNTIME_MODULES = {"paddle": ("paddle",), "onnxruntime": ("onnxruntime",), "openvino": ("openvino",)}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
RUNTIME_LABELS = {"paddle": "Paddle Inference (oneDNN)", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


class PrecisionError(UserError, ValueError):
    """A precision this machine or runtime cannot run; the message names the flag, value and what fits."""


class RuntimeNotInstalled(UserError, ImportError):
    """A runtime (or converter) whose Python package is not installed; the message says what to install."""


def default_threads():
    return max(1, min(4, os.cpu_count() or 1))


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"Unknown {name} {value!r}; allowed: {', '.join(allowed)}")


# ----------------------------------------------------------------------------------------- the machine
def cpu_features():
    """The CPU's feature flags (Linux /proc/cpuinfo), as a sorted tuple; empty when unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return tuple(sorted(set(line.split(":", 1)[1].split())))
    except OSError:
        pass
    return ()


def bf16_supported(features=None):
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    features = cpu_features() if features is None else features
    return any(flag in features for flag in BF16_FLAGS)


def require_bf16(flag="--precision", features=None):
    """Raise PrecisionError unless this CPU has native bf16 (emulated bf16 is slower than fp32)."""
    features = cpu_features() if features is None else features
    if not bf16_supported(features):
        have = [f for f in features if f.startswith(("avx", "amx"))]
        raise PrecisionError(f"{flag}=bf16: this CPU has no native bf16 (needs one of {', '.join(BF16_FLAGS)} in "
                             f"/proc/cpuinfo; it has {' '.join(have) or 'no AVX flags'}); expected fp32 or int8 here")


def installed_runtimes():
    """The runtimes whose Python packages import here (paddle always)."""
    return [runtime for runtime, modules in RUNTIME_MODULES.items() if modules_import(*modules)]


def modules_import(*modules):
    """True when every named module imports here."""
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError:
        return False
    return True


def runtime_versions():
    """{package: version} of the runtimes and converters installed here."""
    out = {}
    for module in ("paddle", "paddle2onnx", "onnxruntime", "openvino"):
        try:
            out[module] = str(importlib.import_module(module).__version__)
        except (ImportError, AttributeError):
            pass
    return out


# ----------------------------------------------------------------------------------------- backends
@contextlib.contextmanager
def keep_process_math_threads():
    """Paddle Inference sets the process's math-library threads (MKL and OpenMP) to its config's count
    when it creates a predictor, and to 1 after each run; dygraph code in the same process (a training,
    an export's reference forward) would then sum its matmuls in another order, and a training would not
    reproduce a fresh process's weights. Afterwards, put back Paddle's process setting: OMP_NUM_THREADS,
    which Paddle sets (to 1 when unset) at import."""
    try:
        yield
    finally:
        from paddle.base import core
        try:
            threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        except ValueError:
            threads = 1  # as Paddle reads it
        core.set_num_threads(max(1, threads))


class PaddleBackend:
    """Paddle Inference predictor over `inference.json` / `inference.pdmodel` + `inference.pdiparams`;
    precision "bf16" runs oneDNN's bf16 kernels (CPU with AVX512-BF16 only)."""

    name = "paddle"

    def __init__(self, model_file, params_file, device="cpu", threads=None, onednn=True, precision="fp32",
                 settings=None):
        from paddle import inference
        _check_choice("device", device, DEVICES)
        _check_choice("precision for runtime 'paddle'", precision, RUNTIME_PRECISIONS["paddle"])
        if precision == "bf16":
            if device != "cpu":
                raise PrecisionError(f"precision='bf16' runs on device='cpu' only here; got device={device!r}")
            require_bf16("precision")
        for path in (model_file, params_file):
            if not os.path.isfile(path):
                raise ModelDirError(f"{path} is missing; re-export the model with tools/export.py")
        self.settings = runtime_settings("paddle", settings)
        self.config = config = _paddle_config(model_file, params_file, device, threads, onednn, precision,
                                              self.settings)
        try:
            with keep_process_math_threads():
                self.predictor = inference.create_predictor(config)
        except Exception as err:  # Paddle raises many error types for a bad program/params file
            last_line = (str(err).strip().splitlines() or [""])[-1]  # Paddle puts the cause last
            raise ModelDirError(f"Paddle Inference could not load {model_file} + {params_file} "
                                f"({type(err).__name__}: {last_line}). The files look corrupted or incomplete; "
                                f"re-export with tools/export.py") from None
        self.precision = precision
        self.input_names = self.predictor.get_input_names()
        self.output_names = self.predictor.get_output_names()
        # zero-copy handles, fetched once: each run copies the batch in and the outputs out, nothing else
        self._input = self.predictor.get_input_handle(self.input_names[0])
        self._outputs = [self.predictor.get_output_handle(n) for n in self.output_names]
        self._shape = None

    def applied_settings(self):
        """The settings as Paddle Inference's config reports them (those it can report)."""
        return {"ir_optim": self.config.ir_optim(), "onednn": self.config.onednn_enabled(),
                "threads": self.config.cpu_math_library_num_threads()}

    def run(self, batch):
        batch = np.ascontiguousarray(batch, dtype="float32")
        if batch.shape != self._shape:
            self._input.reshape(list(batch.shape))
            self._shape = batch.shape
        self._input.copy_from_cpu(batch)
        with keep_process_math_threads():
            self.predictor.run()
        return [handle.copy_to_cpu() for handle in self._outputs]


def _paddle_config(model_file, params_file, device, threads, onednn, precision, settings):
    """Paddle Inference's Config for PaddleBackend: device, threads, oneDNN (bf16), `settings`."""
    from paddle import inference
    import paddle
    config = inference.Config(model_file, params_file)
    if device == "gpu":
        if not paddle.is_compiled_with_cuda():
            raise ConfigError("device='gpu' but this Paddle build has no CUDA support; use device='cpu' or "
                              "install paddlepaddle-gpu")
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(int(threads or default_threads()))
        onednn = onednn or precision == "bf16"  # bf16 is oneDNN's
        # Paddle 3 renamed enable_mkldnn to enable_onednn; accept either build. Paddle 3.3 turns oneDNN on by
        # itself on CPU, so off must be said
        if onednn:
            (getattr(config, "enable_onednn", None) or config.enable_mkldnn)()
        else:
            (getattr(config, "disable_onednn", None) or config.disable_mkldnn)()
        if precision == "bf16":
            (getattr(config, "enable_onednn_bfloat16", None) or config.enable_mkldnn_bfloat16)()
        if onednn and settings["onednn_cache_capacity"]:
            (getattr(config, "set_onednn_cache_capacity", None) or config.set_mkldnn_cache_capacity)(
                settings["onednn_cache_capacity"])
    config.switch_ir_optim(settings["ir_optim"])
    if settings["new_executor"] is not None:
        config.enable_new_executor(settings["new_executor"])
    config.disable_glog_info()
    return config


class OnnxRuntimeBackend:
    """ONNX Runtime (CPU) session over an ONNX file (fp32, or int8 with QuantizeLinear/DequantizeLinear)."""

    name = "onnxruntime"

    def __init__(self, onnx_file, threads=None, precision="fp32", settings=None):
        _check_choice("precision for runtime 'onnxruntime'", precision, RUNTIME_PRECISIONS["onnxruntime"])
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeNotInstalled("runtime='onnxruntime' needs onnxruntime: pip install onnxruntime "
                              "(or pip install ppbackbone[onnx])") from None
        if not os.path.isfile(onnx_file):
            raise ModelDirError(f"{onnx_file} is missing; export with tools/export.py ... --onnx")
        self.settings = settings = runtime_settings("onnxruntime", settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or default_threads())
        # parallel execution runs independent branches on inter-op threads (ONNX Runtime falls back to
        # sequential with one); sequential needs none
        parallel = settings["execution_mode"] == "parallel"
        options.inter_op_num_threads = max(2, options.intra_op_num_threads) if parallel else 1
        options.log_severity_level = 3
        options.graph_optimization_level = _ORT_LEVELS[settings["graph_optimization_level"]](ort)
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings["allow_spinning"] else "0")
        try:
            self.session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad file
            raise ModelDirError(f"ONNX Runtime could not load {onnx_file} ({err}); re-export with --onnx") from None
        self.precision = precision
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def applied_settings(self):
        """The settings as the ONNX Runtime session reports them."""
        options = self.session.get_session_options()
        level = {v(_ort()): k for k, v in _ORT_LEVELS.items()}[options.graph_optimization_level]
        return {"graph_optimization_level": level, "execution_mode": str(options.execution_mode).rsplit("_", 1)[-1].lower(),
                "allow_spinning": options.get_session_config_entry("session.intra_op.allow_spinning") == "1",
                "threads": options.intra_op_num_threads}

    def run(self, batch):
        return self.session.run(None, {self.input_names[0]: np.ascontiguousarray(batch, dtype="float32")})


def _ort():
    import onnxruntime
    return onnxruntime


_ORT_LEVELS = {"disable": lambda ort: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
               "basic": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
               "extended": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
               "all": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class OpenVinoBackend:
    """OpenVINO (CPU) compiled model over an ONNX file. The inference precision is always set: OpenVINO
    would pick bf16 by itself on CPUs with AVX512-BF16/AMX, changing the scores silently."""

    name = "openvino"

    def __init__(self, onnx_file, threads=None, precision="fp32", settings=None):
        _check_choice("precision for runtime 'openvino'", precision, RUNTIME_PRECISIONS["openvino"])
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeNotInstalled("runtime='openvino' needs openvino: pip install openvino "
                              "(or pip install ppbackbone[openvino])") from None
        if precision == "bf16":
            require_bf16("precision")
        if not os.path.isfile(onnx_file):
            raise ModelDirError(f"{onnx_file} is missing; export with tools/export.py ... --onnx")
        self.settings = runtime_settings("openvino", settings)
        try:
            with signal_stack.kept():
                self.compiled = _openvino_core(ov).compile_model(onnx_file, "CPU",
                                                                 _ov_properties(threads, precision, self.settings))
        except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelDirError(f"OpenVINO could not load {onnx_file} ({err}); re-export with --onnx") from None
        self.precision = precision
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def applied_settings(self):
        """The compiled model's properties (what OpenVINO made of the settings)."""
        return {key: str(self.compiled.get_property(key)) for key in
                ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
                 "ENABLE_CPU_PINNING")}

    def run(self, batch):
        # the request reads the caller's array in place (no copy); its outputs are copied out, since the
        # request reuses their memory on the next call
        result = self.request.infer([np.ascontiguousarray(batch, dtype="float32")], share_inputs=True)
        return [np.asarray(result[o]) for o in self.compiled.outputs]


_OV_CORE = []
_OV_CORE_LOCK = threading.Lock()


def _openvino_core(ov):
    """One OpenVINO Core for the process: each Core makes its own CPU plugin, and plugins destroyed in the
    order they were made leave the thread's alternate signal stack on unmapped memory, so that the next
    signal with a handler (Ctrl-C, SIGTERM, a child's exit) kills the process (deploy/signal_stack.py)."""
    with _OV_CORE_LOCK:
        if not _OV_CORE:
            _OV_CORE.append(ov.Core())
        return _OV_CORE[0]


def _ov_properties(threads, precision, settings):
    """OpenVINO CPU properties: threads, the inference precision (always set), `settings`."""
    properties = {"INFERENCE_NUM_THREADS": int(threads or default_threads()),
                  # int8 files carry their own quantized ops; fp32 is set so that AMX CPUs do not pick bf16
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": settings["performance_hint"]}
    for key, name in (("num_streams", "NUM_STREAMS"), ("cpu_pinning", "ENABLE_CPU_PINNING"),
                      ("tbb_partitioner", "TBB_PARTITIONER")):
        if settings[key] is not None:
            properties[name] = settings[key]
    return properties


def int8_file(record, runtime, where=""):
    """The int8 file `runtime` runs, from inference.yml's Precisions.int8 `record`: `files` (runtime ->
    file: the QDQ ONNX file for ONNX Runtime, NNCF's OpenVINO IR for OpenVINO), else the one `file` of
    directories written before (or inference_int8.onnx)."""
    files = (record or {}).get("files") or {}
    if files and runtime not in files:
        raise PrecisionError(f"precision='int8' on runtime={runtime!r}: {where} has int8 files for "
                             f"{', '.join(files)} only; use runtime={' or '.join(repr(r) for r in files)}, or "
                             f"re-export with --int8-quantizer auto")
    return files.get(runtime) or (record or {}).get("file", ONNX_INT8_FILE)


def create_backend(export, runtime="paddle", precision="fp32", device="cpu", threads=None, onednn=True, settings=None):
    """The backend running `export` (an `ExportDir`) on `runtime` at `precision`, with `settings` over the
    runtime's defaults (deploy/settings.py). Errors name what is missing: the ONNX file (export with --onnx),
    an unverified precision, an unsupported pair."""
    _check_choice("runtime", runtime, RUNTIMES)
    _check_choice("device", device, DEVICES)
    _check_choice("precision", precision, PRECISIONS)
    if precision not in RUNTIME_PRECISIONS[runtime]:
        fits = [r for r in RUNTIMES if precision in RUNTIME_PRECISIONS[r]]
        # only what this directory has: the precisions it was verified at that the runtime runs
        others = [p for p in RUNTIME_PRECISIONS[runtime] if p in export.precisions]
        raise PrecisionError(f"precision={precision!r} does not run on runtime={runtime!r}; expected runtime "
                             f"{' or '.join(fits)}" + (f" (or, on {runtime}, precision {' or '.join(others)})"
                                                       if others else ""))
    if precision not in export.precisions:
        verified = ", ".join(export.precisions)
        raise PrecisionError(f"precision={precision!r}: {export.path} was not exported and verified at {precision} "
                             f"(verified: {verified}); re-export with tools/export.py ... --precision {precision}")
    if runtime == "paddle":
        return PaddleBackend(export.file(export.model_file), export.file(export.params_file), device=device,
                             threads=threads, onednn=onednn, precision=precision, settings=settings)
    if device != "cpu":
        raise ConfigError(f"runtime={runtime!r} runs on device='cpu' only here; got device={device!r}")
    if precision == "int8":
        onnx_file = export.file(int8_file(export.precisions["int8"], runtime, export.path))
    else:  # a missing file is reported by the backend, after it checked that its runtime is installed
        onnx_file = export.file(export.onnx_file or ONNX_FILE)
    if runtime == "onnxruntime":
        return OnnxRuntimeBackend(onnx_file, threads=threads, precision=precision, settings=settings)
    return OpenVinoBackend(onnx_file, threads=threads, precision=precision, settings=settings)
