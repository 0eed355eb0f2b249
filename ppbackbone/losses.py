"""Classification losses under PaddleClas's names, built from a `Loss.Train`/`Loss.Eval` list.

Labels are either class indices (shape [N] or [N, 1]) or soft targets (shape [N, C], e.g. from
Mixup/Cutmix). `build_loss([{"CELoss": {"weight": 1.0, "epsilon": 0.1}}])` returns a layer whose
forward gives `{"loss": weighted sum, "CELoss": ...}`.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .errors import ConfigError, check_op_list

__all__ = ["CELoss", "SoftTargetCrossEntropy", "BCELoss", "CombinedLoss", "build_loss", "LOSSES"]


def _targets(label, class_num):
    """[N, C] float targets from class indices or soft targets."""
    if label.ndim == 2 and label.shape[-1] == class_num and label.dtype in (paddle.float32, paddle.float16,
                                                                              paddle.bfloat16, paddle.float64):
        return label.astype("float32")
    return F.one_hot(label.reshape([-1]).astype("int64"), class_num).astype("float32")


class CELoss(nn.Layer):
    """Cross entropy; `epsilon` in (0, 1) turns on label smoothing (PaddleClas: other values mean
    none). Soft targets are used as given (PaddleClas without epsilon would softmax them first;
    mixed one-hot targets are already distributions, so ppbackbone does not)."""

    def __init__(self, epsilon=None, reduction="mean", weight=1.0):
        super().__init__()
        self.weight = float(weight)
        if epsilon is not None and not (0 < float(epsilon) < 1):
            epsilon = None
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"CELoss.reduction must be mean, sum or none, got {reduction!r}")
        self.epsilon = None if epsilon is None else float(epsilon)
        self.reduction = reduction

    def forward(self, logits, label):
        class_num = logits.shape[-1]
        logits = logits.astype("float32")
        if self.epsilon is None and not (label.ndim == 2 and label.shape[-1] == class_num and class_num > 1):
            loss = F.cross_entropy(logits, label.reshape([-1, 1]).astype("int64"), reduction=self.reduction)
            return loss
        target = _targets(label, class_num)
        if self.epsilon is not None:
            target = F.label_smooth(target, epsilon=self.epsilon)
        loss = paddle.sum(-F.log_softmax(logits, axis=-1) * target, axis=-1)
        return loss.mean() if self.reduction == "mean" else loss.sum() if self.reduction == "sum" else loss


class SoftTargetCrossEntropy(nn.Layer):
    """Cross entropy against soft targets (PaddleClas/timm name); hard labels are one-hot encoded."""

    def __init__(self, weight=1.0):
        super().__init__()
        self.weight = float(weight)

    def forward(self, logits, label):
        target = _targets(label, logits.shape[-1])
        return paddle.sum(-F.log_softmax(logits.astype("float32"), axis=-1) * target, axis=-1).mean()


class BCELoss(nn.Layer):
    """Binary cross entropy on one-hot (or soft) targets, as timm's BinaryCrossEntropy: `epsilon`
    smooths the targets (off = epsilon / C, on = 1 - epsilon + off); `target_threshold` turns soft
    targets back into 0/1 ones. Used by recipes trained with BCE (e.g. VanillaNet's)."""

    def __init__(self, epsilon=0.0, target_threshold=None, reduction="mean", weight=1.0):
        super().__init__()
        self.weight = float(weight)
        if not 0 <= float(epsilon) < 1:
            raise ValueError(f"BCELoss.epsilon must be in [0, 1), got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.target_threshold = target_threshold
        self.reduction = reduction

    def forward(self, logits, label):
        class_num = logits.shape[-1]
        target = _targets(label, class_num)
        if self.epsilon:
            off = self.epsilon / class_num
            target = target * (1.0 - self.epsilon) + off
        if self.target_threshold is not None:
            target = (target > float(self.target_threshold)).astype("float32")
        return F.binary_cross_entropy_with_logits(logits.astype("float32"), target, reduction=self.reduction)


LOSSES = {"CELoss": CELoss, "SoftTargetCrossEntropy": SoftTargetCrossEntropy, "BCELoss": BCELoss}


class CombinedLoss(nn.Layer):
    """Weighted sum of the configured losses; forward returns {name: value, ..., "loss": sum}."""

    def __init__(self, entries):
        super().__init__()
        self.names = []
        self.losses = nn.LayerList()
        for entry in entries:
            (name, params), = entry.items()
            self.names.append(name)
            self.losses.append(LOSSES[name](**dict(params or {})))

    def forward(self, logits, label):
        out = {}
        total = 0.0
        for name, loss_fn in zip(self.names, self.losses):
            value = loss_fn(logits, label)
            out[name] = value
            total = total + loss_fn.weight * value
        out["loss"] = total
        return out


def build_loss(entries, where="Loss"):
    """A CombinedLoss from a PaddleClas loss list (names in LOSSES, known parameters; each takes
    `weight`). None or an empty list gives plain cross entropy."""
    if not entries:
        entries = [{"CELoss": {"weight": 1.0}}]
    check_op_list(entries, LOSSES, where)
    try:
        return CombinedLoss(entries)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err} (in {entries!r})") from None
