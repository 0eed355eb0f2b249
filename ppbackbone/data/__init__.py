"""Data: transforms under PaddleClas op names, datasets, batch ops, loaders, the embedded demo dataset."""
from .demo import DEMO_CLASSES, ensure_demo_dataset  # noqa: F401
from .transforms import TRANSFORMS, Compose, ImageDecodeError, TransformError, build_transforms  # noqa: F401
