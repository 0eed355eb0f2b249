"""Training checkpoints: PaddleClas's files, published all-or-nothing, read without running code.

A checkpoint is a named set in a run directory (`output/hgnetv2_b0/latest`) of PaddleClas's files
  .pdparams  model weights (the EMA weights when EMA is on; PaddleClas convention)
  .pdema     the raw weights (EMA runs only)
  .pdopt     [optimizer state dict] (PaddleClas writes a list of one), lr schedule included
  .pdstates  {metric, epoch} (PaddleClas) + best metric, global step, model name, run id, ... and
             the SHA-256 of the other files

On disk (rank 0 writes):
  .checkpoints/latest.<token>/latest.{pdparams,pdopt,pdstates[,pdema]}   the set, written in full
  latest -> .checkpoints/latest.<token>           relative symlink: the commit point
  latest.pdparams -> latest/latest.pdparams       stable links: PaddleClas's flat names
A set is written into a fresh directory (each file fsynced, `.pdstates` last); only then is the
`latest` link replaced, in one atomic rename, and the previous set deleted. A kill at any moment
or a full disk therefore leaves `latest` pointing at a complete set: the previous one or the new
one. Directories and temporaries no link points to are what a killed save leaves behind;
`clean_stale` removes them when the next run starts.

Loading accepts that layout, a copied set directory, and flat PaddleClas-style files
(`prefix.pdparams` ... as PaddleClas and older ppbackbone versions write them). `.pdstates` is
required (it holds the epoch); the recorded hashes, when present, must match. Every pickle is read
with `ppbackbone.safe_pickle` (data only, never code).
"""
import collections
import errno
import io
import os
import shutil
import time
import uuid

import numpy as np
import paddle

from ..errors import UserError, check_regular_file, warn_once
from ..weights.safe_pickle import UnsafePickleError, load_pickle
from ..weights.io import check_finite, check_numeric, file_sha256

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "CheckpointWriteError", "checkpoint_files",
           "find_checkpoints", "read_states", "newest_checkpoint", "clean_stale", "remove_checkpoints", "fault_point", "SETS_DIR"]

