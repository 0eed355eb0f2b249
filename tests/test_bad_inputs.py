"""Property-based bad input (hypothesis): configs, `-o` overrides, label files, images, weight files and
training checkpoints (resume).

Every generated case must end in one of two ways:
  - a clear error: a `ppbackbone.errors.UserError` (what the command line prints as `Error: ...`) whose
    message names what was wrong (the key, the override, the file);
  - acceptance, checked for sense: the value was valid (the Trainer builds), the image decodes to a 3-channel
    uint8 image, the weights load with a report and leave finite float32 parameters;
and, with `skip_corrupt_images: True`, an unreadable image is the documented skip: counted in
`dataset.skipped`, another image served.
Any other exception (TypeError, AssertionError, a Paddle error, ...) fails the test: that is a traceback a
user would see. The suite counts the cases per kind and outcome and prints the table at the end of the
run (tests/conftest.py's terminal summary). Examples are bounded and derandomized (the same cases on
every run); the whole file runs in well under a minute on 2 cores.
"""
import copy
import io
import os
import pickle
import shutil
import tempfile
import zlib

import numpy as np
import paddle
import pytest
import yaml
from conftest import BAD_INPUT_COUNTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import ppbackbone
from ppbackbone.config import load_config
from ppbackbone.data.dataset import ImageNetDataset
from ppbackbone.cli import error_message

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.filter_too_much, HealthCheck.data_too_large])


def _count(kind, outcome):
    BAD_INPUT_COUNTS[(kind, outcome)] = BAD_INPUT_COUNTS.get((kind, outcome), 0) + 1


def _expect_clear(kind, action, names=()):
    """Run `action`: it returns (accepted) or raises what the command line prints as one `Error: ...` line
    (`ppbackbone.cli.error_message`: a UserError, or a missing file / permission / disk error), whose message
    contains one of `names` (when given). Anything else propagates and fails the test. Returns the error or
    None."""
    try:
        action()
    except Exception as err:  # noqa: BLE001 - classified exactly as the CLI does
        message = error_message(err)
        if message is None:
            raise
        assert len(message) > 10, f"{kind}: an error without a message: {message!r}"
        if names:
            assert any(str(n) in message for n in names), f"{kind}: {message!r} names none of {names}"
        _count(kind, "clear error")
        return err
    _count(kind, "accepted")
    return None


# ------------------------------------------------------------------------------------------------ workspace
TRANSFORMS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": 16}},
              {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                  "order": ""}}, {"ToCHWImage": None}]


def _png(seed=0, size=16, mode="RGB"):
    rng = np.random.RandomState(seed)
    img = Image.fromarray((rng.rand(size, size, 3) * 255).astype("uint8")).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def workspace():
    """A folder with four good images, their label file and a small train config using them."""
    root = tempfile.mkdtemp(prefix="ppbackbone-bad-inputs-")
    for i in range(4):
        with open(os.path.join(root, f"{i}.png"), "wb") as f:
            f.write(_png(i))
    label_file = os.path.join(root, "labels.txt")
    with open(label_file, "w") as f:
        f.write("".join(f"{i}.png {i % 2}\n" for i in range(4)))
    with open(QUICKSTART) as f:
        config = yaml.safe_load(f)
    config["Arch"] = {"name": "pplcnet_x0_25", "class_num": 2}
    config["Global"].update(output_dir=os.path.join(root, "out"), image_shape=[3, 16, 16], epochs=1)
    for mode in ("Train", "Eval"):
        section = config["DataLoader"][mode]
        section["dataset"] = {"name": "ImageNetDataset", "image_root": root, "cls_label_path": label_file,
                              "transform_ops": copy.deepcopy(TRANSFORMS)}
        section["sampler"]["batch_size"] = 2
        section["loader"] = {"num_workers": 0}
    return {"root": root, "labels": label_file, "config": config}


def _write_config(workspace, config, name="case.yaml"):
    path = os.path.join(workspace["root"], name)
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def _set(config, dotted, value):
    node = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[parts[-1]] = value


def _build_trainer(workspace, config):
    from ppbackbone.engine import Trainer
    path = _write_config(workspace, config)
    return Trainer(load_config(path), mode="train")


