"""The run's settings and resources, as the Trainer reads them from the config: Global's values, the
device, the data loaders, AMP and Global.to_static."""
import contextlib
import os

import paddle

from ..data.loader import build_dataloader
from ..errors import ConfigError, get_value, warn_once
from .conv_matmul import use_matmul_convs
from .static_graph import convert_to_static, input_specs, is_static, rebuild_static

__all__ = ["RunSetup", "cpu_bf16_refusal"]

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


def _bf16_kernel_error():
    """Why paddle cannot train in bfloat16 on this CPU (its conv2d kernel refuses bfloat16), or None."""
    try:
        x = paddle.zeros([1, 1, 3, 3], "float32").astype("bfloat16")
        paddle.nn.functional.conv2d(x, paddle.zeros([1, 1, 1, 1], "float32").astype("bfloat16"))
    except Exception as err:  # noqa: B902 - paddle raises its own error types here
        return str(err).strip().splitlines()[0][:200]
    return None


def cpu_bf16_refusal():
    """The message refusing AMP.dtype=bfloat16 on CPU: the CPU has no bf16 instructions, or paddle has no
    bfloat16 CPU kernels for training (paddle 3.3.1: conv2d and matmul are float32/float64 only on CPU, and
    paddle.amp autocasts on GPU/XPU/custom devices only), so no bf16 would happen."""
    flags = _cpu_flags()
    if not any(flag in flags for flag in _BF16_FLAGS):
        return (f"AMP.dtype=bfloat16 with Global.device=cpu needs a CPU with AVX512-BF16 or AMX-BF16; this one has "
                f"neither (/proc/cpuinfo flags: {' '.join(f for f in flags if f.startswith(('avx', 'amx'))) or 'none'})."
                f" Set AMP.use_amp: False to train in float32")
    cause = _bf16_kernel_error() or "paddle.amp autocasts only on GPU, XPU and custom devices"
    return (f"AMP.dtype=bfloat16 with Global.device=cpu: this CPU has bf16 instructions, but PaddlePaddle "
            f"{paddle.__version__} cannot train in bfloat16 on CPU ({cause}); set AMP.use_amp: False to train in "
            f"float32 (docs/training.md, AMP)")


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
        if self.on_cpu:
            self._set_cpu_threads()

    def _set_cpu_threads(self):
        """Global.cpu_threads (default: the cores this process may use, shared among the ranks on this
        machine): paddle computes on CPU with a single thread unless told otherwise."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        default = max(1, cores // max(1, int(os.environ.get("PADDLE_LOCAL_SIZE", self.world_size))))
        self.cpu_threads = get_value(self.config, "Global.cpu_threads", default, int, lambda v: v > 0,
                                     "a positive int (threads for paddle's CPU kernels)")
        paddle.base.core.set_num_threads(self.cpu_threads)

    def _use_cpu_convs(self):
        """On CPU: convolutions with small outputs as unfold + matmul over the batch (conv_matmul.py)."""
        if self.on_cpu and use_matmul_convs(self.model):
            self.log.info(f"CPU: convolutions with small outputs run as unfold + matmul over the batch (paddle's "
                          f"result up to float rounding, faster); {self.cpu_threads} CPU thread(s) (Global.cpu_threads)")

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
        level = str(amp.get("level", "O1")).upper()
        if level not in ("O1", "O2"):
            raise ConfigError(f"AMP.level={amp.get('level')!r}: use O1 or O2")
        dtype = get_value(self.config, "AMP.dtype", "float16", str, lambda v: v in ("float16", "bfloat16"),
                          "float16 or bfloat16")
        if self.on_cpu:
            if dtype == "bfloat16":
                raise ConfigError(cpu_bf16_refusal())
            warn_once("amp-cpu", "AMP.use_amp: paddle's automatic mixed precision has no effect on CPU (float16 "
                                 "kernels need a GPU); training in float32")
            return
        self.amp_level, self.amp_enabled, self.amp_dtype = level, True, dtype
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
        """Global.to_static (default: True on GPUs and other devices, False on CPU, where the static graph
        measured slower): the model's forward as a static graph, traced now for the modes this run uses; a
        model paddle cannot convert trains in dygraph, with one notice saying why."""
        if not get_value(self.config, "Global.to_static", not self.on_cpu, bool, expect="True or False"):
            if self.on_cpu and (self.config.get("Global") or {}).get("to_static") is None:
                self.log.info("Global.to_static: dygraph on CPU by default (the static graph measured slower per "
                              "step here, docs/training.md); Global.to_static: True to trace it")
            return
        self.static_specs = input_specs(self.config, self.model)
        self.static_modes = ("train", "eval") if self.mode == "train" else ("eval",)
        self.model, reason = convert_to_static(self.model, self.static_specs, self.static_modes)
        self._static_fallback(reason)

    def _retrace_static(self):
        """After the model's on_epoch_begin hook: trace again (the graph holds Python values as constants)."""
        if is_static(self.model):
            self.model, reason = rebuild_static(self.model, self.static_specs, self.static_modes)
            self._static_fallback(reason)

    def _static_fallback(self, reason):
        if reason is not None:
            self.log.warning(f"Notice: Global.to_static: {self.model_name} does not run as a static graph ({reason}); "
                             f"training in dygraph (set Global.to_static: False to skip the attempt)")
        else:
            self.log.info(f"Global.to_static: the model runs as a static graph (input spec "
                          f"{[list(s.shape) for s in self.static_specs]}; Global.to_static: False for dygraph)")
        self.train_model = paddle.DataParallel(self.model) if (self.world_size > 1 and self.mode == "train") \
            else self.model
