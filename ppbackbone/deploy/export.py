"""Export a trained model for deployment, as a list of named steps: weights -> eval -> reparameterize ->
[softmax] -> to_static -> jit.save, then `inference.yml` beside it and a verification with Paddle Inference
before anything is published.

Each step's details live in the module of its concern: what inference.yml says (preprocessing, labels,
post-processing) in inference_yml.py, the file format in export_dir.py, the staging directory and disk
checks in staging.py, the comparison with the dygraph model in verify.py, ONNX conversion and its
verification in onnx.py, low precisions in precision.py, the runtimes in runtimes.py.
"""
import os

import numpy as np
import paddle

from ..arch.recognition import deployable
from ..arch.build import build_model
from ..errors import ExportError, check_output_dir
from ..weights.io import check_finite, describe_nonfinite, load_weights, read_state_dict
from .export_dir import (INFERENCE_YML, INPUT_NAME, MODEL_FILES, MODEL_PREFIX, ONNX_FILE, ONNX_INT8_FILE,
                         OPENVINO_INT8_FILE, PARAMS_FILE, check_paddlex_name, find_model_file, write_inference_config)
from .inference_yml import _as_list, _check_preprocess, _image_shape, _mode, derive_inference_config, output_names
from .onnx import DEFAULT_ONNX_OPSET, _export_onnx, _require_onnx_tools, convert_to_onnx
from .int8_openvino import OPENVINO_EXTRA, float_stride, nncf_installed, quantize_openvino, require_nncf
from .precision import (DEFAULT_CALIB_IMAGES, DEFAULT_VERIFY_IMAGES, INT8_QUANTIZERS, PrecisionRefused, eval_images,
                        quantize_int8, require_quantizer, verify_precision)
from .quiet import without_native_noise
from .runtimes import (BF16_FLAGS, PRECISIONS, OnnxRuntimeBackend, OpenVinoBackend, PaddleBackend,
                       PrecisionError, installed_runtimes, require_bf16)
from .staging import _check_disk_space, _check_save_dir, _check_written, _staging_dir
from .verify import _compare, _verify_paddle

__all__ = ["export_model", "ExportError", "ExportResult", "derive_inference_config", "convert_to_onnx",
           "save_static", "program_op_counts", "output_names", "DEFAULT_TOLERANCE", "DEFAULT_ONNX_OPSET"]

# Max |exported - dygraph| allowed, relative to the output's scale (max(1, max|dygraph output|)).
DEFAULT_TOLERANCE = 1e-4


class ExportResult:
    """What `export_model` produced: the directory, its files, the verification figures and the
    inference config written to `inference.yml` (a dict)."""

    def __init__(self, save_dir, files, inference_config, load_report=None):
        self.save_dir = save_dir
        self.files = files
        self.inference_config = inference_config
        self.load_report = load_report

    @property
    def verification(self):
        return self.inference_config.get("Verification", {})

    def __repr__(self):
        return f"ExportResult(save_dir={self.save_dir!r}, files={self.files})"


