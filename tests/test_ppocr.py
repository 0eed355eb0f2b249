"""PaddleOCR plugin without a PaddleOCR checkout: native sections against the key lists PaddleOCR's own classes
give (tests/fixtures/make_ppocr_fixture.py, upstream 6d2110b7), the builder patch against a stand-in package
that behaves like PaddleOCR's (same module names, a builder evaluating names from support lists, bound by name
into base_model at import), the export walk (`rep()` / `is_repped`), bad input, and the runner's setup."""
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from conftest import randomize_state

import ppbackbone
from ppbackbone.arch.native import is_native
from ppbackbone.ppocr import create_backbone
from ppbackbone.ppocr.config import PPOCRSetupError, check_ppbackbone_sections, resolve_config, resolve_overrides
from ppbackbone.ppocr.runner import find_ppocr_root, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def _generator():
    spec = importlib.util.spec_from_file_location("make_ppocr_fixture", os.path.join(FIXTURES, "make_ppocr_fixture.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
with gzip.open(os.path.join(FIXTURES, "ppocr_backbones.json.gz"), "rt", encoding="utf-8") as _f:
    FACTS = json.load(_f)


def _native_section(case):
    section = dict(case["backbone"])
    return dict(section, name="PPBackbone", model=section.pop("name"), in_channels=3)


@pytest.mark.parametrize("name", list(GEN.CASES))
def test_native_section_is_paddleocrs_backbone_entry_for_entry(name):
    """Keys in order, shapes, learning rates, regularizers, stop_gradient, trainable and out_channels equal
    PaddleOCR's backbone built from the same section (its config with `name` moved to `model`)."""
    case = FACTS["cases"][name]
    if not is_native(case["backbone"]["name"], "PaddleOCR"):
        pytest.skip(f"{case['backbone']['name']} is not a registered PaddleOCR class yet")
    backbone = create_backbone(_native_section(case), case["model_type"])
    rows = json.loads(json.dumps(GEN.describe(backbone)))  # the fixture's JSON types
    assert [r[0] for r in rows] == [r[0] for r in case["rows"]], f"{name}: keys differ"
    for ours, theirs in zip(rows, case["rows"]):
        assert ours == theirs, f"{name}: {ours[0]} differs"
    assert backbone.out_channels == case["out_channels"]


def test_fixture_builder_facts_the_plugin_relies_on():
    """PaddleOCR's builder takes (config, model_type), base_model binds it by name (so both are patched), and
    PPBackbone is not one of PaddleOCR's own names; the PP-OCR classes ppbackbone builds are in its lists."""
    builder = FACTS["builder"]
    assert builder["args"] == ["config", "model_type"] and builder["base_model_binds_by_name"]
    assert all("PPBackbone" not in names for names in builder["support"].values())
    for case in FACTS["cases"].values():
        assert case["backbone"]["name"] in builder["support"][case["model_type"]]


@pytest.mark.parametrize("section, model_type, strides, channels", [
    ({"model": "hgnetv2_b0"}, "det", [4, 8, 16, 32], [64, 256, 512, 1024]),
    ({"model": "pplcnetv3_x0_75_det"}, "det", [4, 8, 16, 32], [12, 18, 42, 360]),
    ({"model": "pplcnetv3_x0_95_rec"}, "rec", None, 480),
])
def test_ppbackbone_names_give_paddleocrs_contract(section, model_type, strides, channels):
    backbone = create_backbone(dict(section, name="PPBackbone", in_channels=3), model_type)
    assert backbone.out_channels == channels
    backbone.eval()
    x = paddle.rand([1, 3, 48, 64] if model_type == "rec" else [1, 3, 64, 64])
    out = backbone(x)
    if model_type == "det":
        assert backbone.out_strides == strides and [o.shape[1] for o in out] == channels
        assert [o.shape[-1] for o in out] == [64 // s for s in strides]
    else:
        assert list(out.shape) == [1, channels, 1, 8]  # pooled to height 1, width / 8 (40 steps at 320)


def test_paddleocr_export_walk_fuses_like_reparameterize():
    """PaddleOCR's exporter: for every sublayer (parents first) that has `rep` and is not `is_repped` (read
    without a default), call `rep()`. On a PPBackbone model that gives reparameterize()'s fused model."""
    section = {"name": "PPBackbone", "model": "PPLCNetV3", "scale": 0.35, "det": True}
    walked = randomize_state(create_backbone(section, "det"), seed=3)
    walked.eval()
    x = paddle.rand([1, 3, 64, 64])
    before = [o.numpy() for o in walked(x)]
    for layer in walked.sublayers():
        if hasattr(layer, "rep") and not layer.is_repped:
            layer.rep()
    assert not ppbackbone.has_unfused_blocks(walked)
    assert all(layer.is_repped for layer in walked.sublayers() if hasattr(layer, "rep"))
    reference = create_backbone(section, "det")
    reference.set_state_dict(randomize_state(create_backbone(section, "det"), seed=3).state_dict())
    ppbackbone.reparameterize(reference.eval())
    assert list(walked.state_dict()) == list(reference.state_dict())
    for a, b, c in zip(walked(x), reference(x), before):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a.numpy(), c, rtol=1e-4, atol=1e-4 * float(np.abs(c).max()))


def test_paddleocr_checkpoint_backbone_loads_by_keys(tmp_path):
    """A PaddleOCR training checkpoint (backbone.* + neck/head keys, made from the fixture's PaddleOCR key list)
    loads into the ppbackbone preset with nothing missing or unexpected, checked by keys."""
    case = FACTS["cases"]["ppocrv5_mobile_det"]
    rng = np.random.RandomState(0)
    state = {f"backbone.{r[0]}": rng.rand(*r[1]).astype("float32") for r in case["rows"]}
    state["neck.ins_conv.0.weight"] = rng.rand(4, 12, 1, 1).astype("float32")
    path = str(tmp_path / "best_accuracy.pdparams")
    paddle.save(state, path)
    model = ppbackbone.create_model("PPLCNetV3_x0_75_ocr_det")
    report = ppbackbone.load_weights(model, path)
    assert not report.missing and not report.unexpected and not report.mismatched and report.ignored_prefix == 1
    np.testing.assert_array_equal(model.conv1.conv.weight.numpy(), state["backbone.conv1.conv.weight"])


# ---------------------------------------------------------------------------- the builder patch
def _stand_in(root):
    """A package named `ppocr` with PaddleOCR's module names and builder behaviour (facts in the fixture)."""
    support = FACTS["builder"]["support"]
    files = {
        "ppocr/__init__.py": "",
        "ppocr/modeling/__init__.py": "",
        "ppocr/modeling/backbones/__init__.py": f"""
            SUPPORT = {support!r}
            CALLS = []

            class Native:
                def __init__(self, in_channels=3, **kw):
                    self.kw, self.out_channels = kw, 7

            def build_backbone(config, model_type):
                Own = Native  # PaddleOCR imports its classes inside the function
                name = config.pop("name")
                assert name in SUPPORT[model_type], name
                CALLS.append(name)
                return eval("Own")(**config)
            """,
        "ppocr/modeling/architectures/__init__.py": "from .base_model import BaseModel\n",
        "ppocr/modeling/architectures/base_model.py": """
            from ppocr.modeling.backbones import build_backbone

            class BaseModel:
                def __init__(self, config):
                    config["Backbone"]["in_channels"] = 3
                    self.backbone = build_backbone(config["Backbone"], config["model_type"])
                    self.neck_in = self.backbone.out_channels
            """,
    }
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text))


