"""Export a trained model for deployment: weights -> eval -> reparameterize -> [softmax] -> to_static
-> jit.save, then `inference.yml` beside it and a verification with Paddle Inference before anything
is published.

The export directory is written in a temporary directory next to `save_dir` and renamed onto it only
after the reloaded model agreed with the dygraph one, so a failed export leaves nothing half-written.
Its format (file names, inference.yml) belongs to ppbackbone.export_dir; the runtimes verifying it
to ppbackbone.runtimes.
"""
import os
import shutil
import tempfile
import time
import warnings

import numpy as np
import paddle

from ..config import build_model, check_output_dir
from ..errors import ConfigError, UserError
from .export_dir import (EXPORT_MARKERS, FORMAT_VERSION, INFERENCE_YML, INPUT_NAME, MODEL_FILES, MODEL_PREFIX,
                         ONNX_FILE, ONNX_INT8_FILE, PADDLEX_OPS, PARAMS_FILE, check_paddlex_name, find_model_file,
                         from_paddlex_ops, to_paddlex_ops, write_inference_config)
from .precision import (DEFAULT_CALIB_IMAGES, DEFAULT_VERIFY_IMAGES, PrecisionRefused, eval_images, quantize_int8,
                        require_quantizer, verify_precision)
from .runtimes import (BF16_FLAGS, PRECISIONS, RUNTIME_LABELS, OnnxRuntimeBackend, OpenVinoBackend, PaddleBackend,
                       PrecisionError, installed_runtimes, require_bf16)
from ..arch.recognition import deployable
from ..weights.io import file_sha256, load_weights, read_state_dict

__all__ = ["export_model", "ExportError", "ExportResult", "derive_inference_config", "convert_to_onnx",
           "save_static", "program_op_counts", "output_names", "DEFAULT_TOLERANCE", "DEFAULT_ONNX_OPSET"]

# Max |exported - dygraph| allowed, relative to the output's scale (max(1, max|dygraph output|)).
DEFAULT_TOLERANCE = 1e-4
DEFAULT_ONNX_OPSET = 13


class ExportError(UserError, RuntimeError):
    """An export that cannot be done or did not verify; the message says why and what to change."""


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


# ----------------------------------------------------------------------------------------- helpers
def output_names(model, softmax=False):
    """Names of the exported outputs: `probs` (classifier ending in softmax) or `logits`, `features`
    (pooled, no fc), or one `stage{i}` per `out_indices` entry (feature mode; i is the stage index
    the user wrote)."""
    if getattr(model, "out_indices", None) is not None:
        return [f"stage{i}" for i in model.out_indices]
    if not getattr(model, "num_classes", 1):
        return ["features"]
    return ["probs"] if softmax else ["logits"]


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]



def _pretrained_cfg(config):
    """The registry's pretrained configuration of Arch.name (None for a name the registry does not know)."""
    from ..arch import pretrained_cfg
    try:
        return pretrained_cfg((config.get("Arch") or {}).get("name"))
    except (ValueError, TypeError):
        return None


def _image_shape(config, image_shape=None):
    """image_shape, else Global.image_shape, else the model's pretrained input size (else 3x224x224)."""
    default = list((_pretrained_cfg(config) or {}).get("input_size", (3, 224, 224)))
    shape = image_shape if image_shape is not None else config.get("Global", {}).get("image_shape", default)
    try:
        shape = [int(v) for v in shape]
    except (TypeError, ValueError):
        raise ConfigError(f"Global.image_shape={shape!r} must be [channels, height, width], "
                          f"e.g. [3, 224, 224]") from None
    if len(shape) != 3 or shape[0] != 3 or min(shape) <= 0:
        raise ConfigError(f"Global.image_shape={shape} must be [3, height, width] with positive sizes "
                          f"(the models take RGB images)")
    return shape


