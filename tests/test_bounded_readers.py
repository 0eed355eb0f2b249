"""Bounded readers: crafted pickles, YAML, images and config values at size and depth extremes end in one
clear error (a UserError subclass naming the file, key or value, and for limits the limit and how to raise
it) or in a correct result, quickly; nothing hangs, nothing exhausts memory, nothing crashes the interpreter.

Each case has a timeout (pytest-timeout): before these readers were bounded, several of them ran for hours.
Hypothesis examples are few, derandomized and without deadline (the machine may be loaded).
"""
import collections
import io
import os
import pickle
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppbackbone.cli import error_message
from ppbackbone.errors import InputFileError, LimitError, UserError, check_regular_file, limit
from ppbackbone.weights.io import WeightsError, read_state_dict
from ppbackbone.weights.safe_pickle import PickleLimitError, UnsafePickleError, load_pickle, loads_pickle


def _settings(n):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def _shared_levels(levels, leaf=None):
    """[a, a] nested `levels` times: `levels` objects, 2**levels paths (the reported 482-byte hang at 68)."""
    node = [] if leaf is None else leaf
    for _ in range(levels):
        node = [node, node]
    return node


class _Reduce:
    """Pickles as `func(*args)` without calling it here."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ------------------------------------------------------------------------------------------------ pickles
@pytest.mark.timeout(60)
@pytest.mark.parametrize("levels", [68, 97])
def test_shared_references_cost_their_size_not_their_paths(levels):
    leaf = np.arange(3, dtype="float32")
    data = pickle.dumps({"w": _shared_levels(levels, [leaf])}, protocol=2)
    assert len(data) < 1000
    for return_numpy in (True, False):
        loaded = loads_pickle(data, return_numpy=return_numpy)["w"]
        node = loaded
        for _ in range(levels):
            assert node[0] is node[1]  # still shared, converted once
            node = node[0]
        assert np.array_equal(np.asarray(node[0]), leaf)


@pytest.mark.timeout(60)
def test_reported_pickle_fails_every_reader_with_one_clear_error(tmp_path):
    """The reported file (nested lists sharing references) as weights, pretrained weights and a resume state."""
    from ppbackbone.engine.checkpoint import CheckpointError, load_checkpoint
    path = tmp_path / "latest.pdparams"
    path.write_bytes(pickle.dumps(_shared_levels(99), protocol=2))
    assert len(path.read_bytes()) == 699
    with pytest.raises(WeightsError, match="does not hold a state dict") as err:
        read_state_dict(str(path))
    assert str(path) in str(err.value)
    for suffix in (".pdopt", ".pdstates"):
        (tmp_path / ("latest" + suffix)).write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(tmp_path / "latest"))
    assert "latest.pdstates" in str(err.value)


@pytest.mark.timeout(60)
def test_depth_past_the_limit_is_refused_and_the_variable_raises_it(monkeypatch):
    data = pickle.dumps(_shared_levels(limit("pickle_max_depth") + 20), protocol=4)
    with pytest.raises(PickleLimitError, match="more than 100 levels deep .*PPBACKBONE_PICKLE_MAX_DEPTH") as err:
        loads_pickle(data, source="deep.pdparams")
    assert "deep.pdparams" in str(err.value) and isinstance(err.value, LimitError)
    monkeypatch.setenv("PPBACKBONE_PICKLE_MAX_DEPTH", "200")
    assert len(loads_pickle(data)) == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["tuple_key", "frozenset", "tuple_reduce"])
def test_keys_nested_past_the_limit_are_refused_before_hashing(kind):
    """Hashing a key nested a million tuples deep overflows the C stack (the interpreter dies); refused first."""
    if kind == "tuple_key":  # {((((),),),...): 1} written as opcodes: EMPTY_DICT EMPTY_TUPLE TUPLE1*n ... SETITEM
        data = b"\x80\x02}" + b")" + b"\x85" * 1_000_000 + b"K\x01s."
    elif kind == "frozenset":  # MARK*n EMPTY_TUPLE FROZENSET*n: frozensets nested n deep
        data = b"\x80\x04" + b"(" * 300 + b")" + b"\x91" * 300 + b"."
    else:  # tuple([tuple([... ()])]) through the allowed builtins.tuple: (GLOBAL EMPTY_LIST)*n () (APPEND TUPLE1 REDUCE)*n
        data = b"\x80\x02" + b"c__builtin__\ntuple\n]" * 300 + b")" + b"a\x85R" * 300 + b"."
    with pytest.raises(PickleLimitError, match="nests tuples more than"):
        loads_pickle(data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("payload, expected", [
    (b"\x80\x02]r\xff\xff\xff\x7f.", []),  # LONG_BINPUT at index 2**31: a memo table of 16 GB in C
    (b"\x80\x02]p99999999999\n.", []),
])
def test_memo_indices_allocate_nothing(payload, expected):
    assert loads_pickle(payload) == expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize("payload, match", [
    (b"\x80\x04\x8e\xff\xff\xff\xff\xff\x00\x00\x00.", "declares 1099511627775 bytes"),  # BINBYTES8 of 1 TB
    (b"\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00.", "declares 4294967295 bytes"),  # a FRAME of 4 GB
    (b"\x80\x02X\xff\xff\xff\x7f", "declares 2147483647 bytes"),
    (b"\x80\x02\xff.", "invalid pickle opcode"),
    (b"\x80\x02(.", "empty"),
])
def test_declared_lengths_must_fit_in_the_file(payload, match):
    with pytest.raises((pickle.UnpicklingError, EOFError), match=match):
        loads_pickle(payload)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("obj, match", [
    (_Reduce(bytearray, 10 ** 12), "allocate more than"),
    (_Reduce(bytes, 10 ** 11), "allocate more than"),
    (_Reduce(np.core.multiarray._reconstruct, np.ndarray, (10 ** 6, 10 ** 6), b"f"), "allocate more than"),
    (_Reduce(list, "x" * 10 ** 6), None),  # fine: 64 MB at most
    (_Reduce(str, _shared_levels(60)), "builtins.str is allowed on strings, bytes and numbers only"),
])
def test_calls_are_charged_against_the_byte_limit(obj, match, monkeypatch):
    data = pickle.dumps(obj, protocol=2)
    if match is None:
        assert len(loads_pickle(data)) == 10 ** 6
        monkeypatch.setenv("PPBACKBONE_PICKLE_MAX_BYTES", str(10 ** 6))
        match = "PPBACKBONE_PICKLE_MAX_BYTES"
    with pytest.raises(UnsafePickleError, match=match):
        loads_pickle(data)


@pytest.mark.timeout(60)
def test_operation_count_and_cycles(monkeypatch):
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(PickleLimitError, match="reference cycle"):
        loads_pickle(pickle.dumps(cyclic, protocol=4), source="cycle.pdstates")
    data = pickle.dumps(list(range(5000)), protocol=4)
    assert len(loads_pickle(data)) == 5000
    monkeypatch.setenv("PPBACKBONE_PICKLE_MAX_OBJECTS", "1000")
    with pytest.raises(PickleLimitError, match="more than 1000 objects.*PPBACKBONE_PICKLE_MAX_OBJECTS"):
        loads_pickle(data)
    monkeypatch.setenv("PPBACKBONE_PICKLE_MAX_OBJECTS", "many")
    with pytest.raises(UserError, match="PPBACKBONE_PICKLE_MAX_OBJECTS='many' is not valid: expected a positive"):
        loads_pickle(data)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", ["SETITEM into a list", "BUILD on a dict", "APPEND into a dict"])
def test_opcodes_apply_only_to_their_containers(target):
    payload = {"SETITEM into a list": b"\x80\x02]K\x01K\x02s.", "BUILD on a dict": b"\x80\x02}}b.",
               "APPEND into a dict": b"\x80\x02}K\x01a."}[target]
    with pytest.raises(pickle.UnpicklingError):
        loads_pickle(payload)


def _leaves():
    arrays = st.builds(lambda n, seed: np.random.RandomState(seed).rand(n).astype("float32"),
                       st.integers(0, 4), st.integers(0, 9))
    return st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.floats(allow_nan=False), arrays)


@st.composite
def _nested(draw):
    """A structure of dicts, lists, tuples and OrderedDicts around arrays, nested up to 130 levels, with
    shared sub-structures (so the number of paths can be far larger than the number of objects)."""
    depth = draw(st.sampled_from([1, 5, 40, 99, 101, 130]))
    node = draw(_leaves())
    for level in range(depth):
        kind = draw(st.sampled_from(["list", "shared_list", "dict", "tuple", "odict"]))
        if kind == "list":
            node = [node, draw(_leaves())]
        elif kind == "shared_list":
            node = [node, node]
        elif kind == "dict":
            node = {f"k{level}": node, "leaf": draw(_leaves())}
        elif kind == "tuple":
            node = (node,)
        else:
            node = collections.OrderedDict(a=node)
    return depth, node


def _same(a, b, seen=None):
    seen = {} if seen is None else seen
    if id(a) in seen:
        return
    seen[id(a)] = True
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _same(a[key], b[key], seen)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y, seen)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b


@pytest.mark.timeout(120)
@_settings(25)
@given(case=_nested(), protocol=st.sampled_from([2, 4]))
def test_nested_structures_load_equal_or_are_refused_by_depth(case, protocol):
    depth, obj = case
    data = pickle.dumps({"state": obj}, protocol=protocol)
    if depth + 1 <= limit("pickle_max_depth"):
        _same(pickle.loads(data), loads_pickle(data))
    else:
        with pytest.raises(PickleLimitError, match="levels deep"):
            loads_pickle(data)


@pytest.mark.timeout(120)
@_settings(40)
@given(position=st.floats(0, 0.999), byte=st.integers(0, 255), cut=st.booleans(), protocol=st.sampled_from([2, 4]))
def test_damaged_weight_files_are_one_error_naming_the_file(tmp_path_factory, position, byte, cut, protocol):
    state = {"conv.weight": np.ones((2, 2), "float32"), "bn._mean": np.zeros(2, "float32"),
             "nested": [_shared_levels(20)]}
    data = bytearray(pickle.dumps(state, protocol=protocol))
    at = int(position * len(data))
    data = data[:at] if cut else data[:at] + bytes([byte]) + data[at + 1:]
    path = tmp_path_factory.mktemp("damaged") / "model.pdparams"
    path.write_bytes(bytes(data))
    try:
        read_state_dict(str(path))
    except WeightsError as err:
        assert str(path) in str(err) and "\n" not in str(err)


# ------------------------------------------------------------------------------------------------ paths
def _fifo(tmp_path, name="pipe.pdparams"):
    path = str(tmp_path / name)
    os.mkfifo(path)
    return path


@pytest.mark.timeout(60)
def test_check_regular_file_names_what_the_path_is(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    assert check_regular_file(str(tmp_path / "file.txt"), "label file") == str(tmp_path / "file.txt")
    cases = {str(tmp_path): "is a folder, not a file", _fifo(tmp_path): "is a FIFO (named pipe), not a file",
             "/dev/null": "is a character device, not a file",
             str(tmp_path / "missing.txt"): "label file not found: ",
             str(tmp_path / "file.txt" / "x"): "a part of the path is a file"}
    for path, expected in cases.items():
        with pytest.raises(InputFileError, match=expected.replace("(", r"\(").replace(")", r"\)")) as err:
            check_regular_file(path, "label file")
        assert path in str(err.value) and error_message(err.value) == str(err.value)


@pytest.mark.timeout(60)
def test_pickle_readers_refuse_fifos_and_folders_without_opening_them(tmp_path):
    from ppbackbone.engine.checkpoint import CheckpointError, load_checkpoint
    fifo = _fifo(tmp_path)  # opening it for reading would block forever: no writer
    with pytest.raises(UserError, match="is a FIFO"):
        load_pickle(fifo)
    with pytest.raises(UserError, match="is a FIFO"):
        read_state_dict(fifo)
    for suffix in (".pdparams", ".pdopt"):
        (tmp_path / ("ckpt" + suffix)).write_bytes(pickle.dumps({}, protocol=4))
    os.mkfifo(str(tmp_path / "ckpt.pdstates"))
    with pytest.raises((CheckpointError, InputFileError), match="FIFO"):
        load_checkpoint(str(tmp_path / "ckpt.pdparams")[:-len(".pdparams")])



# ------------------------------------------------------------------------------------------------ YAML and configs
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def _laughs(levels, width=10, key="label_list"):
    """`levels` anchors, each a list of `width` aliases of the one before: width**levels values once expanded."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n{key}: *l{levels - 1}\n"


