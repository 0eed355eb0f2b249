"""The generic suite: every registered model goes through it by being registered.

Forward, backward, features, pinned parameter counts, ParamAttr conventions, freezing, deploy
(Rep) equivalence and `paddle.jit.to_static`, at 64x64 inputs. A family whose full-size default is
too heavy for CI may set `test_args` in its registry entry (stated there).
"""
import functools

import numpy as np
import paddle
import pytest
from conftest import IMAGE_SIZE, randomize_state

import ppbackbone
from ppbackbone.arch.layers import FrozenBatchNorm2D, LearnableAffineBlock

MODELS = ppbackbone.list_models()


@functools.lru_cache(maxsize=None)
def probe(name):
    """A default instance of `name`, for read-only questions (group and stage counts)."""
    return build(name)


def build(name, **kwargs):
    info = ppbackbone.model_info(name)
    args = dict(info.test_args)
    args.update(kwargs)
    if info.default_args.get("out_indices") is None and "out_indices" not in args:
        args.setdefault("num_classes", 10)
    return ppbackbone.create_model(name, **args)


def _as_list(out):
    return out if isinstance(out, list) else [out]


def test_registry_is_populated():
    families = {ppbackbone.model_info(n).family for n in MODELS}
    assert {"hgnetv2", "pphgnet", "pplcnet", "pplcnetv2", "pplcnetv3", "cspresnet", "vanillanet", "swin"} <= families


@pytest.mark.parametrize("name", MODELS)
def test_forward(name, image):
    model = build(name)
    model.eval()
    out = model(image)
    if model.out_indices is None:
        assert list(out.shape) == [2, 10]
    else:
        assert len(out) == len(model.out_indices)
    for tensor in _as_list(out):
        assert np.isfinite(tensor.numpy()).all(), f"{name} gives non-finite outputs"


@pytest.mark.parametrize("name", MODELS)
def test_features_match_feature_info(name, image):
    """All stages as features: channels and strides equal feature_info, strides ascending."""
    n = len(probe(name).feature_info)
    model = build(name, out_indices=list(range(n)))
    model.eval()
    maps = model(image)
    assert len(maps) == n
    strides = [f["stride"] for f in model.feature_info]
    assert strides == sorted(strides)
    for fmap, info, size in zip(maps, model.feature_info, model.feature_sizes(IMAGE_SIZE)):
        assert fmap.shape[1] == info["channels"], info
        assert tuple(fmap.shape[2:]) == size, info
        assert set(info) >= {"channels", "stride", "name"}
    assert model.out_channels == [f["channels"] for f in model.feature_info]
    # feature mode builds no head
    assert not any(model.is_head_key(k) for k in model.state_dict())


# one model per family: the property is the shared forward path's (base.py), not a family's
FAMILY_FIRSTS = sorted({ppbackbone.model_info(n).family: n for n in reversed(MODELS)}.values())


@pytest.mark.parametrize("name", FAMILY_FIRSTS)
def test_feature_mode_stops_after_the_last_requested_stage(name, image):
    model = build(name, out_indices=[0])
    model.eval()
    ran = []
    hooks = [group.register_forward_post_hook(lambda layer, inputs, output, i=i: ran.append(i))
             for i, group in enumerate(model.groups()[1:])]
    outs = model(image)
    for hook in hooks:
        hook.remove()
    assert len(outs) == 1 and outs[0].shape[1] == model.feature_info[0]["channels"]
    assert ran == [0], f"{name} ran stages {ran} for out_indices [0]"


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_trainable_parameter(name, image):
    model = build(name)
    model.train()
    loss = sum(paddle.mean(t * t) for t in _as_list(model(image)))
    loss.backward()
    # parameters the reference keeps but never uses (PaddleOCR's HGNet forms) get no gradient there either
    unused = model.unused_param_prefixes
    trainable = [(k, p) for k, p in model.named_parameters() if not p.stop_gradient and not k.startswith(unused)]
    assert trainable, f"{name} has no trainable parameters"
    assert all(p.grad is None for k, p in model.named_parameters() if unused and k.startswith(unused))
    no_grad = [k for k, p in trainable if p.grad is None]
    assert not no_grad, f"{name}: no gradient for {no_grad[:5]}"
    frozen_with_grad = [k for k, p in model.named_parameters() if p.stop_gradient and p.grad is not None]
    assert not frozen_with_grad


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_pinned(name):
    info = ppbackbone.model_info(name)
    expected = info.test_num_params if info.test_args else info.num_params
    assert expected is not None, f"{name} has no pinned parameter count"
    model = ppbackbone.create_model(name, **info.test_args)
    assert ppbackbone.count_params(model) == expected


