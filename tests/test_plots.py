"""Pictures (ppbackbone.engine.plots): each function writes a PNG that decodes, has the expected size
and is not blank; without matplotlib a requested picture is one clear error and a side picture is
skipped with a notice."""
import builtins
import os
import sys

import numpy as np
import pytest
from PIL import Image

from ppbackbone.engine import plots
from ppbackbone.errors import UserError

matplotlib = pytest.importorskip("matplotlib", reason="matplotlib (ppbackbone[plot]) is not installed")


def check_png(path, min_size=(200, 150)):
    """Assert `path` is a PNG that decodes, at least `min_size` pixels, with more than one colour."""
    assert os.path.isfile(path), f"{path} was not written"
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as im:
        im.load()
        array = np.asarray(im.convert("RGB"), dtype="float64")
    assert array.shape[1] >= min_size[0] and array.shape[0] >= min_size[1], f"{path}: {array.shape}"
    assert array.var() > 0, f"{path} is blank"
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp-")]
    assert not leftovers, f"temporary files left: {leftovers}"
    return array


def _history(epochs=3, iters=5):
    return [{"epoch": e, "iter": i, "step": (e - 1) * iters + i + 1, "lr": 0.1 * (1 - ((e - 1) * iters + i) / 20),
             "loss": 2.0 / ((e - 1) * iters + i + 1)} for e in range(1, epochs + 1) for i in range(iters)]


def test_training_curves(tmp_path):
    epochs = [{"epoch": e, "train": {"loss": 1.0 / e, "top1": 0.2 * e},
               "eval": {"loss": 1.2 / e, "top1": 0.15 * e, "top5": 0.3 * e} if e != 2 else {}} for e in (1, 2, 3)]
    check_png(plots.training_curves(_history(), epochs, str(tmp_path / "curves.png")))


def test_training_curves_before_any_evaluation(tmp_path):
    """The first call happens after epoch 1: a single point per series must still draw."""
    check_png(plots.training_curves(_history(1), [{"epoch": 1, "train": {"loss": 0.5}, "eval": {}}],
                                    str(tmp_path / "curves.png")))


def test_confusion_matrix_names_classes(tmp_path):
    matrix = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 6]])
    path = check_png(plots.confusion_matrix(matrix, ["circle", "square", "star"], str(tmp_path / "cm.png")))
    assert path is not None


def test_recall_at_k_curve(tmp_path):
    check_png(plots.recall_at_k_curve([0.5, 0.7, 0.8, 0.85, 0.9, 0.92], str(tmp_path / "recall.png")))
    check_png(plots.recall_at_k_curve({"a": [0.4, 0.6], "b": [0.5, 0.9]}, str(tmp_path / "two.png")))


def test_latency_bars(tmp_path):
    rows = [{"model": "hgnetv2_b0", "implementation": "ppbackbone", "variant": "fused",
             "cells": {("paddle", "fp32"): (3.1, 2.9), ("onnxruntime", "fp32"): (2.5, 2.4),
                       ("paddle", "bf16"): (2.0, 1.8)}},
            {"model": "hgnetv2_b0", "implementation": "PaddleClas", "variant": "",
             "cells": {("paddle", "fp32"): (3.4, 3.2)}}]
    check_png(plots.latency_bars(rows, str(tmp_path / "bars.png")))
    with pytest.raises(UserError, match="no latency figures"):
        plots.latency_bars([], str(tmp_path / "none.png"))


def test_accuracy_vs_latency(tmp_path):
    points = [{"name": "B0", "family": "PP-HGNetV2", "top1": 0.77, "ms": 3.0},
              {"name": "B1", "family": "PP-HGNetV2", "top1": 0.79, "ms": 4.0},
              {"name": "x1_0", "family": "PP-LCNet", "top1": 0.71, "ms": 1.5}]
    check_png(plots.accuracy_vs_latency(points, str(tmp_path / "chart.png"), "top-1 vs latency", note="machine"))
    with pytest.raises(UserError, match="positive finite"):
        plots.accuracy_vs_latency([dict(points[0], ms=float("nan"))], str(tmp_path / "bad.png"), "t")
    assert not (tmp_path / "bad.png").exists()


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make `import matplotlib` fail as it does where the [plot] extra is not installed."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_without_matplotlib_a_requested_picture_is_one_error(no_matplotlib, tmp_path):
    assert not plots.plots_available()
    with pytest.raises(plots.PlotUnavailable, match=r"pip install \"ppbackbone\[plot\]\""):
        plots.recall_at_k_curve([0.5, 0.7], str(tmp_path / "r.png"))
    assert not os.listdir(tmp_path)


