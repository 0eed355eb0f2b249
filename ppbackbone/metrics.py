"""Metrics under PaddleClas's names: TopkAcc, accumulated as exact counts (summable across ranks)."""
import numpy as np
import paddle

from .errors import ConfigError, check_op_list, warn_once

__all__ = ["TopkAcc", "build_metrics", "METRICS"]


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

    def update(self, logits, label):
        """Count the batch; returns the batch's {top{k}: accuracy}."""
        class_num = logits.shape[-1]
        if label.ndim == 2 and label.shape[-1] == class_num and class_num > 1 and label.dtype != paddle.int64:
            label = paddle.argmax(label, axis=-1)
        label = label.reshape([-1]).astype("int64")
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


METRICS = {"TopkAcc": TopkAcc}


def build_metrics(entries, where="Metric"):
    """Metric objects from a PaddleClas list ([{TopkAcc: {topk: [1, 5]}}]); None -> TopkAcc(1, 5)."""
    if not entries:
        entries = [{"TopkAcc": {"topk": [1, 5]}}]
    check_op_list(entries, METRICS, where)
    out = []
    for entry in entries:
        (name, params), = entry.items()
        try:
            out.append(METRICS[name](**dict(params or {})))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where} {name}: {err} (parameters: {params!r})") from None
    return out
