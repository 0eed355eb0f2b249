"""Loading and saving weights: .pdparams and .safetensors, URL cache, one load report.

`load_weights` never loads a checkpoint silently in part: a file that matches little of the model,
or whose non-head tensors have other shapes, is an error; a classifier head of another size is
skipped with one line; everything else is summed up in one report.
"""
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass, field

import numpy as np
import paddle

from ..errors import UserError, check_regular_file
from .safe_pickle import UnsafePickleError, load_pickle

__all__ = ["WeightsError", "WeightsFileNotFound", "WeightsDownloadError", "NonFiniteWeightsError", "check_numeric", "check_finite", "describe_nonfinite", "load_weights", "save_weights", "read_state_dict",
           "download_weights", "LoadReport", "weights_cache_dir", "atomic_write", "file_sha256"]

# Below this fraction of the model's tensors found in a file, the file is another architecture.
MIN_MATCH_FRACTION = 0.5
_URL_PREFIXES = ("http://", "https://")


class WeightsError(UserError, ValueError):
    """A weights file that cannot be used for this model; the message names the file and why."""


class NonFiniteWeightsError(WeightsError):
    """Weights holding NaN or Inf: every result computed from them is meaningless."""


@dataclass
class LoadReport:
    """What `load_weights` did, key by key."""
    path: str
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)  # (key, file shape, model shape)
    head_skipped: list = field(default_factory=list)
    ignored_prefix: int = 0  # keys outside `backbone.` in a detector checkpoint
    model_keys: frozenset = frozenset()
    nonfinite: list = field(default_factory=list)  # (key, NaN count, Inf count): loaded with allow_nonfinite

    def summary(self):
        total = len(self.loaded) + len(self.missing) + len(
            [k for k in self.head_skipped if k in self.model_keys])
        parts = [f"loaded {len(self.loaded)}/{total} tensors", f"missing {len(self.missing)}",
                 f"unexpected {len(self.unexpected)}", f"shape-mismatched {len(self.mismatched)}"]
        if self.head_skipped:
            parts.append(f"head skipped {len(self.head_skipped)}")
        if self.ignored_prefix:
            parts.append(f"non-backbone keys ignored {self.ignored_prefix}")
        if self.nonfinite:
            parts.append(f"NON-FINITE {len(self.nonfinite)} (allowed for debugging: {describe_nonfinite(self.nonfinite)})")
        lines = [f"Weights {self.path}: " + ", ".join(parts)]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else "")
                lines.append(f"  {label}: {shown}")
        return "\n".join(lines)


class WeightsDownloadError(UserError, RuntimeError):
    """A weights URL that could not be fetched (offline, blocked, not found): the machine's network, not a bug;
    the message names the cache path to place the file at."""