def export_model(config, save_dir=None, weights=None, allow_random_weights=False, fuse=True, onnx=False,
                 verify=True, tolerance=DEFAULT_TOLERANCE, threads=2, image_shape=None,
                 onnx_opset=DEFAULT_ONNX_OPSET, latency_runs=10, legacy_pdmodel=False, softmax=True,
                 paddlex_name=None, precision="fp32", calib_images=DEFAULT_CALIB_IMAGES,
                 verify_images=DEFAULT_VERIFY_IMAGES, budget=None, int8_quantizer="auto", log=print):
    """Export the model a config describes, verified, into `save_dir`.

    Args:
        config: a loaded config dict (`ppbackbone.config.load_config`) or a path to a YAML file.
        save_dir: target directory (default Global.save_inference_dir, else ./inference/<Arch.name>). A
            previous export there is replaced; a directory holding anything else is refused.
        weights: weights file; default `Global.pretrained_model`, then `Arch.pretrained`.
        allow_random_weights: export without weights (benchmarking); refused otherwise.
        fuse: reparameterize Rep blocks before export (False keeps the training branches).
        onnx: also write inference.onnx (paddle2onnx), verified with onnxruntime.
        verify: reload with Paddle Inference (CPU, oneDNN) and compare with the dygraph model on a
            sample batch; past `tolerance` x output scale the export fails and nothing is written.
        image_shape: [3, H, W]; default `Global.image_shape`.
        latency_runs: batch-1 latency runs printed after verification (0: skip).
        legacy_pdmodel: require the old program format (inference.pdmodel); Paddle writes it only
            when started with FLAGS_enable_pir_api=0 (tools/export.py --legacy-pdmodel sets it).
        softmax: end a classifier's graph in softmax, as PaddleClas's exporter does (scores are
            probabilities, which PaddleX expects); False exports logits.
        paddlex_name: Global.model_name for PaddleX (default: the PaddleX name of a classifier when it
            has one; "none" leaves it out); a name of another model is refused.
    Returns an ExportResult.
    """
    config = _as_config(config)
    save_dir = _target_dir(config, save_dir)
    shape = _image_shape(config, image_shape)
    onnx = onnx or precision == "int8"  # int8 quantizes inference.onnx
    _check_tools(precision, onnx, int8_quantizer)
    model, report, source = _build_with_weights(config, weights, allow_random_weights, log)
    paddlex_name = _paddlex_name(model, paddlex_name)
    held_out = _precision_images(config, model, shape, precision, calib_images, verify_images)
    sample = np.random.RandomState(0).standard_normal([2] + shape).astype("float32")
    graph, softmax_in_graph, reference = _checked_graph(model, sample, fuse, softmax, tolerance, log)
    names = output_names(model, softmax_in_graph)
    _check_disk_space(save_dir, graph, onnx)
    with _staging_dir(save_dir, log) as tmp_dir:
        # the program's input: the export's shape, or -1 where the model runs at any size (PaddleOCR's forms)
        input_shape = model.export_input_shape(shape)
        info = derive_inference_config(config, model, shape, names, fused=fuse, softmax_in_graph=softmax_in_graph,
                                       paddlex_name=paddlex_name, weights=report.path if report else None,
                                       weights_flag=source, input_shape=input_shape)
        _check_preprocess(info["PreProcess"]["transform_ops"], shape)
        model_file = _save_program(graph, tmp_dir, input_shape, names, legacy_pdmodel, log)
        _check_written(tmp_dir, graph)
        info["Model"].update(model_file=model_file, params_file=PARAMS_FILE)
        checked = (tmp_dir, model_file, sample, reference, names, tolerance, threads, info, log)
        verification, verified_on = _verify_export(checked, verify, latency_runs, onnx, onnx_opset)
        info["Precisions"] = {"fp32": {"verified_on": verified_on}}
        if precision != "fp32":
            info["Precisions"][precision] = _export_low_precision(tmp_dir, info, precision, held_out, threads,
                                                                  budget, int8_quantizer, log)
        info["Verification"] = verification
        write_inference_config(info, os.path.join(tmp_dir, INFERENCE_YML))
    files = sorted(os.listdir(save_dir))
    log(f"Exported {model.model_name} ({'fused' if fuse else 'unfused'}) to {save_dir}: {', '.join(files)}")
    return ExportResult(save_dir, files, info, report)


def _check_tools(precision, onnx, int8_quantizer="auto"):
    """Refuse, before any work, an unknown or unsupported precision and optional tools that are missing."""
    _check_precision(precision, int8_quantizer)
    if onnx:
        _require_onnx_tools()


def _paddlex_name(model, paddlex_name):
    """Global.model_name for PaddleX: checked against the model; none for a non-classifier by default."""
    if paddlex_name is None and _mode(model) != "classification":
        paddlex_name = "none"  # PaddleX's names for our models are its classifiers
    try:
        return check_paddlex_name(model.model_name, paddlex_name)
    except ValueError as err:
        raise ExportError(str(err)) from None


def _checked_graph(model, sample, fuse, softmax, tolerance, log):
    """(the layer to save, whether it ends in softmax, its reference outputs on `sample`): the model fused
    (and checked against the unfused one) unless fuse=False, with softmax appended when asked."""
    _check_finite_model(model, "")
    reference = _dygraph_outputs(model, sample)  # the unfused model is the truth every step is checked against
    if fuse:
        _fuse_checked(model, sample, reference, tolerance, log)
        _check_finite_model(model, " after Rep fusion")
    elif _has_unfused(model):
        log(f"NOTE: {model.model_name} is exported UNFUSED (fuse=False): its Rep blocks keep their training "
            f"branches and run slower")
    graph, softmax_in_graph = _deploy_graph(model, softmax)
    if softmax_in_graph:
        reference = [_softmax(reference[0])]
    return graph, softmax_in_graph, reference


