"""The command line's one error path (ppbackbone.cli.main_guard): user mistakes print `Error: ...` with no
traceback and exit 2, --debug / PPBACKBONE_DEBUG=1 add the traceback, bugs keep theirs and exit 1; every
tool runs through it, has --debug, and documents the exit statuses in --help."""
import errno
import importlib
import os
import subprocess
import sys

import pytest

from ppbackbone import cli
from ppbackbone.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("train", "eval", "export", "infer", "benchmark", "summary", "convert_weights", "ppdet_run")


def _tool(name):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def _raiser(exc):
    def main(argv):
        raise exc
    return main


@pytest.fixture(autouse=True)
def _no_debug_env(monkeypatch):
    monkeypatch.delenv("PPBACKBONE_DEBUG", raising=False)


@pytest.mark.parametrize("exc, expected", [
    (ConfigError("Arch.class_num='ten' is not valid"), "Error: Arch.class_num='ten' is not valid"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/latest.pdparams"),
     "Error: No space left on device: /data/out/latest.pdparams (the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/model"), "Error: Read-only file system: /ro/model"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "Error: Permission denied: /root/x"),
    (FileNotFoundError("Checkpoint not found: a.pth"), "Error: Checkpoint not found: a.pth"),
])
def test_user_errors_are_one_line_without_traceback(capsys, exc, expected):
    assert cli.main_guard(_raiser(exc), []) == cli.EXIT_USER_ERROR == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(capsys, monkeypatch, how):
    argv = ["--debug"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("PPBACKBONE_DEBUG", "1")
    assert cli.main_guard(_raiser(ConfigError("bad key")), argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().endswith("Error: bad key")


def test_bugs_keep_their_traceback_and_exit_1(capsys):
    assert cli.main_guard(_raiser(ZeroDivisionError("division by zero")), []) == cli.EXIT_BUG == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "Internal error: ZeroDivisionError: division by zero" in err
    assert "bug" in err


def test_interrupt_and_return_codes(capsys):
    assert cli.main_guard(_raiser(KeyboardInterrupt()), []) == 130
    assert cli.main_guard(lambda argv: None, []) == 0
    assert cli.main_guard(lambda argv: 3, []) == 3


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_documents_exit_statuses_and_debug(name, capsys):
    if name in ("train", "eval"):
        main = lambda argv: cli.parse_args(f"tools/{name}.py", argv)  # noqa: E731
    elif name == "ppdet_run":
        doc = _tool("ppdet_run").__doc__
        assert "--debug" in doc and "Exit statuses" in doc
        return
    else:
        main = _tool(name).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--debug" in out and "exit status:" in out and "130  interrupted" in out


@pytest.mark.parametrize("name, argv, message", [
    ("summary", ["--model", "hgnetv2_b7"], "Error: --model hgnetv2_b7: Unknown model 'hgnetv2_b7'. Did you mean"),
    ("convert_weights", ["missing.pth", "out.safetensors"], "Error: "),
    ("benchmark", ["latency", "--model", "hgnetv2_b0", "--runtimes", "tensorrt"], "Error: --runtimes: ['tensorrt']"),
    ("benchmark", ["latency", "--model", "hgnetv2_b9"], "Error: --model hgnetv2_b9: Unknown model"),
    ("export", ["-c", "no/such.yaml"], "Error: Config file not found: "),
    ("infer", ["--model_dir", "no/such/dir", "--image", "x.jpg"], "Error: model_dir no/such/dir"),
    ("ppdet_run", ["no/such/tool.py"], "Error: tool script not found: no/such/tool.py"),
])
def test_tools_report_user_mistakes(name, argv, message, capsys):
    assert cli.main_guard(_tool(name).main, argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv, message", [
    (["--batch_size", "0"], "argument --batch_size/--batch-size: expected an integer >= 1, got 0"),
    (["--threads", "-2"], "argument --threads: expected an integer >= 1, got -2"),
    (["--topk", "two"], "argument --topk: expected an integer >= 1, got 'two'"),
])
def test_infer_refuses_bad_counts(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool("infer").main(["--model_dir", "m", "--image", "x.jpg"] + argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_train_tool_end_to_end_config_error_has_no_traceback(tmp_path):
    """A real process: exit status 2, one Error line naming the key, no traceback."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c",
                           os.path.join(ROOT, "configs", "quickstart.yaml"), "-o", "Arch.class_num=ten",
                           "-o", f"Global.output_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Error: " in proc.stderr and "Arch.class_num='ten' is not valid" in proc.stderr
    assert "Traceback" not in proc.stderr
