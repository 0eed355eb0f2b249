"""ppbackbone: PaddlePaddle-native, weight-compatible PP-HGNet(V2), PP-LCNet, CSPResNet, VanillaNet and Swin."""
__version__ = "0.1.0"

from .arch import (Backbone, count_params, create_model, has_unfused_blocks, list_models,  # noqa: F401
                   model_info, pretrained_cfg, register_model, reparameterize)
from .weights.io import load_weights, save_weights  # noqa: F401
from .deploy.predictor import Predictor  # noqa: F401
from .deploy.export import export_model  # noqa: F401
