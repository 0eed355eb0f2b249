"""Image transforms under PaddleClas's op names, built from PaddleClas's `transform_ops` lists.

Every op is a callable on one image: `DecodeImage` takes the encoded file bytes, the others an HWC
numpy array (uint8 before `NormalizeImage`, float32 after it; `ToCHWImage` turns HWC into CHW).
`build_transforms([{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"resize_short": 232}}, ...])`
returns one callable that applies them in order. The same list drives training, evaluation, the
exported model's `inference.yml` and the Predictor, so preprocessing cannot drift between them.

Random ops draw from Python's `random` and NumPy's global generator, like PaddleClas's; the data
loader seeds both per worker and epoch.
"""
import ast
import inspect
import io
import math
import operator
import random
import re
import warnings

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..errors import UserError

try:  # OpenCV is the PaddleClas default backend; PIL covers everything when it is missing
    import cv2
    cv2.setNumThreads(1)  # one decode/resize thread per loader worker; workers give the parallelism
except ImportError:  # pragma: no cover - exercised only without opencv
    cv2 = None

__all__ = ["build_transforms", "Compose", "TransformError", "ImageDecodeError", "TRANSFORMS",
           "DecodeImage", "ResizeImage", "CropImage", "RandCropImage", "RandFlipImage", "NormalizeImage",
           "ToCHWImage", "TimmAutoAugment", "RandomErasing", "AutoAugment", "ColorJitter", "RandomRotation", "Pad",
           "RandCropImageV2", "IMAGENET_MEAN", "IMAGENET_STD", "UNSUPPORTED_TRANSFORMS",
           "build_op", "number"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TransformError(UserError, ValueError):
    """A transform op or parameter that cannot be used; the message names the op and the value."""


class ImageDecodeError(UserError, ValueError):
    """Bytes that are not a decodable image (corrupt, truncated, empty or not an image)."""


_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# parameter helpers

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


# ----------------------------------------------------------------------------------------------
# the basic ops


def _truncation(data):
    """What is missing from a truncated JPEG or PNG (None when the end marker is there, or for other formats).

    Decoders may fill the missing rows silently: OpenCV for some cuts, and PIL whenever
    `ImageFile.LOAD_TRUNCATED_IMAGES` is set, which importing PaddleDetection does for the whole process."""
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < 0:
        return "truncated JPEG: no end-of-image marker"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "truncated PNG: no IEND chunk"
    return None


class DecodeImage:
    """Encoded bytes -> HWC uint8 image, RGB when `to_rgb` (else BGR, OpenCV's order).
    `channel_first` returns CHW. backend 'cv2' (PaddleClas default) or 'pil'."""

    def __init__(self, to_rgb=True, channel_first=False, backend="cv2", to_np=True):
        backend = str(backend or "cv2").lower()
        if backend not in ("cv2", "pil"):
            raise TransformError(f"DecodeImage: backend {backend!r} is not supported; use 'cv2' or 'pil'")
        if backend == "cv2" and cv2 is None:
            backend = "pil"
        if not to_np:
            _warn_once("decode_to_np", "DecodeImage: to_np=False (PIL images between ops) is not supported; "
                       "ops pass numpy arrays")
        self.to_rgb, self.channel_first, self.backend = bool(to_rgb), bool(channel_first), backend

    def __call__(self, data):
        if isinstance(data, np.ndarray):  # already decoded
            img = data
        else:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            if not isinstance(data, bytes):
                raise TransformError(f"DecodeImage expects the file's bytes, got {type(data).__name__}")
            if not data:
                raise ImageDecodeError("empty file (0 bytes)")
            truncated = _truncation(data)
            if truncated:
                raise ImageDecodeError(f"not a decodable image ({len(data)} bytes): {truncated}, the file is cut short")
            if self.backend == "cv2":
                img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
                if img is None:
                    raise ImageDecodeError(f"not a decodable image ({len(data)} bytes)")
                if self.to_rgb:
                    img = img[:, :, ::-1]
            else:
                try:
                    pil = Image.open(io.BytesIO(data))
                    pil = pil.convert("RGB")
                except Exception as err:  # PIL raises several types for corrupt data
                    raise ImageDecodeError(f"not a decodable image ({len(data)} bytes): {err}") from None
                img = np.asarray(pil)
                if not self.to_rgb:
                    img = img[:, :, ::-1]
        if self.channel_first:
            img = img.transpose((2, 0, 1))
        return np.ascontiguousarray(img)


class ResizeImage:
    """Resize to `size` (int or [w, h]) or so that the short side is `resize_short` (aspect kept,
    rounded like PaddleClas)."""

    def __init__(self, size=None, resize_short=None, interpolation=None, backend="cv2", return_numpy=True):
        if resize_short is not None and not isinstance(resize_short, bool) and resize_short > 0:
            self.resize_short, self.size = int(resize_short), None
        elif size is not None:
            h, w = _size_hw(size, "ResizeImage.size")
            self.resize_short, self.size = None, (w, h)
        else:
            raise TransformError("ResizeImage needs `size` (int or [w, h]) or `resize_short` (int > 0); got neither")
        self._resize = Resizer(interpolation, backend, "ResizeImage")

    def __call__(self, img):
        img = _check_image(img, "ResizeImage")
        img_h, img_w = img.shape[:2]
        if self.resize_short is not None:
            percent = float(self.resize_short) / min(img_w, img_h)
            size = (int(round(img_w * percent)), int(round(img_h * percent)))
        else:
            size = self.size
        return self._resize(img, size)


class CropImage:
    """Center crop to `size` (int or [w, h]); an image smaller than the crop is an error."""

    def __init__(self, size):
        self.h, self.w = _size_hw(size, "CropImage.size")

    def __call__(self, img):
        img = _check_image(img, "CropImage")
        img_h, img_w = img.shape[:2]
        if img_h < self.h or img_w < self.w:
            raise TransformError(f"CropImage: crop {self.w}x{self.h} (w x h) is larger than the image "
                                 f"{img_w}x{img_h}; resize first (ResizeImage resize_short >= crop size)")
        top, left = (img_h - self.h) // 2, (img_w - self.w) // 2
        return img[top:top + self.h, left:left + self.w]


class RandCropImage:
    """Random-resized crop (Inception crop): area fraction in `scale`, aspect ratio in `ratio`
    (log-uniform with `use_log_aspect`), then resize to `size`."""

    def __init__(self, size, scale=None, ratio=None, interpolation=None, use_log_aspect=False,
                 backend="cv2", progress_size=None):
        self.h, self.w = _size_hw(size, "RandCropImage.size")
        self.scale = [number(s, "RandCropImage.scale") for s in (scale or (0.08, 1.0))]
        self.ratio = [number(r, "RandCropImage.ratio") for r in (ratio or (3.0 / 4.0, 4.0 / 3.0))]
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise TransformError(f"RandCropImage.scale must be [min, max] with 0 < min <= max, got {scale!r}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise TransformError(f"RandCropImage.ratio must be [min, max] with 0 < min <= max, got {ratio!r}")
        if progress_size is not None:
            _warn_once("progress_size", "RandCropImage: progress_size (progressive resizing) is not "
                       "supported; the crop size stays `size`")
        self.use_log_aspect = bool(use_log_aspect)
        self._resize = Resizer(interpolation, backend, "RandCropImage")

    def __call__(self, img):
        img = _check_image(img, "RandCropImage")
        if self.use_log_aspect:
            aspect = math.exp(random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        else:
            aspect = random.uniform(*self.ratio)
        img_h, img_w = img.shape[:2]
        bound = min((float(img_w) / img_h) / aspect, (float(img_h) / img_w) * aspect)
        area = img_w * img_h * random.uniform(min(self.scale[0], bound), min(self.scale[1], bound))
        w = max(1, min(img_w, int(math.sqrt(area * aspect))))
        h = max(1, min(img_h, int(math.sqrt(area / aspect))))
        left = random.randint(0, img_w - w)
        top = random.randint(0, img_h - h)
        return self._resize(np.ascontiguousarray(img[top:top + h, left:left + w]), (self.w, self.h))


class RandFlipImage:
    """Flip with probability 0.5: flip_code 1 horizontal, 0 vertical, -1 both."""

    def __init__(self, flip_code=1):
        if flip_code not in (-1, 0, 1) or isinstance(flip_code, bool):
            raise TransformError(f"RandFlipImage.flip_code must be 1 (horizontal), 0 (vertical) or -1 (both), "
                                 f"got {flip_code!r}")
        self.flip_code = flip_code

    def __call__(self, img):
        img = _check_image(img, "RandFlipImage")
        if random.randint(0, 1) == 1:
            axes = {1: (1,), 0: (0,), -1: (0, 1)}[self.flip_code]
            return np.ascontiguousarray(np.flip(img, axes))
        return img


class NormalizeImage:
    """(img * scale - mean) / std as float32 (float16 with output_fp16). order 'chw' expects a CHW
    image, anything else ('' in PaddleClas configs, 'hwc') an HWC one. channel_num 4 appends a
    zero channel."""

    def __init__(self, scale=None, mean=None, std=None, order="chw", output_fp16=False, channel_num=3):
        self.scale = np.float32(number(scale, "NormalizeImage.scale") if scale is not None else 1.0 / 255.0)
        mean = IMAGENET_MEAN if mean is None else mean
        std = IMAGENET_STD if std is None else std
        if len(mean) != 3 or len(std) != 3:
            raise TransformError(f"NormalizeImage: mean and std need 3 values each, got {mean!r} and {std!r}")
        if any(number(s, "NormalizeImage.std") == 0 for s in std):
            raise TransformError(f"NormalizeImage.std must not contain 0, got {std!r}")
        if channel_num not in (3, 4):
            raise TransformError(f"NormalizeImage.channel_num must be 3 or 4, got {channel_num!r}")
        self.chw = str(order).lower() == "chw"
        shape = (3, 1, 1) if self.chw else (1, 1, 3)
        self.mean = np.array([number(m, "NormalizeImage.mean") for m in mean], "float32").reshape(shape)
        self.std = np.array([number(s, "NormalizeImage.std") for s in std], "float32").reshape(shape)
        self.channel_num = channel_num
        self.dtype = "float16" if output_fp16 else "float32"

    def __call__(self, img):
        img = _check_image(img, "NormalizeImage")
        channels = img.shape[0] if self.chw else img.shape[2]
        if channels != 3:
            layout = "CHW" if self.chw else "HWC"
            raise TransformError(f"NormalizeImage (order {'chw' if self.chw else 'hwc'}) expects a 3-channel "
                                 f"{layout} image, got shape {img.shape}")
        img = (img.astype("float32") * self.scale - self.mean) / self.std
        if self.channel_num == 4:
            pad = np.zeros((1,) + img.shape[1:] if self.chw else img.shape[:2] + (1,), "float32")
            img = np.concatenate([img, pad], axis=0 if self.chw else 2)
        return img.astype(self.dtype, copy=False)


class ToCHWImage:
    """HWC -> CHW."""

    def __call__(self, img):
        img = _check_image(img, "ToCHWImage")
        return np.ascontiguousarray(img.transpose((2, 0, 1)))


# ----------------------------------------------------------------------------------------------
# RandAugment with timm's config strings ("rand-m9-n2-mstd0.5-inc1")

_MAX_LEVEL = 10.0


def _negate_half(v):
    return -v if random.random() > 0.5 else v


def _affine(img, matrix, fill, resample):
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill)


def _posterize(img, bits):
    if bits >= 8:
        return img
    if bits <= 0:  # keep no bit: black (newer Pillow refuses bits=0, older ones returned black)
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits)


def _solarize_add(img, add, thresh=128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


# name -> (function(img, arg, fill, resample), level -> arg or None)
_RA_OPS = {
    "AutoContrast": (lambda img, a, f, r: ImageOps.autocontrast(img), None),
    "Equalize": (lambda img, a, f, r: ImageOps.equalize(img), None),
    "Invert": (lambda img, a, f, r: ImageOps.invert(img), None),
    "Rotate": (lambda img, a, f, r: img.rotate(a, resample=r, fillcolor=f),
               lambda lv, hp: _negate_half(lv / _MAX_LEVEL * 30.0)),
    "Posterize": (lambda img, a, f, r: _posterize(img, a),
                  lambda lv, hp: int(lv / _MAX_LEVEL * 4)),
    "PosterizeIncreasing": (lambda img, a, f, r: _posterize(img, a),
                            lambda lv, hp: 4 - int(lv / _MAX_LEVEL * 4)),
    "Solarize": (lambda img, a, f, r: ImageOps.solarize(img, a), lambda lv, hp: int(lv / _MAX_LEVEL * 256)),
    "SolarizeIncreasing": (lambda img, a, f, r: ImageOps.solarize(img, a),
                           lambda lv, hp: 256 - int(lv / _MAX_LEVEL * 256)),
    "SolarizeAdd": (lambda img, a, f, r: _solarize_add(img, a), lambda lv, hp: int(lv / _MAX_LEVEL * 110)),
    "Color": (lambda img, a, f, r: ImageEnhance.Color(img).enhance(a), lambda lv, hp: lv / _MAX_LEVEL * 1.8 + 0.1),
    "Contrast": (lambda img, a, f, r: ImageEnhance.Contrast(img).enhance(a),
                 lambda lv, hp: lv / _MAX_LEVEL * 1.8 + 0.1),
    "Brightness": (lambda img, a, f, r: ImageEnhance.Brightness(img).enhance(a),
                   lambda lv, hp: lv / _MAX_LEVEL * 1.8 + 0.1),
    "Sharpness": (lambda img, a, f, r: ImageEnhance.Sharpness(img).enhance(a),
                  lambda lv, hp: lv / _MAX_LEVEL * 1.8 + 0.1),
    "ShearX": (lambda img, a, f, r: _affine(img, (1, a, 0, 0, 1, 0), f, r),
               lambda lv, hp: _negate_half(lv / _MAX_LEVEL * 0.3)),
    "ShearY": (lambda img, a, f, r: _affine(img, (1, 0, 0, a, 1, 0), f, r),
               lambda lv, hp: _negate_half(lv / _MAX_LEVEL * 0.3)),
    "TranslateXRel": (lambda img, a, f, r: _affine(img, (1, 0, a * img.size[0], 0, 1, 0), f, r),
                      lambda lv, hp: _negate_half(lv / _MAX_LEVEL * hp.get("translate_pct", 0.45))),
    "TranslateYRel": (lambda img, a, f, r: _affine(img, (1, 0, 0, 0, 1, a * img.size[1]), f, r),
                      lambda lv, hp: _negate_half(lv / _MAX_LEVEL * hp.get("translate_pct", 0.45))),
}
for _name in ("Color", "Contrast", "Brightness", "Sharpness"):
    # 'increasing' variants: 1.0 is no change; stronger levels move further from it, either way
    _RA_OPS[_name + "Increasing"] = (_RA_OPS[_name][0], lambda lv, hp: 1.0 + _negate_half(lv / _MAX_LEVEL * 0.9))

_RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
                    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
                    "TranslateYRel")
_RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                               "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                               "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                               "TranslateXRel", "TranslateYRel")
# timm's experimental op-choice weights, selected by "w0"
_RAND_CHOICE_WEIGHTS_0 = {"Rotate": 0.3, "ShearX": 0.2, "ShearY": 0.2, "TranslateXRel": 0.1, "TranslateYRel": 0.1,
                          "Color": .025, "Sharpness": 0.025, "AutoContrast": 0.025, "Solarize": .005,
                          "SolarizeAdd": .005, "Contrast": .005, "Brightness": .005, "Equalize": .005,
                          "Posterize": 0, "Invert": 0}


