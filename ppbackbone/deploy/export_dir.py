"""The export directory format: its file names, `inference.yml` (read and write) and its versions.

One module owns the format: the exporter (export.py) writes through it, the Predictor (predictor.py)
reads through it, and neither imports the other.

    inference.json | inference.pdmodel   the program (PIR JSON; the legacy ProgramDesc with --legacy-pdmodel)
    inference.pdiparams                  the weights
    inference.yml                        everything a predictor needs besides the network
    inference.onnx                       optional: the fp32 model for ONNX Runtime / OpenVINO (paddle2onnx)
    inference_int8.onnx                  optional: the int8 (QDQ) model for ONNX Runtime, verified against fp32
    inference_int8.xml + .bin            optional: the int8 OpenVINO IR (NNCF), verified against fp32
    runtime_choice.json                  optional: Predictor(runtime="auto")'s measured choice (a cache)

Three kinds of directory are read, all through `read_export(dir) -> ExportDir`:

- format_version 2 (written now): PaddleClas's / PaddleX's sections - `Global.model_name`,
  `PreProcess.transform_ops` without DecodeImage, `PostProcess: {Topk: {topk, label_list}}` (or
  `NormalizeFeatures` for embeddings) - so PaddleX reads the directory as it is, and ppbackbone's own
  sections beside them (Model, Input, Outputs, Precisions, Verification, Versions). Classifier graphs
  end in softmax, as PaddleClas's do, unless exported with the softmax left out (`Model.softmax_in_graph`).
- format_version 1 (ppbackbone before 2026-12): ours only; DecodeImage in PreProcess, `PostProcess:
  {name: Topk, topk, softmax, label_list}`, logits out of the graph, ONNX file `model.onnx`.
- PaddleClas / PaddleX exports: no format_version; Global, PreProcess and PostProcess only; the graph's
  scores are used as they are (PaddleClas's ends in softmax; PaddleX applies none either).
"""
import os
import reprlib
import tempfile

import yaml

from ..config import load_yaml
from ..errors import ConfigError, UserError, check_inside, check_regular_file

__all__ = ["ModelDirError", "ExportDir", "read_export", "read_inference_config", "write_inference_config",
           "write_text_atomic", "find_model_file", "to_paddlex_ops", "from_paddlex_ops", "PADDLEX_OPS", "paddlex_name", "check_paddlex_name", "PADDLEX_NAMES",
           "INFERENCE_YML", "MODEL_PREFIX", "MODEL_FILES", "PARAMS_FILE", "ONNX_FILE", "ONNX_INT8_FILE", "OPENVINO_INT8_FILE",
           "LEGACY_ONNX_FILE", "CHOICE_FILE", "FORMAT_VERSION", "INPUT_NAME", "DECODE_OP", "EXPORT_MARKERS"]

INFERENCE_YML = "inference.yml"
MODEL_PREFIX = "inference"
# Program file by Paddle IR: PIR (Paddle 3.x default) writes JSON, the legacy ProgramDesc a protobuf.
MODEL_FILES = ("inference.json", "inference.pdmodel")
PARAMS_FILE = "inference.pdiparams"
ONNX_FILE = "inference.onnx"            # the name PaddleX looks for
ONNX_INT8_FILE = "inference_int8.onnx"
OPENVINO_INT8_FILE = "inference_int8.xml"  # + inference_int8.bin beside it (OpenVINO IR)
LEGACY_ONNX_FILE = "model.onnx"         # format_version 1
CHOICE_FILE = "runtime_choice.json"
FORMAT_VERSION = 2
INPUT_NAME = "x"  # PaddleClas's input name: deploy code written for PaddleClas exports keeps working
# PaddleX decodes images itself, so inference.yml's ops start after decoding; ours are built from bytes.
DECODE_OP = {"DecodeImage": {"to_rgb": True, "channel_first": False}}
EXPORT_MARKERS = (INFERENCE_YML, PARAMS_FILE) + MODEL_FILES
MODES = ("classification", "embedding", "features")

