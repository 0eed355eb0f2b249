"""Single random augmentations: random erasing, colour jitter, random rotation (PaddleClas's parameters)."""
import math
import random

import numpy as np
from PIL import Image

from .base import TransformError, _check_image, number


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
