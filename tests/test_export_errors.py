"""Export and inference directories that cannot work end in a clear error (issue 14): inference.yml cut at any
line, label names that do not match the classes, PreProcess ops that do not make a CHW image, a full disk
(not "VERIFICATION FAILED"), a read-only or blocked save_inference_dir. A small real export is made once."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ppbackbone.errors import ConfigError, UserError
from ppbackbone.deploy.export import ExportError, export_model
from ppbackbone.deploy.export_dir import INFERENCE_YML, ModelDirError
from ppbackbone.deploy.predictor import Predictor

SHAPE = [3, 32, 32]


def _quiet(*args, **kwargs):
    pass


def _config(tmp, **post):
    labels = os.path.join(tmp, "labels.txt")
    with open(labels, "w") as f:
        f.write("".join(f"{i} name_{i}\n" for i in range(4)))
    return {"Arch": {"name": "pplcnet_x0_25", "class_num": 4}, "Global": {"image_shape": SHAPE},
            "Infer": {"PostProcess": {"name": "Topk", "topk": 2, "class_id_map_file": labels, **post}}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_errors")
    save_dir = str(root / "model")
    export_model(_config(str(root)), save_dir=save_dir, allow_random_weights=True, latency_runs=0, log=_quiet)
    image = str(root / "x.jpg")
    Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8")).save(image)
    return {"dir": save_dir, "image": image, "root": root}


def _copy_with_yml(exported, tmp_path, text):
    target = str(tmp_path / "copy")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(exported["dir"], target)
    with open(os.path.join(target, INFERENCE_YML), "w") as f:
        f.write(text)
    return target


def _predict(model_dir, image):
    return Predictor(model_dir, threads=1).predict([image])


def test_inference_yml_cut_at_any_line_is_an_error(exported, tmp_path):
    """Every proper prefix of the file (cut at a line) is refused; the whole file predicts, with label names."""
    text = open(os.path.join(exported["dir"], INFERENCE_YML)).read()
    lines = text.splitlines(keepends=True)
    assert lines[-1] == "# end of inference.yml\n"
    for n in range(len(lines)):
        target = _copy_with_yml(exported, tmp_path, "".join(lines[:n]))
        with pytest.raises(ModelDirError) as info:
            _predict(target, exported["image"])
        message = str(info.value)
        assert INFERENCE_YML in message and len(message) < 600, (n, message)
        assert n < 4 or "cut short" in message, (n, message)
    result = _predict(_copy_with_yml(exported, tmp_path, text), exported["image"])
    assert result[0]["label_names"] and len(result[0]["class_ids"]) == 2


def test_older_file_cut_before_format_version_is_refused(exported, tmp_path):
    """A ppbackbone file without the closing-line promise (written before it existed), cut inside PostProcess:
    not mistaken for a PaddleClas export that has no label names."""
    text = open(os.path.join(exported["dir"], INFERENCE_YML)).read()
    lines = [line for line in text.splitlines(keepends=True) if "cut short" not in line and "end of" not in line]
    cut = [i for i, line in enumerate(lines) if line.startswith("    label_list")][0]
    target = _copy_with_yml(exported, tmp_path, "".join(lines[:cut]))
    with pytest.raises(ModelDirError, match="written by ppbackbone's exporter but has no format_version: it was cut "
                                            "short"):
        _predict(target, exported["image"])


def test_label_list_that_does_not_match_the_classes_is_refused(exported, tmp_path):
    text = open(os.path.join(exported["dir"], INFERENCE_YML)).read()
    edited = text.replace("label_list: [name_0, name_1, name_2, name_3]", "label_list: [name_0, name_1]")
    assert edited != text
    with pytest.raises(ModelDirError, match=r"label_list has 2 names but the model has 4 classes"):
        _predict(_copy_with_yml(exported, tmp_path, edited), exported["image"])


def test_paddleclas_layout_with_incomplete_ops_names_the_file(exported, tmp_path):
    """A PaddleClas-layout inference.yml (no format_version) whose ops stop before ToCHWImage: an error naming
    the file and the shape, never a Paddle traceback or a dump of the image's bytes."""
    text = ("PreProcess:\n  transform_ops:\n  - ResizeImage:\n      size: [32, 32]\n"
            "PostProcess:\n  Topk:\n    topk: 2\n    label_list: [a, b, c, d]\n")
    target = _copy_with_yml(exported, tmp_path, text)
    with pytest.raises(ModelDirError, match=r"inference.yml: its PreProcess.transform_ops turn .*x.jpg into an array "
                                            r"of shape \[32, 32, 3\], not a 3-channel CHW image") as info:
        _predict(target, exported["image"])
    assert "\\x" not in str(info.value)
    short = text.replace("label_list: [a, b, c, d]", "label_list: [a, b]").replace(
        "  - ResizeImage:\n      size: [32, 32]\n",
        "  - ResizeImage:\n      size: [32, 32]\n  - NormalizeImage: {scale: 0.0039, mean: [0, 0, 0], std: [1, 1, 1], "
        "order: ''}\n  - ToCHWImage: null\n")
    with pytest.raises(ModelDirError, match=r"label_list has 2 names but the model outputs 4 classes"):
        _predict(_copy_with_yml(exported, tmp_path, short), exported["image"])


