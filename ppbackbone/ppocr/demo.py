"""The OCR demo set (ppbackbone.data.ocr_demo) as PaddleOCR configs and tool arguments name it.

A config or a tool argument writes paths into the demo set as `ppbackbone://ocr_demo/<file>`
(`data_dir: ppbackbone://ocr_demo`, `label_file_list: [ppbackbone://ocr_demo/rec_train.txt]`,
`character_dict_path: ppbackbone://ocr_demo/dict.txt`, `--image_dir ppbackbone://ocr_demo/rec/val/000000.jpg`);
tools/ppocr_run.py writes the set on first use and replaces the prefix by its folder, so the demo configs
run from any working directory with PaddleOCR's own SimpleDataSet.
"""
from ..data.ocr_demo import ensure_ocr_demo_dataset

__all__ = ["DEMO_PREFIX", "expand_demo_paths"]

DEMO_PREFIX = "ppbackbone://ocr_demo"


def _expand(node, folder, where, changes):
    if isinstance(node, dict):
        return {k: _expand(v, folder, f"{where}{k}.", changes) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, folder, f"{where}{i}.", changes) for i, v in enumerate(node)]
    if isinstance(node, str) and DEMO_PREFIX in node:
        changes.append(where.rstrip("."))
        return node.replace(DEMO_PREFIX, folder())
    return node


def expand_demo_paths(node, changes=None):
    """`node` (a config mapping, a list of arguments or a string) with every DEMO_PREFIX replaced by the demo
    set's folder, written first if needed; the dotted places changed are appended to `changes`."""
    changes = [] if changes is None else changes
    return _expand(node, lambda: ensure_ocr_demo_dataset(), "", changes)
