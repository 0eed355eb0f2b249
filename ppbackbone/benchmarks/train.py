"""Training throughput: images/s of the model step alone (synthetic tensors) vs the full pipeline
(real JPEG files decoded and augmented by the data loader's worker processes), and vs the PaddleClas
implementation of the same model in the same loop.

    python -m ppbackbone.benchmarks.train --model hgnetv2_b0 --image-size 224 --batch-size 16
    (tools/benchmark.py exposes it as the `train` mode: MODES += [add_train])

The loop is the Trainer's inner step: forward, cross entropy, backward, Momentum step with L2 decay,
clear_grad. JPEGs are written once at ImageNet-like size (500x375) from the demo dataset's drawings;
the pipeline is the recipes' train transforms (DecodeImage, RandCropImage, RandFlipImage,
NormalizeImage; `augment=True` adds TimmAutoAugment and RandomErasing). Variants are measured in
interleaved rounds (this machine is shared); each figure is the median over rounds.
"""
import importlib
import json
import os
import site
import statistics
import sys
import tempfile
import time

import numpy as np
import paddle

from ..cli import main_guard, new_parser, non_negative_int, positive_int

__all__ = ["train_throughput", "compare_train_throughput", "write_benchmark_jpegs", "format_markdown", "add_train"]

_TRAIN_OPS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
              {"RandCropImage": {"size": 224, "interpolation": "bicubic", "backend": "pil"}},
              {"RandFlipImage": {"flip_code": 1}},
              {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                  "order": ""}}]
_AUGMENT_OPS = [{"TimmAutoAugment": {"config_str": "rand-m7-mstd0.5-inc1", "interpolation": "bicubic",
                                     "img_size": 224}},
                {"RandomErasing": {"EPSILON": 0.25, "sl": 0.02, "sh": "1.0/3.0", "r1": 0.3, "attempt": 10,
                                   "use_log_aspect": True, "mode": "pixel"}}]


def write_benchmark_jpegs(folder, count=128, size=(500, 375)):
    """`count` JPEGs of ImageNet-like size (the demo drawings, upscaled, with noise) and a PaddleClas
    label file; returns (image_root, label_file)."""
    from PIL import Image
    from ..data.demo import DEMO_CLASSES, _draw
    os.makedirs(folder, exist_ok=True)
    label_file = os.path.join(folder, "list.txt")
    if os.path.isfile(label_file):
        return folder, label_file
    rng = np.random.RandomState(0)
    lines = []
    for i in range(count):
        label = i % len(DEMO_CLASSES)
        img = np.asarray(_draw(label, rng).resize(size, Image.BICUBIC)).astype(np.float32)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i:04d}.jpg"), "JPEG", quality=90)
        lines.append(f"{i:04d}.jpg {label}\n")
    with open(label_file, "w") as f:
        f.writelines(lines)
    return folder, label_file


def _paddleclas_model(name, class_num):
    try:
        module = importlib.import_module("ppcls.arch.backbone")
    except ImportError:
        for base in site.getsitepackages() + [site.getusersitepackages()]:
            candidate = os.path.join(base, "paddleclas")
            if os.path.isdir(os.path.join(candidate, "ppcls")) and candidate not in sys.path:
                sys.path.append(candidate)
        module = importlib.import_module("ppcls.arch.backbone")
    return getattr(module, name)(class_num=class_num)


def _build(model, impl, class_num):
    if impl == "paddleclas":
        return _paddleclas_model(model, class_num)
    from ..arch import create_model
    return create_model(model, num_classes=class_num)


