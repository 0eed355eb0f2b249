"""Data: transforms under PaddleClas op names, datasets, batch ops, loaders, the embedded demo dataset."""
from .transforms import TRANSFORMS, Compose, ImageDecodeError, TransformError, build_transforms  # noqa: F401