SCRIPT = """
import sys
sys.path[:0] = [{stand_in!r}, {repo!r}]
if {plugin_first}:
    import ppbackbone.ppocr
from ppocr.modeling.architectures.base_model import BaseModel
import ppocr.modeling.backbones as backbones
if not {plugin_first}:
    import ppbackbone.ppocr
ppbackbone.ppocr.register_ppocr()  # a second registration changes nothing
section = {{"name": "PPBackbone", "model": "PPLCNetV3", "scale": 0.35, "det": True}}
det = BaseModel({{"model_type": "det", "Backbone": section}})
rec = BaseModel({{"model_type": "rec", "Backbone": {{"name": "PPBackbone", "model": "pplcnetv3_x0_95_rec"}}}})
native = BaseModel({{"model_type": "det", "Backbone": {{"name": "PPLCNetV3", "scale": 0.5}}}})
print(type(det.backbone).__name__, det.neck_in, rec.neck_in, "name" in section, backbones.CALLS,
      native.backbone.kw, native.neck_in)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("plugin_first", [True, False])
def test_builder_is_patched_whichever_is_imported_first(tmp_path, plugin_first):
    """`name: PPBackbone` builds through PaddleOCR's BaseModel (out_channels: list for det, int for rec, fed to
    the neck; `name` popped as PaddleOCR does); every other section reaches PaddleOCR's own builder once."""
    _stand_in(str(tmp_path))
    script = SCRIPT.format(stand_in=str(tmp_path), repo=ROOT, plugin_first=plugin_first)
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "PPLCNetV3 [5, 8, 19, 168] 480 False ['PPLCNetV3'] {'scale': 0.5} 7"


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("section, model_type, match", [
    ({}, "det", r"needs `model`: a PaddleOCR class \(.*PPLCNetV3.*\) followed by its own arguments, or a ppbackbone"),
    ({"model": "PPLCNetV9"}, "det", r"model: 'PPLCNetV9' is neither a PaddleOCR class ppbackbone builds .*Did you"),
    ({"model": "PPLCNetV3", "scale": 0.75, "det": True, "dett": 1}, "det",
     r"PPLCNetV3 \(PaddleOCR\) has no argument\(s\) \['dett'\]. Did you mean: det\?"),
    ({"model": "PPLCNetV3", "scale": 0.95}, "det", r"model PPLCNetV3 builds a rec form, but model_type is det: use det"),
    ({"model": "PPLCNetV3", "det": True}, "rec", r"model PPLCNetV3 does not build a rec form .* rec preset"),
    ({"model": "pplcnetv3_x0_75_det", "out_indices": [1, 2, 3]}, "det",
     r"returns 3 map\(s\) at strides \[4, 8, 16\]; PaddleOCR's det necks take 4 maps at strides \[4, 8, 16, 32\]"),
    ({"model": "pplcnetv3_x0_95_rec", "out_indices": [4]}, "rec", r"out_indices=\[4\] with model_type rec"),
    ({"model": "hgnetv2_b0", "lr_mult_list": [1.0]}, "det", r"model hgnetv2_b0: lr_mult_list has 1 entries"),
    ({"model": "PPLCNetV3", "in_channels": 1}, "rec", r"in_channels=1 .*3-channel images"),
    ({"model": "PPLCNetV3"}, "cls", r"model_type 'cls'; PPBackbone builds det, rec backbones"),
])
def test_bad_sections_name_the_key_and_what_fits(section, model_type, match):
    with pytest.raises(ppbackbone.errors.ConfigError, match=match):
        create_backbone(dict(section, name="PPBackbone"), model_type)