# ------------------------------------------------------------------------------------------------ configs
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10 ** 6, 10 ** 6), st.sampled_from([0, -1, 10 ** 12]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.one_of(st.integers(-3, 9), st.floats(-2, 2), st.text(max_size=3)), max_size=6),
    st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), max_size=2))
# Keys a user sets, across the sections; each value below is replaced by junk.
KEYS = ["Global.epochs", "Global.seed", "Global.print_batch_step", "Global.save_interval", "Global.eval_interval",
        "Global.eval_during_train", "Global.device", "Global.image_shape", "Global.update_freq",
        "Arch.class_num", "Arch.lr_mult_list", "Arch.freeze_at", "Arch.pretrained", "Arch.scale", "Arch.dropout_prob",
        "Loss.Train.0.CELoss.epsilon", "Loss.Train.0.CELoss.weight", "Optimizer.name", "Optimizer.beta1",
        "Optimizer.weight_decay", "Optimizer.lr.learning_rate", "Optimizer.lr.warmup_epoch", "Optimizer.lr.name",
        "DataLoader.Train.sampler.batch_size", "DataLoader.Train.sampler.shuffle", "DataLoader.Train.sampler.drop_last",
        "DataLoader.Train.loader.num_workers", "DataLoader.Train.dataset.cls_label_path",
        "DataLoader.Train.dataset.image_root", "DataLoader.Eval.sampler.batch_size", "EMA.decay", "AMP.use_amp",
        "Metric.Eval.0.TopkAcc.topk"]


@pytest.mark.timeout(300)
@_settings(30)
@given(key=st.sampled_from(KEYS), value=JUNK)
def test_config_values_of_any_type_end_in_a_clear_error_or_a_trainer(workspace, key, value):
    """Junk in any common key: a ConfigError (or dataset error) naming the key, or a Trainer that builds."""
    config = copy.deepcopy(workspace["config"])
    config.setdefault("EMA", {"decay": 0.9})
    config.setdefault("AMP", {"use_amp": False})
    config.setdefault("Metric", {"Eval": [{"TopkAcc": {"topk": [1]}}]})
    _set(config, key, value)
    leaf = key.split(".")[-1]
    _expect_clear("config value", lambda: _build_trainer(workspace, config), names=(leaf, "Config file"))


SECTIONS = ["Global", "Arch", "Optimizer", "Optimizer.lr", "EMA", "AMP", "DataLoader.Train.sampler",
            "DataLoader.Train.loader", "DataLoader.Train.dataset", "Loss.Train.0.CELoss"]
KEY_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


@_settings(40)
@given(section=st.sampled_from(SECTIONS), name=KEY_NAMES, value=st.integers(0, 3))
def test_unknown_keys_are_errors_naming_them(workspace, section, name, value):
    config = copy.deepcopy(workspace["config"])
    config.setdefault("EMA", {"decay": 0.9})
    config.setdefault("AMP", {"use_amp": False})
    node = config
    for part in section.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    if name in node:
        return  # not unknown
    node[name] = value
    err = _expect_clear("unknown key", lambda: _build_trainer(workspace, config), names=(name,))
    if err is None:  # accepted: only a key some builder really takes (e.g. an Arch constructor argument)
        assert section in ("Arch", "Optimizer", "Optimizer.lr", "Loss.Train.0.CELoss"), f"{section}.{name} accepted"


@_settings(30)
@given(section=st.sampled_from(["Global", "Arch", "Optimizer", "Loss", "DataLoader", None]), data=st.data())
def test_duplicate_yaml_keys_name_file_key_and_lines(workspace, section, data):
    """A key written twice in one mapping (a section's, or the top level's)."""
    lines = yaml.safe_dump(workspace["config"], sort_keys=False).splitlines()
    if section is None:  # a whole section again at the end of the file
        key = data.draw(st.sampled_from([line[:-1] for line in lines if line.endswith(":") and line[0] != " "]))
        first = lines.index(f"{key}:") + 1
        lines.append(f"{key}: {{}}")
    else:
        start = lines.index(f"{section}:")
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
        own = [i for i in range(start + 1, end) if lines[i].startswith("  ") and lines[i][2] not in " -"]
        first = data.draw(st.sampled_from(own)) + 1
        key = lines[first - 1].strip().split(":")[0]
        lines.insert(end, f"  {key}: 1")
    second = len(lines) if section is None else end + 1
    path = os.path.join(workspace["root"], "dup.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    err = _expect_clear("duplicate key", lambda: load_config(path), names=("duplicate key",))
    assert err is not None, f"{section}.{key} written twice was accepted"
    assert f"{path}: duplicate key {key!r} in the same mapping, at lines {first} and {second}" in str(err)


OVERRIDE_TEXT = st.text(alphabet="GlobaArchepoxnum_.=[]{},: '\"0123456789-e", max_size=24)
OVERRIDE_FORMS = st.one_of(
    OVERRIDE_TEXT,
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS + ["Global", "Arch.name", "Nope.x", "Global.epochs.x"]),
              OVERRIDE_TEXT))