# ------------------------------------------------------------------------------------------------ writing
def _nothing_written(save_dir):
    parent = os.path.dirname(save_dir)
    assert not os.path.exists(save_dir)
    assert not [n for n in os.listdir(parent) if ".tmp-" in n]


def test_full_disk_is_reported_as_a_full_disk(exported, tmp_path, monkeypatch):
    import ppbackbone.deploy.export as export_module
    import ppbackbone.deploy.staging as staging_module
    save_dir = str(tmp_path / "out")
    usage = shutil.disk_usage(str(tmp_path))

    def no_space(path):
        return usage._replace(free=4096)

    monkeypatch.setattr(staging_module.shutil, "disk_usage", no_space)
    with pytest.raises(ExportError, match=r"Not enough disk space for the export in .*out: 0.0 MB free, about"):
        export_model(_config(str(tmp_path)), save_dir=save_dir, allow_random_weights=True, latency_runs=0,
                     log=_quiet)
    _nothing_written(save_dir)

    # The space runs out while Paddle writes (it does not report it): the parameters come out short.
    calls = []

    def runs_out(path):
        calls.append(path)
        return usage if len(calls) == 1 else usage._replace(free=4096)

    real_save = export_module.save_static

    def short_write(layer, directory, *args, **kwargs):
        name = real_save(layer, directory, *args, **kwargs)
        params = os.path.join(directory, "inference.pdiparams")
        with open(params, "r+b") as f:
            f.truncate(os.path.getsize(params) // 3)
        return name

    monkeypatch.setattr(staging_module.shutil, "disk_usage", runs_out)
    monkeypatch.setattr(export_module, "save_static", short_write)
    with pytest.raises(ExportError, match=r"Writing the export failed: the disk is full") as info:
        export_model(_config(str(tmp_path)), save_dir=save_dir, allow_random_weights=True, latency_runs=0,
                     log=_quiet)
    assert "VERIFICATION FAILED" not in str(info.value)
    _nothing_written(save_dir)


def test_read_only_or_blocked_save_dir_names_the_key(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UserError, match=r"save_inference_dir.*is a file"):
        export_model(_config(str(tmp_path)), save_dir=str(blocker / "model"), allow_random_weights=True, log=_quiet)
    import ppbackbone.config as config_module
    monkeypatch.setattr(config_module.os, "access", lambda path, mode: False)  # what a read-only mount answers
    with pytest.raises(ConfigError, match=r"Global.save_inference_dir=.*cannot write into .*read-only"):
        export_model(_config(str(tmp_path)), save_dir=str(tmp_path / "ro" / "model"), allow_random_weights=True,
                     log=_quiet)
