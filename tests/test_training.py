"""Training engine: a real short run on the demo data (loss falls, accuracy beats chance),
checkpoint + resume continuing identically, eval of a saved checkpoint reproducing the in-training
eval, EMA files, VisualDL, optimizer/lr/loss/metric semantics, and the bad-input errors."""
import copy
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import ppbackbone
from ppbackbone.config import ConfigError, load_config
from ppbackbone.data import ensure_demo_dataset
from ppbackbone.engine import CheckpointError, Trainer, build_lr_scheduler, build_optimizer
from ppbackbone.engine.losses import BCELoss, CELoss
from ppbackbone.engine.metrics import TopkAcc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")
SIZE = 32
CLASSES = ("circle", "hstripes", "vstripes", "checker")  # an easy 4-class subset of the demo data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Label files of a small 4-class subset of the demo dataset (train and val)."""
    root = ensure_demo_dataset(str(tmp_path_factory.mktemp("demo") / "shapes"))
    out = tmp_path_factory.mktemp("lists")
    files = {}
    for split, count in (("train", 24), ("val", 16)):
        lines = [f"{split}/{name}/{i:04d}.jpg {label}" for label, name in enumerate(CLASSES) for i in range(count)]
        files[split] = str(out / f"{split}.txt")
        with open(files[split], "w") as f:
            f.write("\n".join(lines) + "\n")
    return root, files


def make_config(data, out, size=SIZE, **extra):
    """The quickstart recipe shrunk: 4 classes, `size` x `size`, no workers, a few epochs."""
    root, files = data
    o = [f"Global.output_dir={out}", "Global.epochs=2", "Global.print_batch_step=4", "Global.save_interval=1",
         "Arch.class_num=4", "DataLoader.Train.loader.num_workers=0", "DataLoader.Eval.loader.num_workers=0",
         "DataLoader.Train.sampler.batch_size=16", "DataLoader.Eval.sampler.batch_size=16"]
    cfg = load_config(QUICKSTART, o)
    for mode, split in (("Train", "train"), ("Eval", "val")):
        ds = cfg["DataLoader"][mode]["dataset"]
        ds.pop("split")
        ds.update(name="ImageNetDataset", image_root=root, cls_label_path=files[split])
        for op in ds["transform_ops"]:
            name, params = next(iter(op.items()))
            if name in ("RandCropImage", "CropImage"):
                params["size"] = size
            if name == "ResizeImage":
                params["resize_short"] = size + 4
    for key, value in extra.items():
        section, _, name = key.partition("__")
        node = cfg
        for part in section.split("."):
            node = node.setdefault(part, {})
        node[name] = value
    return cfg


@pytest.fixture(scope="module")
def run_a(data, tmp_path_factory):
    """A 2-epoch run with VisualDL on; its checkpoints serve the resume and eval tests."""
    out = str(tmp_path_factory.mktemp("run_a"))
    cfg = make_config(data, out, Global__use_visualdl=True)
    trainer = Trainer(cfg)
    result = trainer.train()
    final = {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}
    return {"cfg": cfg, "out": out, "trainer": trainer, "result": result, "final": final,
            "dir": os.path.join(out, "hgnetv2_b0")}


