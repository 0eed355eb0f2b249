"""The training loop: epochs of forward/backward steps, optimizer steps with gradient accumulation, the
per-epoch evaluation and checkpoint, and the training log."""
import os
import time

import numpy as np
import paddle

from ..data.loader import mix_seed
from ..errors import UserError
from .checkpoint import fault_point
from .logging_utils import AverageMeter, VisualDLWriter, format_eta
from .plots import TrainingCurves

__all__ = ["TrainLoop", "NonFiniteLossError"]


class NonFiniteLossError(UserError, FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to change."""


def _detached(out):
    if isinstance(out, dict):
        return {k: _detached(v) for k, v in out.items()}
    return out.detach() if hasattr(out, "detach") else out


class _EtaClock:
    """Remaining time of a run from the mean time per iteration so far."""

    def __init__(self, total_iters):
        self.total, self.done, self.start = total_iters, 0, time.time()

    def tick(self):
        self.done += 1

    def remaining(self):
        return (self.total - self.done) * (time.time() - self.start) / max(self.done, 1)


class TrainLoop:
    """Epochs, steps and their logs (a part of Trainer; it uses the Trainer's attributes)."""

    def _epoch_hook(self, epoch_index, total):
        hook = getattr(self.model, "on_epoch_begin", None)
        if callable(hook):
            hook(epoch_index, total)
            self._retrace_static()

    def current_lr(self):
        return float(self.optimizer.get_lr())

    def _train(self):
        if self.start_epoch > self.epochs:  # a finished run resumed: _resume said what to do
            return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "last_eval": {}, "epochs_run": 0}
        vdl = VisualDLWriter(os.path.join(self.output_root, "vdl"), self.use_visualdl and self.rank == 0)
        self._log_start()
        eta = _EtaClock((self.epochs - self.start_epoch + 1) * self.iters_per_epoch)
        last_eval = {}
        curves = TrainingCurves(os.path.join(self.output_dir, "curves.png"), enabled=self.rank == 0)
        for epoch in range(self.start_epoch, self.epochs + 1):
            train = self.train_epoch(epoch, eta, vdl)
            results = self._eval_and_save(epoch, vdl)
            curves.epoch_done(epoch, train, results, self.history)  # curves.png, redrawn at each evaluation
            last_eval = results or last_eval
        vdl.close()
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "last_eval": last_eval,
                "epochs_run": max(0, self.epochs - self.start_epoch + 1)}

    def _log_start(self):
        if self.world_size > 1 and self.rank == 0:
            self.log.info(f"Distributed: {self.world_size} ranks; this console shows rank 0, the others log to "
                          f"log/workerlog.N (look there if a rank fails)")
        self.log.info(f"Training {self.model_name} ({sum(int(np.prod(p.shape)) for p in self.model.parameters()):,} "
                      f"params, {self.class_num} classes) for {self.epochs} epoch(s), {self.iters_per_epoch} iterations "
                      f"of {self.train_loader.batch_sampler.batch_size} x {self.world_size} images each; output "
                      f"{self.output_dir}")

    def train_epoch(self, epoch, eta, vdl):
        """One pass over DataLoader.Train (1-based `epoch`): forward/backward every batch, an optimizer
        step every `update_freq` batches, logs every `print_batch_step`. Returns {loss or metric name: mean}."""
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
        return {**{k: m.avg for k, m in loss_meters.items()},
                **{k: v for m in self.train_metrics for k, v in m.accumulate().items()}}

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