def parse_rand_config(config_str):
    """timm's RandAugment string -> dict(magnitude, num_layers, magnitude_std, increasing, weight_idx).
    'rand-m9-n2-mstd0.5-inc1': magnitude 9 (0..10), 2 ops per image, magnitude noise std 0.5, the
    'increasing' op set. Unknown sections are a TransformError."""
    parts = str(config_str).split("-")
    if parts[0] != "rand":
        raise TransformError(f"TimmAutoAugment.config_str {config_str!r}: only RandAugment strings "
                             f"('rand-m9-mstd0.5-inc1') are supported; AutoAugment/AugMix policies are not")
    cfg = dict(magnitude=_MAX_LEVEL, num_layers=2, magnitude_std=0.0, increasing=False, weight_idx=None)
    for part in parts[1:]:
        match = re.fullmatch(r"([a-z]+)(\d.*)", part)
        if not match:
            raise TransformError(f"TimmAutoAugment.config_str {config_str!r}: cannot read section {part!r}")
        key, val = match.groups()
        try:
            if key == "m":
                cfg["magnitude"] = float(val)
            elif key == "n":
                cfg["num_layers"] = int(val)
            elif key == "mstd":
                cfg["magnitude_std"] = float(val)
            elif key == "inc":
                cfg["increasing"] = bool(int(val))
            elif key == "w":
                cfg["weight_idx"] = int(val)
            else:
                raise TransformError(f"TimmAutoAugment.config_str {config_str!r}: unknown section {part!r}; "
                                     f"known: m<magnitude> n<ops> mstd<std> inc<0|1> w<weights>")
        except ValueError as err:
            if isinstance(err, TransformError):
                raise
            raise TransformError(f"TimmAutoAugment.config_str {config_str!r}: bad value in {part!r}") from None
    if cfg["weight_idx"] not in (None, 0):
        raise TransformError(f"TimmAutoAugment.config_str {config_str!r}: only weight set w0 exists")
    return cfg


