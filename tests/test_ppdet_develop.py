"""PaddleDetection develop suite: runs only when PADDLEDET_HOME points at a develop checkout.

Each check runs PaddleDetection-side code in its own process through tools/ppdet_run.py (the checkout's
`ppdet` is imported there, never this process's paddledet 2.6.0 wheel). The interpreter is
$PADDLEDET_PYTHON when set (an environment where the checkout imports: numpy<2, imgaug, ... see
docs/ppdet.md), else this one.

    PADDLEDET_HOME=/path/to/PaddleDetection PADDLEDET_PYTHON=/path/to/venv/bin/python \\
        python -m pytest -q tests/test_ppdet_develop.py
"""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.environ.get("PADDLEDET_HOME")
PYTHON = os.environ.get("PADDLEDET_PYTHON", sys.executable)
CHECKS = os.path.join(ROOT, "tests", "ppdet_develop_checks.py")
RUNNER = os.path.join(ROOT, "tools", "ppdet_run.py")

pytestmark = pytest.mark.skipif(
    not HOME, reason="PADDLEDET_HOME is not set: the PaddleDetection develop suite needs a checkout "
                     "(and PADDLEDET_PYTHON an interpreter where it imports); see docs/ppdet.md")


def run(*args, timeout=900, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # found by the runner, not PYTHONPATH
    proc = subprocess.run([PYTHON, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=cwd or ROOT)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def check(*args, timeout=900):
    out = run(RUNNER, "--ppdet-root", HOME, CHECKS, *args, timeout=timeout)
    assert "OK " in out, out[-2000:]
    return out


NATIVE = [("configs/rtdetr/rtdetr_hgnetv2_l_6x_coco.yml", True),
          ("configs/rtdetr/rtdetr_hgnetv2_x_6x_coco.yml", False),
          ("configs/rtdetr/rtdetr_hgnetv2_h_6x_coco.yml", False),
          ("configs/mask_rtdetr/mask_rtdetr_hgnetv2_s_6x_coco.yml", False),
          ("configs/mask_rtdetr/mask_rtdetr_hgnetv2_m_6x_coco.yml", False)]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("config, forward", NATIVE, ids=[os.path.basename(c) for c, _ in NATIVE])
def test_native_section_equals_the_native_detector(config, forward):
    """The checkout's own config with only `backbone:` and the PPHGNetV2 section swapped for
    `PPBackbone: {model: PPHGNetV2, ...}`: same keys, shapes, lr, regularizers, trainability, frozen norms;
    for L also equal eval boxes and train loss with shared weights."""
    args = ["native", os.path.join(HOME, config), "PPHGNetV2"] + (["--forward"] if forward else [])
    check(*args)


SHIPPED = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "ppdet", "**", "*.yml"), recursive=True)
                 if os.sep + "_base_" + os.sep not in p)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("config", SHIPPED, ids=[os.path.relpath(p, os.path.join(ROOT, "configs", "ppdet"))
                                                 for p in SHIPPED])
def test_shipped_config_builds_and_gives_finite_boxes(config):
    check("build", config)


def _reference_of(config):
    with open(config, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# reference: "):
                return line.split()[2]
    return None


# top-level keys a shipped config may set for its backbone: weights and output folders
WEIGHT_KEYS = ("pretrain_weights", "weights", "save_dir")
DERIVED = [p for p in SHIPPED if _reference_of(p)]


def _yaml(path):
    """A config as data; PaddleDetection's `!Tag` objects become (tag, value) pairs."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, suffix, node):
        value = (loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
                 else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
                 else loader.construct_scalar(node))
        return (suffix, value)

    Loader.add_multi_constructor("!", tagged)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)


@pytest.mark.parametrize("config", DERIVED, ids=[os.path.basename(p) for p in DERIVED])
def test_shipped_config_is_its_reference_with_only_the_backbone_changed(config):
    """The file differs from the checkout's reference config (its `# reference:` line) only in the
    architecture's backbone line, the backbone section (-> PPBackbone) and the weights/output keys; a
    pasted native section keeps the native keys unchanged."""
    ours = _yaml(config)
    ref_path = os.path.join(HOME, _reference_of(config))
    ref = _yaml(ref_path)
    section = ours.pop("PPBackbone")
    arch = next(k for k, v in ours.items() if isinstance(v, dict) and v.get("backbone") == "PPBackbone")
    native = section["model"] if section["model"][0].isupper() else None
    old = native or next(k for k in ref if k in ("ResNet", "PPHGNetV2", "LCNet", "CSPResNet"))
    if native:
        theirs = ref.get(native)
        if theirs is None:  # the reference inherits the native section from a _BASE_ file
            for base in ref["_BASE_"]:
                base_cfg = _yaml(os.path.join(os.path.dirname(ref_path), base))
                theirs = base_cfg.get(native, theirs)
        assert {k: v for k, v in section.items() if k != "model"} == theirs, "native section changed"
    for cfg in (ours, ref):
        for key in WEIGHT_KEYS + (old,):
            cfg.pop(key, None)
        if arch in cfg:
            cfg[arch] = {k: v for k, v in cfg[arch].items() if k != "backbone"}
            if not cfg[arch]:
                del cfg[arch]
    assert ours == ref


DEMOS = ["rtdetr_hgnetv2_b0_demo", "picodet_lcnet_demo"]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", DEMOS)
def test_demo_trains_evaluates_and_exports_through_the_runner(tmp_path, name):
    """PaddleDetection's own train.py (1 epoch, --eval) and export_model.py run through tools/ppdet_run.py
    with no PYTHONPATH on the embedded demo set; Paddle Inference reloads the export and gives the dygraph
    detector's boxes."""
    demo = os.path.join(ROOT, "configs", "ppdet", "demo", f"{name}.yml")
    env_home = {"PPBACKBONE_HOME": str(tmp_path / "home")}
    os.environ.update(env_home)
    try:
        out = run(RUNNER, os.path.join(HOME, "tools", "train.py"), "-c", demo, "--eval", "-o", "epoch=1",
                  "snapshot_epoch=1", f"save_dir={tmp_path / 'output'}", timeout=1700, cwd=str(tmp_path))
        weights = tmp_path / "output" / "model_final.pdparams"  # PaddleDetection develop saves into save_dir
        assert weights.is_file(), out[-2000:]
        assert "Average Precision" in out, out[-2000:]
        run(RUNNER, os.path.join(HOME, "tools", "export_model.py"), "-c", demo, "-o",
            f"weights={str(weights)[:-len('.pdparams')]}", f"--output_dir={tmp_path / 'export'}", cwd=str(tmp_path))
        image = os.path.join(str(tmp_path / "home"), "datasets", "det_demo_shapes_v1", "images", "val", "000001.jpg")
        check("export", demo, str(weights)[:-len(".pdparams")], str(tmp_path / "export" / name), image)
    finally:
        for key in env_home:
            os.environ.pop(key, None)