@_settings(120)
@given(override=OVERRIDE_FORMS)
def test_override_forms_are_applied_or_refused_by_name(workspace, override):
    path = _write_config(workspace, workspace["config"], "override_base.yaml")
    _expect_clear("-o form", lambda: load_config(path, [override]), names=(override, "Arch", "Global", "Optimizer",
                                                                         "DataLoader", "Loss", "Metric", "EMA", "AMP"))


# ------------------------------------------------------------------------------------------------ label files
LABEL_PATHS = st.sampled_from(["0.png", "1.png", "missing.png", "sub dir/x.png", "", "../0.png", "0.png 1.png",
                               "\u00e9t\u00e9.png", "0.PNG", "labels.txt"])
LABELS = st.one_of(st.integers(-3, 5), st.sampled_from(["", "x", "1.5", "1e3", "0x1", "--1", "٣"]))
LABEL_LINES = st.builds(lambda p, sep, label: f"{p}{sep}{label}", LABEL_PATHS, st.sampled_from([" ", "\t", "  ", ""]),
                        LABELS)


@_settings(80)
@given(lines=st.lists(st.one_of(LABEL_LINES, st.text(max_size=12)), max_size=6), raw=st.booleans())
def test_label_files_load_or_name_file_and_line(workspace, lines, raw):
    path = os.path.join(workspace["root"], "case_labels.txt")
    with open(path, "wb") as f:
        data = "\n".join(lines).encode("utf-8", "surrogatepass")
        f.write(data if not raw else data + b"\xff\xfe")  # raw: trailing bytes that are not UTF-8

    def build_and_read():
        dataset = ImageNetDataset(workspace["root"], path, copy.deepcopy(TRANSFORMS), class_num=3)
        for i in range(len(dataset)):
            image, label = dataset[i]
            assert image.shape == (3, 16, 16) and 0 <= int(label) < 3

    _expect_clear("label file", build_and_read, names=(path, "labels.txt", ".png", "image_root"))


# ------------------------------------------------------------------------------------------------ images
def _encode(kind, seed, cut):
    rng = np.random.RandomState(seed)
    rgb = Image.fromarray((rng.rand(20, 20, 3) * 255).astype("uint8"))
    buf = io.BytesIO()
    if kind == "zero":
        return b""
    if kind == "text":
        return b"not an image at all\n" * (seed % 3 + 1)
    if kind == "gray":
        rgb.convert("L").save(buf, "PNG")
    elif kind == "cmyk":
        rgb.convert("CMYK").save(buf, "JPEG")
    elif kind == "16bit":
        Image.fromarray((rng.rand(20, 20) * 65535).astype("uint16")).save(buf, "PNG")
    elif kind == "alpha":
        rgb.convert("RGBA").save(buf, "PNG")
    elif kind == "palette":
        rgb.convert("P").save(buf, "PNG")
    elif kind == "1bit":
        rgb.convert("1").save(buf, "PNG")
    elif kind in ("jpeg", "truncated_jpeg"):
        rgb.save(buf, "JPEG")
    elif kind in ("png", "truncated_png"):
        rgb.save(buf, "PNG")
    elif kind == "bmp":
        rgb.save(buf, "BMP")
    data = buf.getvalue()
    if kind.startswith("truncated"):
        data = data[:max(1, int(len(data) * cut))]
    return data


IMAGE_KINDS = ["jpeg", "png", "bmp", "gray", "cmyk", "16bit", "alpha", "palette", "1bit", "truncated_jpeg",
               "truncated_png", "zero", "text"]