def _tool(name):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tools"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


# tools/benchmark.py latency --plot on a real run: tests/test_export.py::test_latency_benchmark_tool_runs


def test_benchmark_plot_without_matplotlib_fails_before_timing(no_matplotlib, tmp_path, capsys):
    from ppbackbone.cli import main_guard
    status = main_guard(_tool("benchmark").main, ["latency", "--model", "pplcnet_x0_25", "--plot",
                                                  str(tmp_path / "x.png")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.strip().splitlines() == [
        'Error: --plot needs matplotlib, which is not installed: pip install "ppbackbone[plot]" (matplotlib)']
    assert "timing" not in captured.out


# ------------------------------------------------------------------ pictures of real runs (trainer, tools/eval.py)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("circle", "hstripes", "vstripes")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Label files over the demo data: 3 classes, 16 train and 8 val/gallery images and 4 queries each."""
    from ppbackbone.data import ensure_demo_dataset
    root = ensure_demo_dataset()
    out = tmp_path_factory.mktemp("lists")
    rows = {"train": ("train", 16), "val": ("val", 8), "query": ("train", 4)}
    files = {}
    for split, (folder, count) in rows.items():
        first = 100 if split == "query" else 0
        files[split] = str(out / f"{split}.txt")
        with open(files[split], "w") as f:
            f.writelines(f"{folder}/{name}/{first + i:04d}.jpg {label}\n"
                         for label, name in enumerate(CLASSES) for i in range(count))
    return root, files


def _config(small_data, out, path):
    """configs/quickstart.yaml shrunk to 3 classes at 32x32, 2 epochs, written to `path`."""
    import yaml
    from ppbackbone.config import load_config
    root, files = small_data
    cfg = load_config(os.path.join(ROOT, "configs", "quickstart.yaml"), [
        f"Global.output_dir={out}", "Global.epochs=2", "Global.save_interval=2", "Arch.class_num=3",
        "DataLoader.Train.loader.num_workers=0", "DataLoader.Eval.loader.num_workers=0",
        "DataLoader.Train.sampler.batch_size=16", "DataLoader.Eval.sampler.batch_size=24"])
    for mode, split in (("Train", "train"), ("Eval", "val")):
        ds = cfg["DataLoader"][mode]["dataset"]
        ds.pop("split")
        ds.update(name="ImageNetDataset", image_root=root, cls_label_path=files[split])
        for op in ds["transform_ops"]:
            name, params = next(iter(op.items()))
            if name in ("RandCropImage", "CropImage"):
                params["size"] = 32
            if name == "ResizeImage":
                params["resize_short"] = 36
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return cfg


@pytest.fixture(scope="module")
def short_run(small_data, tmp_path_factory):
    from ppbackbone.engine import Trainer
    out = tmp_path_factory.mktemp("run")
    cfg = _config(small_data, str(out), str(out / "config.yaml"))
    Trainer(cfg).train()
    return {"config": str(out / "config.yaml"), "dir": str(out / "hgnetv2_b0")}


@pytest.mark.timeout(300)
def test_training_writes_curves_beside_its_checkpoints(short_run):
    assert os.path.exists(os.path.join(short_run["dir"], "latest.pdparams"))
    check_png(os.path.join(short_run["dir"], "curves.png"), min_size=(800, 250))


@pytest.mark.timeout(300)
def test_training_without_matplotlib_says_so_once_and_goes_on(small_data, tmp_path, no_matplotlib, capfd):
    from ppbackbone.engine import Trainer
    cfg = _config(small_data, str(tmp_path), str(tmp_path / "config.yaml"))
    Trainer(cfg).train()  # 2 epochs, 2 evaluations
    run_dir = tmp_path / "hgnetv2_b0"
    assert (run_dir / "latest.pdparams").exists() and not (run_dir / "curves.png").exists()
    out = capfd.readouterr()
    notice = f'{run_dir / "curves.png"} not written: matplotlib is not installed (pip install "ppbackbone[plot]"'
    assert (out.out + out.err).count(notice) == 1


@pytest.mark.timeout(300)
def test_eval_tool_draws_the_confusion_matrix(short_run, tmp_path, capsys):
    from ppbackbone.cli import run
    path = str(tmp_path / "cm.png")
    status = run("eval", "eval", ["-c", short_run["config"], "-o",
                                  f"Global.pretrained_model={os.path.join(short_run['dir'], 'latest')}",
                                  "--confusion-matrix", path])
    assert status == 0, capsys.readouterr().err
    assert f"Wrote {path}" in capsys.readouterr().out
    check_png(path)
    # a retrieval picture asked of a classifier: one error before any work
    assert run("eval", "eval", ["-c", short_run["config"], "--recall-curve", path]) == 2
    assert "Error: --recall-curve is for retrieval evaluation" in capsys.readouterr().err


def test_recall_at_k_curve_agrees_with_recallk():
    from ppbackbone.engine.metrics import Recallk
    from ppbackbone.engine.retrieval import recall_at_k_curve
    rng = np.random.default_rng(0)
    gallery, query = rng.standard_normal([30, 8]), rng.standard_normal([12, 8])
    g_label, q_label = rng.integers(0, 4, 30), rng.integers(0, 5, 12)  # class 4: queries without a match
    curve = recall_at_k_curve(query, q_label, gallery, g_label, block_size=5)
    assert curve.shape == (30,) and np.all(np.diff(curve) >= 0) and curve[-1] == pytest.approx(1.0)
    expected = Recallk(topk=[1, 3, 10]).compute(query @ gallery.T, q_label, g_label)
    assert [curve[0], curve[2], curve[9]] == pytest.approx([expected["recall1"], expected["recall3"],
                                                            expected["recall10"]])


@pytest.mark.timeout(300)
def test_eval_tool_draws_the_recall_curve(small_data, tmp_path, capsys):
    """Retrieval evaluation of a small RecModel (initial weights: the picture, not the accuracy, is checked)."""
    import yaml
    from ppbackbone.cli import run
    from ppbackbone.config import load_config
    root, files = small_data
    cfg = load_config(os.path.join(ROOT, "configs", "recognition", "quickstart_retrieval.yaml"),
                      [f"Global.output_dir={tmp_path}", "Global.image_shape=[3,32,32]"])
    cfg["Arch"] = {"name": "RecModel", "Backbone": {"name": "pplcnet_x0_25", "class_expand": 32},
                   "BackboneStopLayer": {"name": "flatten"}, "Neck": {"name": "BNNeck", "num_features": 32},
                   "Head": {"name": "FC", "embedding_size": 32, "class_num": 3, "bias_attr": False}}
    for part, split in (("Gallery", "val"), ("Query", "query")):
        section = cfg["DataLoader"]["Eval"][part]
        section["loader"]["num_workers"] = 0
        section["dataset"].pop("split", None)
        section["dataset"].update(name="ImageNetDataset", image_root=root, cls_label_path=files[split])
        for op in section["dataset"]["transform_ops"]:
            name, params = next(iter(op.items()))
            if name == "ResizeImage":
                params["size"] = 32
    with open(tmp_path / "retrieval.yaml", "w") as f:
        yaml.safe_dump(cfg, f)
    path = str(tmp_path / "recall.png")
    assert run("eval", "eval", ["-c", str(tmp_path / "retrieval.yaml"), "--recall-curve", path]) == 0, \
        capsys.readouterr().err
    assert f"Wrote {path}" in capsys.readouterr().out
    check_png(path)
