"""PP-LCNet v1 and v2 against the references with shared weights: PaddleClas 2.6.0's PPLCNet_x0_25..x2_5
and PPLCNetV2_small/base/large (keys, shapes, ParamAttr, outputs, fusion), and PaddleDetection 2.6.0's
LCNet feature maps (feature_maps -> out_indices, channels, strides)."""
import copy

import numpy as np
import paddle
import pytest
from conftest import import_reference, randomize_state

import ppbackbone
from ppbackbone.arch.lcnet import LCNET_BLOCKS, LCNET_SCALES
from ppbackbone.arch.lcnetv2 import LCNETV2_CFGS, RepDepthwiseSeparable

TOL = 1e-5
V1 = sorted(LCNET_SCALES)
V2 = sorted(LCNETV2_CFGS)


def pcls_v1():
    return import_reference("ppcls.arch.backbone.legendary_models.pp_lcnet")


def pcls_v2():
    return import_reference("ppcls.arch.backbone.legendary_models.pp_lcnet_v2")


@pytest.fixture(scope="module")
def shared_input():
    return paddle.to_tensor(np.random.RandomState(7).randn(2, 3, 64, 64).astype("float32"))


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _save(model, tmp_path, name="reference.pdparams"):
    path = str(tmp_path / name)
    paddle.save(model.state_dict(), path)
    return path


def _max_diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _assert_close(expected, got, tol=TOL, relative=False):
    """max |expected - got| <= tol, or <= tol * max|expected| when `relative`."""
    expected, got = np.asarray(expected), np.asarray(got)
    scale = float(np.abs(expected).max())
    assert scale > 1e-2, "degenerate outputs would make the comparison void"
    assert _max_diff(expected, got) <= tol * (scale if relative else 1.0)


# ---------------------------------------------------------------------------------------- v1
@pytest.mark.parametrize("key", V1)
def test_v1_matches_paddleclas(key, tmp_path, shared_input):
    ref = randomize_state(getattr(pcls_v1(), f"PPLCNet_{key}")(), seed=21)
    ours = ppbackbone.create_model(f"PPLCNet_{key}")  # the PaddleClas name is an alias
    assert ours.model_name == f"pplcnet_{key}"
    assert _shapes(ours) == _shapes(ref), "state-dict keys or shapes differ from PaddleClas"
    report = ppbackbone.load_weights(ours, _save(ref, tmp_path), verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched or report.head_skipped)
    ref.eval()
    ours.eval()
    _assert_close(ref(shared_input).numpy(), ours(shared_input).numpy())
    assert ppbackbone.count_params(ours) == ppbackbone.count_params(ref) == ppbackbone.model_info(f"pplcnet_{key}").num_params


def test_v1_param_attrs_match_paddleclas():
    lr_mults = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    ref = pcls_v1().PPLCNet_x1_0(lr_mult_list=lr_mults)
    ours = ppbackbone.create_model("pplcnet_x1_0", lr_mult_list=lr_mults)
    _assert_same_param_attrs(ours, ref)


def _assert_same_param_attrs(ours, ref):
    ref_params = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        other = ref_params[name]
        assert param.optimize_attr["learning_rate"] == pytest.approx(other.optimize_attr["learning_rate"]), name
        assert (param.regularizer is None) == (other.regularizer is None), name
        if param.regularizer is not None:
            assert float(param.regularizer._coeff) == float(other.regularizer._coeff), name


def test_v1_stride_list_matches_paddleclas_without_mutating_tables(tmp_path, shared_input):
    """PaddleClas writes stride_list into its module-level NET_CONFIG; ours leaves its table alone."""
    module = pcls_v1()
    table_before = copy.deepcopy(LCNET_BLOCKS)
    strides = [2, 2, 2, 1, 1]
    try:
        ref = randomize_state(module.PPLCNet_x0_5(stride_list=strides), seed=22)
    finally:
        module.PPLCNet_x0_5(stride_list=[2, 2, 2, 2, 2])  # undo PaddleClas's global mutation
    ours = ppbackbone.create_model("pplcnet_x0_5", stride_list=strides)
    ppbackbone.load_weights(ours, _save(ref, tmp_path), verbose=False)
    ref.eval()
    ours.eval()
    _assert_close(ref(shared_input).numpy(), ours(shared_input).numpy())
    assert LCNET_BLOCKS == table_before
    assert [f["stride"] for f in ours.feature_info] == [2, 4, 8, 8, 8]
    features = ppbackbone.create_model("pplcnet_x0_5", stride_list=strides, out_indices=[0, 1, 2, 3, 4])
    features.eval()
    assert [m.shape[2] for m in features(shared_input)] == [32, 16, 8, 8, 8]
    # a default model built afterwards is unaffected
    assert [f["stride"] for f in ppbackbone.create_model("pplcnet_x0_5").feature_info] == [2, 4, 8, 16, 32]