def _check_save_dir(save_dir):
    """Refuse a target that holds something other than a previous export (it would be replaced)."""
    if os.path.isfile(save_dir):
        raise ExportError(f"Global.save_inference_dir={save_dir} is a file; expected a directory")
    if os.path.isdir(save_dir):
        entries = os.listdir(save_dir)
        if entries and not any(name in entries for name in EXPORT_MARKERS):
            shown = ", ".join(sorted(entries)[:5]) + (" ..." if len(entries) > 5 else "")
            raise ExportError(f"Global.save_inference_dir={save_dir} exists and holds files that are not an "
                              f"export ({shown}); choose another directory (an export replaces the whole "
                              f"directory)")


def _publish(tmp_dir, save_dir):
    """Move the verified export onto `save_dir`, replacing a previous export there."""
    old = None
    if os.path.exists(save_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(save_dir)}.old-", dir=os.path.dirname(save_dir))
        os.rmdir(old)
        os.rename(save_dir, old)
    try:
        os.rename(tmp_dir, save_dir)
    except OSError:
        if old is not None:
            os.rename(old, save_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------- weights
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
        return arch_pretrained, "Arch.pretrained"
    if allow_random_weights:
        return None, None
    raise ExportError("No weights to export: set -o Global.pretrained_model=<file.pdparams|file.safetensors> "
                      "(a checkpoint path prefix like output/best_model works too). Exporting randomly "
                      "initialised weights is refused unless asked for explicitly: --random-weights "
                      "(export_model(..., allow_random_weights=True)), for benchmarking only")


def _load_checked(model, path, flag, log=print):
    """load_weights (its report logged) + the checks an export needs: every tensor loaded."""
    try:
        report = load_weights(model, path, verbose=False)
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


# ----------------------------------------------------------------------------------------- inference.yml
def _transform_ops(config):
    """The preprocessing the model was evaluated with: DataLoader.Eval's transform_ops (what the
    reported accuracy was measured with; a retrieval evaluation's Query set), else Infer.transforms;
    None when the config has neither."""
    eval_section = config.get("DataLoader", {}).get("Eval", {}) or {}
    eval_section = eval_section.get("Query", eval_section) or {}
    eval_ops = (eval_section.get("dataset") or {}).get("transform_ops")
    infer_ops = (config.get("Infer", {}) or {}).get("transforms")
    if eval_ops and infer_ops:
        core = lambda ops: [op for op in ops if _op_name(op) not in ("DecodeImage", "ToCHWImage")]  # noqa: E731
        if core(eval_ops) != core(infer_ops):
            warnings.warn("DataLoader.Eval.dataset.transform_ops and Infer.transforms differ; inference.yml "
                          "uses the Eval ops (the ones the model's accuracy was measured with)")
    ops = eval_ops or infer_ops
    return [dict(op) if isinstance(op, dict) else {op: None} for op in ops] if ops else None


def _op_name(op):
    if isinstance(op, str):
        return op
    if not isinstance(op, dict) or len(op) != 1:
        raise ConfigError(f"A transform op must be a one-key mapping like {{ResizeImage: {{resize_short: 256}}}}, "
                          f"got {op!r}")
    return next(iter(op))


def _default_ops(height, width, cfg=None, feature_mode=True):
    """Preprocessing for a config without any: what the model's published weights expect (registry
    `pretrained_cfg`: resize the short side, centre crop, interpolation, mean/std) for a classifier exported at
    their input size; otherwise (feature mode, another size, an unregistered name) a resize to the input size
    with the weights' interpolation and mean/std (ImageNet's when unknown)."""
    cfg = cfg or {}
    interpolation = {"interpolation": cfg["interpolation"], "backend": "pil"} if cfg.get("interpolation") else {}
    if cfg and not feature_mode and tuple(cfg["input_size"][1:]) == (height, width) and height == width:
        geometry = [{"ResizeImage": {"resize_short": cfg["resize_short"], **interpolation}},
                    {"CropImage": {"size": height}}]
    else:
        geometry = [{"ResizeImage": {"size": [width, height], **interpolation}}]
    return [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, *geometry,
            {"NormalizeImage": {"scale": "1.0/255.0", "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
                                "std": list(cfg.get("std", (0.229, 0.224, 0.225))), "order": ""}},
            {"ToCHWImage": None}]


def _preprocess_ops(config, image_shape, feature_mode):
    """Deployment preprocessing from the config: decode -> geometry -> normalize -> CHW.

    Classifier: the Eval ops as they are (their output must be the export's input size). Feature
    mode (detection): the whole image is resized to the input size, as detectors do, keeping the
    config's interpolation and normalization. Training-only ops are not in Eval's list by design.
    """
    _, height, width = image_shape
    ops = _transform_ops(config)
    if ops is None:
        cfg = _pretrained_cfg(config)
        warnings.warn("The config has no DataLoader.Eval.dataset.transform_ops nor Infer.transforms; "
                      + (f"inference.yml gets what {cfg['model']}'s published weights expect (ppbackbone."
                         f"pretrained_cfg: resize_short {cfg['resize_short']}, {cfg['interpolation']}, its mean/std)"
                         if cfg else "inference.yml gets the ImageNet default (resize to the input size, ImageNet "
                                     "mean/std)"))
        return _default_ops(height, width, cfg, feature_mode)
    names = [_op_name(op) for op in ops]
    if "DecodeImage" not in names:
        ops.insert(0, {"DecodeImage": {"to_rgb": True, "channel_first": False}})
    if feature_mode:
        resize = {"size": [width, height]}
        for op in ops:  # keep the config's resampling (interpolation, backend)
            params = op[_op_name(op)] or {}
            if _op_name(op) == "ResizeImage":
                resize.update({k: params[k] for k in ("interpolation", "backend") if params.get(k)})
        ops = [op for op in ops if _op_name(op) in ("DecodeImage", "NormalizeImage", "ToCHWImage")]
        ops.insert(1, {"ResizeImage": resize})
    normalize = [op for op in ops if _op_name(op) == "NormalizeImage"]
    order = ((normalize[0]["NormalizeImage"] or {}).get("order", "chw") if normalize else "") or ""
    if "ToCHWImage" not in [_op_name(op) for op in ops] and order.lower() != "chw":
        ops.append({"ToCHWImage": None})
    return ops


def _check_preprocess(ops, image_shape):
    """Build the ops with ppbackbone.data.transforms and run them on a synthetic image: unknown ops
    fail here, at export time, and the output must have the exported input's shape."""
    import io

    from PIL import Image

    from ..data.transforms import build_transforms
    ops = from_paddlex_ops(ops)  # built exactly as the Predictor will build them
    try:
        transforms = build_transforms(ops)
    except Exception as err:  # an op the deploy side cannot build must stop the export
        raise ExportError(f"The config's preprocessing cannot be built for deployment: {err}") from None
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (375, 500, 3), dtype=np.uint8)).save(buffer, "PNG")
    shape = list(np.asarray(transforms(buffer.getvalue())).shape)
    if shape != list(image_shape):
        raise ExportError(f"The preprocessing ({', '.join(_op_name(op) for op in ops)}) produces {shape} images but "
                          f"the model is exported for Global.image_shape={list(image_shape)}; make the crop/resize "
                          f"size and Global.image_shape agree")


