"""int8 for OpenVINO by its own quantizer: NNCF post-training quantization of inference.onnx into an
OpenVINO IR (inference_int8.xml + inference_int8.bin), calibrated on the same images as ONNX Runtime's
QDQ file (precision.eval_images) and verified against fp32 the same way (precision.verify_precision).

Why a file of its own: OpenVINO runs the QDQ ONNX file too, but NNCF places its quantizers where
OpenVINO's CPU plugin has int8 kernels (target_device CPU). An opset-13 export's hard-swish
(`x * HardSigmoid(x, 1/6, 0.5)`, `--onnx-opset 13`) is rewritten to ONNX HardSwish first (opset 14,
the default, writes HardSwish itself): OpenVINO runs HardSigmoid in a reference kernel that also breaks
its blocked memory layout around every one (docs/deploy.md "Low precision" has the profile). Settings
kept after trying the others (docs/deploy.md): preset PERFORMANCE (symmetric int8 activations),
target_device CPU, full bias correction, every calibration image, the final softmax left in float, and
for PP-LCNet (v1) its high-resolution convolutions (output stride <= 8) left in float too (FLOAT_STRIDE).
"""
import contextlib
import io
import os
import tempfile

from ..progress import progress
from . import signal_stack
from .runtimes import RuntimeNotInstalled, modules_import

__all__ = ["NNCF_MODULES", "OPENVINO_EXTRA", "FLOAT_STRIDE", "nncf_installed", "require_nncf",
           "quantize_openvino", "hardswish_onnx", "float_stride", "high_resolution_layers"]

NNCF_MODULES = ("openvino", "nncf")
OPENVINO_EXTRA = "pip install ppbackbone[openvino]"
_SIXTH = 1.0 / 6.0
# Model-name prefix -> output stride up to which the convolutions stay float (0: all int8). PP-LCNet (v1)
# trained on the demo set, fully int8, gave fp32's class on 92% of held-out images (the 95% floor refuses
# it); the disagreement comes from the activation quantizers of its early, narrow, high-resolution layers.
# With its 11 convolutions at stride <= 8 in float it agrees on 98.7%, still over 2x PaddleClas's fp32
# export (docs/deploy.md, "Why two int8 files"). Other models are not listed: hgnetv2_b0's int8 agrees on
# 98.7% as it is; the others were not measured on a trained model.
FLOAT_STRIDE = {"pplcnet_x": 8}


def nncf_installed():
    """True when OpenVINO and NNCF both import here."""
    return modules_import(*NNCF_MODULES)


def require_nncf(what="--int8-quantizer=nncf"):
    """Raise RuntimeNotInstalled naming the extra when OpenVINO or NNCF is missing."""
    missing = [m for m in NNCF_MODULES if not modules_import(m)]
    if missing:
        raise RuntimeNotInstalled(f"{what} needs {', '.join(missing)} (not installed): {OPENVINO_EXTRA} "
                                  f"(OpenVINO int8 is NNCF's post-training quantization of inference.onnx)")


def hardswish_onnx(src, dst):
    """Copy the ONNX model `src` to `dst` with every `Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))` (how
    paddle2onnx writes hard-swish below opset 14) replaced by one HardSwish node (opset 14; the same
    function). Returns how many were replaced."""
    import onnx
    from onnx import helper
    model = onnx.load(src)
    graph = model.graph
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced = {}
    for node in graph.node:
        attrs = {a.name: a.f for a in node.attribute}
        if node.op_type != "HardSigmoid" or abs(attrs.get("alpha", 0.2) - _SIXTH) > 1e-6 or \
                abs(attrs.get("beta", 0.5) - 0.5) > 1e-6:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "Mul" and sorted(users[0].input) == sorted([node.input[0],
                                                                                                node.output[0]]):
            replaced[id(users[0])] = helper.make_node("HardSwish", [node.input[0]], list(users[0].output),
                                                      name=f"{node.name}_hardswish")
            replaced[id(node)] = None
    nodes = [replaced.get(id(n), n) for n in graph.node]
    del graph.node[:]
    graph.node.extend(n for n in nodes if n is not None)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 14)
    onnx.save(model, dst)
    return sum(1 for n in replaced.values() if n is not None)