def test_short_training_learns(data, tmp_path):
    """Loss falls and validation accuracy beats chance (1/4) clearly."""
    cfg = make_config(data, str(tmp_path), size=48, Global__epochs=8, Global__eval_interval=8, Global__save_interval=8)
    cfg["Optimizer"] = {"name": "AdamW", "lr": {"name": "Cosine", "learning_rate": 0.004, "warmup_epoch": 1},
                        "weight_decay": 0.05, "one_dim_param_no_weight_decay": True}
    trainer = Trainer(cfg)
    result = trainer.train()
    losses = [h["loss"] for h in trainer.history]
    per_epoch = [np.mean([h["loss"] for h in trainer.history if h["epoch"] == e]) for e in (1, 8)]
    assert per_epoch[1] < per_epoch[0] * 0.8, per_epoch
    assert len(losses) == 8 * (96 // 16)
    assert result["last_eval"]["top1"] >= 0.45, result  # chance is 0.25 (this run reaches ~0.64)


def test_checkpoint_files_and_visualdl(run_a):
    files = set(os.listdir(run_a["dir"]))
    for prefix in ("latest", "best_model", "epoch_1", "epoch_2"):
        assert {prefix + ".pdparams", prefix + ".pdopt", prefix + ".pdstates"} <= files
    assert not any(f.startswith(".tmp") for f in files)
    states = paddle.load(os.path.join(run_a["dir"], "latest.pdstates"))
    assert states["epoch"] == 2 and states["model_name"] == "hgnetv2_b0" and "metric" in states
    opt = paddle.load(os.path.join(run_a["dir"], "latest.pdopt"))
    assert isinstance(opt, list) and "LR_Scheduler" in opt[0]  # PaddleClas's layout
    vdl = os.path.join(run_a["out"], "vdl")
    assert os.path.isdir(vdl) and any(f.startswith("vdlrecords") for f in os.listdir(vdl))


def test_resume_continues_identically(run_a, tmp_path):
    """Resuming from epoch_1 gives the same lr at every step and the same final weights."""
    cfg = copy.deepcopy(run_a["cfg"])
    cfg["Global"].update(output_dir=str(tmp_path), use_visualdl=False,
                         checkpoints=os.path.join(run_a["dir"], "epoch_1"))
    resumed = Trainer(cfg)
    assert resumed.start_epoch == 2
    resumed.train()
    original = [h for h in run_a["trainer"].history if h["epoch"] == 2]
    assert [h["step"] for h in resumed.history] == [h["step"] for h in original]
    np.testing.assert_allclose([h["lr"] for h in resumed.history], [h["lr"] for h in original], rtol=1e-7)
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in original], rtol=1e-5)
    for key, value in resumed.model.state_dict().items():
        np.testing.assert_allclose(value.numpy(), run_a["final"][key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert resumed.best_metric == pytest.approx(run_a["trainer"].best_metric)


def test_eval_of_checkpoint_reproduces_training_eval(run_a):
    cfg = copy.deepcopy(run_a["cfg"])
    cfg["Global"]["pretrained_model"] = os.path.join(run_a["dir"], "latest")
    result = Trainer(cfg, mode="eval").evaluate()
    expected = run_a["result"]["last_eval"]
    for key in ("top1", "top5"):
        assert result[key] == pytest.approx(expected[key])
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_eval_tool_prints_top1(run_a):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "eval.py"), "-c", QUICKSTART, "-o",
           f"Global.pretrained_model={os.path.join(run_a['dir'], 'latest')}", "Arch.class_num=4",
           f"Global.output_dir={run_a['out']}",
           f"DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short={SIZE + 4}",
           f"DataLoader.Eval.dataset.transform_ops.2.CropImage.size={SIZE}",
           "DataLoader.Eval.dataset.name=ImageNetDataset", "DataLoader.Eval.dataset.split=null",
           f"DataLoader.Eval.dataset.image_root={run_a['cfg']['DataLoader']['Eval']['dataset']['image_root']}",
           f"DataLoader.Eval.dataset.cls_label_path={run_a['cfg']['DataLoader']['Eval']['dataset']['cls_label_path']}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    top1 = run_a["result"]["last_eval"]["top1"]
    assert f"top1: {top1:.5f}" in proc.stdout


def test_resume_refuses_other_model_and_torn_checkpoint(run_a, data, tmp_path):
    cfg = copy.deepcopy(run_a["cfg"])
    cfg["Global"].update(output_dir=str(tmp_path), use_visualdl=False,
                         checkpoints=os.path.join(run_a["dir"], "epoch_1"))
    cfg["Arch"]["class_num"] = 5
    with pytest.raises(CheckpointError, match=r"does not fit hgnetv2_b0 \(class_num 5\).*shape-mismatched"):
        Trainer(cfg)
    cfg["Arch"] = {"name": "hgnetv2_b1", "class_num": 4}
    with pytest.raises(CheckpointError, match="saved from model 'hgnetv2_b0'"):
        Trainer(cfg)
    # a checkpoint whose files were only partly replaced (killed during the renames) is refused
    torn = tmp_path / "torn"
    torn.mkdir()
    for suffix in (".pdparams", ".pdopt", ".pdstates"):
        with open(os.path.join(run_a["dir"], "epoch_1" + suffix), "rb") as src:
            (torn / ("ckpt" + suffix)).write_bytes(src.read())
    with open(os.path.join(run_a["dir"], "epoch_2.pdparams"), "rb") as src:
        (torn / "ckpt.pdparams").write_bytes(src.read())
    cfg["Arch"] = {"name": "hgnetv2_b0", "class_num": 4}
    cfg["Global"]["checkpoints"] = str(torn / "ckpt")
    with pytest.raises(CheckpointError, match="incomplete"):
        Trainer(cfg)
    cfg["Global"]["checkpoints"] = str(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="not found"):
        Trainer(cfg)


def test_finetune_skips_head_of_other_size(run_a, data, tmp_path, capsys):
    cfg = make_config(data, str(tmp_path), Global__epochs=1)
    cfg["Arch"]["class_num"] = 5
    cfg["Global"]["pretrained_model"] = os.path.join(run_a["dir"], "best_model.pdparams")
    trainer = Trainer(cfg, mode="eval")
    assert "classifier head of another size skipped (fc.weight, fc.bias)" in capsys.readouterr().out
    saved = paddle.load(cfg["Global"]["pretrained_model"], return_numpy=True)
    np.testing.assert_array_equal(trainer.model.state_dict()["stem.stem1.conv.weight"].numpy(),
                                  saved["stem.stem1.conv.weight"])


def test_ema_checkpoint_layout(data, tmp_path):
    cfg = make_config(data, str(tmp_path), Global__epochs=1)
    cfg["EMA"] = {"decay": 0.9}
    trainer = Trainer(cfg)
    trainer.train()
    prefix = os.path.join(str(tmp_path), "hgnetv2_b0", "latest")
    params, raw = paddle.load(prefix + ".pdparams"), paddle.load(prefix + ".pdema")
    key = "stem.stem1.conv.weight"
    np.testing.assert_allclose(params[key].numpy() if hasattr(params[key], "numpy") else params[key],
                               trainer.ema.state_dict()[key].numpy(), rtol=1e-6)
    np.testing.assert_allclose(raw[key].numpy() if hasattr(raw[key], "numpy") else raw[key],
                               trainer.model.state_dict()[key].numpy(), rtol=1e-6)
    assert not np.allclose(trainer.ema.state_dict()[key].numpy(), trainer.model.state_dict()[key].numpy())


def test_epoch_hook_is_called(data, tmp_path):
    cfg = make_config(data, str(tmp_path), Global__epochs=2, Global__eval_during_train=False)
    cfg["DataLoader"]["Train"]["dataset"]["cls_label_path"] = data[1]["val"]  # 32 images: 2 steps per epoch
    trainer = Trainer(cfg)
    calls = []
    trainer.model.on_epoch_begin = lambda epoch, total: calls.append((epoch, total))
    trainer.train()
    assert calls == [(0, 2), (1, 2)]


# ------------------------------------------------------------------------------ optimizer, lr, loss, metric


def test_weight_decay_respects_param_attr_and_names_and_lr_mult():
    """One Momentum step with zero gradients: only decayed params move, by lr * lr_mult * coeff * w."""
    paddle.seed(0)
    model = ppbackbone.create_model("hgnetv2_b0", num_classes=4, lr_mult_list=[0.5, 1.0, 1.0, 1.0, 1.0])
    cfg = {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.1},
           "regularizer": {"name": "L2", "coeff": 0.01}, "no_weight_decay_name": "fc"}
    optimizer, scheduler = build_optimizer(cfg, model, epochs=1, steps_per_epoch=10)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    out = model(paddle.randn([2, 3, 32, 32]))
    (out * 0).sum().backward()
    optimizer.step()
    after = {k: v.numpy() for k, v in model.state_dict().items()}
    lr = 0.1
    np.testing.assert_allclose(after["stem.stem1.conv.weight"],
                               before["stem.stem1.conv.weight"] * (1 - lr * 0.5 * 0.01), rtol=1e-5)  # stem lr_mult 0.5
    np.testing.assert_allclose(after["stages.0.blocks.0.layers.0.conv.weight"],
                               before["stages.0.blocks.0.layers.0.conv.weight"] * (1 - lr * 0.01), rtol=1e-5)
    np.testing.assert_array_equal(after["stem.stem1.bn.weight"], before["stem.stem1.bn.weight"])  # L2Decay(0)
    np.testing.assert_array_equal(after["fc.weight"], before["fc.weight"])  # no_weight_decay_name
    lab = "stem.stem1.lab.scale"
    if lab in before:  # LAB has no L2Decay(0) in the references: decayed at lr_mult * lab_lr
        np.testing.assert_allclose(after[lab], before[lab] * (1 - lr * 0.5 * 0.01 * 0.01), rtol=1e-5)