class _Runner:
    """One model + optimizer (+ loader) kept across rounds, so each round times steady-state steps."""

    def __init__(self, model, impl, data, batch_size, image_size, num_workers, augment, class_num, jpeg_dir):
        paddle.seed(0)
        self.net = _build(model, impl, class_num)
        self.net.train()
        self.opt = paddle.optimizer.Momentum(0.01, 0.9, parameters=self.net.parameters(),
                                             weight_decay=paddle.regularizer.L2Decay(2e-5))
        self.batch_size, self.data = batch_size, data
        if data == "synthetic":
            rng = np.random.RandomState(0)
            self.x = paddle.to_tensor(rng.randn(batch_size, 3, image_size, image_size).astype("float32"))
            self.y = paddle.to_tensor(rng.randint(0, class_num, (batch_size,)).astype("int64"))
        else:
            from ..data.loader import build_dataloader
            root, label_file = write_benchmark_jpegs(jpeg_dir)
            crop = {"RandCropImage": dict(_TRAIN_OPS[1]["RandCropImage"], size=image_size)}
            ops = [_TRAIN_OPS[0], crop, _TRAIN_OPS[2], _TRAIN_OPS[3]]
            if augment:  # the recipes' order: RandAugment on uint8 before normalising, erasing after
                autoaug = {"TimmAutoAugment": dict(_AUGMENT_OPS[0]["TimmAutoAugment"], img_size=image_size)}
                ops = ops[:3] + [autoaug, ops[3], _AUGMENT_OPS[1]]
            cfg = {"DataLoader": {"Train": {
                "dataset": {"name": "ImageNetDataset", "image_root": root, "cls_label_path": label_file,
                            "transform_ops": ops},
                "sampler": {"name": "DistributedBatchSampler", "batch_size": batch_size, "drop_last": True,
                            "shuffle": True},
                "loader": {"num_workers": num_workers, "use_shared_memory": True}}}}
            self.loader = build_dataloader(cfg, "Train", class_num=class_num, seed=0, rank=0, world_size=1)
            self.epoch = 0
            self.iterator = None

    def _batch(self):
        if self.data == "synthetic":
            return self.x, self.y
        while True:
            if self.iterator is None:
                self.epoch += 1
                self.loader.set_epoch(self.epoch)
                self.iterator = iter(self.loader)
            try:
                return next(self.iterator)
            except StopIteration:
                self.iterator = None

    def step(self):
        x, y = self._batch()
        loss = paddle.nn.functional.cross_entropy(self.net(x), y.reshape([-1, 1]))
        loss.backward()
        self.opt.step()
        self.opt.clear_grad()
        return float(loss)

    def images_per_second(self, steps):
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return steps * self.batch_size / (time.perf_counter() - start)


def train_throughput(model="hgnetv2_b0", impl="ppbackbone", data="synthetic", batch_size=16, image_size=224,
                     steps=8, warmup=2, num_workers=1, augment=False, class_num=1000, jpeg_dir=None):
    """Images/s of the training step of one variant (`impl` ppbackbone or paddleclas, with `model` a
    PaddleClas builder name for the latter; `data` synthetic or jpeg)."""
    jpeg_dir = jpeg_dir or os.path.join(tempfile.gettempdir(), "ppbackbone-bench-jpegs")
    runner = _Runner(model, impl, data, batch_size, image_size, num_workers, augment, class_num, jpeg_dir)
    for _ in range(warmup):
        runner.step()
    return runner.images_per_second(steps)


