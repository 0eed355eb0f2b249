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
import contextlib
import os
import random
import time
import uuid

import numpy as np
import paddle
from paddle.base.unique_name import UniqueNameGenerator
from paddle.utils import unique_name

from ..config import build_model, check_output_dir
from ..errors import ConfigError, UserError, get_value, warn_once
from ..data.loader import build_dataloader, mix_seed
from .losses import build_loss
from .metrics import ClassPrecisionRecall, build_metrics
from ..weights.io import load_weights, save_weights
from .checkpoint import (CheckpointError, clean_stale, fault_point, find_checkpoints, load_checkpoint,
                         newest_checkpoint, read_states, remove_checkpoints, save_checkpoint)
from .ema import ModelEMA
from .logging_utils import AverageMeter, ProgressBar, VisualDLWriter, format_eta, setup_logger
from .optim import build_optimizer
from .retrieval import compute_features, retrieval_scores

__all__ = ["Trainer", "NonFiniteLossError"]

# Accumulator names (the part after `<param name>_` in an optimizer state key) per optimizer
# class, to tell a .pdopt of another optimizer before paddle fails on it with an assertion.
_ACCUMULATORS = {
    "Momentum": {"velocity"},
    "SGD": set(),
    "Adam": {"moment1", "moment2", "beta1_pow_acc", "beta2_pow_acc"},
    "AdamW": {"moment1", "moment2", "beta1_pow_acc", "beta2_pow_acc"},
    "Lamb": {"moment1", "moment2", "beta1_pow_acc", "beta2_pow_acc"},
    "RMSProp": {"momentum", "mean_square", "mean_grad"},
}