def _check_finite_model(model, when):
    """An export of NaN/Inf weights computes nothing meaningful: refused, naming the tensors (before a
    verification that could only say the outputs differ)."""
    found = check_finite(model.state_dict(), "", allow=True)
    if found:
        raise ExportError(f"{model.model_name}: {len(found)} weight tensor(s) hold NaN/Inf{when} "
                          f"({describe_nonfinite(found)}); an export of them is refused (Global.allow_nonfinite_weights "
                          f"only lets them load, for debugging). Export the weights of a run that did not diverge")


def _verify_export(checked, verify, latency_runs, onnx, onnx_opset):
    """(inference.yml's Verification, the runtimes the fp32 model was verified on): Paddle Inference unless
    verify=False, and with `onnx` inference.onnx on each installed ONNX runtime (always verified: an
    unverified inference.onnx is not written). `checked`: (tmp_dir, model_file, sample, reference, names,
    tolerance, threads, info, log)."""
    tmp_dir, model_file, sample, reference, names, tolerance, threads, info, log = checked
    verification = {"sample": f"N(0,1) batch of 2x{list(sample.shape[1:])}", "tolerance": tolerance}
    verified_on = []
    if verify:
        verification.update(_verify_paddle(tmp_dir, model_file, sample, reference, names, tolerance, threads,
                                           latency_runs, info, log))
        verified_on.append("paddle")
    else:
        verification["paddle_inference"] = "skipped (verify=False)"
    if onnx:
        figures, runtimes = _export_onnx(tmp_dir, model_file, sample, reference, names, tolerance, threads,
                                         onnx_opset, info, log)
        verification.update(figures)
        verified_on.extend(runtimes)
    return verification, verified_on


def _as_config(config):
    from ..config import load_config
    return load_config(config) if isinstance(config, (str, os.PathLike)) else config


def _target_dir(config, save_dir):
    save_dir = save_dir or (config.get("Global") or {}).get("save_inference_dir") or \
        os.path.join("inference", str(config["Arch"]["name"]))
    save_dir = os.path.abspath(os.fspath(save_dir))
    _check_save_dir(save_dir)
    check_output_dir(save_dir, "Global.save_inference_dir")  # a file on the way, read-only, no permission
    return save_dir


def _arch_pretrained(name, pretrained):
    """A weight tag ("ssld") of a registered model as create_model reads it, else the path/URL itself."""
    from ..arch.registry import pretrained_source, resolve_name
    try:
        resolve_name(name)
    except ValueError:  # RecModel, DistillationModel: their weights are a file
        return pretrained
    try:
        return pretrained_source(name, pretrained)
    except ValueError as err:
        raise ExportError(f"Arch.pretrained: {err}") from None


def _weights_source(config, weights, allow_random_weights):
    """(path or None, the flag it came from). Refuses an export without weights unless allowed."""
    if weights:
        return weights, "weights"
    pretrained_model = config.get("Global", {}).get("pretrained_model")
    if pretrained_model:
        return pretrained_model, "Global.pretrained_model"
    arch_pretrained = config["Arch"].get("pretrained")
    if arch_pretrained:
        if arch_pretrained is True:
            from ..arch import model_info
            info = model_info(config["Arch"]["name"])
            if not info.url:
                raise ExportError(f"Arch.pretrained=True but {info.name} has no published weights; set "
                                  f"-o Global.pretrained_model=<your .pdparams/.safetensors>")
            return info.url, "Arch.pretrained"
        return _arch_pretrained(config["Arch"]["name"], arch_pretrained), "Arch.pretrained"
    if allow_random_weights:
        return None, None
    raise ExportError(f"No weights to export: set -o Global.pretrained_model=<file.pdparams|file.safetensors> "
                      f"(a checkpoint path prefix works too{_trained_here(config)}). Exporting randomly "
                      f"initialised weights is refused unless asked for explicitly: --random-weights "
                      f"(export_model(..., allow_random_weights=True)), for benchmarking only")


def _trained_here(config):
    """', e.g. output/<name>/best_model, which this config's training wrote' when that checkpoint exists."""
    root = (config.get("Global") or {}).get("output_dir") or "./output/"
    prefix = os.path.join(os.path.normpath(str(root)), str(config["Arch"]["name"]), "best_model")
    found = os.path.isfile(prefix + ".pdparams") or os.path.isfile(os.path.join(prefix, "best_model.pdparams"))
    return f", e.g. {prefix}, which this config's training wrote" if found else ""