# ---------------------------------------------------------------------------- runner setup
def _checkout(root):
    for rel in ("ppocr/modeling/backbones/__init__.py", "tools/program.py", "tools/train.py",
                "ppocr/utils/dict/ppocrv5_dict.txt"):
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        open(os.path.join(root, rel), "w").close()
    return str(root)


def test_checkout_is_found_from_tool_path_flag_or_env(tmp_path):
    root = _checkout(tmp_path / "PaddleOCR")
    assert find_ppocr_root(os.path.join(root, "tools", "train.py"), environ={}) == root
    elsewhere = str(tmp_path / "x.py")
    assert find_ppocr_root(elsewhere, environ={"PADDLEOCR_HOME": root}) == root
    assert find_ppocr_root(elsewhere, ppocr_root=root, environ={}) == root
    with pytest.raises(PPOCRSetupError, match=r"--ppocr-root=.* is not a PaddleOCR checkout: ppocr/modeling/"
                                              r"backbones/__init__.py, tools/program.py not found"):
        find_ppocr_root(elsewhere, ppocr_root=str(tmp_path), environ={})
    with pytest.raises(PPOCRSetupError, match=r"PADDLEOCR_HOME=.*nope: no such directory"):
        find_ppocr_root(elsewhere, environ={"PADDLEOCR_HOME": str(tmp_path / "nope")})
    with pytest.raises(PPOCRSetupError, match=r"PaddleOCR not found; looked for .*PADDLEOCR_HOME \(unset\)"):
        find_ppocr_root(elsewhere, environ={})
    with pytest.raises(PPOCRSetupError, match="tool script not found: .*train.py"):
        parse_args([str(tmp_path / "train.py"), "-c", "x.yml"])


