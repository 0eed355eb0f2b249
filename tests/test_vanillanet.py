"""VanillaNet against the official PyTorch implementation (checked-in fixture), deep-training schedule,
deploy fusion, the torch checkpoint converter and published deploy parameter counts."""
import ast
import json
import os

import numpy as np
import paddle
import pytest

import ppbackbone
from ppbackbone.arch.vanillanet import PUBLISHED_DEPLOY_M, VanillaNet, act_learn_at
from ppbackbone.weights.convert import torch_state_to_paddle

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "vanillanet_official.npz")


CASES = ["", "ada:"]  # fixture key prefixes: the plain instance and the ada_pool one (stride-3 padded stem)


@pytest.fixture(scope="module", params=CASES, ids=["plain", "ada_pool"])
def official(request):
    """(outputs, torch-named weights, official constructor arguments) of one fixture case."""
    with np.load(FIXTURE) as raw:
        prefix = request.param
        data = {k[len(prefix):]: raw[k] for k in raw.files if k.startswith(prefix) and
                (prefix or not k.startswith("ada:"))}
    weights = {k[2:]: data[k] for k in data if k.startswith("w:")}
    return data, weights, ast.literal_eval(str(data["config"]))


def _build(config, **kwargs):
    return VanillaNet(dims=config["dims"], strides=config["strides"], act_num=config["act_num"],
                      num_classes=config["num_classes"], drop_rate=config["drop_rate"],
                      ada_pool=config.get("ada_pool"), **kwargs)


def _model(official, tmp_path):
    data, weights, config = official
    model = _build(config)
    path = ppbackbone.save_weights(torch_state_to_paddle(weights), str(tmp_path / "official.safetensors"))
    report = ppbackbone.load_weights(model, path, verbose=False)
    assert not (report.missing or report.unexpected or report.mismatched or report.head_skipped)
    model.eval()
    return model, paddle.to_tensor(data["x"])


def test_fixture_has_the_ada_pool_stem():
    """The ada_pool case exercises what differs: official stem 4x4 stride 3 padding 1 (64 -> 21)."""
    with np.load(FIXTURE) as raw:
        config = ast.literal_eval(str(raw["ada:config"]))
        assert raw["ada:w:stem1.0.weight"].shape[2:] == (4, 4)
    model = _build(config)
    assert (model.stem_stride, model.stem_padding) == (3, 1)
    assert [s[0] for s in model.feature_sizes(64)] == [11, 11, 3]


def test_train_form_matches_official_at_any_act_learn(official, tmp_path):
    data = official[0]
    model, x = _model(official, tmp_path)
    model.set_act_learn(0.5)
    np.testing.assert_allclose(model(x).numpy(), data["out_half"], rtol=1e-4, atol=1e-5)
    model.change_act(1.0)
    np.testing.assert_allclose(model(x).numpy(), data["out_one"], rtol=1e-4, atol=1e-5)


def test_deploy_form_matches_official_switch_to_deploy(official, tmp_path):
    data = official[0]
    model, x = _model(official, tmp_path)
    model.set_act_learn(1.0)
    ppbackbone.reparameterize(model)
    got = model(x).numpy()
    scale = float(np.abs(data["out_deploy"]).max())
    assert float(np.abs(got - data["out_deploy"]).max()) <= 1e-4 * max(1.0, scale)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = dict(zip([str(k) for k in data["deploy_keys"]], json.loads(str(data["deploy_shapes"]))))
    theirs = {k.replace("running_mean", "_mean").replace("running_var", "_variance"): v for k, v in theirs.items()}
    assert ours == theirs, "deploy-form names/shapes differ from the official switch_to_deploy()"


def test_deploy_refuses_when_not_exact(official, tmp_path):
    model, _ = _model(official, tmp_path)
    model.set_act_learn(0.3)
    with pytest.raises(ValueError, match="act_learn == 1.*it is 0.3"):
        ppbackbone.reparameterize(model)


def test_deploy_checkpoint_loads_into_deploy_built_model(official, tmp_path):
    data, _, config = official
    model, x = _model(official, tmp_path)
    ppbackbone.reparameterize(model)
    path = ppbackbone.save_weights(model, str(tmp_path / "deploy.safetensors"))
    deployed = _build(config, deploy=True)
    report = ppbackbone.load_weights(deployed, path, verbose=False)
    assert not (report.missing or report.unexpected)
    deployed.eval()
    np.testing.assert_allclose(deployed(x).numpy(), data["out_deploy"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode, expected", [
    ("linear", [0.0, 0.25, 0.5, 1.0, 1.0]),
    ("cosine", [0.0, 0.5 * (1 - np.cos(np.pi * 0.25)), 0.5, 1.0, 1.0]),
])
def test_act_learn_schedule(mode, expected):
    values = [act_learn_at(e, 4, mode) for e in (0, 1, 2, 4, 9)]
    np.testing.assert_allclose(values, expected)
    model = ppbackbone.create_model("vanillanet_5", dims=[8, 16, 32, 64], num_classes=4,
                                    act_learn_schedule=mode, decay_epochs=4)
    model.on_epoch_begin(2, 10)
    assert model.act_learn == pytest.approx(0.5)
    assert all(stage.act_learn == pytest.approx(0.5) for stage in model.stages)
    with pytest.raises(ValueError, match="expected 'linear' or 'cosine'"):
        act_learn_at(1, 4, "step")