# ppbackbone name -> PaddleX model name (PaddleX 3.x's image classification models built on ours).
PADDLEX_NAMES = {
    **{f"hgnetv2_b{i}": f"PP-HGNetV2-B{i}" for i in range(7)},
    **{f"pphgnet_{size}": f"PP-HGNet_{size}" for size in ("tiny", "small", "base")},
    **{f"pplcnet_{scale}": f"PP-LCNet_{scale}" for scale in ("x0_25", "x0_35", "x0_5", "x0_75", "x1_0", "x1_5",
                                                            "x2_0", "x2_5")},
    **{f"pplcnetv2_{size}": f"PP-LCNetV2_{size}" for size in ("small", "base", "large")},
}

# Section order in inference.yml: PaddleClas's/PaddleX's first (what those tools read), then ours.
_SECTION_ORDER = ("Global", "PreProcess", "PostProcess", "format_version", "Model", "Input", "Outputs",
                  "Precisions", "Verification", "Versions")
_HEADER = ("# Written by ppbackbone's exporter. Global, PreProcess and PostProcess are PaddleClas's/PaddleX's\n"
           "# layout (PaddleX reads this directory as it is); the other sections are ppbackbone's.\n"
           "# The file ends with the line `# end of inference.yml`; without it, it was cut short.\n")
_WRITTEN_BY_US = _HEADER.splitlines()[0]
_COMPLETE_PROMISE = _HEADER.splitlines()[2]
_FOOTER = "# end of inference.yml\n"


class ModelDirError(UserError, ValueError):
    """An export directory that is missing, incomplete or corrupted; the message says what to do."""


# ----------------------------------------------------------------------------------------- PaddleX names
def paddlex_name(model_name):
    """The PaddleX model name of a ppbackbone model (`hgnetv2_b0` -> `PP-HGNetV2-B0`), or None."""
    return PADDLEX_NAMES.get(model_name)


def check_paddlex_name(model_name, requested, flag="--paddlex-name"):
    """The `Global.model_name` to write: `requested` when it names this model in PaddleX (its base name,
    or a task model of it such as `PP-LCNet_x1_0_doc_ori`), the default name when `requested` is None,
    nothing for "none". Anything else is a ValueError naming the flag, the value and what fits."""
    default = paddlex_name(model_name)
    if requested is None:
        return default
    if str(requested).lower() == "none":
        return None
    if default and (requested == default or requested.startswith(default + "_")):
        return requested
    expected = (f"{default} or a PaddleX task model of it ({default}_<task>), or none" if default else
                f"none ({model_name} has no PaddleX model)")
    raise ConfigError(f"{flag}={requested} does not fit {model_name}: expected {expected}")


# ----------------------------------------------------------------------------------------- transform ops
PADDLEX_OPS = ("ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage")  # what PaddleX's classifier builds
# Interpolation spellings: PaddleX upper-cases the name and looks it up per backend (cv2: LINEAR, pil:
# BILINEAR); PaddleClas's configs and ppbackbone's transforms use lower-case names (bilinear for both).
_TO_PADDLEX_INTERP = {"cv2": {"bilinear": "LINEAR", "lanczos": "LANCZOS4"}, "pil": {"lanczos": "LANCZOS4"}}
_FROM_PADDLEX_INTERP = {"linear": "bilinear", "lanczos4": "lanczos"}


def _op_items(ops):
    for op in ops:
        if isinstance(op, str):
            yield op, {}
        elif isinstance(op, dict) and len(op) == 1:
            name = next(iter(op))
            yield name, dict(op[name] or {})
        else:
            raise ConfigError(f"A transform op must be a one-key mapping like {{ResizeImage: {{resize_short: 256}}}}, "
                             f"got {op!r}")


