"""Non-finite values are errors where they make results meaningless: NaN/Inf weights are named by
tensor at load (allowed by a flag, for debugging), an evaluation whose loss is NaN fails naming it,
and a run whose weights diverged publishes no checkpoint."""
import os

import numpy as np
import paddle
import pytest
from PIL import Image

from ppbackbone import cli, create_model
from ppbackbone.config import load_config
from ppbackbone.engine import Trainer
from ppbackbone.engine.checkpoint import CheckpointError, find_checkpoints, load_checkpoint
from ppbackbone.engine.trainer import NonFiniteLossError
from ppbackbone.weights.io import NonFiniteWeightsError, load_weights, save_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def _poisoned(model, path, keys_values):
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    for key, value in keys_values.items():
        state[key].flat[:2] = value
    return save_weights(state, path)


def test_nan_weights_are_named_at_load_and_allowed_for_debugging(tmp_path):
    model = create_model("pplcnet_x0_25", num_classes=4)
    keys = list(model.state_dict())
    path = _poisoned(model, tmp_path / "bad.pdparams", {keys[0]: np.nan, keys[5]: np.inf})
    fresh = create_model("pplcnet_x0_25", num_classes=4)
    before = fresh.state_dict()[keys[0]].numpy().copy()
    with pytest.raises(NonFiniteWeightsError, match=rf"2 tensor\(s\) hold NaN/Inf values \({keys[0]}: 2 NaN, 0 Inf "
                                                    rf"of \d+; {keys[5]}: 0 NaN, 2 Inf of \d+\).*allow_nonfinite"):
        load_weights(fresh, path)
    np.testing.assert_array_equal(fresh.state_dict()[keys[0]].numpy(), before)  # nothing loaded
    report = load_weights(fresh, path, allow_nonfinite=True, verbose=False)
    assert [k for k, *_ in report.nonfinite] == [keys[0], keys[5]]
    assert "NON-FINITE 2" in report.summary() and np.isnan(fresh.state_dict()[keys[0]].numpy()).sum() == 2


@pytest.fixture
def tiny_eval(tmp_path):
    """A config evaluating hgnetv2_b0 at 32 px on 4 images, and an all-NaN weights file for it."""
    rng = np.random.RandomState(0)
    lines = []
    for i in range(4):
        Image.fromarray(rng.randint(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
        lines.append(f"{i}.jpg {i % 2}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    ops = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": 32}},
           {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3, "std": [0.5] * 3, "order": ""}}]
    cfg = load_config(QUICKSTART, [f"Global.output_dir={tmp_path / 'out'}", "Global.epochs=1", "Arch.class_num=2",
                                   "Global.print_batch_step=100"])
    for mode in ("Train", "Eval"):
        section = cfg["DataLoader"][mode]
        section["dataset"] = {"name": "ImageNetDataset", "image_root": str(tmp_path),
                              "cls_label_path": str(tmp_path / "list.txt"), "transform_ops": ops}
        section["sampler"]["batch_size"] = 4
        section["loader"] = {"num_workers": 0}
    model = create_model("hgnetv2_b0", num_classes=2)
    nan = save_weights({k: np.full(v.shape, np.nan, "float32") for k, v in model.state_dict().items()},
                       tmp_path / "nan.pdparams")
    return cfg, nan


def test_eval_of_nan_weights_fails_naming_the_tensor_then_the_loss(tiny_eval, tmp_path, capsys):
    cfg, nan = tiny_eval
    config = tmp_path / "eval.yaml"
    import yaml
    config.write_text(yaml.safe_dump(cfg))
    argv = ["-c", str(config), "-o", f"Global.pretrained_model={nan}"]
    assert cli.run("eval", "eval", argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Error: " in err and "hold NaN/Inf values (stem.stem1.conv.weight: " in err and "Traceback" not in err, err
    # allowed for debugging: the weights load, and the evaluation itself refuses its NaN loss
    assert cli.run("eval", "eval", argv + ["Global.allow_nonfinite_weights=True"]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Error: the evaluation loss is nan over 4 images of DataLoader.Eval" in err and nan in err, err


def test_diverged_weights_are_never_saved(tiny_eval):
    """Weights that turned NaN (the loss of the last step was still finite) publish no checkpoint."""
    cfg, _ = tiny_eval
    cfg["Global"]["eval_during_train"] = False
    trainer = Trainer(cfg)
    try:
        name, param = next(iter(trainer.model.state_dict().items()))
        param.set_value(paddle.full(param.shape, float("nan"), param.dtype))
        with pytest.raises(NonFiniteLossError, match=rf"after epoch 1 1 weight tensor\(s\) hold NaN/Inf \({name}: .*"
                                                     r"training diverged, nothing was saved. Lower Optimizer.lr"):
            trainer.save(["best_model", "latest"], 1, 0.5)
        assert find_checkpoints(trainer.output_dir) == {}
    finally:
        trainer.release_lock()


def test_resume_from_a_nan_checkpoint_is_refused(tiny_eval):
    cfg, _ = tiny_eval
    cfg["Global"]["eval_during_train"] = False
    trainer = Trainer(cfg)
    trainer.train()
    latest = os.path.join(trainer.output_dir, "latest")
    from ppbackbone.engine.checkpoint import save_checkpoint, read_states
    state = {k: v.numpy() for k, v in trainer.model.state_dict().items()}
    key = next(iter(state))
    state[key] = np.full_like(state[key], np.inf)
    save_checkpoint([latest], state, trainer.optimizer.state_dict(), read_states(latest))
    with pytest.raises(CheckpointError, match=rf"latest.pdparams: 1 tensor\(s\) hold NaN/Inf values \({key}: 0 NaN"):
        load_checkpoint(latest)
    assert load_checkpoint(latest, allow_nonfinite=True)["model"][key][0, 0, 0, 0] == np.inf


def test_export_of_nan_weights_names_the_tensor_and_writes_nothing(tmp_path):
    from ppbackbone.errors import ExportError
    from ppbackbone.deploy.export import export_model
    model = create_model("pplcnet_x0_25", num_classes=4)
    key = list(model.state_dict())[3]
    path = _poisoned(model, tmp_path / "bad.pdparams", {key: np.nan})
    config = {"Arch": {"name": "pplcnet_x0_25", "class_num": 4}, "Global": {"image_shape": [3, 32, 32]}}
    save_dir = str(tmp_path / "model")
    with pytest.raises(ExportError, match=rf"weights={path}: .*1 tensor\(s\) hold NaN/Inf values \({key}: 2 NaN"):
        export_model(config, save_dir=save_dir, weights=path, log=lambda *a: None)
    config["Global"]["allow_nonfinite_weights"] = True  # loads, but an export of them is still refused
    with pytest.raises(ExportError, match=rf"1 weight tensor\(s\) hold NaN/Inf \({key}: 2 NaN.*export of them is "
                                          r"refused"):
        export_model(config, save_dir=save_dir, weights=path, log=lambda *a: None)
    assert os.listdir(tmp_path) == ["bad.pdparams"]
