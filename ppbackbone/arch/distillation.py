"""Knowledge distillation in PaddleClas's Arch schema: DistillationModel.

    Arch:
      name: DistillationModel
      freeze_params_list: [True, False]         # the teacher is frozen
      pretrained_list: [./teacher.pdparams, null]   # or `pretrained:` inside each model
      infer_model_name: Student                 # what is exported (default: the last unfrozen model)
      models:
        - Teacher: {name: hgnetv2_b6, class_num: 1000}
        - Student: {name: hgnetv2_b0, class_num: 1000}

Each entry of `models` is one model: any ppbackbone name or alias (its other keys go to
create_model) or RecModel with its own keys. `forward(x)` returns `{name: that model's output}`, which
the Distillation* losses and DistillationTopkAcc read by name. Parameters are named
`<Name>.<the model's own names>`, as PaddleClas's; `submodel(name)` and `state_dict_of(name)` give one
model alone, whose keys load with `create_model` (that is how the student is saved and exported).

A frozen model (freeze_params_list) is a fixed function: its parameters take no gradient, it stays
in eval mode (BatchNorm uses its running statistics; PaddleClas leaves a frozen teacher in train
mode, normalising with batch statistics), and it runs without building a backward graph.
"""
import paddle
import paddle.nn as nn

__all__ = ["DistillationModel"]


def _build_one(name, config, where):
    from .recognition import RecModel, ssld_tag
    from .registry import create_model, model_info
    if not isinstance(config, dict) or not config.get("name"):
        raise ValueError(f"{where} must be a mapping with a model name (e.g. {{name: hgnetv2_b0, class_num: 1000}}), "
                         f"got {config!r}")
    params = dict(config)
    model_name = params.pop("name")
    pretrained = params.pop("pretrained", None)
    use_ssld = params.pop("use_ssld", False)  # PaddleClas: pretrained True loads the SSLD weights
    try:
        model = RecModel(**params) if model_name == "RecModel" else create_model(model_name, **params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    if pretrained is True or isinstance(pretrained, str) and model_name != "RecModel" and \
            pretrained in model_info(model_name).weights:
        tag = ssld_tag(model_name) if use_ssld and pretrained is True else pretrained
        weights = model_info(model_name).weights if model_name != "RecModel" else {}
        url = (model_info(model_name).url if tag is True else weights.get(tag)) if weights else None
        if not url:
            raise ValueError(f"{where}.pretrained={pretrained!r}: {model_name} has no published weights; give a "
                             f"file path")
        pretrained = url
    return model, pretrained


def load_into(model, path, where):
    """load_weights with errors that name the config key the path came from."""
    from ..weights.io import load_weights
    try:
        return load_weights(model, path)
    except (ValueError, OSError) as err:
        raise ValueError(f"{where}={path!r}: {err}") from None


class DistillationModel(nn.Layer):
    """Several models run on the same input (see the module docstring). Args are PaddleClas's:
    models (list of one-key mappings), pretrained_list, freeze_params_list; infer_model_name
    (PaddleClas's export key) names the model that is evaluated and exported. `pretrained: True`
    in a model loads its registered weights (with `use_ssld: True`, its "ssld" tag), a tag name
    those tags, anything else is a file path or URL."""

    def __init__(self, models=None, pretrained_list=None, freeze_params_list=None, infer_model_name=None,
                 class_num=None, pretrained=None):
        # class_num: PaddleClas configs anchor it here (&class_num); each model sets its own.
        # pretrained=False (the exporter's build): load no model's weights file.
        super().__init__()
        if not isinstance(models, list) or not models:
            raise ValueError("Arch.models must be a list of one-key mappings like [{Teacher: {name: hgnetv2_b6}}, "
                             f"{{Student: {{name: hgnetv2_b0}}}}], got {models!r}")
        n = len(models)
        pretrained_flag = pretrained
        for key, value in (("pretrained_list", pretrained_list), ("freeze_params_list", freeze_params_list)):
            if value is not None and (not isinstance(value, list) or len(value) != n):
                raise ValueError(f"Arch.{key} must be a list with one entry per model ({n}), got {value!r}")
        freeze = [bool(f) for f in (freeze_params_list or [False] * n)]
        self.model_names, self.frozen = [], []
        for index, entry in enumerate(models):
            if not isinstance(entry, dict) or len(entry) != 1:
                raise ValueError(f"Arch.models[{index}] must be a one-key mapping like {{Student: {{name: ...}}}}, "
                                 f"got {entry!r}")
            (name, config), = entry.items()
            if name in self.model_names:
                raise ValueError(f"Arch.models: the name {name!r} is used twice")
            where = f"Arch.models[{index}].{name}"
            model, pretrained = _build_one(name, config, where)
            if pretrained_list is not None and pretrained_list[index] is not None:
                pretrained, where = pretrained_list[index], f"Arch.pretrained_list[{index}]"
            else:
                where = f"{where}.pretrained"
            if pretrained and pretrained_flag is not False:
                load_into(model, pretrained, where)
            if freeze[index]:
                for param in model.parameters():
                    param.stop_gradient = True
            self.add_sublayer(name, model)
            self.model_names.append(name)
            self.frozen.append(freeze[index])
        if all(self.frozen):
            raise ValueError("Arch.freeze_params_list freezes every model: nothing would be trained")
        trainable = [m for m, f in zip(self.model_names, self.frozen) if not f]
        self.infer_model_name = infer_model_name or trainable[-1]
        if self.infer_model_name not in self.model_names:
            raise ValueError(f"Arch.infer_model_name={infer_model_name!r} is not one of the models "
                             f"{self.model_names}")
        self.model_name = "DistillationModel"
        student = self.submodel(self.infer_model_name)
        self.num_classes = getattr(student, "num_classes", 0)

    def filter_state_dict(self, state_dict):
        """Pass each model's part of a checkpoint through that model's own key filter."""
        state = {}
        for name in self.model_names:
            head = f"{name}."
            part = {k[len(head):]: v for k, v in state_dict.items() if k.startswith(head)}
            sub = self.submodel(name)
            if hasattr(sub, "filter_state_dict"):
                part = sub.filter_state_dict(part)
            state.update({head + k: v for k, v in part.items()})
        state.update({k: v for k, v in state_dict.items()
                      if not any(k.startswith(f"{n}.") for n in self.model_names)})
        return state

    def submodel(self, name):
        return getattr(self, name)

    def state_dict_of(self, name):
        """One model's state dict under its own names (loads with create_model)."""
        return self.submodel(name).state_dict()

    def train(self):
        super().train()
        for name, frozen in zip(self.model_names, self.frozen):
            if frozen:
                self.submodel(name).eval()
        return self

    def forward(self, x, label=None):
        out = {}
        for name, frozen in zip(self.model_names, self.frozen):
            model = self.submodel(name)
            takes_label = label is not None and getattr(model, "needs_label", False)
            if frozen:
                with paddle.no_grad():
                    out[name] = model(x, label) if takes_label else model(x)
            else:
                out[name] = model(x, label) if takes_label else model(x)
        return out