def weights_cache_dir():
    """Where downloaded weights live: $PPBACKBONE_HOME/weights or ~/.cache/ppbackbone/weights."""
    home = os.environ.get("PPBACKBONE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "ppbackbone"))
    return os.path.join(home, "weights")


def download_weights(url, cache_dir=None):
    """Path of `url`'s file in the cache, downloading it on first use (atomically)."""
    cache_dir = cache_dir or weights_cache_dir()
    target = os.path.join(cache_dir, os.path.basename(url.split("?")[0]))
    if os.path.exists(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            with atomic_write(target) as tmp_path:
                with open(tmp_path, "wb") as out:
                    while True:
                        chunk = response.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
    except OSError as err:  # URLError, HTTPError, timeouts: all OSError
        raise WeightsDownloadError(f"Could not download {url} ({err}). If this machine is offline, download the "
                                   f"file elsewhere and place it at {target} (the weights cache: $PPBACKBONE_HOME/"
                                   f"weights, ~/.cache/ppbackbone by default), or pass a local file") from None
    return target


class WeightsFileNotFound(WeightsError, FileNotFoundError):
    """A weights path that names no file."""


def _resolve_path(path):
    path = os.fspath(path)
    if path.startswith(_URL_PREFIXES):
        return download_weights(path)
    if os.path.isdir(path):
        # a checkpoint set directory (output/<model>/best_model -> .checkpoints/best_model.<token>/)
        inside = os.path.join(path, os.path.basename(path.rstrip("/\\")) + ".pdparams")
        if os.path.isfile(inside):
            return inside
        raise WeightsError(f"Weights path {path} is a directory; expected a .pdparams or .safetensors file (or "
                           f"a checkpoint prefix such as output/hgnetv2_b0/best_model)")
    if not os.path.exists(path):
        # PaddleClas habit: `Global.pretrained_model=output/best_model` without the suffix.
        for suffix in (".pdparams", ".safetensors"):
            if os.path.exists(path + suffix):
                return path + suffix
        raise WeightsFileNotFound(f"Weights file not found: {path} (expected a .pdparams or .safetensors "
                                  f"file, a path prefix of one, or a URL)")
    return check_regular_file(path, "Weights file")  # a FIFO or device: named, never opened


def _describe_foreign(path, state):
    """Why `state` (read from `path`) is not a model state dict, for the error message."""
    if path.endswith(".pdopt") or (isinstance(state, list) and state and isinstance(state[0], dict)):
        return "it looks like an optimizer state (.pdopt); use the .pdparams file of the same checkpoint"
    if isinstance(state, dict) and "epoch" in state and not any(isinstance(v, np.ndarray) for v in state.values()):
        return "it looks like a training state (.pdstates); use the .pdparams file of the same checkpoint"
    if isinstance(state, dict) and state:
        bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, (np.ndarray, dict, list, str))]
        if bad:
            return f"key {bad[0]!r} holds {type(state[bad[0]]).__name__}, not a tensor"
    if isinstance(state, dict):
        return "it holds no tensors"
    return f"it holds a {type(state).__name__}, not a {{name: tensor}} dict"


def check_numeric(state, path, error=None):
    """Raise `error` (WeightsError) naming the first tensor of `state` whose dtype is not a number
    (strings, complex, object, dates: a weight never is one). Float and integer tensors pass (they
    are cast to the model's dtype on loading)."""
    for key, value in state.items():
        if np.asarray(value).dtype.kind not in "fiub":
            raise (error or WeightsError)(f"{path}: tensor {key!r} has dtype {np.asarray(value).dtype}, which is not "
                                          f"a number type; expected float (or integer) weights")


def describe_nonfinite(found, limit=3):
    """`key: n NaN, m Inf of size; ...` for check_finite's list (the first `limit` tensors)."""
    shown = "; ".join(f"{key}: {nan} NaN, {inf} Inf of {size}" for key, nan, inf, size in found[:limit])
    return shown + (f"; ... (+{len(found) - limit} more tensors)" if len(found) > limit else "")


def check_finite(state, path, error=None, allow=False):
    """The float tensors of `state` holding NaN or Inf, as [(key, NaN count, Inf count, size)]; unless
    `allow` (for debugging), raise `error` (NonFiniteWeightsError) naming them and `path`."""
    found = []
    for key, value in state.items():
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            nan = int(np.isnan(array).sum())
            found.append((key, nan, int(array.size - nan - np.isfinite(array).sum()), int(array.size)))
    if found and not allow:
        raise (error or NonFiniteWeightsError)(
            f"{path}: {len(found)} tensor(s) hold NaN/Inf values ({describe_nonfinite(found)}); results computed "
            f"from them are meaningless (a diverged or damaged run?). Use an earlier checkpoint; to load them anyway "
            f"for debugging, set Global.allow_nonfinite_weights=True (load_weights(..., allow_nonfinite=True))")
    return found


def read_state_dict(path):
    """Read a weights file into ({key: numpy array}, resolved path); a WeightsError names the file
    (and the key) when it is unreadable, truncated, not a state dict or refers to code."""
    path = _resolve_path(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file
            state = load_file(path)
        else:
            state = load_pickle(path, return_numpy=True)
    except UnsafePickleError as err:
        raise WeightsError(str(err)) from None
    except Exception as err:  # any reader failure means a corrupt, truncated or foreign file
        raise WeightsError(f"Could not read weights file {path} ({os.path.getsize(path)} bytes): "
                           f"{type(err).__name__}: {err}. Expected a .pdparams (paddle.save) or .safetensors "
                           f"state dict; is the file truncated or of another kind?") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"Weights file {path} does not hold a state dict: {_describe_foreign(path, state)}")
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    odd = [k for k, v in state.items() if k not in arrays and not isinstance(v, (dict, list, str))]
    if odd or not arrays:
        raise WeightsError(f"Weights file {path} does not hold a state dict: {_describe_foreign(path, state)}")
    check_numeric(arrays, path, WeightsError)
    return arrays, path


