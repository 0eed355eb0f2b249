"""Data pipeline: each transform on real JPEG files, build_transforms errors, datasets and their
errors (missing files, bad labels, corrupt images, empty sets), batch ops, loaders."""
import io
import os
import random

import numpy as np
import pytest
from PIL import Image

from ppbackbone.config import ConfigError
from ppbackbone.data import (DEMO_CLASSES, DatasetError, ImageFolderDataset, ImageNetDataset, TransformError,
                             build_dataloader, build_transforms, ensure_demo_dataset)
from ppbackbone.data.batch_ops import CutmixOperator, MixupOperator, OpSampler
from ppbackbone.data.transforms import ImageDecodeError, parse_rand_config

NORM = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "order": ""}}


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    return ensure_demo_dataset(str(tmp_path_factory.mktemp("demo") / "shapes"))


@pytest.fixture(scope="session")
def jpeg_bytes(demo_root):
    with open(os.path.join(demo_root, "train", "star", "0000.jpg"), "rb") as f:
        return f.read()


def test_demo_dataset_is_deterministic_and_complete(demo_root, tmp_path):
    lines = open(os.path.join(demo_root, "train_list.txt")).read().splitlines()
    assert len(lines) == 150 * len(DEMO_CLASSES)
    assert lines[0] == "train/circle/0000.jpg 0"
    labels = open(os.path.join(demo_root, "label_list.txt")).read().splitlines()
    assert labels[3] == "3 star"
    assert ensure_demo_dataset(demo_root) == demo_root  # second call: already there
    # the same bytes on a second generation (deterministic seed)
    other = ensure_demo_dataset(str(tmp_path / "again"))
    for rel in ("train/ring/0007.jpg", "val/dots/0029.jpg"):
        assert open(os.path.join(other, rel), "rb").read() == open(os.path.join(demo_root, rel), "rb").read()


@pytest.mark.parametrize("backend", ["cv2", "pil"])
def test_decode_backends_agree_and_respect_to_rgb(jpeg_bytes, backend):
    rgb = build_transforms([{"DecodeImage": {"to_rgb": True, "backend": backend}}])(jpeg_bytes)
    bgr = build_transforms([{"DecodeImage": {"to_rgb": False, "backend": backend}}])(jpeg_bytes)
    reference = np.asarray(Image.open(io.BytesIO(jpeg_bytes)).convert("RGB"))
    assert rgb.dtype == np.uint8 and rgb.shape == reference.shape
    assert np.abs(rgb.astype(int) - reference.astype(int)).mean() < 2.0  # decoders differ by rounding only
    np.testing.assert_array_equal(bgr, rgb[:, :, ::-1])
    chw = build_transforms([{"DecodeImage": {"channel_first": True, "backend": backend}}])(jpeg_bytes)
    assert chw.shape == (3,) + rgb.shape[:2]


def test_decode_rejects_corrupt_and_empty(jpeg_bytes):
    decode = build_transforms([{"DecodeImage": None}])
    with pytest.raises(ImageDecodeError, match="not a decodable image"):
        decode(jpeg_bytes[:40] + b"\x00" * 100)
    with pytest.raises(ImageDecodeError, match="empty"):
        decode(b"")
    with pytest.raises(ImageDecodeError):
        build_transforms([{"DecodeImage": {"backend": "pil"}}])(b"not an image at all")