def test_relative_input_paths_resolve_against_the_checkout(tmp_path, monkeypatch):
    root = _checkout(tmp_path / "PaddleOCR")
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("a\n")
    config = work / "c.yml"
    config.write_text("Global:\n  character_dict_path: ./ppocr/utils/dict/ppocrv5_dict.txt\n  save_model_dir: ./out\n"
                      "PostProcess:\n  character_dict_path: mine.txt\n")
    out, changes = resolve_config(str(config), root, str(tmp_path / "resolved"), cwd=str(work))
    assert changes == ["Global.character_dict_path"] and out != str(config)
    text = open(out).read()
    assert os.path.join(root, "ppocr", "utils", "dict", "ppocrv5_dict.txt") in text and "save_model_dir: ./out" in text
    assert "character_dict_path: mine.txt" in text  # exists from the working directory: kept
    args = ["-o", "Global.infer_img=ppocr/utils/dict/ppocrv5_dict.txt", "Global.epoch_num=1"]
    assert resolve_overrides(args, root, cwd=str(work))[1].startswith("Global.infer_img=" + root)


def test_rec_ppbackbone_needs_an_svtr_algorithm():
    cfg = {"Architecture": {"model_type": "rec", "algorithm": "CRNN", "Backbone": {"name": "PPBackbone"}}}
    with pytest.raises(PPOCRSetupError, match=r"Architecture.algorithm='CRNN' with a rec PPBackbone; use SVTR_LCNet "
                                              r"or SVTR_HGNet"):
        check_ppbackbone_sections(cfg, "c.yml")
    cfg["Architecture"]["algorithm"] = "SVTR_LCNet"
    assert check_ppbackbone_sections(cfg)[0][0] == "Architecture.Backbone"


@pytest.mark.timeout(60)
def test_wrong_checkout_path_is_one_error_line(tmp_path):
    tool = tmp_path / "train.py"
    tool.write_text("")
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "ppocr_run.py"), "--ppocr-root",
                           str(tmp_path / "nope"), str(tool), "-c", "x.yml"], capture_output=True, text=True,
                          timeout=55, env=dict(os.environ, PYTHONPATH=""))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip() and "ccache" not in line
             and "warnings.warn" not in line]
    assert lines == [f"Error: --ppocr-root={tmp_path / 'nope'}: no such directory (expected a PaddleOCR checkout "
                     f"holding ppocr/modeling/backbones/__init__.py and tools/program.py)"]


# ---------------------------------------------------------------------------- the OCR demo set
def test_ocr_demo_set_is_deterministic_paddleocr_labels(tmp_path, monkeypatch):
    """Rec lines (48 px high, labels of the dictionary's characters) and det pages (boxes inside the page,
    around the drawn text), in PaddleOCR's SimpleDataSet format; the same bytes on a second write."""
    from PIL import Image

    from ppbackbone.data import ocr_demo
    monkeypatch.setattr(ocr_demo, "OCR_DEMO_COUNTS", {"rec": {"train": 4, "val": 2}, "det": {"train": 3, "val": 2}})
    a, b = ocr_demo.ensure_ocr_demo_dataset(str(tmp_path / "a")), ocr_demo.ensure_ocr_demo_dataset(str(tmp_path / "b"))
    chars = open(os.path.join(a, "dict.txt")).read().split()
    assert "".join(chars) == ocr_demo.OCR_DEMO_CHARS
    for name in ("rec_train.txt", "rec_val.txt", "det_train.txt", "det_val.txt", "rec/train/000003.jpg",
                 "det/val/000001.jpg"):
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read(), name
    for line in open(os.path.join(a, "rec_train.txt")):
        rel, text = line.rstrip("\n").split("\t")
        assert 3 <= len(text) <= 7 and set(text) <= set(chars)
        assert Image.open(os.path.join(a, rel)).size[1] == 48
    for line in open(os.path.join(a, "det_val.txt")):
        rel, labels = line.rstrip("\n").split("\t")
        page = np.asarray(Image.open(os.path.join(a, rel)).convert("L"), dtype="float32")
        for label in json.loads(labels):
            (x0, y0), (x1, y1) = label["points"][0], label["points"][2]
            assert 0 <= x0 < x1 <= page.shape[1] and 0 <= y0 < y1 <= page.shape[0]
            assert page[y0:y1, x0:x1].min() < page.mean() - 60  # dark ink inside the box