def _build_with_weights(config, weights, allow_random_weights, log):
    """(eval-mode model, load report or None, `flag=path` the weights came from or None)."""
    weights_path, flag = _weights_source(config, weights, allow_random_weights)
    model = build_model(config, pretrained=False)
    report = None
    if weights_path is None:
        log("WARNING: exporting RANDOMLY INITIALISED weights (--random-weights): for benchmarking only")
    else:
        allow = bool((config.get("Global") or {}).get("allow_nonfinite_weights"))
        report = _load_checked(_load_target(model, weights_path), weights_path, flag, log, allow)
    model = deployable(model)  # a RecModel's embedding, a DistillationModel's infer_model_name model
    model.eval()
    return model, report, (f"{flag}={weights_path}" if flag else None)


def _load_target(model, path):
    """Where the weights go: a DistillationModel takes its own checkpoint (`Student.*`, `Teacher.*`
    keys) or, from a file without them, its infer_model_name model's weights alone."""
    if not hasattr(model, "submodel"):
        return model
    state, _ = read_state_dict(path)
    prefix = f"{model.infer_model_name}."
    return model if any(k.startswith(prefix) for k in state) else model.submodel(model.infer_model_name)


def _load_checked(model, path, flag, log=print, allow_nonfinite=False):
    """load_weights (its report logged) + the checks an export needs: every tensor loaded."""
    try:
        report = load_weights(model, path, verbose=False, allow_nonfinite=allow_nonfinite)
    except (OSError, ValueError, RuntimeError) as err:
        raise ExportError(f"{flag}={path}: {err}") from None
    log(report.summary())
    state = model.state_dict()
    head = [k for k in report.head_skipped if k in state]
    if head:
        raise ExportError(f"{flag}={path}: the classifier head in the file ({', '.join(head)}) has another "
                          f"size than this model's {getattr(model, 'num_classes', '?')} classes "
                          f"(Arch.class_num); the export would carry a random head. Set -o Arch.class_num="
                          f"<classes the weights were trained with>")
    if report.missing:
        shown = ", ".join(report.missing[:8]) + (" ..." if len(report.missing) > 8 else "")
        raise ExportError(f"{flag}={path} lacks {len(report.missing)} tensors of {model.model_name} ({shown}); "
                          f"they would be exported with random values. Are these weights of this model?")
    return report


def _dygraph_outputs(model, sample):
    with paddle.no_grad():
        return [t.numpy() for t in _as_list(model(paddle.to_tensor(sample)))]


def _has_unfused(model):
    from ..arch import has_unfused_blocks
    return has_unfused_blocks(model)


def _fuse_checked(model, sample, reference, tolerance, log):
    """reparameterize() in place; the fused model must agree with the unfused one."""
    from ..arch import reparameterize
    reparameterize(model)
    if _has_unfused(model):
        raise ExportError(f"{model.model_name}: some Rep blocks are still unfused after reparameterize()")
    fusion_diff, _ = _compare(reference, _dygraph_outputs(model, sample), output_names(model), tolerance,
                              "The fused (reparameterized) model")
    log(f"Rep fusion: fused vs unfused dygraph max abs diff {fusion_diff:.3g}")


def _deploy_graph(model, softmax):
    """(the layer to save, whether it ends in softmax): a classifier + softmax, as PaddleClas's exporter
    builds it (`Arch.infer_add_softmax`), when asked; the model itself otherwise."""
    if softmax and _mode(model) == "classification":
        return paddle.nn.Sequential(model, paddle.nn.Softmax(axis=-1)), True
    return model, False


def _softmax(logits):
    logits = logits.astype("float64")
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype("float32")


def _save_program(graph, tmp_dir, shape, names, legacy_pdmodel, log):
    model_file = save_static(graph, tmp_dir, shape, names, log=log)
    if legacy_pdmodel and model_file != "inference.pdmodel":
        raise ExportError(f"Paddle {paddle.__version__} wrote {model_file}, not inference.pdmodel: the legacy "
                          f"program format needs FLAGS_enable_pir_api=0 set before Paddle is imported "
                          f"(tools/export.py --legacy-pdmodel does it), and a Paddle that still supports it")
    return model_file


