"""Metrics under PaddleClas's names.

Classification metrics (`TopkAcc`, `TprAtFpr`, `ClassPrecisionRecall`) are fed batch by batch
(`update(predicts, label)`) and keep exact counts: `state()` is an int64 array that sums across
ranks, `load_state()` puts the sum back, `accumulate()` gives the figures.

Retrieval metrics (`Recallk`, `mAP`; PaddleClas's eval_mode retrieval) take the whole
query x gallery similarity matrix: `compute(similarity, query_label, gallery_label, keep_mask=None)`
-> dict, as PaddleClas's `forward`. `METRIC_KIND` says which kind a name is.
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from ..errors import ConfigError, check_op_list, warn_once

__all__ = ["TopkAcc", "DistillationTopkAcc", "TprAtFpr", "ClassPrecisionRecall", "Recallk", "mAP", "build_metrics", "METRICS",
           "METRIC_KIND", "retrieval_ranking"]


def _logits(predicts):
    if isinstance(predicts, dict):
        if predicts.get("logits") is None:
            raise ValueError(f"classification metrics need logits; the model output has only {sorted(predicts)}")
        return predicts["logits"]
    return predicts


def _hard_labels(label, class_num):
    if label.ndim == 2 and label.shape[-1] == class_num and class_num > 1 and label.dtype != paddle.int64:
        label = paddle.argmax(label, axis=-1)
    return label.reshape([-1]).astype("int64")


class TopkAcc:
    """Top-k accuracy for each k in `topk`. A k larger than the number of classes is clipped to it
    (with one warning), since such a top-k is always 1.0. Soft targets count their argmax class."""

    def __init__(self, topk=(1, 5)):
        topk = [topk] if isinstance(topk, int) else list(topk)
        if not topk or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in topk):
            raise ValueError(f"TopkAcc.topk must be a positive int or a list of them, got {topk!r}")
        self.topk = topk
        self._clipped = None
        self.reset()

    def reset(self):
        self.correct = {k: 0 for k in self.topk}
        self.count = 0

    def _ks(self, class_num):
        if self._clipped is None:
            self._clipped = {k: min(k, class_num) for k in self.topk}
            over = [k for k in self.topk if k > class_num]
            if over:
                warn_once(f"topk>{class_num}", f"TopkAcc: top-{over} exceeds the {class_num} classes; "
                          f"reported as top-{class_num} (always 1.0 by definition)")
        return self._clipped

    def update(self, predicts, label):
        """Count the batch; returns the batch's {top{k}: accuracy}."""
        logits = _logits(predicts)
        class_num = logits.shape[-1]
        label = _hard_labels(label, class_num)
        ks = self._ks(class_num)
        kmax = max(ks.values())
        pred = paddle.topk(logits.astype("float32"), k=kmax, axis=-1)[1]
        hits = (pred == label.unsqueeze(-1)).astype("int64")
        batch = {}
        n = int(label.shape[0])
        for k in self.topk:
            c = int(hits[:, :ks[k]].sum())
            self.correct[k] += c
            batch[f"top{k}"] = c / max(n, 1)
        self.count += n
        return batch

    def state(self):
        """[correct_k..., count] as an int64 array (for all-reduce across ranks)."""
        return np.array([self.correct[k] for k in self.topk] + [self.count], dtype="int64")

    def load_state(self, array):
        for i, k in enumerate(self.topk):
            self.correct[k] = int(array[i])
        self.count = int(array[-1])

    def accumulate(self):
        return {f"top{k}": self.correct[k] / max(self.count, 1) for k in self.topk}


class DistillationTopkAcc(TopkAcc):
    """TopkAcc of one model of a DistillationModel (`model_key`, e.g. Student; `feature_key` picks
    an entry of that model's output), PaddleClas's DistillationTopkAcc. Given one model's output
    (evaluation sees the evaluated model alone, as in PaddleClas) it is TopkAcc."""

    def __init__(self, model_key, feature_key=None, topk=(1, 5)):
        super().__init__(topk)
        self.model_key, self.feature_key = model_key, feature_key

    def update(self, predicts, label):
        out = predicts
        if isinstance(out, dict) and "logits" not in out:  # a single model's output passes (as PaddleClas)
            if self.model_key not in out:
                raise ValueError(f"DistillationTopkAcc.model_key={self.model_key!r} is not a model of the output "
                                 f"({sorted(out)})")
            out = out[self.model_key]
            if self.feature_key is not None:
                out = out[self.feature_key]
        return super().update(out, label)


