"""The model a config's `Arch` section describes: a registered backbone by name, or PaddleClas's compound
models (RecModel, DistillationModel) with their own keys."""
from ..errors import ConfigError
from .distillation import DistillationModel
from .recognition import RecModel
from .registry import create_model

__all__ = ["build_model"]


def build_model(config, **extra):
    """Build the model the config's `Arch` section names. `class_num`, `pretrained` and any other
    Arch key go to create_model; `extra` overrides them (e.g. out_indices for feature export).
    `RecModel` and `DistillationModel` take their PaddleClas keys (Backbone/Neck/Head; models/...)."""
    arch = {k: v for k, v in config["Arch"].items() if v is not None}  # a null value is an unset key
    arch.update(extra)
    name = arch.pop("name")
    try:
        if name == "RecModel":
            if "pretrained" in arch:  # the exporter's pretrained=False reaches the backbone
                arch["Backbone"] = dict(arch.get("Backbone") or {}, pretrained=arch.pop("pretrained"))
            return RecModel(**arch)
        if name == "DistillationModel":
            return DistillationModel(**arch)
        return create_model(name, **arch)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Arch section: {err}") from None
