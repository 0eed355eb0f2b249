"""RecModel and its gears against PaddleClas 2.6.0's (same keys, same outputs with shared weights),
PP-ShiTuV2's backbone variant, and the PKSampler / RASampler."""
import copy

import numpy as np
import paddle
import pytest
from conftest import import_reference, randomize_state

from ppbackbone.arch.recognition import ArcMargin, CosMargin, RecModel
from ppbackbone.data.samplers import PKSampler, RASampler, SamplerError
from ppbackbone.weights.io import load_weights

SHITU = {"Backbone": {"name": "PPLCNetV2_base_ShiTu", "class_expand": 64},
         "BackboneStopLayer": {"name": "flatten"},
         "Neck": {"name": "BNNeck", "num_features": 64,
                  "weight_attr": {"initializer": {"name": "Constant", "value": 1.0}},
                  "bias_attr": {"initializer": {"name": "Constant", "value": 0.0}, "learning_rate": 1.0e-20}},
         "Head": {"name": "FC", "embedding_size": 64, "class_num": 20,
                  "weight_attr": {"initializer": {"name": "Normal", "std": 0.001}}, "bias_attr": False}}


def _reference_rec(cfg):
    arch = import_reference("ppcls.arch")
    ref_cfg = copy.deepcopy(cfg)
    ref_cfg["Backbone"]["pretrained"] = False
    return arch.RecModel(**ref_cfg)


def test_shitu_recmodel_matches_paddleclas(tmp_path):
    ref = randomize_state(_reference_rec(SHITU), seed=5)
    ours = RecModel(**copy.deepcopy(SHITU))
    ref_keys = {k: tuple(v.shape) for k, v in ref.state_dict().items() if not k.endswith((".dw_conv.weight", ".dw_conv.bias"))}
    assert ref_keys == {k: tuple(v.shape) for k, v in ours.state_dict().items()}  # PaddleClas names
    path = str(tmp_path / "ref.pdparams")
    paddle.save(ref.state_dict(), path)
    report = load_weights(ours, path)
    assert not report.missing and not report.unexpected
    ref.eval(), ours.eval()
    x = paddle.to_tensor(np.random.RandomState(0).randn(2, 3, 64, 64).astype("float32"))
    expected, got = ref(x), ours(x)
    assert sorted(got) == sorted(expected) == ["backbone", "features", "logits", "neck"]
    for key in expected:
        scale = float(np.abs(expected[key].numpy()).max())
        assert scale > 1e-2
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), atol=1e-5 * scale)
    # the ShiTu variant: stage 4 at stride 1 (output stride 16), no activation after a biased last_conv
    assert ours.backbone.feature_info[-1]["stride"] == 16 and ours.backbone.last_conv.bias is not None
    bias = ours.neck.feat_bn.bias
    assert bias.optimize_attr["learning_rate"] == pytest.approx(1e-20)


@pytest.mark.parametrize("head", ["ArcMargin", "CosMargin"])
def test_margin_heads_match_paddleclas(head):
    gears = import_reference("ppcls.arch.gears")
    ref = getattr(gears, head)(embedding_size=8, class_num=5)
    ours = {"ArcMargin": ArcMargin, "CosMargin": CosMargin}[head](embedding_size=8, class_num=5)
    ours.weight.set_value(ref.weight.numpy())
    x = paddle.to_tensor(np.random.RandomState(1).randn(6, 8).astype("float32"))
    label = paddle.to_tensor(np.array([[0], [1], [2], [3], [4], [0]], dtype="int64"))
    for mode in ("train", "eval"):
        getattr(ref, mode)(), getattr(ours, mode)()
        np.testing.assert_allclose(ours(x, label).numpy(), ref(x, label).numpy(), rtol=1e-5, atol=1e-5)


def test_recmodel_config_errors_name_the_key():
    with pytest.raises(ValueError, match="Arch.Neck.num_features=512.*gives 64"):
        RecModel(Backbone={"name": "pplcnetv2_small", "class_expand": 64}, BackboneStopLayer={"name": "flatten"},
                 Neck={"name": "BNNeck", "num_features": 512})
    with pytest.raises(ValueError, match="Arch.Head.embedding_size=32.*64"):
        RecModel(Backbone={"name": "pplcnetv2_small", "class_expand": 64}, BackboneStopLayer={"name": "flatten"},
                 Head={"name": "FC", "embedding_size": 32, "class_num": 3})
    with pytest.raises(ValueError, match="Arch.Neck.name='Tanh'"):
        RecModel(Backbone={"name": "pplcnetv2_small"}, Neck={"name": "Tanh"})
    with pytest.raises(ValueError, match="Arch.Backbone must be a mapping"):
        RecModel(Neck={"name": "BNNeck", "num_features": 8})
    with pytest.raises(ValueError, match="BackboneStopLayer.name='avg_pool'"):
        RecModel(Backbone={"name": "pplcnetv2_small"}, BackboneStopLayer={"name": "avg_pool"})
    with pytest.raises(ValueError, match=r"Arch.Head.weight_attr.initializer.name='Gauss'|FC.weight_attr"):
        RecModel(Backbone={"name": "pplcnetv2_small", "class_expand": 64}, BackboneStopLayer={"name": "flatten"},
                 Head={"name": "FC", "embedding_size": 64, "class_num": 3,
                       "weight_attr": {"initializer": {"name": "Gauss"}}})


class _Labels:
    def __init__(self, labels):
        self.labels = list(labels)

    def __len__(self):
        return len(self.labels)


def test_pk_sampler_batches_hold_p_ids_of_k_images():
    data = _Labels(np.repeat(np.arange(10), [3, 5, 8, 8, 8, 8, 8, 8, 8, 2]))
    sampler = PKSampler(data, batch_size=12, sample_per_id=4)
    sampler.set_epoch(7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(data) // 12  # drop_last (default): full batches only
    for batch in batches:
        labels = [data.labels[i] for i in batch]
        assert len(batch) == 12 and all(labels.count(v) == 4 for v in set(labels)) and len(set(labels)) == 3
    sampler.set_epoch(7)
    assert list(sampler) == batches  # seeded by the epoch, not by global state
    sampler.set_epoch(8)
    assert list(sampler) != batches
    with pytest.raises(SamplerError, match="batch_size 10 is not divisible by sample_per_id 4"):
        PKSampler(data, batch_size=10, sample_per_id=4)
    with pytest.raises(SamplerError, match="11 identities per batch.*10 classes"):
        PKSampler(data, batch_size=44, sample_per_id=4)
    with pytest.raises(SamplerError, match="sample_method"):
        PKSampler(data, batch_size=8, sample_per_id=4, sample_method="uniform")


def test_ra_sampler_repeats_images_across_ranks():
    data = _Labels(range(600))
    ranks = [RASampler(data, batch_size=64, shuffle=True, num_repeats=3, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    seen = [[i for b in s for i in b] for s in ranks]
    assert [len(x) for x in seen] == [256, 256]  # 600 // 256 * 256 / 2 per rank
    # the three copies of an image land on alternating ranks: both ranks hold image seen[0][0]
    assert seen[0][0] in seen[1]
    with pytest.raises(SamplerError, match="multiple of 256.*100"):
        RASampler(_Labels(range(100)), batch_size=8)