class TprAtFpr:
    """Two-class models (class 1 = positive): the highest true-positive rate at a false-positive
    rate <= `max_fpr`, over the thresholds 0, 0.0001, ..., 0.9999 on the softmax score of class 1
    (PaddleClas's TprAtFpr: a sample is positive when its score is > threshold).

    `thresholds` (ppbackbone): also report `tpr@t` and `fpr@t` at each chosen threshold t.
    accumulate() -> {"tpr": best tpr, "fpr": its fpr, "threshold": its threshold, ...};
    info() -> PaddleClas's text ("threshold: 0.9418, fpr: 0.0059..., tpr: 0.15909").
    Counts are kept per threshold bin, so the state sums across ranks exactly.

    In a retrieval evaluation (ppbackbone) it scores query-gallery pairs instead: a pair of the same
    label is positive, its score the cosine similarity, the thresholds -1, -0.9999, ..., 0.9999
    (`update_pairs` per block of queries, then `accumulate`)."""

    STEPS = 10000
    kind = "both"

    def __init__(self, max_fpr=1 / 1000., thresholds=None):
        if not 0 <= float(max_fpr) <= 1:
            raise ValueError(f"TprAtFpr.max_fpr must be in [0, 1], got {max_fpr!r}")
        self.max_fpr = float(max_fpr)
        thresholds = [] if thresholds is None else list(thresholds)
        if any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1 for t in thresholds):
            raise ValueError(f"TprAtFpr.thresholds must be numbers in [0, 1], got {thresholds!r}")
        self.thresholds = [float(t) for t in thresholds]
        self._grid = np.arange(self.STEPS) / float(self.STEPS)
        self.reset()

    def reset(self):
        # bins[k]: scores with exactly k grid thresholds below them (k in 0..STEPS)
        self.pos_bins = np.zeros(self.STEPS + 1, dtype="int64")
        self.neg_bins = np.zeros(self.STEPS + 1, dtype="int64")
        self.pos_scores, self.neg_scores = [], []

    def update(self, predicts, label):
        logits = _logits(predicts)
        if logits.shape[-1] != 2:
            raise ValueError(f"TprAtFpr is for two-class models (class 1 positive); the model has "
                             f"{logits.shape[-1]} outputs")
        score = F.softmax(logits.astype("float32"), axis=-1)[:, 1].numpy().astype("float64")
        positive = _hard_labels(label, 2).numpy() != 0
        bins = np.searchsorted(self._grid, score, side="left")
        self.pos_bins += np.bincount(bins[positive], minlength=self.STEPS + 1)
        self.neg_bins += np.bincount(bins[~positive], minlength=self.STEPS + 1)
        self.pos_scores.append(score[positive])
        self.neg_scores.append(score[~positive])
        return {}

    def update_pairs(self, similarity, query_label, gallery_label, keep_mask=None):
        """Count the query x gallery pairs of a retrieval block (see the class docstring)."""
        if self._grid[0] == 0:  # first retrieval use: cosine scores span [-1, 1]
            self._grid = -1.0 + np.arange(self.STEPS) * 2.0 / self.STEPS
        sim = np.asarray(similarity, dtype="float64")
        same = np.asarray(query_label).reshape(-1, 1) == np.asarray(gallery_label).reshape(1, -1)
        keep = np.ones_like(same) if keep_mask is None else np.asarray(keep_mask, dtype=bool)
        bins = np.searchsorted(self._grid, sim, side="left")
        self.pos_bins += np.bincount(bins[same & keep], minlength=self.STEPS + 1)
        self.neg_bins += np.bincount(bins[~same & keep], minlength=self.STEPS + 1)
        self.pos_scores.append(sim[same & keep])
        self.neg_scores.append(sim[~same & keep])

    def state(self):
        return np.concatenate([self.pos_bins, self.neg_bins])

    def load_state(self, array):
        array = np.asarray(array, dtype="int64")
        self.pos_bins, self.neg_bins = array[:self.STEPS + 1].copy(), array[self.STEPS + 1:].copy()
        self.pos_scores = self.neg_scores = None  # per-rank scores no longer match the summed counts

    def _rates(self):
        """(tpr, fpr) at every grid threshold: the share of scores > i / STEPS."""
        n_pos, n_neg = self.pos_bins.sum(), self.neg_bins.sum()
        above_pos = n_pos - np.cumsum(self.pos_bins)[:self.STEPS]  # scores with more than i thresholds below
        above_neg = n_neg - np.cumsum(self.neg_bins)[:self.STEPS]
        with np.errstate(invalid="ignore", divide="ignore"):
            return above_pos / n_pos, above_neg / n_neg

    def _best(self):
        if self.pos_bins.sum() == 0:
            return 0.0, None, None
        tpr, fpr = self._rates()
        if self.neg_bins.sum() == 0:
            i = int(np.argmax(tpr))  # PaddleClas: no negatives, fpr reported as 0
            return (float(tpr[i]), 0.0, i) if tpr[i] > 0 else (0.0, None, None)
        ok = np.nonzero((fpr <= self.max_fpr) & (tpr > 0))[0]
        if ok.size == 0:
            return 0.0, None, None
        i = int(ok[np.argmax(tpr[ok])])  # first threshold reaching the best tpr, as PaddleClas's loop
        return float(tpr[i]), float(fpr[i]), i

    def accumulate(self):
        tpr, fpr, i = self._best()
        out = {"tpr": tpr, "fpr": float("nan") if fpr is None else fpr,
               "threshold": float("nan") if i is None else float(self._grid[i])}
        if self.thresholds:
            pos = np.concatenate(self.pos_scores) if self.pos_scores is not None else None
            neg = np.concatenate(self.neg_scores) if self.neg_scores is not None else None
            for t in self.thresholds:
                if pos is None:  # summed across ranks: exact on the grid only
                    k = int(np.searchsorted(self._grid, t, side="left"))
                    rates = self._rates()
                    out[f"tpr@{t:g}"], out[f"fpr@{t:g}"] = float(rates[0][min(k, self.STEPS - 1)]), \
                        float(rates[1][min(k, self.STEPS - 1)])
                else:
                    out[f"tpr@{t:g}"] = float((pos > t).mean()) if pos.size else float("nan")
                    out[f"fpr@{t:g}"] = float((neg > t).mean()) if neg.size else float("nan")
        return out

    def info(self):
        """PaddleClas's avg_info text for the best point ('' when none qualifies)."""
        tpr, fpr, i = self._best()
        if i is None:
            return ""
        return f"threshold: {float(self._grid[i])}, fpr: {fpr}, tpr: {tpr:.5f}"