def test_lr_schedules():
    cos = build_lr_scheduler({"name": "Cosine", "learning_rate": 1.0, "warmup_epoch": 1, "eta_min": 0.1}, 3, 10)
    values = []
    for _ in range(30):
        values.append(cos())
        cos.step()
    assert values[0] == 0.0 and values[5] == pytest.approx(0.5) and values[10] == pytest.approx(1.0)
    assert values[20] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 10 / 20)))
    assert min(values[10:]) >= 0.1
    pw = build_lr_scheduler({"name": "Piecewise", "decay_epochs": [1, 2], "values": [0.1, 0.01, 0.001]}, 3, 4)
    got = []
    for _ in range(12):
        got.append(pw())
        pw.step()
    assert got == pytest.approx([0.1] * 4 + [0.01] * 4 + [0.001] * 4)
    step = build_lr_scheduler({"name": "Step", "learning_rate": 1.0, "step_size": 1, "gamma": 0.5, "by_epoch": True},
                              3, 4)
    assert step.by_epoch and step() == 1.0
    step.step()
    assert step() == 0.5


def test_warmup_warning_only_when_it_shortens(monkeypatch):
    """A 1-epoch run of a 1-epoch warmup is all warmup, as configured: nothing to say. A warmup longer than the
    run is shortened, and that is said."""
    from ppbackbone.engine import optim
    said = []
    monkeypatch.setattr(optim, "warn_once", lambda key, message: said.append(message))
    build_lr_scheduler({"name": "Cosine", "learning_rate": 1.0, "warmup_epoch": 1}, 1, 10)
    assert said == []
    build_lr_scheduler({"name": "Cosine", "learning_rate": 1.0, "warmup_epoch": 5}, 2, 10)
    assert said == ["Optimizer.lr.warmup_epoch=5 > Global.epochs=2: warmup is shortened to 2 epoch(s)"]


def test_resuming_a_finished_run_says_what_to_do_once(run_a, tmp_path, capfd):
    """The tool exits 0 with one line naming -o Global.epochs=N; no "Training ... for N epochs" after it, no
    "continuing at epoch 3/2", no Paddle warning about unused optimizer values."""
    import warnings

    import yaml

    from ppbackbone import cli
    cfg = copy.deepcopy(run_a["cfg"])
    cfg["Global"]["checkpoints"] = os.path.join(run_a["dir"], "latest")
    path = tmp_path / "finished.yaml"
    path.write_text(yaml.safe_dump(cfg))
    before = sorted(os.listdir(run_a["dir"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.run("train", "tools/train.py", ["-c", str(path)]) == 0
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert text.count("nothing to train") == 1, text
    assert "-o Global.epochs=N (N > 2)" in text and "Training " not in text and "continuing at" not in text, text
    assert not [w for w in caught if "unused values" in str(w.message)]
    assert sorted(os.listdir(run_a["dir"])) == before  # nothing written


def test_resume_loads_a_warmup_schedule_without_paddle_noise(run_a):
    """Paddle's LinearWarmup warns about its own nested state on every load; our resume silences exactly that."""
    import warnings
    cfg = copy.deepcopy(run_a["cfg"])
    cfg["Global"].update(checkpoints=os.path.join(run_a["dir"], "latest"), epochs=3)
    cfg["Optimizer"]["lr"]["warmup_epoch"] = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(cfg)
    assert trainer.start_epoch == 3
    assert not [w for w in caught if "unused values" in str(w.message)], [str(w.message) for w in caught]


def test_losses_and_topk():
    logits = paddle.to_tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = paddle.to_tensor([0, 1])
    plain = float(CELoss()(logits, labels))
    logp = np.log(np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(1, keepdims=True))
    assert plain == pytest.approx(-(logp[0, 0] + logp[1, 1]) / 2, rel=1e-5)
    smooth = float(CELoss(epsilon=0.1)(logits, labels))
    target = np.full((2, 3), 0.1 / 3)
    target[0, 0] += 0.9
    target[1, 1] += 0.9
    assert smooth == pytest.approx(-(target * logp).sum(1).mean(), rel=1e-5)
    soft = paddle.to_tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5]])
    assert float(CELoss()(logits, soft)) == pytest.approx(-(soft.numpy() * logp).sum(1).mean(), rel=1e-5)
    assert float(BCELoss()(logits, labels)) > 0
    metric = TopkAcc(topk=[1, 5])
    batch = metric.update(logits, labels)  # top-5 of 3 classes: clipped to top-3 (warned)
    assert batch == {"top1": 0.5, "top5": 1.0}
    assert metric.accumulate() == {"top1": 0.5, "top5": 1.0}


# ------------------------------------------------------------------------------ bad input


def test_config_errors_before_work(data, tmp_path):
    cfg = make_config(data, str(tmp_path))
    bad = copy.deepcopy(cfg)
    bad["DataLoader"]["Train"]["dataset"]["cls_label_path"] = str(tmp_path / "missing.txt")
    from ppbackbone.data import DatasetError
    with pytest.raises(DatasetError, match="Label file not found"):
        Trainer(bad)
    bad = copy.deepcopy(cfg)
    bad["Global"]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"Global.epochs=0 is not valid: expected a positive int"):
        Trainer(bad)
    bad = copy.deepcopy(cfg)
    bad["Arch"]["class_num"] = 3  # labels go up to 3
    with pytest.raises(DatasetError, match=r"label 3 must be in \[0, 3\)"):
        Trainer(bad)


def test_train_tool_reports_config_errors(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(open(QUICKSTART).read().replace("print_batch_step", "print_batch_stepp"))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c", str(cfg)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "unknown key Global.print_batch_stepp. Did you mean: print_batch_step?" in proc.stderr


def test_recipe_augmentations_train(data, tmp_path):
    """The shipped recipes' train pipeline (TimmAutoAugment, RandomErasing, OpSampler Mixup/Cutmix with
    soft-target CE + label smoothing) runs end to end."""
    recipe = load_config(os.path.join(ROOT, "configs", "pphgnet_base.yaml"))
    cfg = make_config(data, str(tmp_path), Global__epochs=1, Global__eval_during_train=False)
    train = cfg["DataLoader"]["Train"]["dataset"]
    train["transform_ops"] = copy.deepcopy(recipe["DataLoader"]["Train"]["dataset"]["transform_ops"])
    for op in train["transform_ops"]:
        name, params = next(iter(op.items()))
        if name == "RandCropImage":
            params["size"] = SIZE
        if name == "TimmAutoAugment":
            params["img_size"] = SIZE
    train["batch_transform_ops"] = copy.deepcopy(recipe["DataLoader"]["Train"]["dataset"]["batch_transform_ops"])
    cfg["Loss"] = copy.deepcopy(recipe["Loss"])
    trainer = Trainer(cfg)
    trainer.train()
    assert all(np.isfinite(h["loss"]) for h in trainer.history) and len(trainer.history) == 6
    targets = [t for _, t in trainer.train_loader][0]  # a whole epoch: no prefetch thread left behind
    assert tuple(targets.shape) == (16, 4)  # soft targets from the batch ops
    np.testing.assert_allclose(targets.numpy().sum(1), 1.0, rtol=1e-5)


def test_train_throughput_smoke(tmp_path):
    """The benchmark's functions run (no timing asserted)."""
    from ppbackbone.benchmarks.train import train_throughput, write_benchmark_jpegs
    root, label_file = write_benchmark_jpegs(str(tmp_path / "jpegs"), count=4, size=(60, 40))
    assert len(open(label_file).read().splitlines()) == 4
    assert train_throughput("hgnetv2_b0", batch_size=2, image_size=32, steps=1, warmup=0, class_num=4) > 0
    assert train_throughput("hgnetv2_b0", data="jpeg", batch_size=2, image_size=32, steps=1, warmup=0,
                            num_workers=0, class_num=10, jpeg_dir=root) > 0