class TimmAutoAugment:
    """RandAugment as timm defines it (PaddleClas's TimmAutoAugment op): for each image pick
    `num_layers` ops (with replacement), each applied with probability 0.5 at a magnitude drawn
    from N(m, mstd) clipped to [0, 10]. Geometric ops fill with the mean colour and translate up to
    45% of the image; input and output are HWC uint8 RGB."""

    def __init__(self, config_str="rand-m9-mstd0.5-inc1", interpolation="bicubic", img_size=224,
                 mean=IMAGENET_MEAN):
        cfg = parse_rand_config(config_str)
        self.magnitude, self.num_layers = cfg["magnitude"], cfg["num_layers"]
        self.magnitude_std = cfg["magnitude_std"]
        self.names = _RAND_INCREASING_TRANSFORMS if cfg["increasing"] else _RAND_TRANSFORMS
        if cfg["weight_idx"] is not None:
            weights = np.array([_RAND_CHOICE_WEIGHTS_0.get(n.replace("Increasing", ""), 0) for n in self.names])
            self.weights = weights / weights.sum()
        else:
            self.weights = None
        self.fill = tuple(min(255, int(round(255 * number(m, "TimmAutoAugment.mean")))) for m in mean)
        interp = str(interpolation).lower() if interpolation else "random"
        if interp == "random":
            self.resample = None
        elif interp in ("bicubic", "bilinear", "lanczos", "hamming"):
            self.resample = _PIL_INTERP[interp]
        else:
            raise TransformError(f"TimmAutoAugment.interpolation {interpolation!r}: use bicubic, bilinear, "
                                 f"lanczos, hamming or random")
        size = min(img_size) if isinstance(img_size, (list, tuple)) else img_size
        self.hparams = {"translate_const": int(size * 0.45)}  # used by absolute translations only
        self.prob = 0.5

    def _apply(self, pil, name):
        if random.random() > self.prob:
            return pil
        magnitude = self.magnitude
        if self.magnitude_std > 0:
            magnitude = random.gauss(magnitude, self.magnitude_std)
        magnitude = min(_MAX_LEVEL, max(0.0, magnitude))
        fn, level_fn = _RA_OPS[name]
        arg = level_fn(magnitude, self.hparams) if level_fn else None
        resample = self.resample if self.resample is not None else random.choice((Image.BILINEAR, Image.BICUBIC))
        return fn(pil, arg, self.fill, resample)

    def __call__(self, img):
        img = _check_image(img, "TimmAutoAugment")
        if img.dtype != np.uint8:
            raise TransformError("TimmAutoAugment works on uint8 images: put it before NormalizeImage")
        pil = Image.fromarray(np.ascontiguousarray(img))
        names = np.random.choice(self.names, self.num_layers, replace=self.weights is None, p=self.weights)
        for name in names:
            pil = self._apply(pil, name)
        return np.asarray(pil)


