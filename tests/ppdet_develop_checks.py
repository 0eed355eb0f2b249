"""Checks against a PaddleDetection develop checkout, run as a PaddleDetection-side script through
tools/ppdet_run.py (so the checkout's `ppdet` is the one imported, in its own process):

    python tools/ppdet_run.py --ppdet-root $PADDLEDET_HOME tests/ppdet_develop_checks.py native \
        configs/rtdetr/rtdetr_hgnetv2_l_6x_coco.yml PPHGNetV2 [--forward]
    python tools/ppdet_run.py --ppdet-root $PADDLEDET_HOME tests/ppdet_develop_checks.py build <config.yml>

`native`: the checkout's own config vs. the same config with only the backbone line and section swapped
(`backbone: PPBackbone`, `PPBackbone: {model: <Native>, <the native keys unchanged>}`): identical
state-dict keys in order, shapes, per-parameter learning rate, regularizer, trainability and frozen norms;
with --forward also equal eval boxes and train losses with shared (randomized) weights.
`build`: a config builds and its eval forward gives finite boxes.
`export <config> <weights> <export dir> <image>`: Paddle Inference reloads PaddleDetection's export and gives
the dygraph detector's boxes (reports which CPU settings work).
Each prints one `OK ...` line and exits 0, or fails with an AssertionError saying what differs.
Used by tests/test_ppdet_develop.py (skipped unless PADDLEDET_HOME is set).
"""
import os
import sys
import tempfile

import numpy as np
import paddle
import yaml

EVAL_SIZE = 320  # RT-DETR precomputes position embeddings for eval_size; it must equal the input size


def swap_backbone(text, native):
    """The config text with `backbone: <native>` -> `backbone: PPBackbone` and the `<native>:` section
    renamed `PPBackbone:` with `model: <native>` as its first key: what a user pastes."""
    lines, out, swapped = text.splitlines(), [], 0
    for line in lines:
        if line.strip() == f"backbone: {native}" and line.startswith(" "):
            out.append(line.replace(f"backbone: {native}", "backbone: PPBackbone"))
            swapped += 1
        elif line.rstrip() == f"{native}:":
            out += ["PPBackbone:", f"  model: {native}"]
            swapped += 1
        else:
            out.append(line)
    assert swapped == 2, f"expected one `backbone: {native}` line and one `{native}:` section, swapped {swapped}"
    return "\n".join(out) + "\n"


def absolute_bases(text, config_path):
    """Config text with its relative _BASE_ entries made absolute (so it can be written elsewhere)."""
    from ppbackbone.ppdet.config import _without_base_block
    cfg = yaml.load(text, Loader=yaml.Loader)
    bases = [b if os.path.isabs(b) else os.path.normpath(os.path.join(os.path.dirname(config_path), b))
             for b in cfg.get("_BASE_", [])]
    body = "\n".join(_without_base_block(text.splitlines()))
    return ("_BASE_: " + yaml.safe_dump(bases, default_flow_style=True, width=10000).strip() + "\n" + body
            if bases else body)


def fresh_config(path, eval_size=EVAL_SIZE):
    """Load `path` alone (nothing merged from earlier loads), with eval_size set unless it is None."""
    from ppbackbone.ppdet import load_config
    cfg = load_config(path, fresh=True)
    if eval_size:
        cfg["eval_size"] = [eval_size, eval_size]
    return cfg


def build(path, eval_size=EVAL_SIZE):
    from ppdet.core.workspace import create
    cfg = fresh_config(path, eval_size)
    paddle.seed(0)
    return create(cfg.architecture)


def describe(model):
    """Per state-dict entry: (key, shape, learning rate, regularizer, stop_gradient, trainable)."""
    params = dict(model.named_parameters())
    rows = []
    for key, tensor in model.state_dict().items():
        p = params.get(key)
        lr = p.optimize_attr["learning_rate"] if p is not None else None
        reg = None if p is None or p.regularizer is None else (type(p.regularizer).__name__,
                                                               float(p.regularizer._coeff))
        rows.append((key, tuple(tensor.shape), lr, reg, bool(tensor.stop_gradient),
                     None if p is None else bool(p.trainable)))
    return rows


