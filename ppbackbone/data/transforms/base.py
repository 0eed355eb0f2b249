"""What the transform ops share: their errors, parameter parsing (numbers, arithmetic strings, sizes), the
image check and the cv2/PIL resizer."""
import ast
import operator
import random
import warnings

import numpy as np
from PIL import Image

from ...errors import LimitError, UserError

try:  # OpenCV is the PaddleClas default backend; PIL covers everything when it is missing
    import cv2
    cv2.setNumThreads(1)  # one decode/resize thread per loader worker; workers give the parallelism
except ImportError:  # pragma: no cover - exercised only without opencv
    cv2 = None

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TransformError(UserError, ValueError):
    """A transform op or parameter that cannot be used; the message names the op and the value."""


class ImageDecodeError(UserError, ValueError):
    """Bytes that are not a decodable image (corrupt, truncated, empty or not an image)."""


class ImageTooLargeError(ImageDecodeError, LimitError):
    """An image with more pixels than DecodeImage's max_pixels (read from its header, before decoding)."""


_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.USub: operator.neg, ast.UAdd: operator.pos}


def _eval_arith(node):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        return _ARITH[type(node.op)](_eval_arith(node.left), _eval_arith(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _ARITH:
        return _ARITH[type(node.op)](_eval_arith(node.operand))
    raise ValueError("not arithmetic")


def number(value, what):
    """A float from a number or an arithmetic string such as '1.0/255.0' (PaddleClas YAML writes
    those and evaluates them); anything else is a TransformError naming `what`."""
    if isinstance(value, bool):
        raise TransformError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float, np.number)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(_eval_arith(ast.parse(value.strip(), mode="eval").body))
        except (ValueError, SyntaxError, ZeroDivisionError, TypeError):
            pass
    raise TransformError(f"{what} must be a number or an arithmetic expression like '1.0/255.0', got {value!r}")


def _size_hw(size, what):
    """PaddleClas size: an int (square) or a pair it reads as (w, h)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
        return int(size), int(size)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size):
        return int(size[1]), int(size[0])
    raise TransformError(f"{what} must be a positive int or a [w, h] pair, got {size!r}")


def _check_image(img, op, ndim=3):
    if not isinstance(img, np.ndarray):
        if isinstance(img, Image.Image):
            return np.asarray(img)
        raise TransformError(f"{op} expects an HWC numpy image, got {type(img).__name__}")
    if img.ndim != ndim:
        raise TransformError(f"{op} expects an HWC image with {ndim} dimensions, got shape {img.shape}")
    return img


_PIL_INTERP = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
               "box": Image.BOX, "lanczos": Image.LANCZOS, "hamming": Image.HAMMING}

_CV2_INTERP_NAMES = ("nearest", "bilinear", "area", "bicubic", "lanczos")


def _cv2_interp(name):
    return {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
            "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}[name]


class Resizer:
    """Resize an HWC uint8 image to (w, h) with the cv2 or pil backend and a named interpolation
    ('random' picks bilinear or bicubic per call, as PaddleClas does)."""

    def __init__(self, interpolation=None, backend="cv2", op="ResizeImage"):
        backend = str(backend or "cv2").lower()
        if backend not in ("cv2", "pil"):
            raise TransformError(f"{op}: backend {backend!r} is not supported; use 'cv2' or 'pil'")
        if backend == "cv2" and cv2 is None:
            _warn_once("nocv2", "OpenCV (cv2) is not installed: transforms use the PIL backend instead "
                       "(pip install opencv-python-headless for PaddleClas's default)")
            backend = "pil"
        name = "bilinear" if interpolation is None else str(interpolation).lower()
        allowed = _CV2_INTERP_NAMES if backend == "cv2" else tuple(_PIL_INTERP)
        if name != "random" and name not in allowed:
            raise TransformError(f"{op}: interpolation {interpolation!r} is not available with backend "
                                 f"{backend!r}; allowed: {', '.join(allowed + ('random',))}")
        self.backend, self.interpolation = backend, name

    def __call__(self, img, size_wh):
        name = random.choice(("bilinear", "bicubic")) if self.interpolation == "random" else self.interpolation
        w, h = int(size_wh[0]), int(size_wh[1])
        if self.backend == "cv2":
            return cv2.resize(img, (w, h), interpolation=_cv2_interp(name))
        return np.asarray(Image.fromarray(img).resize((w, h), _PIL_INTERP[name]))