class ClassPrecisionRecall:
    """Per-class precision and recall from the confusion matrix of argmax predictions
    (ppbackbone). accumulate() -> macro averages; report(names) -> one line per class."""

    def __init__(self, class_num=None):
        self.class_num = None
        self.confusion = None
        if class_num:
            self.class_num = int(class_num)
            self.confusion = np.zeros((self.class_num, self.class_num), dtype="int64")

    def reset(self):
        if self.confusion is not None:
            self.confusion[:] = 0

    def update(self, predicts, label):
        logits = _logits(predicts)
        class_num = logits.shape[-1]
        if self.confusion is None:
            self.class_num = class_num
            self.confusion = np.zeros((class_num, class_num), dtype="int64")
        pred = paddle.argmax(logits, axis=-1).numpy().reshape(-1)
        true = _hard_labels(label, class_num).numpy()
        self.confusion += np.bincount(true * class_num + pred, minlength=class_num * class_num).reshape(
            class_num, class_num)
        return {}

    def state(self):
        return self.confusion.reshape(-1) if self.confusion is not None else np.zeros(0, dtype="int64")

    def load_state(self, array):
        if self.confusion is not None:
            self.confusion = np.asarray(array, dtype="int64").reshape(self.class_num, self.class_num)

    def per_class(self):
        """(precision, recall, support) arrays; a class never predicted has precision nan."""
        tp = np.diag(self.confusion).astype("float64")
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / self.confusion.sum(0)
            recall = tp / self.confusion.sum(1)
        return precision, recall, self.confusion.sum(1)

    def accumulate(self):
        if self.confusion is None:
            return {}
        precision, recall, support = self.per_class()
        present = support > 0
        return {"macro_precision": float(np.nan_to_num(precision[present]).mean()) if present.any() else 0.0,
                "macro_recall": float(recall[present].mean()) if present.any() else 0.0}

    def report(self, names=None):
        """Lines `class  precision  recall  support` (names: class names by index)."""
        if self.confusion is None:
            return []
        precision, recall, support = self.per_class()
        width = max([len(str(n)) for n in (names or [])] + [5])
        lines = [f"{'class':<{width}}  precision  recall  support"]
        for i in range(self.class_num):
            name = names[i] if names and i < len(names) else str(i)
            lines.append(f"{name:<{width}}  {precision[i]:9.4f}  {recall[i]:6.4f}  {int(support[i]):7d}")
        return lines


