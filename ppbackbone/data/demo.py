"""An embedded demo dataset: 10 classes of drawn shapes and textures, written as JPEG files with
PaddleClas label files, deterministically, on first use.

It lets a fresh machine train something real with the same decode/augment pipeline as ImageNet:
`ensure_demo_dataset()` returns the folder, which holds

    train/<class>/<n>.jpg, val/<class>/<n>.jpg    (so ImageFolder datasets read it too)
    train_list.txt, val_list.txt                   (`train/circle/0000.jpg 0` per line)
    label_list.txt                                 (`0 circle` per line, PaddleClas's class_id_map_file)

Images vary in size (56..96 px a side), colour, position, scale, rotation and noise, so that a
small model needs a few epochs to learn them and augmentation matters.
"""
import math
import os
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from ..progress import progress

__all__ = ["ensure_demo_dataset", "ensure_retrieval_lists", "demo_dataset_dir", "DEMO_CLASSES", "DEMO_VERSION",
           "RETRIEVAL_GALLERY_PER_CLASS"]

DEMO_VERSION = 2
DEMO_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring", "hstripes", "vstripes",
                "checker", "dots")
_COUNTS = {"train": 150, "val": 30}
_SEED = 20240917


def demo_dataset_dir():
    """Default location: $PPBACKBONE_HOME/datasets/demo_shapes_v<N> (~/.cache/ppbackbone by default)."""
    home = os.environ.get("PPBACKBONE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "ppbackbone"))
    return os.path.join(home, "datasets", f"demo_shapes_v{DEMO_VERSION}")


def _colors(rng):
    """A background and a foreground colour that differ clearly in brightness."""
    while True:
        bg = rng.randint(0, 256, 3)
        fg = rng.randint(0, 256, 3)
        if abs(int(bg.mean()) - int(fg.mean())) > 60:
            return tuple(int(c) for c in bg), tuple(int(c) for c in fg)


def _polygon(cx, cy, radius, sides, angle, inner=None):
    points = []
    count = sides * 2 if inner else sides
    for k in range(count):
        r = radius if (not inner or k % 2 == 0) else radius * inner
        a = angle + 2 * math.pi * k / count
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _draw(label, rng):
    w, h = int(rng.randint(56, 97)), int(rng.randint(56, 97))
    bg, fg = _colors(rng)
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    side = min(w, h)
    radius = side * rng.uniform(0.3, 0.44)
    cx = w / 2 + rng.uniform(-1, 1) * (w / 2 - radius) * 0.5
    cy = h / 2 + rng.uniform(-1, 1) * (h / 2 - radius) * 0.5
    angle = rng.uniform(0, 2 * math.pi)
    name = DEMO_CLASSES[label]
    if name == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fg)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, radius * 1.15, 4, angle), fill=fg)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, radius * 1.2, 3, angle), fill=fg)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, radius * 1.2, 5, angle, inner=0.42), fill=fg)
    elif name == "cross":
        arm = radius * rng.uniform(0.3, 0.45)
        for a in (angle, angle + math.pi / 2):
            dx, dy = math.cos(a), math.sin(a)
            px, py = -dy * arm / 2, dx * arm / 2
            r = radius * 1.2
            draw.polygon([(cx - dx * r + px, cy - dy * r + py), (cx + dx * r + px, cy + dy * r + py),
                          (cx + dx * r - px, cy + dy * r - py), (cx - dx * r - px, cy - dy * r - py)], fill=fg)
    elif name == "ring":
        width = max(2, int(radius * rng.uniform(0.25, 0.4)))
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=fg, width=width)
    elif name in ("hstripes", "vstripes"):
        period = rng.randint(6, 15)
        thick = max(2, int(period * rng.uniform(0.35, 0.6)))
        offset = rng.randint(0, period)
        for pos in range(-period + offset, (h if name == "hstripes" else w) + period, period):
            if name == "hstripes":
                draw.rectangle([0, pos, w, pos + thick - 1], fill=fg)
            else:
                draw.rectangle([pos, 0, pos + thick - 1, h], fill=fg)
    elif name == "checker":
        cell = rng.randint(6, 15)
        ox, oy = rng.randint(0, cell), rng.randint(0, cell)
        for i, y in enumerate(range(-oy, h, cell)):
            for j, x in enumerate(range(-ox, w, cell)):
                if (i + j) % 2 == 0:
                    draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=fg)
    elif name == "dots":
        step = rng.randint(9, 16)
        dot = step * rng.uniform(0.2, 0.32)
        ox, oy = rng.uniform(0, step), rng.uniform(0, step)
        for y in np.arange(oy - step, h + step, step):
            for x in np.arange(ox - step, w + step, step):
                draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=fg)
    arr = np.asarray(img).astype(np.float32)
    arr += rng.normal(0, rng.uniform(2, 8), arr.shape)  # sensor-like noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _write(root):
    rng = np.random.RandomState(_SEED)
    bar = progress(total=sum(_COUNTS.values()) * len(DEMO_CLASSES), desc="writing the demo dataset", unit="image")
    for split, count in _COUNTS.items():
        lines = []
        for label, name in enumerate(DEMO_CLASSES):
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for n in range(count):
                rel = f"{split}/{name}/{n:04d}.jpg"
                _draw(label, rng).save(os.path.join(root, rel), "JPEG", quality=90)
                lines.append(f"{rel} {label}\n")
                bar.update()
        with open(os.path.join(root, f"{split}_list.txt"), "w", encoding="utf-8") as f:
            f.writelines(lines)
    bar.close()
    with open(os.path.join(root, "label_list.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{i} {name}\n" for i, name in enumerate(DEMO_CLASSES))
    with open(os.path.join(root, "README.txt"), "w", encoding="utf-8") as f:
        f.write(f"ppbackbone demo dataset v{DEMO_VERSION}: {len(DEMO_CLASSES)} classes of drawn shapes and "
                f"textures, {_COUNTS['train']} train and {_COUNTS['val']} val images per class. Written by "
                f"ppbackbone.data.demo.ensure_demo_dataset(); delete the folder to regenerate it.\n")


# Retrieval split: the model trains on the train images of all 10 classes; the 300 val images (never
# trained on) are split per class into a gallery (the first 20) and queries (the last 10).
RETRIEVAL_GALLERY_PER_CLASS = 20


def ensure_retrieval_lists(root):
    """Write gallery_list.txt and query_list.txt beside the demo's label files (from val_list.txt, no
    new images) unless present; returns {split: path}. Each file is written whole (temp + rename)."""
    paths = {split: os.path.join(root, f"{split}_list.txt") for split in ("gallery", "query")}
    if all(os.path.isfile(p) for p in paths.values()):
        return paths
    with open(os.path.join(root, "val_list.txt"), encoding="utf-8") as f:
        val = [line.split() for line in f if line.strip()]
    seen, lists = {}, {"gallery": [], "query": []}
    for rel, label in val:
        seen[label] = seen.get(label, 0) + 1
        lists["gallery" if seen[label] <= RETRIEVAL_GALLERY_PER_CLASS else "query"].append((rel, label))
    for split, rows in lists.items():
        fd, tmp = tempfile.mkstemp(prefix=".tmp-list-", dir=root)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{rel} {label}\n" for rel, label in rows)
        os.replace(tmp, paths[split])
    return paths


def ensure_demo_dataset(root=None):
    """Write the demo dataset to `root` (default `demo_dataset_dir()`) unless it is already complete
    there; returns the folder. Generation is deterministic (a fixed seed) and takes a few seconds;
    it is written to a temporary folder and renamed, so concurrent callers (e.g. the ranks of a
    distributed launch) and interrupted runs never see a half-written dataset."""
    root = os.path.abspath(os.path.expanduser(root or demo_dataset_dir()))
    return write_once(root, _write, ("label_list.txt", "val_list.txt"), "Demo dataset")


_ANNOUNCED = set()


def _announce(root, what, written):
    """Say where the data is, once per process and folder (on stderr)."""
    if root not in _ANNOUNCED:
        _ANNOUNCED.add(root)
        print(f"{what}: {root} ({'written now' if written else 'already there'}; delete the folder to "
              f"regenerate it)", file=sys.stderr)


def write_once(root, write, markers, what="Demo data"):
    """Run `write(tmp_folder)` and rename the folder to `root`, unless every file in `markers` (relative
    paths) already exists under `root`; returns `root` (its location printed once, named `what`). A
    concurrent writer that wins the rename is accepted; an existing incomplete folder is an error that
    says to delete it."""
    def complete():
        return all(os.path.isfile(os.path.join(root, m)) for m in markers)

    if complete():
        _announce(root, what, written=False)
        return root
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-demo-", dir=parent)
    try:
        write(tmp)
        try:
            os.rename(tmp, root)
        except OSError:
            if not complete():  # not a concurrent writer that won: a real problem
                if os.path.isdir(root) and not os.listdir(root):
                    os.rmdir(root)
                    os.rename(tmp, root)
                else:
                    raise OSError(f"Could not create the demo dataset at {root}: the folder exists but is "
                                  f"incomplete; delete it and run again") from None
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    _announce(root, what, written=True)
    return root
