"""Augmentation policies over PIL ops: RandAugment with timm's config strings ("rand-m9-n2-mstd0.5-inc1",
PaddleClas's TimmAutoAugment) and AutoAugment's ImageNet policy."""
import random
import re

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .base import IMAGENET_MEAN, TransformError, _PIL_INTERP, _check_image, number

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
