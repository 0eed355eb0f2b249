"""The embedded detection demo set (ppbackbone.data.det_demo): deterministic, valid COCO, boxes that
bound the drawn shapes."""
import hashlib
import json
import os

import numpy as np
from PIL import Image

from ppbackbone.data.det_demo import DET_DEMO_CLASSES, DET_DEMO_SIZE, ensure_det_demo_dataset


def _digest(root):
    h = hashlib.sha256()
    for split in ("train", "val"):
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "rb") as f:
            h.update(f.read())
    with open(os.path.join(root, "images", "val", "000007.jpg"), "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def test_det_demo_is_deterministic_valid_coco_with_tight_boxes(tmp_path):
    a = ensure_det_demo_dataset(str(tmp_path / "a"))
    b = ensure_det_demo_dataset(str(tmp_path / "b"))
    assert _digest(a) == _digest(b)
    assert ensure_det_demo_dataset(a) == a  # complete: not rewritten
    coco = json.load(open(os.path.join(a, "annotations", "instances_val.json")))
    assert [c["name"] for c in coco["categories"]] == list(DET_DEMO_CLASSES)
    assert len(coco["images"]) == 60 and len(coco["annotations"]) >= 60
    ids = {im["id"] for im in coco["images"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        assert ann["image_id"] in ids and 1 <= ann["category_id"] <= len(DET_DEMO_CLASSES)
        assert 0 <= x and 0 <= y and x + w <= DET_DEMO_SIZE and y + h <= DET_DEMO_SIZE and w > 20 and h > 20
    # the box bounds the drawn shape: inside it the image differs from the background, outside a margin not
    ann = coco["annotations"][0]
    image = np.asarray(Image.open(os.path.join(a, "images", "val", f"{ann['image_id']:06d}.jpg"))).astype(float)
    x, y, w, h = (int(round(v)) for v in ann["bbox"])
    corner = image[:4, :4].reshape(-1, 3).mean(0)
    centre = image[y + h // 2 - 2:y + h // 2 + 2, x + w // 2 - 2:x + w // 2 + 2].reshape(-1, 3).mean(0)
    assert np.abs(centre - corner).sum() > 30
