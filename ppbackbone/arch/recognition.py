"""Recognition (metric-learning) models in PaddleClas's Arch schema: RecModel and its gears.

    Arch:
      name: RecModel
      Backbone: {name: pplcnetv2_base, pretrained: True, class_expand: 512}   # any ppbackbone name/alias
      BackboneStopLayer: {name: flatten}     # stop after the pooled, flattened features (no fc)
      Neck: {name: BNNeck, num_features: 512}   # or FC {embedding_size, class_num}; absent: identity
      Head: {name: FC, embedding_size: 512, class_num: 1000}   # or ArcMargin / CosMargin; absent: none

`RecModel(x, label=None)` returns `{"backbone": ..., "neck": ..., "features": ..., "logits": ...}`
(features = the neck output, or the backbone's without a neck; logits only with a head), as
PaddleClas's RecModel. Parameter names are PaddleClas's: `backbone.*`, `neck.feat_bn.*` /
`neck.fc.*`, `head.fc.*` / `head.weight`, so PaddleClas recognition checkpoints load unchanged.

Gears (PaddleClas's ppcls/arch/gears): FC, BNNeck, ArcMargin, CosMargin; `weight_attr`/`bias_attr`
are PaddleClas's ParamAttr dicts ({initializer: {name: Normal, std: 0.001}, learning_rate: ...}) or
booleans.
"""
import math

import paddle
import paddle.nn as nn

__all__ = ["RecModel", "RecInference", "ssld_tag", "FC", "BNNeck", "ArcMargin", "CosMargin", "GEARS", "param_attr", "build_gear",
           "deployable"]

_INITIALIZERS = ("Constant", "Normal", "TruncatedNormal", "Uniform", "XavierNormal", "XavierUniform",
                 "KaimingNormal", "KaimingUniform", "Assign")
_REGULARIZERS = ("L1Decay", "L2Decay")


def ssld_tag(name):
    """PaddleClas's `pretrained: True, use_ssld: True`: the model's "ssld" weights tag (True, its
    default weights, with a warning when it has none)."""
    from ..errors import warn_once
    from .registry import model_info
    if "ssld" in model_info(name).weights:
        return "ssld"
    warn_once(f"use_ssld:{name}", f"use_ssld: {name} has no weights tagged ssld; its default weights are loaded")
    return True


