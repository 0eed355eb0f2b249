"""Run safety with real training processes: one run per output folder (a live lock refuses a second
run, a dead one is taken over), SIGTERM ends training like Ctrl-C (exit 143, checkpoints intact, one
line), and a data error in a worker process is one `Error:` line. Tiny model input (32 px), 8 images."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ppbackbone.engine.checkpoint import load_checkpoint
from ppbackbone.engine.run_lock import LOCK_NAME, RunLock, RunLockError, process_alive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "tools", "train.py")

_CONFIG = """
Global: {{output_dir: {out}, device: cpu, epochs: 1, save_interval: 1, eval_during_train: False, print_batch_step: 1}}
Arch: {{name: hgnetv2_b0, class_num: 2}}
Loss: {{Train: [{{CELoss: {{weight: 1.0}}}}]}}
Optimizer: {{name: Momentum, momentum: 0.9, lr: {{name: Cosine, learning_rate: 0.01}}}}
DataLoader:
  Train:
    dataset: {{name: ImageNetDataset, image_root: {data}, cls_label_path: {data}/list.txt,
              transform_ops: [{{DecodeImage: {{to_rgb: True, channel_first: False}}}}, {{ResizeImage: {{size: 32}}}},
                              {{NormalizeImage: {{scale: 1.0/255.0, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], order: ''}}}}]}}
    sampler: {{name: DistributedBatchSampler, batch_size: 4, drop_last: True, shuffle: True}}
    loader: {{num_workers: 0}}
