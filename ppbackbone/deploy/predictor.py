"""Run an exported model: `Predictor(model_dir)` reads the export directory (ppbackbone's, or an
official PaddleClas/PaddleX one) through ppbackbone.export_dir, preprocesses images with the same
transforms training used (ppbackbone.data.transforms), runs it on one of ppbackbone.runtimes'
backends (Paddle Inference, ONNX Runtime, OpenVINO) and returns top-k classes, embeddings, or named
feature maps for a feature-mode export.
"""
import collections
import contextlib
import copy
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ConfigError, InputFileError, UserError, check_positive_int, check_regular_file
from .autoselect import OBJECTIVES
from .export_dir import INFERENCE_YML, ModelDirError, read_export, read_inference_config  # noqa: F401 (public API)
from .runtimes import (DEVICES, PRECISIONS, RUNTIMES, OnnxRuntimeBackend, OpenVinoBackend,  # noqa: F401
                       PaddleBackend, PrecisionError, create_backend, default_threads)

__all__ = ["Predictor", "read_inference_config", "PaddleBackend", "OnnxRuntimeBackend", "OpenVinoBackend",
           "create_backend", "ModelDirError", "ImageError", "PrecisionError", "RUNTIMES", "DEVICES", "PRECISIONS",
           "IMAGE_EXTENSIONS", "list_images", "format_result", "prefetched_batches", "OBJECTIVES"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageError(UserError, ValueError):
    """An image that cannot be read or decoded; the message names it."""


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


def _probe_image():
    """A synthetic decoded image, to learn the input size a directory's preprocessing produces."""
    return np.random.RandomState(0).randint(0, 256, (300, 400, 3), dtype=np.uint8)


def default_preprocess_workers():
    """Threads that preprocess the next batches while the runtime runs the current one."""
    return max(1, min(2, os.cpu_count() or 1))


def prefetched_batches(images, preprocess, batch_size, workers, depth=2):
    """Yield (images of one batch, [preprocessed array, or the ImageError it raised, per image]) in order.
    With `workers` > 0 a thread pool preprocesses up to `depth` batches ahead while the caller runs the
    current one (decoding and resizing release the GIL, and so do the runtimes' run calls); with 0 each
    batch is preprocessed in the calling thread when it is asked for."""
    def attempt(image):
        try:
            return preprocess(image)
        except ImageError as err:  # handed to the caller in the image's place; other errors propagate
            return err
    chunks = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    if not workers or len(images) <= 1:
        for chunk in chunks:
            yield chunk, [attempt(image) for image in chunk]
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ppbackbone-preprocess")
    pending = collections.deque()
    try:
        for chunk in chunks:
            pending.append((chunk, [pool.submit(attempt, image) for image in chunk]))
            if len(pending) > depth:
                chunk, futures = pending.popleft()
                yield chunk, [future.result() for future in futures]
        while pending:
            chunk, futures = pending.popleft()
            yield chunk, [future.result() for future in futures]
    finally:  # also when the caller stops early (an error, a break): no work left running
        pool.shutdown(wait=True, cancel_futures=True)


def _softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------- predictor
class Predictor:
    """Predictor over an export directory.

    Args:
        model_dir: a directory written by tools/export.py (format_version 1 or 2), or an official
            PaddleClas/PaddleX inference directory (inference.json/.pdmodel + .pdiparams + inference.yml).
        device: "cpu" or "gpu" (gpu: Paddle Inference on a CUDA build only).
        threads: CPU threads (default min(4, cores)).
        runtime: "paddle" (Paddle Inference, oneDNN on CPU), "onnxruntime" or "openvino" (both on
            inference.onnx, written by `tools/export.py ... --onnx`), or "auto": measure the installed
            runtimes x the precisions the export was verified at, once on this machine, and run the
            fastest (the choice is cached in the directory's runtime_choice.json and logged).
        precision: "fp32" (default for a named runtime), or a precision the export was verified at
            ("bf16", "int8"; inference.yml's Precisions); with runtime="auto", None means any.
        log: where runtime="auto" says what it picked (default print).
        topk: classes per image (default inference.yml's PostProcess).
        batch_size: images per runtime call in `predict` (default 8; `predict(images, batch_size=N)` overrides
            it for one call); results do not depend on it (batch 1's answers, within float rounding).
        preprocess_workers: threads that decode/resize/normalize the next batches while the runtime runs
            the current one (default min(2, cores)); 0 preprocesses in the calling thread, no overlap.
        objective: what runtime="auto" optimises: "latency" (measured at batch 1, the default) or
            "throughput" (images per second at `batch_size`); part of the cached choice's key.
        max_image_pixels: refuse images of more pixels (width x height, read from the file's header before
            decoding) with an ImageError naming the image; default the limit image_max_pixels (178956970,
            PPBACKBONE_IMAGE_MAX_PIXELS; docs/cli.md).

    `predict(images)` takes an image path, encoded bytes, an HWC uint8 RGB array, or a list of
    them, runs them `batch_size` at a time, and returns one result per image, in order:
    `{"class_ids", "scores", "label_names"}` for a classifier, `{output name: CHW feature map}` for a
    feature-mode export, `{"features": vector}` for a model exported without classifier (class_num 0).

    Threads: one Predictor may be shared by several threads. Preprocessing runs in parallel; the
    runtime call is serialized by a lock (Paddle Inference and OpenVINO requests are not
    thread-safe), so results equal those of single-threaded calls. For inference in parallel,
    create one Predictor per thread (each loads the model; give each `threads=` a share of the cores).
    """

    def __init__(self, model_dir, device="cpu", threads=None, runtime="paddle", topk=None, onednn=True,
                 precision=None, log=print, max_image_pixels=None, batch_size=8, preprocess_workers=None,
                 objective="latency"):
        if runtime not in ("auto",) + RUNTIMES:
            raise ConfigError(f"Unknown runtime {runtime!r}; allowed: auto, {', '.join(RUNTIMES)}")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if preprocess_workers is None:
            preprocess_workers = default_preprocess_workers()
        elif isinstance(preprocess_workers, bool) or not isinstance(preprocess_workers, int) or preprocess_workers < 0:
            raise ConfigError(f"preprocess_workers={preprocess_workers!r} is not valid: expected an integer >= 0 "
                              f"(0: preprocess in the calling thread)")
        self.preprocess_workers = preprocess_workers
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective={objective!r} is not valid: expected {' or '.join(OBJECTIVES)}")
        self.objective = objective
        self.export = read_export(model_dir)
        self.model_dir = self.export.path
        self.info = self.export.info
        self.mode = self.export.mode
        self.input_shape = self.export.input_shape
        self.topk = int(topk if topk is not None else self.export.topk)
        if self.topk < 1:
            raise ConfigError(f"topk must be >= 1, got {topk}")
        self.label_list = self.export.label_list
        self.softmax = self.export.apply_softmax
        if max_image_pixels is not None and (not isinstance(max_image_pixels, int) or max_image_pixels < 1):
            raise ConfigError(f"max_image_pixels={max_image_pixels!r} is not valid: expected a positive integer")
        self.max_image_pixels = max_image_pixels
        self._ops = None
        self._lock = threading.Lock()  # one runtime call at a time (see the class doc)
        self.choice = None  # runtime="auto": what was measured and picked
        if runtime == "auto":
            self.backend, self.choice = self._choose(precision, device, threads, onednn, log)
        else:
            self.backend = create_backend(self.export, runtime=runtime, precision=precision or "fp32", device=device,
                                          threads=threads, onednn=onednn)
        self.runtime, self.precision = self.backend.name, self.backend.precision
        self.output_names = self.export.output_names or list(self.backend.output_names)
        if self.mode == "embedding" and self.export.kind == "paddleclas":
            self.output_names = ["features"] + self.output_names[1:]

    def _choose(self, precision, device, threads, onednn, log):
        from .autoselect import choose
        if device != "cpu":
            raise ConfigError(f"runtime='auto' measures CPU runtimes; for device={device!r} pass runtime='paddle'")
        export = self.export
        if precision is not None:  # auto over the runtimes of one precision
            if precision not in export.precisions:
                raise PrecisionError(f"precision={precision!r}: {export.path} was not verified at it (verified: "
                                     f"{', '.join(export.precisions)})")
            export = copy.copy(export)
            export.precisions = {precision: self.export.precisions[precision]}
        shape = self.input_shape[1:] if self.input_shape else list(self.preprocess(_probe_image()).shape)
        return choose(export, shape, int(threads or default_threads()), device=device, onednn=onednn, log=log,
                      objective=self.objective, batch_size=self.batch_size)

    # ---------------------------------------------------------------- preprocessing
    def _transforms(self):
        if self._ops is None:
            with self._lock:
                if self._ops is None:
                    # The same builder training and evaluation use: one definition of every op.
                    from ..data.transforms import build_transforms
                    ops = self.export.preprocess_ops()  # DecodeImage first
                    if self.max_image_pixels is not None:
                        ops[0] = {"DecodeImage": dict(ops[0]["DecodeImage"] or {}, max_pixels=self.max_image_pixels)}
                    self._ops = build_transforms(ops)
        return self._ops

    def preprocess(self, image):
        """One image -> CHW float32 array of the input size. `image`: a path, the encoded bytes,
        or an already decoded HWC uint8 array in the model's channel order (RGB)."""
        source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<image>"
        if isinstance(image, (str, os.PathLike)):
            try:
                check_regular_file(source, "Image")  # a FIFO or device: named, never opened
                with open(image, "rb") as f:
                    image = f.read()
            except InputFileError as err:
                raise ImageError(str(err)) from None
            except OSError as err:
                raise ImageError(f"Could not read image {source}: {err.strerror or err}") from None
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[-1] != 3:
                raise ImageError(f"An array image must be HWC with 3 channels, got shape {list(image.shape)}")
        elif not isinstance(image, (bytes, bytearray)):
            raise ImageError(f"Unsupported image type {type(image).__name__}; pass a path, bytes or an HWC array")
        data, size = self._apply_ops(image, source)
        data = np.asarray(data, dtype="float32")
        if not self.input_shape and (data.ndim != 3 or data.shape[0] != 3):
            raise ModelDirError(f"{self.export.file(INFERENCE_YML)}: its PreProcess.transform_ops turn {source} into "
                                f"an array of shape {list(data.shape)}, not a 3-channel CHW image: the ops are "
                                f"incomplete (NormalizeImage, ToCHWImage?); re-export the model")
        expected = self.input_shape[1:] if self.input_shape else list(data.shape)
        if len(expected) != data.ndim or any(e > 0 and e != d for e, d in zip(expected, data.shape)):
            self._blame_shape(list(data.shape), expected, source, size)
        return data

    def _apply_ops(self, image, source):
        """(the preprocessed image, its decoded (height, width)). A failure before decoding completes is
        the image's (unreadable); after, the message names the export's op and the image's size."""
        data, size = image, None
        for name, op in self._transforms().ops:
            try:
                data = op(data)
            except Exception as err:  # a decoder/transform failure on this input: name the image
                text = str(err) if len(str(err)) <= 300 else str(err)[:300] + " ..."  # never a dump of the bytes
                text = text[len(name) + 1:].lstrip() if text.startswith(f"{name}:") else text
                if size is None:
                    raise ImageError(f"Could not read image {source} ({name}: {text})") from None
                raise ImageError(f"Image {source} ({size[1]}x{size[0]} pixels, w x h) does not fit the export's "
                                 f"preprocessing ({self.export.file(INFERENCE_YML)}: {self._sizing_ops()}): {name}: "
                                 f"{text}") from None
            if size is None and isinstance(data, np.ndarray) and data.ndim == 3:
                size = data.shape[:2]
        return data, size

    def _sizing_ops(self):
        """`ResizeImage resize_short 40; CropImage size 36`: the export's ops that set the image size."""
        parts = []
        for entry in (self.info.get("PreProcess") or {}).get("transform_ops") or []:
            if isinstance(entry, dict) and len(entry) == 1:
                (name, params), = entry.items()
                if "Crop" in str(name) or "Resize" in str(name):
                    shown = " ".join(f"{k} {v}" for k, v in (params or {}).items()
                                     if k in ("size", "resize_short", "crop_size", "target_size"))
                    parts.append(f"{name} {shown}".strip())
        return "; ".join(parts) or "no resize or crop op"

    def _blame_shape(self, shape, expected, source, size):
        """The preprocessed shape is not the input shape: the export's fault when every image gets that
        shape (its crop/resize size and input shape disagree), else its preprocessing has no fixed size."""
        yml = self.export.file(INFERENCE_YML)
        probe = list(np.shape(self._apply_ops(_probe_image(), "<probe>")[0]))
        if probe == shape:
            raise ModelDirError(f"{yml}: its preprocessing ({self._sizing_ops()}) makes every image {shape[1:]} "
                                f"(h, w), but the export's input shape (Input.shape) is {expected}: the export's "
                                f"crop/resize size and its input shape disagree (not the image). Set the size in "
                                f"PreProcess to match the input shape, or re-export the model")
        raise ImageError(f"The export's preprocessing ({yml}: {self._sizing_ops()}) turns {source} "
                         f"({size[1]}x{size[0]} pixels, w x h) into {shape}, but the model takes {expected}: the size "
                         f"it makes depends on the image (no crop to a fixed size). Add a CropImage of the input size "
                         f"to PreProcess, or re-export the model")

    # ---------------------------------------------------------------- running
    def run(self, batch):
        """Raw outputs for a preprocessed NCHW float32 batch: {output name: array}."""
        with self._lock:
            outs = self.backend.run(batch)
        return dict(zip(self.output_names, outs))

    def postprocess(self, outputs):
        """Per-image results from the raw outputs of `run`."""
        if self.mode != "classification":  # feature maps or pooled embeddings, by output name
            if self.export.normalize_features:  # PaddleX's NormalizeFeatures: unit L2 norm
                outputs = {name: value / np.maximum(np.linalg.norm(value, axis=-1, keepdims=True), 1e-12)
                           for name, value in outputs.items()}
            n = len(next(iter(outputs.values())))
            return [{name: value[i] for name, value in outputs.items()} for i in range(n)]
        values = outputs[self.output_names[0]]
        if self.label_list and len(self.label_list) != values.shape[1]:
            raise ModelDirError(f"{self.export.file(INFERENCE_YML)}: PostProcess label_list has {len(self.label_list)} "
                                f"names but the model outputs {values.shape[1]} classes; the file is cut or belongs "
                                f"to another model: re-export it")
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

    def predict(self, images, batch_size=None):
        """Results for one image or a list of images (paths, bytes, HWC uint8 RGB arrays), in order;
        `batch_size` (default the Predictor's) images per runtime call. An unreadable image raises an
        ImageError naming it."""
        return list(self.iter_predict(images, batch_size))

    def iter_predict(self, images, batch_size=None, skip_errors=False):
        """`predict` as a generator: each image's result as soon as its batch has run, while the next
        batches are preprocessed. `skip_errors=True` yields an unreadable image's ImageError in its place
        (the other images of its batch still run) instead of raising it."""
        batch_size = self.batch_size if batch_size is None else check_positive_int(batch_size, "batch_size")
        if isinstance(images, (str, os.PathLike, bytes, bytearray)) or (
                isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        return self._predictions(list(images), batch_size, skip_errors)

    def _predictions(self, images, batch_size, skip_errors):
        batches = prefetched_batches(images, self.preprocess, batch_size, self.preprocess_workers)
        with contextlib.closing(batches):
            for _, arrays in batches:
                good = [a for a in arrays if not isinstance(a, ImageError)]
                if len(good) < len(arrays) and not skip_errors:
                    raise next(a for a in arrays if isinstance(a, ImageError))
                results = iter(self.postprocess(self.run(np.stack(good))) if good else ())
                for array in arrays:
                    yield array if isinstance(array, ImageError) else next(results)

    __call__ = predict