def global_stats(model):
    return [(n, bool(getattr(m, "_use_global_stats", False))) for n, m in model.named_sublayers()
            if isinstance(m, paddle.nn.BatchNorm2D)]


def randomize(model, seed=3):
    rng = np.random.RandomState(seed)
    with paddle.no_grad():
        for key, t in model.state_dict().items():
            shape = tuple(t.shape)
            if key.endswith("_variance"):
                v = rng.uniform(0.5, 1.5, shape)
            elif len(shape) <= 1:
                v = rng.uniform(0.5, 1.5, shape) if key.endswith(("weight", "scale")) else rng.normal(0, .1, shape)
            else:
                v = rng.normal(0, (2.0 / max(1, int(np.prod(shape[1:])))) ** 0.5, shape)
            t.set_value(v.astype(t.numpy().dtype))


def inputs(size=EVAL_SIZE, train=False):
    rng = np.random.RandomState(0)
    data = {"image": paddle.to_tensor(rng.rand(1, 3, size, size).astype("float32")),
            "im_shape": paddle.to_tensor([[size, size]], dtype="float32"),
            "scale_factor": paddle.to_tensor([[1.0, 1.0]], dtype="float32")}
    if train:
        data.update({"gt_class": [paddle.to_tensor([[1], [3]], dtype="int32")],
                     "gt_bbox": [paddle.to_tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4]], dtype="float32")],
                     "gt_segm": [paddle.zeros([2, size, size])], "epoch_id": 0})
    return data


def check_native(config, native, forward):
    from ppbackbone.arch.base import Backbone
    config = os.path.abspath(config)
    text = open(config, encoding="utf-8").read()
    tmp = tempfile.mkdtemp(prefix="ppb-native-")
    swapped = os.path.join(tmp, os.path.basename(config))
    with open(swapped, "w", encoding="utf-8") as f:
        f.write(absolute_bases(swap_backbone(text, native), config))
    ref = build(config)
    ours = build(swapped)
    assert type(ref.backbone).__name__ == native and not isinstance(ref.backbone, Backbone)
    assert isinstance(ours.backbone, Backbone), type(ours.backbone)
    a, b = describe(ref), describe(ours)
    assert [r[0] for r in a] == [r[0] for r in b], "state-dict keys or their order differ: " + str(
        sorted(set(r[0] for r in a) ^ set(r[0] for r in b))[:10])
    diff = [(x, y) for x, y in zip(a, b) if x != y]
    assert not diff, f"{len(diff)} entries differ (key, shape, lr, regularizer, stop_gradient, trainable): {diff[:5]}"
    assert global_stats(ref.backbone) == global_stats(ours.backbone), "frozen norms differ"
    assert [tuple(s)[:1] + (s.stride,) for s in ref.backbone.out_shape] == \
        [tuple(s)[:1] + (s.stride,) for s in ours.backbone.out_shape], "out_shape differs"
    summary = f"{len(a)} keys"
    if forward:
        randomize(ref)
        ours.set_state_dict(ref.state_dict())
        ref.eval(), ours.eval()
        with paddle.no_grad():
            ra, rb = ref(inputs()), ours(inputs())
        np.testing.assert_allclose(ra["bbox"].numpy(), rb["bbox"].numpy(), rtol=1e-4, atol=1e-3)
        ref.train(), ours.train()
        losses = []
        for model in (ref, ours):
            paddle.seed(7)
            np.random.seed(7)
            losses.append(model(inputs(train=True)))
        la, lb = float(losses[0]["loss"]), float(losses[1]["loss"])
        assert np.isfinite(la) and abs(la - lb) <= 1e-4 * max(1.0, abs(la)), f"train loss {la} != {lb}"
        summary += f", eval boxes equal ({ra['bbox'].shape[0]} boxes), train loss {la:.6f} = {lb:.6f}"
    print(f"OK native {os.path.basename(config)} {native}: {summary}")


