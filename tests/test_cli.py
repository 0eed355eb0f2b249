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
    ("summary", ["--model", "hgnetv2_b9"], "Error: --model hgnetv2_b9: Unknown model 'hgnetv2_b9'. Did you mean"),
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


@pytest.mark.parametrize("pretrained", ["True", "ssld_stage1"])
def test_offline_pretrained_download_through_a_tool_is_a_user_error(pretrained, tmp_path, monkeypatch, capsys):
    """create_model(..., pretrained=True or a weight tag) with no network: the user's environment, so one Error
    line naming where to place the file, not a bug report (and the exporter reads a tag as create_model does)."""
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("PPBACKBONE_HOME", str(tmp_path))
    argv = ["--model", "hgnetv2_b0", "-o", f"Arch.pretrained={pretrained}", "-o",
            f"Global.save_inference_dir={tmp_path}/x"]
    assert cli.main_guard(_tool("export").main, argv) == 2
    err = capsys.readouterr().err
    expected = os.path.join(str(tmp_path), "weights", "PPHGNetV2_B0_ssld_stage1_pretrained.pdparams")
    assert err.startswith("Error: ") and "Could not download" in err and f"place it at {expected}" in err, err
    assert "Traceback" not in err and "bug" not in err
    argv[3] = "Arch.pretrained=ssld_v9"
    assert cli.main_guard(_tool("export").main, argv) == 2
    assert "Error: Arch.pretrained: pretrained='ssld_v9' is neither a weights file nor a weight tag of hgnetv2_b0 " \
           "(its tags: ssld_stage1, ssld)" in capsys.readouterr().err


def _work_started(*args, **kwargs):
    raise AssertionError("the benchmark started work before checking its arguments")


def test_benchmark_without_paddleclas_says_install_or_no_reference(monkeypatch, capsys):
    """Before any export: PaddleClas missing is one Error line with both ways out, and --no-reference skips it."""
    from ppbackbone.benchmarks import latency
    for module in ("ppcls", "ppcls.arch", "ppcls.arch.backbone"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ModuleNotFoundError
    monkeypatch.setattr(latency, "_latency_benchmark", _work_started)
    argv = ["latency", "--model", "hgnetv2_b0", "--runtimes", "paddle", "--precisions", "fp32"]
    assert cli.main_guard(_tool("benchmark").main, argv) == 2
    err = capsys.readouterr().err
    assert "Error: PaddleClas is not importable" in err and "pip install --no-deps paddleclas" in err, err
    assert "or pass --no-reference" in err and "Traceback" not in err
    latency.check_references(["hgnetv2_b0"], [], with_reference=False)  # what --no-reference asks for: no error
    with pytest.raises(latency.ReferenceUnavailable) as info:  # a bare --reference needs PaddleClas itself
        latency.check_references([], ["PPLCNet_x1_0"])
    assert "--no-reference" not in str(info.value)


@pytest.mark.parametrize("argv, message", [
    (["latency", "--reference", "NoSuchNet"], "Error: --reference NoSuchNet: PaddleClas has no backbone builder"),
    (["latency", "--model", "hgnetv2_b0", "--markdown", "no/such/dir/t.md"], "Error: --markdown no/such/dir/t.md: the "
                                                                            "folder"),
    (["latency", "--model", "pplcnetv4_tiny_rec", "--image-size", "48", "320", "3"],
     "Error: --image-size takes one side or a height and a width, got 3 values: [48, 320, 3]"),
])
def test_benchmark_mistakes_are_reported_before_any_work(argv, message, monkeypatch, capsys):
    from ppbackbone.benchmarks import latency
    if "--reference" in argv:
        try:
            latency._paddleclas_backbones()
        except latency.ReferenceUnavailable as err:
            pytest.skip(f"the reference package (a test dependency, README) is missing: {err}")
    monkeypatch.setattr(latency, "_latency_benchmark", _work_started)
    assert cli.main_guard(_tool("benchmark").main, argv + ["--runtimes", "paddle", "--precisions", "fp32"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_train_benchmark_checks_its_reference_before_any_work(monkeypatch, capsys):
    from ppbackbone.benchmarks import train as train_benchmark
    monkeypatch.setattr(train_benchmark, "compare_train_throughput", _work_started)
    for module in ("ppcls", "ppcls.arch", "ppcls.arch.backbone"):
        monkeypatch.setitem(sys.modules, module, None)
    assert cli.main_guard(_tool("benchmark").main, ["train", "--model", "hgnetv2_b0"]) == 2
    err = capsys.readouterr().err
    assert "Error: PaddleClas is not importable" in err and "or pass --reference '' to time ppbackbone alone" in err
    assert "Traceback" not in err


def test_convert_weights_names_a_missing_checkpoint_before_asking_for_torch(capsys):
    assert cli.main_guard(_tool("convert_weights").main, ["no/such.pth", "out.safetensors"]) == 2
    assert "Error: Checkpoint not found: no/such.pth" in capsys.readouterr().err
