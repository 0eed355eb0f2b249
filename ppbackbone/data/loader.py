"""Data loaders from a config's `DataLoader.Train` / `DataLoader.Eval` section.

`paddle.io.DataLoader` with worker processes and a `DistributedBatchSampler` (each rank reads its
share). Every random stream of the data pipeline is seeded from Global.seed and the epoch: the
shuffle order per epoch, each item's augmentation per (epoch, item index), and the batch ops
(Mixup/Cutmix) from the stream of the batch's last item. So an epoch draws the same numbers
whether the run started at epoch 0 or was resumed, and whatever the number of workers.

With `num_workers: 0` the batches are read by one prefetch thread of ours (`ThreadedBatches`) rather
than paddle's: paddle 3.3.1's reader thread dies on a dataset error without closing its queue, so
the training loop waited forever on a corrupt image. Ours hands every error to the consumer.
"""
import contextlib
import os
import queue
import signal
import tempfile
import threading
import weakref

import numpy as np
import paddle
from paddle.io import BatchSampler, DataLoader, DistributedBatchSampler

from ..errors import ConfigError, get_value, warn_once
from .batch_ops import build_batch_transform
from .dataset import DATASETS, DatasetError, mix_seed
from .samplers import PKSampler, RASampler

__all__ = ["build_dataset", "build_dataloader", "Loader", "ShardedBatchSampler", "MultiScaleSampler", "mix_seed",
           "ThreadedBatches"]


class ShardedBatchSampler(BatchSampler):
    """Evaluation sampler: rank r takes items r, r + n, r + 2n, ... in order, without the padding
    DistributedBatchSampler adds, so metrics summed over ranks count each image exactly once."""

    def __init__(self, dataset, batch_size, rank=0, world_size=1, drop_last=False):
        self.indices = list(range(rank, len(dataset), world_size))
        self.batch_size, self.drop_last = batch_size, drop_last

    def __iter__(self):
        for start in range(0, len(self.indices), self.batch_size):
            batch = self.indices[start:start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self):
        full, rest = divmod(len(self.indices), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch):
        pass


