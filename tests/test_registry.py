"""Registry: names, aliases, suggestions for unknown names, argument checking, pretrained handling."""
import pytest

import ppbackbone
from ppbackbone.arch.registry import register_model


def test_snake_case_names_and_reference_aliases_build_the_same_model():
    assert ppbackbone.model_info("PPHGNetV2_B4").name == "hgnetv2_b4"
    assert ppbackbone.model_info("PPHGNet_small").name == "pphgnet_small"
    assert ppbackbone.model_info("PPHGNetV2_L").name == "hgnetv2_l"
    model = ppbackbone.create_model("PPHGNetV2_B0", num_classes=3)
    assert model.model_name == "hgnetv2_b0" and model.num_classes == 3


def test_list_models_pattern_and_aliases():
    assert ppbackbone.list_models("hgnetv2_b?") == [f"hgnetv2_b{i}" for i in range(8)]
    assert "PPHGNetV2_B4" in ppbackbone.list_models("PPHGNet*", include_aliases=True)
    assert ppbackbone.list_models(family="pphgnet") == ["pphgnet_base", "pphgnet_small", "pphgnet_small_det",
                                                        "pphgnet_small_rec", "pphgnet_tiny"]


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown model 'hgnetv2_b8'.*Did you mean: .*hgnetv2_b"):
        ppbackbone.create_model("hgnetv2_b8")


def test_unknown_argument_lists_accepted_ones():
    with pytest.raises(TypeError, match=r"hgnetv2_b0 got unknown argument\(s\) \['use_lob'\].*use_lab"):
        ppbackbone.create_model("hgnetv2_b0", use_lob=True)


def test_class_num_is_accepted_as_in_paddleclas_yaml():
    assert ppbackbone.create_model("hgnetv2_b0", class_num=5).fc.weight.shape == [2048, 5]


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_model("hgnetv2_b0", object)
    with pytest.raises(ValueError, match="already taken"):
        register_model("some_new_model_name", object, aliases=("PPHGNetV2_B0",))


def test_detection_presets_default_to_paddledetection_settings():
    model = ppbackbone.create_model("hgnetv2_l")
    assert model.out_indices == [1, 2, 3]
    assert model.out_strides == [8, 16, 32] and model.out_channels == [512, 1024, 2048]
    assert all(p.stop_gradient for p in model.stem.parameters())  # freeze_at=0, stem only
    assert not all(p.stop_gradient for p in model.stages[0].parameters()
                   if not p.name.endswith(("_mean", "_variance")))
    # S and M keep LAB so B1/B2 ImageNet weights load whole
    assert ppbackbone.create_model("hgnetv2_s").use_lab is True


def test_pretrained_true_without_published_weights_is_an_error():
    with pytest.raises(ValueError, match="no published weights"):
        ppbackbone.create_model("hgnetv2_l", pretrained=True)


def test_reset_classifier_and_pre_logits(image):
    model = ppbackbone.create_model("hgnetv2_b0", num_classes=10)
    model.reset_classifier(4)
    model.eval()
    assert list(model(image).shape) == [2, 4]
    assert list(model.forward_head(model.forward_features(image), pre_logits=True).shape) == [2, 2048]
    model.reset_classifier(0)
    assert list(model(image).shape) == [2, model.num_features]
    with pytest.raises(ValueError, match="feature mode"):
        ppbackbone.create_model("hgnetv2_b0", out_indices=[3]).reset_classifier(10)


def test_paddledetection_style_dict_input(image):
    model = ppbackbone.create_model("hgnetv2_s")
    model.eval()
    outs = model({"image": image})
    assert [o.shape[1] for o in outs] == [256, 512, 1024]


def test_pretrained_cfg_gives_what_the_weights_expect():
    cfg = ppbackbone.pretrained_cfg("PPHGNetV2_B4")
    assert cfg["model"] == "hgnetv2_b4" and cfg["tag"] == "ssld_stage1" and cfg["tags"] == ["ssld_stage1", "ssld"]
    assert cfg["url"].endswith("PPHGNetV2_B4_ssld_stage1_pretrained.pdparams")
    assert (cfg["input_size"], cfg["resize_short"], cfg["interpolation"]) == ((3, 224, 224), 232, "bicubic")
    assert cfg["crop_pct"] == pytest.approx(224 / 232, abs=1e-4)
    assert ppbackbone.pretrained_cfg("hgnetv2_b4", "ssld")["url"].endswith("PPHGNetV2_B4_ssld_pretrained.pdparams")
    swin = ppbackbone.pretrained_cfg("SwinTransformer_large_patch4_window12_384")
    assert swin["tag"] == "22kto1k" and swin["input_size"] == (3, 384, 384) and swin["resize_short"] == 438
    assert ppbackbone.pretrained_cfg("pphgnet_base")["tags"] == ["ssld"]  # PaddleClas has no plain base weights
    none = ppbackbone.pretrained_cfg("vanillanet_5")
    assert none["url"] is None and none["tags"] == [] and none["mean"] == (0.485, 0.456, 0.406)
    with pytest.raises(ValueError, match=r"hgnetv2_b4 has no weights tagged 'ssld_stage3'; its tags: ssld_stage1, ssld"):
        ppbackbone.pretrained_cfg("hgnetv2_b4", "ssld_stage3")


def test_pretrained_picks_weights_by_tag(monkeypatch):
    import ppbackbone.weights.io
    loaded = []
    monkeypatch.setattr(ppbackbone.weights.io, "load_weights", lambda model, path: loaded.append(path))
    ppbackbone.create_model("pplcnet_x0_25", pretrained="ssld")
    ppbackbone.create_model("pplcnet_x0_25", pretrained=True)
    assert loaded == [ppbackbone.pretrained_cfg("pplcnet_x0_25", "ssld")["url"],
                      ppbackbone.pretrained_cfg("pplcnet_x0_25")["url"]]
    with pytest.raises(ValueError, match=r"pretrained='ssl' is neither a weights file nor a weight tag of "
                                         r"pplcnet_x0_25 \(its tags: in1k, ssld\)"):
        ppbackbone.create_model("pplcnet_x0_25", pretrained="ssl")


def test_inconsistent_weight_metadata_is_refused():
    with pytest.raises(ValueError, match=r"default_tag 'ssld' is not among its weights \['in1k'\]"):
        register_model("some_model_with_bad_tags", object, weights={"in1k": "u"}, default_tag="ssld")
    with pytest.raises(ValueError, match=r"unknown pretrained-config keys \['crop'\]"):
        register_model("some_model_with_bad_cfg", object, pretrained={"crop": 0.9})
