"""Where an export is written: the target directory's checks, a staging directory beside it that is renamed
onto it only after verification (so a failed export leaves nothing half-written), and the disk-space checks
(Paddle's writer does not report a full disk)."""
import os
import re
import shutil
import socket
import tempfile

import numpy as np

from ..engine.run_lock import owner_tag, process_alive
from ..errors import ExportError
from .export_dir import EXPORT_MARKERS, PARAMS_FILE

# `.<export dir>.tmp-<pid>@<host>-<random>` (staging) and `.old-` (a replaced export being removed): the
# owner in the name tells a folder a killed export left from one an export is writing now.
_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)@(?P<host>.+)-[a-z0-9_]+$")


def _check_save_dir(save_dir):
    """Refuse a target that holds something other than a previous export (it would be replaced)."""
    if os.path.isfile(save_dir):
        raise ExportError(f"Global.save_inference_dir={save_dir} is a file; expected a directory")
    if os.path.isdir(save_dir):
        entries = os.listdir(save_dir)
        if entries and not any(name in entries for name in EXPORT_MARKERS):
            shown = ", ".join(sorted(entries)[:5]) + (" ..." if len(entries) > 5 else "")
            raise ExportError(f"Global.save_inference_dir={save_dir} exists and holds files that are not an "
                              f"export ({shown}); choose another directory (an export replaces the whole "
                              f"directory)")


def clean_stale_staging(parent, log=print):
    """Remove the staging folders in `parent` that exports killed mid-way left (their owner, named in the
    folder's name, is no longer running on this host); a `.old-` folder only once its export folder is
    back. Folders of live exports, of other hosts, or without an owner in the name are kept. Returns the
    removed paths."""
    removed = []
    host = socket.gethostname()
    for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        match = _STAGING_NAME.match(entry)
        path = os.path.join(parent, entry)
        if not match or match["host"] != host or process_alive(int(match["pid"])) or \
                not os.path.isdir(path) or os.path.islink(path):
            continue
        if match["kind"] == "old" and not os.path.isdir(os.path.join(parent, match["name"])):
            continue  # the previous export, moved aside when its owner died: not ours to delete
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(path)
            log(f"Removed {path}: left by an export (pid {match['pid']}) that is no longer running")
    return removed


class _staging_dir:
    """`with _staging_dir(save_dir) as tmp:` a fresh directory beside save_dir, renamed onto it when
    the block succeeds and removed when it fails, so save_dir only ever holds a complete export. Its name
    carries this process's pid and host, so the next export into the same parent removes what a killed
    one left (`clean_stale_staging`)."""

    def __init__(self, save_dir, log=print):
        self.save_dir, self.log = save_dir, log

    def __enter__(self):
        parent = os.path.dirname(self.save_dir)
        os.makedirs(parent, exist_ok=True)
        clean_stale_staging(parent, self.log)
        self.tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(self.save_dir)}.tmp-{owner_tag()}-", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp_dir, 0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
        return self.tmp_dir

    def __exit__(self, kind, error, traceback):
        if kind is None:
            try:
                _publish(self.tmp_dir, self.save_dir)
                return False
            except BaseException:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
                raise
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        return False


def _publish(tmp_dir, save_dir):
    """Move the verified export onto `save_dir`, replacing a previous export there."""
    old = None
    if os.path.exists(save_dir):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(save_dir)}.old-{owner_tag()}-",
                               dir=os.path.dirname(save_dir))
        os.rmdir(old)
        os.rename(save_dir, old)
    try:
        os.rename(tmp_dir, save_dir)
    except OSError:
        if old is not None:
            os.rename(old, save_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _parameter_bytes(layer):
    """Bytes of the parameters and buffers (BN statistics) an inference.pdiparams file holds, at least."""
    return sum(int(np.prod(t.shape)) * t.element_size() for t in layer.state_dict().values())


def _check_disk_space(save_dir, graph, onnx):
    """Refuse an export that cannot fit: Paddle's writer does not report a full disk (it leaves a short
    .pdiparams that then fails verification), so the space is checked before writing."""
    needed = _parameter_bytes(graph) * (2 if onnx else 1) + (8 << 20)  # + the program and inference.yml
    probe = save_dir
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise ExportError(f"Not enough disk space for the export in {save_dir}: {free / 2 ** 20:.1f} MB free, about "
                          f"{needed / 2 ** 20:.1f} MB needed (Global.save_inference_dir); free some space or choose "
                          f"another directory")


_NEARLY_FULL = 16 << 20  # bytes free under which a short or unreadable export is blamed on the disk


def _check_written(tmp_dir, graph):
    """A parameters file shorter than the parameters on a disk that is (nearly) full was cut by the full disk
    (Paddle's writer does not report it): say so, instead of a verification failure later. (A short file
    alone proves nothing: parameters a feature-mode graph does not use are not saved.)"""
    path = os.path.join(tmp_dir, PARAMS_FILE)
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    expected = _parameter_bytes(graph)
    free = shutil.disk_usage(tmp_dir).free
    if size < expected and free < _NEARLY_FULL:
        raise ExportError(f"Writing the export failed: the disk is full ({free / 2 ** 20:.1f} MB free on the disk of "
                          f"{tmp_dir}; {PARAMS_FILE} has {size} of about {expected} bytes). Free some space or "
                          f"choose another Global.save_inference_dir; nothing was written")


def _blame_full_disk(tmp_dir):
    """Raise the full-disk error when the disk under a failed verification is (nearly) full."""
    free = shutil.disk_usage(tmp_dir).free
    if free < _NEARLY_FULL:
        raise ExportError(f"Writing the export failed: the disk is full ({free / 2 ** 20:.1f} MB free on the disk of "
                          f"{tmp_dir}), so the saved files are incomplete. Free some space or choose another "
                          f"Global.save_inference_dir; nothing was written")
