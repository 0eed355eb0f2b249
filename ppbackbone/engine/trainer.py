"""The training and evaluation engine behind tools/train.py and tools/eval.py.

`Trainer(config)` builds everything the config describes before any work starts (model, data,
loss, metrics, optimizer + lr schedule, EMA, AMP, checkpoints to resume or weights to fine-tune
from), so a bad value fails in seconds. `train()` runs the epochs; `evaluate()` runs one pass over
`DataLoader.Eval`.

Model hook: if the model has a method `on_epoch_begin(epoch, total_epochs)`, the trainer calls it
at the start of every epoch (`epoch` is 0-based: the number of epochs completed; a resumed run calls
it for the epoch it resumes at). Standalone evaluation calls `on_epoch_begin(total_epochs,
total_epochs)`: the model as it is at the end of training. Families with schedule-dependent
structure (e.g. VanillaNet's deep-training activation blend) use it.
"""
import os
import random
import uuid

import numpy as np
import paddle
from paddle.base.unique_name import UniqueNameGenerator
from paddle.utils import unique_name

from ..arch.build import build_model
from ..errors import ConfigError, check_output_dir, get_value
from ..weights.io import load_weights
from .ema import ModelEMA
from .evaluation import Evaluation
from .logging_utils import setup_logger
from .losses import build_loss
from .metrics import ClassPrecisionRecall, build_metrics
from .optim import build_optimizer
from .run_checkpoints import RunCheckpoints
from .run_lock import RunLock
from .run_setup import RunSetup
from .train_loop import NonFiniteLossError, TrainLoop

__all__ = ["Trainer", "NonFiniteLossError"]


def check_loss_inputs(model, loss, where, evaluated=False):
    """A loss list that reads outputs the model does not produce is an error naming the key:
    CE-type losses need logits (a RecModel needs Arch.Head), triplet losses need a RecModel's
    features, Distillation* losses a DistillationModel in training (`evaluated`: the loss sees the
    infer_model_name model's output alone, as in PaddleClas's evaluation)."""
    from ..arch.recognition import RecModel
    from .losses import TripletAngularMarginLoss, TripletLoss
    if loss is None:
        return
    inner = getattr(model, "submodel", None)
    target = inner(model.infer_model_name) if inner else model
    for name, fn in zip(loss.names, loss.losses):
        wants_features = isinstance(fn, (TripletLoss, TripletAngularMarginLoss))
        if wants_features and not isinstance(target, RecModel):
            raise ConfigError(f"{where}: {name} needs embeddings ('features'): use Arch.name: RecModel with a "
                              f"Backbone and a Neck (it is {type(target).__name__})")
        if not wants_features and not name.startswith("Distillation") and isinstance(target, RecModel) \
                and target.head is None:
            raise ConfigError(f"{where}: {name} needs logits, but the RecModel has no Arch.Head (add e.g. Head: "
                              f"{{name: FC, embedding_size: {target.feature_dim}, class_num: N}}) or drop {name}")
        if name.startswith("Distillation") and (not inner or evaluated):
            raise ConfigError(f"{where}: {name} needs Arch.name: DistillationModel in training (evaluation sees "
                              f"the evaluated model's output alone: use CELoss there)")
        if inner and not evaluated and not name.startswith("Distillation"):
            raise ConfigError(f"{where}: {name} reads one model's output, but Arch.name is DistillationModel: use "
                              f"DistillationGTCELoss (model_names: [{model.infer_model_name}]) and the other "
                              f"Distillation* losses")


def _dist_info():
    return paddle.distributed.get_rank(), paddle.distributed.get_world_size()