@pytest.mark.timeout(60)
def test_yaml_alias_expansion_is_limited():
    from ppbackbone.config import YamlLimitError, load_yaml
    assert len(load_yaml(_laughs(4))["label_list"]) == 10  # 10**4 values: fine
    with pytest.raises(YamlLimitError, match=r"at line 6 expands to more than 1000000 values .*PPBACKBONE_YAML_MAX_NODES"):
        load_yaml(_laughs(9))
    for endless in ("&a [*a]", "a: &a {b: *a}"):
        with pytest.raises(YamlLimitError, match="refers to a value that contains it"):
            load_yaml(endless)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", ["[" * 50_000 + "]" * 50_000, "{a: " * 5000 + "1" + "}" * 5000,
                                  "".join(f"{'  ' * i}a:\n" for i in range(300)), "- " * 300 + "x"],
                         ids=["flow_lists", "flow_mappings", "block_mappings", "block_lists"])
def test_yaml_nesting_is_limited_before_recursion(text, monkeypatch):
    from ppbackbone.config import YamlLimitError, load_yaml
    with pytest.raises(YamlLimitError, match="nested more than 100 levels deep at line .*PPBACKBONE_YAML_MAX_DEPTH"):
        load_yaml(text)
    monkeypatch.setenv("PPBACKBONE_YAML_MAX_DEPTH", "100000")  # past what the interpreter's stack holds
    if text.startswith("[" * 10):
        with pytest.raises(YamlLimitError, match="nested too deeply for this reader"):
            load_yaml(text[:2000] + text[-2000:])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("base, expected", [
    ("5", "_BASE_=5 is not valid: expected a config path"), ("[1, 2]", "_BASE_=[1, 2] is not valid"),
    ("{a: 1}", "_BASE_={'a': 1} is not valid"), ("''", "_BASE_='' is not valid"),
    ("/tmp", "Config file /tmp is a folder, not a file"), ("/dev/null", "is a character device, not a file"),
])
def test_base_must_name_config_files(tmp_path, base, expected):
    from ppbackbone.config import ConfigError, load_config
    path = tmp_path / "child.yaml"
    path.write_text(f"_BASE_: {base}\nArch: {{name: pplcnet_x0_25}}\n")
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("{", r"\{")):
        load_config(str(path))