# --------------------------------------------------------------------- v1 features vs PaddleDetection
@pytest.mark.parametrize("key", V1)
def test_v1_features_match_paddledetection(key, tmp_path, shared_input):
    from ppdet.modeling.backbones.lcnet import LCNet
    scale = LCNET_SCALES[key]
    for feature_maps in ([3, 4, 5], [2, 3, 4, 5]):
        ref = randomize_state(LCNet(scale=scale, feature_maps=feature_maps), seed=23)
        ours = ppbackbone.create_model(f"pplcnet_{key}", feature_maps=feature_maps, act="hard_swish")
        assert _shapes(ours) == _shapes(ref), "feature mode must have PaddleDetection's keys exactly"
        report = ppbackbone.load_weights(ours, _save(ref, tmp_path), verbose=False)
        assert not (report.missing or report.unexpected or report.mismatched)
        ref.eval()
        ours.eval()
        expected = ref({"image": shared_input})
        got = ours({"image": shared_input})
        assert len(got) == len(expected) == len(feature_maps)
        for e, g in zip(expected, got):
            _assert_close(e.numpy(), g.numpy())
        assert ours.out_channels == [s.channels for s in ref.out_shape]
        assert ours.out_strides == [2 ** fm for fm in feature_maps]  # what PaddleDetection's out_shape lacks
        assert ours.out_indices == [fm - 1 for fm in feature_maps]


def test_paddledetection_name_lcnet_has_its_defaults(tmp_path, shared_input):
    """`LCNet` (alias of `lcnet`): PaddleDetection's LCNet(scale, feature_maps=[3, 4, 5], act='hard_swish')."""
    from ppdet.modeling.backbones.lcnet import LCNet
    ref = randomize_state(LCNet(scale=0.75), seed=24)
    ours = ppbackbone.create_model("LCNet", scale=0.75)
    assert ours.out_indices == [2, 3, 4] and ours.out_strides == [8, 16, 32]
    assert _shapes(ours) == _shapes(ref)
    ppbackbone.load_weights(ours, _save(ref, tmp_path), verbose=False)
    ref.eval()
    ours.eval()
    for e, g in zip(ref({"image": shared_input}), ours(shared_input)):
        _assert_close(e.numpy(), g.numpy())
    # PaddleClas's current configs name `PPLCNet` with a scale
    assert ppbackbone.count_params(ppbackbone.create_model("PPLCNet", scale=0.75)) == \
        ppbackbone.model_info("pplcnet_x0_75").num_params


# ---------------------------------------------------------------------------------------- v2
def _paddleclas_fuse(model):
    for layer in model.sublayers():
        if type(layer).__name__ == "RepDepthwiseSeparable":
            layer.re_parameterize()


