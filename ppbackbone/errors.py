"""User-error types and the small checking helpers every layer of ppbackbone uses.

This is a leaf module: it imports nothing of the package, so config, data, engine, export and the
models may all use it without import cycles.

`UserError` marks a mistake in what the user gave (a config key, a file, a flag): the command-line
tools print its message as `Error: ...` without a traceback. Anything else is a bug and keeps its
traceback.
"""
import difflib
import inspect
import logging
import operator
import os
import stat

__all__ = ["UserError", "ConfigError", "InputSizeError", "ExportError", "InputFileError", "MissingFileError", "LimitError", "suggest",
           "check_keys", "check_op_list", "accepted_params", "get_value", "warn_once", "is_off", "check_regular_file",
           "check_inside", "LIMITS", "limit", "limit_hint", "check_output_dir",
           "check_positive_int"]

logger = logging.getLogger("ppbackbone")


class UserError(Exception):
    """A problem with the user's input; the message names the key or file, the value and what fits."""


class ConfigError(UserError, ValueError):
    """A config file, key or value that cannot be used; the message says which and why."""


class ExportError(UserError, RuntimeError):
    """An export that cannot be done or did not verify; the message says why and what to change."""


class InputFileError(UserError, OSError):
    """A path given to be read that is not a regular file (a folder, a FIFO, a device, a socket) or is missing."""


class MissingFileError(InputFileError, FileNotFoundError):
    """A path given to be read that does not exist."""


