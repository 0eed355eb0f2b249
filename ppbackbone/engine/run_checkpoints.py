"""A run's checkpoints as the Trainer uses them: resume from one (model, EMA, optimizer and lr-schedule
state, checked to fit), save them, and claim the output directory from other runs. The file format is
checkpoint.py's."""
import os
import warnings

import paddle

from ..errors import warn_once
from ..weights.io import check_finite, describe_nonfinite, save_weights
from .checkpoint import (CheckpointError, clean_stale, find_checkpoints, load_checkpoint, newest_checkpoint,
                         read_states, remove_checkpoints, save_checkpoint)
from .ema import ModelEMA
from .train_loop import NonFiniteLossError

__all__ = ["RunCheckpoints"]

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


class RunCheckpoints:
    """Resume, save and claim the output directory (a part of Trainer; it uses the Trainer's attributes)."""

    def _resume(self, prefix):
        ckpt = load_checkpoint(prefix, allow_nonfinite=self.allow_nonfinite)
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
        self.start_epoch, self.resumed_from = done + 1, ckpt["prefix"]
        self.run_id = states.get("run_id") or self.run_id
        self.best_metric = float(states.get("best_metric", states.get("metric", -1.0)))
        self.best_epoch = int(states.get("best_epoch", 0))
        if done == self.epochs:  # said once; train() returns at once (no optimizer state to load for nothing)
            self.log.info(f"{ckpt['prefix']} already finished all {done} epoch(s) of its run: nothing to train. "
                          f"To train it further, resume with more epochs: -o Global.checkpoints={prefix} "
                          f"-o Global.epochs=N (N > {done})")
            return
        if self.ema is not None:
            if ckpt["ema"] is not None:
                self.ema.set_state_dict(ckpt["ema"])
            else:
                warn_once("ema-resume", f"{prefix} has no EMA weights (.pdema): EMA restarts from the model weights")
                self.ema = ModelEMA(self.model, self.ema.decay)
        steps = max(1, self.iters_per_epoch // self.update_freq)
        self.global_step = int(states.get("global_step", done * steps))
        self._set_optimizer_state(ckpt["optimizer"], ckpt["prefix"], states, done)
        if self.scaler is not None and states.get("scaler"):
            self.scaler.load_state_dict(states["scaler"])
        self.log.info(f"Resumed from {ckpt['prefix']}: continuing at epoch {self.start_epoch}/{self.epochs} "
                      f"(global step {self.global_step}, best metric {self.best_metric:.5f})")

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
            with warnings.catch_warnings():
                # Paddle's LinearWarmup.set_state_dict warns about its own nested "LinearWarmup_LR" entry (which it
                # then loads): noise on every resume of a warmup schedule, not a mismatch
                warnings.filterwarnings("ignore", message="There are some unused values in state_dict")
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
        found = check_finite(self.model.state_dict(), "", allow=True)
        if found:  # the last steps diverged: never published as a checkpoint (best_model or any other)
            raise NonFiniteLossError(f"after epoch {epoch} {len(found)} weight tensor(s) hold NaN/Inf "
                                     f"({describe_nonfinite(found)}): training diverged, nothing was saved. Lower "
                                     f"Optimizer.lr.learning_rate (or add warmup), then resume from the last "
                                     f"checkpoint in {self.output_dir}")
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
