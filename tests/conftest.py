"""Shared fixtures: small inputs, a per-session model cache, and access to the reference packages; the
suite's run settings (a default timeout, one temp directory per pytest-xdist worker)."""
import logging
import os
import shutil
import site
import sys
import tempfile

# Under pytest-xdist each worker, and every tool it runs, gets its own temp directory: no two processes
# share temp files. Set before Paddle is imported; removed when the worker ends.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
WORKER_TMP = None
if WORKER:
    WORKER_TMP = tempfile.mkdtemp(prefix=f"ppbackbone-tests-{WORKER}-")
    os.environ["TMPDIR"] = tempfile.tempdir = WORKER_TMP

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import ppbackbone  # noqa: E402
from ppbackbone.deploy import signal_stack  # noqa: E402

IMAGE_SIZE = 64  # small inputs keep the suite within minutes on 2 CPU cores


# A test without its own `@pytest.mark.timeout` gets this one (unless --timeout is given): a hang fails
# instead of stalling CI. The thread method also stops a wait inside Paddle's C++ code, which SIGALRM
# cannot; under pytest-xdist it ends only the worker, which is replaced. Generous: on a machine shared
# with other jobs the slowest test took 195 s (tests/test_training.py::test_short_training_learns at a
# load average of 20 on 2 cores).
DEFAULT_TIMEOUT = 600


def _fault_log(worker, controller_pid):
    """Where a pytest-xdist worker's fatal-signal traceback goes (read by the controller if it dies)."""
    return os.path.join(tempfile.gettempdir() if not WORKER_TMP else os.path.dirname(WORKER_TMP),
                        f"ppbackbone-tests-faults-{controller_pid}-{worker}.log")


def _record_fatal_signals():
    """A worker that dies of a signal (SIGSEGV/SIGABRT/SIGBUS/SIGFPE/SIGILL, or SIGTERM/SIGHUP sent to it)
    writes every thread's traceback to its fault log first (a timeout too: pytest_timeout_set_timer); the
    controller prints it (pytest_testnodedown)."""
    import faulthandler
    import signal
    log = open(_fault_log(WORKER, os.getppid()), "w")
    faulthandler.enable(file=log, all_threads=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        faulthandler.register(sig, file=log, all_threads=True, chain=True)
    return log


FAULT_LOG = _record_fatal_signals() if WORKER else None


def pytest_configure(config):
    paddle.set_device("cpu")
    BASELINE_STATE.update(_process_state())
    BASELINE_SIGNAL_STACK.append(signal_stack.current())
    config.addinivalue_line("markers", "docs_commands: runs the command blocks of README.md and docs/*.md "
                                       "(tests/test_docs_commands.py, about 3 minutes of CPU)")


# tests/test_bad_inputs.py counts its generated cases here, {(kind, outcome): n}; printed after the run.
BAD_INPUT_COUNTS = {}


def pytest_collection_modifyitems(config, items):
    if config.getoption("timeout", None):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT, method="thread"))


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout's thread method writes the test's captured output and every thread's stack to the
    terminal, then ends the process. A pytest-xdist worker's terminal output goes nowhere, so a worker
    ended by a timeout died without a word: in a worker the same goes to its fault log, which the
    controller prints (pytest_testnodedown)."""
    if not FAULT_LOG or settings.method != "thread":
        return None  # pytest-timeout's own timer
    import threading
    import pytest_timeout
    from _pytest._io import TerminalWriter

    def expire():
        writer = TerminalWriter(FAULT_LOG)
        writer.sep("+", f"Timeout: {item.nodeid} ran over its {settings.timeout:g} s")
        capman = item.config.pluginmanager.getplugin("capturemanager")
        if capman:
            capman.suspend_global_capture(item)
            for title, text in zip(("stdout", "stderr"), capman.read_global_capture()):
                if text:
                    writer.sep("~", f"Captured {title}")
                    writer.write(text[-20000:])
        pytest_timeout.dump_stacks(writer)
        writer.flush()
        FAULT_LOG.flush()
        os._exit(1)

    timer = threading.Timer(settings.timeout, expire)
    timer.daemon = True
    item.cancel_timeout = lambda: (timer.cancel(), timer.join())
    timer.start()
    return True


def pytest_sessionfinish(session):
    """A pytest-xdist worker hands its bad-input counts to the controller, which prints the summary."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["bad_input_counts"] = [[k, o, n] for (k, o), n in BAD_INPUT_COUNTS.items()]
        session.config.workeroutput["leaked_state"] = LEAKED_STATE


