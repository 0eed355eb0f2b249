"""Convert PyTorch checkpoints (the official VanillaNet `.pth` files) to Paddle state dicts.

All VanillaNet layers are Conv2d/BatchNorm2d, so conversion is a renaming of BN statistics
(`running_mean` -> `_mean`, `running_var` -> `_variance`) and dropping `num_batches_tracked`; no
tensor is transposed. torch is needed only to read `.pth` files and is imported lazily.
"""
import os
import tempfile

import numpy as np

from ..errors import InputFileError, check_regular_file
from .io import WeightsError, load_weights, save_weights

__all__ = ["torch_state_to_paddle", "read_torch_checkpoint", "convert_torch_checkpoint"]

_RENAMES = (("running_mean", "_mean"), ("running_var", "_variance"))
# Where official training scripts keep the weights inside a checkpoint, most preferred first.
_CHECKPOINT_KEYS = ("model_ema", "model", "state_dict")


def torch_state_to_paddle(state):
    """{torch name: array-like} -> {Paddle name: numpy array}."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        prefix, _, leaf = key.rpartition(".")
        for old, new in _RENAMES:
            if leaf == old:
                leaf = new
        value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        out[f"{prefix}.{leaf}" if prefix else leaf] = value
    return out


def read_torch_checkpoint(path, key=None):
    """Read a .pth file into {name: numpy array}; `key` picks the sub-dict (default: model_ema, model,
    state_dict, or the file itself)."""
    if not os.path.isfile(path):  # missing, or a folder / FIFO / device (named, never opened)
        try:
            check_regular_file(path, "Checkpoint")
        except InputFileError as err:
            raise WeightsError(str(err)) from None
    try:
        import torch
    except ImportError:
        raise WeightsError(f"Reading the PyTorch checkpoint {path} needs torch (only for this conversion): "
                           f"pip install torch") from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"Could not read PyTorch checkpoint {path}: {type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else ''}") from None
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path} holds a {type(checkpoint).__name__}, not a state dict ({{name: tensor}})")
    if key is not None:
        if key not in checkpoint:
            raise WeightsError(f"{path} has no {key!r} entry; it has: {sorted(map(str, checkpoint))[:10]}")
        checkpoint = checkpoint[key]
    else:
        for candidate in _CHECKPOINT_KEYS:
            if isinstance(checkpoint.get(candidate), dict):
                checkpoint = checkpoint[candidate]
                break
    state = {k: v for k, v in checkpoint.items() if hasattr(v, "shape")} if isinstance(checkpoint, dict) else {}
    if not state:
        raise WeightsError(f"{path} holds no tensors{f' under {key!r}' if key else ''}: is it a model checkpoint?")
    return state


def convert_torch_checkpoint(src, dst, model=None, key=None):
    """Convert `src` (.pth) to `dst` (.safetensors or .pdparams). With `model` (a built model, e.g.
    `create_model("vanillanet_5")`), the result is loaded into it first and must match it with zero
    missing and zero unexpected keys."""
    state = torch_state_to_paddle(read_torch_checkpoint(src, key))
    if model is None:
        return save_weights(state, dst)
    model_name = getattr(model, "model_name", type(model).__name__)
    # Checked before it becomes `dst`: a file that does not match is never left behind.
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(dst))) as scratch:
        path = save_weights(state, os.path.join(scratch, os.path.basename(dst)))
        report = load_weights(model, path)
        if report.missing or report.unexpected or report.head_skipped:
            raise WeightsError(f"{src} does not match {model_name} exactly: missing {report.missing[:5]}, "
                               f"unexpected {report.unexpected[:5]}, head skipped {report.head_skipped[:5]}")
        final = os.path.join(os.path.dirname(os.path.abspath(dst)), os.path.basename(path))
        os.replace(path, final)
    return final