class LimitError(UserError, ValueError):
    """An input past one of the named limits in LIMITS (nesting depth, object count, size, pixels); the message
    names the input, the limit, its value and how to raise it."""


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_regular_file(path, what):
    """`path` (as given) when it names a regular file (after symbolic links); else an InputFileError naming
    `what` ('weights file', 'config file', ...), the path and what it is instead (MissingFileError when it does
    not exist). Uses stat only, so a FIFO or device is refused without being opened (opening one could block)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MissingFileError(f"{what} not found: {os.fspath(path)}") from None
    except NotADirectoryError:
        raise MissingFileError(f"{what} not found: {os.fspath(path)} (a part of the path is a file, not a "
                               f"folder)") from None
    except OSError as err:  # permission, name too long, a loop of links
        raise InputFileError(f"{what} {os.fspath(path)} cannot be read: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise InputFileError(f"{what} {os.fspath(path)} is {kind}, not a file")
    return path


def check_inside(name, folder, what, error=None):
    """`folder` joined with `name` (a path read from a file: a label list's line, an inference.yml entry) when it
    stays inside `folder`; else an `error` (default UserError) naming `what`, the name and the folder. The check is
    on the path as written (an absolute path or `..` leading out is refused); symbolic links the user placed
    inside the folder are followed as usual."""
    path = os.path.join(folder, name)
    root = os.path.abspath(folder)
    if os.path.commonpath([root, os.path.normpath(os.path.join(root, name))]) != root:
        raise (error or UserError)(f"{what} {name!r} lies outside {folder or '.'}: names here must stay inside that "
                                   f"folder (no absolute paths, no '..' leading out)")
    return path


# Named limits on what a reader accepts: generous for real inputs (a Swin-L checkpoint, a 22k-class label list,
# a 100-megapixel photo), small enough that a crafted file cannot hang the process or exhaust memory.
# Each can be raised with the environment variable PPBACKBONE_<NAME> (docs/cli.md).
LIMITS = {
    "pickle_max_depth": (100, "nesting depth of the containers in a .pdparams/.pdopt/.pdstates/.pdema pickle"),
    "pickle_max_objects": (10_000_000, "pickle operations (each makes at most one object) in one file"),
    "pickle_max_bytes": (8 << 30, "bytes the calls in one pickle may allocate (arrays, bytes, strings, copies)"),
    "yaml_max_depth": (100, "nesting depth of a YAML document (configs, inference.yml, -o values)"),
    "yaml_max_nodes": (1_000_000, "values in a YAML document once its aliases (*name) are expanded"),
    "image_max_pixels": (178_956_970, "pixels (width x height) of one image, checked before decoding"),
}


def limit(name):
    """The value of limit `name` (a key of LIMITS): the environment variable PPBACKBONE_<NAME> when set (a
    positive integer; anything else is a ConfigError naming it), else the default."""
    default, _ = LIMITS[name]
    variable = f"PPBACKBONE_{name.upper()}"
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{variable}={text!r} is not valid: expected a positive integer (default {default})")
    return value


def limit_hint(name):
    """How to raise limit `name`, for error messages."""
    return f"limit {name}={limit(name)}; raise it with the environment variable PPBACKBONE_{name.upper()}"


class InputSizeError(UserError, ValueError):
    """An input tensor whose size a model cannot take; the message names the size and what fits."""


def suggest(name, options):
    """' Did you mean: a, b?' for the options closest to `name` ('' when none is close)."""
    options = [str(o) for o in options]
    lowered = str(name).lower()
    exact = [o for o in options if o.lower() == lowered]
    contains = [o for o in options if lowered and len(lowered) >= 3 and lowered in o.lower()]
    close = difflib.get_close_matches(str(name), options, n=3, cutoff=0.6)
    ranked = list(dict.fromkeys(exact + close + contains))[:3]
    return f" Did you mean: {', '.join(ranked)}?" if ranked else ""


_WARNED = set()


def warn_once(key, message):
    """Log `message` as a warning the first time `key` is seen in this process."""
    if key in _WARNED:
        return
    _WARNED.add(key)
    logger.warning(message)


def is_off(value):
    """True for the values a PaddleClas config uses to leave an option unset or disabled."""
    return value is None or value is False or value == 0 or value == "" or value == [] or value == {}


def check_positive_int(value, name):
    """`value` as an int >= 1, or a ConfigError naming `name`, the value and what is expected (a bool, a
    float or a string is refused, not converted; numpy integers are ints)."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ConfigError(f"{name}={value!r} is not valid: expected a positive integer (>= 1)")
    return number


def check_keys(mapping, allowed, where, unsupported=None):
    """Raise ConfigError for keys of `mapping` outside `allowed` (with a suggestion); warn once for
    keys in `unsupported` ({key: reason}) that are set to something other than an off value."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a mapping of keys, got {type(mapping).__name__}: {mapping!r}")
    unsupported = unsupported or {}
    for key in mapping:
        if key in allowed or mapping[key] is None:  # a null value is an unset key
            continue
        if key in unsupported:
            if not is_off(mapping[key]):
                warn_once(f"{where}.{key}", f"{where}.{key} (PaddleClas) is not supported and is ignored: "
                                            f"{unsupported[key]}")
            continue
        raise ConfigError(f"unknown key {where}.{key}.{suggest(key, allowed)} Allowed in {where}: "
                          f"{', '.join(allowed)}")


def accepted_params(cls):
    """Keyword parameters a class's constructor accepts (None when it takes **kwargs)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n in params if n != "self"]


def check_op_list(entries, registry, where, unsupported=(), injected=()):
    """Check a PaddleClas op list (`[{Name: {param: value}}, ...]`): each entry one key, a name in
    `registry` (a dict name -> class) and parameters its constructor accepts. Names in
    `unsupported` warn once and are reported back; `injected` parameters are filled in by us
    (e.g. class_num) and may not be set. Returns the list of unsupported names found."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{where} must be a list of one-key mappings like [{{Name: {{...}}}}], got {entries!r}")
    skipped = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {entry: None}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{where}[{index}] must be a one-key mapping like {{Name: {{param: value}}}}, "
                              f"got {entry!r}")
        (name, params), = entry.items()
        if name in unsupported:
            warn_once(f"{where}:{name}", f"{where}: {name} (PaddleClas) is not supported and is skipped")
            skipped.append(name)
            continue
        if name not in registry:
            raise ConfigError(f"{where}[{index}]: unknown {name!r}.{suggest(name, registry)} "
                              f"Known: {', '.join(registry)}")
        if params is None:
            continue
        if not isinstance(params, dict):
            raise ConfigError(f"{where}[{index}] {name}: parameters must be a mapping, got {params!r}")
        accepted = accepted_params(registry[name])
        if accepted is None:
            continue
        accepted = [a for a in accepted if a not in injected]
        bad = [k for k in params if k not in accepted]
        if bad:
            raise ConfigError(f"{where}[{index}] {name}: unknown parameter(s) {bad}.{suggest(bad[0], accepted)}"
                              f" Accepted: {', '.join(accepted) or '(none)'}")
    return skipped


_MISSING = object()


def get_value(config, path, default=_MISSING, kind=None, check=None, expect=None):
    """The value at dotted `path` ('Global.epochs'), `default` when absent or null. `kind` (a type or
    tuple) and `check` (a predicate) validate it; a failure is a ConfigError naming the key, the value
    and `expect` (what is allowed)."""
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            if default is _MISSING:
                raise ConfigError(f"{path} is required ({expect or 'see docs/training.md'})")
            return default
        node = node[part]
    value = node
    ok = True
    if kind is not None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if bool not in kinds and isinstance(value, bool):
            ok = False
        elif not isinstance(value, kinds):
            ok = False
    if ok and check is not None:
        ok = bool(check(value))
    if not ok:
        raise ConfigError(f"{path}={value!r} is not valid: expected {expect or kind}")
    return value


def check_output_dir(path, key, value=None):
    """`path`, after a ConfigError naming `key` and its `value` (default: `path`) when `path` (a folder to
    write into, created when missing) is a file, lies under a file, or cannot be written (permissions, a
    read-only file system)."""
    value = path if value is None else value
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"{key}={value!r}: {probe} is a file, not a folder; {key} must name a folder "
                          f"(created when missing)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value!r}: cannot write into {probe} (no permission, or a read-only file "
                          f"system): choose another folder")
    return path