def pytest_unconfigure(config):
    if WORKER_TMP:
        shutil.rmtree(WORKER_TMP, ignore_errors=True)
    if FAULT_LOG:  # ended normally: nothing to report
        import faulthandler
        faulthandler.disable()
        FAULT_LOG.close()
        os.remove(FAULT_LOG.name)


NO_DUMP = ("(none: SIGKILL, os._exit, a signal handler installed later in place of ours, or a SIGSEGV the kernel "
           "could not deliver, e.g. on an alternate signal stack left on unmapped memory: deploy/signal_stack.py)")


def _exit_status(node):
    """How a pytest-xdist worker process ended: its exit status or the signal that killed it."""
    import signal
    popen = getattr(getattr(node.gateway, "_io", None), "popen", None)
    try:
        code = popen.wait(timeout=10)
    except Exception:  # noqa: BLE001 - no process object, or still running
        return "exit status unknown"
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    if error:  # the worker died: say of what, if it could write it down
        worker = node.gateway.id
        try:
            with open(_fault_log(worker, os.getpid())) as f:
                dump = f.read().strip()
        except OSError:
            dump = ""
        sys.stderr.write(f"\n[{worker}] died ({error}; {_exit_status(node)}); its fault log (a fatal signal's "
                         f"or a timeout's stacks): {dump or NO_DUMP}\n")
    for kind, outcome, n in getattr(node, "workeroutput", {}).get("bad_input_counts", []):
        BAD_INPUT_COUNTS[(kind, outcome)] = BAD_INPUT_COUNTS.get((kind, outcome), 0) + n
    LEAKED_STATE.update(getattr(node, "workeroutput", {}).get("leaked_state", {}))


def _math_threads():
    """The threads of the math libraries Paddle loaded (OpenMP, MKL), as they report them; None where a
    library is not loaded (or a build has another one)."""
    import ctypes
    out = {}
    for lib, getter in (("libiomp5.so", "omp_get_max_threads"), ("libmklml_intel.so", "MKL_Get_Max_Threads")):
        try:
            out[getter] = getattr(ctypes.CDLL(lib, mode=os.RTLD_NOLOAD), getter)()
        except (OSError, AttributeError):
            out[getter] = None
    return out


def _process_state():
    """The process-wide state that changes how later code in the same process computes: Paddle's flags, its
    math-library threads, default dtype, device and mode."""
    from paddle.base import core
    flags = core.globals()
    state = {}
    for key in flags.keys():
        try:
            state[key] = flags[key]
        except Exception:  # a flag Paddle cannot read back
            pass
    state.update(_math_threads())
    # a signal stack left on unmapped memory kills the process at its next handled signal (a child's exit)
    state["signal_stack_mapped"] = signal_stack.is_mapped(signal_stack.current())
    state.update(default_dtype=paddle.get_default_dtype(), device=paddle.get_device(),
                 dynamic_mode=paddle.in_dynamic_mode())
    return state


# Process-wide state a test left changed (restored after it): {test id: ["key: before -> after", ...]};
# printed after the run.
LEAKED_STATE = {}
BASELINE_STATE = {}  # the process state before the first test (pytest_configure)
BASELINE_SIGNAL_STACK = []  # the main thread's alternate signal stack then (put back if a test left it unmapped)


