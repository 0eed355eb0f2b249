"""Errors of the Predictor name the cause: the export (its crop/resize size disagrees with its input
shape), or the image (too small for the export's crop), never the image for the export's fault.
A real tiny export (pplcnet_x0_25, 32 px) with its inference.yml edited as a user or a tool might."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ppbackbone import cli
from ppbackbone.deploy.export import export_model
from ppbackbone.deploy.export_dir import INFERENCE_YML, ModelDirError
from ppbackbone.deploy.predictor import ImageError, Predictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESIZE = """  - ResizeImage:
      size: [32, 32]
      interpolation: BILINEAR
      backend: pil
"""


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("blame")
    config = {"Arch": {"name": "pplcnet_x0_25", "class_num": 4}, "Global": {"image_shape": [3, 32, 32]}}
    export_model(config, save_dir=str(root / "model"), allow_random_weights=True, latency_runs=0,
                 log=lambda *a: None)
    for name, size in (("small.jpg", (20, 20)), ("big.jpg", (50, 60))):
        Image.fromarray(np.full(size + (3,), 128, np.uint8)).save(root / name)
    return root


def _edited(export, tmp_path, old, new):
    target = tmp_path / "edited"
    shutil.copytree(export / "model", target)
    text = (target / INFERENCE_YML).read_text()
    assert old in text
    (target / INFERENCE_YML).write_text(text.replace(old, new))
    return str(target)


@pytest.mark.parametrize("old, new, shape, expected", [
    (RESIZE, "  - ResizeImage:\n      resize_short: 40\n  - CropImage:\n      size: 36\n", "[36, 36]", "[3, 32, 32]"),
    ("shape: [-1, 3, 32, 32]", "shape: [-1, 3, 48, 48]", "[32, 32]", "[3, 48, 48]"),
])
def test_crop_size_or_input_shape_of_the_export_is_blamed_not_the_image(export, tmp_path, old, new, shape, expected):
    model_dir = _edited(export, tmp_path, old, new)
    for image in ("small.jpg", "big.jpg"):
        with pytest.raises(ModelDirError) as err:
            Predictor(model_dir, runtime="paddle", threads=1).predict(str(export / image))
        text = str(err.value)
        assert text.startswith(os.path.join(model_dir, INFERENCE_YML)) and image not in text, text
        assert f"makes every image {shape} (h, w), but the export's input shape (Input.shape) is {expected}" in text


def test_infer_tool_blames_the_export_in_one_error_line(export, tmp_path, capsys):
    model_dir = _edited(export, tmp_path, "shape: [-1, 3, 32, 32]", "shape: [-1, 3, 48, 48]")
    from importlib import util
    spec = util.spec_from_file_location("infer_tool", os.path.join(ROOT, "tools", "infer.py"))
    tool = util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    argv = ["--model_dir", model_dir, "--image", str(export / "big.jpg"), "--runtime", "paddle"]
    assert cli.main_guard(tool.main, argv) == cli.EXIT_USER_ERROR
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error")]
    assert len(err) == 1 and "the export's crop/resize size and its input shape disagree (not the image)" in err[0]


def test_an_image_smaller_than_the_exports_crop_names_both(export, tmp_path):
    model_dir = _edited(export, tmp_path, RESIZE, "  - CropImage:\n      size: 32\n")
    predictor = Predictor(model_dir, runtime="paddle", threads=1)
    with pytest.raises(ImageError, match=r"Image .*small.jpg \(20x20 pixels, w x h\) does not fit the export's "
                                         r"preprocessing \(.*inference.yml: CropImage size 32\): CropImage: crop 32x32"):
        predictor.predict(str(export / "small.jpg"))
    assert len(predictor.predict(str(export / "big.jpg"))) == 1  # large enough: fine


def test_a_dynamic_input_size_takes_any_preprocessed_size(export, tmp_path):
    model_dir = _edited(export, tmp_path, "shape: [-1, 3, 32, 32]", "shape: [-1, 3, -1, -1]")
    assert len(Predictor(model_dir, runtime="paddle", threads=1).predict(str(export / "big.jpg"))) == 1