class RandomErasing:
    """Random erasing (PaddleClas's parameters): with probability EPSILON, try `attempt` times to
    pick a rectangle of area fraction in [sl, sh] and aspect in [r1, 1/r1] (log-uniform with
    use_log_aspect) and fill it: mode 'const' (the `mean` values), 'rand' (one normal draw per
    channel) or 'pixel' (normal noise per pixel). Works on HWC float images (after NormalizeImage
    with order '') and on CHW ones."""

    def __init__(self, EPSILON=0.5, sl=0.02, sh=0.4, r1=0.3, mean=(0.0, 0.0, 0.0), attempt=100,
                 use_log_aspect=False, mode="const"):
        self.prob = number(EPSILON, "RandomErasing.EPSILON")
        self.sl, self.sh = number(sl, "RandomErasing.sl"), number(sh, "RandomErasing.sh")
        r1 = number(r1, "RandomErasing.r1")
        if not (0 <= self.prob <= 1):
            raise TransformError(f"RandomErasing.EPSILON is a probability in [0, 1], got {EPSILON!r}")
        if not (0 < self.sl <= self.sh <= 1):
            raise TransformError(f"RandomErasing needs 0 < sl <= sh <= 1, got sl={sl!r} sh={sh!r}")
        if r1 <= 0:
            raise TransformError(f"RandomErasing.r1 must be > 0, got {r1!r}")
        if mode not in ("const", "rand", "pixel"):
            raise TransformError(f"RandomErasing.mode {mode!r}: use 'const', 'rand' or 'pixel'")
        self.use_log_aspect = bool(use_log_aspect)
        self.r1 = (math.log(r1), math.log(1 / r1)) if self.use_log_aspect else (r1, 1 / r1)
        self.attempt, self.mode = int(attempt), mode
        self.mean = np.array([number(m, "RandomErasing.mean") for m in mean], "float32")

    def __call__(self, img):
        img = _check_image(img, "RandomErasing")
        if random.random() > self.prob:
            return img
        channel_first = img.shape[0] in (1, 3) and img.shape[2] not in (1, 3)
        img_c, img_h, img_w = img.shape if channel_first else (img.shape[2],) + img.shape[:2]
        for _ in range(self.attempt):
            target = random.uniform(self.sl, self.sh) * img_h * img_w
            aspect = random.uniform(*self.r1)
            if self.use_log_aspect:
                aspect = math.exp(aspect)
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < img_w and h < img_h:
                if self.mode == "pixel":
                    fill = np.random.normal(size=(h, w, img_c))
                elif self.mode == "rand":
                    fill = np.random.normal(size=(1, 1, img_c))
                else:
                    fill = np.resize(self.mean, img_c).reshape(1, 1, img_c)
                top = random.randint(0, img_h - h)
                left = random.randint(0, img_w - w)
                img = np.array(img, copy=True) if not img.flags.writeable else img
                if channel_first:
                    img[:, top:top + h, left:left + w] = np.transpose(fill, (2, 0, 1))
                else:
                    img[top:top + h, left:left + w, :] = fill
                return img
        return img


