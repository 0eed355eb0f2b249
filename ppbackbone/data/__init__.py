"""Data: transforms under PaddleClas op names, datasets, batch ops, loaders, the embedded demo dataset."""
from .batch_ops import BATCH_OPS, CutmixOperator, MixupOperator, OpSampler, build_batch_transform  # noqa: F401
from .dataset import (DATASETS, DatasetError, DemoDataset, ImageFolderDataset, ImageNetDataset,  # noqa: F401
                      read_label_file)
from .demo import DEMO_CLASSES, ensure_demo_dataset  # noqa: F401
from .loader import Loader, build_dataloader, build_dataset  # noqa: F401
from .transforms import TRANSFORMS, Compose, ImageDecodeError, TransformError, build_transforms  # noqa: F401
