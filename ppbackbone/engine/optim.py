"""Optimizer and learning-rate schedule from a config's `Optimizer` section (PaddleClas semantics).

- Optimizers: Momentum, SGD, AdamW, Adam, Lamb, RMSProp (paddle.optimizer).
- Schedules (`Optimizer.lr.name`): Cosine, Piecewise, Step, MultiStepDecay, Linear, Constant/ConstLR;
  each with an optional linear warmup (`warmup_epoch`, from `warmup_start_lr`); stepped every
  iteration unless `by_epoch: True`.
- Weight decay: `regularizer: {name: L2, coeff}` (or `weight_decay`) applies to every parameter
  except those whose ParamAttr sets their own regularizer (BN: L2Decay(0)), those whose name
  contains a word of `no_weight_decay_name`, and 1-D ones with `one_dim_param_no_weight_decay`.
  AdamW/Lamb decay is decoupled (`weight_decay` coefficient) with the same exclusions.
- Per-parameter learning-rate multipliers (ParamAttr learning_rate: the models' `lr_mult_list`,
  LAB's lab_lr) are applied by paddle's optimizers. No parameter groups are used: in paddle 3.3.1
  a parameter group ignores its parameters' ParamAttr learning rates (PaddleClas's Momentum with
  `no_weight_decay_name` builds groups and so loses lr_mult); exclusions from L2 decay are set
  as a zero regularizer on the parameter instead.
"""
import math

import paddle

from ..errors import ConfigError, check_keys, suggest, warn_once

__all__ = ["build_optimizer", "build_lr_scheduler", "check_optimizer_config", "OPTIMIZER_KEYS", "LR_KEYS",
           "decay_excluded"]

_COMMON = ("name", "lr", "regularizer", "weight_decay", "clip_norm", "multi_precision", "no_weight_decay_name",
           "one_dim_param_no_weight_decay")
OPTIMIZER_KEYS = {
    "Momentum": _COMMON + ("momentum", "use_nesterov"),
    "SGD": _COMMON,
    "AdamW": _COMMON + ("beta1", "beta2", "epsilon", "amsgrad"),
    "Adam": _COMMON + ("beta1", "beta2", "epsilon", "lazy_mode", "amsgrad"),
    "Lamb": _COMMON + ("beta1", "beta2", "epsilon", "lamb_weight_decay"),
    "RMSProp": _COMMON + ("momentum", "rho", "epsilon", "centered"),
}
_OPT_UNSUPPORTED = {"clip_grad": "use clip_norm", "layerwise_decay": "no layer-wise decay",
                    "filter_bias_and_bn": "use one_dim_param_no_weight_decay"}
_WARMUP = ("warmup_epoch", "warmup_start_lr", "by_epoch", "last_epoch", "epochs", "step_each_epoch")
LR_KEYS = {
    "Cosine": ("name", "learning_rate", "eta_min") + _WARMUP,
    "Piecewise": ("name", "learning_rate", "decay_epochs", "values") + _WARMUP,
    "Step": ("name", "learning_rate", "step_size", "gamma") + _WARMUP,
    "MultiStepDecay": ("name", "learning_rate", "milestones", "gamma") + _WARMUP,
    "Linear": ("name", "learning_rate", "end_lr", "power", "cycle") + _WARMUP,
    "Constant": ("name", "learning_rate") + _WARMUP,
    "ConstLR": ("name", "learning_rate") + _WARMUP,
}