def _label_list(config, num_classes):
    """Class names from Infer.PostProcess.class_id_map_file (PaddleClas: `id name` per line)."""
    post = (config.get("Infer", {}) or {}).get("PostProcess", {}) or {}
    path = post.get("class_id_map_file")
    if not path:
        return None
    if not os.path.isfile(path):
        raise ExportError(f"Infer.PostProcess.class_id_map_file={path} does not exist; fix the path or remove "
                          f"the key (the label list is copied into inference.yml)")
    labels = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if not parts[0].isdigit():
                raise ExportError(f"{path}:{number}: expected `<class id> <name>`, got {line.strip()!r}")
            labels[int(parts[0])] = parts[1] if len(parts) > 1 else parts[0]
    if num_classes and max(labels, default=-1) >= num_classes:
        raise ExportError(f"{path} names class id {max(labels)} but the model has {num_classes} classes "
                          f"(Arch.class_num); is it the label file of another dataset?")
    size = num_classes or (max(labels) + 1)
    return [labels.get(i, str(i)) for i in range(size)]


def _mode(model):
    """classification (logits), features (stage maps, out_indices) or embedding (pooled, no fc)."""
    if model.out_indices is not None:
        return "features"
    return "classification" if getattr(model, "num_classes", 0) else "embedding"


