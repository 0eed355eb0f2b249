"""Global.to_static (default True; False on CPU, where it measured slower): training steps through paddle.jit.to_static give the dygraph losses and
weights; a model paddle cannot convert trains in dygraph with one notice; a graph holding a Python value
that on_epoch_begin changes is traced again."""
import os

import numpy as np
import paddle
import pytest

import ppbackbone.engine.trainer as trainer_module
from ppbackbone.arch import create_model
from ppbackbone.config import load_config
from ppbackbone.engine import Trainer
from ppbackbone.engine.static_graph import convert_to_static, input_specs, is_static, rebuild_static

QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.yaml")


def _trainer(tmp_path, to_static=None, arch="pplcnet_x0_25"):
    overrides = [f"Global.output_dir={tmp_path}", "Global.eval_during_train=False", "Global.image_shape=[3,32,32]",
                 f"Arch.name={arch}", "DataLoader.Train.loader.num_workers=0"]
    if to_static is not None:  # None: the default
        overrides.append(f"Global.to_static={to_static}")
    return Trainer(load_config(QUICKSTART, overrides))


def _steps(trainer, x, y, n=3):
    trainer.train_model.train()
    with trainer.names():
        losses = [trainer._train_step(x, y, i)[1]["loss"] for i in range(n)]
    trainer.release_lock()
    return losses, {k: v.numpy() for k, v in trainer.model.state_dict().items()}


@pytest.mark.timeout(120)
def test_static_trains_as_dygraph(tmp_path):
    """A static trainer (the default off CPU); three AdamW steps give the dygraph losses
    (rtol 1e-4) and every weight and BN statistic (rtol 1e-3): the two run the same kernels, but the static
    graph's backward may sum a tensor's gradient contributions in another order (float rounding)."""
    rng = np.random.RandomState(0)
    x = paddle.to_tensor(rng.randn(8, 3, 32, 32).astype("float32"))
    y = paddle.to_tensor(rng.randint(0, 10, 8).astype("int64"))
    runs = {}
    for to_static in (True, None):  # each trainer seeds paddle when built: the same weights and dropout masks
        trainer = _trainer(tmp_path / str(to_static), to_static)
        assert is_static(trainer.model) == bool(to_static)  # None: the CPU default, dygraph
        runs[to_static] = _steps(trainer, x, y)
    (static_losses, static_weights), (dy_losses, dy_weights) = runs[True], runs[None]
    np.testing.assert_allclose(static_losses, dy_losses, rtol=1e-4)
    assert dy_losses[2] != dy_losses[0]  # the weights moved between steps
    assert static_weights.keys() == dy_weights.keys()
    for key, value in dy_weights.items():
        np.testing.assert_allclose(static_weights[key], value, rtol=1e-3, atol=1e-5, err_msg=key)


class _ValuesInForward(paddle.nn.Layer):
    """A classifier whose forward reads a tensor's values as a Python list (x.tolist()): paddle 3.3.1's
    to_static refuses it (an AssertionError in the transformed code)."""
    model_name = "values_in_forward"

    def __init__(self):
        super().__init__()
        self.inner = create_model("pplcnet_x0_25", num_classes=10)
        self.num_classes = 10

    def forward(self, x):
        rows = len(x.tolist())
        return self.inner(x) * (rows / rows)


@pytest.mark.timeout(120)
def test_a_model_to_static_refuses_trains_in_dygraph_with_one_notice(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "build_model", lambda cfg: _ValuesInForward())
    trainer = _trainer(tmp_path, to_static=True)
    notices = [line for line in capsys.readouterr().out.splitlines() if "Global.to_static" in line]
    assert len(notices) == 1, notices
    assert "WARNING Notice: Global.to_static: values_in_forward does not run as a static graph (AssertionError" \
        in notices[0]
    assert "training in dygraph" in notices[0] and "Global.to_static: False" in notices[0]
    assert not is_static(trainer.model)
    rng = np.random.RandomState(0)
    x = paddle.to_tensor(rng.randn(4, 3, 32, 32).astype("float32"))
    y = paddle.to_tensor(rng.randint(0, 10, 4).astype("int64"))
    losses, _ = _steps(trainer, x, y, n=2)
    assert np.isfinite(losses).all() and losses[1] != losses[0]


@pytest.mark.timeout(120)
def test_static_graph_is_traced_again_after_on_epoch_begin():
    """VanillaNet's deep-training schedule changes act_learn (a Python float the graph holds as a constant)
    in on_epoch_begin: after rebuild_static the static forward follows it, equal to dygraph."""
    paddle.seed(0)
    model = create_model("vanillanet_5", num_classes=10, act_learn_schedule="linear", decay_epochs=4)
    model.eval()
    x = paddle.to_tensor(np.random.RandomState(1).randn(2, 3, 64, 64).astype("float32"))
    specs = input_specs({"Global": {"image_shape": [3, 64, 64]}}, model)
    model, reason = convert_to_static(model, specs, ("eval",))
    assert reason is None and is_static(model)
    before = model(x).numpy()
    model.on_epoch_begin(2, 4)  # act_learn 1 (as built) -> 0.5
    model, reason = rebuild_static(model, specs, ("eval",))
    assert reason is None and is_static(model)
    after = model(x).numpy()
    model.forward.rollback()
    scale = np.abs(after).max()  # a fresh VanillaNet's logits are tiny (about 1e-8)
    np.testing.assert_allclose(after, model(x).numpy(), rtol=1e-4, atol=1e-4 * scale)
    assert np.abs(after - before).max() > 0.05 * scale  # the schedule changed the function