class MultiScaleSampler(BatchSampler):
    """PaddleClas's multi-scale training sampler: each batch is at one of `scales` (ints or (w, h),
    rounded down to multiples of `divided_factor`) with a batch size keeping the pixel count of
    `first_bs` images at the first scale. Items are (w, h, index) tuples, which the datasets read as
    "crop/resize to w x h". The sequence of scales is drawn once (so every epoch has the same number
    of steps); indices are reshuffled per epoch. Short last batches are filled from the start."""

    def __init__(self, dataset, scales, first_bs, divided_factor=32, is_training=True, shuffle=True, seed=0,
                 rank=0, world_size=1):
        if not scales or not isinstance(scales, (list, tuple)):
            raise ConfigError(f"MultiScaleSampler.scales must be a list of sizes, got {scales!r}")
        dims = [(int(s), int(s)) if isinstance(s, int) else (int(s[0]), int(s[1])) for s in scales]
        if not isinstance(first_bs, int) or first_bs < 1:
            raise ConfigError(f"MultiScaleSampler.first_bs must be a positive int, got {first_bs!r}")
        base = dims[0][0] * dims[0][1] * first_bs
        if is_training:
            dims = [(w // divided_factor * divided_factor, h // divided_factor * divided_factor) for w, h in dims]
            self.pairs = [(w, h, int(max(1, base / (w * h)))) for w, h in dims]
        else:
            self.pairs = [(dims[0][0], dims[0][1], first_bs)]
        self.n = len(dataset)
        self.per_replica = -(-self.n // world_size)
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.batch_size = first_bs
        rng = np.random.RandomState(mix_seed(seed, "multiscale"))
        self.schedule, current = [], 0
        while current < self.per_replica:
            pair = self.pairs[rng.randint(len(self.pairs))]
            self.schedule.append(pair)
            current += pair[2]
        self.epoch_seed = 0

    def set_epoch(self, epoch_seed):
        self.epoch_seed = epoch_seed

    def __iter__(self):
        indices = np.arange(self.n)
        if self.shuffle:
            np.random.RandomState(self.epoch_seed).shuffle(indices)
        mine = indices[self.rank::self.world_size].tolist()
        start = 0
        for w, h, size in self.schedule:
            ids = mine[start:start + size]
            if len(ids) < size:
                ids += mine[:size - len(ids)]
            start += size
            yield [(w, h, i) for i in ids]

    def __len__(self):
        return len(self.schedule)


def build_dataset(section, mode, class_num=None):
    """The dataset of `DataLoader.<mode>.dataset` (checked)."""
    where = f"DataLoader.{mode}.dataset"
    params = {k: v for k, v in (section or {}).items() if v is not None}  # null = unset
    name = params.pop("name", "ImageNetDataset")
    params.pop("batch_transform_ops", None)
    if name not in DATASETS:
        raise ConfigError(f"{where}.name {name!r} is not supported; known: {', '.join(DATASETS)}")
    try:
        return DATASETS[name](class_num=class_num, **params)
    except TypeError as err:
        raise ConfigError(f"{where} ({name}): {err}") from None
    except DatasetError as err:
        if str(err).startswith("DataLoader."):
            raise
        raise DatasetError(f"{where}: {err}") from None


def _to_tensors(batch):
    """A collated batch (numpy arrays in lists/tuples/dicts) as paddle tensors, as paddle's loader
    returns it with return_list=True (tuples become lists)."""
    if isinstance(batch, np.ndarray):
        return paddle.to_tensor(batch)
    if isinstance(batch, dict):
        return {k: _to_tensors(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [_to_tensors(v) for v in batch]
    return batch


class ThreadedBatches:
    """One epoch of batches read by a background thread, `prefetch` batches ahead.

    Each message on the queue is ("batch", data), ("error", exception) or ("end", None); the thread
    always ends with an error or an end message, so the consumer re-raises a dataset error (with its
    traceback) instead of waiting for a batch that never comes. Closing the iterator early (a break,
    an exception in the training step) stops and joins the thread.
    """

    _POLL = 0.1  # seconds between checks of the stop flag / the thread's liveness

    def __init__(self, dataset, batch_sampler, collate_fn, prefetch=2):
        self.dataset, self.batch_sampler, self.collate_fn = dataset, batch_sampler, collate_fn
        self.queue = queue.Queue(maxsize=max(1, prefetch))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="ppbackbone-reader", daemon=True)

    def _put(self, message):
        while not self.stop.is_set():
            try:
                self.queue.put(message, timeout=self._POLL)
                return True
            except queue.Full:
                continue
        return False

    def _read(self):
        try:
            for indices in self.batch_sampler:
                batch = self.collate_fn([self.dataset[i] for i in indices])
                if not self._put(("batch", batch)):
                    return
            self._put(("end", None))
        except BaseException as err:  # noqa: B902 - every failure must reach the consumer
            self._put(("error", err))

    def __iter__(self):
        self.thread.start()
        try:
            while True:
                try:
                    kind, payload = self.queue.get(timeout=self._POLL)
                except queue.Empty:
                    if not self.thread.is_alive() and self.queue.empty():
                        raise RuntimeError("the data reader thread ended without a result") from None
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                yield _to_tensors(payload)
        finally:
            self.stop.set()
            self.thread.join()


def _quiet_reader_thread_errors():
    """Keep paddle's reader thread from printing its traceback for a dataset error.

    With worker processes, paddle 3.3.1 re-raises a worker's exception in its `_thread_loop` thread
    of the main process; Python prints that thread's traceback (some 40 lines) before the training
    loop learns of the failure, which `Loader.__iter__` then reports as one error naming the file.
    Installed once per process; every other thread error still goes to the previous hook."""
    previous = threading.excepthook
    if getattr(previous, "_ppbackbone", False):
        return

    def hook(args):
        frames, tb = set(), args.exc_traceback
        while tb is not None:
            frames.add(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        if isinstance(args.exc_type, type) and issubclass(args.exc_type, DatasetError) and "_thread_loop" in frames:
            return
        previous(args)

    hook._ppbackbone = True
    threading.excepthook = hook


_WORKER_GRACE = 10.0  # seconds a worker keeps serving after a SIGTERM while its main process lives


def _worker_sigterm(signum, frame):
    """SIGTERM in a worker: keep serving batches, so the main process (blocked waiting for one, it runs
    its own SIGTERM handler only when a batch arrives) ends the run and stops the workers cleanly; a
    worker still alive `_WORKER_GRACE` seconds later (stopped alone, or by paddle) exits with status 0."""
    timer = threading.Timer(_WORKER_GRACE, os._exit, (0,))
    timer.daemon = True
    timer.start()


def _worker_quiet_sigterm(worker_id):
    """Workers leave SIGTERM to the main process (`_worker_sigterm`). A SIGTERM sent to the whole process
    group (a job scheduler's stop) then ends training as it ends a run without workers (one line, exit
    143): by default the workers die of it and paddle reports dead workers before our line. SIGTERM
    arrives here blocked (`_sigterm_deferred`); a pending one is delivered now."""
    signal.signal(signal.SIGTERM, _worker_sigterm)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@contextlib.contextmanager
def _sigterm_deferred():
    """Hold SIGTERM back while paddle forks the worker processes: a signal in the middle of a fork would
    leave a half-started worker (and the main process waiting for it); held back, it reaches the main
    process after the fork and each worker in `_worker_quiet_sigterm`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


class Loader:
    """An epoch-aware data loader: call `set_epoch(e)` before iterating epoch e. With worker
    processes it wraps paddle.io.DataLoader; without, it reads in a `ThreadedBatches` thread."""

    def __init__(self, dataset, batch_sampler, num_workers=0, use_shared_memory=True, collate_fn=None,
                 seed=0, rank=0):
        self.dataset, self.batch_sampler = dataset, batch_sampler
        self.seed, self.rank, self.num_workers = seed, rank, num_workers
        self.epoch = 0
        if num_workers and hasattr(dataset, "error_file"):
            fd, dataset.error_file = tempfile.mkstemp(prefix="ppbackbone-loader-", suffix=".err")
            os.close(fd)
        self.collate_fn = collate_fn or _collate(None)
        self.loader = None
        self._open = weakref.WeakSet()  # epochs being read (`close` stops them)
        if num_workers:
            _quiet_reader_thread_errors()
            self.loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                     use_shared_memory=use_shared_memory, collate_fn=self.collate_fn,
                                     return_list=True, worker_init_fn=_worker_quiet_sigterm)

    def set_epoch(self, epoch):
        """Seed epoch `epoch`'s shuffle order and augmentation (call before iterating)."""
        self.epoch = int(epoch)
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(mix_seed(self.seed, "shuffle", self.epoch))
        if hasattr(self.dataset, "seed_base"):
            self.dataset.seed_base = (self.seed, self.epoch)

    def __iter__(self):
        epoch = self._batches()
        self._open.add(epoch)
        return epoch

    def close(self):
        """Stop every epoch still being read: worker processes joined, reader threads ended. The trainer
        calls it whenever a run ends, so an exception or a SIGTERM in the middle of an epoch stops the
        workers at once rather than when the garbage collector (or interpreter exit) gets to them:
        left to exit, the workers outlive their SIGTERM grace and paddle reports them dead."""
        for epoch in list(self._open):
            if not epoch.gi_running:  # a running one is ending already: its own `finally` stops it
                epoch.close()

    def _batches(self):
        if not self.num_workers:
            yield from ThreadedBatches(self.dataset, self.batch_sampler, self.collate_fn)
            return
        error_file = getattr(self.dataset, "error_file", None)
        batches = None
        try:
            with _sigterm_deferred():
                batches = iter(self.loader)  # forks the workers
            yield from batches
        except Exception:
            message = ""
            if error_file and os.path.exists(error_file):
                with open(error_file, encoding="utf-8") as f:
                    message = f.read()
            if message:
                raise DatasetError(f"A data loader worker failed: {message}") from None
            raise DatasetError("A data loader worker process failed; its traceback (naming the image) is "
                               "printed above") from None
        finally:
            # paddle's iterator stops its workers in __del__; do it now, whatever ended the epoch
            shutdown = getattr(batches, "_try_shutdown_all", None)
            if shutdown is not None:
                shutdown()

    def __del__(self):
        error_file = getattr(self.dataset, "error_file", None)
        if error_file and os.path.exists(error_file):
            try:
                os.remove(error_file)
            except OSError:
                pass

    def __len__(self):
        return len(self.batch_sampler)


def _collate(batch_transform):
    from paddle.io.dataloader.collate import default_collate_fn

    def collate(batch):
        if batch_transform is not None:
            batch = batch_transform(batch)
        return default_collate_fn(batch)
    return collate


def build_dataloader(config, mode, class_num=None, seed=0, rank=None, world_size=None):
    """A Loader for `DataLoader.<mode>` ('Train' shuffles through DistributedBatchSampler and may
    apply batch_transform_ops; 'Eval' shards in order). `class_num` bounds labels and sizes the
    soft targets of Mixup/Cutmix."""
    base = f"DataLoader.{mode}"
    section = get_value(config, base, kind=dict, expect=f"a {base} section with dataset/sampler/loader")
    rank = paddle.distributed.get_rank() if rank is None else rank
    world_size = paddle.distributed.get_world_size() if world_size is None else world_size
    dataset = build_dataset(section.get("dataset"), mode, class_num)
    sampler_cfg = dict(section.get("sampler") or {})
    name = sampler_cfg.get("name", "DistributedBatchSampler")
    if name in _TRAIN_SAMPLERS and mode == "Train":
        params = {k: v for k, v in sampler_cfg.items() if k != "name" and v is not None}
        try:
            batch_sampler = _TRAIN_SAMPLERS[name](dataset, rank=rank, world_size=world_size, seed=seed,
                                                  where=f"{base}.sampler", **params)
        except TypeError as err:
            raise ConfigError(f"{base}.sampler ({name}): {err}") from None
        return _loader(config, base, section, dataset, batch_sampler, class_num, seed, rank)
    if name not in ("DistributedBatchSampler", "BatchSampler"):
        if "batch_size" not in sampler_cfg and "first_bs" in sampler_cfg:
            sampler_cfg["batch_size"] = sampler_cfg["first_bs"]
        warn_once(f"{base}.sampler:{name}", f"{base}.sampler.name {name} (PaddleClas) is not supported: using "
                                            f"DistributedBatchSampler with batch_size {sampler_cfg.get('batch_size')}"
                                            f" at the transforms' image size")
    batch_size = sampler_cfg.get("batch_size")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"{base}.sampler.batch_size={batch_size!r}: expected a positive int (images per rank "
                          f"and step)")
    drop_last = bool(sampler_cfg.get("drop_last", mode == "Train"))
    shuffle = bool(sampler_cfg.get("shuffle", mode == "Train"))
    per_rank = -(-len(dataset) // world_size)
    if drop_last and batch_size > per_rank:
        raise DatasetError(f"{base}.sampler.batch_size={batch_size} with drop_last=True, but the dataset has "
                           f"{len(dataset)} images ({per_rank} per rank on {world_size} rank(s)): no batch would "
                           f"be produced. Lower batch_size or set drop_last: False")
    if mode == "Train":
        batch_sampler = DistributedBatchSampler(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                                num_replicas=world_size, rank=rank)
    else:
        batch_sampler = ShardedBatchSampler(dataset, batch_size, rank, world_size, drop_last)
    return _loader(config, base, section, dataset, batch_sampler, class_num if mode == "Train" else None, seed, rank)


def _multi_scale(dataset, seed, rank, world_size, where, **params):
    unknown = [k for k in params if k not in ("scales", "first_bs", "divided_factor", "is_training", "shuffle")]
    if unknown or "scales" not in params or "first_bs" not in params:
        raise ConfigError(f"{where} MultiScaleSampler needs scales and first_bs (optional divided_factor, "
                          f"is_training, shuffle); got {sorted(params)}")
    return MultiScaleSampler(dataset, seed=seed, rank=rank, world_size=world_size, **params)


def _pk(dataset, seed, **params):
    return PKSampler(dataset, **params)


def _ra(dataset, seed, **params):
    return RASampler(dataset, **params)


# Training samplers built from their own config keys (the rest fall back to DistributedBatchSampler).
_TRAIN_SAMPLERS = {"MultiScaleSampler": _multi_scale, "PKSampler": _pk, "RASampler": _ra}


def _loader(config, base, section, dataset, batch_sampler, class_num, seed, rank):
    """The Loader over `batch_sampler`, with the section's batch ops (train only) and loader keys."""
    batch_ops = section.get("dataset", {}).get("batch_transform_ops") if class_num is not None else None
    batch_transform = build_batch_transform(batch_ops, class_num, f"{base}.dataset.batch_transform_ops")
    num_workers = get_value(config, f"{base}.loader.num_workers", 0, int, lambda v: v >= 0, "an int >= 0")
    use_shm = bool((section.get("loader") or {}).get("use_shared_memory", True))
    return Loader(dataset, batch_sampler, num_workers, use_shm, _collate(batch_transform), seed, rank)