def _number(value, where, positive=False, allow_zero=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{where}={value!r} must be a number")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"{where}={value!r} must be {'>= 0' if allow_zero else '> 0'}")
    return float(value)


def check_optimizer_config(cfg):
    """Check `Optimizer` keys and values (optimizer name and its keys, lr schedule, regularizer)."""
    if isinstance(cfg, list):
        raise ConfigError("Optimizer as a list of scoped optimizers (PaddleClas multi-optimizer form) is not "
                          "supported: give one optimizer mapping with name, lr, regularizer")
    if not isinstance(cfg, dict):
        raise ConfigError(f"Optimizer must be a mapping, got {cfg!r}")
    name = cfg.get("name")
    if name not in OPTIMIZER_KEYS:
        raise ConfigError(f"Optimizer.name {name!r} is not supported.{suggest(name, OPTIMIZER_KEYS)} "
                          f"Known: {', '.join(OPTIMIZER_KEYS)}")
    check_keys(cfg, OPTIMIZER_KEYS[name], "Optimizer", _OPT_UNSUPPORTED)
    lr = cfg.get("lr")
    if lr is None:
        raise ConfigError("Optimizer.lr is required (e.g. {name: Cosine, learning_rate: 0.1, warmup_epoch: 5})")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        _number(lr, "Optimizer.lr", positive=True)
    else:
        if not isinstance(lr, dict):
            raise ConfigError(f"Optimizer.lr must be a number or a mapping, got {lr!r}")
        lr_name = lr.get("name", "Constant")
        if lr_name not in LR_KEYS:
            raise ConfigError(f"Optimizer.lr.name {lr_name!r} is not supported.{suggest(lr_name, LR_KEYS)} "
                              f"Known: {', '.join(LR_KEYS)}")
        check_keys(lr, LR_KEYS[lr_name], "Optimizer.lr")
        if lr_name == "Piecewise" and lr.get("learning_rate") is None:
            decay, values = lr.get("decay_epochs"), lr.get("values")
            if not isinstance(decay, list) or not isinstance(values, list) or len(values) != len(decay) + 1:
                raise ConfigError(f"Optimizer.lr Piecewise needs decay_epochs (N epochs) and values (N + 1 "
                                  f"learning rates), got decay_epochs={decay!r} values={values!r}")
        elif lr.get("learning_rate") is None:
            raise ConfigError(f"Optimizer.lr.learning_rate is required for {lr_name}")
        else:
            _number(lr["learning_rate"], "Optimizer.lr.learning_rate", positive=True)
        for key in ("warmup_epoch", "warmup_start_lr", "eta_min"):
            if lr.get(key) is not None:
                _number(lr[key], f"Optimizer.lr.{key}", positive=True)
        if lr_name == "Step" and lr.get("step_size") is None:
            raise ConfigError("Optimizer.lr.step_size is required for Step (epochs between decays)")
        if lr_name == "MultiStepDecay" and not isinstance(lr.get("milestones"), list):
            raise ConfigError("Optimizer.lr.milestones (a list of epochs) is required for MultiStepDecay")
    reg = cfg.get("regularizer")
    if reg is not None:
        check_keys(reg, ("name", "coeff"), "Optimizer.regularizer")
        if str(reg.get("name", "L2")).upper() not in ("L2", "L1"):
            raise ConfigError(f"Optimizer.regularizer.name {reg.get('name')!r}: use L2 or L1")
        _number(reg.get("coeff", 0.0), "Optimizer.regularizer.coeff", positive=True)
    if cfg.get("clip_norm") is not None:
        _number(cfg["clip_norm"], "Optimizer.clip_norm", positive=True, allow_zero=False)
    nwd = cfg.get("no_weight_decay_name")
    if nwd is not None and not isinstance(nwd, (str, list)):
        raise ConfigError(f"Optimizer.no_weight_decay_name must be a space-separated string or a list of name "
                          f"fragments, got {nwd!r}")


def build_lr_scheduler(lr_cfg, epochs, steps_per_epoch):
    """A paddle LRScheduler (with `.by_epoch` set) or a float, per PaddleClas's schedule classes."""
    if isinstance(lr_cfg, (int, float)):
        return float(lr_cfg)
    cfg = dict(lr_cfg)
    name = cfg.pop("name", "Constant")
    for key in ("epochs", "step_each_epoch", "last_epoch"):
        cfg.pop(key, None)
    by_epoch = bool(cfg.pop("by_epoch", False))
    warmup_epoch = float(cfg.pop("warmup_epoch", 0) or 0)
    warmup_start = float(cfg.pop("warmup_start_lr", 0.0) or 0.0)
    if warmup_epoch > epochs:  # equal: the whole run is warmup, as configured (a 1-epoch run): nothing to say
        warn_once("warmup>epochs", f"Optimizer.lr.warmup_epoch={warmup_epoch:g} > Global.epochs={epochs}: "
                                   f"warmup is shortened to {epochs} epoch(s)")
        warmup_epoch = float(epochs)
    unit = 1 if by_epoch else steps_per_epoch
    warmup_steps = int(round(warmup_epoch * unit))
    decay_units = int(round((epochs - warmup_epoch) * unit))
    lr = cfg.get("learning_rate")
    sched = paddle.optimizer.lr
    if name == "Cosine":
        base = sched.CosineAnnealingDecay(float(lr), T_max=decay_units, eta_min=float(cfg.get("eta_min", 0.0)))\
            if decay_units > 0 else float(lr)
    elif name == "Piecewise":
        if lr is not None:  # PaddleClas: a learning_rate means "x0.1 every 30 epochs"
            decay_epochs = list(range(30, epochs, 30)) or [epochs]
            values = [float(lr) * 0.1 ** i for i in range(len(decay_epochs) + 1)]
        else:
            decay_epochs, values = list(cfg["decay_epochs"]), [float(v) for v in cfg["values"]]
        lr = values[0]
        base = sched.PiecewiseDecay([int(round(e * unit)) for e in decay_epochs], values)
    elif name == "Step":
        base = sched.StepDecay(float(lr), step_size=max(1, int(round(float(cfg["step_size"]) * unit))),
                               gamma=float(cfg.get("gamma", 0.1)))
    elif name == "MultiStepDecay":
        base = sched.MultiStepDecay(float(lr), milestones=[int(round(m * unit)) for m in cfg["milestones"]],
                                    gamma=float(cfg.get("gamma", 0.1)))
    elif name == "Linear":
        base = sched.PolynomialDecay(float(lr), decay_steps=decay_units, end_lr=float(cfg.get("end_lr", 0.0)),
                                     power=float(cfg.get("power", 1.0)), cycle=bool(cfg.get("cycle", False))) \
            if decay_units > 0 else float(lr)
    else:  # Constant / ConstLR
        base = float(lr)
    if warmup_steps > 0:
        scheduler = sched.LinearWarmup(base, warmup_steps=warmup_steps, start_lr=warmup_start, end_lr=float(lr))
    elif isinstance(base, float):
        scheduler = sched.LambdaDecay(base, lambda _: 1.0)
    else:
        scheduler = base
    scheduler.by_epoch = by_epoch
    scheduler.schedule_name = name
    return scheduler


def _name_fragments(value):
    if not value:
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def decay_excluded(model, cfg):
    """Set of parameter names (`param.name`) that get no weight decay: ParamAttr regularizer of 0,
    `no_weight_decay_name` fragments (matched against structured names), 1-D params when
    `one_dim_param_no_weight_decay`."""
    fragments = _name_fragments(cfg.get("no_weight_decay_name"))
    one_dim = bool(cfg.get("one_dim_param_no_weight_decay", False))
    out = set()
    for name, param in model.named_parameters():
        own = getattr(param, "regularizer", None)
        if own is not None and float(getattr(own, "_coeff", getattr(own, "coeff", 1.0))) == 0.0:
            out.add(param.name)
        elif any(f in name for f in fragments) or (one_dim and len(param.shape) == 1):
            out.add(param.name)
    return out


def _decoupled_decay_optimizer(cfg, scheduler, params, grad_clip, excluded, coeff, multi_precision):
    """AdamW or Lamb: weight decay applied by the optimizer itself, `excluded` parameters left out."""
    name, reg = cfg["name"], cfg.get("regularizer")
    common = dict(learning_rate=scheduler, beta1=float(cfg.get("beta1", 0.9)), beta2=float(cfg.get("beta2", 0.999)),
                  epsilon=float(cfg.get("epsilon", 1e-8 if name == "AdamW" else 1e-6)), parameters=params,
                  grad_clip=grad_clip, multi_precision=multi_precision)
    if name == "AdamW":
        return paddle.optimizer.AdamW(weight_decay=coeff, amsgrad=bool(cfg.get("amsgrad", False)),
                                      apply_decay_param_fun=lambda n: n not in excluded, **common)
    coeff = float(cfg.get("lamb_weight_decay", coeff if (reg or cfg.get("weight_decay")) else 0.01))
    return paddle.optimizer.Lamb(lamb_weight_decay=coeff, exclude_from_weight_decay_fn=lambda p: p.name in excluded,
                                 **common)


def build_optimizer(cfg, model, epochs, steps_per_epoch):
    """(optimizer, lr scheduler) for `model`'s trainable parameters from the `Optimizer` section."""
    check_optimizer_config(cfg)
    cfg = dict(cfg)
    name = cfg["name"]
    scheduler = build_lr_scheduler(cfg["lr"], epochs, steps_per_epoch)
    params = [p for p in model.parameters() if not p.stop_gradient]
    if not params:
        raise ConfigError("The model has no trainable parameters (everything is frozen: check Arch.freeze_at)")
    reg = cfg.get("regularizer")
    coeff = float(reg.get("coeff", 0.0)) if reg else float(cfg.get("weight_decay") or 0.0)
    reg_name = str(reg.get("name", "L2")).upper() if reg else "L2"
    if reg and cfg.get("weight_decay") is not None:
        warn_once("regularizer+weight_decay", "Optimizer has both regularizer and weight_decay: weight_decay is "
                                              "ignored (PaddleClas behaviour)")
    grad_clip = paddle.nn.ClipGradByNorm(float(cfg["clip_norm"])) if cfg.get("clip_norm") else None
    excluded = decay_excluded(model, cfg)
    multi_precision = bool(cfg.get("multi_precision", False))
    if name in ("AdamW", "Lamb"):
        return _decoupled_decay_optimizer(cfg, scheduler, params, grad_clip, excluded, coeff, multi_precision), \
            scheduler
    regularizer = (paddle.regularizer.L2Decay(coeff) if reg_name == "L2" else paddle.regularizer.L1Decay(coeff)) \
        if coeff else None
    if regularizer is not None:
        # Exclusions go on the parameters themselves (a parameter's own regularizer wins over the
        # optimizer's): paddle's parameter groups would drop every ParamAttr learning rate
        # (lr_mult_list, LAB's lab_lr) - measured on paddle 3.3.1 for all optimizers.
        zero = paddle.regularizer.L2Decay(0.0)
        for param in params:
            if param.name in excluded and getattr(param, "regularizer", None) is None:
                param.regularizer = zero
    if name == "Momentum":
        optimizer = paddle.optimizer.Momentum(learning_rate=scheduler, momentum=float(cfg.get("momentum", 0.9)),
                                              parameters=params, use_nesterov=bool(cfg.get("use_nesterov", False)),
                                              weight_decay=regularizer, grad_clip=grad_clip,
                                              multi_precision=multi_precision)
    elif name == "SGD":
        optimizer = paddle.optimizer.SGD(learning_rate=scheduler, parameters=params, weight_decay=regularizer,
                                         grad_clip=grad_clip, multi_precision=multi_precision)
    elif name == "Adam":
        optimizer = paddle.optimizer.Adam(learning_rate=scheduler, beta1=float(cfg.get("beta1", 0.9)),
                                          beta2=float(cfg.get("beta2", 0.999)),
                                          epsilon=float(cfg.get("epsilon", 1e-8)), parameters=params,
                                          weight_decay=regularizer, grad_clip=grad_clip,
                                          lazy_mode=bool(cfg.get("lazy_mode", False)),
                                          multi_precision=multi_precision)
    else:  # RMSProp
        optimizer = paddle.optimizer.RMSProp(learning_rate=scheduler, rho=float(cfg.get("rho", 0.95)),
                                             epsilon=float(cfg.get("epsilon", 1e-6)),
                                             momentum=float(cfg.get("momentum", 0.0)),
                                             centered=bool(cfg.get("centered", False)), parameters=params,
                                             weight_decay=regularizer, grad_clip=grad_clip)
    return optimizer, scheduler