# ----------------------------------------------------------------------------------------------
# AutoAugment (ImageNet policy), ColorJitter, RandomRotation, Pad, RandCropImageV2 (PaddleClas)

# AutoAugment's ImageNet policy (Cubuk et al.; PaddleClas's ImageNetPolicy, 25 sub-policies): each
# is (p1, op1, magnitude index 1, p2, op2, magnitude index 2); indices pick from _AA_RANGES.
_AA_IMAGENET_POLICY = (
    (0.4, "posterize", 8, 0.6, "rotate", 9), (0.6, "solarize", 5, 0.6, "autocontrast", 5),
    (0.8, "equalize", 8, 0.6, "equalize", 3), (0.6, "posterize", 7, 0.6, "posterize", 6),
    (0.4, "equalize", 7, 0.2, "solarize", 4), (0.4, "equalize", 4, 0.8, "rotate", 8),
    (0.6, "solarize", 3, 0.6, "equalize", 7), (0.8, "posterize", 5, 1.0, "equalize", 2),
    (0.2, "rotate", 3, 0.6, "solarize", 8), (0.6, "equalize", 8, 0.4, "posterize", 6),
    (0.8, "rotate", 8, 0.4, "color", 0), (0.4, "rotate", 9, 0.6, "equalize", 2),
    (0.0, "equalize", 7, 0.8, "equalize", 8), (0.6, "invert", 4, 1.0, "equalize", 8),
    (0.6, "color", 4, 1.0, "contrast", 8), (0.8, "rotate", 8, 1.0, "color", 2),
    (0.8, "color", 8, 0.8, "solarize", 7), (0.4, "sharpness", 7, 0.6, "invert", 8),
    (0.6, "shearX", 5, 1.0, "equalize", 9), (0.4, "color", 0, 0.6, "equalize", 3),
    (0.4, "equalize", 7, 0.2, "solarize", 4), (0.6, "solarize", 5, 0.6, "autocontrast", 5),
    (0.6, "invert", 4, 1.0, "equalize", 8), (0.6, "color", 4, 1.0, "contrast", 8),
    (0.8, "equalize", 8, 0.6, "equalize", 3))
