"""Exponential moving average of a model's weights (PaddleClas's `EMA: {decay: ...}`).

Like PaddleClas (and timm), every entry of the state dict is averaged, BN statistics included:
`ema = decay * ema + (1 - decay) * current`, after each optimizer step.
"""
import contextlib

import paddle

__all__ = ["ModelEMA"]


class ModelEMA:
    """Shadow copies of `model`'s state dict, updated with `update(model)`."""

    def __init__(self, model, decay=0.9999):
        decay = float(decay)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA.decay must be in (0, 1), got {decay}")
        self.decay = decay
        with paddle.no_grad():
            self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @paddle.no_grad()
    def update(self, model):
        for key, value in model.state_dict().items():
            ema = self.shadow[key]
            if ema.dtype in (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16):
                paddle.assign(ema * self.decay + value.detach().astype(ema.dtype) * (1.0 - self.decay), ema)
            else:
                paddle.assign(value.detach(), ema)

    def state_dict(self):
        return self.shadow

    def set_state_dict(self, state):
        missing = [k for k in self.shadow if k not in state]
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} key(s), e.g. {missing[:3]}")
        with paddle.no_grad():
            for key, ema in self.shadow.items():
                paddle.assign(paddle.to_tensor(state[key]).astype(ema.dtype), ema)

    @contextlib.contextmanager
    def applied_to(self, model):
        """Temporarily load the EMA weights into `model` (restored on exit)."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.set_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.set_state_dict(backup)
