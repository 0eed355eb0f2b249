"""PaddleDetection integration: the `PPBackbone` plugin (plugin), PaddleDetection config rules read
without importing PaddleDetection (config), the tool runner behind tools/ppdet_run.py (runner) and the
detection demo datasets (demo).

`import ppbackbone.ppdet` registers `PPBackbone` in PaddleDetection's workspace: at once when
PaddleDetection is already imported, else as soon as it is (this package never imports PaddleDetection
itself, so the runner can first find the checkout to use). `register_ppdet()` registers explicitly and
says so when PaddleDetection is missing."""
from ..after_import import after_import
from .plugin import PPBackbone, build_backbone, load_config, register_ppdet, reset_config  # noqa: F401

after_import("ppdet.core.workspace", lambda workspace: register_ppdet(demo_datasets=False))
