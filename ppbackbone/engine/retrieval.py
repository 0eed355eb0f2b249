"""Retrieval evaluation (PaddleClas's eval_mode: retrieval): embed the gallery and the query sets,
rank the gallery by cosine similarity for each query, and score the ranking (Recallk, mAP, ...).

As PaddleClas: features are the model output `features` (the neck; `Global.retrieval_feature_from:
backbone` takes the backbone's), L2-normalised unless `Global.feature_normalize: False`; queries
are scored in blocks of `Global.sim_block_size` (64) and each metric is the block values weighted by
block size. A DistillationModel is evaluated through its `infer_model_name` model.
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from ..errors import ConfigError
from .metrics import retrieval_ranking

__all__ = ["compute_features", "retrieval_scores", "model_features", "recall_at_k_curve"]


def model_features(model, out, feature_from="features"):
    """The embedding in a model output (RecModel dict, or a DistillationModel's dict of them)."""
    if isinstance(out, dict) and getattr(model, "infer_model_name", None) in out:
        out = out[model.infer_model_name]
    if not isinstance(out, dict) or out.get(feature_from) is None:
        raise ConfigError(f"Global.eval_mode=retrieval needs the model output {feature_from!r} "
                          f"(Global.retrieval_feature_from): use Arch.name: RecModel (Backbone + Neck)")
    return out[feature_from]


def _gather(array, world_size):
    """Concatenate a per-rank [n, ...] array over ranks (rank order); sizes may differ."""
    if world_size == 1:
        return array
    sizes = []
    paddle.distributed.all_gather_object(sizes, int(array.shape[0]))
    pad = np.zeros((max(sizes) - array.shape[0],) + array.shape[1:], dtype=array.dtype)
    parts = []
    paddle.distributed.all_gather(parts, paddle.to_tensor(np.concatenate([array, pad])))
    return np.concatenate([p.numpy()[:n] for p, n in zip(parts, sizes)])


@paddle.no_grad()
def compute_features(model, loader, feature_from="features", normalize=True, world_size=1, autocast=None):
    """(features [N, D] float32, labels [N] int64) of every image the loader yields, over all ranks."""
    feats, labels = [], []
    for images, label in loader:
        if autocast is not None:
            with autocast():
                out = model(images)
        else:
            out = model(images)
        feat = model_features(model, out, feature_from).astype("float32")
        if normalize:
            feat = F.normalize(feat, p=2, axis=1)
        feats.append(feat.numpy())
        labels.append(label.numpy().reshape(-1).astype("int64"))
    if not feats:
        raise ConfigError("a retrieval set yielded no images (check DataLoader.Eval.Gallery / Query)")
    return _gather(np.concatenate(feats), world_size), _gather(np.concatenate(labels), world_size)


def retrieval_scores(query, query_label, gallery, gallery_label, metrics, block_size=64):
    """{metric key: value}: each metric's `compute` on blocks of queries against the whole gallery,
    weighted by block size (PaddleClas's retrieval_eval); metrics that count pairs (TprAtFpr) see
    every block through `update_pairs` and report once."""
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ConfigError(f"Global.sim_block_size={block_size!r}: expected a positive int")
    total = {}
    n = len(query)
    pairwise = [m for m in metrics if hasattr(m, "update_pairs")]
    for m in pairwise:
        m.reset()
    for start in range(0, n, block_size):
        block = query[start:start + block_size]
        sim = block @ gallery.T
        for metric in metrics:
            if metric in pairwise:
                metric.update_pairs(sim, query_label[start:start + block_size], gallery_label)
                continue
            for key, value in metric.compute(sim, query_label[start:start + block_size], gallery_label).items():
                total[key] = total.get(key, 0.0) + value * len(block) / n
    for metric in pairwise:
        total.update(metric.accumulate())
    return total


def recall_at_k_curve(query, query_label, gallery, gallery_label, max_k=None, block_size=64):
    """Recall@k for k = 1..max_k (default: the gallery size) as a float array: the share of queries
    whose k most similar gallery items hold one of their class, over the queries that have any
    match in the gallery (Recallk's definition, counted over all queries at once)."""
    max_k = min(int(max_k or len(gallery)), len(gallery))
    found = np.zeros(max_k, dtype="float64")
    with_match = 0
    for start in range(0, len(query), block_size):
        hits = retrieval_ranking(query[start:start + block_size] @ gallery.T,
                                 query_label[start:start + block_size], gallery_label)
        matched = hits.sum(1) > 0
        with_match += int(matched.sum())
        found += (np.cumsum(hits[:, :max_k], axis=1) > 0).sum(0)
    if not with_match:
        raise ConfigError("no query has a match in the gallery: the Recall@k curve is undefined (check the "
                          "Gallery/Query label files)")
    return found / with_match

