"""The ONNX model of an export: inference.onnx by paddle2onnx (outputs renamed as in inference.yml) and
its verification with ONNX Runtime / OpenVINO against the dygraph model."""
import os

from ..errors import ExportError
from .export_dir import ONNX_FILE, PARAMS_FILE
from .quiet import quiet_paddle2onnx
from .runtimes import RUNTIME_LABELS, OnnxRuntimeBackend, OpenVinoBackend, installed_runtimes
from .verify import _compare

__all__ = ["convert_to_onnx", "DEFAULT_ONNX_OPSET"]

# 14, not 13: from opset 14 paddle2onnx writes hardswish as one HardSwish node, which OpenVINO fuses into
# the convolution before it; at 13 it is HardSigmoid x Mul, and OpenVINO 2026.4 runs that HardSigmoid with its
# reference kernel plus a layout reorder around it (PP-LCNet x1.0: 12.8 -> 5.7 ms median, batch 1, 2 threads,
# docs/deploy.md "Runtime settings"). ONNX Runtime runs both forms alike.
DEFAULT_ONNX_OPSET = 14


def _require_onnx_tools():
    missing = []
    for module in ("paddle2onnx", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(f"--onnx needs {', '.join(missing)} (not installed): pip install paddle2onnx "
                          f"onnxruntime (or pip install ppbackbone[onnx]); the ONNX model is verified "
                          f"with onnxruntime before it is written")


def convert_to_onnx(model_file, params_file, save_file, opset=DEFAULT_ONNX_OPSET, output_names=None):
    """paddle2onnx conversion; `output_names` renames the ONNX graph outputs (in order)."""
    try:
        import paddle2onnx
    except ImportError:
        raise ExportError("ONNX export needs paddle2onnx: pip install paddle2onnx onnxruntime "
                          "(or pip install ppbackbone[onnx])") from None
    try:
        # No post-optimizer: paddle2onnx's default (polygraphy) pip-installs missing modules at run
        # time, which an export must never do, and ONNX Runtime / OpenVINO fold constants themselves.
        with quiet_paddle2onnx():
            paddle2onnx.export(model_file, params_file, save_file=save_file, opset_version=opset,
                               enable_onnx_checker=True, verbose=False, optimize_tool="None")
    except Exception as err:  # paddle2onnx raises bare Exceptions for unsupported ops
        raise ExportError(f"paddle2onnx could not convert {model_file}: {err}") from None
    if output_names:
        _rename_onnx_outputs(save_file, output_names)
    return save_file


def _rename_onnx_outputs(path, names):
    import onnx
    model = onnx.load(path)
    graph = model.graph
    if len(graph.output) != len(names):
        raise ExportError(f"{path} has {len(graph.output)} outputs, expected {len(names)} ({names})")
    mapping = {out.name: new for out, new in zip(graph.output, names)}
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
    for out in graph.output:
        out.name = mapping[out.name]
    onnx.save(model, path)


def _export_onnx(tmp_dir, model_file, sample, reference, names, tolerance, threads, opset, info, log):
    """inference.onnx by paddle2onnx, outputs named as in inference.yml, verified with ONNX Runtime."""
    import paddle2onnx
    onnx_file = os.path.join(tmp_dir, ONNX_FILE)
    convert_to_onnx(os.path.join(tmp_dir, model_file), os.path.join(tmp_dir, PARAMS_FILE), onnx_file, opset=opset,
                    output_names=[e["name"] for e in info["Outputs"]])
    info["Model"]["onnx_file"] = ONNX_FILE
    info["Versions"]["paddle2onnx"] = paddle2onnx.__version__
    figures, runtimes = {}, []
    for runtime in [r for r in ("onnxruntime", "openvino") if r in installed_runtimes()]:
        backend = (OnnxRuntimeBackend if runtime == "onnxruntime" else OpenVinoBackend)(onnx_file, threads=threads)
        diff, relative = _compare(reference, backend.run(sample), names, tolerance, RUNTIME_LABELS[runtime])
        log(f"Verified {ONNX_FILE} with {RUNTIME_LABELS[runtime]} (fp32): max abs diff {diff:.3g} ({relative:.2g} of "
            f"the output scale)")
        figures.update({f"{runtime}_max_abs_diff": diff, f"{runtime}_max_rel_diff": relative})
        runtimes.append(runtime)
    return figures, runtimes