"""


@pytest.fixture
def tiny(tmp_path):
    """(config path, run folder): 8 random 40x40 JPEGs of 2 classes, hgnetv2_b0 at 32 px, 1 epoch."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.RandomState(0)
    lines = []
    for i in range(8):
        Image.fromarray(rng.randint(0, 256, (40, 40, 3), dtype=np.uint8)).save(data / f"{i}.jpg")
        lines.append(f"{i}.jpg {i % 2}")
    (data / "list.txt").write_text("\n".join(lines) + "\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(_CONFIG.format(out=tmp_path / "out", data=data))
    return str(config), str(tmp_path / "out" / "hgnetv2_b0")


def _train(config, *overrides, **kwargs):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, TRAIN, "-c", config, "-o", *(overrides or ["Global.epochs=1"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def _lock_pid(run_dir):
    """The pid recorded in the run folder's lock file, or None (no file yet, or not written yet)."""
    try:
        return json.loads(open(os.path.join(run_dir, LOCK_NAME)).read()).get("pid")
    except (OSError, ValueError):
        return None


def _wait_for(predicate, proc, timeout=50):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended early ({proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.timeout(120)
def test_second_run_into_a_folder_in_use_is_refused_and_sigterm_ends_the_first(tiny):
    """Two trainings into one folder: the second exits 2 naming the folder and the owner's pid and
    writes nothing there; SIGTERM then ends the first with one line and exit 143, its latest
    checkpoint loadable and its lock released."""
    config, run_dir = tiny
    first = _train(config, "Global.epochs=500")
    try:
        _wait_for(lambda: os.path.islink(os.path.join(run_dir, "latest")), first)
        log_before = open(os.path.join(run_dir, "train.log")).read()
        second = _train(config, "Global.epochs=500")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err[-2000:]
        assert f"Error: {run_dir} is in use by another training run (pid {first.pid} on host " \
               f"{socket.gethostname()}" in err, err
        assert "Traceback" not in err and "Training" not in out
        log_after = open(os.path.join(run_dir, "train.log")).read()
        assert log_after.startswith(log_before) and "Error" not in log_after
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == "Terminated (SIGTERM)", err[-3000:]
    assert "FatalError" not in err and "Traceback" not in err, err[-3000:]
    assert load_checkpoint(os.path.join(run_dir, "latest"))["states"]["epoch"] >= 1
    assert not os.path.exists(os.path.join(run_dir, LOCK_NAME))


@pytest.mark.timeout(120)
def test_sigterm_to_the_process_group_with_loader_workers(tiny):
    """SIGTERM to the whole process group (a scheduler's stop) with 2 loader worker processes: one line,
    exit 143, no report of a dead worker, no process left."""
    config, run_dir = tiny
    proc = _train(config, "Global.epochs=500", "DataLoader.Train.loader.num_workers=2", start_new_session=True)
    try:
        _wait_for(lambda: os.path.islink(os.path.join(run_dir, "latest")), proc)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    assert err.strip() == "Terminated (SIGTERM)", err[-3000:]
    with pytest.raises(ProcessLookupError):  # the workers are gone with it
        for _ in range(50):
            os.killpg(proc.pid, 0)
            time.sleep(0.2)
    assert load_checkpoint(os.path.join(run_dir, "latest"))["states"]["epoch"] >= 1


@pytest.mark.timeout(120, method="thread")
def test_a_run_that_ends_mid_epoch_stops_its_loader_workers_at_once(tiny):
    """An exception in the middle of an epoch (here KeyboardInterrupt, as SIGTERM raises) leaves train()
    with the worker processes already joined and the lock released, although the traceback still holds
    the epoch. (Left to the garbage collector, a SIGTERM'd run took 10 s to exit and paddle could print
    "workers exit unexpectedly" after the "Terminated" line.)"""
    import multiprocessing
    from ppbackbone.config import load_config
    from ppbackbone.engine import Trainer
    config, run_dir = tiny
    trainer = Trainer(load_config(config, ["DataLoader.Train.loader.num_workers=2",
                                           "DataLoader.Train.sampler.batch_size=2"]))
    steps, others = [], set(multiprocessing.active_children())  # left by other tests of this process, if any

    def step(*args):
        steps.append(len(set(multiprocessing.active_children()) - others))
        raise KeyboardInterrupt

    trainer._train_step = step
    with pytest.raises(KeyboardInterrupt) as stopped:
        trainer.train()
    assert steps == [2]  # both workers were serving the epoch the step stopped
    assert stopped.traceback and set(multiprocessing.active_children()) - others == set()
    assert not os.path.exists(os.path.join(run_dir, LOCK_NAME))


@pytest.mark.timeout(120)
def test_lock_of_a_killed_run_is_taken_over(tiny):
    """A run killed with SIGKILL leaves its lock file; the next run names the dead owner in one notice
    line and trains."""
    config, run_dir = tiny
    first = _train(config, "Global.epochs=500")
    # the file is created before its owner is written into it: wait for the record (a run killed in
    # between leaves an empty file, which is taken over without a notice)
    _wait_for(lambda: _lock_pid(run_dir) == first.pid, first)
    first.kill()
    first.wait(timeout=30)
    assert os.path.exists(os.path.join(run_dir, LOCK_NAME))
    second = _train(config, "Global.epochs=1", "Global.overwrite=True")
    out, err = second.communicate(timeout=90)
    assert second.returncode == 0, err[-3000:]
    notices = [line for line in err.splitlines() if "stale lock" in line]
    assert len(notices) == 1 and f"pid {first.pid} on host {socket.gethostname()}" in notices[0], err[-3000:]
    assert "no longer running" in notices[0]
    assert not os.path.exists(os.path.join(run_dir, LOCK_NAME))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
def test_worker_data_error_is_one_error_line(tiny, workers):
    """A truncated JPEG read by a worker process: exit 2 and one `Error:` line naming the file, no
    traceback (paddle's reader thread used to print one first)."""
    config, run_dir = tiny
    data = os.path.join(os.path.dirname(config), "data")
    with open(os.path.join(data, "3.jpg"), "rb") as f:
        head = f.read(300)
    with open(os.path.join(data, "3.jpg"), "wb") as f:
        f.write(head)
    proc = _train(config, "Global.epochs=1", f"DataLoader.Train.loader.num_workers={workers}")
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and os.path.join(data, "3.jpg") in lines[0], err


# ------------------------------------------------------------------------------------ the lock itself
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not process_alive(proc.pid)
    return proc.pid


def test_lock_refuses_a_second_holder_and_releases(tmp_path):
    script = ("import sys, time; from ppbackbone.engine.run_lock import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
              "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        owner = json.loads((tmp_path / LOCK_NAME).read_text())
        assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname()
        with pytest.raises(RunLockError, match=rf"{tmp_path} is in use by another training run \(pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # the holder died: stale, taken over
        assert lock.held and lock.took_over["pid"] == holder.pid
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_later_lock_of_this_process_takes_the_folder_over(tmp_path):
    """A notebook cell building a Trainer again: the earlier, never-trained one gives the lock up."""
    first = RunLock(tmp_path).acquire()
    second = RunLock(tmp_path).acquire()
    assert second.held and not first.held
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    second.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path, capsys):
    pid = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0}))
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock.took_over["pid"] == pid
        err = capsys.readouterr().err
        assert f"taking over the stale lock {tmp_path / LOCK_NAME} of pid {pid}" in err and "no longer running" in err
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_lock_of_another_host_is_refused_with_what_to_do(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 4242, "host": "elsewhere", "started": 0}))
    with pytest.raises(RunLockError, match=r"pid 4242 on host elsewhere.*if that run is gone, delete"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------ export staging folders
@pytest.mark.timeout(120)
def test_next_export_removes_staging_folders_of_killed_exports_only(tmp_path):
    """Folders a killed export left beside its target (owner pid dead) go at the next export into the
    same parent; a live export's, another host's and an unnamed one stay; so does a `.old-` export
    whose folder is missing (it is the only copy)."""
    from ppbackbone.deploy.export import export_model
    dead, host = _dead_pid(), socket.gethostname()
    planted = {".model.tmp-{}@{}-ab12cd_x".format(dead, host): False, ".other.tmp-{}@{}-zz9".format(dead, host): False,
               ".model.old-{}@{}-q1".format(dead, host): False,  # model/ exists: a leftover, removed
               ".gone.old-{}@{}-q2".format(dead, host): True,  # gone/ does not exist: kept
               ".model.tmp-{}@{}-live1".format(os.getpid(), host): True,
               ".model.tmp-{}@elsewhere-h1".format(dead): True, ".model.tmp-legacy7": True}
    for name in planted:
        (tmp_path / name).mkdir()
        (tmp_path / name / "inference.pdiparams").write_bytes(b"partial")
    (tmp_path / "model").mkdir()  # a previous export, replaced by this one
    (tmp_path / "model" / "inference.yml").write_text("previous")
    lines = []
    config = {"Arch": {"name": "pplcnet_x0_25", "class_num": 4}, "Global": {"image_shape": [3, 32, 32]}}
    export_model(config, save_dir=str(tmp_path / "model"), allow_random_weights=True, verify=False, latency_runs=0,
                 log=lines.append)
    left = set(os.listdir(tmp_path))
    assert left == {"model"} | {name for name, kept in planted.items() if kept}, left
    removed = [line for line in lines if line.startswith("Removed ")]
    assert len(removed) == 3 and all(f"(pid {dead}) that is no longer running" in line for line in removed), lines


@pytest.mark.timeout(150)
def test_distributed_run_locks_on_rank_0_only(tiny, tmp_path):
    """paddle.distributed.launch with 2 CPU ranks: rank 0 holds the lock, rank 1 does not ask for it
    (it would be refused), the run trains, saves and releases the lock."""
    config, run_dir = tiny
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
                           str(tmp_path / "log"), TRAIN, "-c", config, "-o", "Global.epochs=1"],
                          capture_output=True, text=True, env=env, timeout=140, cwd=str(tmp_path))
    logs = "".join(open(tmp_path / "log" / f).read() for f in sorted(os.listdir(tmp_path / "log")))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + logs[-3000:]
    assert "in use by another training run" not in logs
    assert load_checkpoint(os.path.join(run_dir, "latest"))["states"]["epoch"] == 1
    assert not os.path.exists(os.path.join(run_dir, LOCK_NAME))
