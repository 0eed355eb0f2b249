"""Evaluation: one pass over DataLoader.Eval (loss, metrics and the per-class report, summed over
ranks), or a retrieval evaluation over the Gallery and Query sets."""
import time

import numpy as np
import paddle

from ..data.class_names import class_name_list
from ..data.dataset import DatasetError
from ..errors import ConfigError, get_value, warn_once
from .logging_utils import ProgressBar
from .retrieval import compute_features, retrieval_scores
from .train_loop import NonFiniteLossError

__all__ = ["Evaluation", "class_names", "evaluated_model"]


def class_names(config, class_num):
    """Class names by label for reports (data.class_names: Infer.PostProcess.class_id_map_file or the demo's
    label list); None when the config names neither, or, with a warning, when the file does not fit."""
    try:
        return class_name_list(config, class_num)
    except DatasetError as err:
        warn_once(f"class-names:{err}", f"class names for the per-class report: {err}; printing class ids")
        return None


def evaluated_model(model):
    """The model that is evaluated and exported: a DistillationModel's infer_model_name model alone
    (PaddleClas evaluates its Student's output); any other model itself."""
    if hasattr(model, "submodel"):
        return model.submodel(model.infer_model_name)
    return model


class Evaluation:
    """Evaluation passes (a part of Trainer; it uses the Trainer's attributes)."""

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
        self._check_eval_loss(result["loss"], count, epoch)
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

    def _check_eval_loss(self, loss, count, epoch):
        """A NaN/Inf evaluation loss makes every figure of the evaluation meaningless: an error."""
        if np.isfinite(loss):
            return
        if epoch is not None:
            raise NonFiniteLossError(f"the evaluation loss is {loss} after epoch {epoch} ({count} images): training "
                                     f"diverged. Lower Optimizer.lr.learning_rate (or add warmup), check the data, "
                                     f"then resume from the last checkpoint in {self.output_dir}")
        source = f"Global.pretrained_model={self.pretrained_model}" if self.pretrained_model else \
            "the model's initial weights"
        raise NonFiniteLossError(f"the evaluation loss is {loss} over {count} images of DataLoader.Eval: the model "
                                 f"computes NaN/Inf outputs with {source} (weights of a diverged run?) or the data "
                                 f"yields non-finite inputs (NormalizeImage std of 0?)")

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
        self.retrieval_sets = sets  # kept for the Recall@k picture (tools/eval.py --recall-curve)
        (gallery, gallery_label), (query, query_label) = sets["gallery"], sets["query"]
        result = retrieval_scores(query, query_label, gallery, gallery_label, self.eval_metrics, block)
        text = ", ".join(f"{k}: {v:.5f}" for k, v in result.items())
        self.log.info(f"[{tag}]" + (f"[Epoch {epoch}]" if epoch else "") + f"[Avg] {text} ({len(query)} queries, "
                      f"{len(gallery)} gallery images, {time.time() - start:.1f}s)")
        return result
