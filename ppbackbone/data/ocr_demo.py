"""An embedded OCR demo set: rendered text lines (recognition) and text pages with their boxes (detection),
written deterministically on first use (like the classification and detection demos), in PaddleOCR's
SimpleDataSet label format.

`ensure_ocr_demo_dataset()` returns the folder, which holds

    dict.txt                                  the character dictionary, one character a line (OCR_DEMO_CHARS)
    rec/train/000000.jpg ..., rec/val/...     text lines, 48 px high, as wide as the text (<= 160 px)
    rec_train.txt, rec_val.txt                `rec/train/000000.jpg<TAB>TEXT`
    det/train/000000.jpg ..., det/val/...     320x320 pages with 1 to 4 words each
    det_train.txt, det_val.txt                `det/train/000000.jpg<TAB>[{"transcription": "TEXT", "points": [[x, y] x4]}]`

Text is drawn with Pillow's built-in font (`ImageFont.load_default(size)`, Aileron Regular, part of Pillow:
no font file needed) in a dark colour on a light noisy background. Words are 3 to 7 characters of
OCR_DEMO_CHARS. Detection boxes are the drawn text's exact extent (axis-aligned quadrilaterals); words on a
page do not overlap. PaddleOCR configs using it: configs/ppocr/demo/ (paths written `ppbackbone://ocr_demo/...`,
which tools/ppocr_run.py expands to this folder).
"""
import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .demo import write_once

__all__ = ["ensure_ocr_demo_dataset", "ocr_demo_dir", "OCR_DEMO_CHARS", "OCR_DEMO_VERSION", "OCR_DEMO_COUNTS"]

OCR_DEMO_VERSION = 1
OCR_DEMO_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
OCR_DEMO_COUNTS = {"rec": {"train": 640, "val": 100}, "det": {"train": 96, "val": 24}}
REC_HEIGHT, REC_MAX_WIDTH, DET_SIZE = 48, 160, 320
_SEED = 20261206


def ocr_demo_dir():
    """Default location: $PPBACKBONE_HOME/datasets/ocr_demo_v<N> (~/.cache/ppbackbone by default)."""
    home = os.environ.get("PPBACKBONE_HOME", os.path.join(os.path.expanduser("~"), ".cache", "ppbackbone"))
    return os.path.join(home, "datasets", f"ocr_demo_v{OCR_DEMO_VERSION}")


def _word(rng):
    return "".join(rng.choice(list(OCR_DEMO_CHARS), size=rng.randint(3, 8)))


def _background(rng, width, height):
    base = rng.randint(200, 256, size=3)
    noise = rng.normal(0, 6, size=(height, width, 1))
    return Image.fromarray(np.clip(base[None, None, :] + noise, 0, 255).astype("uint8"), "RGB")


def _ink(rng):
    return tuple(int(v) for v in rng.randint(0, 90, size=3))


def _text_line(rng):
    """(image, text): one word on a 48 px high strip."""
    text = _word(rng)
    font = ImageFont.load_default(size=int(rng.randint(24, 31)))
    left, top, right, bottom = font.getbbox(text)
    width = min(REC_MAX_WIDTH, right - left + int(rng.randint(8, 25)))
    img = _background(rng, width, REC_HEIGHT)
    x = int(rng.randint(2, max(3, width - (right - left) - 2)))
    y = (REC_HEIGHT - (bottom - top)) // 2 - top + int(rng.randint(-3, 4))
    ImageDraw.Draw(img).text((x, y), text, font=font, fill=_ink(rng))
    return img, text


def _page(rng):
    """(image, [{transcription, points}]): 1 to 4 non-overlapping words on a DET_SIZE page."""
    img = _background(rng, DET_SIZE, DET_SIZE)
    draw = ImageDraw.Draw(img)
    boxes, labels = [], []
    for _ in range(rng.randint(1, 5)):
        text, font = _word(rng), ImageFont.load_default(size=int(rng.randint(20, 41)))
        for _try in range(20):
            x, y = int(rng.randint(4, DET_SIZE // 2)), int(rng.randint(4, DET_SIZE - 48))
            x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
            if x1 > DET_SIZE - 4 or y1 > DET_SIZE - 4:
                continue
            if any(x0 < b[2] + 6 and b[0] < x1 + 6 and y0 < b[3] + 6 and b[1] < y1 + 6 for b in boxes):
                continue
            draw.text((x, y), text, font=font, fill=_ink(rng))
            boxes.append((x0, y0, x1, y1))
            labels.append({"transcription": text, "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
            break
    return img, labels


def _write(root):
    rng = np.random.RandomState(_SEED)
    with open(os.path.join(root, "dict.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{c}\n" for c in OCR_DEMO_CHARS)
    for task, make in (("rec", _text_line), ("det", _page)):
        for split, count in OCR_DEMO_COUNTS[task].items():
            os.makedirs(os.path.join(root, task, split))
            lines = []
            for i in range(count):
                img, label = make(rng)
                rel = f"{task}/{split}/{i:06d}.jpg"
                img.save(os.path.join(root, rel), "JPEG", quality=90)
                lines.append(f"{rel}\t{label if task == 'rec' else json.dumps(label)}\n")
            with open(os.path.join(root, f"{task}_{split}.txt"), "w", encoding="utf-8") as f:
                f.writelines(lines)
    with open(os.path.join(root, "README.txt"), "w", encoding="utf-8") as f:
        f.write(f"ppbackbone OCR demo set v{OCR_DEMO_VERSION}: words of {OCR_DEMO_CHARS} drawn with Pillow's "
                f"built-in font; rec {OCR_DEMO_COUNTS['rec']} text lines, det {OCR_DEMO_COUNTS['det']} pages, "
                f"PaddleOCR SimpleDataSet labels. Written by ppbackbone.data.ocr_demo.ensure_ocr_demo_dataset(); "
                f"delete the folder to regenerate it.\n")


def ensure_ocr_demo_dataset(root=None):
    """Write the OCR demo set to `root` (default `ocr_demo_dir()`) unless it is complete there; returns the
    folder. Deterministic for a given Pillow (fixed seed, Pillow's own font), a few seconds; written to a
    temporary folder and renamed, so concurrent callers never see a half-written set."""
    root = os.path.abspath(os.path.expanduser(root or ocr_demo_dir()))
    return write_once(root, _write, ("dict.txt", "rec_val.txt", "det_val.txt"), "OCR demo set")