NAME_KEYS = ["Arch.name", "Optimizer.name", "Optimizer.lr.name", "DataLoader.Train.dataset.name",
             "DataLoader.Train.sampler.name", "DataLoader.Eval.dataset.name", "Infer.PostProcess.name"]
NOT_NAMES = st.one_of(st.integers(-3, 3), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                      st.lists(st.text(max_size=3), min_size=1, max_size=3),
                      st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1, max_size=2),
                      st.integers(1, 120).map(lambda n: "[" * n + "]" * n))


@pytest.mark.timeout(120)
@_settings(30)
@given(key=st.sampled_from(NAME_KEYS), value=NOT_NAMES, how=st.sampled_from(["override", "file"]))
def test_names_of_other_types_are_errors_naming_the_key(tmp_path_factory, key, value, how):
    """`-o Arch.name=[a, b]` (or the same in a file, or a value nested past the YAML depth limit): one
    ConfigError naming the key, never a TypeError/RecursionError."""
    import json

    import yaml

    from ppbackbone.config import ConfigError, load_config
    text = value if isinstance(value, str) else json.dumps(value)  # JSON is YAML
    if how == "override":
        overrides, path = [f"{key}={text}"], QUICKSTART
    else:
        config = yaml.safe_load(open(QUICKSTART))
        node = config
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        node["name"] = "@@VALUE@@"
        path = tmp_path_factory.mktemp("cfg") / "case.yaml"
        path.write_text(yaml.safe_dump(config).replace("'@@VALUE@@'", text))
        overrides = []
    with pytest.raises(ConfigError) as err:
        load_config(str(path), overrides)
    message = str(err.value)
    assert key in message or "levels deep" in message, message
    assert "\n" not in message.strip() or "YAML" in message