def _inference_ops(config, image_shape, feature_mode):
    """PreProcess.transform_ops of inference.yml: the deployment ops in PaddleX's layout. Ops PaddleX
    does not know stay (ppbackbone.Predictor reads them), with a warning that PaddleX will not."""
    try:
        ops = to_paddlex_ops(_preprocess_ops(config, image_shape, feature_mode))
    except ValueError as err:
        raise ExportError(str(err)) from None
    foreign = [_op_name(op) for op in ops if _op_name(op) not in PADDLEX_OPS]
    if foreign:
        warnings.warn(f"inference.yml's preprocessing uses {', '.join(foreign)}, which PaddleX does not know (it "
                      f"builds {', '.join(PADDLEX_OPS)}): ppbackbone.Predictor reads the export, PaddleX will not")
    return ops


def _postprocess(config, model, softmax_in_graph):
    """PaddleClas's PostProcess: {Topk: {topk, label_list}} for a classifier, NormalizeFeatures for an
    embedding, none for feature maps."""
    mode = _mode(model)
    if mode == "embedding":
        return {"NormalizeFeatures": None}
    if mode != "classification":
        return None
    post = dict((config.get("Infer", {}) or {}).get("PostProcess", {}) or {})
    num_classes = int(model.num_classes)
    topk = max(1, min(int(post.get("topk", 5)), num_classes))
    return {"Topk": {"topk": topk, "label_list": _label_list(config, num_classes)}}


def derive_inference_config(config, model, image_shape, outputs, fused, softmax_in_graph=True,
                            paddlex_name=None, weights=None, weights_flag=None):
    """The content of inference.yml (a dict, format_version 2), derived from the training config and
    the model: PaddleClas's/PaddleX's Global, PreProcess, PostProcess, then ppbackbone's sections."""
    from .. import __version__
    feature_mode = model.out_indices is not None
    mode = _mode(model)
    info = {}
    if paddlex_name:
        info["Global"] = {"model_name": paddlex_name}
    info["PreProcess"] = {"transform_ops": _inference_ops(config, image_shape, feature_mode)}
    post = _postprocess(config, model, softmax_in_graph)
    if post:
        info["PostProcess"] = post
    info["format_version"] = FORMAT_VERSION
    info["Model"] = {"name": model.model_name, "mode": mode, "fused": bool(fused),
                     "class_num": int(getattr(model, "num_classes", 0) or 0),
                     "softmax_in_graph": bool(softmax_in_graph and mode == "classification"),
                     "weights": None, "weights_sha256": None}
    if weights:
        info["Model"]["weights"] = os.path.abspath(weights) if os.path.isfile(weights) else str(weights)
        info["Model"]["weights_from"] = weights_flag
        if os.path.isfile(weights):
            info["Model"]["weights_sha256"] = file_sha256(weights)
    info["Input"] = {"name": INPUT_NAME, "shape": [-1] + list(image_shape), "dtype": "float32", "layout": "NCHW",
                     "channel_order": "RGB"}
    info["Outputs"] = []
    for name, out in zip(outputs, _as_list(model.out_feature_info if feature_mode else [None])):
        entry = {"name": name}
        if feature_mode:
            entry.update(stage=int(name[len("stage"):]), channels=int(out["channels"]), stride=int(out["stride"]),
                         module=out["name"])
        info["Outputs"].append(entry)
    info["Versions"] = {"ppbackbone": __version__, "paddle": paddle.__version__}
    return info