def test_detection_feature_mode_of_vanillanet_13():
    model = ppbackbone.create_model("vanillanet_13", dims=[d // 32 for d in ppbackbone.model_info(
        "vanillanet_13").default_args["dims"]], out_indices=[0, 1, 8, 10])
    assert model.out_strides == [4, 8, 16, 32]
    model.eval()
    outs = model(paddle.zeros([1, 3, 64, 64]))
    assert [o.shape[2] for o in outs] == [16, 8, 4, 2]


def test_ada_pool_needs_large_enough_inputs():
    """The declared minimum is checked before running, in classifier and feature mode."""
    test_args = ppbackbone.model_info("vanillanet_13_x1_5_ada_pool").test_args
    model = ppbackbone.create_model("vanillanet_13_x1_5_ada_pool", **test_args)
    model.eval()
    # test_args pool block 1 to 11x11 after the stride-3 padding-1 stem: 32x32 is the smallest input that fits
    assert model.min_input_size == 32
    with pytest.raises(ValueError, match=r"at least 32x32 pixels \(its adaptive max-pools.*got 16x16"):
        model(paddle.zeros([1, 3, 16, 16]))
    features = ppbackbone.create_model("vanillanet_13_x1_5_ada_pool", out_indices=[0, 1], **test_args)
    with pytest.raises(ValueError, match="at least 32x32 pixels.*got 31x64"):
        features(paddle.zeros([1, 3, 31, 64]))
    assert [o.shape[2] for o in features(paddle.zeros([1, 3, 32, 32]))] == [11, 11]


@pytest.mark.parametrize("variant, expected", [("5", 32), ("13", 32), ("13_x1_5_ada_pool", 113)])
def test_declared_minimum_input_size(variant, expected):
    """Plain VanillaNets need 4 * 8 pixels (three 2x max-pools after the stride-4 stem); the ada_pool
    variant's block 1 pools to 38x38, so its stride-3 padding-1 stem must give 38: (113 + 2 - 4) // 3 + 1."""
    model = ppbackbone.create_model(f"vanillanet_{variant}", dims=[8] * len(ppbackbone.model_info(
        f"vanillanet_{variant}").default_args["dims"]))
    assert model.min_input_size == expected


def test_ada_pool_sizes_at_224_are_the_official_ones():
    """Official vanillanet_13_x1_5_ada_pool at 224: stem 75, adaptive pools 38/19/10 (nominal strides 3/6/12/24)."""
    info = ppbackbone.model_info("vanillanet_13_x1_5_ada_pool")
    dims = [d // 48 for d in info.default_args["dims"]]
    model = ppbackbone.create_model("vanillanet_13_x1_5_ada_pool", dims=dims, out_indices=list(range(11)))
    model.eval()
    maps = model(paddle.zeros([1, 3, 224, 224]))
    heights = [int(m.shape[2]) for m in maps]
    assert heights == [75, 38, 19, 19, 19, 19, 19, 19, 19, 10, 10]
    assert heights == [s[0] for s in model.feature_sizes(224)]
    assert heights == [-(-224 // f["stride"]) for f in model.feature_info]


def test_unknown_variant_suggests_names():
    with pytest.raises(ValueError, match="Did you mean: vanillanet_1"):
        ppbackbone.create_model("vanillanet_14")


@pytest.mark.parametrize("variant", ["5", "6", "13"])
def test_published_deploy_parameter_counts(variant):
    model = ppbackbone.create_model(f"vanillanet_{variant}")
    model.eval()
    ppbackbone.reparameterize(model)
    assert round(ppbackbone.count_params(model) / 1e6, 1) == PUBLISHED_DEPLOY_M[variant]


def test_converter_renames_bn_statistics_and_drops_counters():
    import numpy as np
    state = {"stem1.1.running_mean": np.zeros(2), "stem1.1.running_var": np.ones(2),
             "stem1.1.num_batches_tracked": np.array(3), "stem1.0.weight": np.ones((2, 3, 4, 4))}
    assert sorted(torch_state_to_paddle(state)) == ["stem1.0.weight", "stem1.1._mean", "stem1.1._variance"]
