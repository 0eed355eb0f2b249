"""Training engine: Trainer (train/eval loop), optimizer + lr builders, EMA, checkpoints, logging."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: F401
from .ema import ModelEMA  # noqa: F401
from .optim import build_lr_scheduler, build_optimizer  # noqa: F401
from .trainer import Trainer  # noqa: F401