def check_build(config):
    import ppdet
    from ppbackbone.ppdet.config import resolve_config
    root = os.path.dirname(os.path.dirname(os.path.abspath(ppdet.__file__)))
    model = build(resolve_config(config, root, tempfile.mkdtemp(prefix="ppb-build-")))
    model.eval()
    with paddle.no_grad():
        out = model(inputs())
    boxes = out["bbox"].numpy()
    assert boxes.ndim == 2 and boxes.shape[1] == 6 and np.isfinite(boxes).all(), boxes.shape
    print(f"OK build {os.path.basename(config)}: {type(model).__name__}, backbone "
          f"{getattr(model.backbone, 'model_name', type(model.backbone).__name__)}, {boxes.shape[0]} finite boxes")


def _demo_input(config_path, image_path):
    """The detector's inputs for one image, made by the config's own TestReader sample transforms."""
    from ppdet.core.workspace import global_config
    from ppdet.data.transform import operators
    sample = {"im_file": image_path}
    for op in global_config["TestReader"]["sample_transforms"]:
        (name, kwargs), = op.items()
        sample = getattr(operators, name)(**(kwargs or {}))(sample)
    return {"image": sample["image"][None].astype("float32"),
            "im_shape": np.array([sample["im_shape"]], dtype="float32"),
            "scale_factor": np.array([sample["scale_factor"]], dtype="float32")}


# Paddle Inference CPU settings tried in order (Paddle 3.3.1: oneDNN is on by default and fails on RT-DETR
# exports; enable_memory_optim(), which PaddleDetection's deploy/python/infer.py sets, fails too).
INFERENCE_SETTINGS = [
    dict(name="oneDNN on (Paddle's CPU default)", mkldnn=True, ir_optim=True, memory_optim=False),
    dict(name="oneDNN off + enable_memory_optim() (deploy/python/infer.py)", mkldnn=False, ir_optim=True,
         memory_optim=True),
    dict(name="oneDNN off, IR optimization on", mkldnn=False, ir_optim=True, memory_optim=False),
    dict(name="oneDNN off, IR optimization off", mkldnn=False, ir_optim=False, memory_optim=False),
]


def _predict(model_dir, inputs, mkldnn, ir_optim, memory_optim):
    from paddle import inference
    prefix = os.path.join(model_dir, "model")
    program = prefix + (".json" if os.path.isfile(prefix + ".json") else ".pdmodel")
    config = inference.Config(program, prefix + ".pdiparams")
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(2)
    if mkldnn:
        config.enable_mkldnn()
    else:
        config.disable_mkldnn()
    config.switch_ir_optim(ir_optim)
    if memory_optim:
        config.enable_memory_optim()
    predictor = inference.create_predictor(config)
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(inputs[name])
    predictor.run()
    return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]


def check_export(config, weights, model_dir, image):
    """The exported model (PaddleDetection's export_model.py output) reloaded by Paddle Inference gives the
    dygraph detector's boxes; reports every INFERENCE_SETTINGS entry and asserts that one works."""
    from ppdet.utils.checkpoint import load_weight
    model = build(config, eval_size=None)  # the config's own eval_size: the one the export was made for
    load_weight(model, weights)
    model.eval()
    inputs = _demo_input(config, image)
    with paddle.no_grad():
        ref = model({k: paddle.to_tensor(v) for k, v in inputs.items()})["bbox"].numpy()
    working = []
    for setting in INFERENCE_SETTINGS:
        try:
            out = _predict(model_dir, inputs, setting["mkldnn"], setting["ir_optim"], setting["memory_optim"])[0]
        except Exception as err:  # report and try the next setting
            first = next(line for line in str(err).strip().splitlines() + ["?"] if line.strip())
            print(f"  {setting['name']}: fails: {first.strip()[:160]}")
            continue
        diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
        print(f"  {setting['name']}: boxes {out.shape}, max |inference - dygraph| {diff:.2e}")
        if diff <= 1e-3 * max(1.0, float(np.abs(ref).max())):
            working.append(setting["name"])
    assert working, "no Paddle Inference setting reproduced the dygraph detector"
    print(f"OK export {os.path.basename(model_dir)}: equals dygraph with {'; '.join(working)} "
          f"({ref.shape[0]} boxes, top score {ref[:, 1].max():.3f})")


def main(argv):
    paddle.set_device("cpu")
    if argv[0] == "native":
        check_native(argv[1], argv[2], "--forward" in argv)
    elif argv[0] == "build":
        check_build(argv[1])
    elif argv[0] == "export":
        check_export(*argv[1:5])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
