"""PaddleDetection datasets over ppbackbone's embedded detection demo set (ppbackbone.data.det_demo).

Imported by `ppbackbone.ppdet` (it needs PaddleDetection). In a config:

    TrainDataset: !DetDemoDataSet {split: train, data_fields: ['image', 'gt_bbox', 'gt_class', 'is_crowd']}
    EvalDataset: !DetDemoDataSet {split: val, data_fields: ['image', 'gt_bbox', 'gt_class', 'is_crowd']}
    TestDataset: !DetDemoImageFolder {}

The set is written on first use to `dataset_dir` (default $PPBACKBONE_HOME/datasets/det_demo_shapes_v1) and
read as COCO (`COCODataSet`), so the COCO metric and the exporter's label list work as with any COCO set.
"""
from ppdet.core.workspace import serializable
from ppdet.data.source.coco import COCODataSet
from ppdet.data.source.dataset import ImageFolder

from ..data.det_demo import ensure_det_demo_dataset

__all__ = ["DetDemoDataSet", "DetDemoImageFolder"]

_SPLITS = ("train", "val")


@serializable
class DetDemoDataSet(COCODataSet):
    """COCODataSet of the demo set's `split` (train / val)."""

    def __init__(self, split="train", dataset_dir=None, data_fields=("image",), sample_num=-1, allow_empty=False,
                 empty_ratio=1.0, repeat=1):
        if split not in _SPLITS:
            raise ValueError(f"DetDemoDataSet: split={split!r}; the demo set has {', '.join(_SPLITS)}")
        root = ensure_det_demo_dataset(dataset_dir)
        super().__init__(dataset_dir=root, image_dir=f"images/{split}", anno_path=f"annotations/instances_{split}.json",
                         data_fields=list(data_fields), sample_num=sample_num, allow_empty=allow_empty,
                         empty_ratio=empty_ratio, repeat=repeat)


@serializable
class DetDemoImageFolder(ImageFolder):
    """ImageFolder for inference/export with the demo set's label list (its val annotations)."""

    def __init__(self, dataset_dir=None, sample_num=-1, **kwargs):
        root = ensure_det_demo_dataset(dataset_dir)
        super().__init__(dataset_dir=root, anno_path="annotations/instances_val.json", sample_num=sample_num, **kwargs)
