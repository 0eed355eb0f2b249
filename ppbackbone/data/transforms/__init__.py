"""Image transforms under PaddleClas's op names, built from PaddleClas's `transform_ops` lists.

Every op is a callable on one image: `DecodeImage` takes the encoded file bytes, the others an HWC
numpy array (uint8 before `NormalizeImage`, float32 after it; `ToCHWImage` turns HWC into CHW).
`build_transforms([{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"resize_short": 232}}, ...])`
returns one callable that applies them in order. The same list drives training, evaluation, the
exported model's `inference.yml` and the Predictor, so preprocessing cannot drift between them.

Random ops draw from Python's `random` and NumPy's global generator, like PaddleClas's; the data
loader seeds both per worker and epoch.

The ops live by kind: basic.py (decode, resize, crops, flip, pad, normalize, CHW), policies.py (RandAugment,
AutoAugment), augment.py (random erasing, colour jitter, rotation); base.py what they share (errors,
parameter parsing, the resizer); build.py the registry and the builders.
"""
from .augment import ColorJitter, RandomErasing, RandomRotation
from .base import IMAGENET_MEAN, IMAGENET_STD, ImageDecodeError, ImageTooLargeError, TransformError, number
from .basic import (CropImage, DecodeImage, NormalizeImage, Pad, RandCropImage, RandCropImageV2, RandFlipImage,
                    ResizeImage, ToCHWImage)
from .build import TRANSFORMS, UNSUPPORTED_TRANSFORMS, Compose, build_op, build_transforms
from .policies import AutoAugment, TimmAutoAugment, parse_rand_config

__all__ = ["build_transforms", "Compose", "TransformError", "ImageDecodeError", "ImageTooLargeError", "TRANSFORMS",
           "DecodeImage", "ResizeImage", "CropImage", "RandCropImage", "RandFlipImage", "NormalizeImage",
           "ToCHWImage", "TimmAutoAugment", "RandomErasing", "AutoAugment", "ColorJitter", "RandomRotation", "Pad",
           "RandCropImageV2", "IMAGENET_MEAN", "IMAGENET_STD", "UNSUPPORTED_TRANSFORMS",
           "build_op", "number", "parse_rand_config"]
