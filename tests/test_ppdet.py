"""PaddleDetection integration: ppbackbone models as the backbone of real PaddleDetection
(paddledet 2.6.0) detectors built from YAML through its workspace."""
import os

import numpy as np
import paddle
import pytest
from conftest import randomize_state

import ppbackbone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PPYOLOE_HGNET = os.path.join(ROOT, "configs", "ppdet", "ppyoloe_hgnetv2_l.yml")


def _build(config_path):
    from ppbackbone.ppdet import load_config  # registers PPBackbone
    from ppdet.core.workspace import create
    cfg = load_config(config_path, fresh=True)  # nothing inherited from configs loaded by earlier tests
    return create(cfg.architecture)


def _describe(model):
    """Per state-dict entry: key, shape, learning rate, regularizer coefficient, stop_gradient, trainable."""
    params = dict(model.named_parameters())
    rows = []
    for key, tensor in model.state_dict().items():
        p = params.get(key)
        if p is None:  # BN statistics
            rows.append((key, tuple(tensor.shape), bool(tensor.stop_gradient)))
            continue
        reg = None if p.regularizer is None else float(p.regularizer._coeff)
        rows.append((key, tuple(tensor.shape), p.optimize_attr["learning_rate"], reg, bool(p.stop_gradient),
                     bool(p.trainable)))
    return rows


def _inputs(size=128):
    rng = np.random.RandomState(0)
    return {"image": paddle.to_tensor(rng.rand(1, 3, size, size).astype("float32")),
            "im_shape": paddle.to_tensor([[size, size]], dtype="float32"),
            "scale_factor": paddle.to_tensor([[1.0, 1.0]], dtype="float32")}


@pytest.fixture(scope="module")
def ppyoloe():
    return _build(PPYOLOE_HGNET)


def test_backbone_is_the_ppbackbone_model_with_reference_names(ppyoloe):
    assert isinstance(ppyoloe.backbone, ppbackbone.arch.hgnet.PPHGNetV2)
    keys = [k for k in ppyoloe.state_dict() if k.startswith("backbone.")]
    assert "backbone.stages.3.blocks.0.aggregation_excitation_conv.bn._variance" in keys
    assert [s.stride for s in ppyoloe.backbone.out_shape] == [8, 16, 32]
    assert [s.channels for s in ppyoloe.backbone.out_shape] == [512, 1024, 2048]


def test_eval_forward_gives_detections(ppyoloe):
    ppyoloe.eval()
    out = ppyoloe(_inputs())
    assert set(out) >= {"bbox", "bbox_num"} and out["bbox"].shape[-1] == 6


def test_train_loss_reaches_trainable_backbone_parameters(ppyoloe):
    ppyoloe.train()
    inputs = _inputs()
    inputs.update({"gt_class": paddle.to_tensor([[[1], [3]]], dtype="int64"),
                   "gt_bbox": paddle.to_tensor([[[10.0, 10.0, 60.0, 60.0], [50.0, 40.0, 120.0, 100.0]]]),
                   "pad_gt_mask": paddle.ones([1, 2, 1]), "epoch_id": 0})
    losses = ppyoloe(inputs)
    assert np.isfinite(float(losses["loss"]))
    losses["loss"].backward()
    backbone = ppyoloe.backbone
    assert backbone.stages[1].blocks[0].aggregation_squeeze_conv.conv.weight.grad is not None
    assert backbone.stem.stem1.conv.weight.grad is None  # freeze_at: 0, stem only


def test_detector_checkpoint_loads_into_a_standalone_backbone(ppyoloe, tmp_path):
    randomize_state(ppyoloe.backbone, seed=5)
    path = str(tmp_path / "ppyoloe.pdparams")
    paddle.save(ppyoloe.state_dict(), path)
    backbone = ppbackbone.create_model("hgnetv2_l")
    report = ppbackbone.load_weights(backbone, path)
    assert not report.missing and not report.unexpected and report.ignored_prefix > 0
    np.testing.assert_array_equal(backbone.stages[2].downsample.conv.weight.numpy(),
                                  ppyoloe.backbone.stages[2].downsample.conv.weight.numpy())


def test_classifier_name_without_return_idx_is_refused():
    from ppbackbone.ppdet import PPBackbone
    with pytest.raises(ValueError, match="set return_idx"):
        PPBackbone(model="hgnetv2_b0")


PPYOLOE_CSP = os.path.join(ROOT, "configs", "ppdet", "ppyoloe_plus_cspresnet_s.yml")


NATIVE_CSP = "CSPResNet:\n  layers: [3, 6, 6, 3]\n  channels: [64, 128, 256, 512, 1024]\n  return_idx: [1, 2, 3]\n" \
             "  use_large_stem: True\n  use_alpha: True\n"


@pytest.mark.parametrize("section", ["ppbackbone_name", "native_section"])
def test_ppyoloe_plus_s_equals_paddledetections_native_model(tmp_path, section):
    """PP-YOLOE+-s with PPBackbone is key for key PaddleDetection's native model (same order, shapes,
    learning rates, regularizers, trainability), whether the section names `cspresnet_s` or pastes the
    native `CSPResNet` section under `model: CSPResNet` (its width/depth then come from the config's
    shared width_mult/depth_mult, as in PaddleDetection); the native weights load and the neck outputs
    are equal."""
    text = open(PPYOLOE_CSP, encoding="utf-8").read()
    native_path = tmp_path / "native.yml"
    native_path.write_text(text.replace("backbone: PPBackbone", "backbone: CSPResNet").replace(
        "PPBackbone:\n  model: cspresnet_s\n  return_idx: [1, 2, 3]\n", NATIVE_CSP))
    ours_path = PPYOLOE_CSP
    if section == "native_section":
        ours_path = tmp_path / "ours.yml"
        ours_path.write_text(text.replace("PPBackbone:\n  model: cspresnet_s\n  return_idx: [1, 2, 3]\n",
                                          NATIVE_CSP.replace("CSPResNet:\n", "PPBackbone:\n  model: CSPResNet\n")))
    native = randomize_state(_build(str(native_path)), seed=9)
    ours = _build(str(ours_path))
    assert type(native.backbone).__module__.startswith("ppdet")
    assert isinstance(ours.backbone, ppbackbone.arch.cspresnet.CSPResNet)
    assert _describe(native) == _describe(ours)
    ours.set_state_dict(native.state_dict())
    native.eval()
    ours.eval()
    image = _inputs()["image"]
    for a, b in zip(native.neck(native.backbone({"image": image})), ours.neck(ours.backbone({"image": image}))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args", [dict(scale=0.75, feature_maps=[3, 4, 5]),
                                  dict(scale=0.35, feature_maps=[2, 3, 4, 5], act="relu6")])
def test_native_lcnet_section_equals_paddledetections_lcnet(args):
    """`PPBackbone: {model: LCNet, <LCNet's keys>}` (PicoDet's backbone) is PaddleDetection's LCNet:
    same keys, shapes, learning rates, regularizers, trainability, out_shape channels and outputs."""
    from ppbackbone.ppdet import PPBackbone
    from ppdet.modeling.backbones.lcnet import LCNet
    paddle.seed(0)
    native = randomize_state(LCNet(**args), seed=4)
    ours = PPBackbone(model="LCNet", **args)
    assert _describe(native) == _describe(ours)
    assert [s.channels for s in native.out_shape] == [s.channels for s in ours.out_shape]
    ours.set_state_dict(native.state_dict())
    native.eval()
    ours.eval()
    image = _inputs(64)["image"]
    for a, b in zip(native({"image": image}), ours({"image": image})):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