# ------------------------------------------------------------------------------------------------ inference.yml
@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A real export of a small classifier (32x32, 3 classes with names), made once."""
    import ppbackbone
    from ppbackbone.deploy.export import export_model
    root = tmp_path_factory.mktemp("export")
    labels = root / "labels.txt"
    labels.write_text("0 cat\n1 dog\n2 bird\n")
    weights = ppbackbone.save_weights(ppbackbone.create_model("pplcnet_x0_25", num_classes=3), str(root / "w.pdparams"))
    ops = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": 32}},
           {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "order": ""}},
           {"ToCHWImage": None}]
    config = {"Arch": {"name": "pplcnet_x0_25", "class_num": 3}, "Global": {"image_shape": [3, 32, 32]},
              "DataLoader": {"Eval": {"dataset": {"transform_ops": ops}}},
              "Infer": {"PostProcess": {"name": "Topk", "topk": 2, "class_id_map_file": str(labels)}}}
    export_model(config, str(root / "model"), weights=weights, latency_runs=0, log=lambda *a: None)
    return str(root / "model")


def _edited_export(export_dir, tmp_path, edit):
    """A copy of the export whose inference.yml went through `edit(text) -> text`."""
    import shutil
    copy = str(tmp_path / "edited")
    shutil.copytree(export_dir, copy)
    path = os.path.join(copy, "inference.yml")
    text = open(path).read()
    open(path, "w").write(edit(text))
    return copy


YML_EDITS = {
    "label_list laughs": (lambda t: t.replace("Global:", _laughs(9, key="unused") + "Global:").replace(
        "label_list: [cat, dog, bird]", "label_list: *l8"), "expands to more than 1000000 values"),
    "label name a list": (lambda t: t.replace("[cat, dog, bird]", "[[cat, [cat]], dog, bird]"),
                          "label_list[0]=['cat', ['cat']] is not a class name"),
    "label name a mapping": (lambda t: t.replace("[cat, dog, bird]", "[cat, {a: 1}, bird]"),
                             "label_list[1]={'a': 1} is not a class name"),
    "label name null": (lambda t: t.replace("[cat, dog, bird]", "[cat, dog, null]"),
                        "label_list[2]=None is not a class name"),
    "params_file outside": (lambda t: t.replace("params_file: inference.pdiparams",
                                                "params_file: ../../../etc/passwd"), "lies outside"),
    "params_file absolute": (lambda t: t.replace("params_file: inference.pdiparams", "params_file: /etc/passwd"),
                             "lies outside"),
    "params_file a list": (lambda t: t.replace("params_file: inference.pdiparams", "params_file: [a]"),
                           "Model.params_file=['a'] is not valid"),
    "onnx_file outside": (lambda t: t.replace("  mode: classification", "  mode: classification\n  onnx_file: ../x.onnx"),
                          "lies outside"),
    "shape not ints": (lambda t: t.replace("shape: [-1, 3, 32, 32]", "shape: [-1, 3, 32.5, x]"),
                       "Input.shape=[-1, 3, 32.5, 'x'] is not valid"),
    "shape zero": (lambda t: t.replace("shape: [-1, 3, 32, 32]", "shape: [-1, 3, 0, 32]"), "Input.shape="),
    "shape a number": (lambda t: t.replace("shape: [-1, 3, 32, 32]", "shape: 32"), "Input.shape=32 is not valid"),
    "topk text": (lambda t: t.replace("topk: 2", "topk: two"), "topk='two' is not valid: expected an integer >= 1"),
    "mode a list": (lambda t: t.replace("mode: classification", "mode: [classification]"), "Model.mode="),
    "outputs of strings": (lambda t: t.replace("Outputs:\n- name:", "Outputs:\n-"), "Outputs[]"),
    "int8 files a list": (lambda t: t.replace("Precisions:\n", "Precisions:\n  int8: {files: [a]}\n"),
                          "Precisions.int8.files=['a'] is not valid"),
    "int8 file outside": (lambda t: t.replace("Precisions:\n", "Precisions:\n  int8: {files: {openvino: ../x.xml}}\n"),
                          "lies outside"),
    "int8 file a number": (lambda t: t.replace("Precisions:\n", "Precisions:\n  int8: {file: 3}\n"),
                           "Precisions.int8.file=3 is not valid"),
    "nested deep": (lambda t: t.replace("topk: 2", "topk: " + "[" * 500 + "]" * 500), "levels deep"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(YML_EDITS))
def test_edited_inference_yml_is_one_error_naming_the_key(export_dir, tmp_path, case):
    from ppbackbone.deploy.export_dir import ModelDirError, read_export
    edit, expected = YML_EDITS[case]
    folder = _edited_export(export_dir, tmp_path, edit)
    with pytest.raises(ModelDirError) as err:
        read_export(folder)
    assert expected in str(err.value) and "inference.yml" in str(err.value), str(err.value)[:500]
    assert len(str(err.value)) < 2000


@pytest.mark.timeout(120)
def test_export_reads_with_names_as_strings(export_dir):
    from ppbackbone.deploy.export_dir import read_export
    export = read_export(export_dir)
    assert export.label_list == ["cat", "dog", "bird"] and export.input_shape == [-1, 3, 32, 32]
    with pytest.raises(UserError, match="lies outside"):
        export.file("../inference.yml")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("what", ["model_dir a file", "model_dir a FIFO", "inference.yml a folder",
                                  "inference.yml a FIFO"])
def test_export_paths_that_are_not_files_are_named(export_dir, tmp_path, what):
    import shutil

    from ppbackbone.deploy.export_dir import ModelDirError, read_export
    if what.startswith("model_dir"):
        folder = str(tmp_path / "not_a_dir")
        os.mkfifo(folder) if "FIFO" in what else open(folder, "w").close()
        expected = "is not a directory"
    else:
        folder = str(tmp_path / "copy")
        shutil.copytree(export_dir, folder)
        os.remove(os.path.join(folder, "inference.yml"))
        os.mkfifo(os.path.join(folder, "inference.yml")) if "FIFO" in what else \
            os.mkdir(os.path.join(folder, "inference.yml"))
        expected = "is a FIFO" if "FIFO" in what else "is a folder"
    with pytest.raises(ModelDirError, match=expected):
        read_export(folder)


# ------------------------------------------------------------------------------------------------ images
def _png_claiming(width, height):
    """A valid PNG header claiming width x height, with (almost) no pixel data: bytes, not gigabytes."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _encoded(width, height, fmt):
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.timeout(120)
@_settings(40)
@given(width=st.integers(1, 200_000), height=st.integers(1, 200_000), max_pixels=st.sampled_from([None, 1, 4096, 10 ** 6]),
       backend=st.sampled_from(["cv2", "pil"]), fmt=st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]))
