"""PaddleOCR integration: the `PPBackbone` plugin (plugin), PaddleOCR config rules read without importing
PaddleOCR (config), the tool runner behind tools/ppocr_run.py (runner) and the OCR demo data (demo).

`import ppbackbone.ppocr` makes PaddleOCR's backbone builder take `name: PPBackbone`: at once when PaddleOCR's
`ppocr.modeling.backbones` is already imported, else as soon as it is (this package never imports PaddleOCR
itself, so the runner can first find the checkout to use); `ppocr.modeling.architectures.base_model`, which
binds the builder at its import, is patched too, whichever is imported first. `register_ppocr()` patches
explicitly and says so when PaddleOCR is missing."""
from ..after_import import after_import
from .plugin import BUILDER_MODULES, PPBackbone, create_backbone, patch_module, register_ppocr  # noqa: F401

for _module in BUILDER_MODULES:
    after_import(_module, patch_module)
