"""Global.to_static (default True, False on CPU): the model's forward runs as a static graph (paddle.jit.to_static, as
PaddleClas), built before the first step for training and evaluation, so a model that does not convert
trains in dygraph with one notice naming the cause instead of failing mid-run. The loss, optimizer, EMA
and checkpoints stay in dygraph and see the same parameter tensors."""
import paddle

__all__ = ["input_specs", "convert_to_static", "rebuild_static", "is_static"]


def input_specs(config, model):
    """PaddleClas's input spec: [None] + Global.image_shape (any height/width when the config gives none),
    plus an int64 [None] label for margin heads (their forward takes it)."""
    shape = (config.get("Global") or {}).get("image_shape")
    shape = [None] + ([int(v) for v in shape] if shape is not None else [3, None, None])
    specs = [paddle.static.InputSpec(shape, "float32", "x", stop_gradient=True)]
    if getattr(model, "needs_label", False):
        specs.append(paddle.static.InputSpec([None], "int64", "label", stop_gradient=True))
    return specs


def is_static(model):
    return isinstance(getattr(model, "forward", None), paddle.jit.api.StaticFunction)


def _build(model, specs, modes):
    """Trace the static programs of `modes` ('train', 'eval') now; the layer's mode is restored."""
    was_training = model.training
    try:
        for mode in modes:
            model.train() if mode == "train" else model.eval()
            model.forward.concrete_program_specify_input_spec(specs)
    finally:
        model.train() if was_training else model.eval()


def _cause(err):
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = next((line for line in lines if "rror" in line and not line.startswith("raise ")), lines[-1] if lines else "")
    return f"{type(err).__name__}: {text[:240]}"


def convert_to_static(model, specs, modes):
    """(model with a static forward, None), or (the dygraph model, the reason) when paddle cannot convert
    or trace it: the caller trains in dygraph and says why."""
    try:
        paddle.jit.to_static(model, input_spec=specs, full_graph=True)
        _build(model, specs, modes)
        return model, None
    except Exception as err:  # noqa: B902 - any conversion failure means: train in dygraph, say why
        if is_static(model):
            model.forward.rollback()
        return model, _cause(err)


def rebuild_static(model, specs, modes):
    """Trace the programs again (after `on_epoch_begin` changed Python values the graph holds as
    constants, e.g. VanillaNet's act_learn): a stale graph would not compute what dygraph computes."""
    if is_static(model):
        model.forward.rollback()
    return convert_to_static(model, specs, modes)