def to_paddlex_ops(ops):
    """Deployment ops (ppbackbone's/PaddleClas's spelling, DecodeImage first or not) -> the list
    inference.yml holds, as PaddleClas's exporter writes it and PaddleX reads it: no DecodeImage
    (PaddleX decodes to HWC RGB itself, so any other decoding is refused), NormalizeImage with a
    numeric `scale`, `channel_num: 3` and `order: ''`, interpolation names PaddleX knows.
    Raises ValueError when the ops cannot be written so."""
    from ..data.transforms import number
    out = []
    for name, params in _op_items(ops):
        if name == "DecodeImage":
            if not params.get("to_rgb", True) or params.get("channel_first", False):
                raise ConfigError(f"DecodeImage {params} cannot be deployed: inference.yml (PaddleClas/PaddleX) has no "
                                 f"decode step and images are decoded to HWC RGB; train and evaluate with "
                                 f"DecodeImage to_rgb: True, channel_first: False")
            continue
        if name == "NormalizeImage":
            if str(params.get("order", "chw")).lower() not in ("", "hwc"):
                raise ConfigError(f"NormalizeImage order {params.get('order', 'chw')!r}: inference.yml normalizes HWC "
                                 f"images (order: ''), then ToCHWImage; set order: '' in the config's Eval ops")
            params["scale"] = number(params.get("scale", 1.0 / 255.0), "NormalizeImage.scale")
            params["order"] = ""
            params.setdefault("channel_num", 3)
        if name == "ResizeImage" and params.get("interpolation"):
            backend = str(params.get("backend") or "cv2").lower()
            interp = str(params["interpolation"]).lower()
            params["interpolation"] = _TO_PADDLEX_INTERP.get(backend, {}).get(interp, interp.upper())
        out.append({name: params or None})
    return out


def from_paddlex_ops(ops):
    """inference.yml's ops (PaddleX's spelling, no DecodeImage) -> ops ppbackbone.data.transforms
    builds from encoded bytes: DecodeImage first, lower-case interpolation names."""
    out = []
    for name, params in _op_items(ops):
        if name == "ResizeImage" and params.get("interpolation"):
            interp = str(params["interpolation"]).lower()
            params["interpolation"] = _FROM_PADDLEX_INTERP.get(interp, interp)
        out.append({name: params or None})
    if not out or next(iter(out[0])) != "DecodeImage":
        out.insert(0, dict(DECODE_OP))
    return out


# ----------------------------------------------------------------------------------------- files
def find_model_file(model_dir):
    """The program file of an export directory (`inference.json` or `inference.pdmodel`), or None."""
    for name in MODEL_FILES:
        if os.path.isfile(os.path.join(model_dir, name)):
            return name
    return None


