"""What third-party code prints during an export that a user can neither act on nor needs, held back in one
place. Each pattern says why it is noise; everything else those libraries print is kept, in order."""
import contextlib
import os
import re
import sys
import tempfile

__all__ = ["NATIVE_NOISE", "P2O_NOISE", "without_native_noise", "quiet_paddle2onnx"]

# Paddle 3.3.1's F.softmax hands its PIR op `out=None`, which logs (C++, stderr) "Paddle static graph(PIR) not
# support input out tensor for now!!!!!" once per softmax in a static graph (every classifier export, Swin's
# attention) although no out tensor is given.
NATIVE_NOISE = (re.compile(r"Paddle static graph\(PIR\) not support input out tensor"),)
# paddle2onnx's progress lines (C++, stdout); "ONNX model saved in <path>" names the staging folder, which no
# longer exists once the export is published. Our own "Verified inference.onnx ..." line says what matters.
P2O_NOISE = (re.compile(r"^\[Paddle2ONNX\] (Start parsing the Paddle model file|Use opset_version = \d+ for ONNX "
                        r"export|PaddlePaddle model is exported as ONNX format now)"),)


@contextlib.contextmanager
def without_native_noise(patterns=NATIVE_NOISE, stream="stderr"):
    """Run the block with the process's `stream` ("stderr": fd 2, where C++ logs go, or "stdout": fd 1) held
    back; afterwards write it out again without the lines matching `patterns`."""
    fd, python_stream = (2, sys.stderr) if stream == "stderr" else (1, sys.stdout)
    python_stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            python_stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(p.search(line) for p in patterns)]
            if kept:
                python_stream.write("".join(kept))
                python_stream.flush()


@contextlib.contextmanager
def quiet_paddle2onnx():
    """paddle2onnx's conversion without its progress lines (P2O_NOISE) and its INFO log (the staging path)."""
    from paddle2onnx.utils import logging as p2o_logging
    level = p2o_logging.log_level
    p2o_logging.log_level = 1  # warnings and errors
    try:
        with without_native_noise(P2O_NOISE, "stdout"):
            yield
    finally:
        p2o_logging.log_level = level
