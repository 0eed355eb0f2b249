"""Losses under PaddleClas's names, built from a `Loss.Train`/`Loss.Eval` list.

`build_loss([{"CELoss": {"weight": 1.0, "epsilon": 0.1}}, {"TripletAngularMarginLoss": {...}}])`
returns a layer whose forward `(predicts, label)` gives `{"loss": weighted sum, "CELoss": ...,
"TripletAngularMarginLoss": ...}` (the per-loss values unweighted).

`predicts` is what the model returned: a logits tensor (a classifier), a dict with `logits` and
`features` (RecModel), or a dict of such outputs by model name (DistillationModel: `{"Teacher": ...,
"Student": ...}`). Labels are class indices (shape [N] or [N, 1]) or soft targets ([N, C], e.g.
from Mixup/Cutmix).

Classification: CELoss, SoftTargetCrossEntropy, BCELoss. Metric learning (PaddleClas develop's
ppcls/loss/triplet.py and tripletangularmarginloss.py, same values and gradients): TripletLoss,
TripletLossV2, TripletAngularMarginLoss, which feed hard-mined distances to
`paddle.nn.MarginRankingLoss`. Distillation (ppcls/loss/distillationloss.py, dmlloss.py,
kldivloss.py): DMLLoss, KLDivLoss and their Distillation* forms over model-name pairs.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import ConfigError, UserError, check_op_list

__all__ = ["CELoss", "SoftTargetCrossEntropy", "BCELoss", "TripletLoss", "TripletLossV2",
           "TripletAngularMarginLoss", "DMLLoss", "KLDivLoss", "DistillationCELoss", "DistillationGTCELoss",
           "DistillationDMLLoss", "DistillationKLDivLoss", "CombinedLoss", "build_loss", "LOSSES", "LossInputError"]

_FLOAT_TYPES = (paddle.float32, paddle.float16, paddle.bfloat16, paddle.float64)


class LossInputError(UserError, ValueError):
    """A loss given model outputs it cannot use (e.g. a triplet loss on a plain classifier)."""


def _logits(predicts, who):
    """The logits of a model output: the tensor itself or its `logits` entry."""
    if isinstance(predicts, dict):
        if predicts.get("logits") is None:
            raise LossInputError(f"{who} needs logits, but the model output has only {sorted(predicts)}: give "
                                 f"the RecModel a Head (Arch.Head) or remove {who} from the Loss list")
        return predicts["logits"]
    return predicts


def _features(predicts, key, who):
    """The embedding `predicts[key]` of a RecModel output (an error naming the key otherwise)."""
    if not isinstance(predicts, dict) or predicts.get(key) is None:
        got = sorted(predicts) if isinstance(predicts, dict) else "a logits tensor (a plain classifier)"
        raise LossInputError(f"{who} needs the model output {key!r} (feature_from), got {got}: metric-learning "
                             f"losses need Arch.name: RecModel (Backbone + Neck), whose output has 'features'")
    return predicts[key]


def _model_output(predicts, name, who):
    if not isinstance(predicts, dict) or name not in predicts:
        got = sorted(predicts) if isinstance(predicts, dict) else "a single model's output"
        raise LossInputError(f"{who}: no model {name!r} in the outputs ({got}); distillation losses need "
                             f"Arch.name: DistillationModel with models named as in model_names/model_name_pairs")
    return predicts[name]


def _targets(label, class_num):
    """[N, C] float targets from class indices or soft targets."""
    if label.ndim == 2 and label.shape[-1] == class_num and label.dtype in _FLOAT_TYPES:
        return label.astype("float32")
    return F.one_hot(label.reshape([-1]).astype("int64"), class_num).astype("float32")


def _reduce(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _check_reduction(name, reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}.reduction must be mean, sum or none, got {reduction!r}")


class CELoss(nn.Layer):
    """Cross entropy; `epsilon` in (0, 1) turns on label smoothing (PaddleClas: other values mean
    none). Soft targets are used as given (PaddleClas without epsilon would softmax them first;
    mixed one-hot targets are already distributions, so ppbackbone does not)."""

    def __init__(self, epsilon=None, reduction="mean", weight=1.0):
        super().__init__()
        self.weight = float(weight)
        if epsilon is not None and not (0 < float(epsilon) < 1):
            epsilon = None
        _check_reduction("CELoss", reduction)
        self.epsilon = None if epsilon is None else float(epsilon)
        self.reduction = reduction

    def forward(self, predicts, label):
        logits = _logits(predicts, "CELoss").astype("float32")
        class_num = logits.shape[-1]
        if self.epsilon is None and not (label.ndim == 2 and label.shape[-1] == class_num and class_num > 1):
            return F.cross_entropy(logits, label.reshape([-1, 1]).astype("int64"), reduction=self.reduction)
        target = _targets(label, class_num)
        if self.epsilon is not None:
            target = F.label_smooth(target, epsilon=self.epsilon)
        return _reduce(paddle.sum(-F.log_softmax(logits, axis=-1) * target, axis=-1), self.reduction)


class SoftTargetCrossEntropy(nn.Layer):
    """Cross entropy against soft targets (PaddleClas/timm name); hard labels are one-hot encoded."""

    def __init__(self, weight=1.0):
        super().__init__()
        self.weight = float(weight)

    def forward(self, predicts, label):
        logits = _logits(predicts, "SoftTargetCrossEntropy")
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

    def forward(self, predicts, label):
        logits = _logits(predicts, "BCELoss")
        class_num = logits.shape[-1]
        target = _targets(label, class_num)
        if self.epsilon:
            off = self.epsilon / class_num
            target = target * (1.0 - self.epsilon) + off
        if self.target_threshold is not None:
            target = (target > float(self.target_threshold)).astype("float32")
        return F.binary_cross_entropy_with_logits(logits.astype("float32"), target, reduction=self.reduction)


# ------------------------------------------------------------------------------------ metric learning
def _class_masks(label, who):
    """(same class, other class) [N, N] bool masks from hard labels."""
    if label.ndim == 2 and label.shape[-1] > 1:
        raise LossInputError(f"{who} needs hard class labels, got soft targets of shape {label.shape}: do not "
                             f"combine it with Mixup/Cutmix batch ops")
    label = label.reshape([-1])
    same = label.unsqueeze(1) == label.unsqueeze(0)
    return same, paddle.logical_not(same)


def _euclidean(x):
    """Pairwise Euclidean distances of the rows of x, as PaddleClas computes them
    (|a|^2 + |b|^2 - 2ab, clipped at 1e-12, square root)."""
    n = x.shape[0]
    sq = paddle.pow(x, 2).sum(axis=1, keepdim=True).expand([n, n])
    dist = paddle.addmm(input=sq + sq.t(), x=x, y=x.t(), alpha=-2.0, beta=1.0)
    return paddle.clip(dist, min=1e-12).sqrt()


def _masked_max(dist, mask):
    """Per row, the largest entry where mask holds (rows need at least one such entry)."""
    return paddle.where(mask, dist, paddle.full_like(dist, float("-inf"))).max(axis=1)


def _masked_min(dist, mask):
    return paddle.where(mask, dist, paddle.full_like(dist, float("inf"))).min(axis=1)


def _check_has_negatives(neg, who):
    if not bool(neg.any(axis=1).all()):
        raise LossInputError(f"{who}: a batch holds a single class, so an anchor has no negative; sample "
                             f"several classes per batch (DataLoader.Train.sampler: PKSampler)")


class TripletLoss(nn.Layer):
    """Batch-hard triplet loss on Euclidean distances (Hermans et al.; PaddleClas's TripletLoss):
    for each anchor the farthest positive and the nearest negative, fed to
    MarginRankingLoss(margin): mean(relu(d_ap - d_an + margin)). Reads `features`."""

    def __init__(self, margin=1.0, weight=1.0):
        super().__init__()
        self.weight, self.margin = float(weight), float(margin)
        self.ranking_loss = nn.MarginRankingLoss(margin=self.margin)

    def forward(self, predicts, label):
        x = _features(predicts, "features", "TripletLoss")
        dist = _euclidean(x)
        pos, neg = _class_masks(label, "TripletLoss")
        _check_has_negatives(neg, "TripletLoss")
        dist_ap, dist_an = _masked_max(dist, pos), _masked_min(dist, neg)
        return self.ranking_loss(dist_an, dist_ap, paddle.ones_like(dist_an))


class TripletLossV2(TripletLoss):
    """TripletLoss with `normalize_feature` (L2-normalise the embeddings first, x / (|x| + 1e-12),
    default True), margin 0.5 and `feature_from` (the model output to read)."""

    def __init__(self, margin=0.5, normalize_feature=True, feature_from="features", weight=1.0):
        super().__init__(margin, weight)
        self.normalize_feature, self.feature_from = bool(normalize_feature), str(feature_from)

    def forward(self, predicts, label):
        x = _features(predicts, self.feature_from, "TripletLossV2")
        if self.normalize_feature:
            x = x / (paddle.norm(x, p=2, axis=-1, keepdim=True).expand_as(x) + 1e-12)
        dist = _euclidean(x)
        pos, neg = _class_masks(label, "TripletLossV2")
        _check_has_negatives(neg, "TripletLossV2")
        dist_ap, dist_an = _masked_max(dist, pos), _masked_min(dist, neg)
        return self.ranking_loss(dist_an, dist_ap, paddle.ones_like(dist_an))


class TripletAngularMarginLoss(nn.Layer):
    """Triplet loss on cosine similarity (PaddleClas's TripletAngularMarginLoss, PP-ShiTuV2): per
    anchor the least similar positive s_ap and the most similar negative s_an;
    MarginRankingLoss(margin, reduction)(s_ap, s_an, 1) = relu(s_an - s_ap + margin).

    With `add_absolute`, absolute terms pull s_ap above `ap_value` and push s_an below `an_value`:
    loss = (mean(an_term) + mean(ap_term)) * absolute_loss_weight + mean(ranking), where
    ap_term = ap_value - s_ap where positive, else 0, and an_term = s_an - an_value where positive,
    else ONE (PaddleClas's choice, kept: recipes were tuned with it)."""

    def __init__(self, margin=0.5, normalize_feature=True, reduction="mean", add_absolute=False,
                 absolute_loss_weight=1.0, ap_value=0.9, an_value=0.5, feature_from="features", weight=1.0):
        super().__init__()
        _check_reduction("TripletAngularMarginLoss", reduction)
        self.weight, self.margin = float(weight), float(margin)
        self.normalize_feature, self.feature_from = bool(normalize_feature), str(feature_from)
        self.add_absolute, self.absolute_loss_weight = bool(add_absolute), float(absolute_loss_weight)
        self.ap_value, self.an_value = float(ap_value), float(an_value)
        self.ranking_loss = nn.MarginRankingLoss(margin=self.margin, reduction=reduction)

    def forward(self, predicts, label):
        x = _features(predicts, self.feature_from, "TripletAngularMarginLoss")
        if self.normalize_feature:
            x = paddle.divide(x, paddle.norm(x, p=2, axis=-1, keepdim=True))
        sim = paddle.matmul(x, x.t())
        pos, neg = _class_masks(label, "TripletAngularMarginLoss")
        _check_has_negatives(neg, "TripletAngularMarginLoss")
        sim_ap, sim_an = _masked_min(sim, pos), _masked_max(sim, neg)
        loss = self.ranking_loss(sim_ap, sim_an, paddle.ones_like(sim_an))
        if self.add_absolute:
            ap_term = self.ap_value - sim_ap
            ap_term = paddle.where(ap_term > 0, ap_term, paddle.zeros_like(ap_term))
            an_term = sim_an - self.an_value
            an_term = paddle.where(an_term > 0, an_term, paddle.ones_like(an_term))
            loss = (an_term.mean() + ap_term.mean()) * self.absolute_loss_weight + loss.mean()
        return loss


# ------------------------------------------------------------------------------------ distillation
class DMLLoss(nn.Layer):
    """Deep mutual learning: the symmetric KL divergence of two outputs after `act` (softmax,
    sigmoid or None), each direction sum(t * log((t + eps) / (x + eps))) * C, halved; mean over all
    entries (`sum_across_class_dim`: summed over classes, mean over the batch). PaddleClas's DMLLoss."""

    def __init__(self, act="softmax", sum_across_class_dim=False, eps=1e-12, weight=1.0):
        super().__init__()
        if act not in ("softmax", "sigmoid", None):
            raise ValueError(f"DMLLoss.act must be softmax, sigmoid or null, got {act!r}")
        self.weight, self.act, self.eps = float(weight), act, float(eps)
        self.sum_across_class_dim = bool(sum_across_class_dim)

    def _kldiv(self, x, target):
        return target * paddle.log((target + self.eps) / (x + self.eps)) * x.shape[-1]

    def pair(self, x, target):
        if self.act == "softmax":
            x, target = F.softmax(x, axis=-1), F.softmax(target, axis=-1)
        elif self.act == "sigmoid":
            x, target = F.sigmoid(x), F.sigmoid(target)
        loss = (self._kldiv(x, target) + self._kldiv(target, x)) / 2
        return loss.sum(1).mean() if self.sum_across_class_dim else loss.mean()

    def forward(self, predicts, label):
        raise LossInputError("DMLLoss compares two models' outputs: use DistillationDMLLoss with "
                             "model_name_pairs under Arch.name: DistillationModel")


class KLDivLoss(nn.Layer):
    """Hinton's distillation loss: KL(softmax(t / T) || softmax(s / T)) summed, * T^2 / batch
    (PaddleClas's KLDivLoss, `temperature` default 4)."""

    def __init__(self, temperature=4, weight=1.0):
        super().__init__()
        if float(temperature) <= 0:
            raise ValueError(f"KLDivLoss.temperature must be > 0, got {temperature!r}")
        self.weight, self.temperature = float(weight), float(temperature)

    def pair(self, student, teacher):
        t = self.temperature
        log_p_s = F.log_softmax(student / t, axis=1)
        p_t = F.softmax(teacher / t, axis=1)
        return F.kl_div(log_p_s, p_t, reduction="sum") * (t ** 2) / student.shape[0]

    def forward(self, predicts, label):
        raise LossInputError("KLDivLoss compares two models' outputs: use DistillationKLDivLoss with "
                             "model_name_pairs under Arch.name: DistillationModel")


def _check_pairs(name, pairs):
    if not isinstance(pairs, (list, tuple)) or not pairs or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs):
        raise ValueError(f"{name}.model_name_pairs must be a list of [model, model] name pairs, e.g. "
                         f"[[Student, Teacher]], got {pairs!r}")
    return [list(p) for p in pairs]


def _check_names(name, names):
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{name}.model_names must be a list of model names, e.g. [Student], got {names!r}")
    return list(names)


class _PairLoss(nn.Layer):
    """Shared part of the Distillation* losses over `model_name_pairs`: picks both outputs (and
    their `key` entry)."""

    def outputs(self, predicts, pair):
        out = [_model_output(predicts, name, type(self).__name__) for name in pair]
        if self.key is not None:
            out = [o[self.key] for o in out]
        return [_logits(o, type(self).__name__) for o in out]


class DistillationGTCELoss(_PairLoss):
    """CELoss of each model in `model_names` against the ground truth; keys `CELoss_<model>`."""

    def __init__(self, model_names=(), epsilon=None, key=None, name="loss_gt_ce", weight=1.0):
        super().__init__()
        self.model_names = _check_names("DistillationGTCELoss", model_names)
        self.key, self.name, self.weight = key, name, float(weight)
        self.ce = CELoss(epsilon=epsilon)

    def forward(self, predicts, label):
        out = {}
        for name in self.model_names:
            pred = _model_output(predicts, name, "DistillationGTCELoss")
            if self.key is not None:
                pred = pred[self.key]
            out[f"CELoss_{name}"] = self.ce(pred, label)
        return out


class DistillationCELoss(_PairLoss):
    """Cross entropy of the first model of each pair against the second's softmax (PaddleClas's
    CELoss with the other model's logits as soft label; with `epsilon` PaddleClas label-smooths the
    raw logits, and so does this). Keys `CELoss_<a>_<b>`."""

    def __init__(self, model_name_pairs=(), epsilon=None, key=None, name="loss_ce", weight=1.0):
        super().__init__()
        self.model_name_pairs = _check_pairs("DistillationCELoss", model_name_pairs)
        if epsilon is not None and not 0 < float(epsilon) < 1:
            epsilon = None
        self.epsilon = None if epsilon is None else float(epsilon)
        self.key, self.name, self.weight = key, name, float(weight)

    def forward(self, predicts, label):
        out = {}
        for pair in self.model_name_pairs:
            x, other = self.outputs(predicts, pair)
            if self.epsilon is None:
                target = F.softmax(other, axis=-1)
            else:
                target = F.label_smooth(other, epsilon=self.epsilon)
            out[f"CELoss_{pair[0]}_{pair[1]}"] = paddle.sum(-F.log_softmax(x, axis=-1) * target, axis=-1).mean()
        return out


class DistillationDMLLoss(_PairLoss):
    """DMLLoss between the models of each pair; keys `DMLLoss_<a>_<b>_<index>`."""

    def __init__(self, model_name_pairs=(), act="softmax", weight_ratio=False, sum_across_class_dim=False,
                 key=None, name="loss_dml", weight=1.0):
        super().__init__()
        self.model_name_pairs = _check_pairs("DistillationDMLLoss", model_name_pairs)
        if weight_ratio:
            raise ValueError("DistillationDMLLoss.weight_ratio (multi-label ratios) is not supported: "
                             "single-label classification only")
        self.dml = DMLLoss(act=act, sum_across_class_dim=sum_across_class_dim)
        self.key, self.name, self.weight = key, name, float(weight)

    def forward(self, predicts, label):
        out = {}
        for index, pair in enumerate(self.model_name_pairs):
            a, b = self.outputs(predicts, pair)
            out[f"DMLLoss_{pair[0]}_{pair[1]}_{index}"] = self.dml.pair(a, b)
        return out


class DistillationKLDivLoss(_PairLoss):
    """KLDivLoss of the first model of each pair (student) against the second (teacher); keys
    `loss_kldiv_<a>_<b>`."""

    def __init__(self, model_name_pairs=(), temperature=4, key=None, name="loss_kl", weight=1.0):
        super().__init__()
        self.model_name_pairs = _check_pairs("DistillationKLDivLoss", model_name_pairs)
        self.kl = KLDivLoss(temperature=temperature)
        self.key, self.name, self.weight = key, name, float(weight)

    def forward(self, predicts, label):
        out = {}
        for pair in self.model_name_pairs:
            a, b = self.outputs(predicts, pair)
            out[f"loss_kldiv_{pair[0]}_{pair[1]}"] = self.kl.pair(a, b)
        return out


LOSSES = {cls.__name__: cls for cls in (
    CELoss, SoftTargetCrossEntropy, BCELoss, TripletLoss, TripletLossV2, TripletAngularMarginLoss,
    DistillationGTCELoss, DistillationCELoss, DistillationDMLLoss, DistillationKLDivLoss)}


class CombinedLoss(nn.Layer):
    """Weighted sum of the configured losses. forward returns {name: value, ..., "loss": sum of
    weight * value}; a loss that gives several values (the Distillation* ones) adds each under its
    own key, all with that loss's weight."""

    def __init__(self, entries):
        super().__init__()
        self.names = []
        self.losses = nn.LayerList()
        for entry in entries:
            (name, params), = entry.items()
            self.names.append(name)
            self.losses.append(LOSSES[name](**dict(params or {})))

    def forward(self, predicts, label):
        out = {}
        total = 0.0
        for name, loss_fn in zip(self.names, self.losses):
            value = loss_fn(predicts, label)
            values = value if isinstance(value, dict) else {name: value}
            for key, v in values.items():
                out[key] = v
                total = total + loss_fn.weight * v
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