def float_stride(model_name):
    """FLOAT_STRIDE's entry for a model name (0 when none matches)."""
    return next((stride for prefix, stride in FLOAT_STRIDE.items() if str(model_name).startswith(prefix)), 0)


def high_resolution_layers(model, max_stride):
    """Friendly names of the (group) convolutions of an OpenVINO model whose output is at most
    `max_stride` times smaller than its input image (static spatial sizes; none when max_stride is 0)."""
    if not max_stride:
        return []
    height = model.inputs[0].get_partial_shape()[2]
    names = []
    for op in model.get_ordered_ops():
        shape = op.get_output_partial_shape(0)
        if op.get_type_name() in ("Convolution", "GroupConvolution") and height.is_static and shape[2].is_static \
                and height.get_length() <= max_stride * shape[2].get_length():
            names.append(op.get_friendly_name())
    return names


def _silence_nncf():
    """NNCF logs INFO lines and draws bars of its own (rich, on stdout, even into a log file); ours is
    the one shown; its warnings still print."""
    import logging
    from nncf.common.logging import nncf_logger
    nncf_logger.setLevel(logging.WARNING)
    return contextlib.redirect_stdout(io.StringIO())


def quantize_openvino(onnx_file, xml_file, calib, preset="performance", fast_bias_correction=False,
                      float_types=("Softmax",), max_float_stride=0):
    """inference.onnx -> OpenVINO int8 IR (`xml_file` and its .bin beside it) calibrated on `calib`
    ([N, C, H, W] float32, one image per step), the convolutions at output stride <= `max_float_stride`
    left in float (float_stride(model name)); returns the settings to record."""
    import nncf
    import openvino as ov
    # NNCF makes OpenVINO Cores of its own: the thread's signal stack is put back if they leave it unmapped
    with signal_stack.kept(), _silence_nncf(), \
            tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(xml_file))) as work:
        rewritten = os.path.join(work, "hardswish.onnx")
        hardswish = hardswish_onnx(onnx_file, rewritten)
        # convert_model (not read_model): its constant folding turns the depthwise convs' weights
        # (Reshape of a constant by a computed shape) into constants, which NNCF then quantizes per
        # output channel and OpenVINO runs in int8 (read_model's graph left them in fp32 kernels)
        model = ov.convert_model(rewritten)
        present = sorted({op.get_type_name() for op in model.get_ops()} & set(float_types))
        float_layers = high_resolution_layers(model, max_float_stride)
        with progress(total=len(calib), desc="int8 calibration (NNCF)", unit="image") as bar:
            def feed(index):
                bar.update(1 if bar.n < bar.total else 0)
                return calib[index:index + 1]
            quantized = nncf.quantize(
                model, nncf.Dataset(range(len(calib)), feed), preset=nncf.QuantizationPreset(preset),
                target_device=nncf.TargetDevice.CPU, subset_size=len(calib),
                fast_bias_correction=fast_bias_correction,
                ignored_scope=nncf.IgnoredScope(types=present, names=float_layers) if present or float_layers
                else None)
    ov.save_model(quantized, xml_file, compress_to_fp16=False)
    return {"quantizer": f"nncf {nncf.__version__} quantize, OpenVINO {ov.__version__.split('-')[0]}",
            "format": "OpenVINO IR (FakeQuantize)", "preset": preset, "target_device": "CPU",
            "weights": "int8 per channel, symmetric",
            "activations": "int8 per tensor, " + ("symmetric" if preset == "performance" else "asymmetric where "
                                                                                              "NNCF's mixed preset puts it"),
            "bias_correction": "fast" if fast_bias_correction else "full", "calibration_images": int(len(calib)),
            "float_ops": present, "float_convolutions": len(float_layers), "float_stride": int(max_float_stride),
            "hardswish_rewritten": hardswish}