_AA_RANGES = {
    "shearX": np.linspace(0, 0.3, 10), "shearY": np.linspace(0, 0.3, 10),
    "translateX": np.linspace(0, 150 / 331, 10), "translateY": np.linspace(0, 150 / 331, 10),
    "rotate": np.linspace(0, 30, 10), "color": np.linspace(0.0, 0.9, 10),
    "posterize": np.round(np.linspace(8, 4, 10), 0).astype(np.int_), "solarize": np.linspace(256, 0, 10),
    "contrast": np.linspace(0.0, 0.9, 10), "sharpness": np.linspace(0.0, 0.9, 10),
    "brightness": np.linspace(0.0, 0.9, 10), "autocontrast": [0] * 10, "equalize": [0] * 10, "invert": [0] * 10}


def _sign():
    return random.choice([-1, 1])


def _aa_rotate(img, degrees, fill):
    # rotate counter-clockwise, fill the corners grey through an RGBA composite (as the reference)
    rotated = img.convert("RGBA").rotate(degrees)
    return Image.composite(rotated, Image.new("RGBA", rotated.size, (128,) * 4), rotated).convert(img.mode)


_AA_OPS = {
    "shearX": lambda img, m, fill: img.transform(img.size, Image.AFFINE, (1, m * _sign(), 0, 0, 1, 0), Image.BICUBIC,
                                                 fillcolor=fill),
    "shearY": lambda img, m, fill: img.transform(img.size, Image.AFFINE, (1, 0, 0, m * _sign(), 1, 0), Image.BICUBIC,
                                                 fillcolor=fill),
    "translateX": lambda img, m, fill: img.transform(img.size, Image.AFFINE, (1, 0, m * img.size[0] * _sign(), 0, 1, 0),
                                                     fillcolor=fill),
    "translateY": lambda img, m, fill: img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, m * img.size[1] * _sign()),
                                                     fillcolor=fill),
    "rotate": lambda img, m, fill: _aa_rotate(img, m, fill),
    "color": lambda img, m, fill: ImageEnhance.Color(img).enhance(1 + m * _sign()),
    "posterize": lambda img, m, fill: ImageOps.posterize(img, int(m)),
    "solarize": lambda img, m, fill: ImageOps.solarize(img, m),
    "contrast": lambda img, m, fill: ImageEnhance.Contrast(img).enhance(1 + m * _sign()),
    "sharpness": lambda img, m, fill: ImageEnhance.Sharpness(img).enhance(1 + m * _sign()),
    "brightness": lambda img, m, fill: ImageEnhance.Brightness(img).enhance(1 + m * _sign()),
    "autocontrast": lambda img, m, fill: ImageOps.autocontrast(img),
    "equalize": lambda img, m, fill: ImageOps.equalize(img),
    "invert": lambda img, m, fill: ImageOps.invert(img),
}