def param_attr(config, where):
    """A paddle.ParamAttr (or bool / None) from PaddleClas's ParamAttr dict, checked: errors name
    `where`, the bad value and what is allowed."""
    if config is None or isinstance(config, bool):
        return config
    if not isinstance(config, dict):
        raise ValueError(f"{where} must be a mapping ({{initializer: {{name: Normal, std: 0.01}}, learning_rate: "
                         f"1.0}}), true/false or null, got {config!r}")
    unknown = [k for k in config if k not in ("initializer", "learning_rate", "regularizer", "trainable")]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: initializer, learning_rate, regularizer, "
                         f"trainable")
    kwargs = {}
    for key, module, allowed in (("initializer", paddle.nn.initializer, _INITIALIZERS),
                                 ("regularizer", paddle.regularizer, _REGULARIZERS)):
        if config.get(key) is None:
            continue
        spec = dict(config[key]) if isinstance(config[key], dict) else {}
        name = spec.pop("name", None)
        if name not in allowed:
            raise ValueError(f"{where}.{key}.name={name!r}: expected one of {', '.join(allowed)}")
        try:
            kwargs[key] = getattr(module, name)(**spec)
        except TypeError as err:
            raise ValueError(f"{where}.{key} ({name}): {err}") from None
    if config.get("learning_rate") is not None:
        lr = config["learning_rate"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ValueError(f"{where}.learning_rate must be a number, got {lr!r}")
        kwargs["learning_rate"] = float(lr)
    if config.get("trainable") is not None:
        kwargs["trainable"] = bool(config["trainable"])
    return paddle.ParamAttr(**kwargs)


def _positive_int(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive int, got {value!r}")
    return value


class FC(nn.Layer):
    """Linear layer `fc` (embedding_size -> class_num), XavierNormal weights by default (PaddleClas's
    FC gear, used as neck or head)."""

    def __init__(self, embedding_size, class_num, weight_attr=None, bias_attr=None):
        super().__init__()
        self.embedding_size = _positive_int(embedding_size, "FC.embedding_size")
        self.class_num = _positive_int(class_num, "FC.class_num")
        weight = param_attr(weight_attr, "FC.weight_attr")
        if weight is None:
            weight = paddle.ParamAttr(initializer=paddle.nn.initializer.XavierNormal())
        self.fc = nn.Linear(self.embedding_size, self.class_num, weight_attr=weight,
                            bias_attr=param_attr(bias_attr, "FC.bias_attr"))
        self.out_dim = self.class_num

    def forward(self, x, label=None):
        return self.fc(x)


class BNNeck(nn.Layer):
    """Flatten + BatchNorm1D (`feat_bn`, momentum 0.9, eps 1e-5), PaddleClas's BNNeck (the bias is a
    trainable parameter unless `bias_attr` says otherwise, as in PaddleClas)."""

    def __init__(self, num_features, weight_attr=None, bias_attr=None, use_global_stats=None):
        super().__init__()
        self.num_features = _positive_int(num_features, "BNNeck.num_features")
        weight = param_attr(weight_attr, "BNNeck.weight_attr")
        if weight is None:
            weight = paddle.ParamAttr(initializer=paddle.nn.initializer.Constant(1.0))
        self.feat_bn = nn.BatchNorm1D(self.num_features, momentum=0.9, epsilon=1e-05, weight_attr=weight,
                                      bias_attr=param_attr(bias_attr, "BNNeck.bias_attr"),
                                      use_global_stats=use_global_stats)
        self.flatten = nn.Flatten()
        self.in_dim = self.out_dim = self.num_features

    def forward(self, x):
        return self.feat_bn(self.flatten(x))


def _normalized_cosine(x, weight):
    x = paddle.divide(x, paddle.sqrt(paddle.sum(paddle.square(x), axis=1, keepdim=True)))
    w = paddle.divide(weight, paddle.sqrt(paddle.sum(paddle.square(weight), axis=0, keepdim=True)))
    return paddle.matmul(x, w)


def _one_hot(label, class_num):
    return paddle.nn.functional.one_hot(label.reshape([-1]).astype("int64"), class_num)


class _MarginHead(nn.Layer):
    """What ArcMargin and CosMargin share: the checked sizes, margin, scale and the `weight`
    [embedding_size, class_num] (PaddleClas's name and initializer)."""

    def __init__(self, embedding_size, class_num, margin, scale):
        super().__init__()
        name = type(self).__name__
        self.embedding_size = _positive_int(embedding_size, f"{name}.embedding_size")
        self.class_num = _positive_int(class_num, f"{name}.class_num")
        self.margin, self.scale = float(margin), float(scale)
        self.weight = self.create_parameter([self.embedding_size, self.class_num], is_bias=False,
                                            default_initializer=paddle.nn.initializer.XavierNormal())
        self.out_dim = self.class_num


class ArcMargin(_MarginHead):
    """Additive angular margin head (ArcFace; PaddleClas's ArcMargin): cos(theta + margin) for the
    true class, scaled by `scale`, in training with labels; plain cosines otherwise. Weight
    `[embedding_size, class_num]`."""

    def __init__(self, embedding_size, class_num, margin=0.5, scale=80.0, easy_margin=False):
        super().__init__(embedding_size, class_num, margin, scale)
        self.easy_margin = bool(easy_margin)

    def forward(self, x, label=None):
        cos = _normalized_cosine(x, self.weight)
        if not self.training or label is None:
            return cos
        sin = paddle.sqrt(1.0 - paddle.square(cos) + 1e-6)
        phi = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        if self.easy_margin:
            mask = (cos > 0).astype("float32")
            phi = mask * phi + (1.0 - mask) * cos
        else:
            mask = (cos > -math.cos(self.margin)).astype("float32")
            phi = mask * phi + (1.0 - mask) * (cos - math.sin(self.margin) * self.margin)
        one_hot = _one_hot(label, self.class_num)
        return (one_hot * phi + (1.0 - one_hot) * cos) * self.scale


class CosMargin(_MarginHead):
    """Additive cosine margin head (CosFace; PaddleClas's CosMargin): cos - margin for the true
    class, scaled by `scale`, in training with labels; plain cosines otherwise."""

    def __init__(self, embedding_size, class_num, margin=0.35, scale=64.0):
        super().__init__(embedding_size, class_num, margin, scale)

    def forward(self, x, label=None):
        cos = _normalized_cosine(x, self.weight)
        if not self.training or label is None:
            return cos
        one_hot = _one_hot(label, self.class_num)
        return (one_hot * (cos - self.margin) + (1.0 - one_hot) * cos) * self.scale


GEARS = {"FC": FC, "BNNeck": BNNeck, "ArcMargin": ArcMargin, "CosMargin": CosMargin}
NECKS = ("FC", "BNNeck")
HEADS = ("FC", "ArcMargin", "CosMargin")


def build_gear(config, where, allowed):
    """A gear from `{name: ..., **params}`; errors name `where` (Arch.Neck / Arch.Head)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"{where} must be a mapping with a name ({' / '.join(allowed)}), got {config!r}")
    params = dict(config)
    name = params.pop("name")
    if name not in allowed:
        raise ValueError(f"{where}.name={name!r} is not supported; use one of {', '.join(allowed)}")
    try:
        return GEARS[name](**params)
    except TypeError as err:
        raise ValueError(f"{where} ({name}): {err}") from None


# Layers a backbone may stop after (PaddleClas's BackboneStopLayer.name) and what that means here.
_STOP_LAYERS = {"flatten": "pooled features, no classifier (num_classes 0)",
                "fc": "the classifier's logits (the whole backbone)"}


class RecModel(nn.Layer):
    """Backbone -> optional Neck -> optional Head, PaddleClas's RecModel (see the module docstring).

    Args (PaddleClas's Arch keys): Backbone (a mapping: `name` = any ppbackbone model or alias, the
    rest goes to create_model: pretrained, class_expand, ...), BackboneStopLayer ({name: flatten}:
    features before the fc; {name: fc}: logits), Neck, Head, head_feature_from ('neck' or 'backbone').
    infer_output_key / infer_add_softmax are read by the exporter (features / False by default)."""

    def __init__(self, Backbone=None, BackboneStopLayer=None, Neck=None, Head=None,  # noqa: N803 - PaddleClas keys
                 head_feature_from="neck", infer_output_key="features", infer_add_softmax=False):
        super().__init__()
        from .registry import create_model
        if not isinstance(Backbone, dict) or not Backbone.get("name"):
            raise ValueError(f"Arch.Backbone must be a mapping with a model name (e.g. {{name: pplcnetv2_base, "
                             f"pretrained: True}}), got {Backbone!r}")
        backbone_cfg = dict(Backbone)
        name = backbone_cfg.pop("name")
        if backbone_cfg.pop("use_ssld", False) and backbone_cfg.get("pretrained") is True:
            backbone_cfg["pretrained"] = ssld_tag(name)
        if BackboneStopLayer is not None:
            stop = BackboneStopLayer.get("name") if isinstance(BackboneStopLayer, dict) else BackboneStopLayer
            if stop not in _STOP_LAYERS:
                raise ValueError(f"Arch.BackboneStopLayer.name={stop!r} is not supported; use "
                                 + "; ".join(f"{k} ({v})" for k, v in _STOP_LAYERS.items()))
            if stop == "flatten":
                if backbone_cfg.get("class_num", 0) not in (0, None):
                    raise ValueError(f"Arch.Backbone.class_num={backbone_cfg['class_num']} with BackboneStopLayer "
                                     f"flatten: the fc is cut off; remove class_num")
                backbone_cfg["class_num"] = 0
        if head_feature_from not in ("neck", "backbone"):
            raise ValueError(f"Arch.head_feature_from={head_feature_from!r}: use neck or backbone")
        if infer_output_key not in ("features", "logits", "backbone"):
            raise ValueError(f"Arch.infer_output_key={infer_output_key!r}: use features, logits or backbone")
        try:
            self.backbone = create_model(name, **backbone_cfg)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Arch.Backbone: {err}") from None
        self.backbone_name = getattr(self.backbone, "model_name", name)
        backbone_dim = self.backbone.num_classes or self.backbone.num_features
        self.neck = build_gear(Neck, "Arch.Neck", NECKS) if Neck is not None else None
        if self.neck is not None:
            want = self.neck.num_features if isinstance(self.neck, BNNeck) else self.neck.embedding_size
            key = "num_features" if isinstance(self.neck, BNNeck) else "embedding_size"
            if want != backbone_dim:
                raise ValueError(f"Arch.Neck.{key}={want}, but the backbone {self.backbone_name} gives "
                                 f"{backbone_dim} features; set it to {backbone_dim}")
        feature_dim = self.neck.out_dim if self.neck is not None else backbone_dim
        self.head_feature_from = head_feature_from
        self.head = build_gear(Head, "Arch.Head", HEADS) if Head is not None else None
        if self.head is not None:
            source = feature_dim if head_feature_from == "neck" else backbone_dim
            if self.head.embedding_size != source:
                raise ValueError(f"Arch.Head.embedding_size={self.head.embedding_size}, but the "
                                 f"{'features' if head_feature_from == 'neck' else 'backbone output'} have "
                                 f"{source} dimensions; set it to {source}")
        self.feature_dim = feature_dim
        self.num_classes = self.head.class_num if self.head is not None else 0
        self.infer_output_key, self.infer_add_softmax = infer_output_key, bool(infer_add_softmax)
        self.model_name = "RecModel"

    def forward(self, x, label=None):
        out = {}
        x = self.backbone(x)
        out["backbone"] = x
        if self.neck is not None:
            out["neck"] = self.neck(x)
        out["features"] = out["neck"] if self.neck is not None else x
        if self.head is not None:
            source = out["features"] if self.head_feature_from == "neck" else out["backbone"]
            out["logits"] = self.head(source, label)
        return out

    def filter_state_dict(self, state_dict):
        """Pass the `backbone.` part of a checkpoint through the backbone's own key filter."""
        prefix = "backbone."
        inner = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if hasattr(self.backbone, "filter_state_dict"):
            inner = self.backbone.filter_state_dict(inner)
        state = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
        state.update({prefix + k: v for k, v in inner.items()})
        return state

    def is_head_key(self, key):
        """Classifier tensors: the head's, and the backbone's own fc (cut off by BackboneStopLayer)."""
        if key.startswith("head."):
            return True
        return key.startswith("backbone.") and self.backbone.is_head_key(key[len("backbone."):])

    @property
    def needs_label(self):
        """True when the head uses labels in training (margin heads)."""
        return isinstance(self.head, (ArcMargin, CosMargin))


class RecInference(nn.Layer):
    """A RecModel as deployed: `forward(x)` returns its `infer_output_key` output (the embedding by
    default; PaddleClas's exporter does the same), with `infer_add_softmax` applied to logits.
    `num_classes` is 0 for an embedding, so the exporter writes PostProcess NormalizeFeatures."""

    def __init__(self, rec):
        super().__init__()
        self.rec = rec
        self.out_indices = None
        self.model_name = rec.model_name
        self.num_classes = rec.num_classes if rec.infer_output_key == "logits" else 0

    def export_input_shape(self, image_shape):
        """The exported program's input [C, H, W]: the export's own size (a RecModel has no free sizes)."""
        return list(image_shape)

    def forward(self, x):
        out = self.rec(x)[self.rec.infer_output_key]
        if self.rec.infer_output_key == "logits" and self.rec.infer_add_softmax:
            out = paddle.nn.functional.softmax(out, axis=-1)
        return out


def deployable(model):
    """The layer to export for a model: a DistillationModel's infer_model_name model, a RecModel's
    RecInference; any other model itself."""
    if hasattr(model, "submodel") and hasattr(model, "infer_model_name"):
        model = model.submodel(model.infer_model_name)
    if isinstance(model, RecModel):
        return RecInference(model)
    return model
