"""What inference.yml says, derived from the training config and the model: the deployment preprocessing
(PreProcess, checked by building it), the labels and post-processing (PostProcess), the input shape and the
outputs. The file's format (names, sections, reading and writing) is export_dir.py's; the exporter
(export.py) writes what this module derives.
"""
import os
import warnings

import numpy as np
import paddle

from ..data.class_names import class_name_list
from ..data.dataset import DatasetError
from ..errors import ConfigError, ExportError
from ..weights.io import file_sha256
from .export_dir import FORMAT_VERSION, INPUT_NAME, PADDLEX_OPS, from_paddlex_ops, to_paddlex_ops

__all__ = ["derive_inference_config", "output_names"]


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


def _mode(model):
    """classification (logits), features (stage maps, out_indices) or embedding (pooled, no fc)."""
    if model.out_indices is not None:
        return "features"
    return "classification" if getattr(model, "num_classes", 0) else "embedding"


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
    """Class names for PostProcess Topk: the config's label file (Infer.PostProcess.class_id_map_file, or the
    demo's label list when it trains on the demo), None when it names none."""
    try:
        return class_name_list(config, num_classes)
    except DatasetError as err:
        raise ExportError(f"{err} (the class names are copied into inference.yml)") from None


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
                            paddlex_name=None, weights=None, weights_flag=None, input_shape=None):
    """The content of inference.yml (a dict, format_version 2), derived from the training config and
    the model: PaddleClas's/PaddleX's Global, PreProcess, PostProcess, then ppbackbone's sections.
    `input_shape`: the program's [C, H, W] when it differs from `image_shape` (-1: any size)."""
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
    info["Input"] = {"name": INPUT_NAME, "shape": [-1] + list(input_shape or image_shape), "dtype": "float32",
                     "layout": "NCHW",
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