# -------------------------------------------------------------------------------------------- retrieval
def retrieval_ranking(similarity, query_label, gallery_label, keep_mask=None, descending=True):
    """[Q, G] float 0/1 matrix: whether the gallery item at rank r shares the query's label (and is
    kept by keep_mask), ranking by similarity (descending) per query."""
    sim = np.asarray(similarity, dtype="float64")
    order = np.argsort(-sim if descending else sim, axis=1, kind="stable")
    q = np.asarray(query_label).reshape(-1, 1)
    g = np.asarray(gallery_label).reshape(-1)
    hits = g[order] == q
    if keep_mask is not None:
        hits &= np.take_along_axis(np.asarray(keep_mask, dtype=bool), order, axis=1)
    return hits.astype("float64")


class Recallk:
    """Recall@k (PaddleClas's Recallk, the CMC curve): the share of queries with a match among the
    k most similar gallery items, over the queries that have any match in the gallery (a query
    without one still counts 0 in the numerator, as PaddleClas)."""
    kind = "retrieval"

    def __init__(self, topk=(1, 5), descending=True):
        topk = [topk] if isinstance(topk, int) else list(topk)
        if not topk or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in topk):
            raise ValueError(f"Recallk.topk must be a positive int or a list of them, got {topk!r}")
        self.topk, self.descending = topk, bool(descending)

    def compute(self, similarity, query_label, gallery_label, keep_mask=None):
        hits = retrieval_ranking(similarity, query_label, gallery_label, keep_mask, self.descending)
        if max(self.topk) > hits.shape[1]:
            raise ValueError(f"Recallk.topk {self.topk} exceeds the {hits.shape[1]} gallery images")
        real = float((hits.sum(1) > 0).sum())
        cmc = (np.cumsum(hits, axis=1) > 0).sum(0) / real if real else np.zeros(hits.shape[1])
        return {f"recall{k}": float(cmc[k - 1]) for k in self.topk}


class mAP:  # noqa: N801 - PaddleClas's name
    """Mean average precision over the queries that have a match (PaddleClas's mAP; nan when none
    has one)."""
    kind = "retrieval"

    def __init__(self, descending=True):
        self.descending = bool(descending)

    def compute(self, similarity, query_label, gallery_label, keep_mask=None):
        hits = retrieval_ranking(similarity, query_label, gallery_label, keep_mask, self.descending)
        hits = hits[hits.sum(1) > 0]
        if not len(hits):
            return {"mAP": float("nan")}
        precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
        ap = (precision * hits).sum(1) / hits.sum(1)
        return {"mAP": float(ap.mean())}


METRICS = {"TopkAcc": TopkAcc, "DistillationTopkAcc": DistillationTopkAcc, "TprAtFpr": TprAtFpr, "ClassPrecisionRecall": ClassPrecisionRecall,
           "Recallk": Recallk, "mAP": mAP}
METRIC_KIND = {name: getattr(cls, "kind", "classification") for name, cls in METRICS.items()}  # or retrieval, both


def build_metrics(entries, where="Metric", kind="classification"):
    """Metric objects from a PaddleClas list ([{TopkAcc: {topk: [1, 5]}}]); None -> TopkAcc(1, 5)
    for classification, Recallk(1, 5) + mAP for retrieval. A metric of the other kind is an error."""
    if not entries:
        entries = [{"TopkAcc": {"topk": [1, 5]}}] if kind == "classification" else \
            [{"Recallk": {"topk": [1, 5]}}, {"mAP": {}}]
    check_op_list(entries, METRICS, where)
    out = []
    for entry in entries:
        (name, params), = entry.items() if isinstance(entry, dict) else ((entry, None),)
        if METRIC_KIND[name] not in (kind, "both"):
            allowed = [n for n, k in METRIC_KIND.items() if k == kind]
            raise ConfigError(f"{where}: {name} is a {METRIC_KIND[name]} metric, but this evaluation is {kind} "
                              f"(Global.eval_mode); use {', '.join(allowed)}")
        try:
            out.append(METRICS[name](**dict(params or {})))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where} {name}: {err} (parameters: {params!r})") from None
    return out
