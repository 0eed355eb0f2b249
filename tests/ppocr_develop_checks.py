"""Checks against a PaddleOCR checkout, run as a PaddleOCR-side script through tools/ppocr_run.py (so the
checkout's `ppocr` is the one imported, in its own process):

    python tools/ppocr_run.py --ppocr-root $PADDLEOCR_HOME tests/ppocr_develop_checks.py native \
        configs/det/PP-OCRv5/PP-OCRv5_mobile_det.yml
    python tools/ppocr_run.py --ppocr-root $PADDLEOCR_HOME tests/ppocr_develop_checks.py build configs/ppocr/x.yml

`native`: the checkout's own config vs. the same config with the Backbone section under PPBackbone (`name` moved
to `model`), both built by PaddleOCR's build_model: identical state-dict entries in order (keys, shapes), per
parameter learning rate, regularizer, stop_gradient and trainable, for the whole model (backbone, neck, head);
then, with the native model's (randomized) weights loaded into ours, equal outputs in eval and train mode.
`build`: a config builds through PaddleOCR's build_model and its eval forward gives finite outputs.
Each prints one `OK ...` line and exits 0, or fails with an AssertionError saying what differs.
Used by tests/test_ppocr_develop.py (skipped unless PADDLEOCR_HOME is set).
"""
import copy
import os
import sys

import numpy as np
import paddle
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    from ppbackbone.ppocr.config import resolve_config
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["ppocr"].__file__)))
    resolved, _ = resolve_config(path, checkout, os.path.join(os.environ.get("TMPDIR", "/tmp"), "ppocr-checks"))
    with open(resolved, encoding="utf-8") as f:
        return yaml.safe_load(f)


def architecture(cfg):
    """cfg's Architecture with the rec heads sized by its dictionary, as PaddleOCR's train/export do."""
    from ppocr.postprocess import build_post_process
    arch = copy.deepcopy(cfg["Architecture"])
    post = build_post_process(cfg["PostProcess"], cfg["Global"])
    if hasattr(post, "character"):
        n = len(post.character)
        if arch["Head"]["name"] == "MultiHead":
            arch["Head"]["out_channels_list"] = {"CTCLabelDecode": n, "SARLabelDecode": n + 2,
                                                 "NRTRLabelDecode": n + 3}
        else:
            arch["Head"]["out_channels"] = n
    return arch


def build(arch):
    from ppocr.modeling.architectures import build_model
    paddle.seed(0)
    return build_model(copy.deepcopy(arch))


def describe(model):
    params = dict(model.named_parameters())
    rows = []
    for key, tensor in model.state_dict().items():
        p = params.get(key)
        if p is None or key.endswith(("._mean", "._variance")):
            rows.append((key, tuple(tensor.shape), bool(tensor.stop_gradient)))
            continue
        reg = None if p.regularizer is None else float(p.regularizer._coeff)
        rows.append((key, tuple(tensor.shape), float(p.optimize_attr["learning_rate"]), reg, bool(p.stop_gradient),
                     bool(p.trainable)))
    return rows


def randomize(model, seed=3):
    rng = np.random.RandomState(seed)
    state = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if "int" in str(tensor.dtype):
            continue
        value = rng.uniform(0.5, 1.5, shape) if key.endswith("_variance") else rng.normal(0, 0.2, shape)
        state[key] = paddle.to_tensor(value.astype("float32"))
    model.set_state_dict(state)
    return model


def image(model_type, seed=0):
    shape = [2, 3, 48, 160] if model_type == "rec" else [1, 3, 96, 96]
    return paddle.to_tensor(np.random.RandomState(seed).rand(*shape).astype("float32"))


def outputs(out):
    """The output tensors of a PaddleOCR model's forward (dicts and lists flattened in key order)."""
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in outputs(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in outputs(o)]
    return [out] if isinstance(out, paddle.Tensor) else []


def check_native(config):
    cfg = load(config)
    native_arch = architecture(cfg)
    ours_arch = copy.deepcopy(native_arch)
    section = ours_arch["Backbone"]
    ours_arch["Backbone"] = dict(name="PPBackbone", model=section.pop("name"), **section)
    native, ours = build(native_arch), build(ours_arch)
    assert type(native.backbone).__module__.startswith("ppocr."), type(native.backbone)
    assert type(ours.backbone).__module__.startswith("ppbackbone."), type(ours.backbone)
    a, b = describe(native), describe(ours)
    assert len(a) == len(b), f"{len(a)} entries (PaddleOCR) vs {len(b)} (PPBackbone)"
    for x, y in zip(a, b):
        assert x == y, f"PaddleOCR {x} vs PPBackbone {y}"
    assert native.backbone.out_channels == ours.backbone.out_channels
    randomize(native)
    ours.set_state_dict(native.state_dict())
    diffs = []
    for mode in ("eval", "train"):
        getattr(native, mode)()
        getattr(ours, mode)()
        x = image(native_arch["model_type"])
        with paddle.no_grad():
            for p, q in zip(outputs(native.backbone(x)), outputs(ours.backbone(x))):
                scale = float(paddle.abs(p).max()) or 1.0
                diffs.append(float(paddle.abs(p - q).max()) / scale)
                np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-4, atol=1e-4 * scale,
                                           err_msg=f"{mode} backbone output")
            if mode == "eval":
                for p, q in zip(outputs(native(x)), outputs(ours(x))):
                    np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-4, atol=1e-5, err_msg="eval model output")
    print(f"OK native {config}: {len(a)} entries equal, backbone {type(ours.backbone).__name__}, "
          f"max relative output diff {max(diffs):.2e}")


def check_build(config):
    cfg = load(config)
    arch = architecture(cfg)
    model = build(arch)
    model.eval()
    with paddle.no_grad():
        outs = outputs(model(image(arch["model_type"])))
    assert outs and all(bool(paddle.isfinite(o).all()) for o in outs), "non-finite output"
    n = sum(int(np.prod(p.shape)) for p in model.backbone.parameters())
    print(f"OK build {config}: backbone {getattr(model.backbone, 'model_name', type(model.backbone).__name__)} "
          f"({n} parameters), out_channels {model.backbone.out_channels}")


def main(argv):
    paddle.set_device("cpu")
    what, config = argv[0], argv[1]
    {"native": check_native, "build": check_build}[what](config)


if __name__ == "__main__":
    main(sys.argv[1:])
