"""Batch transforms under PaddleClas's names (`batch_transform_ops`): Mixup, Cutmix, OpSampler.

They run in the loader's collate step on a list of (CHW float image, int label) samples and give
(image, soft target) pairs: the target is a float vector of `class_num` entries (mixed one-hots),
which CELoss and BCELoss take as they are. `class_num` is filled in from `Arch.class_num`.
"""
import random

import numpy as np

from ..errors import ConfigError, check_op_list

__all__ = ["MixupOperator", "CutmixOperator", "OpSampler", "BATCH_OPS", "build_batch_transform"]


def _unpack(batch):
    images = np.stack([np.asarray(item[0]) for item in batch])
    labels = np.array([int(np.asarray(item[1]).reshape(-1)[0]) if np.asarray(item[1]).size == 1 else -1
                       for item in batch])
    return images, labels


def _one_hot(labels, class_num):
    return np.eye(class_num, dtype="float32")[labels]


def _soft(batch, class_num):
    """Targets of a batch as float vectors (soft targets pass through, indices become one-hots)."""
    out = []
    for image, label in batch:
        label = np.asarray(label)
        if label.size == class_num and label.dtype.kind == "f":
            out.append((image, label.astype("float32")))
        else:
            out.append((image, _one_hot(int(label.reshape(-1)[0]), class_num)))
    return out


class _BatchOp:
    name = "batch op"

    def __init__(self, class_num, alpha):
        if not class_num or int(class_num) < 1:
            raise ValueError(f"{self.name} needs Arch.class_num (the number of classes), got {class_num!r}")
        if alpha is None or float(alpha) <= 0:
            raise ValueError(f"{self.name}.alpha must be > 0, got {alpha!r}")
        self.class_num, self.alpha = int(class_num), float(alpha)

    def _mix_target(self, labels, perm, lam):
        return _one_hot(labels, self.class_num) * lam + _one_hot(labels[perm], self.class_num) * (1 - lam)


class MixupOperator(_BatchOp):
    """Mixup: images and one-hot targets blended with a partner from the same batch,
    lam ~ Beta(alpha, alpha)."""
    name = "MixupOperator"

    def __init__(self, class_num, alpha=1.0):
        super().__init__(class_num, alpha)

    def __call__(self, batch):
        images, labels = _unpack(batch)
        perm = np.random.permutation(len(batch))
        lam = np.random.beta(self.alpha, self.alpha)
        images = (lam * images + (1 - lam) * images[perm]).astype(images.dtype)
        return list(zip(images, self._mix_target(labels, perm, lam)))


class CutmixOperator(_BatchOp):
    """Cutmix: a box of a partner image pasted in (area fraction 1 - lam, lam ~ Beta(alpha, alpha)),
    targets mixed by the box's actual area."""
    name = "CutmixOperator"

    def __init__(self, class_num, alpha=0.2):
        super().__init__(class_num, alpha)

    def __call__(self, batch):
        images, labels = _unpack(batch)
        perm = np.random.permutation(len(batch))
        lam = np.random.beta(self.alpha, self.alpha)
        height, width = images.shape[-2], images.shape[-1]
        cut = np.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy, cx = np.random.randint(height), np.random.randint(width)
        y1, y2 = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
        x1, x2 = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
        images = images.copy()
        images[:, :, y1:y2, x1:x2] = images[perm, :, y1:y2, x1:x2]
        lam = 1.0 - float((y2 - y1) * (x2 - x1)) / (height * width)
        return list(zip(images, self._mix_target(labels, perm, lam)))


class OpSampler:
    """Pick one of the given batch ops per batch with its `prob`; with total prob < 1 the rest is
    'no op' (targets still become one-hot vectors so every batch has the same label form)."""

    def __init__(self, class_num, **ops):
        if not class_num:
            raise ValueError("OpSampler needs Arch.class_num (the number of classes)")
        self.class_num = int(class_num)
        self.ops, self.probs = [], []
        for name, params in ops.items():
            if name not in _MIX_OPS:
                raise ValueError(f"OpSampler: unknown operator {name!r}; known: {', '.join(_MIX_OPS)}")
            params = dict(params or {})
            if "prob" not in params:
                raise ValueError(f"OpSampler.{name} needs `prob` (its probability per batch)")
            prob = float(params.pop("prob"))
            self.ops.append(_MIX_OPS[name](class_num=class_num, **params))
            self.probs.append(prob)
        total = sum(self.probs)
        if any(p < 0 for p in self.probs) or total > 1 + 1e-6:
            raise ValueError(f"OpSampler: probabilities {self.probs} must be >= 0 and sum to at most 1")
        self.ops.append(None)
        self.probs.append(max(0.0, 1.0 - total))

    def __call__(self, batch):
        op = random.choices(self.ops, weights=self.probs, k=1)[0]
        return op(batch) if op is not None else _soft(batch, self.class_num)


_MIX_OPS = {"MixupOperator": MixupOperator, "CutmixOperator": CutmixOperator}
BATCH_OPS = dict(_MIX_OPS, OpSampler=OpSampler)


def build_batch_transform(op_list, class_num, where="batch_transform_ops"):
    """One callable applying the PaddleClas `batch_transform_ops` list in order (None if empty)."""
    if not op_list:
        return None
    check_op_list(op_list, BATCH_OPS, where, injected=("class_num",))
    ops = []
    for entry in op_list:
        (name, params), = entry.items()
        try:
            ops.append(BATCH_OPS[name](class_num=class_num, **dict(params or {})))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where} {name}: {err}") from None

    def apply(batch):
        for op in ops:
            batch = op(batch)
        return batch
    return apply
