"""The basic ops: decode, resize, crops, flip, pad, normalize, HWC -> CHW (what evaluation and deployment
use, and the standard training crop and flip)."""
import io
import math
import random
import struct

import numpy as np
from PIL import Image

from ...errors import limit
from .base import (IMAGENET_MEAN, IMAGENET_STD, ImageDecodeError, ImageTooLargeError, Resizer, TransformError,
                   _check_image, _size_hw, _warn_once, cv2, number)


def _truncation(data):
    """What is missing from a truncated JPEG or PNG (None when the end marker is there, or for other formats).

    Decoders may fill the missing rows silently: OpenCV for some cuts, and PIL whenever
    `ImageFile.LOAD_TRUNCATED_IMAGES` is set, which importing PaddleDetection does for the whole process."""
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < 0:
        return "truncated JPEG: no end-of-image marker"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "truncated PNG: no IEND chunk"
    return None


def _open_lazy(data):
    """PIL's image of encoded `data`, opened lazily (the header is read, nothing is decoded), without PIL's own
    decompression-bomb refusal: DecodeImage applies its own limit (max_pixels), which may be set above PIL's.
    This is Image.open's format probing (its plugin registry), minus that one check."""
    fp, prefix = io.BytesIO(data), data[:16]
    for load_plugins in (Image.preinit, Image.init):
        load_plugins()
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            accepted = not accept or accept(prefix)
            if not accepted or isinstance(accepted, str):
                continue
            fp.seek(0)
            try:
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):  # not this format after all
                continue
    return None


class DecodeImage:
    """Encoded bytes -> HWC uint8 image, RGB when `to_rgb` (else BGR, OpenCV's order).
    `channel_first` returns CHW. backend 'cv2' (PaddleClas default) or 'pil'. An image of more than
    `max_pixels` pixels (width x height, read from the file's header before decoding; default the limit
    image_max_pixels, PPBACKBONE_IMAGE_MAX_PIXELS) is an ImageTooLargeError."""

    def __init__(self, to_rgb=True, channel_first=False, backend="cv2", to_np=True, max_pixels=None):
        backend = str(backend or "cv2").lower()
        if backend not in ("cv2", "pil"):
            raise TransformError(f"DecodeImage: backend {backend!r} is not supported; use 'cv2' or 'pil'")
        if backend == "cv2" and cv2 is None:
            backend = "pil"
        if not to_np:
            _warn_once("decode_to_np", "DecodeImage: to_np=False (PIL images between ops) is not supported; "
                       "ops pass numpy arrays")
        if max_pixels is not None and (not isinstance(max_pixels, int) or isinstance(max_pixels, bool)
                                       or max_pixels < 1):
            raise TransformError(f"DecodeImage: max_pixels={max_pixels!r} is not valid: expected a positive integer "
                                 f"(pixels, width x height)")
        self.to_rgb, self.channel_first, self.backend = bool(to_rgb), bool(channel_first), backend
        self.max_pixels = max_pixels or limit("image_max_pixels")

    def check_size(self, width, height):
        """ImageTooLargeError when a width x height image is over max_pixels."""
        if width * height > self.max_pixels:
            raise ImageTooLargeError(
                f"image of {width}x{height} pixels (w x h; about {width * height * 3 / 2 ** 30:.1f} GiB as RGB) is over "
                f"the limit of {self.max_pixels} pixels, checked before decoding; raise it with DecodeImage max_pixels, "
                f"Predictor(max_image_pixels=), tools/infer.py --max-image-pixels or PPBACKBONE_IMAGE_MAX_PIXELS")

    def __call__(self, data):
        if isinstance(data, np.ndarray):  # already decoded
            img = data
        else:
            img = self._decode(data)
        if self.channel_first:
            img = img.transpose((2, 0, 1))
        return np.ascontiguousarray(img)

    def _decode(self, data):
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise TransformError(f"DecodeImage expects the file's bytes, got {type(data).__name__}")
        if not data:
            raise ImageDecodeError("empty file (0 bytes)")
        truncated = _truncation(data)
        if truncated:
            raise ImageDecodeError(f"not a decodable image ({len(data)} bytes): {truncated}, the file is cut short")
        try:
            pil = _open_lazy(data)
        except Exception as err:  # PIL raises several types for corrupt headers; OpenCV may still read it
            if self.backend != "cv2":
                raise ImageDecodeError(f"not a decodable image ({len(data)} bytes): {err}") from None
            pil = None
        if pil is not None:
            self.check_size(*pil.size)
        if self.backend == "cv2":
            img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise ImageDecodeError(f"not a decodable image ({len(data)} bytes)")
            if pil is None:  # a format only OpenCV reads: checked once decoded (OpenCV caps it at 2**30 pixels)
                self.check_size(img.shape[1], img.shape[0])
            return img[:, :, ::-1] if self.to_rgb else img
        if pil is None:
            raise ImageDecodeError(f"not a decodable image ({len(data)} bytes): PIL cannot identify its format")
        try:
            img = np.asarray(pil.convert("RGB"))
        except Exception as err:  # PIL raises several types for corrupt data
            raise ImageDecodeError(f"not a decodable image ({len(data)} bytes): {err}") from None
        return img if self.to_rgb else img[:, :, ::-1]


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


class NormalizeImage:
    """(img * scale - mean) / std as float32 (float16 with output_fp16). order 'chw' expects a CHW
    image, anything else ('' in PaddleClas configs, 'hwc') an HWC one. channel_num 4 appends a
    zero channel."""

    def __init__(self, scale=None, mean=None, std=None, order="chw", output_fp16=False, channel_num=3):
        self.scale = np.float32(number(scale, "NormalizeImage.scale") if scale is not None else 1.0 / 255.0)
        mean = IMAGENET_MEAN if mean is None else mean
        std = IMAGENET_STD if std is None else std
        if any(not isinstance(v, (list, tuple)) or len(v) != 3 for v in (mean, std)):
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
