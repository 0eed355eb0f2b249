"""The calling thread's alternate signal stack, kept on mapped memory across OpenVINO calls.

OpenVINO's CPU plugin (one per `openvino.Core`; seen with 2026.4.1) gives the thread that creates it a new
alternate signal stack and, when it is destroyed, puts back the stack it replaced and unmaps its own. Two
plugins destroyed in the order they were created leave the thread's alternate stack on unmapped memory:
the next signal with a handler (Ctrl-C, SIGTERM, the SIGCHLD handler paddle's DataLoader installs, run
when any child process exits) then kills the process with a SIGSEGV that no handler and no log sees.
deploy/runtimes.py compiles every model on one process-wide Core, and `kept()` puts the stack of before
back when a call left the thread's stack on unmapped memory. Linux only (elsewhere a no-op).
"""
import contextlib
import ctypes
import sys

SS_DISABLE = 2  # <signal.h> on Linux


class Stack(ctypes.Structure):
    """`stack_t` of <signal.h>."""
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack(new):
    """Set `new` (or only read, if None) and return the stack in place before; None where unsupported."""
    if not sys.platform.startswith("linux"):
        return None
    old = Stack()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.sigaltstack(ctypes.byref(new) if new is not None else None, ctypes.byref(old)) != 0:
        return None
    return old


def current():
    """The calling thread's alternate signal stack (a `Stack`), or None where it cannot be read."""
    return _sigaltstack(None)


def is_mapped(stack):
    """Whether `stack`'s memory is mapped and writable (no stack, or a disabled one, counts as fine)."""
    if stack is None or not stack.ss_sp or stack.ss_flags & SS_DISABLE:
        return True
    ends = {stack.ss_sp, stack.ss_sp + stack.ss_size - 1}
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if "w" in perms:
                ends = {a for a in ends if not start <= a < end}
    return not ends


def repair(before):
    """If the thread's stack is on unmapped memory, put `before` back (or disable the alternate stack
    where `before` is gone too). True if it had to."""
    now = current()
    if now is None or is_mapped(now):
        return False
    if before is None or not is_mapped(before):
        before = Stack(None, SS_DISABLE, 0)
    _sigaltstack(before)
    return True


@contextlib.contextmanager
def kept():
    """Run the block; if it left the thread's alternate signal stack on unmapped memory, put back the one
    of before (module doc)."""
    before = current()
    try:
        yield
    finally:
        repair(before)