class AutoAugment:
    """AutoAugment with the ImageNet policy (PaddleClas's AutoAugment): per image one of the 25
    sub-policies at random, each of its two ops applied with its probability at its fixed
    magnitude (random sign where the op has one). Same random calls as PaddleClas's, so a seeded
    run augments identically. HWC uint8 RGB in and out."""

    def __init__(self, fillcolor=(128, 128, 128)):
        self.fillcolor = tuple(int(c) for c in fillcolor) if isinstance(fillcolor, (list, tuple)) \
            else (int(fillcolor),) * 3

    def __call__(self, img):
        img = _check_image(img, "AutoAugment")
        pil = Image.fromarray(np.ascontiguousarray(img))
        p1, op1, m1, p2, op2, m2 = _AA_IMAGENET_POLICY[random.randint(0, len(_AA_IMAGENET_POLICY) - 1)]
        if random.random() < p1:
            pil = _AA_OPS[op1](pil, _AA_RANGES[op1][m1], self.fillcolor)
        if random.random() < p2:
            pil = _AA_OPS[op2](pil, _AA_RANGES[op2][m2], self.fillcolor)
        return np.asarray(pil)


class ColorJitter:
    """Random brightness / contrast / saturation / hue (PaddleClas's ColorJitter: paddle.vision's
    ColorJitter, applied with probability `prob`; the default 2 means always)."""

    def __init__(self, prob=2, brightness=0, contrast=0, saturation=0, hue=0):
        from paddle.vision.transforms import ColorJitter as PaddleColorJitter
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            number(value, f"ColorJitter.{name}")
            if float(value) < 0:
                raise TransformError(f"ColorJitter.{name} must be >= 0, got {value!r}")
        if not 0 <= number(hue, "ColorJitter.hue") <= 0.5:
            raise TransformError(f"ColorJitter.hue must be in [0, 0.5], got {hue!r}")
        self.prob = number(prob, "ColorJitter.prob")
        self.jitter = PaddleColorJitter(brightness, contrast, saturation, hue)

    def __call__(self, img):
        img = _check_image(img, "ColorJitter")
        if np.random.random() < self.prob:
            img = np.asarray(self.jitter._apply_image(Image.fromarray(np.ascontiguousarray(img))))
        return img


class RandomRotation:
    """Rotate by a random angle in [-degrees, degrees] (or [min, max]) with probability `prob`
    (PaddleClas's RandomRotation: paddle.vision's, default prob 0.5)."""

    def __init__(self, degrees, prob=0.5, interpolation="nearest", expand=False, center=None, fill=0):
        from paddle.vision.transforms import RandomRotation as PaddleRandomRotation
        self.prob = number(prob, "RandomRotation.prob")
        try:
            self.rotate = PaddleRandomRotation(degrees, interpolation=interpolation, expand=expand, center=center,
                                               fill=fill)
        except (ValueError, TypeError) as err:
            raise TransformError(f"RandomRotation: {err}") from None

    def __call__(self, img):
        img = _check_image(img, "RandomRotation")
        if np.random.random() < self.prob:
            img = np.asarray(self.rotate._apply_image(np.ascontiguousarray(img)))
        return img


