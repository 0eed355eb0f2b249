"""Training checkpoints in PaddleClas's file layout, written atomically by rank 0.

A checkpoint is a path prefix (`output/hgnetv2_b0/latest`) with
  .pdparams  model weights (the EMA weights when EMA is on; PaddleClas convention)
  .pdema     the raw weights (EMA runs only)
  .pdopt     [optimizer state dict] (PaddleClas writes a list of one), lr schedule included
  .pdstates  {metric, epoch} (PaddleClas) + best metric, global step, model name, seed and the
             SHA-256 of the other files
Every file is written to a temporary name and renamed into place, `.pdstates` last; loading checks
the recorded hashes, so a checkpoint torn by a kill in the middle of the renames is refused with a
message instead of resuming from mixed files. `epoch_N` prefixes are never rewritten, so the last
complete one always survives.
"""
import os

import numpy as np
import paddle

from ..errors import UserError
from ..weights import atomic_write, file_sha256

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "checkpoint_files"]

_SUFFIXES = (".pdparams", ".pdema", ".pdopt")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be resumed from; the message names the file and the reason."""



def _to_numpy(state):
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}


def checkpoint_files(prefix):
    """The files of checkpoint `prefix` that exist."""
    return [prefix + s for s in _SUFFIXES + (".pdstates",) if os.path.exists(prefix + s)]


def save_checkpoint(prefix, model_state, optimizer_state, states, ema_state=None):
    """Write checkpoint `prefix` (see module docstring). `states` is a dict (epoch, metric, ...);
    returns the prefix. Call on rank 0 only."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    payloads = {".pdopt": [optimizer_state]}
    if ema_state is not None:
        payloads[".pdparams"] = _to_numpy(ema_state)
        payloads[".pdema"] = _to_numpy(model_state)
    else:
        payloads[".pdparams"] = _to_numpy(model_state)
    hashes = {}
    for suffix in _SUFFIXES:
        if suffix not in payloads:
            continue
        with atomic_write(prefix + suffix) as tmp:
            paddle.save(payloads[suffix], tmp)
            hashes[suffix] = file_sha256(tmp)
    if ema_state is None and os.path.exists(prefix + ".pdema"):
        os.remove(prefix + ".pdema")  # a stale raw-weights file of an earlier EMA run
    states = dict(states, files=hashes)
    with atomic_write(prefix + ".pdstates") as tmp:
        paddle.save(states, tmp)
    return prefix


def load_checkpoint(prefix):
    """Read checkpoint `prefix` -> dict(model, optimizer, states, ema): checks that the files exist
    and match the hashes recorded in .pdstates (when present)."""
    prefix = os.fspath(prefix)
    for suffix in _SUFFIXES + (".pdstates",):
        if prefix.endswith(suffix):
            prefix = prefix[:-len(suffix)]
    needed = [prefix + ".pdparams", prefix + ".pdopt"]
    absent = [p for p in needed if not os.path.isfile(p)]
    if absent:
        raise CheckpointError(f"Global.checkpoints={prefix!r}: {', '.join(absent)} not found (a checkpoint is a "
                              f"path prefix such as output/hgnetv2_b0/latest with .pdparams/.pdopt/.pdstates files)")
    states = {}
    if os.path.isfile(prefix + ".pdstates"):
        try:
            states = paddle.load(prefix + ".pdstates")
        except Exception as err:
            raise CheckpointError(f"{prefix}.pdstates is unreadable ({err})") from None
    for suffix, digest in (states.get("files") or {}).items():
        path = prefix + suffix
        if not os.path.isfile(path) or file_sha256(path) != digest:
            raise CheckpointError(f"Checkpoint {prefix} is incomplete: {path} does not match its .pdstates (the run "
                                  f"was probably killed while writing it). Resume from an epoch_N checkpoint "
                                  f"in {os.path.dirname(prefix) or '.'} instead")
    try:
        params = paddle.load(prefix + ".pdparams", return_numpy=True)
        optimizer = paddle.load(prefix + ".pdopt")
    except Exception as err:
        raise CheckpointError(f"Checkpoint {prefix} is unreadable ({type(err).__name__}: {err})") from None
    if isinstance(optimizer, list):
        optimizer = optimizer[0] if optimizer else {}
    ema = None
    if os.path.isfile(prefix + ".pdema"):
        ema, params = params, paddle.load(prefix + ".pdema", return_numpy=True)
    return {"model": params, "optimizer": optimizer, "states": states, "ema": ema, "prefix": prefix}