@pytest.mark.parametrize("backend", ["cv2", "pil"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resize_crop_normalize_chw(jpeg_bytes, backend, interpolation):
    pipe = build_transforms([{"DecodeImage": {"to_rgb": True}},
                             {"ResizeImage": {"resize_short": 40, "interpolation": interpolation, "backend": backend}},
                             {"CropImage": {"size": 32}}, NORM, {"ToCHWImage": None}])
    out = pipe(jpeg_bytes)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    img = build_transforms([{"DecodeImage": None}])(jpeg_bytes)
    short = build_transforms([{"ResizeImage": {"resize_short": 40, "backend": backend}}])(img)
    h, w = img.shape[:2]
    assert min(short.shape[:2]) == 40
    assert short.shape[:2] == (int(round(h * 40 / min(h, w))), int(round(w * 40 / min(h, w))))
    # the normalisation is (x / 255 - mean) / std
    raw = build_transforms([{"ResizeImage": {"size": [20, 10], "backend": backend}}])(img)
    assert raw.shape == (10, 20, 3)  # size is [w, h] as in PaddleClas
    normed = build_transforms([NORM])(raw)
    expected = (raw / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(normed, expected, atol=1e-5)


def test_center_crop_too_large_is_an_error(jpeg_bytes):
    img = build_transforms([{"DecodeImage": None}])(jpeg_bytes)
    with pytest.raises(TransformError, match="larger than the image"):
        build_transforms([{"CropImage": {"size": 500}}])(img)


def test_random_ops_on_real_images(jpeg_bytes):
    random.seed(0)
    np.random.seed(0)
    img = build_transforms([{"DecodeImage": None}])(jpeg_bytes)
    crop = build_transforms([{"RandCropImage": {"size": 24, "interpolation": "bicubic", "backend": "pil"}}])
    outs = [crop(img) for _ in range(5)]
    assert all(o.shape == (24, 24, 3) and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    flip = build_transforms([{"RandFlipImage": {"flip_code": 1}}])
    flips = [flip(img) for _ in range(20)]
    assert any(np.array_equal(f, img[:, ::-1]) for f in flips) and any(np.array_equal(f, img) for f in flips)
    aug = build_transforms([{"TimmAutoAugment": {"config_str": "rand-m15-mstd0.5-inc1", "img_size": 64}}])
    augmented = [aug(img) for _ in range(10)]
    assert all(a.shape == img.shape and a.dtype == np.uint8 for a in augmented)
    assert any(not np.array_equal(a, img) for a in augmented)
    erase = build_transforms([NORM, {"RandomErasing": {"EPSILON": 1.0, "sl": 0.02, "sh": "1.0/3.0", "r1": 0.3,
                                                       "attempt": 10, "use_log_aspect": True, "mode": "pixel"}}])
    base = build_transforms([NORM])(img)
    erased = erase(img)
    changed = np.any(erased != base, axis=2)
    frac = changed.mean()
    assert 0.0 < frac <= 1 / 3 + 0.05  # one rectangle within [sl, sh] of the area


def test_rand_augment_config_strings():
    cfg = parse_rand_config("rand-m7-mstd0.5-inc1")
    assert cfg == {"magnitude": 7.0, "num_layers": 2, "magnitude_std": 0.5, "increasing": True, "weight_idx": None}
    assert parse_rand_config("rand-n3-m9")["num_layers"] == 3
    with pytest.raises(TransformError, match="only RandAugment"):
        parse_rand_config("augmix-m5")
    with pytest.raises(TransformError, match="unknown section"):
        parse_rand_config("rand-m9-q2")


def test_build_transforms_errors():
    with pytest.raises(TransformError, match="unknown transform 'ResizeImg'.*Did you mean: ResizeImage.*Known:"):
        build_transforms([{"ResizeImg": {"resize_short": 2}}])
    with pytest.raises(TransformError, match=r"ResizeImage: unknown parameter\(s\) \['short'\]"):
        build_transforms([{"ResizeImage": {"short": 2}}])
    with pytest.raises(TransformError, match="one-key mapping"):
        build_transforms([{"ResizeImage": {}, "CropImage": {}}])
    with pytest.raises(TransformError, match="interpolation 'cubic'"):
        build_transforms([{"ResizeImage": {"resize_short": 8, "interpolation": "cubic"}}])
    with pytest.raises(TransformError, match="flip_code"):
        build_transforms([{"RandFlipImage": {"flip_code": 2}}])


def _write_list(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_imagenet_dataset_reads_label_file(demo_root, tmp_path):
    label = _write_list(tmp_path / "l.txt", ["train/circle/0000.jpg 0", "", "train/star/0001.jpg\t3"])
    ds = ImageNetDataset(demo_root, label, [{"DecodeImage": None}, {"ResizeImage": {"size": 16}}, NORM], class_num=10)
    assert len(ds) == 2
    image, target = ds[1]
    assert image.shape == (3, 16, 16) and int(target) == 3  # HWC result transposed, as PaddleClas
    comma = _write_list(tmp_path / "c.txt", ["train/circle/0000.jpg,5"])
    assert ImageNetDataset(demo_root, comma, delimiter=",").labels == [5]
    relabel = _write_list(tmp_path / "r.txt", ["train/circle/0000.jpg 7", "train/star/0001.jpg 3"])
    assert ImageNetDataset(demo_root, relabel, relabel=True).labels == [1, 0]


def test_dataset_errors_name_file_and_line(demo_root, tmp_path):
    with pytest.raises(DatasetError, match="image_root folder not found"):
        ImageNetDataset(str(tmp_path / "nope"), str(tmp_path / "x.txt"))
    with pytest.raises(DatasetError, match="Label file not found"):
        ImageNetDataset(demo_root, str(tmp_path / "missing.txt"))
    no_label = _write_list(tmp_path / "a.txt", ["train/circle/0000.jpg 0", "train/circle/0001.jpg"])
    with pytest.raises(DatasetError, match=r"a.txt:2: .* has no label"):
        ImageNetDataset(demo_root, no_label)
    not_int = _write_list(tmp_path / "b.txt", ["train/circle/0000.jpg cat"])
    with pytest.raises(DatasetError, match=r"b.txt:1: label 'cat' is not an integer"):
        ImageNetDataset(demo_root, not_int)
    out_of_range = _write_list(tmp_path / "d.txt", ["train/circle/0000.jpg 0", "train/circle/0001.jpg 10"])
    with pytest.raises(DatasetError, match=r"d.txt:2: label 10 must be in \[0, 10\) \(Arch.class_num=10\)"):
        ImageNetDataset(demo_root, out_of_range, class_num=10)
    missing = _write_list(tmp_path / "e.txt", ["train/circle/0000.jpg 0", "train/circle/9999.jpg 0"])
    with pytest.raises(DatasetError, match=r"1 listed image file\(s\) do not exist.*e.txt:2 -> .*9999.jpg"):
        ImageNetDataset(demo_root, missing)
    empty = _write_list(tmp_path / "f.txt", ["", "  "])
    with pytest.raises(DatasetError, match="empty"):
        ImageNetDataset(demo_root, empty)


def test_corrupt_image_is_an_error_or_skipped(demo_root, tmp_path, caplog):
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "good.jpg")
    label = _write_list(tmp_path / "l.txt", ["bad.jpg 0", "good.jpg 1"])
    ops = [{"DecodeImage": None}, NORM]
    ds = ImageNetDataset(str(root), label, ops)
    with pytest.raises(DatasetError, match=r"bad.jpg: ImageDecodeError"):
        ds[0]
    skipping = ImageNetDataset(str(root), label, ops, skip_corrupt_images=True)
    image, target = skipping[0]
    assert int(target) == 1 and skipping.skipped == 1
    assert "1 skipped so far" in caplog.text


def test_image_folder_dataset(demo_root):
    ds = ImageFolderDataset(os.path.join(demo_root, "val"), [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}])
    assert ds.class_names == sorted(DEMO_CLASSES) and len(ds) == 300
    assert ds[0][0].shape == (3, 8, 8)
    with pytest.raises(DatasetError, match="class_num=3"):
        ImageFolderDataset(os.path.join(demo_root, "val"), class_num=3)


def test_batch_ops_give_soft_targets():
    np.random.seed(0)
    random.seed(0)
    batch = [(np.full((3, 8, 8), float(i), "float32"), np.int64(i)) for i in range(4)]
    for op in (MixupOperator(4, alpha=0.4), CutmixOperator(4, alpha=1.0)):
        out = op(batch)
        targets = np.stack([t for _, t in out])
        assert targets.shape == (4, 4)
        np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)
    sampler = OpSampler(4, MixupOperator={"alpha": 0.4, "prob": 0.0}, CutmixOperator={"alpha": 1.0, "prob": 0.0})
    out = sampler(batch)  # always the no-op: one-hot targets
    np.testing.assert_array_equal(np.stack([t for _, t in out]), np.eye(4, dtype="float32"))
    with pytest.raises(ValueError, match="sum to at most 1"):
        OpSampler(4, MixupOperator={"alpha": 0.4, "prob": 0.8}, CutmixOperator={"alpha": 1.0, "prob": 0.8})


def _loader_config(demo_root, label_file, batch_size=8, drop_last=False, **dataset):
    return {"DataLoader": {"Train": {
        "dataset": dict({"name": "ImageNetDataset", "image_root": demo_root, "cls_label_path": label_file,
                         "transform_ops": [{"DecodeImage": None}, {"RandCropImage": {"size": 16}},
                                           {"RandFlipImage": None}, NORM]}, **dataset),
        "sampler": {"name": "DistributedBatchSampler", "batch_size": batch_size, "drop_last": drop_last,
                    "shuffle": True},
        "loader": {"num_workers": 0}}}}


def test_loader_is_seeded_per_epoch_and_applies_batch_ops(demo_root):
    label = os.path.join(demo_root, "val_list.txt")
    cfg = _loader_config(demo_root, label, batch_transform_ops=[
        {"OpSampler": {"MixupOperator": {"alpha": 0.4, "prob": 0.5}, "CutmixOperator": {"alpha": 1.0, "prob": 0.5}}}])
    loader = build_dataloader(cfg, "Train", class_num=10, seed=3, rank=0, world_size=1)
    assert len(loader) == 300 // 8 + 1

    def first(epoch):
        # consume the whole epoch: with num_workers=0 paddle prefetches in a thread, and a half-read
        # iterator would keep drawing from the global random streams the next one uses
        loader.set_epoch(epoch)
        batches = [(images.numpy(), targets.numpy()) for images, targets in loader]
        return batches[0]
    a, ta = first(1)
    b, tb = first(1)
    c, _ = first(2)
    np.testing.assert_array_equal(a, b)  # the same epoch draws the same numbers
    np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a, c)
    assert a.shape == (8, 3, 16, 16) and ta.shape == (8, 10)


def test_loader_errors(demo_root):
    label = os.path.join(demo_root, "val_list.txt")
    with pytest.raises(DatasetError, match=r"batch_size=400 with drop_last=True, but the dataset has 300 images"):
        build_dataloader(_loader_config(demo_root, label, batch_size=400, drop_last=True), "Train", 10, 0, 0, 1)
    with pytest.raises(ConfigError, match="batch_size=0"):
        build_dataloader(_loader_config(demo_root, label, batch_size=0), "Train", 10, 0, 0, 1)


def _images_with_a_bad_one(tmp_path, count, bad, content):
    """`count` small JPEG files 0.jpg... (label 0) with file `bad` replaced by `content`; a loader
    config (batch 4) over them."""
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(count):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(root / f"{i}.jpg")
    (root / f"{bad}.jpg").write_bytes(content)
    label = _write_list(tmp_path / "l.txt", [f"{i}.jpg 0" for i in range(count)])
    return _loader_config(str(root), label, batch_size=4)


def test_worker_processes_report_the_bad_file(tmp_path):
    cfg = _images_with_a_bad_one(tmp_path, 4, 3, b"broken")
    cfg["DataLoader"]["Train"]["loader"]["num_workers"] = 1
    loader = build_dataloader(cfg, "Train", 1, 0, 0, 1)
    loader.set_epoch(1)
    with pytest.raises(Exception, match="3.jpg"):
        for _ in loader:
            pass


@pytest.mark.timeout(60, method="thread")  # a C++ queue wait ignores SIGALRM
@pytest.mark.parametrize("mode", ["Train", "Eval"])
def test_corrupt_image_without_workers_raises_instead_of_hanging(tmp_path, mode):
    """num_workers 0 (the default): paddle 3.3.1's reader thread died on the error and the consumer
    waited forever; the error must reach the loop, naming the file, and the reader must stop."""
    import threading
    cfg = _images_with_a_bad_one(tmp_path, 6, 4, b"\xff\xd8\xff truncated")
    cfg["DataLoader"]["Train"]["sampler"]["batch_size"] = 2
    cfg["DataLoader"][mode] = cfg["DataLoader"].pop("Train")
    del cfg["DataLoader"][mode]["loader"]  # the default: no worker processes
    loader = build_dataloader(cfg, mode, 1, 0, 0, 1)
    for epoch in (1, 2):  # a second pass fails the same way (no thread left blocked)
        loader.set_epoch(epoch)
        seen = 0
        with pytest.raises(DatasetError, match=r"4.jpg: ImageDecodeError"):
            for images, _ in loader:
                seen += int(images.shape[0])
        assert seen < 6
    assert not [t for t in threading.enumerate() if t.name == "ppbackbone-reader"]


def test_thread_reader_stops_when_the_consumer_breaks(demo_root):
    import threading
    loader = build_dataloader(_loader_config(demo_root, os.path.join(demo_root, "val_list.txt")), "Train", 10,
                              0, 0, 1)
    loader.set_epoch(1)
    batches = iter(loader)
    images, labels = next(batches)
    assert images.shape == [8, 3, 16, 16] and str(labels.dtype) == "paddle.int64"
    batches.close()
    assert not [t for t in threading.enumerate() if t.name == "ppbackbone-reader"]


@pytest.mark.timeout(60, method="thread")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_close_stops_a_half_read_epoch(demo_root, num_workers):
    """Loader.close() (the trainer calls it however a run ends) stops an epoch the consumer left in
    the middle, still referenced (as by a traceback): worker processes joined, reader thread ended.
    Left to the garbage collector, workers outlived their SIGTERM grace at exit and paddle reported them
    dead; a second close and a new epoch afterwards both work."""
    import multiprocessing
    import threading
    cfg = _loader_config(demo_root, os.path.join(demo_root, "val_list.txt"))
    cfg["DataLoader"]["Train"]["loader"]["num_workers"] = num_workers
    loader = build_dataloader(cfg, "Train", 10, 0, 0, 1)
    loader.set_epoch(1)
    others = set(multiprocessing.active_children())  # left by other tests of this process, if any
    batches = iter(loader)
    next(batches)
    assert len(set(multiprocessing.active_children()) - others) == num_workers
    assert bool([t for t in threading.enumerate() if t.name == "ppbackbone-reader"]) == (num_workers == 0)
    loader.close()
    loader.close()
    assert set(multiprocessing.active_children()) - others == set()
    assert not [t for t in threading.enumerate() if t.name == "ppbackbone-reader"]
    with pytest.raises(StopIteration):
        next(batches)
    loader.set_epoch(2)
    assert sum(1 for _ in loader) == len(loader)
    assert set(multiprocessing.active_children()) - others == set()


def test_multi_scale_sampler_and_dataset(demo_root):
    """PaddleClas's MultiScaleSampler + MultiScaleDataset: batches at several sizes, batch size scaled
    to keep the pixel count of first_bs images at the first scale."""
    label = os.path.join(demo_root, "val_list.txt")
    cfg = _loader_config(demo_root, label)
    cfg["DataLoader"]["Train"]["dataset"]["name"] = "MultiScaleDataset"
    cfg["DataLoader"]["Train"]["sampler"] = {"name": "MultiScaleSampler", "scales": [16, 24, 32], "first_bs": 18,
                                             "divided_factor": 8, "is_training": True}
    loader = build_dataloader(cfg, "Train", class_num=10, seed=0, rank=0, world_size=1)
    assert sorted(loader.batch_sampler.pairs) == [(16, 16, 18), (24, 24, 8), (32, 32, 4)]
    loader.set_epoch(1)
    shapes = {tuple(images.shape) for images, _ in loader}
    assert len(loader) == len(loader.batch_sampler.schedule)
    assert shapes <= {(18, 3, 16, 16), (8, 3, 24, 24), (4, 3, 32, 32)} and len(shapes) > 1