class Trainer(RunSetup, RunCheckpoints, TrainLoop, Evaluation):
    """Train or evaluate the model a PaddleClas-schema config describes.

    mode 'train' builds the train loader, optimizer and (if eval_during_train) the eval loader;
    mode 'eval' only the model, eval loader, loss and metrics.

    Its parts live by concern: run_setup.py (config values, device, loaders, AMP, to_static),
    run_checkpoints.py (resume, save, the output directory), train_loop.py (epochs and steps),
    evaluation.py (evaluation passes).
    """

    def __init__(self, config, mode="train"):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.config, self.mode = config, mode
        self.rank, self.world_size = _dist_info()
        self._read_global()
        self.output_dir = check_output_dir(os.path.join(self.output_root, str(config["Arch"]["name"])),
                                           "Global.output_dir", self.output_root)
        # One training run per folder (rank 0 holds the lock): taken before anything is written there,
        # so a refused run leaves the other run's train.log and checkpoints alone.
        self.run_lock = RunLock(self.output_dir).acquire() if mode == "train" and self.rank == 0 else None
        try:
            self.log = setup_logger(os.path.join(self.output_dir, f"{mode}.log"), self.rank)
            self._setup_device()
            if self.world_size > 1:
                paddle.distributed.init_parallel_env()
            # Fresh name counters per trainer: parameter and optimizer-state names do not depend on what
            # else this process built, so a checkpoint's optimizer state always finds its tensors.
            self._names = UniqueNameGenerator()
            with self.names():
                self._build()
        except BaseException:
            self.release_lock()
            raise

    def release_lock(self):
        """Let another run use the output folder (train() does it when it ends)."""
        if self.run_lock is not None:
            self.run_lock.release()

    def names(self):
        return unique_name.guard(self._names)

    def _build(self):
        cfg = self.config
        paddle.seed(self.seed)
        random.seed(self.seed)
        np.random.seed(self.seed)
        self.model = build_model(cfg)
        self.model_name = getattr(self.model, "model_name", cfg["Arch"]["name"])
        self.class_num = int(getattr(self.model, "num_classes", 0) or 0)
        if self.class_num <= 0 and cfg["Arch"]["name"] not in ("RecModel", "DistillationModel"):
            raise ConfigError(f"Arch.class_num must be > 0 for classification training, got {self.class_num}")
        if self.pretrained_model and not self.checkpoints:
            load_weights(self.model, self.pretrained_model, allow_nonfinite=self.allow_nonfinite)
        self._use_cpu_convs()
        self._build_loaders()
        loss_cfg, metric_cfg = cfg.get("Loss") or {}, cfg.get("Metric") or {}
        default_loss = default_metric = None
        infer_name = getattr(self.model, "infer_model_name", None)
        if infer_name:  # a DistillationModel: trained on the outputs of all, evaluated on infer_name's alone
            default_loss = [{"DistillationGTCELoss": {"weight": 1.0, "model_names": [infer_name]}}]
            default_metric = [{"DistillationTopkAcc": {"model_key": infer_name, "topk": [1, 5]}}]
        self.train_loss = build_loss(loss_cfg.get("Train") or default_loss, "Loss.Train") \
            if self.mode == "train" else None
        self.eval_loss = build_loss(loss_cfg.get("Eval"), "Loss.Eval") if self.eval_mode == "classification" \
            else None
        check_loss_inputs(self.model, self.train_loss, "Loss.Train")
        check_loss_inputs(self.model, self.eval_loss, "Loss.Eval", evaluated=True)
        self.train_metrics = []
        if self.mode == "train" and (metric_cfg.get("Train") or self.class_num > 0):  # no head: no default
            self.train_metrics = build_metrics(metric_cfg.get("Train") or default_metric, "Metric.Train")
        eval_metric = metric_cfg.get("Eval") or (default_metric if self.eval_mode == "classification" else None)
        self.eval_metrics = build_metrics(eval_metric, "Metric.Eval", kind=self.eval_mode)
        self.class_report = ClassPrecisionRecall(self.class_num) if self.class_num > 0 else None
        self._setup_amp()
        self.ema = None
        self.optimizer = self.scheduler = None
        self.start_epoch, self.global_step = 1, 0
        self.run_id = uuid.uuid4().hex  # kept by checkpoints: which run a checkpoint belongs to
        self.best_metric, self.best_epoch = -1.0, 0
        self.history = []  # one record per iteration: epoch, iter, step, lr, loss (cheap; tests and tools use it)
        self._metric_key = None  # the first eval metric (e.g. top1): what best_model is chosen by
        if self.mode == "train":
            self.iters_per_epoch = len(self.train_loader)
            steps = max(1, self.iters_per_epoch // self.update_freq)
            if "Optimizer" not in cfg:
                raise ConfigError("Optimizer section is required for training (e.g. name: Momentum, lr: {...})")
            opt_cfg = dict(cfg["Optimizer"])
            if self.amp_enabled and self.amp_level == "O2":
                opt_cfg["multi_precision"] = True  # float32 master weights for the O2 half-precision params
            self.optimizer, self.scheduler = build_optimizer(opt_cfg, self.model, self.epochs, steps)
            if cfg.get("EMA") is not None:
                decay = get_value(cfg, "EMA.decay", 0.9999, float, lambda v: 0 < v < 1, "a number in (0, 1)")
                self.ema = ModelEMA(self.model, decay)
            self.resumed_from = None
            if self.checkpoints:
                self._resume(self.checkpoints)
            self._claim_output_dir()
        self.train_model = paddle.DataParallel(self.model) if (self.world_size > 1 and self.mode == "train") \
            else self.model
        self._apply_to_static()

    def train(self):
        """Run epochs start_epoch..epochs; returns {'best_metric', 'best_epoch', 'last_eval', 'epochs_run'}."""
        if self.mode != "train":
            raise RuntimeError("Trainer was built in eval mode")
        try:
            with self.names():
                return self._train()
        finally:
            self.close()

    def close(self):
        """Stop the data loaders' workers and threads, then let another run use the output folder. train()
        does it when it ends, however it ends; an eval-mode trainer's owner calls it after evaluate()."""
        for name in ("train_loader", "eval_loader", "gallery_loader", "query_loader"):
            loader = getattr(self, name, None)
            if loader is not None:
                loader.close()
        self.release_lock()