def _strip_prefix(state, prefix="backbone."):
    """Keep the `backbone.` part of a detector checkpoint; returns (state, n ignored)."""
    if not any(k.startswith(prefix) for k in state):
        return state, 0
    inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return inner, len(state) - len(inner)


def load_weights(model, path, verbose=True, allow_nonfinite=False):
    """Load a .pdparams/.safetensors file (or URL) into `model`; returns a LoadReport.

    Strips a `backbone.` prefix, passes the keys through `model.filter_state_dict` when the model has
    one, skips classifier-head tensors of another size (or any head tensor when the model has no
    head), and raises when the file matches less than half of the model or a non-head tensor has
    another shape, or when a tensor to load holds NaN/Inf (NonFiniteWeightsError naming it; with
    `allow_nonfinite` they load and the report lists them).
    """
    state, resolved = read_state_dict(path)
    ignored = 0
    if not any(k.startswith("backbone.") for k in model.state_dict()):  # RecModel keeps its prefix
        state, ignored = _strip_prefix(state)
    if hasattr(model, "filter_state_dict"):
        state = model.filter_state_dict(state)
    is_head = getattr(model, "is_head_key", lambda key: False)
    model_state = model.state_dict()
    report = LoadReport(path=resolved, ignored_prefix=ignored, model_keys=frozenset(model_state))
    to_load = {}
    for key, value in state.items():
        target = model_state.get(key)
        if target is None:
            (report.head_skipped if is_head(key) else report.unexpected).append(key)
        elif tuple(value.shape) != tuple(target.shape):
            if is_head(key):
                report.head_skipped.append(key)
            else:
                report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
        else:
            to_load[key] = value
            report.loaded.append(key)
    report.missing = [k for k in model_state if k not in to_load and k not in report.head_skipped]
    name = getattr(model, "model_name", type(model).__name__)
    if len(to_load) < MIN_MATCH_FRACTION * len(model_state):
        raise WeightsError(
            f"{resolved} matches only {len(to_load)} of the {len(model_state)} tensors of {name}: it looks "
            f"like weights of another architecture. First unexpected keys: {report.unexpected[:5]}; "
            f"first missing: {report.missing[:5]}; shape mismatches: {report.mismatched[:3]}")
    if report.mismatched:
        details = "; ".join(f"{k}: file {a} vs model {b}" for k, a, b in report.mismatched[:5])
        raise WeightsError(f"{resolved}: {len(report.mismatched)} tensors of {name} have another shape in the "
                         f"file ({details}); is it weights of another variant?")
    report.nonfinite = check_finite(to_load, resolved, allow=allow_nonfinite)
    for key, value in to_load.items():
        target = model_state[key]
        target.set_value(value.astype(str(target.dtype).replace("paddle.", "")))
    if verbose:
        print(report.summary())
        head_sizes = [k for k in report.head_skipped if k in model_state]
        if head_sizes:
            print(f"  classifier head of another size skipped ({', '.join(head_sizes)}): it keeps its "
                  f"fresh initialisation")
    return report


def file_sha256(path):
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask():
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


class atomic_write:
    """Context manager yielding a temp path next to `path`; renamed onto `path` only on success."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __enter__(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(self.path), dir=directory)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the file should get a normal file's mode
        os.close(fd)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)
        return False


def save_weights(model_or_state, path):
    """Save weights atomically: .safetensors by default, .pdparams when the path says so.

    A path without a known suffix gets `.safetensors`. Returns the written path.
    """
    path = os.fspath(path)
    if not path.endswith((".safetensors", ".pdparams")):
        path += ".safetensors"
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    arrays = {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}
    with atomic_write(path) as tmp:
        if path.endswith(".pdparams"):
            paddle.save(arrays, tmp)
        else:
            from safetensors.numpy import save_file
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp)
    return path