@pytest.mark.parametrize("name", MODELS)
def test_param_attr_conventions(name):
    """Conv weights carry their group's lr_mult; BN weight/bias L2Decay(0) + lr_mult; LAB lr_mult*lab_lr."""
    n_groups = len(probe(name).groups())
    lr_mults = [round(0.1 * (i + 1), 2) for i in range(n_groups)]
    model = build(name, lr_mult_list=lr_mults)
    checked = 0
    for lr_mult, group in zip(lr_mults, model.groups()):
        for layer in group.sublayers(include_self=True):
            if isinstance(layer, paddle.nn.BatchNorm2D):
                for param in (layer.weight, layer.bias):
                    reg = param.regularizer
                    # A BN whose reference leaves it to the global weight decay says so (PP-LCNetV3's
                    # identity branch); every other BN needs L2Decay(0.0).
                    if not getattr(layer, "global_weight_decay", False):
                        assert reg is not None and float(reg._coeff) == 0.0, "BN params need L2Decay(0.0)"
                    else:
                        assert reg is None
                    if not isinstance(layer, FrozenBatchNorm2D):
                        assert param.optimize_attr["learning_rate"] == pytest.approx(lr_mult)
                checked += 1
            elif isinstance(layer, paddle.nn.Conv2D):
                assert layer.weight.optimize_attr["learning_rate"] == pytest.approx(lr_mult)
                checked += 1
            elif isinstance(layer, LearnableAffineBlock):
                expected = lr_mult * layer.lab_lr
                assert layer.scale.optimize_attr["learning_rate"] == pytest.approx(expected)
                assert layer.bias.optimize_attr["learning_rate"] == pytest.approx(expected)
    assert checked > 0


@pytest.mark.parametrize("name", MODELS)
def test_lr_mult_list_of_wrong_length_is_refused(name):
    n = len(probe(name).groups())
    with pytest.raises(ValueError, match=f"lr_mult_list has {n - 1} entries"):
        build(name, lr_mult_list=[1.0] * (n - 1))


@pytest.mark.parametrize("name", MODELS)
def test_out_indices_out_of_range_is_refused(name):
    n = len(probe(name).feature_info)
    with pytest.raises(ValueError, match="out_indices"):
        build(name, out_indices=[n])


@pytest.mark.parametrize("name", MODELS)
def test_freezing_survives_train_mode(name, image):
    model = build(name, freeze_at=0, freeze_stem_only=False, freeze_norm=True)
    state_keys = set(probe(name).state_dict())
    assert set(model.state_dict()) == state_keys, "freeze_norm must keep parameter names"
    model.train()
    stem, first_stage = model.groups()[:2]
    for layer in (stem, first_stage):
        assert all(p.stop_gradient for p in layer.parameters())
        assert not any(sub.training for sub in layer.sublayers(include_self=True))
    assert all(not isinstance(m, paddle.nn.BatchNorm2D) or isinstance(m, FrozenBatchNorm2D)
               for m in model.sublayers())
    # frozen BN uses global statistics even in train mode: outputs equal eval mode's
    out_train = [t.numpy() for t in _as_list(model(image))]
    model.eval()
    out_eval = [t.numpy() for t in _as_list(model(image))]
    if model.out_indices is not None or getattr(model, "dropout", None) is None:
        for a, b in zip(out_train, out_eval):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_deploy_equivalence(name, image):
    """Fused (reparameterize) and unfused eval outputs agree; no Rep block stays unfused."""
    model = build(name)
    model.eval()
    before = [t.numpy() for t in _as_list(model(image))]
    ppbackbone.reparameterize(model)
    assert not ppbackbone.has_unfused_blocks(model)
    ppbackbone.reparameterize(model)  # idempotent
    after = [t.numpy() for t in _as_list(model(image))]
    for a, b in zip(before, after):
        scale = max(1.0, float(np.abs(a).max()))
        assert float(np.abs(a - b).max()) <= 1e-4 * scale


def _rep_layers(model):
    return [layer for layer in model.sublayers(include_self=True) if hasattr(layer, "rep")]


@pytest.mark.parametrize("name", MODELS)
def test_paddleocr_exporter_walk_equals_reparameterize(name, image):
    """PaddleOCR's exporter: `rep()` on every sublayer that has it and `not layer.is_repped` (read
    without a default). Every layer with a fusion hook answers both, and the walk fuses exactly as
    `reparameterize` does (same state-dict keys, same outputs)."""
    walked = build(name)
    hooked = [type(layer).__name__ for layer in walked.sublayers(include_self=True)
              if callable(getattr(layer, "convert_to_deploy", None)) or callable(getattr(layer, "re_parameterize", None))]
    reps = _rep_layers(walked)
    assert len(reps) == len(hooked), f"{name}: layers with a fusion hook but no rep(): {hooked}"
    if not reps:
        return
    assert not any(layer.is_repped for layer in reps)
    randomize_state(walked, seed=5)
    fused = build(name)
    fused.set_state_dict(walked.state_dict())
    for model in (walked, fused):
        model.eval()
    holder = paddle.nn.LayerDict({"backbone": walked})  # PaddleOCR walks its whole model, the backbone below it
    for layer in holder.sublayers():
        if hasattr(layer, "rep") and not getattr(layer, "is_repped"):
            layer.rep()
    ppbackbone.reparameterize(fused)
    assert all(layer.is_repped for layer in _rep_layers(walked))
    assert not ppbackbone.has_unfused_blocks(walked)
    assert list(walked.state_dict()) == list(fused.state_dict())
    # fused vs unfused is test_deploy_equivalence's; here the two fusion paths must agree exactly
    for a, b in zip(_as_list(walked(image)), _as_list(fused(image))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_to_static_matches_dygraph(name, image):
    model = build(name)
    model.eval()
    ppbackbone.reparameterize(model)
    expected = [t.numpy() for t in _as_list(model(image))]
    spec = [paddle.static.InputSpec([None, 3, IMAGE_SIZE, IMAGE_SIZE], "float32", "x")]
    static_model = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    got = [t.numpy() for t in _as_list(static_model(image))]
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
