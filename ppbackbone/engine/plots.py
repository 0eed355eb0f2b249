"""Pictures: one function per figure, each writing a PNG atomically (a temp file renamed on success).

matplotlib is optional (`pip install "ppbackbone[plot]"`) and imported only when a picture is drawn,
with the Agg backend (no display needed). A picture the user asked for (a tool flag) without
matplotlib is a `PlotUnavailable` error, one line; pictures drawn on the side (a training run's
curves.png) are skipped with one notice instead (`plots_available()`).
"""
import math

import numpy as np

from ..errors import UserError, warn_once
from ..weights.io import atomic_write

__all__ = ["PlotUnavailable", "plots_available", "require_plots", "skip_notice", "TrainingCurves", "training_curves", "confusion_matrix",
           "recall_at_k_curve", "latency_bars", "accuracy_vs_latency"]

INSTALL_HINT = 'pip install "ppbackbone[plot]" (matplotlib)'


class PlotUnavailable(UserError, ImportError):
    """A picture was asked for but matplotlib is not installed."""


def plots_available():
    """True when matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def require_plots(what):
    """Raise PlotUnavailable now (before any long work) when `what` cannot be drawn."""
    if not plots_available():
        raise PlotUnavailable(f"{what} needs matplotlib, which is not installed: {INSTALL_HINT}")


def skip_notice(what):
    """Say once per process that `what` is not drawn because matplotlib is missing."""
    warn_once(f"plots:{what}", f"{what} not written: matplotlib is not installed ({INSTALL_HINT})")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"drawing a picture needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, rect=(0, 0, 1, 1)):
    plt = _pyplot()
    try:
        fig.tight_layout(rect=rect)
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=fig.dpi)
    finally:
        plt.close(fig)
    return path


def training_curves(history, epochs, path):
    """Loss, learning rate and metrics of a training run.

    history: per optimizer iteration, dicts with 'step', 'loss', 'lr' (the trainer's `history`);
    epochs: per finished epoch, {'epoch': n, 'train': {name: value}, 'eval': {name: value}}
    ('eval' may be empty). Writes `path` (PNG) and returns it."""
    plt = _pyplot()
    fig, (ax_loss, ax_lr, ax_metric) = plt.subplots(1, 3, figsize=(13, 3.8), dpi=80)
    steps = [h["step"] for h in history]
    if history:
        ax_loss.plot(steps, [h["loss"] for h in history], color="0.75", lw=0.8, label="train (iteration)")
        ax_lr.plot(steps, [h["lr"] for h in history], color="tab:purple")
    per_epoch_step = _epoch_end_steps(history)
    for source, style in (("train", "-o"), ("eval", "--s")):
        xs = [per_epoch_step.get(e["epoch"], e["epoch"]) for e in epochs if "loss" in e.get(source, {})]
        ys = [e[source]["loss"] for e in epochs if "loss" in e.get(source, {})]
        if xs:
            ax_loss.plot(xs, ys, style, ms=3, label=f"{source} (epoch mean)")
        names = sorted({k for e in epochs for k in e.get(source, {}) if "loss" not in k.lower()})
        for name in names:
            points = [(e["epoch"], e[source][name]) for e in epochs if name in e.get(source, {})]
            ax_metric.plot(*zip(*points), style, ms=3, label=f"{source} {name}")
    ax_loss.set(title="loss", xlabel="iteration")
    ax_lr.set(title="learning rate", xlabel="iteration")
    ax_metric.set(title="metrics", xlabel="epoch")
    from matplotlib.ticker import MaxNLocator
    ax_metric.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    for ax in (ax_loss, ax_metric):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in (ax_loss, ax_lr, ax_metric):
        ax.grid(alpha=0.3)
    return _save(fig, path)


class TrainingCurves:
    """A run's curves.png: keeps each epoch's train and eval figures and redraws the picture after each
    evaluation (without matplotlib: one notice, nothing drawn, training goes on)."""

    def __init__(self, path, enabled=True):
        self.path, self.enabled, self.epochs = path, enabled, []

    def epoch_done(self, epoch, train, evaluation, history):
        """Record epoch `epoch` ({name: value} of training and of its evaluation, {} when none ran);
        after an evaluation, redraw from `history` (per-iteration step/loss/lr). Returns the path or None."""
        self.epochs.append({"epoch": epoch, "train": dict(train or {}), "eval": dict(evaluation or {})})
        if not (self.enabled and evaluation):
            return None
        if not plots_available():
            skip_notice(self.path)
            return None
        return training_curves(history, self.epochs, self.path)


def _epoch_end_steps(history):
    """{epoch: step of its last iteration}, to draw per-epoch means on the iteration axis."""
    out = {}
    for h in history:
        if "epoch" in h:
            out[h["epoch"]] = h["step"]
    return out


def confusion_matrix(matrix, names, path, title="confusion matrix"):
    """Rows: true class, columns: predicted class, cells: counts (colour: share of the row).
    names: class names by index (None: indices). Writes `path` (PNG) and returns it."""
    plt = _pyplot()
    matrix = np.asarray(matrix, dtype="int64")
    n = matrix.shape[0]
    names = [str(names[i]) if names and i < len(names) else str(i) for i in range(n)]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(matrix / matrix.sum(1, keepdims=True))
    side = min(max(4.0, 0.45 * n + 2), 40.0)
    fig, ax = plt.subplots(figsize=(side, side * 0.9), dpi=80)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = np.arange(n)
    ax.set_xticks(ticks, names, rotation=60 if n > 4 else 0, ha="right" if n > 4 else "center", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} ({matrix.sum()} images, accuracy {accuracy:.3f})")
    return _save(fig, path)


def recall_at_k_curve(recalls, path, title="Recall@k"):
    """recalls: Recall@k for k = 1..K (index 0 is k=1), or {label: such a list} for several curves.
    Writes `path` (PNG) and returns it."""
    plt = _pyplot()
    curves = recalls if isinstance(recalls, dict) else {"": recalls}
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=80)
    for label, values in curves.items():
        ks = np.arange(1, len(values) + 1)
        ax.plot(ks, values, "-o" if len(values) <= 30 else "-", ms=3, label=label or None)
        for k in (1, 5):
            if k <= len(values):
                ax.annotate(f"R@{k} {values[k - 1]:.3f}", (k, values[k - 1]), textcoords="offset points",
                            xytext=(6, -12), fontsize=8)
    ax.set(xlabel="k (gallery items returned)", ylabel="recall", ylim=(0, 1.02), title=title)
    ax.set_xscale("log" if len(next(iter(curves.values()))) > 50 else "linear")
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def latency_bars(rows, path, title="latency, batch 1"):
    """rows: [{'model', 'implementation', 'variant', 'cells': {(runtime, precision): (median_ms, min_ms)}}]
    (tools/benchmark.py latency's result). One group of bars per model row, one bar per runtime x
    precision, the median as the bar and the minimum as a tick. Writes `path` (PNG) and returns it."""
    plt = _pyplot()
    columns = list(dict.fromkeys(c for row in rows for c in row["cells"]))
    if not rows or not columns:
        raise UserError("no latency figures to draw (the benchmark timed nothing)")
    labels = [f"{r['model']}\n{r['implementation']}" + (f" {r['variant']}" if r["variant"] else "") for r in rows]
    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) * max(1, len(columns) / 3) + 2), 4.2), dpi=80)
    colors = plt.get_cmap("tab10")
    drawn = set()
    for i, row in enumerate(rows):
        present = [c for c in columns if c in row["cells"]]  # centred on the row's tick
        for k, column in enumerate(present):
            x = i + (k - (len(present) - 1) / 2) * width
            j = columns.index(column)
            median, low = row["cells"][column]
            ax.bar(x, median, width * 0.95, color=colors(j % 10),
                   label=None if column in drawn else f"{column[0]} {column[1]}")
            ax.scatter([x], [low], marker="_", color="black", s=40, zorder=3)
            drawn.add(column)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set(ylabel="ms (bar: median, tick: min)", title=title)
    ax.legend(fontsize=7, ncol=min(len(columns), 4))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def accuracy_vs_latency(points, path, title, note=""):
    """points: [{'name', 'family', 'top1', 'ms'}]; one marker per model, one colour per family, the
    latency axis logarithmic. `note` is printed under the axes (the machine and the source).
    Writes `path` (PNG) and returns it."""
    if not points or not all(math.isfinite(p["ms"]) and p["ms"] > 0 for p in points):
        raise UserError(f"accuracy_vs_latency needs positive finite latencies, got {[p.get('ms') for p in points]}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=80)
    families = list(dict.fromkeys(p["family"] for p in points))
    colors = plt.get_cmap("tab10")
    for i, family in enumerate(families):
        mine = sorted((p for p in points if p["family"] == family), key=lambda p: p["ms"])
        ax.plot([p["ms"] for p in mine], [p["top1"] for p in mine], "-o", ms=4, color=colors(i % 10), label=family)
        for p in mine:
            ax.annotate(p["name"], (p["ms"], p["top1"]), textcoords="offset points", xytext=(4, 3), fontsize=6.5)
    ax.set_xscale("log")
    ax.set(xlabel="latency, ms (log scale)", ylabel="ImageNet top-1 (published)", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    if note:
        fig.text(0.01, 0.01, note, fontsize=6.5, va="bottom", wrap=True)
    return _save(fig, path, rect=(0, 0.1 if note else 0, 1, 1))
