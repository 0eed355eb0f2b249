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


@pytest.mark.timeout(120)
def test_benchmark_latency_plot(tmp_path, capsys):
    """tools/benchmark.py latency --plot draws the bars of a real (tiny) run."""
    path = str(tmp_path / "latency.png")
    assert _tool("benchmark").main(["latency", "--model", "pplcnet_x0_25", "--no-reference", "--runtimes", "paddle",
                                    "--precisions", "fp32", "--image-size", "64", "--warmup", "1", "--runs", "2",
                                    "--rounds", "1", "--plot", path]) == 0
    assert f"Wrote {path}" in capsys.readouterr().out
    check_png(path)


def test_benchmark_plot_without_matplotlib_fails_before_timing(no_matplotlib, tmp_path, capsys):
    from ppbackbone.cli import main_guard
    status = main_guard(_tool("benchmark").main, ["latency", "--model", "pplcnet_x0_25", "--plot",
                                                  str(tmp_path / "x.png")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.strip().splitlines() == [
        'Error: --plot needs matplotlib, which is not installed: pip install "ppbackbone[plot]" (matplotlib)']
    assert "timing" not in captured.out