def test_demo_paths_expand_to_the_demo_folder(monkeypatch, tmp_path):
    from ppbackbone.ppocr import demo
    monkeypatch.setattr(demo, "ensure_ocr_demo_dataset", lambda: str(tmp_path))
    changes = []
    cfg = demo.expand_demo_paths({"Train": {"dataset": {"data_dir": "ppbackbone://ocr_demo",
                                                        "label_file_list": ["ppbackbone://ocr_demo/rec_train.txt"]}},
                                  "Global": {"epoch_num": 2}}, changes)
    assert cfg["Train"]["dataset"] == {"data_dir": str(tmp_path), "label_file_list": [f"{tmp_path}/rec_train.txt"]}
    assert changes == ["Train.dataset.data_dir", "Train.dataset.label_file_list.0"]
    assert demo.expand_demo_paths(["--image_dir", "ppbackbone://ocr_demo/det/val"]) == ["--image_dir",
                                                                                       f"{tmp_path}/det/val"]


def test_pretrained_is_the_native_argument_where_the_class_has_one():
    """PaddleOCR's PPLCNetV2_base has its own `pretrained` (PaddleClas weights): the section's value reaches it."""
    backbone = create_backbone({"name": "PPBackbone", "model": "PPLCNetV2_base", "pretrained": False}, "det")
    assert backbone.out_strides == [4, 8, 16, 32] and len(backbone.out_channels) == 4


class _DetWithDBUpsample(paddle.nn.Layer):
    """The demo's backbone under the one kind of op PaddleOCR's DB necks add that oneDNN refuses: RSEFPN's /
    DBFPN's nearest `F.upsample(scale_factor=2, align_mode=1)` of the deepest map onto the next one."""

    def __init__(self):
        super().__init__()
        self.backbone = ppbackbone.create_model("pplcnetv4_tiny_det")
        c3, c4 = self.backbone.out_channels[2:]
        self.lateral = paddle.nn.Conv2D(c4, c3, 1)

    def forward(self, x):
        maps = self.backbone(x)
        return maps[2] + F.upsample(self.lateral(maps[3]), scale_factor=2, mode="nearest", align_mode=1)


@pytest.fixture(scope="module")
def db_upsample_export(tmp_path_factory):
    """(inference.json path, 64x64 batch, dygraph output) of _DetWithDBUpsample, fused backbone, random weights."""
    from ppbackbone.deploy.export import save_static
    paddle.seed(0)
    model = _DetWithDBUpsample()
    randomize_state(model, 0)
    ppbackbone.reparameterize(model.backbone)
    model.eval()
    batch = np.random.RandomState(0).standard_normal([1, 3, 64, 64]).astype("float32")
    with paddle.no_grad():
        expected = model(paddle.to_tensor(batch)).numpy()
    folder = str(tmp_path_factory.mktemp("db_upsample"))
    return os.path.join(folder, save_static(model, folder, [3, -1, -1])), batch, expected


def _paddle_has_the_onednn_interp_stop():
    if tuple(int(v) for v in paddle.__version__.split(".")[:2] if v.isdigit()) < (3, 3):
        pytest.skip(f"docs/ppocr.md's oneDNN note is about Paddle 3.3's interp ops; this is {paddle.__version__}")


