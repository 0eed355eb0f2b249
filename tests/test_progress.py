"""Progress on long work: a bar with an ETA (tqdm, on stderr) where the user waits, the demo data's
location said once per process."""
import numpy as np
import pytest

from ppbackbone.data import demo
from ppbackbone.deploy.autoselect import measure
from ppbackbone.progress import PROGRESS_ENV, progress


def test_bar_shows_remaining_time_when_forced_on(monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    for _ in progress(range(3), desc="work"):
        pass
    err = capsys.readouterr().err
    assert "work" in err and "<" in err  # tqdm's [elapsed<remaining] is the ETA


def test_bar_is_silent_off_a_terminal_and_when_forced_off(monkeypatch, capsys):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)  # pytest's stderr is not a terminal
    list(progress(range(3), desc="work"))
    monkeypatch.setenv(PROGRESS_ENV, "0")
    list(progress(range(3), desc="work"))
    assert capsys.readouterr().err == ""


class _Backend:
    """Stands for a runtime backend: `measure` only calls run(batch)."""

    def __init__(self):
        self.calls = 0

    def run(self, batch):
        self.calls += 1
        return [batch]


def test_runtime_auto_timing_shows_progress(monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    backends = {("paddle", "fp32"): _Backend(), ("onnxruntime", "fp32"): _Backend()}
    figures = measure(backends, np.zeros([1, 3, 8, 8], "float32"), warmup=1, runs=4, rounds=2)
    assert set(figures) == set(backends)
    assert all(b.calls == 5 for b in backends.values())
    err = capsys.readouterr().err
    assert "runtime=auto: timing 2 runtime/precision candidates" in err and "/10 [" in err


@pytest.mark.timeout(60)
def test_demo_data_written_with_progress_and_located_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    monkeypatch.setattr(demo, "_COUNTS", {"train": 3, "val": 1})  # 40 images: the same code, quickly
    root = str(tmp_path / "demo")
    assert demo.ensure_demo_dataset(root) == root
    err = capsys.readouterr().err
    assert "writing the demo dataset" in err and "/40 [" in err
    assert err.count(f"Demo dataset: {root} (written now") == 1
    demo.ensure_demo_dataset(root)
    assert capsys.readouterr().err == ""  # said once per process
