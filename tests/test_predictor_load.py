"""The Predictor under load, on a real tiny export (pplcnet_x0_25 at 32 px, Paddle Inference): one
Predictor shared by several threads gives the results of single-threaded calls, and memory stays flat
over 2000 calls. PPBACKBONE_SOAK=1 runs the long soak (PPBACKBONE_SOAK_CALLS calls, default 100000)."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ppbackbone.deploy.export import export_model
from ppbackbone.deploy.predictor import Predictor

SHAPE = [3, 32, 32]


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    save_dir = str(tmp_path_factory.mktemp("load") / "model")
    config = {"Arch": {"name": "pplcnet_x0_25", "class_num": 10}, "Global": {"image_shape": SHAPE}}
    export_model(config, save_dir=save_dir, allow_random_weights=True, latency_runs=0, log=lambda *a, **k: None)
    return save_dir


def _images(count, seed=0):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, (40 + i % 7, 36 + i % 5, 3), dtype=np.uint8) for i in range(count)]


@pytest.mark.timeout(60)
def test_one_predictor_shared_by_threads_matches_single_threaded(tiny_export):
    images = _images(24)
    predictor = Predictor(tiny_export, threads=1)
    expected = [predictor.predict(image)[0] for image in images]
    barrier = threading.Barrier(4)

    def work(worker):
        barrier.wait()  # all threads call at once
        results = []
        for round_ in range(5):
            for i in range(worker, len(images), 4):
                results.append((i, predictor.predict(images[i])[0]))
        return results

    with ThreadPoolExecutor(4) as pool:
        outcomes = [result for results in pool.map(work, range(4)) for result in results]
    assert len(outcomes) == 5 * len(images)
    for i, result in outcomes:
        assert result["class_ids"] == expected[i]["class_ids"], i
        np.testing.assert_allclose(result["scores"], expected[i]["scores"], rtol=1e-5, atol=1e-7, err_msg=str(i))


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    pytest.skip("no /proc/self/status on this system")


def _calls(predictor, count, images):
    for n in range(count):
        predictor.predict(images[n % len(images)])


@pytest.mark.timeout(60)
def test_memory_stays_flat_over_many_calls(tiny_export):
    """2000 calls after a warm-up of 300: resident memory grows by less than 25 MB (a leak of one 32x32
    float batch per call would be 24 MB; of one result dict with its arrays, more)."""
    predictor = Predictor(tiny_export, threads=1)
    images = _images(16, seed=1)
    _calls(predictor, 300, images)
    before = _rss_mb()
    _calls(predictor, 2000, images)
    growth = _rss_mb() - before
    assert growth < 25, f"RSS grew by {growth:.1f} MB over 2000 calls"


@pytest.mark.skipif(os.environ.get("PPBACKBONE_SOAK", "") not in ("1", "true", "yes"),
                    reason="long soak test: set PPBACKBONE_SOAK=1 (and PPBACKBONE_SOAK_CALLS, default 100000)")
def test_soak_many_threads_many_calls(tiny_export):
    calls = int(os.environ.get("PPBACKBONE_SOAK_CALLS", "100000"))
    predictor = Predictor(tiny_export, threads=1)
    images = _images(16, seed=2)
    expected = [predictor.predict(image)[0]["class_ids"] for image in images]

    def work(worker, count=calls):
        wrong = 0
        for n in range(worker, count, 4):
            wrong += predictor.predict(images[n % len(images)])[0]["class_ids"] != expected[n % len(images)]
        return wrong

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda w: work(w, 4000), range(4)))  # warm-up: each thread's allocator arena
        before = _rss_mb()
        assert sum(pool.map(work, range(4))) == 0
    growth = _rss_mb() - before
    assert growth < 50, f"RSS grew by {growth:.1f} MB over {calls} calls"


def _matmul():
    """A dygraph matmul long enough (K = 2048) for MKL to split over threads: its last bits depend on how many."""
    import paddle
    rng = np.random.RandomState(0)
    a = paddle.to_tensor(rng.randn(64, 2048).astype("float32"))
    b = paddle.to_tensor(rng.randn(2048, 64).astype("float32"))
    return (a @ b).numpy()


@pytest.mark.timeout(60)
def test_a_paddle_predictor_leaves_dygraph_sums_as_they_were(tiny_export):
    """Paddle Inference sets the process's MKL/OpenMP threads when it creates a predictor (and to 1 after a
    run); the backend puts Paddle's process setting back, so dygraph code later in the same process sums as
    before, bit for bit (a training there reproduces a fresh process's weights, as tests/test_checkpoint.py's
    resume test needs). Can fail only on a machine with 2 or more cores, where MKL uses them."""
    before = _matmul()
    predictor = Predictor(tiny_export, runtime="paddle", threads=2)  # created, not run yet
    np.testing.assert_array_equal(_matmul(), before)
    predictor.predict(_images(1)[0])
    np.testing.assert_array_equal(_matmul(), before)