@pytest.mark.timeout(120)
def test_det_demo_onednn_failure_is_paddles_interp_op_not_the_backbone(db_upsample_export):
    """docs/ppocr.md: the det demo's export stops Paddle Inference 3.3 with oneDNN on (`ConvertPirAttribute2Runtime
    Attribute not support [pir::ArrayAttribute<pir::DoubleAttribute>]`) because of the interp ops of PaddleOCR's
    neck, whose `scale` Paddle 3.3 keeps as an array of doubles; the backbone has no such attribute. Checks both
    halves on a 64x64 export, and fails once Paddle runs the op under oneDNN (then the docs' note is stale)."""
    from ppbackbone.deploy.export import _json_ops
    from ppbackbone.deploy.runtimes import PaddleBackend
    _paddle_has_the_onednn_interp_stop()
    model_file, batch, expected = db_upsample_export
    with open(model_file, encoding="utf-8") as f:
        ops = list(_json_ops(json.load(f)))
    double_arrays = [(op["#"], a["N"]) for op in ops for a in op.get("A", []) if isinstance(a, dict)
                     and a.get("AT", {}).get("#") == "0.a_array"
                     and any(e.get("#") == "0.a_f64" for e in a["AT"].get("D", []))]
    assert double_arrays == [("1.nearest_interp", "scale")], double_arrays  # the upsample's only; none in the backbone
    params = model_file.rsplit(".", 1)[0] + ".pdiparams"
    (got,) = PaddleBackend(model_file, params, threads=1, onednn=False).run(batch)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(expected).max())))
    try:
        PaddleBackend(model_file, params, threads=1, onednn=True).run(batch)
    except NotImplementedError as err:
        assert "ArrayAttribute<pir::DoubleAttribute>" in str(err), err
    else:
        pytest.fail(f"Paddle {paddle.__version__} now runs nearest_interp under oneDNN: drop `--enable_mkldnn False` "
                    "from docs/ppocr.md's det demo (and its note) and from tests/test_ppocr_develop.py's DEMOS")


PREDICT_STAND_IN = """import sys
import numpy as np
from paddle import inference
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
folder = args["--det_model_dir"]
config = inference.Config(folder + "/inference.json", folder + "/inference.pdiparams")
config.disable_gpu()
config.disable_glog_info()
if args.get("--enable_mkldnn") == "False":  # as PaddleOCR's create_predictor: otherwise Paddle's default (oneDNN)
    config.disable_mkldnn()
predictor = inference.create_predictor(config)
handle = predictor.get_input_handle(predictor.get_input_names()[0])
handle.reshape([1, 3, 64, 64])
handle.copy_from_cpu(np.zeros([1, 3, 64, 64], "float32"))
predictor.run()
print("The predict time of x.jpg: 0.0")
"""


@pytest.mark.timeout(120)
def test_runner_names_the_onednn_flag_when_paddle_inference_stops_on_interp_ops(db_upsample_export, tmp_path):
    """A PaddleOCR inference script (a stand-in running Paddle Inference like predict_det.py) on an export with a
    det neck's upsample: oneDNN on (the default) is one `Error:` line naming --enable_mkldnn False, which runs."""
    _paddle_has_the_onednn_interp_stop()
    root = _checkout(tmp_path / "PaddleOCR")
    with open(os.path.join(root, "ppocr", "modeling", "backbones", "__init__.py"), "w") as f:
        f.write("def build_backbone(config, model_type):\n    raise AssertionError('not used')\n")  # the plugin wraps it
    tool = os.path.join(root, "tools", "infer", "predict_det.py")
    os.makedirs(os.path.dirname(tool))
    with open(tool, "w") as f:
        f.write(PREDICT_STAND_IN)
    command = [sys.executable, os.path.join(ROOT, "tools", "ppocr_run.py"), tool, "--use_gpu", "False",
               "--det_model_dir", os.path.dirname(db_upsample_export[0])]
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run(command + ["--enable_mkldnn", "False"], capture_output=True, text=True, timeout=55, env=env)
    assert done.returncode == 0 and "The predict time" in done.stdout, done.stderr[-2000:]
    done = subprocess.run(command, capture_output=True, text=True, timeout=55, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip() and "ccache" not in line
             and "warnings.warn" not in line]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"Error: predict_det.py: Paddle Inference {paddle.__version__} with oneDNN (the CPU "
                               f"default) cannot run this model's interp ops") and \
        lines[0].endswith("Paddle issue #79749, PaddleOCR's own det exports stop the same way); run it with "
                          "--enable_mkldnn False"), lines[0]