class Pad:
    """Pad every side by `padding` pixels of value `fill` (PaddleClas's Pad; constant mode)."""

    def __init__(self, padding, fill=0, padding_mode="constant", backend="pil"):
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise TransformError(f"Pad.padding must be an int >= 0, got {padding!r}")
        if padding_mode != "constant":
            raise TransformError(f"Pad.padding_mode={padding_mode!r}: only constant padding is supported")
        if backend not in ("pil", "cv2"):
            raise TransformError(f"Pad.backend must be pil or cv2, got {backend!r}")
        self.padding, self.fill = padding, int(fill)

    def __call__(self, img):
        img = _check_image(img, "Pad")
        p = self.padding
        return np.pad(img, ((p, p), (p, p), (0, 0)), mode="constant", constant_values=self.fill)


class RandCropImageV2:
    """A crop of `size` ([w, h] or int) at a uniformly random position, without resizing
    (PaddleClas's RandCropImageV2; like it, the offset may reach one past the last full position,
    giving a crop one pixel short there, which the recipes' following ResizeImage absorbs)."""

    def __init__(self, size):
        self.h, self.w = _size_hw(size, "RandCropImageV2.size")

    def __call__(self, img):
        img = _check_image(img, "RandCropImageV2")
        img_h, img_w = img.shape[:2]
        if img_h + 1 < self.h or img_w + 1 < self.w:
            raise TransformError(f"RandCropImageV2: crop {self.w}x{self.h} (w x h) is larger than the image "
                                 f"{img_w}x{img_h}")
        if img_w == self.w and img_h == self.h:
            return img
        top = random.randint(0, img_h - self.h + 1)
        left = random.randint(0, img_w - self.w + 1)
        return img[top:top + self.h, left:left + self.w, :]


# ----------------------------------------------------------------------------------------------
# building a pipeline from a config list

TRANSFORMS = {cls.__name__: cls for cls in (DecodeImage, ResizeImage, CropImage, RandCropImage, RandFlipImage,
                                             NormalizeImage, ToCHWImage, TimmAutoAugment, RandomErasing, AutoAugment,
                                             ColorJitter, RandomRotation, Pad, RandCropImageV2)}
# PaddleClas ops that ppbackbone does not implement: training configs that name them get a warning
# (once, by name) and the op is skipped; build_transforms itself refuses them.
UNSUPPORTED_TRANSFORMS = ("RandAugment", "RandAugmentV2", "RandAugmentV3", "PCALighting", "HideAndSeek",
                          "GridMask", "Cutout", "AugMix", "RandomGrayscale", "BlurImage", "RandomInterpolationAugment",
                          "Padv2", "RandomCropImage", "CropImageAtRatio", "RandomRot90")


class Compose:
    """Apply `ops` in order; `ops` are (name, callable) pairs kept for inspection and error messages."""

    def __init__(self, ops):
        self.ops = list(ops)

    def __call__(self, data):
        for _, op in self.ops:
            data = op(data)
        return data

    def __len__(self):
        return len(self.ops)

    def __repr__(self):
        return f"Compose([{', '.join(name for name, _ in self.ops)}])"


def _parse_entry(index, entry):
    if isinstance(entry, str):
        return entry, {}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise TransformError(f"transform_ops[{index}] must be a one-key mapping like {{ResizeImage: "
                             f"{{resize_short: 256}}}}, got {entry!r}")
    (name, params), = entry.items()
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise TransformError(f"transform_ops[{index}] {name}: parameters must be a mapping, got {params!r}")
    return name, params


def build_op(name, params=None, index=0):
    """One op from its PaddleClas name and parameters; unknown names and parameters are errors."""
    params = dict(params or {})
    if name not in TRANSFORMS:
        import difflib
        close = difflib.get_close_matches(str(name), list(TRANSFORMS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise TransformError(f"transform_ops[{index}]: unknown transform {name!r}.{hint} "
                             f"Known: {', '.join(TRANSFORMS)}")
    cls = TRANSFORMS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise TransformError(f"transform_ops[{index}] {name}: unknown parameter(s) {unknown}; "
                             f"accepted: {', '.join(accepted) or '(none)'}")
    try:
        return cls(**params)
    except TransformError as err:
        raise TransformError(f"transform_ops[{index}] {err}") from None


def build_transforms(op_list):
    """PaddleClas `transform_ops` (a list of one-key dicts, `{ToCHWImage: None}` allowed) -> one
    callable applying the ops in order. An unknown op or parameter is a TransformError naming it
    and listing what is known."""
    if op_list is None:
        op_list = []
    if not isinstance(op_list, (list, tuple)):
        raise TransformError(f"transform_ops must be a list of one-key mappings, got {type(op_list).__name__}")
    ops = []
    for index, entry in enumerate(op_list):
        name, params = _parse_entry(index, entry)
        ops.append((name, build_op(name, params, index)))
    return Compose(ops)
