"""The run's settings and resources, as the Trainer reads them from the config: Global's values, the
device, the data loaders, AMP and Global.to_static."""
import contextlib
import os

import paddle

from ..data.loader import build_dataloader
from ..errors import ConfigError, get_value, warn_once

__all__ = ["RunSetup"]


class RunSetup:
    """The Trainer's setup from the config (a part of Trainer; it uses the Trainer's attributes)."""

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
        self.allow_nonfinite = get_value(cfg, "Global.allow_nonfinite_weights", False, bool, expect="True or False")
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