def compare_train_throughput(model="hgnetv2_b0", reference="PPHGNetV2_B0", batch_size=16, image_size=224, steps=6,
                             warmup=2, rounds=3, num_workers=1, augment=False, class_num=1000, jpeg_dir=None):
    """Median images/s over interleaved rounds for: ours on synthetic tensors, ours on the JPEG
    pipeline, the PaddleClas model on synthetic tensors (and on the pipeline). Returns a dict."""
    jpeg_dir = jpeg_dir or os.path.join(tempfile.gettempdir(), "ppbackbone-bench-jpegs")
    variants = {"ours_step": (model, "ppbackbone", "synthetic"), "ours_pipeline": (model, "ppbackbone", "jpeg")}
    if reference:
        variants["ref_step"] = (reference, "paddleclas", "synthetic")
        variants["ref_pipeline"] = (reference, "paddleclas", "jpeg")
    runners = {k: _Runner(m, impl, d, batch_size, image_size, num_workers, augment, class_num, jpeg_dir)
               for k, (m, impl, d) in variants.items()}
    for runner in runners.values():
        for _ in range(warmup):
            runner.step()
    figures = {k: [] for k in runners}
    for _ in range(rounds):
        for key, runner in runners.items():
            figures[key].append(runner.images_per_second(steps))
    result = {"model": model, "reference": reference, "batch_size": batch_size, "image_size": image_size,
              "steps": steps, "rounds": rounds, "num_workers": num_workers, "augment": augment,
              "cpu_count": os.cpu_count(), "device": paddle.device.get_device(),
              "images_per_second": {k: statistics.median(v) for k, v in figures.items()},
              "all_rounds": figures}
    ips = result["images_per_second"]
    result["pipeline_cost"] = 1.0 - ips["ours_pipeline"] / ips["ours_step"]
    if reference:
        result["ratio_step"] = ips["ours_step"] / ips["ref_step"]
        result["ratio_pipeline"] = ips["ours_pipeline"] / ips["ref_pipeline"]
    return result


def format_markdown(result):
    ips = result["images_per_second"]
    rows = [f"| variant | images/s (median of {result['rounds']} rounds) |", "|---|---|",
            f"| {result['model']} (ppbackbone), model step on synthetic tensors | {ips['ours_step']:.1f} |",
            f"| {result['model']} (ppbackbone), full pipeline: JPEG decode + augment, "
            f"{result['num_workers']} worker(s) | {ips['ours_pipeline']:.1f} |"]
    if result.get("reference"):
        rows += [f"| {result['reference']} (PaddleClas), model step | {ips['ref_step']:.1f} |",
                 f"| {result['reference']} (PaddleClas), full pipeline | {ips['ref_pipeline']:.1f} |"]
    rows.append("")
    rows.append(f"pipeline cost: {100 * result['pipeline_cost']:.1f}% of the model-step throughput")
    if result.get("reference"):
        rows.append(f"ratio ppbackbone / PaddleClas: model step {result['ratio_step']:.3f}, "
                    f"pipeline {result['ratio_pipeline']:.3f}")
    return "\n".join(rows)


def add_train(subparsers):
    """Register the `train` mode on tools/benchmark.py's subparsers."""
    p = subparsers.add_parser("train", help="training images/s: model step vs JPEG pipeline, vs PaddleClas")
    _arguments(p)
    p.set_defaults(func=run_train)


def _arguments(p):
    p.add_argument("--model", default="hgnetv2_b0")
    p.add_argument("--reference", default="PPHGNetV2_B0", help="PaddleClas builder name ('' for none)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--image-size", type=positive_int, default=224)
    p.add_argument("--steps", type=positive_int, default=6, help="timed steps per round and variant")
    p.add_argument("--warmup", type=non_negative_int, default=2)
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--num-workers", type=non_negative_int, default=1)
    p.add_argument("--augment", action="store_true", help="add TimmAutoAugment + RandomErasing")
    p.add_argument("--json", help="also write the figures to this file")


def run_train(args):
    from ..cli import check_model_names
    from .latency import ReferenceUnavailable, check_references
    check_model_names([args.model])
    if args.reference:  # before any work: PaddleClas importable, the builder known
        try:
            check_references([], [args.reference])
        except ReferenceUnavailable as err:
            raise ReferenceUnavailable(f"{err}, or pass --reference '' to time ppbackbone alone") from None
    result = compare_train_throughput(args.model, args.reference or None, args.batch_size, args.image_size,
                                      args.steps, args.warmup, args.rounds, args.num_workers, args.augment)
    print(format_markdown(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


def main(argv=None):
    parser = new_parser(__doc__)
    _arguments(parser)
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_guard(main))
