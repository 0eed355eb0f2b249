"""Config loading: _BASE_ inheritance, typed -o overrides, errors that name the key, shipped configs."""
import glob
import os

import pytest

import ppbackbone
from ppbackbone.config import ConfigError, apply_overrides, build_model, load_config, parse_override

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SHIPPED = sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True)
                 if "/ppdet/" not in p)


def test_overrides_are_typed():
    assert parse_override("Global.epochs=3") == (["Global", "epochs"], 3)
    assert parse_override("Arch.use_lab=False") == (["Arch", "use_lab"], False)
    assert parse_override("Arch.lr_mult_list=[0.1, 0.2]") == (["Arch", "lr_mult_list"], [0.1, 0.2])
    assert parse_override("Global.output_dir=out/x") == (["Global", "output_dir"], "out/x")


def test_override_errors_name_the_key():
    cfg = {"Global": {"epochs": 1}, "Arch": {"name": "hgnetv2_b0"}}
    with pytest.raises(ConfigError, match="Globl"):
        apply_overrides(cfg, ["Globl.epochs=2"])
    with pytest.raises(ConfigError, match="Section.key=value"):
        apply_overrides(cfg, ["Global.epochs"])
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides(cfg, ["Global.epochs.x=2"])
    assert apply_overrides(cfg, ["Global.epochs=2"])["Global"]["epochs"] == 2
    assert cfg["Global"]["epochs"] == 1  # the input is not mutated


def test_base_inheritance_and_overrides():
    cfg = load_config(os.path.join(CONFIG_DIR, "hgnetv2_b0.yaml"), ["Arch.class_num=7"])
    assert cfg["Arch"]["name"] == "hgnetv2_b0"
    assert cfg["Arch"]["class_num"] == 7
    assert cfg["Optimizer"]["regularizer"]["coeff"] == pytest.approx(2e-5)  # from hgnetv2_b4.yaml


def test_missing_file_and_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("Arch:\n  name: hgnetv2_b0\nOptimiser:\n  name: Momentum\n")
    with pytest.raises(ConfigError, match="Optimiser.*Did you mean: Optimizer"):
        load_config(str(bad))


def test_unknown_arch_argument_is_a_config_error(tmp_path):
    cfg = {"Arch": {"name": "hgnetv2_b0", "use_lob": True}}
    with pytest.raises(ConfigError, match="use_lob"):
        build_model(cfg)


@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.basename(p) for p in SHIPPED])
def test_shipped_configs_name_registered_models(path):
    cfg = load_config(path)
    ppbackbone.model_info(cfg["Arch"]["name"])  # raises for an unknown name
    assert cfg["Global"]["image_shape"][0] == 3
