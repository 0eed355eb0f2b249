"""An embedded detection demo set: drawn shapes with their boxes, in COCO format, written
deterministically on first use (like the classification demo in demo.py).

`ensure_det_demo_dataset()` returns the folder, which holds

    images/train/000000.jpg ..., images/val/000000.jpg ...       (160x160 RGB JPEG)
    annotations/instances_train.json, annotations/instances_val.json   (COCO: images, annotations, categories)

Each image has 1 to 3 objects of DET_DEMO_CLASSES (filled circle, square, triangle) of 28 to 72 px on a
plain noisy background; objects do not overlap, so every box is fully visible. Boxes are the exact
extent of the drawn shape ([x, y, w, h], COCO); segmentations are the shape's polygon. The set is small
enough for a CPU to train a detector on it in minutes (PaddleDetection configs: configs/ppdet/demo/).
"""
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from .demo import _colors, _polygon, write_once

__all__ = ["ensure_det_demo_dataset", "det_demo_dir", "DET_DEMO_CLASSES", "DET_DEMO_VERSION", "DET_DEMO_SIZE"]

DET_DEMO_VERSION = 1
DET_DEMO_CLASSES = ("circle", "square", "triangle")
DET_DEMO_SIZE = 160
_COUNTS = {"train": 240, "val": 60}
_SEED = 20261203


def det_demo_dir():
    """Default location: $PPBACKBONE_HOME/datasets/det_demo_shapes_v<N> (~/.cache/ppbackbone by default)."""
    home = os.environ.get("PPBACKBONE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "ppbackbone"))
    return os.path.join(home, "datasets", f"det_demo_shapes_v{DET_DEMO_VERSION}")


def _shape_points(name, cx, cy, radius, angle):
    if name == "circle":
        return _polygon(cx, cy, radius, 24, 0.0)
    if name == "square":
        return _polygon(cx, cy, radius * 1.15, 4, angle)
    return _polygon(cx, cy, radius * 1.2, 3, angle)


def _place(rng, placed, radius, size):
    """A centre for a shape of `radius` that keeps it inside the image and apart from `placed`; None if
    none is found in 50 tries."""
    reach = radius * 1.25  # squares/triangles reach 1.15/1.2 radii from the centre
    for _ in range(50):
        cx, cy = rng.uniform(reach, size - reach, 2)
        if all(math.hypot(cx - x, cy - y) > reach + r + 4 for x, y, r in placed):
            return cx, cy
    return None


def _draw_image(rng, size):
    """(PIL image, [(category index, polygon points)])"""
    bg, fg = _colors(rng)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    objects, placed = [], []
    for _ in range(int(rng.randint(1, 4))):
        label = int(rng.randint(len(DET_DEMO_CLASSES)))
        radius = rng.uniform(14, 36)
        centre = _place(rng, placed, radius, size)
        if centre is None:
            continue
        colour = fg if rng.rand() < 0.5 else _colors(rng)[1]
        points = _shape_points(DET_DEMO_CLASSES[label], centre[0], centre[1], radius, rng.uniform(0, 2 * math.pi))
        draw.polygon(points, fill=colour)
        placed.append((centre[0], centre[1], radius * 1.25))
        objects.append((label, points))
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, rng.uniform(2, 6), (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), objects


def _annotation(ann_id, image_id, label, points, size):
    xs = [min(max(x, 0.0), size) for x, _ in points]
    ys = [min(max(y, 0.0), size) for _, y in points]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    return {"id": ann_id, "image_id": image_id, "category_id": label + 1, "iscrowd": 0,
            "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
            "area": round((x1 - x0) * (y1 - y0), 2),
            "segmentation": [[round(v, 2) for xy in zip(xs, ys) for v in xy]]}


def _write(root):
    rng = np.random.RandomState(_SEED)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(DET_DEMO_CLASSES)]
    os.makedirs(os.path.join(root, "annotations"))
    ann_id = 1
    for split, count in _COUNTS.items():
        os.makedirs(os.path.join(root, "images", split))
        images, annotations = [], []
        for image_id in range(1, count + 1):
            img, objects = _draw_image(rng, DET_DEMO_SIZE)
            name = f"{image_id:06d}.jpg"
            img.save(os.path.join(root, "images", split, name), "JPEG", quality=92)
            images.append({"id": image_id, "file_name": name, "width": DET_DEMO_SIZE, "height": DET_DEMO_SIZE})
            for label, points in objects:
                annotations.append(_annotation(ann_id, image_id, label, points, DET_DEMO_SIZE))
                ann_id += 1
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w", encoding="utf-8") as f:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    with open(os.path.join(root, "README.txt"), "w", encoding="utf-8") as f:
        f.write(f"ppbackbone detection demo set v{DET_DEMO_VERSION}: {', '.join(DET_DEMO_CLASSES)} on "
                f"{DET_DEMO_SIZE}x{DET_DEMO_SIZE} images, {_COUNTS['train']} train / {_COUNTS['val']} val, COCO "
                f"annotations. Written by ppbackbone.data.det_demo.ensure_det_demo_dataset(); delete the folder "
                f"to regenerate it.\n")


def ensure_det_demo_dataset(root=None):
    """Write the detection demo set to `root` (default `det_demo_dir()`) unless it is complete there;
    returns the folder. Deterministic (fixed seed), a second or two; written to a temporary folder and
    renamed, so concurrent callers never see a half-written set."""
    root = os.path.abspath(os.path.expanduser(root or det_demo_dir()))
    return write_once(root, _write, ("annotations/instances_train.json", "annotations/instances_val.json"),
                      "Detection demo dataset")