class NonFiniteLossError(UserError, FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to change."""


def class_names(config, class_num):
    """Class names by label for reports: Infer.PostProcess.class_id_map_file (PaddleClas's `id name`
    lines), or the demo dataset's label list; None when the config names neither (or the file does
    not fit class_num, with a warning)."""
    path = ((config.get("Infer") or {}).get("PostProcess") or {}).get("class_id_map_file")
    dataset = ((config.get("DataLoader") or {}).get("Eval") or {}).get("dataset") or {}
    if not path and dataset.get("name") == "DemoDataset":
        from ..data.demo import ensure_demo_dataset
        path = os.path.join(ensure_demo_dataset(dataset.get("root")), "label_list.txt")
    if not path:
        return None
    names = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(None, 1)
                if len(parts) == 2 and parts[0].isdigit():
                    names[int(parts[0])] = parts[1]
    except OSError as err:
        warn_once(f"class-names:{path}", f"class names for the per-class report: cannot read {path}: {err}")
        return None
    if sorted(names) != list(range(class_num)):
        warn_once(f"class-names:{path}", f"class names for the per-class report: {path} does not list ids "
                                         f"0..{class_num - 1}; printing class ids")
        return None
    return [names[i] for i in range(class_num)]


def _detached(out):
    if isinstance(out, dict):
        return {k: _detached(v) for k, v in out.items()}
    return out.detach() if hasattr(out, "detach") else out


def evaluated_model(model):
    """The model that is evaluated and exported: a DistillationModel's infer_model_name model alone
    (PaddleClas evaluates its Student's output); any other model itself."""
    if hasattr(model, "submodel"):
        return model.submodel(model.infer_model_name)
    return model


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


class _EtaClock:
    """Remaining time of a run from the mean time per iteration so far."""

    def __init__(self, total_iters):
        self.total, self.done, self.start = total_iters, 0, time.time()

    def tick(self):
        self.done += 1

    def remaining(self):
        return (self.total - self.done) * (time.time() - self.start) / max(self.done, 1)


class Trainer:
    """Train or evaluate the model a PaddleClas-schema config describes.

    mode 'train' builds the train loader, optimizer and (if eval_during_train) the eval loader;
    mode 'eval' only the model, eval loader, loss and metrics.
    """

    def __init__(self, config, mode="train"):
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.config, self.mode = config, mode
        self.rank, self.world_size = _dist_info()
        self._read_global()
        self.output_dir = check_output_dir(os.path.join(self.output_root, str(config["Arch"]["name"])),
                                           "Global.output_dir", self.output_root)
        self.log = setup_logger(os.path.join(self.output_dir, f"{mode}.log"), self.rank)
        self._setup_device()
        if self.world_size > 1:
            paddle.distributed.init_parallel_env()
        # Fresh name counters per trainer: parameter and optimizer-state names do not depend on what
        # else this process built, so a checkpoint's optimizer state always finds its tensors.
        self._names = UniqueNameGenerator()
        with self.names():
            self._build()

    # ------------------------------------------------------------------------------------ setup
    def names(self):
        return unique_name.guard(self._names)

    def _read_global(self):
        cfg = self.config
        pos_int = dict(kind=int, check=lambda v: v > 0, expect="a positive int")
        self.epochs = get_value(cfg, "Global.epochs", 1, **pos_int)
        self.print_batch_step = get_value(cfg, "Global.print_batch_step", 10, **pos_int)
        self.save_interval = get_value(cfg, "Global.save_interval", 1, **pos_int)
        self.eval_interval = get_value(cfg, "Global.eval_interval", 1, **pos_int)
        self.start_eval_epoch = get_value(cfg, "Global.start_eval_epoch", 0, int, lambda v: v >= 0, "an int >= 0")
        self.update_freq = get_value(cfg, "Global.update_freq", 1, **pos_int)
        self.eval_during_train = get_value(cfg, "Global.eval_during_train", True, bool, expect="True or False")
        self.use_visualdl = get_value(cfg, "Global.use_visualdl", False, bool, expect="True or False")
        self.seed = get_value(cfg, "Global.seed", 0, int, lambda v: v >= 0, "an int >= 0")
        self.output_root = get_value(cfg, "Global.output_dir", "./output/", str, expect="a folder path")
        for path in (self.output_root, os.path.join(self.output_root, str(cfg["Arch"]["name"]))):
            if os.path.exists(path) and not os.path.isdir(path):
                raise ConfigError(f"Global.output_dir={self.output_root!r}: {path} is a file, not a folder (choose "
                                  f"another Global.output_dir)")
        self.checkpoints = get_value(cfg, "Global.checkpoints", None, str, expect="a checkpoint path prefix")
        self.pretrained_model = get_value(cfg, "Global.pretrained_model", None, str, expect="a weights file path")
        self.device = str(get_value(cfg, "Global.device", "gpu", str, expect="gpu, cpu, xpu, ...")).lower()
        self.overwrite = get_value(cfg, "Global.overwrite", False, bool, expect="True or False")
        self.eval_mode = get_value(cfg, "Global.eval_mode", "classification", str,
                                   lambda v: v in ("classification", "retrieval"), "classification or retrieval")

    def _setup_device(self):
        device = self.device
        if device == "gpu" and not paddle.device.is_compiled_with_cuda():
            warn_once("device", "Global.device=gpu but this PaddlePaddle build has no CUDA: running on CPU")
            device = "cpu"
        elif device not in ("gpu", "cpu") and device not in paddle.device.get_all_custom_device_type() and \
                not getattr(paddle.device, f"is_compiled_with_{device}", lambda: False)():
            raise ConfigError(f"Global.device={self.device!r} is not available in this PaddlePaddle build "
                              f"(use gpu or cpu)")
        if device == "gpu" and self.world_size > 1:
            device = f"gpu:{paddle.distributed.ParallelEnv().device_id}"
        paddle.set_device(device)
        self.on_cpu = device == "cpu"

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
            load_weights(self.model, self.pretrained_model)
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
        if get_value(cfg, "Global.to_static", False, bool, expect="True or False"):
            self._apply_to_static()

    def _apply_to_static(self):
        """Global.to_static: run the model as a static graph (paddle.jit.to_static), with PaddleClas's
        input spec: [None] + Global.image_shape (+ an int64 [None, 1] label for margin heads)."""
        specs = None
        if self.config.get("Global", {}).get("image_shape") is not None:
            shape = [None] + [int(v) for v in self.config["Global"]["image_shape"]]
            specs = [paddle.static.InputSpec(shape, "float32", "x", stop_gradient=True)]
            if getattr(self.model, "needs_label", False):
                specs.append(paddle.static.InputSpec([None], "int64", "label", stop_gradient=True))
        self.model = paddle.jit.to_static(self.model, input_spec=specs, full_graph=True)
        self.train_model = paddle.DataParallel(self.model) if (self.world_size > 1 and self.mode == "train") \
            else self.model
        self.log.info(f"Global.to_static: the model runs as a static graph (input spec {specs})")

    def _build_loaders(self):
        """Train loader (train mode); the eval loader, or the Gallery and Query loaders of a retrieval
        evaluation (DataLoader.Eval.Gallery / .Query)."""
        cfg, args = self.config, (self.class_num or None, self.seed, self.rank, self.world_size)
        self.train_loader = self.eval_loader = None
        self.gallery_loader = self.query_loader = None
        if self.mode == "train":
            self.train_loader = build_dataloader(cfg, "Train", *args)
        if not (self.mode == "eval" or self.eval_during_train):
            return
        if self.mode != "eval" and "Eval" not in (cfg.get("DataLoader") or {}):
            warn_once("noeval", "Global.eval_during_train is True but DataLoader.Eval is missing: no evaluation")
            return
        if self.eval_mode == "classification":
            self.eval_loader = build_dataloader(cfg, "Eval", *args)
            return
        for part in ("Gallery", "Query"):
            get_value(cfg, f"DataLoader.Eval.{part}", kind=dict,
                      expect=f"Global.eval_mode=retrieval needs a DataLoader.Eval.{part} section (dataset/sampler/"
                             f"loader) with the {part.lower()} images")
        self.gallery_loader = build_dataloader(cfg, "Eval.Gallery", None, *args[1:])
        self.query_loader = build_dataloader(cfg, "Eval.Query", None, *args[1:])
        self.eval_loader = self.query_loader  # "there is an evaluation"

    def _setup_amp(self):
        amp = self.config.get("AMP")
        self.amp_enabled, self.scaler, self.amp_level = False, None, "O1"
        if not amp or not amp.get("use_amp", True):
            return
        if self.on_cpu:
            warn_once("amp-cpu", "AMP.use_amp: paddle's automatic mixed precision has no effect on CPU (float16 "
                                 "kernels need a GPU); training in float32")
            return
        level = str(amp.get("level", "O1")).upper()
        if level not in ("O1", "O2"):
            raise ConfigError(f"AMP.level={amp.get('level')!r}: use O1 or O2")
        self.amp_level, self.amp_enabled = level, True
        self.amp_dtype = str(amp.get("dtype", "float16"))
        self.amp_promote = bool(amp.get("use_promote", False))
        if self.amp_dtype == "float16":
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=float(amp.get("scale_loss", 1.0)),
                                                use_dynamic_loss_scaling=bool(amp.get("use_dynamic_loss_scaling",
                                                                                      False)))
        if level == "O2":
            self.model = paddle.amp.decorate(models=self.model, level="O2", dtype=self.amp_dtype)

    def _autocast(self):
        if not self.amp_enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(True, level=self.amp_level, dtype=self.amp_dtype, use_promote=self.amp_promote)

    # ------------------------------------------------------------------------------------ checkpoints
    def _resume(self, prefix):
        ckpt = load_checkpoint(prefix)
        states = ckpt["states"]
        saved_name = states.get("model_name")
        if saved_name and saved_name != self.model_name:
            raise CheckpointError(f"Global.checkpoints={prefix!r} was saved from model {saved_name!r}, but the config "
                                  f"builds {self.model_name!r}")
        done = int(states.get("epoch", 0))
        if done > self.epochs:
            raise CheckpointError(f"Global.checkpoints={prefix!r} is at epoch {done}, beyond Global.epochs="
                                  f"{self.epochs}: nothing to train. Set Global.epochs above {done} to train it "
                                  f"further, or use Global.pretrained_model to start a new run from its weights")
        self._check_state(ckpt["model"], ckpt["prefix"] + ".pdparams")
        self.model.set_state_dict(ckpt["model"])
        if self.ema is not None:
            if ckpt["ema"] is not None:
                self.ema.set_state_dict(ckpt["ema"])
            else:
                warn_once("ema-resume", f"{prefix} has no EMA weights (.pdema): EMA restarts from the model weights")
                self.ema = ModelEMA(self.model, self.ema.decay)
        self.start_epoch = done + 1
        steps = max(1, self.iters_per_epoch // self.update_freq)
        self.global_step = int(states.get("global_step", done * steps))
        self._set_optimizer_state(ckpt["optimizer"], ckpt["prefix"], states, done)
        self.best_metric = float(states.get("best_metric", states.get("metric", -1.0)))
        self.best_epoch = int(states.get("best_epoch", 0))
        self.run_id = states.get("run_id") or self.run_id
        self.resumed_from = ckpt["prefix"]
        if self.scaler is not None and states.get("scaler"):
            self.scaler.load_state_dict(states["scaler"])
        self.log.info(f"Resumed from {ckpt['prefix']}: continuing at epoch {self.start_epoch}/{self.epochs} "
                      f"(global step {self.global_step}, best metric {self.best_metric:.5f})")
        if done == self.epochs:
            self.log.warning(f"{ckpt['prefix']} already finished all {self.epochs} epochs: nothing to train. Raise "
                             f"Global.epochs to train it further")

    def _check_state(self, state, path):
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
                      if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or mismatched:
            raise CheckpointError(
                f"{path} does not fit {self.model_name} (class_num {self.class_num}): {len(missing)} missing, "
                f"{len(unexpected)} unexpected, {len(mismatched)} shape-mismatched tensor(s), e.g. "
                f"{(missing or unexpected or mismatched)[:3]}. Resuming needs a checkpoint of the same model; to "
                f"start from its weights instead, use Global.pretrained_model")

    def _set_optimizer_state(self, state, base, states, done):
        """Load a .pdopt state; refuse one of other parameters or another optimizer; keep the lr
        schedule's position when the run's length changed (the schedule is re-planned over the new
        Global.epochs and continues at the checkpoint's step)."""
        state = dict(state or {})
        path = base + ".pdopt"
        keys = [k for k in state if k not in ("LR_Scheduler", "master_weights")]
        names = sorted((p.name for p in self.model.parameters() if not p.stop_gradient), key=len, reverse=True)
        owner = {k: next((n for n in names if k.startswith(n + "_")), None) for k in keys}
        unknown = [k for k, n in owner.items() if n is None]
        if unknown:
            raise CheckpointError(f"{path} holds optimizer state for other parameters (e.g. {unknown[:2]}): "
                                  f"was it written by another model? Use Global.pretrained_model to start from its "
                                  f"weights with a fresh optimizer")
        ours = type(self.optimizer).__name__
        saved = states.get("optimizer")
        kinds = {k[len(n) + 1:].rsplit("_", 1)[0] for k, n in owner.items()}
        expected = _ACCUMULATORS.get(ours)
        if (saved and saved != ours) or (expected is not None and kinds - expected):
            found = saved or ", ".join(sorted(kinds - expected))
            raise CheckpointError(f"{path} is the state of another optimizer ({found}) but Optimizer.name builds "
                                  f"{ours}: resume with the optimizer the run was trained with, or use "
                                  f"Global.pretrained_model={base}.pdparams to start from its weights with a fresh "
                                  f"{ours}")
        same_plan = states.get("epochs") in (None, self.epochs) and \
            states.get("steps_per_epoch") in (None, max(1, self.iters_per_epoch // self.update_freq))
        lr_state = state.get("LR_Scheduler")
        if isinstance(self.scheduler, paddle.optimizer.lr.LRScheduler):
            if not same_plan or lr_state is None:
                position = done if self.scheduler.by_epoch else self.global_step
                self.scheduler.step(position)
                why = "has no schedule state" if lr_state is None else \
                    f"was planned for {states.get('epochs')} epochs"
                self.log.info(f"{path} {why}: the learning-rate schedule for Global.epochs={self.epochs} continues "
                              f"at {'epoch' if self.scheduler.by_epoch else 'step'} {position} (lr "
                              f"{self.scheduler():.6g})")
                state["LR_Scheduler"] = self.scheduler.state_dict()  # set_state_dict loads it back
        try:
            self.optimizer.set_state_dict(state)
        except (AssertionError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path} does not fit the {ours} optimizer of this config ({type(err).__name__}: "
                                  f"{err})") from None

    def _states(self, epoch, metric):
        states = {"metric": float(metric), "epoch": int(epoch), "best_metric": float(self.best_metric),
                  "best_epoch": int(self.best_epoch), "global_step": int(self.global_step),
                  "model_name": self.model_name, "class_num": self.class_num, "seed": self.seed,
                  "epochs": self.epochs, "steps_per_epoch": max(1, self.iters_per_epoch // self.update_freq),
                  "optimizer": type(self.optimizer).__name__, "run_id": self.run_id}
        if self.scaler is not None:
            states["scaler"] = self.scaler.state_dict()
        return states

    def save(self, names, epoch, metric):
        """Write checkpoint(s) output_dir/<Arch.name>/<name> for each of `names` (one name or a list,
        published in that order; rank 0 only). Returns the prefixes."""
        if self.rank != 0:
            return None
        names = [names] if isinstance(names, str) else list(names)
        prefixes = save_checkpoint([os.path.join(self.output_dir, n) for n in names], self.model.state_dict(),
                                   self.optimizer.state_dict(), self._states(epoch, metric),
                                   ema_state=self.ema.state_dict() if self.ema is not None else None)
        self.log.info(f"Saved checkpoint {', '.join(prefixes)}")
        self._save_infer_model(prefixes)
        return prefixes

    def _save_infer_model(self, prefixes):
        """A DistillationModel's infer_model_name model alone, under its own key names, beside each
        checkpoint (`<prefix>.<name>.pdparams`: loads with create_model / Global.pretrained_model)."""
        infer_name = getattr(self.model, "infer_model_name", None)
        if not infer_name:
            return
        weights = self.ema.state_dict() if self.ema is not None else self.model.state_dict()
        head = f"{infer_name}."
        alone = {k[len(head):]: v for k, v in weights.items() if k.startswith(head)}
        for prefix in prefixes:
            path = save_weights(alone, f"{prefix}.{infer_name}.pdparams")
            self.log.info(f"Saved {infer_name} weights alone: {path}")

    def _claim_output_dir(self):
        """Refuse to train into a run directory holding another run's checkpoints (unless
        Global.overwrite, which deletes them); remove what killed saves left behind."""
        if self.rank == 0:
            removed = clean_stale(self.output_dir)
            if removed:
                self.log.info(f"Removed {len(removed)} leftover(s) of an interrupted save in {self.output_dir}")
        foreign = {}
        for name, prefix in find_checkpoints(self.output_dir).items():
            if self.resumed_from and os.path.realpath(prefix) == os.path.realpath(self.resumed_from):
                continue
            try:
                run_id = read_states(prefix).get("run_id")
            except Exception:  # unreadable or absent .pdstates: not provably ours
                run_id = None
            same_dir = self.resumed_from and os.path.samefile(os.path.dirname(os.path.abspath(self.resumed_from)),
                                                              self.output_dir)
            if run_id != self.run_id and not (same_dir and run_id is None):
                foreign[name] = prefix
        if not foreign:
            return
        if self.overwrite:
            if self.rank == 0:
                self.log.warning(f"Global.overwrite: deleting the checkpoints of another run in {self.output_dir}: "
                                 f"{', '.join(sorted(foreign))}")
                remove_checkpoints(self.output_dir, keep=self.resumed_from)
            return
        newest = newest_checkpoint(self.output_dir) or os.path.join(self.output_dir, "latest")
        raise CheckpointError(
            f"{self.output_dir} already holds checkpoints of another run ({', '.join(sorted(foreign))}); this run "
            f"would overwrite them. Either resume that run: -o Global.checkpoints={newest}, or start a new one over "
            f"it, deleting them: -o Global.overwrite=True (or choose another Global.output_dir)")

    # ------------------------------------------------------------------------------------ training
    def _epoch_hook(self, epoch_index, total):
        hook = getattr(self.model, "on_epoch_begin", None)
        if callable(hook):
            hook(epoch_index, total)

    def current_lr(self):
        return float(self.optimizer.get_lr())

    def train(self):
        """Run epochs start_epoch..epochs; returns {'best_metric', 'best_epoch', 'last_eval', 'epochs_run'}."""
        if self.mode != "train":
            raise RuntimeError("Trainer was built in eval mode")
        with self.names():
            return self._train()

    def _train(self):
        vdl = VisualDLWriter(os.path.join(self.output_root, "vdl"), self.use_visualdl and self.rank == 0)
        self._log_start()
        eta = _EtaClock((self.epochs - self.start_epoch + 1) * self.iters_per_epoch)
        last_eval = {}
        for epoch in range(self.start_epoch, self.epochs + 1):
            self.train_epoch(epoch, eta, vdl)
            last_eval = self._eval_and_save(epoch, vdl) or last_eval
        vdl.close()
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "last_eval": last_eval,
                "epochs_run": max(0, self.epochs - self.start_epoch + 1)}

    def _log_start(self):
        if self.world_size > 1 and self.rank == 0:
            self.log.info(f"Distributed: {self.world_size} ranks; this console shows rank 0, the others log to "
                          f"log/workerlog.N (look there if a rank fails)")
        self.log.info(f"Training {self.model_name} ({sum(int(np.prod(p.shape)) for p in self.model.parameters()):,} "
                      f"params, {self.class_num} classes) for {self.epochs} epochs, {self.iters_per_epoch} iterations "
                      f"of {self.train_loader.batch_sampler.batch_size} x {self.world_size} images each; output "
                      f"{self.output_dir}")

    def train_epoch(self, epoch, eta, vdl):
        """One pass over DataLoader.Train (1-based `epoch`): forward/backward every batch, an optimizer
        step every `update_freq` batches, logs every `print_batch_step`. Returns {loss name: mean}."""
        self.train_loader.set_epoch(epoch)
        paddle.seed(mix_seed(self.seed, "paddle", epoch, self.rank))
        self._epoch_hook(epoch - 1, self.epochs)
        self.train_model.train()
        for m in self.train_metrics:
            m.reset()
        loss_meters = {}
        batch_time, reader_time = AverageMeter(), AverageMeter()
        tic = time.time()
        for it, (images, labels) in enumerate(self.train_loader):
            reader_time.update(time.time() - tic)
            logits, values = self._train_step(images, labels, it)
            n = int(images.shape[0])
            self.history.append({"epoch": epoch, "iter": it, "step": self.global_step,
                                 "lr": self.current_lr(), "loss": values["loss"]})
            if not np.isfinite(values["loss"]):
                raise NonFiniteLossError(f"the training loss is {values['loss']} at epoch {epoch}, iteration {it} "
                                         f"(lr {self.current_lr():.6g}): training diverged. Lower "
                                         f"Optimizer.lr.learning_rate (or add warmup), check the data and labels, "
                                         f"then resume from the last checkpoint in {self.output_dir}")
            for k, v in values.items():
                loss_meters.setdefault(k, AverageMeter()).update(v, n)
            for m in self.train_metrics:
                m.update(_detached(logits), labels)
            batch_time.update(time.time() - tic)
            eta.tick()
            if it % self.print_batch_step == 0 or it == self.iters_per_epoch - 1:
                self._log_train(epoch, it, loss_meters, batch_time, reader_time, n, eta.remaining(), vdl)
            tic = time.time()
        if self.scheduler.by_epoch:
            self.scheduler.step()
        summary = ", ".join([f"{k}: {m.avg:.5f}" for k, m in loss_meters.items()] +
                            [f"{k}: {v:.5f}" for m in self.train_metrics for k, v in m.accumulate().items()])
        self.log.info(f"[Train][Epoch {epoch}/{self.epochs}][Avg] {summary}")
        return {k: m.avg for k, m in loss_meters.items()}

    def _train_step(self, images, labels, it):
        """Forward and backward one batch (gradients accumulate over `update_freq` batches, then
        `_optimizer_step`). Returns (logits, {loss name: float})."""
        with self._autocast():
            if getattr(self.model, "needs_label", False):
                logits = self.train_model(images, labels)
            else:
                logits = self.train_model(images)
            losses = self.train_loss(logits, labels)
        loss = losses["loss"] / self.update_freq
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        if (it + 1) % self.update_freq == 0:
            self._optimizer_step()
        return logits, {k: float(v) for k, v in losses.items()}

    def _optimizer_step(self):
        """Apply the accumulated gradients, then the per-step lr schedule and EMA."""
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.clear_grad()
        if not self.scheduler.by_epoch:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        fault_point("step")

    def _eval_and_save(self, epoch, vdl):
        """After an epoch: evaluate when due (EMA weights too), write epoch_N / best_model / latest.
        Returns the evaluation results ({} when no evaluation ran)."""
        metric, results = self.best_metric, {}
        if self.eval_loader is not None and self.eval_during_train and epoch % self.eval_interval == 0 \
                and epoch >= self.start_eval_epoch:
            results = self.evaluate(epoch=epoch)
            self._metric_key = self._metric_key or next(k for k in results if k != "loss")
            metric = results[self._metric_key]
            if self.ema is not None:
                with self.ema.applied_to(self.model):
                    ema_eval = self.evaluate(epoch=epoch, tag="Eval EMA")
                results.update({f"ema_{k}": v for k, v in ema_eval.items()})
                metric = max(metric, ema_eval[self._metric_key])
            for k, v in results.items():
                vdl.add_scalar(f"eval/{k}", v, epoch)
        names = []
        if results:
            if metric > self.best_metric:
                self.best_metric, self.best_epoch = metric, epoch
                names.append("best_model")
            self.log.info(f"[Eval][Epoch {epoch}] best {self._metric_key}: {self.best_metric:.5f} (epoch "
                          f"{self.best_epoch})")
        if epoch % self.save_interval == 0:
            names.append(f"epoch_{epoch}")
        # best_model first: a set of epoch N on disk then implies best_model is up to date to epoch N,
        # so resuming from any of them after a kill ends with the same best_model
        self.save(names + ["latest"], epoch, metric)
        return results

    def _log_train(self, epoch, it, loss_meters, batch_time, reader_time, n, eta, vdl):
        lr = self.current_lr()
        ips = n * self.world_size / max(batch_time.avg, 1e-9)
        metrics = {k: v for m in self.train_metrics for k, v in m.accumulate().items()}
        text = ", ".join([f"{k}: {m.avg:.5f}" for k, m in loss_meters.items()] +
                         [f"{k}: {v:.5f}" for k, v in metrics.items()])
        self.log.info(f"[Train][Epoch {epoch}/{self.epochs}][Iter {it}/{self.iters_per_epoch}] lr: {lr:.6f}, {text}, "
                      f"batch_cost: {batch_time.avg:.4f}s, reader_cost: {reader_time.avg:.4f}s, ips: {ips:.1f} "
                      f"images/s, eta: {format_eta(eta)}")
        step = self.global_step
        vdl.add_scalar("train/lr", lr, step)
        vdl.add_scalar("train/loss", loss_meters["loss"].avg, step)
        vdl.add_scalar("train/ips", ips, step)
        for k, v in metrics.items():
            vdl.add_scalar(f"train/{k}", v, step)

    # ------------------------------------------------------------------------------------ evaluation
    @paddle.no_grad()
    def evaluate(self, epoch=None, tag="Eval"):
        """One pass over DataLoader.Eval: {'loss': mean loss, 'top1': ..., 'top5': ...} summed over ranks."""
        if self.eval_loader is None:
            raise ConfigError("DataLoader.Eval is required for evaluation")
        if self.eval_mode == "retrieval":
            return self._evaluate_retrieval(epoch, tag)
        with self.names():
            if self.mode == "eval":
                self._epoch_hook(self.epochs, self.epochs)
            was_training = self.model.training
            self.model.eval()
            metrics = self.eval_metrics + ([self.class_report] if self.class_report is not None else [])
            for m in metrics:
                m.reset()
            self.eval_loader.set_epoch(0)
            loss_sum, count = 0.0, 0
            bar = ProgressBar(len(self.eval_loader), f"[{tag}]" + (f"[Epoch {epoch}]" if epoch else ""),
                              enabled=self.rank == 0)
            start = time.time()
            for images, labels in self.eval_loader:
                with self._autocast():
                    logits = evaluated_model(self.model)(images)
                n = int(images.shape[0])
                loss_sum += float(self.eval_loss(logits, labels)["loss"]) * n
                count += n
                for m in self.eval_metrics:
                    m.update(logits, labels)
                if self.class_report is not None:
                    self.class_report.update(logits, labels)
                bar.update()
            totals = np.concatenate([np.array([loss_sum, count], dtype="float64")] +
                                    [m.state().astype("float64") for m in metrics])
            if self.world_size > 1:
                tensor = paddle.to_tensor(totals)
                paddle.distributed.all_reduce(tensor)
                totals = tensor.numpy()
            loss_sum, count = float(totals[0]), int(round(totals[1]))
            offset = 2
            result = {"loss": loss_sum / max(count, 1)}
            for m in metrics:
                size = len(m.state())
                m.load_state(np.round(totals[offset:offset + size]).astype("int64"))
                offset += size
                if m is not self.class_report:
                    result.update(m.accumulate())
            if was_training:
                self.model.train()
        text = ", ".join(f"{k}: {v:.5f}" for k, v in result.items())
        self.log.info(f"[{tag}]" + (f"[Epoch {epoch}]" if epoch else "") + f"[Avg] {text} ({count} images, "
                      f"{time.time() - start:.1f}s)")
        for m in self.eval_metrics:
            if hasattr(m, "info") and m.info():
                self.log.info(f"[{tag}] {type(m).__name__}: {m.info()}")
        if self.mode == "eval" and self.class_report is not None:
            self.log.info(f"[{tag}] per-class precision / recall:\n" +
                          "\n".join(self.class_report.report(class_names(self.config, self.class_num))))
        return result

    def _evaluate_retrieval(self, epoch, tag):
        """Embed DataLoader.Eval.Gallery and .Query, rank by cosine similarity, score with the
        retrieval metrics (Recallk, mAP, ...). Returns {metric key: value}."""
        cfg = self.config
        feature_from = get_value(cfg, "Global.retrieval_feature_from", "features", str,
                                 lambda v: v in ("features", "backbone"), "features or backbone")
        normalize = get_value(cfg, "Global.feature_normalize", True, bool, expect="True or False")
        block = get_value(cfg, "Global.sim_block_size", 64, int, lambda v: v > 0, "a positive int")
        start = time.time()
        with self.names():
            if self.mode == "eval":
                self._epoch_hook(self.epochs, self.epochs)
            was_training = self.model.training
            self.model.eval()
            sets = {}
            for name, loader in (("gallery", self.gallery_loader), ("query", self.query_loader)):
                loader.set_epoch(0)
                sets[name] = compute_features(self.model, loader, feature_from, normalize, self.world_size,
                                              self._autocast)
            if was_training:
                self.model.train()
        (gallery, gallery_label), (query, query_label) = sets["gallery"], sets["query"]
        result = retrieval_scores(query, query_label, gallery, gallery_label, self.eval_metrics, block)
        text = ", ".join(f"{k}: {v:.5f}" for k, v in result.items())
        self.log.info(f"[{tag}]" + (f"[Epoch {epoch}]" if epoch else "") + f"[Avg] {text} ({len(query)} queries, "
                      f"{len(gallery)} gallery images, {time.time() - start:.1f}s)")
        return result
