"""Config loading: _BASE_ inheritance, typed -o overrides, errors that name the key, shipped configs."""
import glob
import os

import pytest

import ppbackbone
from ppbackbone.arch import build_model
from ppbackbone.config import ConfigError, apply_overrides, load_config, parse_override

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
    arch = cfg["Arch"]
    if arch["name"] == "RecModel":
        names = [arch["Backbone"]["name"]]
    elif arch["name"] == "DistillationModel":
        names = [next(iter(m.values()))["name"] for m in arch["models"]]
    else:
        names = [arch["name"]]
    for name in names:
        ppbackbone.model_info(name)  # raises for an unknown name
    assert cfg["Global"]["image_shape"][0] == 3


# ------------------------------------------------------------------------------------------------
# schema validation: keys inside sections, op lists, optimizer, warn-once for unsupported keys

def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BASE = os.path.join(CONFIG_DIR, "quickstart.yaml")


@pytest.mark.parametrize("override, message", [
    ("Global.epoch=3", r"unknown key Global.epoch\. Did you mean: epochs"),
    ("AMP.levl=O2", r"unknown key AMP.levl\. Did you mean: level"),
    ("Optimizer.beta_1=0.9", r"unknown key Optimizer.beta_1\. Did you mean: beta1"),
    ("Optimizer.name=Adamw", r"Optimizer.name 'Adamw' is not supported\. Did you mean: AdamW"),
    ("Optimizer.lr.name=Cosin", r"Optimizer.lr.name 'Cosin' is not supported\. Did you mean: Cosine"),
    ("Optimizer.lr.warmup_epochs=2", r"unknown key Optimizer.lr.warmup_epochs\. Did you mean: warmup_epoch"),
    ("Arch.name=hgnetv2_b9", r"Arch.name: Unknown model 'hgnetv2_b9'\. Did you mean"),
    ("Loss.Train=[{CELos: {weight: 1.0}}]", r"Loss.Train\[0\]: unknown 'CELos'\. Did you mean: CELoss"),
    ("Loss.Train=[{CELoss: {epsillon: 0.1}}]", r"Loss.Train\[0\] CELoss: unknown parameter\(s\) \['epsillon'\]"),
    ("Metric.Eval=[{TopkAcc: {top_k: 5}}]", r"Metric.Eval\[0\] TopkAcc: unknown parameter\(s\) \['top_k'\]"),
    ("DataLoader.Train.sampler.batchsize=8", r"unknown key DataLoader.Train.sampler.batchsize\. Did you mean: "
                                             r"batch_size"),
    ("DataLoader.Train.loader.workers=2", r"unknown key DataLoader.Train.loader.workers"),
    ("DataLoader.Train.dataset.name=ImageNetDataSet", r"Did you mean: ImageNetDataset"),
    ("DataLoader.Train.dataset.transform_ops=[{ResizeImg: {size: 3}}]",
     r"transform_ops\[0\]: unknown 'ResizeImg'\. Did you mean: ResizeImage"),
    ("DataLoader.Train.dataset.batch_transform_ops=[{Mixup: {alpha: 0.2}}]", r"Did you mean: MixupOperator"),
    ("DataLoader.Train.sampler.name=RandomSampler", r"sampler.name 'RandomSampler' is not supported"),
])
def test_validation_names_the_bad_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(BASE, [override])


def test_every_shipped_recipe_passes_validation():
    for path in SHIPPED:
        cfg = load_config(path)  # validates keys, op lists, optimizer
        assert cfg["Optimizer"]["name"] in ("Momentum", "AdamW", "Lamb", "SGD")


def test_recognised_unsupported_keys_warn_once(caplog):
    from ppbackbone.errors import _WARNED
    _WARNED.discard("Global.use_dali")
    with caplog.at_level("WARNING", logger="ppbackbone"):
        load_config(BASE, ["Global.use_dali=True"])
        load_config(BASE, ["Global.use_dali=True"])
        load_config(BASE, ["Global.to_static=False"])  # an off value: nothing to say
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Global.use_dali" in m for m in messages) == 1
    assert not any("to_static" in m for m in messages)
    _WARNED.discard("DataLoader.Train.dataset.transform_ops:GridMask")
    with caplog.at_level("WARNING", logger="ppbackbone"):
        load_config(BASE, ["DataLoader.Train.dataset.transform_ops=[{DecodeImage: null}, {GridMask: null}]"])
    assert any("GridMask (PaddleClas) is not supported and is skipped" in r.getMessage() for r in caplog.records)


