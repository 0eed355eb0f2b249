"""Datasets: PaddleClas's `ImageNetDataset` (a label file of `relative/path label` lines), an
image-folder dataset (one sub-folder per class) and the embedded demo dataset.

Each item is `(image, label)`: the image after the configured transforms, in CHW layout (an HWC
result is transposed, as PaddleClas does), and the int64 label. Problems are found when the
dataset is built, not hours into training: a missing folder or label file, a line without a
label, a label outside [0, class_num), a listed file that does not exist and an empty dataset are
errors naming the file and line. A corrupt image is an error naming the file, or, with
`skip_corrupt_images: True`, skipped (another image is used) with a counted warning.
"""
import hashlib
import inspect
import logging
import os
import random

import numpy as np
import paddle

from ..errors import InputFileError, UserError, check_inside, check_regular_file, warn_once
from .transforms import UNSUPPORTED_TRANSFORMS, build_transforms

__all__ = ["ImageNetDataset", "ImageFolderDataset", "DemoDataset", "MultiScaleDataset", "DatasetError", "DATASETS", "dataset_keys",
           "read_label_file", "IMAGE_EXTENSIONS"]

logger = logging.getLogger("ppbackbone")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def mix_seed(*parts):
    """A 32-bit seed from any parts (stable across processes and Python versions)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class DatasetError(UserError, ValueError):
    """A dataset that cannot be used; the message names the file (and line) and what was expected."""


def read_label_file(path, image_root, delimiter=None, relabel=False):
    """Parse a PaddleClas label file: one `relative/path label` a line (split at the last
    `delimiter`, default any whitespace, so paths may contain spaces). Blank lines are skipped.
    Returns (paths joined to image_root, int labels, 1-based line numbers)."""
    try:
        check_regular_file(path, "Label file")
    except InputFileError as err:
        raise DatasetError(f"{err} (cls_label_path; expected a text file with one 'relative/path label' line per "
                           f"image)") from None
    paths, labels, lines = [], [], []
    try:
        with open(path, encoding="utf-8") as f:
            text_lines = f.readlines()
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): expected a label file "
                           f"with one 'relative/path label' line per image") from None
    for number, line in enumerate(text_lines, 1):
        text = line.strip()
        if not text:
            continue
        parts = text.rsplit(delimiter, 1) if delimiter else text.rsplit(None, 1)
        if len(parts) != 2 or not parts[0].strip():
            raise DatasetError(f"{path}:{number}: {text!r} has no label; expected 'relative/path label'"
                               + (f" separated by {delimiter!r}" if delimiter else ""))
        rel, label = parts[0].strip(), parts[1].strip()
        try:
            label = int(label)
        except ValueError:
            raise DatasetError(f"{path}:{number}: label {label!r} is not an integer class index "
                               f"(line {text!r})") from None
        paths.append(check_inside(rel, image_root, f"{path}:{number}: image path", error=DatasetError))
        labels.append(label)
        lines.append(number)
    if relabel:
        mapping = {old: new for new, old in enumerate(sorted(set(labels)))}
        labels = [mapping[label] for label in labels]
    return paths, labels, lines


def _filter_ops(op_list, where):
    """Drop the PaddleClas ops we do not implement (the config check has warned about them)."""
    kept = []
    for entry in op_list or []:
        name = next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else entry
        if name in UNSUPPORTED_TRANSFORMS:
            warn_once(f"{where}:{name}", f"{where}: {name} (PaddleClas) is not supported and is skipped")
            continue
        kept.append(entry)
    return kept


class _ImageDataset(paddle.io.Dataset):
    """Common part: a list of (file, label) pairs, the transform pipeline and the checks."""

    def __init__(self, transform_ops=None, class_num=None, skip_corrupt_images=False, source=""):
        super().__init__()
        ops = _filter_ops(transform_ops, f"{source} transform_ops")
        self._ops = ops
        self.transform = build_transforms(ops)
        names = [next(iter(e)) if isinstance(e, dict) else e for e in ops]
        # PaddleClas transposes the transformed HWC image itself; a list ending in CHW already is kept
        self._to_chw = "ToCHWImage" not in names and not any(
            isinstance(e, dict) and next(iter(e)) == "NormalizeImage" and str((e["NormalizeImage"] or {}).get(
                "order", "chw")).lower() == "chw" for e in ops)
        self.skip_corrupt_images = bool(skip_corrupt_images)
        self.class_num = class_num
        self.source = source
        self.images, self.labels, self._lines = [], [], []
        self.skipped = 0
        self.error_file = None  # set by the Loader: where a worker process leaves its error message
        self.seed_base = None  # set by the Loader: (seed, epoch); each item then seeds its own randomness

    def _check(self, what):
        if not self.images:
            raise DatasetError(f"{what} lists no images: the dataset is empty")
        labels = np.asarray(self.labels)
        bad = np.nonzero(labels < 0)[0] if self.class_num is None else np.nonzero(
            (labels < 0) | (labels >= self.class_num))[0]
        if len(bad):
            i = int(bad[0])
            where = f"{what}:{self._lines[i]}" if self._lines else self.images[i]
            allowed = "must be >= 0" if self.class_num is None else \
                f"must be in [0, {self.class_num}) (Arch.class_num={self.class_num})"
            raise DatasetError(f"{where}: label {self.labels[i]} {allowed}; {len(bad)} label(s) out of range")
        missing = [i for i, p in enumerate(self.images) if not os.path.isfile(p)]
        for i in missing:  # a folder, FIFO or device listed as an image: named (opening a FIFO would block)
            if os.path.exists(self.images[i]):
                try:
                    check_regular_file(self.images[i], f"{what}:{self._lines[i]}: image" if self._lines else "Image")
                except InputFileError as err:
                    raise DatasetError(str(err)) from None
        if missing:
            shown = "; ".join(f"{what}:{self._lines[i]} -> {self.images[i]}" if self._lines else self.images[i]
                              for i in missing[:3])
            raise DatasetError(f"{len(missing)} listed image file(s) do not exist, e.g. {shown}")

    def __len__(self):
        return len(self.images)

    def _transform_for(self, size):
        """The pipeline with its first crop/resize op set to `size` (w, h): MultiScaleSampler items."""
        cache = self.__dict__.setdefault("_sized", {})
        if size not in cache:
            ops, done = [], False
            for entry in self._ops:
                name, params = next(iter(entry.items())) if isinstance(entry, dict) else (entry, None)
                if not done and name in ("RandCropImage", "ResizeImage", "CropImage"):
                    params = {k: v for k, v in dict(params or {}).items() if k != "resize_short"}
                    params["size"] = list(size)
                    done = True
                ops.append({name: params})
            cache[size] = build_transforms(ops)
        return cache[size]

    def load(self, index, size=None):
        """The transformed image of item `index` (errors name the file); `size` (w, h) overrides
        the first crop/resize size."""
        path = self.images[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise DatasetError(f"Cannot read image {path}: {err}") from None
        try:
            image = (self.transform if size is None else self._transform_for(size))(data)
        except Exception as err:  # decode and transform errors: name the file
            raise DatasetError(f"Image {path}: {type(err).__name__}: {err}") from err
        if self._to_chw and isinstance(image, np.ndarray) and image.ndim == 3:
            image = image.transpose((2, 0, 1))
        return np.ascontiguousarray(image)

    def __getitem__(self, index):
        size = None
        if isinstance(index, (tuple, list)):  # (w, h, index) from MultiScaleSampler
            size, index = (int(index[0]), int(index[1])), int(index[2])
        if self.seed_base is not None:
            # Item-level seeds make augmentation independent of worker count, prefetching and order;
            # the batch ops that run next in the same process continue from the last item's stream.
            item_seed = mix_seed(*self.seed_base, index)
            random.seed(item_seed)
            np.random.seed(item_seed)
        for attempt in range(10):
            try:
                return self.load(index, size), np.int64(self.labels[index])
            except DatasetError as err:
                if not self.skip_corrupt_images:
                    if self.error_file:  # paddle's worker processes hide the message from the main process
                        with open(self.error_file, "w", encoding="utf-8") as f:
                            f.write(str(err))
                    raise
                self.skipped += 1
                logger.warning(f"skipping unreadable image ({self.skipped} skipped so far in this loader "
                               f"process): {err}")
                index = (index + 1) % len(self.images)
        raise DatasetError(f"10 consecutive unreadable images up to {self.images[index]}; giving up")


class ImageNetDataset(_ImageDataset):
    """PaddleClas's ImageNetDataset: images under `image_root` listed in `cls_label_path`
    (`relative/path label` per line; `delimiter` default whitespace). `relabel` maps the sorted
    distinct labels to 0..n-1. `class_num` (from Arch.class_num) bounds the labels."""

    def __init__(self, image_root, cls_label_path, transform_ops=None, delimiter=None, relabel=False,
                 skip_corrupt_images=False, class_num=None):
        super().__init__(transform_ops, class_num, skip_corrupt_images, source=str(cls_label_path))
        if not image_root or not os.path.isdir(image_root):
            raise DatasetError(f"image_root folder not found: {image_root!r} (the folder the paths in "
                               f"{cls_label_path} are relative to)")
        self.image_root, self.cls_label_path = image_root, cls_label_path
        self.images, self.labels, self._lines = read_label_file(cls_label_path, image_root, delimiter, relabel)
        self._check(cls_label_path)


class ImageFolderDataset(_ImageDataset):
    """One sub-folder of `image_root` per class (sorted names -> labels 0..n-1), image files inside
    (any depth). `class_names` lists the classes (in label order) instead of all sub-folders."""

    def __init__(self, image_root, transform_ops=None, class_names=None, skip_corrupt_images=False,
                 class_num=None):
        super().__init__(transform_ops, class_num, skip_corrupt_images, source=str(image_root))
        if not image_root or not os.path.isdir(image_root):
            raise DatasetError(f"image_root folder not found: {image_root!r} (expected one sub-folder per class)")
        self.image_root = image_root
        folders = sorted(d for d in os.listdir(image_root) if os.path.isdir(os.path.join(image_root, d)))
        if class_names is not None:
            absent = [c for c in class_names if c not in folders]
            if absent:
                raise DatasetError(f"{image_root}: class folder(s) {absent} not found; present: {folders}")
            folders = list(class_names)
        if not folders:
            raise DatasetError(f"{image_root} has no class sub-folders (expected image_root/<class>/<image>)")
        self.class_names = folders
        for label, name in enumerate(folders):
            for dirpath, _, files in sorted(os.walk(os.path.join(image_root, name))):
                for file in sorted(files):
                    if file.lower().endswith(IMAGE_EXTENSIONS):
                        self.images.append(os.path.join(dirpath, file))
                        self.labels.append(label)
        if class_num is not None and len(folders) > class_num:
            raise DatasetError(f"{image_root} has {len(folders)} class folders but Arch.class_num={class_num}")
        self._check(image_root)


class DemoDataset(ImageNetDataset):
    """The embedded demo dataset (`ppbackbone.data.demo`), written on first use: `split` train or
    val, or the retrieval sets gallery (20 val images per class) and query (the other 10; see
    demo.ensure_retrieval_lists); `root` defaults to the cache folder."""

    SPLITS = ("train", "val", "gallery", "query")

    def __init__(self, split="train", transform_ops=None, root=None, skip_corrupt_images=False, class_num=None):
        from .demo import ensure_demo_dataset, ensure_retrieval_lists
        if split not in self.SPLITS:
            raise DatasetError(f"DemoDataset.split must be one of {', '.join(self.SPLITS)}, got {split!r}")
        root = ensure_demo_dataset(root)
        if split in ("train", "val"):
            label_file = os.path.join(root, f"{split}_list.txt")
        else:
            label_file = ensure_retrieval_lists(root)[split]
        super().__init__(root, label_file, transform_ops, skip_corrupt_images=skip_corrupt_images,
                         class_num=class_num)


class MultiScaleDataset(ImageNetDataset):
    """PaddleClas's MultiScaleDataset: an ImageNetDataset read with MultiScaleSampler, whose items
    (w, h, index) set the size of the first crop/resize op (every dataset here accepts them)."""

    def __init__(self, image_root, cls_label_path, transform_ops=None, delimiter=None, skip_corrupt_images=False,
                 class_num=None):
        super().__init__(image_root, cls_label_path, transform_ops, delimiter, False, skip_corrupt_images, class_num)


DATASETS = {"ImageNetDataset": ImageNetDataset, "ImageFolderDataset": ImageFolderDataset, "DemoDataset": DemoDataset,
            "MultiScaleDataset": MultiScaleDataset}


def dataset_keys(name):
    """Config keys a dataset accepts (its constructor's, without the injected class_num, plus
    batch_transform_ops which the loader applies)."""
    cls = DATASETS.get(name)
    if cls is None:
        return ("image_root", "cls_label_path", "transform_ops", "batch_transform_ops")
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "class_num")]
    return tuple(params) + ("batch_transform_ops",)
