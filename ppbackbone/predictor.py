"""Run an exported model: `Predictor(model_dir)` reads inference.yml, preprocesses images with the
same transforms training used (ppbackbone.data.transforms), runs Paddle Inference (or ONNX Runtime /
OpenVINO on model.onnx) and returns top-k classes, or named feature maps for a feature-mode export.

The runtime backends are usable on their own (`PaddleBackend(model_file, params_file)`,
`OnnxRuntimeBackend(onnx_file)`, `OpenVinoBackend(onnx_file)`): `run(batch) -> [arrays]`.
"""
import os

import numpy as np
import yaml

from .errors import UserError

__all__ = ["Predictor", "read_inference_config", "PaddleBackend", "OnnxRuntimeBackend", "OpenVinoBackend",
           "create_backend", "ModelDirError", "ImageError", "RUNTIMES", "DEVICES", "IMAGE_EXTENSIONS",
           "list_images", "format_result"]

RUNTIMES = ("paddle", "onnxruntime", "openvino")
DEVICES = ("cpu", "gpu")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ModelDirError(UserError, ValueError):
    """An export directory that is missing, incomplete or corrupted; the message says what to do."""


class ImageError(UserError, ValueError):
    """An image that cannot be read or decoded; the message names it."""


def _default_threads():
    return max(1, min(4, os.cpu_count() or 1))


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}; allowed: {', '.join(allowed)}")


# ----------------------------------------------------------------------------------------- backends
class PaddleBackend:
    """Paddle Inference predictor over `inference.json` / `inference.pdmodel` + `inference.pdiparams`."""

    name = "paddle"

    def __init__(self, model_file, params_file, device="cpu", threads=None, onednn=True):
        from paddle import inference
        import paddle
        _check_choice("device", device, DEVICES)
        for path in (model_file, params_file):
            if not os.path.isfile(path):
                raise ModelDirError(f"{path} is missing; re-export the model with tools/export.py")
        config = inference.Config(model_file, params_file)
        if device == "gpu":
            if not paddle.is_compiled_with_cuda():
                raise ValueError("device='gpu' but this Paddle build has no CUDA support; use device='cpu' or "
                                 "install paddlepaddle-gpu")
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(int(threads or _default_threads()))
            if onednn:
                # Paddle 3 renamed enable_mkldnn to enable_onednn; accept either build.
                (getattr(config, "enable_onednn", None) or config.enable_mkldnn)()
        config.disable_glog_info()
        try:
            self.predictor = inference.create_predictor(config)
        except Exception as err:  # Paddle raises many error types for a bad program/params file
            last_line = (str(err).strip().splitlines() or [""])[-1]  # Paddle puts the cause last
            raise ModelDirError(f"Paddle Inference could not load {model_file} + {params_file} "
                                f"({type(err).__name__}: {last_line}). The files look corrupted or incomplete; "
                                f"re-export with tools/export.py") from None
        self.input_names = self.predictor.get_input_names()
        self.output_names = self.predictor.get_output_names()

    def run(self, batch):
        handle = self.predictor.get_input_handle(self.input_names[0])
        batch = np.ascontiguousarray(batch, dtype="float32")
        handle.reshape(list(batch.shape))
        handle.copy_from_cpu(batch)
        self.predictor.run()
        return [self.predictor.get_output_handle(n).copy_to_cpu() for n in self.output_names]


