"""PaddleClas's AutoAugment (ImageNet policy), ColorJitter, RandomRotation, Pad and RandCropImageV2:
AutoAugment equals PaddleClas develop's output image for image under the same seeds
(tests/fixtures/metric_paddleclas.npz); the paddle.vision wrappers equal paddle's own ops."""
import os
import random

import numpy as np
import pytest
from PIL import Image

from ppbackbone.data.transforms import (AutoAugment, ColorJitter, Pad, RandCropImageV2, RandomRotation,
                                        TransformError, build_transforms)

FIXTURE = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "metric_paddleclas.npz"))


def test_autoaugment_matches_paddleclas_imagenet_policy():
    op = AutoAugment()
    image = FIXTURE["aa_input"]
    changed = 0
    for k, expected in enumerate(FIXTURE["aa_output"]):
        random.seed(k)
        got = op(image)
        np.testing.assert_array_equal(got, expected, err_msg=f"seed {k}")
        changed += int((got != image).any())
    assert changed >= 20  # the fixture exercises real augmentations, not the identity


def test_color_jitter_and_rotation_are_paddles_ops():
    from paddle.vision.transforms import ColorJitter as PaddleColorJitter
    from paddle.vision.transforms import RandomRotation as PaddleRandomRotation
    image = FIXTURE["aa_input"]
    for seed in range(3):
        random.seed(seed), np.random.seed(seed)
        got = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)(image)
        random.seed(seed), np.random.seed(seed)
        np.random.random()  # the prob draw
        expected = np.asarray(PaddleColorJitter(0.4, 0.4, 0.4, 0.1)._apply_image(Image.fromarray(image)))
        np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, image)
    random.seed(1), np.random.seed(1)
    rotated = RandomRotation(degrees=90, prob=1.0, interpolation="bilinear")(image)
    random.seed(1), np.random.seed(1)
    np.random.random()
    np.testing.assert_array_equal(rotated, PaddleRandomRotation(90, interpolation="bilinear")._apply_image(image))
    assert np.array_equal(RandomRotation(degrees=90, prob=0.0)(image), image)


def test_pad_and_rand_crop_v2():
    image = FIXTURE["aa_input"]
    padded = Pad(padding=3, fill=7, backend="cv2")(image)
    assert padded.shape == (30, 30, 3) and (padded[:3] == 7).all() and np.array_equal(padded[3:27, 3:27], image)
    random.seed(0)
    crop = RandCropImageV2(size=[20, 16])(padded)  # [w, h]
    assert crop.shape[1] in (19, 20) and crop.shape[0] in (15, 16)
    with pytest.raises(TransformError, match="larger than the image"):
        RandCropImageV2(size=64)(image)
    with pytest.raises(TransformError, match="ColorJitter.hue"):
        ColorJitter(hue=0.9)


def test_shitu_train_pipeline_builds_and_runs():
    ops = build_transforms([
        {"ResizeImage": {"size": [32, 32], "return_numpy": False, "interpolation": "bilinear", "backend": "cv2"}},
        {"RandFlipImage": {"flip_code": 1}}, {"Pad": {"padding": 4, "backend": "cv2"}},
        {"RandCropImageV2": {"size": [32, 32]}}, {"RandomRotation": {"prob": 0.5, "degrees": 90,
                                                                      "interpolation": "bilinear"}},
        {"ResizeImage": {"size": [32, 32], "return_numpy": False, "interpolation": "bilinear", "backend": "cv2"}},
        {"AutoAugment": None}, {"ColorJitter": {"brightness": 0.2, "prob": 0.5}}])
    random.seed(3), np.random.seed(3)
    assert ops(FIXTURE["aa_input"]).shape == (32, 32, 3)
