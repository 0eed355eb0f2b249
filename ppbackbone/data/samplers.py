"""PaddleClas's training samplers: PKSampler (metric learning) and RASampler (repeated augmentation).

Both are batch samplers the Loader drives with `set_epoch(seed)`; their randomness comes from that
seed (and the rank), never from global state, so an epoch's batches are the same whether the run
started at epoch 1 or was resumed.
"""
import math
from collections import defaultdict

import numpy as np
from paddle.io import BatchSampler

from ..errors import UserError

__all__ = ["PKSampler", "RASampler", "SamplerError"]


class SamplerError(UserError, ValueError):
    """A sampler setting that cannot work with this dataset; the message names the key."""


def _labels(dataset, where):
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise SamplerError(f"{where}: the dataset {type(dataset).__name__} has no labels to sample identities from")
    return [int(v) for v in labels]


class PKSampler(BatchSampler):
    """P identities x K images per batch (PaddleClas's PKSampler): each batch draws
    batch_size / sample_per_id classes without replacement, with probability `sample_method`
    `sample_avg_prob` (proportional to a class's images) or `id_avg_prob` (uniform), and
    sample_per_id images of each (with replacement only when a class has fewer). `id_list`
    ([start, end, start, end, ...] label ranges, inclusive) and `ratio` (one factor per range) scale
    those classes' probabilities. An epoch has ceil(images / world_size / batch_size) batches."""

    def __init__(self, dataset, batch_size, sample_per_id, shuffle=True, drop_last=True, id_list=None, ratio=None,
                 sample_method="sample_avg_prob", rank=0, world_size=1, where="DataLoader.Train.sampler"):
        for key, value in (("batch_size", batch_size), ("sample_per_id", sample_per_id)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SamplerError(f"{where}.{key}={value!r}: expected a positive int")
        if batch_size % sample_per_id:
            raise SamplerError(f"{where}: batch_size {batch_size} is not divisible by sample_per_id {sample_per_id} "
                               f"(PKSampler batches hold batch_size / sample_per_id identities of sample_per_id "
                               f"images each); use e.g. batch_size {batch_size // sample_per_id * sample_per_id or sample_per_id}")
        self.batch_size, self.sample_per_id = batch_size, sample_per_id
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rank, self.world_size = rank, world_size
        by_label = defaultdict(list)
        for index, label in enumerate(_labels(dataset, where)):
            by_label[label].append(index)
        self.label_dict = dict(by_label)
        self.label_list = list(self.label_dict)
        if len(self.label_list) * sample_per_id < batch_size:
            raise SamplerError(f"{where}: batch_size {batch_size} needs {batch_size // sample_per_id} identities per "
                               f"batch, but the dataset has {len(self.label_list)} classes (x sample_per_id "
                               f"{sample_per_id} = {len(self.label_list) * sample_per_id} < {batch_size})")
        if sample_method == "id_avg_prob":
            prob = np.full(len(self.label_list), 1.0 / len(self.label_list))
        elif sample_method == "sample_avg_prob":
            counts = np.array([len(self.label_dict[k]) for k in self.label_list], dtype="float64")
            prob = counts / counts.sum()
        else:
            raise SamplerError(f"{where}.sample_method={sample_method!r}: use id_avg_prob or sample_avg_prob")
        if id_list or ratio:
            if not id_list or not ratio or len(id_list) != 2 * len(ratio):
                raise SamplerError(f"{where}: id_list needs two label bounds per ratio entry (id_list "
                                   f"[start, end, ...], ratio [r, ...]); got id_list={id_list!r}, ratio={ratio!r}")
            for i in range(len(prob)):  # PaddleClas compares the position in the label list with the bounds
                for j, r in enumerate(ratio):
                    if id_list[2 * j] <= i <= id_list[2 * j + 1]:
                        prob[i] *= r
                        break
            prob = prob / prob.sum()
        self.prob_list = prob
        self.num_samples = int(math.ceil(len(dataset) / float(world_size)))
        self.epoch_seed = 0

    def set_epoch(self, epoch_seed):
        self.epoch_seed = int(epoch_seed)

    def __len__(self):
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        labels, prob = list(self.label_list), self.prob_list.copy()
        rng = np.random.RandomState((self.epoch_seed * 1000003 + self.rank) % (2 ** 32))
        if self.shuffle:
            order = rng.permutation(len(labels))
            labels, prob = [labels[i] for i in order], prob[order]
        per_batch = self.batch_size // self.sample_per_id
        for _ in range(len(self)):
            chosen = rng.choice(len(labels), size=per_batch, replace=False, p=prob)
            batch = []
            for c in chosen:
                members = self.label_dict[labels[c]]
                batch.extend(int(i) for i in rng.choice(members, size=self.sample_per_id,
                                                        replace=len(members) < self.sample_per_id))
            yield batch


class RASampler(BatchSampler):
    """Repeated augmentation (DeiT; PaddleClas's RASampler): each image appears `num_repeats` times
    per epoch (consecutive copies go to different ranks), and each rank keeps
    floor(len(dataset) // 256 * 256 / world_size) of its indices, so an epoch sees as many images
    as a plain one, a multiple of 256."""

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, num_repeats=3, rank=0, world_size=1,
                 where="DataLoader.Train.sampler"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise SamplerError(f"{where}.batch_size={batch_size!r}: expected a positive int")
        if isinstance(num_repeats, bool) or not isinstance(num_repeats, int) or num_repeats < 1:
            raise SamplerError(f"{where}.num_repeats={num_repeats!r}: expected a positive int")
        self.n = len(dataset)
        self.batch_size, self.shuffle, self.drop_last = batch_size, bool(shuffle), bool(drop_last)
        self.num_repeats, self.rank, self.world_size = num_repeats, rank, world_size
        self.num_samples = int(math.ceil(self.n * num_repeats / world_size))
        self.total_size = self.num_samples * world_size
        self.num_selected = int(math.floor(self.n // 256 * 256 / world_size))
        if self.num_selected == 0:
            raise SamplerError(f"{where}: RASampler keeps a multiple of 256 images per epoch, but the dataset has "
                               f"{self.n}: no image would be sampled; use DistributedBatchSampler")
        self.epoch_seed = 0

    def set_epoch(self, epoch_seed):
        self.epoch_seed = int(epoch_seed)

    def __len__(self):
        return (self.num_selected + (0 if self.drop_last else self.batch_size - 1)) // self.batch_size

    def __iter__(self):
        indices = np.arange(self.n)
        if self.shuffle:
            np.random.RandomState(self.epoch_seed % (2 ** 32)).shuffle(indices)
        indices = np.repeat(indices, self.num_repeats).tolist()
        indices += indices[:self.total_size - len(indices)]
        mine = indices[self.rank:self.total_size:self.world_size][:self.num_selected]
        for start in range(0, len(mine), self.batch_size):
            batch = mine[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch
