"""One training run per output folder: a lock file held for the run's life.

`RunLock(folder)` creates `folder/run.lock` holding the owner (pid, host, start time, command line)
and keeps an exclusive `flock` on it while the run lives; the kernel drops that lock when the
process dies, however it dies. So:
  - a second run into the folder finds the lock held and is refused with a `RunLockError` naming
    the folder, the owner and what to do;
  - a lock file left by a killed run (its pid dead on this host, nobody holding the flock) is stale:
    it is taken over with a one-line notice naming the dead owner;
  - a lock file of another host that nobody here holds is refused (we cannot see that host's
    processes): the message says to delete the file once that run is known to be gone.
On file systems without flock the owner's pid alone decides (alive on this host: held).

Distributed runs lock on rank 0 only (the rank that writes checkpoints and logs).
`process_alive(pid)` and `owner_tag()` are shared with the exporter's stale temporary folders.
"""
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
import weakref

from ..errors import UserError

__all__ = ["RunLock", "RunLockError", "LOCK_NAME", "process_alive", "owner_tag", "parse_owner_tag"]

LOCK_NAME = "run.lock"
logger = logging.getLogger("ppbackbone")


class RunLockError(UserError, RuntimeError):
    """The output folder is in use by another run; the message names it, the owner and what to do."""


def process_alive(pid):
    """True when process `pid` exists on this host (a process of another user counts as alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def owner_tag():
    """`<pid>@<host>`: this process, as written into names of folders it owns while writing them."""
    return f"{os.getpid()}@{socket.gethostname()}"


def parse_owner_tag(text):
    """(pid, host) from `owner_tag()`'s form, or None when `text` is not one."""
    pid, sep, host = str(text).partition("@")
    if not sep or not pid.isdigit() or not host:
        return None
    return int(pid), host


def _describe(owner):
    if not owner:
        return "another process (its lock file is empty or unreadable)"
    started = owner.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float)) \
        else "unknown time"
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {when}"


_HELD = {}  # lock file real path -> weak reference to the RunLock of this process holding it


class RunLock:
    """The lock of one run on `folder` (created when missing). `acquire()` takes it or raises
    RunLockError; `release()` (idempotent; also at interpreter exit) removes the file. `took_over`
    is the stale owner's record when acquiring replaced one."""

    def __init__(self, folder, what="training run"):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.what = what
        self.fd = None
        self._finalizer = None  # releases at release(), garbage collection or interpreter exit
        self.took_over = None

    # ------------------------------------------------------------------ reading the owner
    def _read_owner(self, fd=None):
        try:
            if fd is None:
                with open(self.path, encoding="utf-8") as f:
                    text = f.read(4096)
            else:
                os.lseek(fd, 0, os.SEEK_SET)
                text = os.read(fd, 4096).decode("utf-8", "replace")
            owner = json.loads(text)
            return owner if isinstance(owner, dict) else None
        except (OSError, ValueError):
            return None

    def _refuse(self, owner, why=""):
        raise RunLockError(
            f"{self.folder} is in use by another {self.what} ({_describe(owner)}; lock file {self.path}){why}. "
            f"Wait for that run to finish or stop it, or choose another Global.output_dir")

    # ------------------------------------------------------------------ taking the lock
    def acquire(self):
        """Take the lock (see the module doc); returns self. A lock this process already holds on the folder
        (an earlier Trainer never trained, e.g. a notebook cell run again) passes to the new holder."""
        os.makedirs(self.folder, exist_ok=True)
        earlier = _HELD.get(os.path.realpath(self.path))
        earlier = earlier() if earlier is not None else None
        if earlier is not None and earlier.held and earlier is not self:
            earlier.release()
        for _ in range(20):  # a holder may delete the file between our open and our flock: retry
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if self._lock_fd(fd):
                    self.fd, fd = fd, None
                    self._finalizer = weakref.finalize(self, _release, self.path, self.fd, os.getpid())
                    _HELD[os.path.realpath(self.path)] = weakref.ref(self)
                    return self
            finally:
                if fd is not None:
                    os.close(fd)
        raise RunLockError(f"Could not take the lock {self.path}: it keeps being replaced by another process")

    def _lock_fd(self, fd):
        """Lock the open file `fd`; True when it is ours, False to retry on a replaced file."""
        flock = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                self._refuse(self._read_owner(fd) or self._read_owner())
            flock = False  # no flock on this file system: the owner's pid decides
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            return False
        owner = self._read_owner(fd)
        if owner:
            self._check_stale(owner, flock)
        self._write_owner(fd)
        return True

    def _check_stale(self, owner, flock):
        """`owner` left the file and holds no flock: refuse when it may still run, else note the takeover."""
        host, pid = owner.get("host"), owner.get("pid")
        if host != socket.gethostname():
            self._refuse(owner, f"; that host's processes cannot be checked from here: if that run is gone, delete "
                                f"{self.path}")
        if not flock and process_alive(pid):
            self._refuse(owner)
        state = "no longer running" if not process_alive(pid) else "alive but not holding the lock (pid reused)"
        self.took_over = owner
        print(f"Notice: taking over the stale lock {self.path} of {_describe(owner)}: {state}", file=sys.stderr)

    def _write_owner(self, fd):
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join(sys.argv)[:1000]}
        data = (json.dumps(record) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    # ------------------------------------------------------------------ releasing
    def release(self):
        """Remove the lock file and drop the lock (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        self.fd = None

    @property
    def held(self):
        return self.fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _release(path, fd, pid):
    """Remove lock file `path` (when it is still ours) and close `fd`: the file first, so no other
    process locks a file that is then removed. A forked child (a data loader worker) leaves both."""
    if os.getpid() != pid:
        return
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.remove(path)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass
