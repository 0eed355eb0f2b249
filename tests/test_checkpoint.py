"""Checkpoints and weight files under faults: sets published all-or-nothing (real SIGKILL at the
moments of a save, a full disk), runs never overwritten, resume rules, the restricted unpickler
(reference layouts load, a crafted pickle runs nothing), and clear errors for bad weight files."""
import copy
import os
import pickle
import stat
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from ppbackbone.config import load_config
from ppbackbone.engine import CheckpointError, Trainer
from ppbackbone.engine import checkpoint as ckpt_mod
from ppbackbone.engine.checkpoint import CheckpointWriteError, find_checkpoints, load_checkpoint, newest_checkpoint
from ppbackbone.engine.trainer import NonFiniteLossError
from ppbackbone.errors import UserError
from ppbackbone.weights.safe_pickle import UnsafePickleError, load_pickle
from ppbackbone.weights.io import WeightsError, load_weights, read_state_dict

from conftest import import_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")
COLORS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30)]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """16 training and 8 validation JPEG files of 4 colour classes, with label files."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.RandomState(0)
    lists = {}
    for split, per_class in (("train", 4), ("val", 2)):
        lines = []
        for label, colour in enumerate(COLORS):
            for i in range(per_class):
                pixels = np.clip(np.array(colour) + rng.randint(-30, 30, (40, 40, 3)), 0, 255).astype("uint8")
                name = f"{split}_{label}_{i}.jpg"
                Image.fromarray(pixels).save(root / name)
                lines.append(f"{name} {label}")
        lists[split] = str(root / f"{split}.txt")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return str(root), lists


def tiny_config(images, out, epochs=3, **global_overrides):
    """hgnetv2_b0 at 32x32 on 16 images: 2 iterations an epoch, an eval of 8 images."""
    root, lists = images
    cfg = load_config(QUICKSTART, [f"Global.output_dir={out}", f"Global.epochs={epochs}", "Global.save_interval=1",
                                   "Global.print_batch_step=100", "Arch.class_num=4"])
    for mode, split in (("Train", "train"), ("Eval", "val")):
        section = cfg["DataLoader"][mode]
        section["dataset"] = {"name": "ImageNetDataset", "image_root": root, "cls_label_path": lists[split],
                              "transform_ops": [{"DecodeImage": {"to_rgb": True, "channel_first": False}},
                                                {"ResizeImage": {"size": 32}},
                                                {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3,
                                                                    "std": [0.5] * 3, "order": ""}}]}
        section["sampler"]["batch_size"] = 8
        section["loader"] = {"num_workers": 0}
    cfg["Global"].update(global_overrides)
    return cfg


def weights_of(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """An uninterrupted 2-epoch run, with the names of the fault points it passed."""
    out = str(tmp_path_factory.mktemp("reference"))
    cfg = tiny_config(images, out, epochs=2)
    first = ckpt_mod._FAULTS["count"]
    trainer = Trainer(cfg)
    trainer.train()
    tags = list(ckpt_mod._FAULTS["tags"])[-(ckpt_mod._FAULTS["count"] - first):]
    return {"cfg": cfg, "weights": weights_of(trainer), "tags": tags, "best": trainer.best_metric,
            "dir": os.path.join(out, "hgnetv2_b0"), "out": out}


def _kill_points(tags):
    """Where to kill: in epoch 2 (a previous set to keep) after an optimizer step, between the files
    of a set, after publishing a set before its flat links, and after a linked set; in epoch 1 (no
    previous set) between files. PPBACKBONE_EXHAUSTIVE_KILL=1 kills at every fault point instead
    (docs/training.md gives the figures of such a run)."""
    if os.environ.get("PPBACKBONE_EXHAUSTIVE_KILL"):
        return list(range(1, len(tags) + 1))
    epoch2 = [i for i, t in enumerate(tags) if t == "step"][2]  # the first step of epoch 2 (index)
    later = tags[epoch2:]
    chosen = [1 + tags.index("wrote .pdopt"), epoch2 + 2]  # (1-based) epoch 1 between files; epoch 2 step 2
    for tag in ("wrote .pdparams", "published", "linked set"):
        chosen.append(epoch2 + 1 + later.index(tag))
    return sorted(set(chosen))


KILL_SHARDS = 5  # the chosen moments are split over this many test cases (each under a minute; xdist spreads them)


@pytest.mark.timeout(300, method="thread")
@pytest.mark.parametrize("shard", range(KILL_SHARDS))
def test_sigkill_at_every_moment_of_a_save_resumes_to_the_same_weights(reference, images, tmp_path, shard):
    """A real SIGKILL (PPBACKBONE_KILL_AT) at each chosen moment: every published checkpoint still
    loads, and resuming from what is left ends with the uninterrupted run's weights. Case `shard` takes
    every KILL_SHARDS-th moment from the shard-th (one moment each by default), so together the cases
    kill at every chosen moment. The killed run is a fresh process, the reference and the resumed run
    are this one: equal weights need this process's numerics untouched by earlier tests (a Paddle
    Inference predictor used to change its math threads; conftest restores such state after each test)."""
    tags = reference["tags"]
    points = _kill_points(tags)
    assert {"step", "wrote .pdparams", "wrote .pdopt", "published", "linked set"} <= {tags[p - 1] for p in points}
    assert len(points) >= KILL_SHARDS, points  # no case without a moment to kill at
    print(f"{len(tags)} fault points in the run; killing at {points[shard::KILL_SHARDS]} of {points}")
    for point in points[shard::KILL_SHARDS]:
        out = tmp_path / f"kill{point}"
        cfg = copy.deepcopy(reference["cfg"])
        cfg["Global"]["output_dir"] = str(out)
        cfg_path = tmp_path / f"kill{point}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        env = dict(os.environ, PPBACKBONE_KILL_AT=str(point), PYTHONPATH=ROOT)
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), "-c", str(cfg_path)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == -9, (point, tags[point - 1], proc.stderr[-2000:])
        run_dir = str(out / "hgnetv2_b0")
        for name, prefix in find_checkpoints(run_dir).items():
            load_checkpoint(prefix)  # every visible checkpoint is complete
        cfg["Global"]["checkpoints"] = newest_checkpoint(run_dir)  # None: nothing saved yet, start again
        trainer = Trainer(cfg)
        assert not [f for f in os.listdir(run_dir) if f.startswith(".tmp-")]  # leftovers cleaned on start
        for name in find_checkpoints(run_dir):  # flat names repaired after a kill before they were linked
            assert os.path.isfile(os.path.join(run_dir, name + ".pdparams")), (point, name)
        sets = os.path.join(run_dir, ".checkpoints")
        live = {os.path.realpath(p) for p in find_checkpoints(run_dir).values()}
        on_disk = {os.path.join(sets, d) for d in os.listdir(sets)} if os.path.isdir(sets) else set()
        assert on_disk == live, f"stray set directories after the restart (kill at {point}: {tags[point - 1]})"
        trainer.train()
        assert_same_weights(weights_of(trainer), reference["weights"])
        assert trainer.best_metric == pytest.approx(reference["best"])
        best = load_checkpoint(os.path.join(run_dir, "best_model"))["states"]
        assert best["metric"] == pytest.approx(reference["best"])


def test_layout_modes_and_paddleclas_names(reference):
    run_dir = reference["dir"]
    assert sorted(find_checkpoints(run_dir)) == ["best_model", "epoch_1", "epoch_2", "latest"]
    for name in ("latest", "epoch_2"):
        assert os.path.islink(os.path.join(run_dir, name))
        for suffix in (".pdparams", ".pdopt", ".pdstates"):
            path = os.path.join(run_dir, name + suffix)
            assert os.path.isfile(path)  # PaddleClas's flat names resolve through the link
            mode = stat.S_IMODE(os.stat(path).st_mode)
            umask = os.umask(0)
            os.umask(umask)
            assert mode == 0o666 & ~umask, oct(mode)
    # paddle.load (what PaddleClas's tools use) reads the flat names
    opt = paddle.load(os.path.join(run_dir, "latest.pdopt"))
    assert isinstance(opt, list) and "LR_Scheduler" in opt[0]
    assert paddle.load(os.path.join(run_dir, "latest.pdstates"))["epoch"] == 2
    # one copy of the bytes: epoch_2 and latest share the files of the last save
    a = os.stat(os.path.join(run_dir, "latest.pdparams"))
    b = os.stat(os.path.join(run_dir, "epoch_2.pdparams"))
    assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def test_fresh_run_into_a_used_output_dir_is_refused_unless_overwrite(reference, images):
    cfg = tiny_config(images, reference["out"], epochs=1)
    with pytest.raises(CheckpointError) as err:
        Trainer(cfg)
    message = str(err.value)
    assert "already holds checkpoints of another run" in message
    assert "Global.checkpoints=" in message and "Global.overwrite=True" in message
    assert sorted(find_checkpoints(reference["dir"])) == ["best_model", "epoch_1", "epoch_2", "latest"]


def test_overwrite_replaces_the_old_run(images, tmp_path):
    cfg = tiny_config(images, str(tmp_path), epochs=2)
    Trainer(cfg).train()
    cfg = tiny_config(images, str(tmp_path), epochs=1, overwrite=True)
    Trainer(cfg).train()
    run_dir = str(tmp_path / "hgnetv2_b0")
    assert sorted(find_checkpoints(run_dir)) == ["best_model", "epoch_1", "latest"]  # no epoch_2 of the old run
    assert len(os.listdir(os.path.join(run_dir, ".checkpoints"))) == 3


def test_extending_a_run_whose_warmup_filled_it(images, tmp_path):
    """1 epoch with warmup_epoch 1 has no cosine part (its .pdopt has no LinearWarmup_LR state);
    extending it to 2 epochs used to fail with KeyError: 'LinearWarmup_LR'."""
    Trainer(tiny_config(images, str(tmp_path), epochs=1)).train()
    cfg = tiny_config(images, str(tmp_path), epochs=2, checkpoints=str(tmp_path / "hgnetv2_b0" / "latest"))
    trainer = Trainer(cfg)
    assert trainer.start_epoch == 2 and trainer.global_step == 2
    assert trainer.current_lr() == pytest.approx(0.004)  # the end of warmup = the start of the cosine
    assert trainer.train()["epochs_run"] == 1


def test_resume_with_more_epochs_fewer_epochs_and_another_optimizer(reference, images, tmp_path):
    latest = os.path.join(reference["dir"], "latest")
    # more epochs: the schedule is re-planned for 5 epochs and continues at the checkpoint's step
    cfg = tiny_config(images, str(tmp_path), epochs=5, checkpoints=latest)
    trainer = Trainer(cfg)
    assert trainer.start_epoch == 3 and trainer.global_step == 4
    fresh = Trainer(tiny_config(images, str(tmp_path / "fresh"), epochs=5))
    fresh.scheduler.step(4)
    assert trainer.current_lr() == pytest.approx(fresh.current_lr(), rel=1e-6)
    result = trainer.train()
    assert result["epochs_run"] == 3
    # fewer epochs than the checkpoint: a clear error
    cfg = tiny_config(images, str(tmp_path / "b"), epochs=1, checkpoints=latest)
    with pytest.raises(CheckpointError, match=r"is at epoch 2, beyond Global.epochs=1: nothing to train"):
        Trainer(cfg)
    # another optimizer's state
    cfg = tiny_config(images, str(tmp_path / "c"), epochs=3, checkpoints=latest)
    cfg["Optimizer"] = {"name": "Momentum", "momentum": 0.9, "lr": {"name": "Cosine", "learning_rate": 0.01}}
    with pytest.raises(CheckpointError, match=r"latest.pdopt is the state of another optimizer \(AdamW\) but "
                                              r"Optimizer.name builds Momentum"):
        Trainer(cfg)


def test_missing_pdstates_and_tampered_files_are_refused(reference, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for suffix in (".pdparams", ".pdopt", ".pdstates"):
        (flat / ("ckpt" + suffix)).write_bytes(open(os.path.join(reference["dir"], "epoch_1" + suffix), "rb").read())
    load_checkpoint(str(flat / "ckpt"))  # a flat copy (PaddleClas layout) loads
    (flat / "ckpt.pdparams").write_bytes(open(os.path.join(reference["dir"], "epoch_2.pdparams"), "rb").read())
    with pytest.raises(CheckpointError, match="is incomplete: .*ckpt.pdparams does not match"):
        load_checkpoint(str(flat / "ckpt"))
    os.remove(flat / "ckpt.pdstates")
    with pytest.raises(CheckpointError, match=r"ckpt.pdstates not found \(.pdstates holds the epoch"):
        load_checkpoint(str(flat / "ckpt"))


def test_disk_full_injected_keeps_the_previous_set(reference, tmp_path, monkeypatch):
    """ENOSPC injected at the second file of a save (an OSError from the writer)."""
    import errno
    run_dir = tmp_path / "run"
    prefix = str(run_dir / "latest")
    state = load_checkpoint(os.path.join(reference["dir"], "epoch_1"))
    ckpt_mod.save_checkpoint(prefix, state["model"], state["optimizer"], dict(state["states"], epoch=1))
    calls = {"n": 0}
    real = ckpt_mod._write_file

    def failing(path, obj):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(path, obj)
    monkeypatch.setattr(ckpt_mod, "_write_file", failing)
    with pytest.raises(CheckpointWriteError, match=r"\(the disk is full\).*the previous latest checkpoint is intact"):
        ckpt_mod.save_checkpoint(prefix, state["model"], state["optimizer"], dict(state["states"], epoch=2))
    assert isinstance(CheckpointWriteError(1, "x"), UserError)
    assert load_checkpoint(prefix)["states"]["epoch"] == 1
    assert len(os.listdir(run_dir / ".checkpoints")) == 1  # the half-written set is gone


@pytest.mark.timeout(120, method="thread")
def test_disk_full_on_a_real_small_filesystem(reference, tmp_path):
    """A tmpfs of 1.5 checkpoints (mounting needs root: skipped elsewhere): the second save does
    not fit and fails with the real ENOSPC."""
    files = [os.path.join(reference["dir"], "epoch_1" + s) for s in (".pdparams", ".pdopt", ".pdstates")]
    size_kib = int(sum(os.path.getsize(f) for f in files) * 1.5) // 1024
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}); the injected ENOSPC "
                    f"test covers the logic")
    try:
        state = load_checkpoint(os.path.join(reference["dir"], "epoch_1"))
        prefix = str(mount / "run" / "latest")
        ckpt_mod.save_checkpoint(prefix, state["model"], state["optimizer"], dict(state["states"], epoch=1))
        with pytest.raises(CheckpointWriteError, match=r"disk is full.*No space left on device.*previous latest "
                                                       r"checkpoint is intact"):
            ckpt_mod.save_checkpoint(prefix, state["model"], state["optimizer"], dict(state["states"], epoch=2))
        assert load_checkpoint(prefix)["states"]["epoch"] == 1
        assert len(os.listdir(mount / "run" / ".checkpoints")) == 1
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.timeout(120, method="thread")  # paddle's reader thread died and the loop waited forever
def test_corrupt_image_fails_training_and_eval_instead_of_hanging(images, tmp_path):
    from ppbackbone.data import DatasetError
    root, lists = images
    bad_root = tmp_path / "imgs"
    bad_root.mkdir()
    for split in ("train", "val"):
        for line in open(lists[split]).read().split():
            if line.endswith(".jpg"):
                (bad_root / line).write_bytes(open(os.path.join(root, line), "rb").read())
    broken = bad_root / "val_1_0.jpg"
    broken.write_bytes(broken.read_bytes()[:300])  # truncated
    (bad_root / "train_2_1.jpg").write_bytes(b"")  # empty
    cfg = tiny_config((str(bad_root), lists), str(tmp_path), epochs=1)
    with pytest.raises(DatasetError, match="train_2_1.jpg"):
        Trainer(cfg).train()
    with pytest.raises(DatasetError, match="val_1_0.jpg"):
        Trainer(cfg, mode="eval").evaluate()


def test_nan_loss_is_a_user_error(images, tmp_path):
    cfg = tiny_config(images, str(tmp_path), epochs=1)
    cfg["Optimizer"]["lr"] = {"name": "Constant", "learning_rate": 1e30}
    trainer = Trainer(cfg)
    with pytest.raises(NonFiniteLossError, match=r"the training loss is (nan|inf) at epoch 1, iteration \d+ .*Lower "
                                                 r"Optimizer.lr.learning_rate") as err:
        trainer.train()
    assert isinstance(err.value, UserError)


# ------------------------------------------------------------------------------------ unpickler
class _WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsAShell:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ppbackbone-pwned",))


@pytest.mark.parametrize("payload", ["open", "system", "eval"])
def test_crafted_pickle_runs_nothing(tmp_path, payload):
    target = tmp_path / "written_by_pickle.txt"
    if payload == "open":
        obj = {"conv.weight": np.zeros(2, "float32"), "x": _WritesAFile(str(target))}
        refused = "global io.open"
    elif payload == "system":
        obj = {"conv.weight": _RunsAShell()}
        refused = "posix.system"
    else:  # eval is admitted only in paddle's eval('data', {'data': array}) form
        class _Eval:
            def __reduce__(self):
                return (eval, (f"open({str(target)!r}, 'w')",))
        obj = {"conv.weight": _Eval()}
        refused = "builtins.eval is allowed only"
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    for reader in (lambda: load_pickle(str(path)), lambda: read_state_dict(str(path))):
        with pytest.raises((UnsafePickleError, WeightsError), match=refused) as err:
            reader()
        assert str(path) in str(err.value)
    for suffix in (".pdparams", ".pdopt", ".pdstates"):
        os.replace(path, tmp_path / ("ckpt" + suffix)) if suffix == ".pdparams" else \
            (tmp_path / ("ckpt" + suffix)).write_bytes((tmp_path / "ckpt.pdparams").read_bytes())
    with pytest.raises(CheckpointError, match=refused):
        load_checkpoint(str(tmp_path / "ckpt"))
    assert not target.exists() and not os.path.exists("/tmp/ppbackbone-pwned")


def _same(a, b, where=""):
    if isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray) or hasattr(a, "numpy"):
        assert type(a) is type(b), where
        x, y = (v.numpy() if hasattr(v, "numpy") else v for v in (a, b))
        assert x.dtype == y.dtype and np.array_equal(x, y), where
    else:
        assert type(a) is type(b) and a == b, where


@pytest.mark.parametrize("protocol", [2, 4])
def test_reference_layouts_load_as_paddle_load_reads_them(tmp_path, protocol):
    """paddle.save of PaddleClas 2.6.0 and PaddleDetection 2.6.0 models, and of an optimizer state
    with a warmup + cosine schedule and master weights, read exactly as paddle.load reads them."""
    hgnet = import_reference("ppcls.arch.backbone.legendary_models.pp_hgnet_v2").PPHGNetV2_B0(class_num=4)
    ppdet_backbones = import_reference("ppdet.modeling.backbones")
    detector_backbone = ppdet_backbones.CSPResNet(layers=[1, 1, 1, 1], channels=[8, 16, 32, 64, 128],
                                                  return_idx=[1, 2, 3], use_large_stem=True)
    sched = paddle.optimizer.lr.LinearWarmup(paddle.optimizer.lr.CosineAnnealingDecay(0.1, 10), 2, 0.0, 0.1)
    opt = paddle.optimizer.Momentum(learning_rate=sched, parameters=hgnet.parameters(), multi_precision=True)
    hgnet(paddle.randn([1, 3, 32, 32])).mean().backward()
    opt.step()
    sched.step()
    files = {"ppcls.pdparams": hgnet.state_dict(), "ppdet.pdparams": detector_backbone.state_dict(),
             "ppcls.pdopt": [opt.state_dict()], "ppcls.pdstates": {"metric": 0.5, "epoch": 3},
             "numpy.pdparams": {k: v.numpy() for k, v in hgnet.state_dict().items()}}
    for name, obj in files.items():
        paddle.save(obj, str(tmp_path / name), protocol=protocol)
        for return_numpy in (True, False):
            _same(paddle.load(str(tmp_path / name), return_numpy=return_numpy),
                  load_pickle(str(tmp_path / name), return_numpy=return_numpy), name)
    assert "LinearWarmup_LR" in load_pickle(str(tmp_path / "ppcls.pdopt"))[0]["LR_Scheduler"]
    import ppbackbone
    model = ppbackbone.create_model("hgnetv2_b0", num_classes=4)
    report = load_weights(model, str(tmp_path / "ppcls.pdparams"), verbose=False)
    assert not report.missing and not report.unexpected


# ------------------------------------------------------------------------------------ pretrained_model errors
def test_pretrained_model_errors_name_the_file(reference, tmp_path):
    import ppbackbone
    model = ppbackbone.create_model("hgnetv2_b0", num_classes=4)
    text = tmp_path / "notes.pdparams"
    text.write_text("these are not weights\n")
    latest = os.path.join(reference["dir"], "latest")
    truncated = tmp_path / "cut.pdparams"
    truncated.write_bytes(open(latest + ".pdparams", "rb").read()[:5000])
    cases = [
        (str(tmp_path), "is a directory"),
        (str(text), r"notes.pdparams \(22 bytes\): UnpicklingError"),
        (latest + ".pdopt", r"latest.pdopt does not hold a state dict: it looks like an optimizer state"),
        (latest + ".pdstates", r"latest.pdstates does not hold a state dict: it looks like a training state"),
        (str(truncated), r"cut.pdparams \(5000 bytes\).*truncated"),
    ]
    for path, message in cases:
        with pytest.raises(WeightsError, match=message):
            load_weights(model, path, verbose=False)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    paddle.save(dict(state, **{"stem.stem1.conv.weight": np.array(["a", "b"])}), str(tmp_path / "strings.pdparams"))
    with pytest.raises(WeightsError, match=r"strings.pdparams: tensor 'stem.stem1.conv.weight' has dtype <U1"):
        load_weights(model, str(tmp_path / "strings.pdparams"), verbose=False)
    paddle.save({k: v.astype("float64") for k, v in state.items()}, str(tmp_path / "f64.pdparams"))
    load_weights(model, str(tmp_path / "f64.pdparams"), verbose=False)  # float64 is cast to the model's float32
    other = ppbackbone.create_model("pplcnet_x0_25", num_classes=4)
    with pytest.raises(WeightsError, match=r"latest.pdparams matches only \d+ of the \d+ tensors of pplcnet_x0_25.*"
                                           r"First unexpected keys: \['stem"):
        load_weights(other, latest, verbose=False)
    # a checkpoint prefix / set directory resolves to its weights
    load_weights(model, latest, verbose=False)
    load_weights(model, os.path.join(reference["dir"], "best_model"), verbose=False)


def test_output_dir_that_is_a_file(images, tmp_path):
    from ppbackbone.errors import ConfigError
    path = tmp_path / "out.txt"
    path.write_text("x")
    with pytest.raises(ConfigError, match=r"Global.output_dir=.*out.txt is a file, not a folder"):
        Trainer(tiny_config(images, str(path), epochs=1))
