"""Global.to_static: training steps through paddle.jit.to_static give the dygraph losses and weights."""
import os

import numpy as np
import paddle
import pytest

from ppbackbone.config import load_config
from ppbackbone.engine import Trainer

QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.yaml")


def _trainer(tmp_path, to_static):
    cfg = load_config(QUICKSTART, [f"Global.output_dir={tmp_path}", "Global.eval_during_train=False",
                                   f"Global.to_static={to_static}", "Global.image_shape=[3,32,32]",
                                   "Arch.name=pplcnet_x0_25", "DataLoader.Train.loader.num_workers=0"])
    return Trainer(cfg)


@pytest.mark.timeout(300)
def test_to_static_training_matches_dygraph(tmp_path):
    rng = np.random.RandomState(0)
    x = paddle.to_tensor(rng.randn(8, 3, 32, 32).astype("float32"))
    y = paddle.to_tensor(rng.randint(0, 10, 8).astype("int64"))
    runs = {}
    for to_static in (False, True):
        trainer = _trainer(tmp_path / str(to_static), to_static)
        trainer.train_model.train()
        with trainer.names():
            losses = [trainer._train_step(x, y, i)[1]["loss"] for i in range(3)]
        runs[to_static] = losses, trainer.model.state_dict()["fc.weight"].numpy()
    assert isinstance(_trainer(tmp_path / "s", True).model.forward, paddle.jit.api.StaticFunction)
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4)
    assert runs[False][0][2] != runs[False][0][0]  # the weights moved between steps
    np.testing.assert_allclose(runs[True][1], runs[False][1], rtol=1e-3, atol=1e-6)