@pytest.mark.parametrize("size", V2)
def test_v2_matches_paddleclas_unfused_and_fused(size, tmp_path, shared_input):
    ref = randomize_state(getattr(pcls_v2(), f"PPLCNetV2_{size}")(), seed=31)
    ours = ppbackbone.create_model(f"PPLCNetV2_{size}")
    ref_shapes, our_shapes = _shapes(ref), _shapes(ours)
    preallocated = sorted(set(ref_shapes) - set(our_shapes))
    assert preallocated and all(k.endswith((".dw_conv.weight", ".dw_conv.bias")) for k in preallocated)
    assert not set(our_shapes) - set(ref_shapes)
    assert all(ref_shapes[k] == s for k, s in our_shapes.items())
    # PaddleClas's count exceeds ours by exactly its pre-allocated (unused until fused) depthwise convs
    extra = sum(int(np.prod(ref_shapes[k])) for k in preallocated)
    assert ppbackbone.count_params(ref) - ppbackbone.count_params(ours) == extra
    assert ppbackbone.count_params(ours) == ppbackbone.model_info(f"pplcnetv2_{size}").num_params

    # randomize_state gave the pre-allocated convs garbage: the filter must drop them, not load them
    report = ppbackbone.load_weights(ours, _save(ref, tmp_path), verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched or report.head_skipped)
    ref.eval()
    ours.eval()
    _assert_close(ref(shared_input).numpy(), ours(shared_input).numpy())

    _paddleclas_fuse(ref)
    ppbackbone.reparameterize(ours)
    assert not ppbackbone.has_unfused_blocks(ours)
    fused_ref = {k: v.numpy() for k, v in ref.state_dict().items()}
    for key, value in ours.state_dict().items():  # our fused model: PaddleClas's fused tensors, branches gone
        assert ".dw_conv_list." not in key
        assert _max_diff(fused_ref[key], value.numpy()) <= 1e-6, key
    # both fused models round differently from their (equal) unfused ones: compare relative to the
    # logits' scale, with the design's deploy bound (observed: <= 6e-6 relative)
    _assert_close(ref(shared_input).numpy(), ours(shared_input).numpy(), tol=1e-4, relative=True)


@pytest.mark.parametrize("act", ["hardswish", "leaky_relu"])
def test_v2_other_activations_match_paddleclas(act, tmp_path, shared_input):
    """PaddleClas keeps ReLU in the plain depthwise convs whatever `act` is; so do we."""
    ref = randomize_state(pcls_v2().PPLCNetV2_small(act=act), seed=33)
    ours = ppbackbone.create_model("pplcnetv2_small", act=act)
    ppbackbone.load_weights(ours, _save(ref, tmp_path), verbose=False)
    ref.eval()
    ours.eval()
    _assert_close(ref(shared_input).numpy(), ours(shared_input).numpy())


def test_v2_param_attrs_match_paddleclas():
    ref = pcls_v2().PPLCNetV2_base()
    ours = ppbackbone.create_model("pplcnetv2_base")
    _assert_same_param_attrs(ours, ref)


def test_v2_checkpoint_state_mismatches_are_refused(tmp_path):
    """Unfused checkpoint into a fused model, fused-only checkpoint into an unfused model: clear errors.
    PaddleClas's fused checkpoint (branches + fused conv) still loads into an unfused model."""
    ref = randomize_state(pcls_v2().PPLCNetV2_small(), seed=32)
    unfused_path = _save(ref, tmp_path, "unfused.pdparams")
    _paddleclas_fuse(ref)
    paddleclas_fused_path = _save(ref, tmp_path, "paddleclas_fused.pdparams")

    fused = ppbackbone.reparameterize(ppbackbone.create_model("pplcnetv2_small"))
    with pytest.raises(ValueError, match="load the weights into the unfused model"):
        ppbackbone.load_weights(fused, unfused_path, verbose=False)

    ours = ppbackbone.create_model("pplcnetv2_small")
    report = ppbackbone.load_weights(ours, paddleclas_fused_path, verbose=False)
    assert not (report.missing or report.unexpected)

    ppbackbone.reparameterize(ours)
    ours_fused_path = ppbackbone.save_weights(ours, str(tmp_path / "ours_fused.pdparams"))
    with pytest.raises(ValueError, match="reparameterize.*before loading"):
        ppbackbone.load_weights(ppbackbone.create_model("pplcnetv2_small"), ours_fused_path, verbose=False)
    again = ppbackbone.reparameterize(ppbackbone.create_model("pplcnetv2_small"))
    report = ppbackbone.load_weights(again, ours_fused_path, verbose=False)
    assert not (report.missing or report.unexpected)


def test_v2_fused_block_is_one_biased_depthwise_conv():
    model = ppbackbone.reparameterize(ppbackbone.create_model("pplcnetv2_small", out_indices=[3]))
    rep_blocks = [m for m in model.sublayers() if isinstance(m, RepDepthwiseSeparable) and m.use_rep]
    assert rep_blocks
    for block in rep_blocks:
        conv = block.dw_conv
        assert isinstance(conv, paddle.nn.Conv2D) and conv.bias is not None
        assert conv._groups == conv._in_channels == conv._out_channels
        assert conv.weight.shape[-1] == block.dw_size
        assert not hasattr(block, "dw_conv_list")