SETS_DIR = ".checkpoints"
_SUFFIXES = (".pdparams", ".pdema", ".pdopt")
_ALL_SUFFIXES = _SUFFIXES + (".pdstates",)
_TMP_PREFIX = ".tmp-"


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be resumed from; the message names the file and the reason."""


class CheckpointWriteError(UserError, OSError):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""


# ------------------------------------------------------------------------------------ fault injection
_FAULTS = {"count": 0, "tags": collections.deque(maxlen=100000)}  # the last tags, for tests


def fault_point(tag):
    """A moment where a kill must leave a loadable checkpoint (between the files of a save, around
    its publication, after each optimizer step). With PPBACKBONE_KILL_AT=N in the environment, the
    N-th fault point of the process (1-based) kills it with SIGKILL; `_FAULTS` counts and names them
    (tests use both to kill a run at every such moment)."""
    _FAULTS["count"] += 1
    _FAULTS["tags"].append(tag)
    target = os.environ.get("PPBACKBONE_KILL_AT")
    if target and int(target) == _FAULTS["count"]:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------------ writing
def _to_numpy(state):
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}


def _write_file(path, obj):
    """paddle.save `obj` to a new file at `path`, fsynced (so a power cut cannot publish it empty)."""
    buffer = io.BytesIO()
    paddle.save(obj, buffer)
    with open(path, "xb") as f:
        f.write(buffer.getbuffer())
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _replace_link(target, link):
    """Point symlink `link` at `target` atomically (a new link renamed over the old name)."""
    tmp = os.path.join(os.path.dirname(link), f"{_TMP_PREFIX}link-{uuid.uuid4().hex[:12]}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise


def _payloads(model_state, optimizer_state, ema_state):
    payloads = {".pdopt": [optimizer_state]}
    if ema_state is not None:
        payloads[".pdparams"] = _to_numpy(ema_state)
        payloads[".pdema"] = _to_numpy(model_state)
    else:
        payloads[".pdparams"] = _to_numpy(model_state)
    return payloads


def _write_set(set_dir, name, payloads, states):
    os.mkdir(set_dir)
    hashes = {}
    for suffix in _SUFFIXES:
        if suffix in payloads:
            path = os.path.join(set_dir, name + suffix)
            _write_file(path, payloads[suffix])
            hashes[suffix] = file_sha256(path)
            fault_point(f"wrote {suffix}")
    _write_file(os.path.join(set_dir, name + ".pdstates"), dict(states, files=hashes))
    _fsync_dir(set_dir)
    fault_point("wrote .pdstates")


def _link_set(source_dir, source_name, set_dir, name):
    """A set `name` with the files of set `source_name` (hard links: no second copy on disk; a
    copy where the filesystem has none)."""
    os.mkdir(set_dir)
    for suffix in _ALL_SUFFIXES:
        source = os.path.join(source_dir, source_name + suffix)
        if os.path.isfile(source):
            target = os.path.join(set_dir, name + suffix)
            try:
                os.link(source, target)
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                shutil.copyfile(source, target)
    _fsync_dir(set_dir)
    fault_point("linked set")


def save_checkpoint(prefixes, model_state, optimizer_state, states, ema_state=None):
    """Write checkpoint `prefixes` (`<run dir>/<name>`, or a list of such names in one directory,
    all with the same content) as complete sets, publishing each in one atomic step, in the given
    order (see the module docstring). `states` is a dict (epoch, metric, ...). Returns the list of
    prefixes. Raises CheckpointWriteError (the previous set of that name intact) when the disk is
    full or not writable. Call on rank 0 only."""
    prefixes = [os.fspath(prefixes)] if isinstance(prefixes, (str, os.PathLike)) else [os.fspath(p) for p in prefixes]
    directory = os.path.dirname(os.path.abspath(prefixes[0]))
    written = None  # (set dir, name) of the first set: the others link its files
    for prefix in prefixes:
        name = os.path.basename(os.path.abspath(prefix))
        set_dir = os.path.join(directory, SETS_DIR, f"{name}.{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
        if written is None:
            _publish(directory, name, set_dir, lambda d=set_dir, n=name: _write_set(
                d, n, _payloads(model_state, optimizer_state, ema_state), states))
        else:
            _publish(directory, name, set_dir, lambda d=set_dir, n=name: _link_set(*written, d, n))
        written = written or (set_dir, name)
    return prefixes


def _publish(directory, name, set_dir, write):
    """Run `write` (fills `set_dir`), then point link `directory/name` at it and drop the previous set."""
    prefix = os.path.join(directory, name)
    try:
        os.makedirs(os.path.dirname(set_dir), exist_ok=True)
        if os.path.lexists(prefix) and not os.path.islink(prefix):
            raise CheckpointError(f"Cannot write checkpoint {prefix}: it exists and is not a checkpoint link (remove "
                                  f"or rename it)")
        write()
        previous = os.path.realpath(prefix) if os.path.islink(prefix) else None
        _replace_link(os.path.relpath(set_dir, directory), prefix)  # the commit point
        fault_point("published")
    except OSError as err:
        shutil.rmtree(set_dir, ignore_errors=True)
        hint = " (the disk is full)" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        kept = f"the previous {name} checkpoint is intact" if os.path.islink(prefix) else \
            f"no {name} checkpoint was written"
        raise CheckpointWriteError(err.errno, f"Could not write checkpoint {prefix}{hint}: {err}; {kept}. Free "
                                              f"space or choose another Global.output_dir, then resume with "
                                              f"-o Global.checkpoints=<run dir>/latest") from None
    _publish_flat_names(directory, name, set_dir)
    if previous and os.path.dirname(previous) == os.path.realpath(os.path.dirname(set_dir)) \
            and previous != os.path.realpath(set_dir):
        shutil.rmtree(previous, ignore_errors=True)
    _fsync_dir(directory)
    fault_point("cleaned")


def _publish_flat_names(directory, name, set_dir):
    """PaddleClas's flat names (`latest.pdparams`, ...) as links through the `latest` link; names
    the new set lacks (a .pdema of an earlier EMA run) are removed."""
    for suffix in _ALL_SUFFIXES:
        flat = os.path.join(directory, name + suffix)
        if os.path.exists(os.path.join(set_dir, name + suffix)):
            wanted = os.path.join(name, name + suffix)
            if not (os.path.islink(flat) and os.readlink(flat) == wanted):
                _replace_link(wanted, flat)
        elif os.path.lexists(flat):
            os.remove(flat)
    fault_point("linked")


# ------------------------------------------------------------------------------------ finding and cleaning
def _is_set_link(path):
    return os.path.islink(path) and os.path.isdir(path) and \
        os.path.basename(os.path.dirname(os.path.realpath(path))) == SETS_DIR


def find_checkpoints(directory):
    """{name: prefix} of the checkpoints in run directory `directory`: published sets and flat
    PaddleClas-style ones (`name.pdparams` + `name.pdopt` as regular files)."""
    found = {}
    if not os.path.isdir(directory):
        return found
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if entry.startswith("."):
            continue
        if _is_set_link(path):
            found[entry] = path
        elif entry.endswith(".pdopt") and not os.path.islink(path) and \
                os.path.isfile(path[:-len(".pdopt")] + ".pdparams"):
            found[entry[:-len(".pdopt")]] = path[:-len(".pdopt")]
    return found


def read_states(prefix):
    """The .pdstates dict of checkpoint `prefix` (a published name, set directory or flat prefix)."""
    states = load_pickle(_resolve_files(os.fspath(prefix))[0] + ".pdstates")
    if not isinstance(states, dict):
        raise CheckpointError(f"{prefix}.pdstates holds {type(states).__name__}, expected a dict (epoch, metric, ...)")
    return states


def newest_checkpoint(directory):
    """The prefix of the checkpoint in `directory` with the highest epoch (latest on a tie), or None:
    what to resume from after a kill."""
    ranked = []
    for name, prefix in find_checkpoints(directory).items():
        try:
            epoch = int(read_states(prefix).get("epoch", -1))
        except Exception:  # unreadable: not a candidate
            continue
        ranked.append((epoch, name == "latest", prefix))
    return max(ranked)[2] if ranked else None


def clean_stale(directory):
    """Remove what killed saves leave in run directory `directory`: set directories no link points
    to, `.tmp-*` files and links, and dangling flat-name links. Returns the removed paths."""
    removed = []
    sets = os.path.join(directory, SETS_DIR)
    if not os.path.isdir(directory):
        return removed
    published = {n: p for n, p in find_checkpoints(directory).items() if os.path.islink(p)}
    for name, prefix in published.items():  # a kill between publishing and linking the flat names
        _publish_flat_names(directory, name, os.path.realpath(prefix))
    live = {os.path.realpath(p) for p in published.values()}
    if os.path.isdir(sets):
        for entry in os.listdir(sets):
            path = os.path.join(sets, entry)
            if os.path.realpath(path) not in live:
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
                removed.append(path)
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        dangling = os.path.islink(path) and not os.path.exists(path) and entry.endswith(_ALL_SUFFIXES)
        if entry.startswith(_TMP_PREFIX) or dangling:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) and not os.path.islink(path) \
                else os.remove(path)
            removed.append(path)
    return removed


def remove_checkpoints(directory, keep=None):
    """Delete every checkpoint in run directory `directory` but `keep` (Global.overwrite). Returns
    the names deleted."""
    keep = os.path.realpath(keep) if keep else None
    names = {n: p for n, p in find_checkpoints(directory).items() if os.path.realpath(p) != keep}
    for name, prefix in names.items():
        for suffix in _ALL_SUFFIXES:
            if os.path.lexists(prefix + suffix):
                os.remove(prefix + suffix)
        if os.path.islink(prefix):
            os.remove(prefix)
    clean_stale(directory)
    return sorted(names)


def checkpoint_files(prefix):
    """The files of checkpoint `prefix` that exist (inside its set when it is a published one)."""
    base = _resolve_files(os.fspath(prefix))[0]
    return [base + s for s in _ALL_SUFFIXES if os.path.isfile(base + s)]


# ------------------------------------------------------------------------------------ reading
def _strip_suffix(prefix):
    for suffix in _ALL_SUFFIXES:
        if prefix.endswith(suffix):
            return prefix[:-len(suffix)]
    return prefix


def _resolve_files(prefix):
    """(file prefix, display prefix): a set directory or link resolves to the files inside it."""
    prefix = _strip_suffix(prefix.rstrip("/\\"))
    if os.path.isdir(prefix):
        real = os.path.realpath(prefix)
        inside = os.path.join(real, os.path.basename(prefix))
        if os.path.isfile(inside + ".pdstates") or os.path.isfile(inside + ".pdparams"):
            return inside, prefix
        states = [f for f in os.listdir(real) if f.endswith(".pdstates")]
        if len(states) == 1:
            return os.path.join(real, states[0][:-len(".pdstates")]), prefix
        raise CheckpointError(f"Global.checkpoints={prefix!r} is a directory without a checkpoint set (expected "
                              f"{os.path.basename(prefix)}.pdparams/.pdopt/.pdstates inside, or a path prefix such "
                              f"as output/hgnetv2_b0/latest)")
    return prefix, prefix


def _read(path, what, return_numpy):
    try:
        return load_pickle(path, return_numpy=return_numpy)
    except UnsafePickleError as err:
        raise CheckpointError(str(err)) from None
    except Exception as err:  # a damaged or foreign file
        raise CheckpointError(f"{what} {path} is unreadable ({type(err).__name__}: {err}); is it truncated or "
                              f"not a paddle.save file?") from None


def _check_hashes(base, shown, states):
    recorded = states.get("files")
    if not isinstance(recorded, dict):
        warn_once(f"nohash:{base}", f"{shown}.pdstates records no file hashes (a PaddleClas or older "
                                    f"checkpoint): its files cannot be checked for consistency")
        return
    for suffix, digest in recorded.items():
        path = base + suffix
        if not os.path.isfile(path) or file_sha256(path) != digest:
            raise CheckpointError(f"Checkpoint {shown} is incomplete: {path} does not match its .pdstates (it was "
                                  f"changed after saving, or the run was killed while writing flat files). Resume "
                                  f"from another checkpoint in {os.path.dirname(shown) or '.'} instead")


def load_checkpoint(prefix, allow_nonfinite=False):
    """Read checkpoint `prefix` -> dict(model, optimizer, states, ema, prefix): checks that the files
    exist, that .pdstates is there, that the files match the hashes it records and that the weights
    hold no NaN/Inf (unless `allow_nonfinite`)."""
    base, shown = _resolve_files(os.fspath(prefix))
    for suffix in _ALL_SUFFIXES:  # a folder, FIFO or device in a checkpoint's place: named, never opened
        if os.path.exists(base + suffix) and not os.path.isfile(base + suffix):
            check_regular_file(base + suffix, f"Checkpoint {shown}: its")
    absent = [base + s for s in (".pdparams", ".pdopt", ".pdstates") if not os.path.isfile(base + s)]
    if absent:
        if not os.path.exists(base + ".pdparams") and not os.path.exists(base + ".pdopt"):
            others = sorted(find_checkpoints(os.path.dirname(os.path.abspath(shown))))
            hint = f"; checkpoints there: {', '.join(others)}" if others else ""
            raise CheckpointError(f"Global.checkpoints={shown!r}: {', '.join(absent)} not found (a checkpoint is a "
                                  f"path prefix such as output/hgnetv2_b0/latest with .pdparams/.pdopt/.pdstates "
                                  f"files{hint})")
        raise CheckpointError(f"Checkpoint {shown} is incomplete: {', '.join(absent)} not found (.pdstates holds "
                              f"the epoch to continue from; without it the run cannot resume). To start from its "
                              f"weights instead, use Global.pretrained_model={base}.pdparams")
    states = _read(base + ".pdstates", "Checkpoint state file", True)
    if not isinstance(states, dict):
        raise CheckpointError(f"{base}.pdstates holds {type(states).__name__}, expected a dict (epoch, metric, ...)")
    _check_hashes(base, shown, states)
    params = _read(base + ".pdparams", "Checkpoint weights", True)
    optimizer = _read(base + ".pdopt", "Checkpoint optimizer state", False)
    if isinstance(optimizer, list):
        optimizer = optimizer[0] if optimizer else {}
    if not isinstance(params, dict) or not isinstance(optimizer, dict):
        raise CheckpointError(f"Checkpoint {shown}: .pdparams must hold a state dict and .pdopt an optimizer state "
                              f"dict (got {type(params).__name__} and {type(optimizer).__name__})")
    ema = None
    if os.path.isfile(base + ".pdema"):
        ema, params = params, _read(base + ".pdema", "Checkpoint raw weights", True)
    for suffix, state in ((".pdparams", params), (".pdema", ema)):
        if state is not None:
            if not isinstance(state, dict):
                raise CheckpointError(f"{shown}{suffix} holds {type(state).__name__}, expected a state dict")
            check_numeric(state, shown + suffix, CheckpointError)
            check_finite(state, shown + suffix, CheckpointError, allow=allow_nonfinite)
    return {"model": params, "optimizer": optimizer, "states": states, "ema": ema, "prefix": shown,
            "files": base}