def test_arch_aliases_and_null_keys():
    cfg = load_config(BASE, ["Arch.name=PPHGNetV2_B0", "Optimizer.momentum=null"])
    assert build_model(cfg).model_name == "hgnetv2_b0"


def test_get_value_checks_types():
    from ppbackbone.errors import get_value
    cfg = {"Global": {"epochs": "ten", "seed": None}}
    with pytest.raises(ConfigError, match=r"Global.epochs='ten' is not valid: expected a positive int"):
        get_value(cfg, "Global.epochs", 1, int, lambda v: v > 0, "a positive int")
    assert get_value(cfg, "Global.seed", 7, int) == 7


# ------------------------------------------------------------------------------------------------
# YAML and override fixes (issue 14): malformed -o values, typed Arch keys, exponent floats, duplicate keys

@pytest.mark.parametrize("override, message", [
    ("Arch.lr_mult_list=[0.1,0.2", r"Override 'Arch.lr_mult_list=\[0.1,0.2': the value '\[0.1,0.2' is not valid "
                                   r"YAML.*A list is written \[0.1, 0.2\]"),
    ("Arch.class_num={a: 1", r"Override 'Arch.class_num=\{a: 1': the value .* is not valid YAML"),
    ("Arch.class_num=ten", r"Arch.class_num='ten' is not valid: expected an integer >= 0, the number of classes"),
    ("Arch.class_num=-3", r"Arch.class_num=-3 is not valid"),
    ("Arch.lr_mult_list=[0.1, a, 0.2]", r"Arch.lr_mult_list=\[0.1, 'a', 0.2\] is not valid: expected a list of "
                                        r"numbers"),
    ("Arch.out_indices=[1.5]", r"Arch.out_indices=\[1.5\] is not valid: expected a list of stage indices"),
    ("Arch.freeze_norm=yes please", r"Arch.freeze_norm='yes please' is not valid: expected True or False"),
    ("Arch.lr_mult_list={a: 1, a: 2}", r"Override .*duplicate key 'a'"),
])
def test_override_and_arch_value_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(BASE, [override])


@pytest.mark.parametrize("text, value", [("1e12", 1e12), ("5e-4", 5e-4), ("1E+3", 1e3), ("-2e-2", -0.02),
                                         ("1.0e-3", 1e-3), ("3", 3), ("'1e5'", "1e5"), ("1e", "1e")])
def test_exponent_floats_are_numbers(text, value):
    """YAML 1.1 reads 1e12 as a string; ppbackbone reads it as the number it is (files and -o alike)."""
    assert parse_override(f"Optimizer.lr.learning_rate={text}")[1] == value
    cfg = load_config(BASE, [f"Optimizer.lr.learning_rate={text}"], validate=False)
    assert cfg["Optimizer"]["lr"]["learning_rate"] == value


def test_large_learning_rate_in_exponent_form_is_accepted(tmp_path):
    path = _write(tmp_path, f"_BASE_: {BASE}\nOptimizer:\n  lr:\n    learning_rate: 1e12\n")
    assert load_config(path)["Optimizer"]["lr"]["learning_rate"] == 1e12


def test_duplicate_yaml_keys_name_file_key_and_lines(tmp_path):
    path = _write(tmp_path, "Arch:\n  name: hgnetv2_b0\n  class_num: 10\n  class_num: 5\n")
    with pytest.raises(ConfigError, match=rf"{path}: duplicate key 'class_num' in the same mapping, at lines 3 and 4"):
        load_config(path)
    # the same key in different mappings, and YAML merge keys, are fine
    path = _write(tmp_path, f"_BASE_: {BASE}\nGlobal: {{epochs: 1}}\nEMA: {{decay: 0.9}}\n", "ok.yaml")
    assert load_config(path)["Global"]["epochs"] == 1


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    from ppbackbone.engine import Trainer
    blocker = tmp_path / "out"
    blocker.write_text("a file")
    cfg = load_config(BASE, [f"Global.output_dir={blocker}"])
    with pytest.raises(ConfigError, match=rf"Global.output_dir='{blocker}': {blocker} is a file, not a folder"):
        Trainer(cfg, mode="eval")
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "hgnetv2_b0").write_text("a file where the run folder goes")
    cfg = load_config(BASE, [f"Global.output_dir={tmp_path / 'out2'}"])
    with pytest.raises(ConfigError, match=r"hgnetv2_b0 is a file, not a folder"):
        Trainer(cfg, mode="eval")
