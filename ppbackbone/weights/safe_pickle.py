"""Reading paddle.save pickles (.pdparams, .pdopt, .pdstates, .pdema) without running code.

`paddle.load` unpickles with Python's full unpickler, which calls whatever function a file names:
a weights file downloaded from anywhere could run code when loaded. `load_pickle` uses an
unpickler that admits only the globals a state dict, an optimizer state (lr schedule included) and
our .pdstates need:

- containers and scalars: builtins tuple/list/dict/set/frozenset/int/float/complex/bool/str/bytes/
  bytearray, collections.OrderedDict;
- numpy arrays and scalars: numpy(._core|.core).multiarray._reconstruct (ndarray only),
  .multiarray.scalar, numpy(._core|.core).numeric._frombuffer, numpy.ndarray, numpy.dtype
  (object dtypes refused);
- _codecs.encode (pickle protocol 2 stores bytes through it), and builtins.eval only in the one
  form paddle writes for a DenseTensor (`eval('data', {'data': array})`, answered without eval).

Anything else is refused before it is called, with an `UnsafePickleError` naming the file and the
global. The result is post-processed as `paddle.load` does (big-array slices joined, tensors saved as
(name, array) tuples turned into arrays or tensors).
"""
import _compat_pickle
import codecs
import collections
import io
import os
import pickle

import numpy as np

from ..errors import UserError

__all__ = ["load_pickle", "loads_pickle", "UnsafePickleError", "ALLOWED_GLOBALS"]


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A pickle that names a global outside the allow-list (it could run code); nothing was called."""


def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"array subtype {subtype!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


_NUMPY_SCALAR = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray  # numpy 2 / 1


def _scalar(dtype, data=None):
    scalar = _NUMPY_SCALAR.scalar
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"numpy scalar of dtype {dtype!r} is not allowed")
    return scalar(dtype, data) if data is not None else scalar(dtype)


def _frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"array of dtype {dtype!r} is not allowed")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _dtype(*args, **kwargs):
    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:
        raise UnsafePickleError("numpy object arrays are not allowed (they hold arbitrary objects)")
    return dtype


def _encode(text, encoding="latin1"):
    if not isinstance(text, str):
        raise UnsafePickleError("_codecs.encode is allowed on strings only")
    return codecs.encode(text, encoding)


def _eval_dense_tensor(expression, namespace=None, *rest):
    """paddle.save writes a DenseTensor as eval('data', {'data': array}): answer that one form."""
    if expression != "data" or rest or not isinstance(namespace, dict) or set(namespace) != {"data"} \
            or not isinstance(namespace["data"], np.ndarray):
        raise UnsafePickleError(f"builtins.eval is allowed only in paddle's eval('data', {{'data': array}}) "
                                f"form, got eval({expression!r}, ...)")
    return namespace["data"]


ALLOWED_GLOBALS = {
    **{("builtins", name): getattr(__import__("builtins"), name)
       for name in ("tuple", "list", "dict", "set", "frozenset", "int", "float", "complex", "bool", "str",
                    "bytes", "bytearray")},
    ("builtins", "eval"): _eval_dense_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        # Python 2 names, as protocol 2 files write them (__builtin__.tuple)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.source} refers to the global {module}.{name}, which a weights/checkpoint file does not need "
                f"and which could run code on loading; refused (nothing was executed). Only state dicts, optimizer "
                f"states and training states (arrays, numbers, strings, lists, dicts) are read. If you trust the "
                f"file, convert it with paddle.load + ppbackbone.save_weights in a separate process")
        return found

    def load(self):
        try:
            return super().load()
        except UnsafePickleError as err:
            if self.source in str(err):
                raise
            raise UnsafePickleError(f"{self.source}: {err}; refused (nothing was executed)") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source} uses pickle persistent ids ({pid!r}), which paddle.save never writes")


def _check_arrays(obj, source):
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise UnsafePickleError(f"{source} holds a numpy object array, which a weights file never needs")
    if isinstance(obj, dict):
        for value in obj.values():
            _check_arrays(value, source)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _check_arrays(value, source)


def _is_named_tensor(obj):
    """paddle.save writes a Tensor as (name, array)."""
    return isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray)


def _contains(obj, condition):
    if condition(obj):
        return True
    if isinstance(obj, dict):
        return any(_contains(v, condition) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_contains(v, condition) for v in obj)
    return False


def _convert(obj, condition, convert):
    if condition(obj):
        return convert(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _convert(v, condition, convert)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v, condition, convert) for v in obj)
    return obj


def _join_big_arrays(obj):
    """paddle.save (protocol 2/3) splits arrays over 1 GiB into slices listed in 'UnpackBigParamInfor@@'."""
    info = obj.pop("UnpackBigParamInfor@@", None) if isinstance(obj, dict) else None  # (paddle's spelling)
    for key, spec in (info or {}).items():
        obj[key] = np.concatenate([obj.pop(part) for part in spec["slices"]]).reshape(spec["OriginShape"])
    return obj


def _to_paddle(obj, return_numpy):
    """What paddle.load makes of the unpickled object: (name, array) tuples (or, in files without
    them, bare arrays) become tensors, or arrays when `return_numpy`."""
    obj = _join_big_arrays(obj)
    if isinstance(obj, dict) and "StructuredToParameterName@@" in obj:  # paddle.save(layer.state_dict())
        names = obj.pop("StructuredToParameterName@@")
        if not return_numpy:
            import paddle
            for key, name in names.items():
                if isinstance(obj.get(key), np.ndarray):
                    obj[key] = paddle.to_tensor(obj[key])
                    obj[key].name = name
        return obj
    if _contains(obj, _is_named_tensor):
        if return_numpy:
            return _convert(obj, _is_named_tensor, lambda t: t[1])
        import paddle

        def to_tensor(item):
            tensor = paddle.to_tensor(item[1])
            tensor.name = item[0]
            return tensor
        return _convert(obj, _is_named_tensor, to_tensor)
    if return_numpy:
        return obj
    import paddle
    return _convert(obj, lambda v: isinstance(v, np.ndarray), paddle.to_tensor)


def loads_pickle(data, source="<bytes>", return_numpy=True):
    """Unpickle `data` (bytes of a paddle.save file) with the allow-list; see the module docstring."""
    obj = _RestrictedUnpickler(io.BytesIO(data), source).load()
    _check_arrays(obj, source)
    return _to_paddle(obj, return_numpy)


def load_pickle(path, return_numpy=True):
    """Read the paddle.save pickle at `path` without executing code: arrays (or paddle tensors when
    `return_numpy` is False) in the containers they were saved in. Raises UnsafePickleError for a
    refused global, pickle.UnpicklingError / EOFError / ValueError for a damaged file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        obj = _RestrictedUnpickler(f, path).load()
    _check_arrays(obj, path)
    return _to_paddle(obj, return_numpy)