def _check_precision(precision, int8_quantizer="auto"):
    """Refuse, before any work, a precision that is unknown, that this CPU lacks, or whose tools are
    not installed."""
    if precision not in PRECISIONS:
        raise ExportError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if int8_quantizer not in INT8_QUANTIZERS:
        raise ExportError(f"--int8-quantizer {int8_quantizer!r}: expected one of {', '.join(INT8_QUANTIZERS)}")
    try:
        if precision == "bf16":
            require_bf16("--precision")
        elif precision == "int8" and int8_quantizer == "nncf":
            require_nncf("--precision int8 --int8-quantizer nncf")
        elif precision == "int8":
            require_quantizer("--precision")
    except (PrecisionError, ImportError) as err:
        raise ExportError(str(err)) from None


def _precision_images(config, model, shape, precision, calib_images, verify_images):
    """(calibration, held-out images, labels, description) for a low precision, checked before the
    export starts; None for fp32."""
    if precision == "fp32":
        return None
    if _mode(model) != "classification":
        raise ExportError(f"--precision {precision}: low precision is verified by top-1 agreement with fp32, so "
                          f"it is for classifier exports; {model.model_name} is exported in {_mode(model)} mode "
                          f"(expected Arch.class_num > 0 and no out_indices)")
    try:
        return eval_images(config, shape, calib_images, verify_images, class_num=model.num_classes)
    except ValueError as err:
        raise ExportError(str(err)) from None


def _export_low_precision(tmp_dir, info, precision, held_out, threads, budget, int8_quantizer, log):
    """Make (int8) and verify the low-precision variants against fp32 Paddle Inference on the held-out
    images; returns inference.yml's Precisions entry. Refused past the budget (nothing is written)."""
    calib, images, labels, described = held_out
    model_file = os.path.join(tmp_dir, info["Model"]["model_file"])
    params_file = os.path.join(tmp_dir, PARAMS_FILE)
    reference = PaddleBackend(model_file, params_file, threads=threads)
    onnx_file = os.path.join(tmp_dir, ONNX_FILE) if "onnx_file" in info["Model"] else None
    entry = {"images": described}
    if precision == "int8":
        backends = _make_int8(tmp_dir, onnx_file, calib, int8_quantizer, threads, entry, log,
                              max_float_stride=float_stride(info["Model"]["name"]))
    else:
        entry["needs_cpu_flags"] = list(BF16_FLAGS)  # one of them
        backends = {"paddle": PaddleBackend(model_file, params_file, threads=threads, precision="bf16")}
        if onnx_file and "openvino" in installed_runtimes():
            backends["openvino"] = OpenVinoBackend(onnx_file, threads=threads, precision="bf16")
    try:  # under --int8-quantizer auto, a file past the budget is left out when another one passes
        entry.update(verify_precision(precision, reference, backends, images, labels, budget, log,
                                      keep_passing=precision == "int8" and int8_quantizer == "auto"))
    except PrecisionRefused as err:
        raise ExportError(str(err)) from None
    if entry.get("refused"):
        _leave_out_refused(tmp_dir, entry, log)
    return entry


def _leave_out_refused(tmp_dir, entry, log):
    """--int8-quantizer auto: the runtimes whose int8 was past the budget (entry["refused"]) lose their
    `files` entry, and a file no runtime runs any more is deleted with its settings; one line says so."""
    files, refused = entry["files"], entry["refused"]
    for runtime in refused:
        files.pop(runtime, None)
    for name in sorted(set(entry["quantization"]) - set(files.values())):
        entry["quantization"].pop(name)
        os.remove(os.path.join(tmp_dir, name))
        if name == OPENVINO_INT8_FILE:
            os.remove(os.path.join(tmp_dir, OPENVINO_INT8_FILE[:-len(".xml")] + ".bin"))
        if entry.get("file") == name:
            entry.pop("file")
    log(f"int8 left out for {', '.join(refused)} (past the budget: "
        f"{'; '.join(f'{r}: {why}' for r, why in refused.items())}); int8 is verified and written for "
        f"{', '.join(files)} only (--int8-quantizer nncf or onnxruntime refuses the export instead)")