@pytest.fixture(autouse=True)
def _process_state_restored(request):
    """Each test leaves the process's numerics as it found them: with pytest-xdist any test may follow
    any other in the same worker, and e.g. a Paddle Inference predictor that changed the math-library
    threads made a later in-process training sum differently (tests/test_checkpoint.py's resume test).
    Compared with the state before the first test (pytest_configure), so what a module fixture changed is put
    back too."""
    yield
    before, after = BASELINE_STATE, _process_state()
    changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
               if before.get(k) != after.get(k) and before.get(k) is not None}
    if not changed:
        return
    LEAKED_STATE[request.node.nodeid] = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())]
    from paddle.base import core
    for key, (value, _) in changed.items():
        if key.startswith("FLAGS_") and value is not None:
            paddle.set_flags({key: value})
    if "omp_get_max_threads" in changed and before["omp_get_max_threads"]:
        core.set_num_threads(before["omp_get_max_threads"])
    if "signal_stack_mapped" in changed:
        signal_stack.repair(BASELINE_SIGNAL_STACK[0])
    paddle.set_default_dtype(before["default_dtype"])
    paddle.set_device(before["device"])
    if before["dynamic_mode"] and not paddle.in_dynamic_mode():
        paddle.disable_static()


@pytest.fixture(autouse=True)
def _ppbackbone_logger_propagates():
    """Each test starts with the `ppbackbone` logger propagating to the root logger (its default), where
    caplog listens. A Trainer built earlier in the same process turns propagation off (setup_logger gives
    the logger its own stdout/file handlers), and under pytest-xdist any test may follow any other."""
    logging.getLogger("ppbackbone").propagate = True


def pytest_terminal_summary(terminalreporter):
    if LEAKED_STATE:
        terminalreporter.section("process-wide state changed by tests (restored after each)")
        by_change = {}
        for nodeid, lines in sorted(LEAKED_STATE.items()):
            for line in lines:
                by_change.setdefault(line, []).append(nodeid)
        for line, nodeids in sorted(by_change.items()):
            more = f" and {len(nodeids) - 3} more" if len(nodeids) > 3 else ""
            terminalreporter.write_line(f"{line}: {len(nodeids)} test(s), e.g. {', '.join(nodeids[:3])}{more}")
    if not BAD_INPUT_COUNTS:
        return
    kinds = sorted({kind for kind, _ in BAD_INPUT_COUNTS})
    terminalreporter.section("bad-input cases (tests/test_bad_inputs.py)")
    for kind in kinds:
        outcomes = {o: n for (k, o), n in BAD_INPUT_COUNTS.items() if k == kind}
        terminalreporter.write_line(f"{kind:<28} {sum(outcomes.values()):>5} tried: " +
                                    ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())))
    terminalreporter.write_line(f"{'total':<28} {sum(BAD_INPUT_COUNTS.values()):>5} tried")


@pytest.fixture
def image():
    """A fixed random batch of two 64x64 RGB images."""
    rng = np.random.RandomState(0)
    return paddle.to_tensor(rng.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE).astype("float32"))


def randomize_state(model, seed=0):
    """Give every tensor (BN statistics and LAB too) a non-trivial value so parity tests can fail."""
    rng = np.random.RandomState(seed)
    with paddle.no_grad():
        for key, tensor in model.state_dict().items():
            if "int" in str(tensor.dtype):
                continue  # index buffers (Swin's relative_position_index) are data, not weights
            shape = tuple(tensor.shape)
            if key.endswith("_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            elif key.endswith("_mean") or key.endswith("bias"):
                value = rng.normal(0, 0.1, shape)
            elif key.endswith("scale") or (key.endswith("weight") and len(shape) == 1):
                value = rng.uniform(0.5, 1.5, shape)
            else:
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                value = rng.normal(0, (2.0 / fan_in) ** 0.5, shape)
            tensor.set_value(value.astype("float32"))
    return model


def import_reference(module):
    """Import a module of the reference wheels (paddleclas==2.6.0 keeps `ppcls` under `paddleclas/`)."""
    if module.startswith("ppcls"):
        for base in site.getsitepackages() + [site.getusersitepackages()]:
            candidate = os.path.join(base, "paddleclas")
            if os.path.isdir(os.path.join(candidate, "ppcls")) and candidate not in sys.path:
                sys.path.append(candidate)
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RuntimeError(f"Reference package for {module} is not importable ({err}); install the test "
                           f"dependencies as the README says") from err