@_settings(70)
@given(kind=st.sampled_from(IMAGE_KINDS), seed=st.integers(0, 50), cut=st.floats(0.05, 0.98),
       ext=st.sampled_from([".jpg", ".png", ".bmp", ".txt", ".jpeg", ""]), backend=st.sampled_from(["cv2", "pil"]),
       skip=st.booleans())
def test_images_decode_to_rgb_or_are_a_named_error_or_a_counted_skip(workspace, kind, seed, cut, ext, backend, skip):
    name = f"case_{kind}{ext}"
    with open(os.path.join(workspace["root"], name), "wb") as f:
        f.write(_encode(kind, seed, cut))
    labels = os.path.join(workspace["root"], "case_images.txt")
    with open(labels, "w") as f:
        f.write(f"{name} 1\n0.png 0\n")
    ops = copy.deepcopy(TRANSFORMS)
    ops[0]["DecodeImage"]["backend"] = backend
    dataset = ImageNetDataset(workspace["root"], labels, ops, class_num=2, skip_corrupt_images=skip)

    def read():
        image, label = dataset[0]
        assert image.shape == (3, 16, 16) and image.dtype == np.float32 and np.isfinite(image).all()
        if dataset.skipped:  # the documented skip: another (good) image served, counted
            _count("image", "counted skip")

    err = _expect_clear("image", read, names=(name,))
    if err is not None:
        assert not skip, f"skip_corrupt_images is on, yet {name} raised: {err}"
    if kind in ("zero", "text") or kind.startswith("truncated"):
        assert err is not None or dataset.skipped == 1, f"{kind} ({cut:.2f}) was decoded as an image"


# ------------------------------------------------------------------------------------------------ weight files
@pytest.fixture(scope="module")
def weight_files(workspace):
    paddle.seed(0)
    model = ppbackbone.create_model("pplcnet_x0_25", num_classes=3)
    folder = os.path.join(workspace["root"], "weights")
    os.makedirs(folder, exist_ok=True)
    good = {"pdparams": ppbackbone.save_weights(model, os.path.join(folder, "good.pdparams")),
            "safetensors": ppbackbone.save_weights(model, os.path.join(folder, "good.safetensors"))}
    other = ppbackbone.save_weights(ppbackbone.create_model("pplcnetv2_small", num_classes=3),
                                    os.path.join(folder, "other_model.pdparams"))
    return {"folder": folder, "good": good, "other": other, "state": model.state_dict()}


def _weight_case(files, kind, fmt, fraction, dtype, seed):
    folder = files["folder"]
    path = os.path.join(folder, f"case_{kind}.{fmt}")
    if kind == "truncated":
        data = open(files["good"][fmt], "rb").read()
        with open(path, "wb") as f:
            f.write(data[:int(len(data) * fraction)])
    elif kind == "garbage":
        with open(path, "wb") as f:
            f.write(np.random.RandomState(seed).bytes(64 + seed))
    elif kind == "text":
        with open(path, "w") as f:
            f.write("this is a README, not weights\n")
    elif kind == "pickled_other":
        with open(path, "wb") as f:
            pickle.dump([[1, 2], {"a": "b"}, 3.5, None][seed % 4], f, protocol=2)
    elif kind == "other_model":
        path = files["other"]
    elif kind == "wrong_dtype":
        state = {k: v.numpy().astype(dtype) for k, v in files["state"].items()}
        path = ppbackbone.save_weights(state, path)
    elif kind == "directory":
        path = folder
    elif kind == "missing":
        path = os.path.join(folder, f"missing_{seed}.{fmt}")
    return path


@_settings(45)
@given(kind=st.sampled_from(["truncated", "garbage", "text", "pickled_other", "other_model", "wrong_dtype",
                             "directory", "missing"]),
       fmt=st.sampled_from(["pdparams", "safetensors"]), fraction=st.floats(0.0, 0.99),
       dtype=st.sampled_from(["float16", "float64", "int64", "bool", "int8"]), seed=st.integers(0, 30))
def test_weight_files_load_or_name_the_file(weight_files, kind, fmt, fraction, dtype, seed):
    path = _weight_case(weight_files, kind, fmt, fraction, dtype, seed)
    model = ppbackbone.create_model("pplcnet_x0_25", num_classes=3)

    def load():
        ppbackbone.load_weights(model, path, verbose=False)
        for name, param in model.state_dict().items():
            assert param.dtype == paddle.float32 and np.isfinite(param.numpy()).all(), name

    err = _expect_clear(f"weights ({kind})", load, names=(os.path.basename(path), path))
    if kind in ("truncated", "garbage", "text", "pickled_other", "directory", "missing", "other_model"):
        assert err is not None, f"{kind} weights were accepted"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("backend", ["cv2", "pil"])
