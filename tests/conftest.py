"""Shared fixtures: small inputs, a per-session model cache, and access to the reference packages."""
import os
import site
import sys

import numpy as np
import paddle
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import ppbackbone  # noqa: E402

IMAGE_SIZE = 64  # small inputs keep the suite within minutes on 2 CPU cores


def pytest_configure(config):
    paddle.set_device("cpu")
    config.addinivalue_line("markers", "docs_commands: runs the command blocks of README.md and docs/*.md "
                                       "(tests/test_docs_commands.py, about 3 minutes of CPU)")


# tests/test_bad_inputs.py counts its generated cases here, {(kind, outcome): n}; printed after the run.
BAD_INPUT_COUNTS = {}


def pytest_terminal_summary(terminalreporter):
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
