"""Model architectures. Importing this package registers every family."""
from .registry import create_model, list_models, model_info, pretrained_cfg, register_model, resolve_name  # noqa: F401
from .base import Backbone, count_params  # noqa: F401
from .build import build_model  # noqa: F401
from .rep import reparameterize, has_unfused_blocks  # noqa: F401
from . import hgnet  # noqa: F401  (registers hgnetv2_*, pphgnet_*)
from . import lcnet  # noqa: F401  (registers pplcnet_*)
from . import lcnetv2  # noqa: F401  (registers pplcnetv2_*)
from . import lcnetv3  # noqa: F401  (registers pplcnetv3_*)
from . import lcnetv4  # noqa: F401  (registers pplcnetv4_*)
from . import cspresnet  # noqa: F401  (registers cspresnet_*)
from . import vanillanet  # noqa: F401  (registers vanillanet_*)
from . import swin  # noqa: F401  (registers swin_*)
from . import ocr_native  # noqa: F401  (PaddleOCR native classes, host "PaddleOCR"; after the families)