def test_pixel_limit_is_checked_before_decoding(width, height, max_pixels, backend, fmt):
    """Past the limit: ImageTooLargeError naming the size and the limit, from the header alone (a crafted header
    claiming 40 gigapixels is refused at once); within it: the image decodes (or, for a header with no pixels
    behind it, an ImageDecodeError that is not about size)."""
    from ppbackbone.data.transforms import ImageDecodeError, ImageTooLargeError
    from ppbackbone.data.transforms.basic import DecodeImage
    limit_ = max_pixels or limit("image_max_pixels")
    small = width * height <= 64 * 64
    data = _encoded(min(width, 64), min(height, 64), fmt) if small else _png_claiming(width, height)
    decode = DecodeImage(backend=backend, max_pixels=max_pixels)
    if small:
        width, height = min(width, 64), min(height, 64)
    try:
        image = decode(data)
    except ImageTooLargeError as err:
        assert width * height > limit_ and f"{width}x{height} pixels" in str(err) and str(limit_) in str(err)
        assert "PPBACKBONE_IMAGE_MAX_PIXELS" in str(err)
        return
    except ImageDecodeError:
        assert not small and width * height <= limit_
        return
    assert width * height <= limit_ and image.shape == (height, width, 3)


def _image_workspace(tmp_path, lines):
    root = tmp_path / "images"
    root.mkdir()
    (root / "ok.png").write_bytes(_encoded(20, 20, "PNG"))
    (root / "huge.png").write_bytes(_png_claiming(20000, 20000))
    (tmp_path / "outside.png").write_bytes(_encoded(20, 20, "PNG"))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{line}\n" for line in lines))
    return str(root), str(labels)