def write_text_atomic(path, text):
    """Write `text` to `path` through a temporary file in the same directory and a rename, so a reader
    never sees a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Dumper(yaml.SafeDumper):
    """Block style, with lists of scalars (shapes, mean/std) on one line."""


def _represent_list(dumper, data):
    flow = all(isinstance(v, (int, float, str, bool)) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def write_inference_config(info, path):
    """Write inference.yml (block style, PaddleClas's sections first), atomically."""
    ordered = {k: info[k] for k in _SECTION_ORDER if k in info}
    ordered.update({k: v for k, v in info.items() if k not in ordered})
    write_text_atomic(path, _HEADER + yaml.dump(ordered, Dumper=_Dumper, sort_keys=False,
                                                 default_flow_style=False, allow_unicode=True) + _FOOTER)


# ----------------------------------------------------------------------------------------- reading
def read_inference_config(model_dir):
    """Read and check `<model_dir>/inference.yml` as it is (a dict): a ppbackbone export of
    format_version 1 or 2, or a PaddleClas/PaddleX export. Clear errors for a missing, foreign,
    newer or incomplete directory."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        kind = "does not exist" if not os.path.exists(model_dir) else "is not a directory"
        raise ModelDirError(f"model_dir {model_dir} {kind}; expected a directory written by tools/export.py")
    path = os.path.join(model_dir, INFERENCE_YML)
    if os.path.exists(path):
        try:
            check_regular_file(path, "The export's")
        except UserError as err:
            raise ModelDirError(str(err)) from None
    else:
        found = ", ".join(sorted(os.listdir(model_dir))[:6]) or "nothing"
        raise ModelDirError(f"{model_dir} has no {INFERENCE_YML} (found: {found}): not an export directory. "
                            f"Export one with tools/export.py -c <config> -o Global.pretrained_model=<weights>")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        _check_complete(text, path)
        info = load_yaml(text)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{path} is not valid YAML ({_brief(err)}); re-export the model") from None
    except ConfigError as err:  # a duplicate key
        raise ModelDirError(f"{path}: {err}; re-export the model") from None
    if not isinstance(info, dict):
        raise ModelDirError(f"{path} does not hold a mapping; re-export the model")
    version = info.get("format_version")
    if version is None and text.startswith(_WRITTEN_BY_US):
        raise ModelDirError(f"{path} was written by ppbackbone's exporter but has no format_version: it was cut "
                            f"short; re-export the model or copy the export directory again")
    if version is None:
        _check_paddleclas_layout(info, path)
        return info
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ModelDirError(f"{path} has format_version {version!r}; this ppbackbone reads 1 to "
                            f"{FORMAT_VERSION} (upgrade ppbackbone or re-export)")
    _require(info, path, {"Model": ("name", "mode", "model_file", "params_file"), "Input": ("name", "shape"),
                          "PreProcess": ("transform_ops",)})
    if not isinstance(info.get("Outputs"), list) or not info["Outputs"]:
        raise ModelDirError(f"{path} lacks the Outputs list; re-export the model")
    if info["Model"]["model_file"] not in MODEL_FILES:
        raise ModelDirError(f"{path}: Model.model_file={info['Model']['model_file']!r} is not one of {MODEL_FILES}")
    return info


def _brief(err, limit=300):
    """An error's text cut to `limit` characters (a YAML error may quote a whole line of binary data)."""
    text = str(err)
    return text if len(text) <= limit else text[:limit] + " ..."


def _check_complete(text, path):
    """A file that promises its closing line (ppbackbone's, since it has one) must end with it."""
    if _COMPLETE_PROMISE not in text:
        return
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[-1].strip() != _FOOTER.strip():
        last = len(text.splitlines())
        raise ModelDirError(f"{path} is incomplete: it stops at line {last} ({_brief(lines[-1] if lines else '', 80)!r})"
                            f" without its closing line `{_FOOTER.strip()}`; it was cut short: re-export the model "
                            f"or copy the export directory again")


def _check_label_list(label_list, classes, path):
    """label_list: absent, or a list of names (strings; integers are read as their text) with one name per class
    (when the number is known). Returns the names as strings."""
    if label_list is None:
        return None
    if not isinstance(label_list, list):
        raise ModelDirError(f"{path}: PostProcess label_list must be a list of class names, got "
                            f"{type(label_list).__name__}: {reprlib.repr(label_list)}")
    bad = next((i for i, name in enumerate(label_list) if not isinstance(name, str) and not _is_int(name)), None)
    if bad is not None:
        raise ModelDirError(f"{path}: PostProcess label_list[{bad}]={reprlib.repr(label_list[bad])} is not a class "
                            f"name: expected a string (quote names YAML reads otherwise, e.g. 'yes', 'null')")
    if classes and len(label_list) != classes:
        raise ModelDirError(f"{path}: PostProcess label_list has {len(label_list)} names but the model has {classes} "
                            f"classes (Model.class_num); the file is cut or edited: re-export the model")
    return [str(name) for name in label_list]


def _is_int(value, minimum=None):
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def _is_name(value):
    return isinstance(value, str) and bool(value)


def _is_input_shape(value):
    return isinstance(value, list) and len(value) == 4 and all(_is_int(v) and (v > 0 or v == -1) for v in value)


def _require(info, path, required):
    for section, keys in required.items():
        block = info.get(section)
        missing = [k for k in keys if not isinstance(block, dict) or k not in block]
        if missing:
            raise ModelDirError(f"{path} lacks {', '.join(f'{section}.{k}' for k in missing)}; re-export the model")


def _check_paddleclas_layout(info, path):
    """A yml without format_version must be PaddleClas's/PaddleX's: PreProcess.transform_ops at least."""
    ops = (info.get("PreProcess") or {}).get("transform_ops") if isinstance(info.get("PreProcess"), dict) else None
    if not isinstance(ops, list):
        raise ModelDirError(f"{path} has neither format_version (a ppbackbone export) nor PreProcess.transform_ops "
                            f"(a PaddleClas/PaddleX export); re-export the model")


class ExportDir:
    """What a predictor needs from an export directory, the same for every kind of directory.

    Attributes: path, kind ("ppbackbone" or "paddleclas"), format_version (None for PaddleClas),
    model_name, paddlex_name, mode ("classification", "embedding" or "features"), model_file,
    params_file, onnx_file (None when absent), input_name, input_shape ([-1, 3, H, W]; None when the
    yml does not say), output_names (None: ask the runtime), topk, label_list, softmax_in_graph,
    apply_softmax (the predictor applies one), precisions ({name: record} of verified precisions; fp32
    always), normalize_features (PostProcess NormalizeFeatures: embeddings scaled to unit length),
    info (the yml as read).
    """

    def __init__(self, model_dir, info):
        self.path = os.fspath(model_dir)
        self.info = info
        self.format_version = info.get("format_version")
        self.kind = "paddleclas" if self.format_version is None else "ppbackbone"
        self.paddlex_name = (info.get("Global") or {}).get("model_name")
        if self.kind == "paddleclas":
            self._read_paddleclas(info)
        else:
            self._read_ours(info)

    def _read_ours(self, info):
        model = self._mapping(info["Model"], "Model")
        self.model_name = self._value(model["name"], "Model.name", _is_name, "a model name")
        self.mode = self._value(model["mode"], "Model.mode", lambda v: v in MODES, " or ".join(MODES))
        self.model_file = self._value(model["model_file"], "Model.model_file", lambda v: v in MODEL_FILES,
                                      " or ".join(MODEL_FILES))
        self.params_file = self._file_name(model["params_file"], "Model.params_file")
        legacy = self.format_version == 1
        onnx = self._file_name(model.get("onnx_file") or (LEGACY_ONNX_FILE if legacy else ONNX_FILE), "Model.onnx_file")
        self.onnx_file = onnx if os.path.isfile(self.file(onnx)) else None
        self.input_name = self._value(info["Input"]["name"], "Input.name", _is_name, "an input name such as x")
        self.input_shape = list(self._value(info["Input"]["shape"], "Input.shape", _is_input_shape,
                                            "[-1, 3, H, W] with H and W positive integers (or -1: any size)"))
        self.output_names = [self._value(self._mapping(o, "Outputs[]").get("name"), "Outputs[].name", _is_name,
                                         "an output name") for o in info["Outputs"]]
        post = self._mapping(info.get("PostProcess") or {}, "PostProcess")
        if self.mode == "classification" and not post:
            raise ModelDirError(f"{self.file(INFERENCE_YML)}: a classifier's PostProcess section is missing (the file "
                                f"is cut or edited); re-export the model")
        if legacy:  # {name: Topk, topk, softmax, label_list}; the graph returns logits
            self.topk, self.label_list = post.get("topk", 5), post.get("label_list")
            self.softmax_in_graph = False
            self.apply_softmax = bool(post.get("softmax", True)) and self.mode == "classification"
        else:
            topk = self._mapping(post.get("Topk") or {}, "PostProcess.Topk")
            self.topk, self.label_list = topk.get("topk", 5), topk.get("label_list")
            self.softmax_in_graph = self._value(model.get("softmax_in_graph", False), "Model.softmax_in_graph",
                                                lambda v: isinstance(v, bool), "true or false")
            self.apply_softmax = self.mode == "classification" and not self.softmax_in_graph
        classes = self._value(model.get("class_num"), "Model.class_num", lambda v: v is None or _is_int(v, 0),
                              "an integer >= 0")
        self._read_post(self.label_list, classes)
        self.normalize_features = "NormalizeFeatures" in post
        self.precisions = dict(self._mapping(info.get("Precisions") or {"fp32": {}}, "Precisions"))
        for name, record in self.precisions.items():
            self._mapping(record or {}, f"Precisions.{name}")
        self._read_int8_files(self.precisions.get("int8") or {})
        self.precisions.setdefault("fp32", {})

    def _read_int8_files(self, record):
        """Precisions.int8 `file` and `files` (runtime -> file): names of files inside the directory."""
        if "file" in record:
            self._file_name(record["file"], "Precisions.int8.file")
        for runtime, name in self._mapping(record.get("files") or {}, "Precisions.int8.files").items():
            self._file_name(name, f"Precisions.int8.files.{runtime}")

    def _read_paddleclas(self, info):
        self.model_file = find_model_file(self.path)
        if self.model_file is None:
            raise ModelDirError(f"{self.path} has {INFERENCE_YML} but none of {', '.join(MODEL_FILES)}; "
                                f"copy the whole exported directory")
        self.params_file = PARAMS_FILE
        self.onnx_file = ONNX_FILE if os.path.isfile(self.file(ONNX_FILE)) else None
        self.model_name = self.paddlex_name or os.path.basename(os.path.normpath(self.path))
        post = self._mapping(info.get("PostProcess") or {}, "PostProcess")
        topk = post.get("Topk")
        self.mode = "classification" if isinstance(topk, dict) else "embedding"
        self.normalize_features = "NormalizeFeatures" in post
        self.topk = (topk or {}).get("topk", 5) if isinstance(topk, dict) else 5
        self._read_post((topk or {}).get("label_list") if isinstance(topk, dict) else None, None)
        self.softmax_in_graph, self.apply_softmax = None, False  # scores used as the graph gives them
        self.input_name, self.input_shape, self.output_names = INPUT_NAME, None, None
        self.precisions = {"fp32": {}}

    def _read_post(self, label_list, classes):
        """topk and label_list (names as strings) from PostProcess, checked."""
        self.topk = self._value(self.topk, "PostProcess topk", lambda v: _is_int(v, 1), "an integer >= 1")
        self.label_list = _check_label_list(label_list, classes, self.file(INFERENCE_YML))
        if self.paddlex_name is not None:
            self._value(self.paddlex_name, "Global.model_name", _is_name, "a PaddleX model name")

    def _value(self, value, key, check, expect):
        """`value` (read at `key` of inference.yml) when `check(value)`; else a ModelDirError naming both."""
        if not check(value):
            raise ModelDirError(f"{self.file(INFERENCE_YML)}: {key}={reprlib.repr(value)} is not valid: expected "
                                f"{expect}; the file is edited or damaged: re-export the model")
        return value

    def _mapping(self, value, key):
        return self._value(value, key, lambda v: isinstance(v, dict), "a mapping of keys")

    def _file_name(self, name, key):
        """A file name read from inference.yml: a string naming a file inside the export directory."""
        self._value(name, key, _is_name, "a file name inside the export directory")
        self.file(name)
        return name

    def file(self, name):
        """The path of the directory's file `name`. A name that leads outside the directory (an absolute path,
        `..`), as an edited inference.yml could hold, is a ModelDirError."""
        try:
            return check_inside(name, self.path, f"{INFERENCE_YML}: the file", error=ModelDirError)
        except TypeError:
            raise ModelDirError(f"{os.path.join(self.path, INFERENCE_YML)}: file name {reprlib.repr(name)} is not a "
                                f"string; re-export the model") from None

    def preprocess_ops(self):
        """The transform ops to build from encoded image bytes: DecodeImage first (the yml's ops of
        format 2 and of PaddleClas/PaddleX start after decoding), then the yml's ops."""
        try:
            return from_paddlex_ops(self.info["PreProcess"]["transform_ops"])
        except ValueError as err:
            raise ModelDirError(f"{self.file(INFERENCE_YML)}: PreProcess.transform_ops: {err}") from None

    def __repr__(self):
        return f"ExportDir({self.path!r}, kind={self.kind}, model={self.model_name}, mode={self.mode})"


def read_export(model_dir):
    """`ExportDir` of a ppbackbone (format 1 or 2) or PaddleClas/PaddleX export directory."""
    return ExportDir(model_dir, read_inference_config(model_dir))