def _make_int8(tmp_dir, onnx_file, calib, quantizer, threads, entry, log, max_float_stride=0):
    """The int8 files `quantizer` (export_model's int8_quantizer) asks for, recorded in `entry` (files:
    runtime -> file, quantization: file -> settings): "auto" ONNX Runtime's QDQ file and, where OpenVINO
    and NNCF are installed, NNCF's OpenVINO file (its convolutions at output stride <= `max_float_stride`
    left in float); "onnxruntime" or "nncf" that one only. Returns {runtime: backend} to verify."""
    installed = installed_runtimes()
    nncf = quantizer == "nncf" or (quantizer == "auto" and nncf_installed())
    if quantizer == "auto" and not nncf and "openvino" in installed:
        log(f"OpenVINO int8 runs the QDQ file: NNCF is not installed ({OPENVINO_EXTRA} for OpenVINO's own int8)")
    files, settings = {}, {}
    if quantizer != "nncf":
        log(f"Quantizing {ONNX_FILE} to int8 for ONNX Runtime (QDQ) on {len(calib)} calibration images ...")
        settings[ONNX_INT8_FILE] = quantize_int8(onnx_file, os.path.join(tmp_dir, ONNX_INT8_FILE), calib, INPUT_NAME)
        files.update({r: ONNX_INT8_FILE for r in ("onnxruntime", "openvino") if r in installed})
        entry["file"] = ONNX_INT8_FILE  # what readers before the per-runtime files read
    if nncf:
        log(f"Quantizing {ONNX_FILE} to int8 for OpenVINO (NNCF) on {len(calib)} calibration images ...")
        settings[OPENVINO_INT8_FILE] = quantize_openvino(onnx_file, os.path.join(tmp_dir, OPENVINO_INT8_FILE), calib,
                                                         max_float_stride=max_float_stride)
        files["openvino"] = OPENVINO_INT8_FILE
    entry.update(files=files, quantization=settings)
    return {r: (OnnxRuntimeBackend if r == "onnxruntime" else OpenVinoBackend)(os.path.join(tmp_dir, f),
                                                                               threads=threads, precision="int8")
            for r, f in files.items()}


def save_static(layer, directory, image_shape, names=None, log=print):
    """`paddle.jit.to_static` (dynamic batch, input `x` of `image_shape`) + `paddle.jit.save` of an
    eval-mode layer into `directory`/inference.*; names the outputs when given. Returns the program
    file's name (inference.json, or inference.pdmodel under FLAGS_enable_pir_api=0)."""
    spec = [paddle.static.InputSpec([None] + list(image_shape), "float32", INPUT_NAME)]
    with without_native_noise():
        static_layer = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
        paddle.jit.save(static_layer, os.path.join(directory, MODEL_PREFIX))
    model_name = find_model_file(directory)
    if model_name is None:
        raise ExportError(f"paddle.jit.save wrote none of {MODEL_FILES} in {directory} "
                          f"(found {os.listdir(directory)})")
    program = os.path.join(directory, model_name)
    if names and model_name.endswith(".json") and not _rename_json_outputs(program, names):
        log("NOTE: could not name the program's outputs; Paddle Inference shows them as fetch_name_N "
            "(inference.yml lists them in order)")
    return model_name


def _rename_json_outputs(json_path, names):
    """Give the fetch ops of a PIR program (inference.json) our output names instead of
    `fetch_name_N`. Returns True when every output was renamed; verification re-checks it."""
    import json
    with open(json_path, encoding="utf-8") as f:
        program = json.load(f)
    fetches = [op for op in _json_ops(program) if op["#"].endswith(".fetch")]
    attrs = []
    for op in fetches:
        found = {a.get("N"): a for a in op.get("A", []) if isinstance(a, dict)}
        if "name" not in found or "col" not in found:
            return False
        attrs.append((found["col"]["AT"]["D"], found["name"]["AT"]))
    if len(attrs) != len(names) or sorted(c for c, _ in attrs) != list(range(len(names))):
        return False
    for col, name_attr in attrs:
        name_attr["D"] = names[col]
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(program, f, separators=(",", ":"))
    return True


def _json_ops(node):
    """Every operation of a PIR program read from inference.json (dicts with an op name `#` such as
    `1.conv2d`, and outputs `O`), in program order."""
    if isinstance(node, dict):
        if isinstance(node.get("#"), str) and "O" in node:
            yield node
        for value in node.values():
            yield from _json_ops(value)
    elif isinstance(node, list):
        for value in node:
            yield from _json_ops(value)


def program_op_counts(model_file):
    """{op name: count} of an inference.json program (None for the legacy .pdmodel format)."""
    import collections
    import json
    if not model_file.endswith(".json"):
        return None
    with open(model_file, encoding="utf-8") as f:
        return dict(collections.Counter(op["#"].split(".", 1)[-1] for op in _json_ops(json.load(f))))