# ----------------------------------------------------------------------------------------- program files
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


def save_static(layer, directory, image_shape, names=None, log=print):
    """`paddle.jit.to_static` (dynamic batch, input `x` of `image_shape`) + `paddle.jit.save` of an
    eval-mode layer into `directory`/inference.*; names the outputs when given. Returns the program
    file's name (inference.json, or inference.pdmodel under FLAGS_enable_pir_api=0)."""
    spec = [paddle.static.InputSpec([None] + list(image_shape), "float32", INPUT_NAME)]
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


# ----------------------------------------------------------------------------------------- verification
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


# ----------------------------------------------------------------------------------------- export
def export_model(config, save_dir=None, weights=None, allow_random_weights=False, fuse=True, onnx=False,
                 verify=True, tolerance=DEFAULT_TOLERANCE, threads=2, image_shape=None,
                 onnx_opset=DEFAULT_ONNX_OPSET, latency_runs=10, legacy_pdmodel=False, softmax=True,
                 paddlex_name=None, precision="fp32", calib_images=DEFAULT_CALIB_IMAGES,
                 verify_images=DEFAULT_VERIFY_IMAGES, budget=None, log=print):
    """Export the model a config describes, verified, into `save_dir`.

    Args:
        config: a loaded config dict (`ppbackbone.config.load_config`) or a path to a YAML file.
        save_dir: target directory (default `Global.save_inference_dir`). A previous export there
            is replaced; a directory holding anything else is refused.
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
    _check_precision(precision)
    if onnx:  # fail before any work when the optional dependencies are missing
        _require_onnx_tools()
    model, report, source = _build_with_weights(config, weights, allow_random_weights, log)
    if paddlex_name is None and _mode(model) != "classification":
        paddlex_name = "none"  # PaddleX's names for our models are its classifiers
    try:
        paddlex_name = check_paddlex_name(model.model_name, paddlex_name)
    except ValueError as err:
        raise ExportError(str(err)) from None
    held_out = _precision_images(config, model, shape, precision, calib_images, verify_images)

    sample = np.random.RandomState(0).standard_normal([2] + shape).astype("float32")
    reference = _dygraph_outputs(model, sample)  # the unfused model is the truth every step is checked against
    if fuse:
        _fuse_checked(model, sample, reference, tolerance, log)
    elif _has_unfused(model):
        log(f"NOTE: {model.model_name} is exported UNFUSED (fuse=False): its Rep blocks keep their training "
            f"branches and run slower")
    graph, softmax_in_graph = _deploy_graph(model, softmax)
    if softmax_in_graph:
        reference = [_softmax(reference[0])]
    names = output_names(model, softmax_in_graph)

    _check_disk_space(save_dir, graph, onnx)
    with _staging_dir(save_dir) as tmp_dir:
        info = derive_inference_config(config, model, shape, names, fused=fuse, softmax_in_graph=softmax_in_graph,
                                       paddlex_name=paddlex_name, weights=report.path if report else None,
                                       weights_flag=source)
        _check_preprocess(info["PreProcess"]["transform_ops"], shape)
        model_file = _save_program(graph, tmp_dir, shape, names, legacy_pdmodel, log)
        _check_written(tmp_dir, graph)
        info["Model"].update(model_file=model_file, params_file=PARAMS_FILE)
        verification = {"sample": f"N(0,1) batch of 2x{shape}", "tolerance": tolerance}
        verified_on = []
        if verify:
            verification.update(_verify_paddle(tmp_dir, model_file, sample, reference, names, tolerance, threads,
                                               latency_runs, info, log))
            verified_on.append("paddle")
        else:
            verification["paddle_inference"] = "skipped (verify=False)"
        if onnx:  # always verified: an unverified inference.onnx is not written
            figures, runtimes = _export_onnx(tmp_dir, model_file, sample, reference, names, tolerance, threads,
                                             onnx_opset, info, log)
            verification.update(figures)
            verified_on.extend(runtimes)
        info["Precisions"] = {"fp32": {"verified_on": verified_on}}
        if precision != "fp32":
            info["Precisions"][precision] = _export_low_precision(tmp_dir, info, precision, held_out, threads,
                                                                  budget, log)
        info["Verification"] = verification
        write_inference_config(info, os.path.join(tmp_dir, INFERENCE_YML))
    files = sorted(os.listdir(save_dir))
    log(f"Exported {model.model_name} ({'fused' if fuse else 'unfused'}) to {save_dir}: {', '.join(files)}")
    return ExportResult(save_dir, files, info, report)


# The steps of export_model, in order.
def _as_config(config):
    from ..config import load_config
    return load_config(config) if isinstance(config, (str, os.PathLike)) else config


def _target_dir(config, save_dir):
    save_dir = save_dir or config.get("Global", {}).get("save_inference_dir")
    if not save_dir:
        raise ExportError("No output directory: set -o Global.save_inference_dir=<dir>")
    save_dir = os.path.abspath(os.fspath(save_dir))
    _check_save_dir(save_dir)
    check_output_dir(save_dir, "Global.save_inference_dir")  # a file on the way, read-only, no permission
    return save_dir


def _build_with_weights(config, weights, allow_random_weights, log):
    """(eval-mode model, load report or None, `flag=path` the weights came from or None)."""
    weights_path, flag = _weights_source(config, weights, allow_random_weights)
    model = build_model(config, pretrained=False)
    report = None
    if weights_path is None:
        log("WARNING: exporting RANDOMLY INITIALISED weights (--random-weights): for benchmarking only")
    else:
        report = _load_checked(_load_target(model, weights_path), weights_path, flag, log)
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


class _staging_dir:
    """`with _staging_dir(save_dir) as tmp:` a fresh directory beside save_dir, renamed onto it when
    the block succeeds and removed when it fails, so save_dir only ever holds a complete export."""

    def __init__(self, save_dir):
        self.save_dir = save_dir

    def __enter__(self):
        parent = os.path.dirname(self.save_dir)
        os.makedirs(parent, exist_ok=True)
        self.tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(self.save_dir)}.tmp-", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp_dir, 0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
        return self.tmp_dir

    def __exit__(self, kind, error, traceback):
        if kind is None:
            try:
                _publish(self.tmp_dir, self.save_dir)
                return False
            except BaseException:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
                raise
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        return False


def _parameter_bytes(layer):
    """Bytes of the parameters and buffers (BN statistics) an inference.pdiparams file holds, at least."""
    return sum(int(np.prod(t.shape)) * t.element_size() for t in layer.state_dict().values())


def _check_disk_space(save_dir, graph, onnx):
    """Refuse an export that cannot fit: Paddle's writer does not report a full disk (it leaves a short
    .pdiparams that then fails verification), so the space is checked before writing."""
    needed = _parameter_bytes(graph) * (2 if onnx else 1) + (8 << 20)  # + the program and inference.yml
    probe = save_dir
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise ExportError(f"Not enough disk space for the export in {save_dir}: {free / 2 ** 20:.1f} MB free, about "
                          f"{needed / 2 ** 20:.1f} MB needed (Global.save_inference_dir); free some space or choose "
                          f"another directory")


_NEARLY_FULL = 16 << 20  # bytes free under which a short or unreadable export is blamed on the disk


def _check_written(tmp_dir, graph):
    """A parameters file shorter than the parameters on a disk that is (nearly) full was cut by the full disk
    (Paddle's writer does not report it): say so, instead of a verification failure later. (A short file
    alone proves nothing: parameters a feature-mode graph does not use are not saved.)"""
    path = os.path.join(tmp_dir, PARAMS_FILE)
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    expected = _parameter_bytes(graph)
    free = shutil.disk_usage(tmp_dir).free
    if size < expected and free < _NEARLY_FULL:
        raise ExportError(f"Writing the export failed: the disk is full ({free / 2 ** 20:.1f} MB free on the disk of "
                          f"{tmp_dir}; {PARAMS_FILE} has {size} of about {expected} bytes). Free some space or "
                          f"choose another Global.save_inference_dir; nothing was written")


def _blame_full_disk(tmp_dir):
    """Raise the full-disk error when the disk under a failed verification is (nearly) full."""
    free = shutil.disk_usage(tmp_dir).free
    if free < _NEARLY_FULL:
        raise ExportError(f"Writing the export failed: the disk is full ({free / 2 ** 20:.1f} MB free on the disk of "
                          f"{tmp_dir}), so the saved files are incomplete. Free some space or choose another "
                          f"Global.save_inference_dir; nothing was written")


def _save_program(graph, tmp_dir, shape, names, legacy_pdmodel, log):
    model_file = save_static(graph, tmp_dir, shape, names, log=log)
    if legacy_pdmodel and model_file != "inference.pdmodel":
        raise ExportError(f"Paddle {paddle.__version__} wrote {model_file}, not inference.pdmodel: the legacy "
                          f"program format needs FLAGS_enable_pir_api=0 set before Paddle is imported "
                          f"(tools/export.py --legacy-pdmodel does it), and a Paddle that still supports it")
    return model_file


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


# ----------------------------------------------------------------------------------------- low precision
def _check_precision(precision):
    """Refuse, before any work, a precision that is unknown, that this CPU lacks, or whose tools are
    not installed."""
    if precision not in PRECISIONS:
        raise ExportError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    try:
        if precision == "bf16":
            require_bf16("--precision")
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


def _export_low_precision(tmp_dir, info, precision, held_out, threads, budget, log):
    """Make (int8) and verify the low-precision variants against fp32 Paddle Inference on the held-out
    images; returns inference.yml's Precisions entry. Refused past the budget (nothing is written)."""
    calib, images, labels, described = held_out
    model_file = os.path.join(tmp_dir, info["Model"]["model_file"])
    params_file = os.path.join(tmp_dir, PARAMS_FILE)
    reference = PaddleBackend(model_file, params_file, threads=threads)
    onnx_file = os.path.join(tmp_dir, ONNX_FILE) if "onnx_file" in info["Model"] else None
    entry = {"images": described}
    if precision == "int8":
        int8_file = os.path.join(tmp_dir, ONNX_INT8_FILE)
        log(f"Quantizing {ONNX_FILE} to int8 (ONNX Runtime QDQ) on {len(calib)} calibration images ...")
        entry.update(file=ONNX_INT8_FILE, quantization=quantize_int8(onnx_file, int8_file, calib, INPUT_NAME))
        backends = {r: (OnnxRuntimeBackend if r == "onnxruntime" else OpenVinoBackend)(int8_file, threads=threads,
                                                                                      precision="int8")
                    for r in ("onnxruntime", "openvino") if r in installed_runtimes()}
    else:
        entry["needs_cpu_flags"] = list(BF16_FLAGS)  # one of them
        backends = {"paddle": PaddleBackend(model_file, params_file, threads=threads, precision="bf16")}
        if onnx_file and "openvino" in installed_runtimes():
            backends["openvino"] = OpenVinoBackend(onnx_file, threads=threads, precision="bf16")
    try:
        entry.update(verify_precision(precision, reference, backends, images, labels, budget, log))
    except PrecisionRefused as err:
        raise ExportError(str(err)) from None
    return entry


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