class OnnxRuntimeBackend:
    """ONNX Runtime (CPU) session over model.onnx."""

    name = "onnxruntime"

    def __init__(self, onnx_file, threads=None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("runtime='onnxruntime' needs onnxruntime: pip install onnxruntime "
                              "(or pip install ppbackbone[onnx])") from None
        if not os.path.isfile(onnx_file):
            raise ModelDirError(f"{onnx_file} is missing; export with tools/export.py ... --onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or _default_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for a bad file
            raise ModelDirError(f"ONNX Runtime could not load {onnx_file} ({err}); re-export with --onnx") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch):
        return self.session.run(None, {self.input_names[0]: np.ascontiguousarray(batch, dtype="float32")})


class OpenVinoBackend:
    """OpenVINO (CPU) compiled model over model.onnx."""

    name = "openvino"

    def __init__(self, onnx_file, threads=None):
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("runtime='openvino' needs openvino: pip install openvino") from None
        if not os.path.isfile(onnx_file):
            raise ModelDirError(f"{onnx_file} is missing; export with tools/export.py ... --onnx")
        try:
            # f32: OpenVINO would pick bf16 on CPUs with AMX/AVX512-BF16, trading accuracy silently.
            self.compiled = ov.Core().compile_model(onnx_file, "CPU", {
                "INFERENCE_NUM_THREADS": int(threads or _default_threads()), "INFERENCE_PRECISION_HINT": "f32"})
        except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelDirError(f"OpenVINO could not load {onnx_file} ({err}); re-export with --onnx") from None
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def run(self, batch):
        result = self.request.infer([np.ascontiguousarray(batch, dtype="float32")])
        return [np.asarray(result[o]) for o in self.compiled.outputs]


# ----------------------------------------------------------------------------------------- inference.yml
def read_inference_config(model_dir):
    """Read and check `<model_dir>/inference.yml`; returns the dict. Clear errors for a missing,
    foreign or incomplete directory."""
    from .export import FORMAT_VERSION, INFERENCE_YML, MODEL_FILES
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise ModelDirError(f"model_dir {model_dir} does not exist or is not a directory")
    path = os.path.join(model_dir, INFERENCE_YML)
    if not os.path.isfile(path):
        found = ", ".join(sorted(os.listdir(model_dir))[:6]) or "nothing"
        raise ModelDirError(f"{model_dir} has no {INFERENCE_YML} (found: {found}): not a ppbackbone export. "
                            f"Export one with tools/export.py -c <config> -o Global.pretrained_model=<weights>")
    try:
        with open(path, encoding="utf-8") as f:
            info = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{path} is not valid YAML ({err}); re-export the model") from None
    if not isinstance(info, dict):
        raise ModelDirError(f"{path} does not hold a mapping; re-export the model")
    version = info.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelDirError(f"{path} has format_version {version!r}; this ppbackbone reads up to "
                            f"{FORMAT_VERSION} (upgrade ppbackbone or re-export)")
    required = {"Model": ("name", "mode", "model_file", "params_file"), "Input": ("name", "shape"),
                "PreProcess": ("transform_ops",)}
    for section, keys in required.items():
        block = info.get(section)
        missing = [k for k in keys if not isinstance(block, dict) or k not in block]
        if missing:
            raise ModelDirError(f"{path} lacks {', '.join(f'{section}.{k}' for k in missing)}; re-export the model")
    if not isinstance(info.get("Outputs"), list) or not info["Outputs"]:
        raise ModelDirError(f"{path} lacks the Outputs list; re-export the model")
    if info["Model"]["model_file"] not in MODEL_FILES:
        raise ModelDirError(f"{path}: Model.model_file={info['Model']['model_file']!r} is not one of {MODEL_FILES}")
    return info


def create_backend(model_dir, info, runtime="paddle", device="cpu", threads=None, onednn=True):
    """The runtime backend for an export directory whose inference.yml is `info`."""
    from .export import ONNX_FILE
    _check_choice("runtime", runtime, RUNTIMES)
    _check_choice("device", device, DEVICES)
    if runtime == "paddle":
        return PaddleBackend(os.path.join(model_dir, info["Model"]["model_file"]),
                             os.path.join(model_dir, info["Model"]["params_file"]), device=device,
                             threads=threads, onednn=onednn)
    if device != "cpu":
        raise ValueError(f"runtime={runtime!r} runs on device='cpu' only here; got device={device!r}")
    onnx_file = os.path.join(model_dir, info["Model"].get("onnx_file") or ONNX_FILE)
    if runtime == "onnxruntime":
        return OnnxRuntimeBackend(onnx_file, threads=threads)
    return OpenVinoBackend(onnx_file, threads=threads)


def list_images(path):
    """[path] for a file, or the sorted image files (by extension) of a folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ImageError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        return files
    if not os.path.exists(path):
        raise ImageError(f"Image path {path} does not exist")
    return [path]


def format_result(result):
    """One line for a Predictor result (top-k classes, or feature map shapes)."""
    if "class_ids" in result:
        names = result.get("label_names") or [None] * len(result["class_ids"])
        return ", ".join(f"{cid}{f' ({name})' if name else ''} {score:.4f}"
                         for cid, name, score in zip(result["class_ids"], names, result["scores"]))
    return ", ".join(f"{name} {list(np.shape(value))}" for name, value in result.items())


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------- predictor
class Predictor:
    """Predictor over an export directory.

    Args:
        model_dir: a directory written by tools/export.py (inference.yml + model files).
        device: "cpu" or "gpu" (gpu: Paddle Inference on a CUDA build only).
        threads: CPU threads (default min(4, cores)).
        runtime: "paddle" (Paddle Inference, oneDNN on CPU), "onnxruntime" or "openvino" (both on
            model.onnx, written by `tools/export.py ... --onnx`).
        topk: classes per image (default inference.yml's PostProcess.topk).

    `predict(images)` takes an image path, encoded bytes, an HWC uint8 RGB array, or a list of
    them, and returns one result per image: `{"class_ids", "scores", "label_names"}` for a
    classifier, `{output name: CHW feature map}` for a feature-mode export, `{"features": vector}`
    for a model exported without classifier (class_num 0).
    """

    def __init__(self, model_dir, device="cpu", threads=None, runtime="paddle", topk=None, onednn=True):
        _check_choice("runtime", runtime, RUNTIMES)
        _check_choice("device", device, DEVICES)
        self.model_dir = os.fspath(model_dir)
        self.info = read_inference_config(self.model_dir)
        self.runtime = runtime
        self.mode = self.info["Model"]["mode"]
        self.input_shape = list(self.info["Input"]["shape"])
        self.output_names = [o["name"] for o in self.info["Outputs"]]
        post = self.info.get("PostProcess") or {}
        self.topk = int(topk if topk is not None else post.get("topk", 5))
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.label_list = post.get("label_list")
        self.softmax = bool(post.get("softmax", True))
        self.backend = create_backend(self.model_dir, self.info, runtime=runtime, device=device, threads=threads,
                                      onednn=onednn)
        self._ops = None

    # ---------------------------------------------------------------- preprocessing
    def _transforms(self):
        if self._ops is None:
            # The same builder training and evaluation use: one definition of every op.
            from .data.transforms import build_transforms
            self._ops = build_transforms(self.info["PreProcess"]["transform_ops"])
        return self._ops

    def preprocess(self, image):
        """One image -> CHW float32 array of the input size. `image`: a path, the encoded bytes,
        or an already decoded HWC uint8 array in the model's channel order (RGB)."""
        source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<image>"
        if isinstance(image, (str, os.PathLike)):
            try:
                with open(image, "rb") as f:
                    image = f.read()
            except OSError as err:
                raise ImageError(f"Could not read image {source}: {err.strerror or err}") from None
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[-1] != 3:
                raise ImageError(f"An array image must be HWC with 3 channels, got shape {list(image.shape)}")
        elif not isinstance(image, (bytes, bytearray)):
            raise ImageError(f"Unsupported image type {type(image).__name__}; pass a path, bytes or an HWC array")
        data = image
        for name, op in self._transforms().ops:
            try:
                data = op(data)
            except Exception as err:  # a decoder/transform failure on this input: name the image
                raise ImageError(f"Could not read image {source} ({name}: {err})") from None
        data = np.asarray(data, dtype="float32")
        expected = self.input_shape[1:]
        if list(data.shape) != expected:
            raise ImageError(f"Preprocessing produced shape {list(data.shape)} for {source}; the model takes "
                             f"{expected}")
        return data

    # ---------------------------------------------------------------- running
    def run(self, batch):
        """Raw outputs for a preprocessed NCHW float32 batch: {output name: array}."""
        outs = self.backend.run(batch)
        return dict(zip(self.output_names, outs))

    def postprocess(self, outputs):
        """Per-image results from the raw outputs of `run`."""
        if self.mode != "classification":  # feature maps or pooled embeddings, by output name
            n = len(next(iter(outputs.values())))
            return [{name: value[i] for name, value in outputs.items()} for i in range(n)]
        values = outputs[self.output_names[0]]
        probs = _softmax(values) if self.softmax else values
        k = min(self.topk, probs.shape[1])
        results = []
        for row in probs:
            ids = np.argsort(-row, kind="stable")[:k]
            result = {"class_ids": [int(i) for i in ids], "scores": [float(row[i]) for i in ids]}
            if self.label_list:
                result["label_names"] = [str(self.label_list[i]) for i in ids]
            results.append(result)
        return results

    def predict(self, images, batch_size=8):
        """Results for one image or a list of images (paths, bytes, HWC uint8 RGB arrays)."""
        if isinstance(images, (str, os.PathLike, bytes, bytearray)) or (
                isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        results = []
        for start in range(0, len(images), batch_size):
            batch = np.stack([self.preprocess(img) for img in images[start:start + batch_size]])
            results.extend(self.postprocess(self.run(batch)))
        return results

    __call__ = predict