def test_truncated_images_fail_even_when_pil_is_told_to_load_them(monkeypatch, fmt, backend):
    """Importing PaddleDetection sets PIL's ImageFile.LOAD_TRUNCATED_IMAGES for the whole process; a
    truncated file must still be an error naming what is missing, not an image with gray rows."""
    from PIL import ImageFile

    from ppbackbone.data.transforms import DecodeImage, ImageDecodeError
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    buf = io.BytesIO()
    Image.fromarray((np.random.RandomState(1).rand(20, 20, 3) * 255).astype("uint8")).save(buf, fmt)
    data = buf.getvalue()
    assert DecodeImage(backend=backend)(data).shape == (20, 20, 3)
    with pytest.raises(ImageDecodeError, match=f"truncated {fmt}"):
        DecodeImage(backend=backend)(data[:int(len(data) * 0.9)])


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def checkpoint(workspace):
    """A real one-epoch checkpoint of the workspace config, copied to flat `ckpt.*` files."""
    from ppbackbone.engine import Trainer
    from ppbackbone.engine.checkpoint import checkpoint_files, newest_checkpoint
    config = copy.deepcopy(workspace["config"])
    config["Global"]["output_dir"] = os.path.join(workspace["root"], "trained")
    config["Global"]["eval_during_train"] = False
    trainer = Trainer(load_config(_write_config(workspace, config, "train.yaml")), mode="train")
    trainer.train()
    prefix = newest_checkpoint(trainer.output_dir)
    files = {os.path.splitext(path)[1]: path for path in checkpoint_files(prefix)}
    assert {".pdparams", ".pdopt", ".pdstates"} <= set(files)
    return {"config": config, "files": files}


def _mutate_checkpoint(checkpoint, folder, target, kind, fraction, dtype, seed):
    os.makedirs(folder, exist_ok=True)
    for suffix, path in checkpoint["files"].items():
        shutil.copyfile(path, os.path.join(folder, "ckpt" + suffix))
    path = os.path.join(folder, "ckpt" + target)
    if kind == "truncated":
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[:int(len(data) * fraction)])
    elif kind == "garbage":
        with open(path, "wb") as f:
            f.write(np.random.RandomState(seed).bytes(32 + seed))
    elif kind == "foreign":
        with open(path, "wb") as f:
            pickle.dump([[1, 2], {"epoch": "x"}, 3.5, "text"][seed % 4], f, protocol=2)
    elif kind == "wrong_dtype":  # the weights as another dtype (the .pdstates hashes no longer match)
        state = paddle.load(path, return_numpy=True)
        paddle.save({k: np.asarray(v).astype(dtype) for k, v in state.items()}, path)
    elif kind == "missing":
        os.remove(path)
    return os.path.join(folder, "ckpt")


@_settings(25)
@given(target=st.sampled_from([".pdparams", ".pdopt", ".pdstates"]),
       kind=st.sampled_from(["truncated", "garbage", "foreign", "wrong_dtype", "missing"]),
       fraction=st.floats(0.0, 0.99), dtype=st.sampled_from(["float16", "float64", "int64"]), seed=st.integers(0, 9))
def test_checkpoints_resume_or_name_the_file(workspace, checkpoint, target, kind, fraction, dtype, seed):
    from ppbackbone.engine import Trainer
    if kind == "wrong_dtype" and target != ".pdparams":
        kind = "garbage"
    case = tempfile.mkdtemp(dir=workspace["root"], prefix="resume-")
    prefix = _mutate_checkpoint(checkpoint, os.path.join(case, "in"), target, kind, fraction, dtype, seed)
    config = copy.deepcopy(checkpoint["config"])
    config["Global"].update(output_dir=os.path.join(case, "out"), checkpoints=prefix, epochs=2)
    path = _write_config(workspace, config, "resume.yaml")
    err = _expect_clear(f"checkpoint ({kind})", lambda: Trainer(load_config(path), mode="train"),
                        names=(prefix, "ckpt"))
    assert err is not None, f"a {kind} {target} was resumed from"