DECODE_OPS = [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": 16}}]


@pytest.mark.timeout(60)
def test_training_images_over_the_pixel_limit_are_named(tmp_path):
    from ppbackbone.data.dataset import DatasetError, ImageNetDataset
    root, labels = _image_workspace(tmp_path, ["ok.png 0", "huge.png 1"])
    dataset = ImageNetDataset(root, labels, DECODE_OPS, class_num=2)
    assert dataset[0][0].shape == (16, 16, 3) or dataset[0][0].shape == (3, 16, 16)
    with pytest.raises(DatasetError, match=r"huge\.png.*image of 20000x20000 pixels .* over the limit of 178956970"):
        dataset[1]
    ops = [{"DecodeImage": {"max_pixels": 400_000_000}}] + DECODE_OPS[1:]  # raised: decoding is tried (no pixels)
    with pytest.raises(DatasetError, match=r"huge\.png") as err:
        ImageNetDataset(root, labels, ops, class_num=2)[1]
    assert "over the limit" not in str(err.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("line, expected", [
    ("../outside.png 0", r"labels\.txt:2: image path '\.\./outside\.png' lies outside"),
    ("sub/../../outside.png 0", "lies outside"),
    ("/etc/passwd 0", "lies outside"),
    ("pipe.png 0", r"labels\.txt:2: image .*pipe\.png is a FIFO"),
    ("folder.png 0", "is a folder, not a file"),
])
def test_label_lines_must_name_files_inside_image_root(tmp_path, line, expected):
    from ppbackbone.data.dataset import DatasetError, ImageNetDataset
    root, labels = _image_workspace(tmp_path, ["ok.png 0", line])
    os.mkfifo(os.path.join(root, "pipe.png"))
    os.mkdir(os.path.join(root, "folder.png"))
    with pytest.raises(DatasetError, match=expected):
        ImageNetDataset(root, labels, DECODE_OPS, class_num=2)
    for label_file in (root, os.path.join(root, "pipe.png")):  # the label file itself a folder / a FIFO
        with pytest.raises(DatasetError, match="Label file .* is a (folder|FIFO)"):
            ImageNetDataset(root, label_file, DECODE_OPS, class_num=2)


@pytest.mark.timeout(180)
def test_infer_cli_names_the_image_past_the_limit_and_keeps_going(export_dir, tmp_path):
    """tools/infer.py: the over-limit image is one `Error:` line (exit 3, the others classified), and
    --max-image-pixels lowers the limit; a FIFO among the images is named, not opened. Run as a process, as a
    user runs it (an in-process Paddle Inference run changes how later in-process training sums)."""
    import subprocess
    import sys
    from ppbackbone.cli import EXIT_PARTIAL
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_ok.png").write_bytes(_encoded(40, 30, "PNG"))
    (folder / "b_huge.png").write_bytes(_png_claiming(20000, 20000))
    os.mkfifo(str(folder / "c_pipe.png"))
    argv = [sys.executable, os.path.join(ROOT, "tools", "infer.py"), "--model_dir", export_dir, "--image", str(folder),
            "--runtime", "paddle"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_PARTIAL, proc.stderr[-2000:]
    assert "a_ok.png: " in proc.stdout and "Traceback" not in proc.stderr
    assert "Error: Could not read image" in proc.stderr
    assert "b_huge.png (DecodeImage: image of 20000x20000 pixels" in proc.stderr
    assert "c_pipe.png is a FIFO" in proc.stderr
    proc = subprocess.run(argv + ["--max-image-pixels", "100"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_PARTIAL, proc.stderr[-2000:]
    assert "a_ok.png" not in proc.stdout and "image of 40x30 pixels" in proc.stderr
    assert "limit of 100 pixels" in proc.stderr


def test_docs_state_every_limit_and_its_default():
    from ppbackbone.errors import LIMITS
    text = open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8").read()
    for name, (default, _) in LIMITS.items():
        assert f"| `{name}` | {default}" in text, f"docs/cli.md does not state limit {name} = {default}"
        assert f"PPBACKBONE_{name.upper()}" in text or "PPBACKBONE_<NAME>" in text


@pytest.mark.timeout(60)
def test_paddledetection_and_paddleocr_configs_are_read_within_the_limits(tmp_path):
    from ppbackbone.config import YamlLimitError
    from ppbackbone.ppdet.config import PPDetSetupError, check_backbone_sections
    from ppbackbone.ppocr.config import PPOCRSetupError, load_config
    laughs = tmp_path / "laughs.yml"
    laughs.write_text(_laughs(9, key="Global"))
    for read in (load_config, check_backbone_sections):
        with pytest.raises(YamlLimitError, match="laughs.yml: the value at line 6 expands"):
            read(str(laughs))
    with pytest.raises(PPOCRSetupError, match="is a FIFO"):
        load_config(_fifo(tmp_path, "ocr.yml"))
    with pytest.raises(PPDetSetupError, match="is a folder"):
        check_backbone_sections(str(tmp_path))


# ------------------------------------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def eval_config(tmp_path_factory):
    """A small eval config (pplcnet_x0_25, four 16x16 images) as a file, for tools/eval.py."""
    import yaml
    root = tmp_path_factory.mktemp("cli")
    for i in range(4):
        (root / f"{i}.png").write_bytes(_encoded(16, 16, "PNG"))
    (root / "labels.txt").write_text("".join(f"{i}.png {i % 2}\n" for i in range(4)))
    config = yaml.safe_load(open(QUICKSTART))
    config["Arch"] = {"name": "pplcnet_x0_25", "class_num": 2}
    config["Global"].update(output_dir=str(root / "out"), image_shape=[3, 16, 16])
    for mode in ("Train", "Eval"):
        config["DataLoader"][mode]["dataset"] = {
            "name": "ImageNetDataset", "image_root": str(root), "cls_label_path": str(root / "labels.txt"),
            "transform_ops": [{"DecodeImage": {"to_rgb": True, "channel_first": False}}, {"ResizeImage": {"size": 16}},
                              {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3, "std": [0.5] * 3,
                                                  "order": ""}}, {"ToCHWImage": None}]}
        config["DataLoader"][mode]["sampler"]["batch_size"] = 2
        config["DataLoader"][mode]["loader"] = {"num_workers": 0}
    path = root / "eval.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "dag.pdparams").write_bytes(pickle.dumps(_shared_levels(99), protocol=2))
    (root / "deep.pdparams").write_bytes(pickle.dumps(_shared_levels(300), protocol=4))
    (root / "laughs.yaml").write_text(_laughs(9, key="unused") + path.read_text())
    (root / "base5.yaml").write_text("_BASE_: 5\n" + path.read_text())
    os.mkfifo(str(root / "pipe.yaml"))
    os.mkfifo(str(root / "pipe.pdparams"))
    return root


CLI_CASES = {  # argv after -c, what the one Error line must say
    "crafted pickle as pretrained_model": (["eval.yaml", "-o", "Global.pretrained_model={root}/dag.pdparams"],
                                           "dag.pdparams does not hold a state dict"),
    "pickle past the depth limit": (["eval.yaml", "-o", "Global.pretrained_model={root}/deep.pdparams"],
                                    "more than 100 levels deep"),
    "FIFO as pretrained_model": (["eval.yaml", "-o", "Global.pretrained_model={root}/pipe.pdparams"],
                                 "pipe.pdparams is a FIFO (named pipe), not a file"),
    "billion laughs config": (["laughs.yaml"], "laughs.yaml: the value at line 6 expands to more than 1000000"),
    "_BASE_: 5": (["base5.yaml"], "_BASE_=5 is not valid"),
    "FIFO as config": (["pipe.yaml"], "pipe.yaml is a FIFO"),
    "folder as config": ([""], "is a folder, not a file"),
    "-o name a list": (["eval.yaml", "-o", "Arch.name=[a, b]"], "Arch.name=['a', 'b'] is not valid: expected a name"),
    "-o optimizer name a mapping": (["eval.yaml", "-o", "Optimizer.name={{a: 1}}"], "Optimizer.name={'a': 1}"),
    "-o value nested 5000 deep": (["eval.yaml", "-o", "Global.epochs=" + "[" * 5000 + "]" * 5000],
                                  "nested more than 100 levels deep"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_tools_print_one_error_line_without_traceback(eval_config, capsys, monkeypatch, case):
    from ppbackbone import cli
    monkeypatch.delenv("PPBACKBONE_DEBUG", raising=False)
    args, expected = CLI_CASES[case]
    argv = ["-c", str(eval_config / args[0])] + [a.format(root=eval_config) for a in args[1:]]
    assert cli.run("eval", "evaluate", argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error")]
    assert "Traceback" not in err and len(errors) == 1, err[-2000:]
    assert expected in errors[0], errors[0][:1000]


EXTREME_VALUES = st.one_of(
    st.integers(1, 150).map(lambda n: "[" * n + "]" * n),  # nested lists, up to past the depth limit
    st.integers(1, 150).map(lambda n: "{a: " * n + "1" + "}" * n),
    st.integers(0, 100_000).map(lambda n: "[" + ", ".join(["1"] * n) + "]"),  # long lists
    st.integers(0, 1_000_000).map(lambda n: "x" * n),  # long strings
    st.sampled_from(["1" * 5000, "-" + "9" * 400, "1e400", ".nan", "-.inf", "~", "''", "[[[]]]", "{}"]))
EXTREME_KEYS = ["Global.epochs", "Global.image_shape", "Global.device", "Arch.class_num", "Arch.lr_mult_list",
                "Arch.name", "Optimizer.lr.learning_rate", "Optimizer.name", "Loss.Train", "Metric.Eval",
                "DataLoader.Train.dataset.transform_ops", "DataLoader.Train.sampler", "EMA.decay", "_BASE_"]


@pytest.mark.timeout(180)
@_settings(30)
@given(key=st.sampled_from(EXTREME_KEYS), value=EXTREME_VALUES)
def test_config_values_at_size_and_depth_extremes(eval_config, key, value):
    """`-o key=value` with values nested past the limit, very long or very large: a ConfigError naming the key or
    the limit, or a config that validates; never a RecursionError/TypeError, and fast."""
    from ppbackbone.config import ConfigError, load_config
    try:
        load_config(str(eval_config / "eval.yaml"), [f"{key}={value}"])
    except ConfigError as err:
        message = str(err)
        assert key.split(".")[-1] in message or "levels deep" in message or "values once" in message, message[:300]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("override, expected", [
    ("Global.image_shape=[3, 16.5, 16]", "Global.image_shape=[3, 16.5, 16] is not valid: expected [3, height, width]"),
    ("Global.image_shape=16", "Global.image_shape=16 is not valid"),
    ("Infer.PostProcess.topk=x", "Infer.PostProcess.topk='x' is not valid: expected an integer >= 1"),
    ("Infer.PostProcess.topk=0", "Infer.PostProcess.topk=0 is not valid"),
])
def test_shapes_and_counts_in_configs_are_typed(eval_config, override, expected):
    from ppbackbone.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(str(eval_config / "eval.yaml"), [override])


@pytest.mark.parametrize("value", ["x", -1, 0, [1], True])
def test_decode_max_pixels_is_a_positive_integer(value):
    from ppbackbone.data.transforms import TransformError, build_transforms
    with pytest.raises(TransformError, match=re.escape(f"DecodeImage: max_pixels={value!r} is not valid")):
        build_transforms([{"DecodeImage": {"max_pixels": value}}])


@pytest.mark.timeout(120)
@_settings(40)
@given(width=st.integers(1, 12), levels=st.integers(1, 12))
def test_alias_trees_load_or_are_refused_exactly_past_the_limit(width, levels):
    """`levels` anchors of `width` aliases each: loaded when the written-out document has at most yaml_max_nodes
    values (counting every key and value once per path), refused at once otherwise."""
    from ppbackbone.config import YamlLimitError, load_yaml
    sizes = [1 + width]  # l0: a list of `width` scalars
    for _ in range(1, levels):
        sizes.append(1 + width * sizes[-1])
    total = 1 + sum(1 + s for s in sizes) + 1 + sizes[-1]  # the mapping, each key and value, label_list: *l_last
    try:
        loaded = load_yaml(_laughs(levels, width))
    except YamlLimitError as err:
        assert total > limit("yaml_max_nodes") and "expands to more than" in str(err)
        return
    assert total <= limit("yaml_max_nodes") and len(loaded["label_list"]) == width
