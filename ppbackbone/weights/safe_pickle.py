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

Bounded: a small crafted file must not hang or exhaust the process. Python's own unpickler is fast, but
its result can be a graph whose shared references make a tree walk exponential (68 levels of
`[a, a]` is 482 bytes), a memo index can make it allocate gigabytes, and a key nested a million
tuples deep crashes the interpreter when hashed. So the file is read by pickle's Python unpickler with
three limits (ppbackbone.errors.LIMITS, raised with PPBACKBONE_PICKLE_MAX_*): `pickle_max_objects`
operations, `pickle_max_bytes` allocated by the calls the file makes (arrays, bytes, copies; a length
the file declares must fit in what is left of it) and `pickle_max_depth` levels of nesting (tuples as
they are built, every container after); reference cycles are refused. Every pass over the result visits
each shared object once, so a graph costs its size, not its number of paths.
"""
import _compat_pickle
import builtins
import codecs
import collections
import io
import itertools
import os
import pickle

import numpy as np

from ..errors import LimitError, UserError, check_regular_file, limit, limit_hint

__all__ = ["load_pickle", "loads_pickle", "UnsafePickleError", "PickleLimitError", "ALLOWED_GLOBALS"]


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A pickle that names a global outside the allow-list (it could run code); nothing was called."""


class PickleLimitError(UnsafePickleError, LimitError):
    """A pickle past one of the reading limits (depth, operations, bytes) or holding a reference cycle."""


class _NdarrayType:
    """What `numpy.ndarray` unpickles to: the marker numpy's `_reconstruct` receives, not the class itself
    (calling the class would allocate any shape the file names)."""

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayType()


def _reconstruct(subtype, shape, dtype):
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"array subtype {subtype!r} is not allowed")
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise UnsafePickleError("numpy object arrays are not allowed (they hold arbitrary objects)")
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
    **{("builtins", name): getattr(builtins, name)
       for name in ("tuple", "list", "dict", "set", "frozenset", "int", "float", "complex", "bool", "str",
                    "bytes", "bytearray")},
    ("builtins", "eval"): _eval_dense_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _encode,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
}


_CONTAINERS = (dict, list, tuple, set, frozenset)
_HASHABLE_CONTAINERS = (tuple, frozenset)
_BUILDS = {builtins.tuple, builtins.list, builtins.dict, builtins.set, builtins.frozenset, collections.OrderedDict}


def _length(value):
    try:
        return len(value)
    except TypeError:
        return 0


def _call_cost(func, args):
    """Bytes a call to an allowed global would allocate, estimated from its arguments before it is made."""
    first = args[0] if args else None
    if func in _BUILDS:
        return 64 * _length(first)  # one slot per element, a dict entry or a set entry per item
    if func in (builtins.bytes, builtins.bytearray):
        return first if isinstance(first, int) and not isinstance(first, bool) else _length(first)
    if func is builtins.str:
        if args and not isinstance(first, (str, bytes, bytearray, int, float)):
            raise UnsafePickleError(f"builtins.str is allowed on strings, bytes and numbers only, not on "
                                    f"{type(first).__name__}")
        return 4 * _length(first)
    if func is _encode:
        return _length(first)
    if func is _reconstruct and len(args) == 3:
        shape = args[1] if isinstance(args[1], tuple) else (args[1],)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise UnsafePickleError(f"array shape {args[1]!r} is not a tuple of sizes")
        return int(np.prod(shape, dtype=object)) * np.dtype(args[2]).itemsize
    if func is _frombuffer:
        return _length(first)
    return 0


class _BoundedFile:
    """The file as the unpickler reads it: a length the pickle declares must fit in what is left of the file
    (so a 20-byte file cannot make it allocate gigabytes before finding out it is truncated)."""

    def __init__(self, file, size):
        self.file, self.size = file, size

    def _check(self, n):
        left = self.size - self.file.tell()
        if n > left:
            raise pickle.UnpicklingError(f"at byte {self.file.tell()} it declares {n} bytes of data but only {left} "
                                         f"are left: the file is truncated or not a pickle")

    def read(self, n):
        self._check(n)
        return self.file.read(n)

    def readinto(self, buffer):
        self._check(len(buffer))
        return self.file.readinto(buffer)

    def readline(self):
        return self.file.readline()


class _Dispatch(dict):
    def __missing__(self, code):
        raise pickle.UnpicklingError(f"invalid pickle opcode {bytes([code])!r}")


def _counted(handler):
    def run(unpickler):
        unpickler.operations += 1
        if unpickler.operations > unpickler.max_objects:
            unpickler.refuse(f"it makes more than {unpickler.max_objects} objects", "pickle_max_objects")
        handler(unpickler)
    return run


def _then_track(handler):
    """An opcode that builds a tuple or frozenset: its nesting is checked as it is built (hashing a key nested
    deeper than the C stack allows crashes the interpreter)."""
    def run(unpickler):
        handler(unpickler)
        unpickler.track(unpickler.stack[-1])
    return run


def _into(handler, kinds, what):
    """An opcode that fills a container (SETITEM, SETITEMS, ADDITEMS, BUILD): only the kinds it is for."""
    def run(unpickler):
        # After MARK, pickle's Python unpickler keeps the items on a fresh stack; the target is below the mark
        target = unpickler.metastack[-1][-1] if what in ("SETITEMS", "ADDITEMS") else unpickler.stack[-2 - (
            what == "SETITEM")]
        if not isinstance(target, kinds):
            raise pickle.UnpicklingError(f"{what} applied to a {type(target).__name__}, which paddle.save never "
                                         f"writes")
        handler(unpickler)
        if what == "BUILD" and isinstance(target, np.ndarray):
            unpickler.charge(target.nbytes, "numpy.ndarray.__setstate__")
    return run


def _dispatch_table():
    table = dict(pickle._Unpickler.dispatch)
    for code in (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.FROZENSET):
        table[code[0]] = _then_track(table[code[0]])
    for code, kinds, what in ((pickle.SETITEM, dict, "SETITEM"), (pickle.SETITEMS, dict, "SETITEMS"),
                              (pickle.ADDITEMS, set, "ADDITEMS"), (pickle.BUILD, (np.ndarray, np.dtype), "BUILD")):
        table[code[0]] = _into(table[code[0]], kinds, what)
    return _Dispatch({code: _counted(handler) for code, handler in table.items()})


class _RestrictedUnpickler(pickle._Unpickler):
    """pickle's Python unpickler with the allow-list and the limits (module docstring). One per file."""
    dispatch = _dispatch_table()

    def __init__(self, file, source, size):
        super().__init__(_BoundedFile(file, size), encoding="latin1")
        self.source = source
        self.operations, self.allocated = 0, 0
        self.max_objects, self.max_bytes = limit("pickle_max_objects"), limit("pickle_max_bytes")
        self.max_depth = limit("pickle_max_depth")
        self.depths, self.kept = {}, []  # nesting of the tuples/frozensets made so far (kept: their ids stay theirs)

    def refuse(self, problem, name):
        raise PickleLimitError(f"{self.source}: {problem} ({limit_hint(name)}); refused (nothing was executed). "
                               f"A paddle.save checkpoint is far below this: is the file what it claims to be?")

    def charge(self, size, what):
        self.allocated += size
        if self.allocated > self.max_bytes:
            self.refuse(f"its calls ({what}, ...) would allocate more than {self.max_bytes} bytes", "pickle_max_bytes")

    def track(self, obj):
        if not isinstance(obj, _HASHABLE_CONTAINERS):
            return
        depth = 1 + max((self.depths.get(id(item), 0) for item in obj if isinstance(item, _HASHABLE_CONTAINERS)),
                        default=0)
        if depth > self.max_depth:
            self.refuse(f"it nests tuples more than {self.max_depth} levels deep", "pickle_max_depth")
        self.depths[id(obj)] = depth
        self.kept.append(obj)

    def find_class(self, module, name):
        # Python 2 names, as protocol 2 files write them (__builtin__.tuple)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = ALLOWED_GLOBALS.get((module, name)) if isinstance(module, str) and isinstance(name, str) else None
        if found is None:
            raise UnsafePickleError(
                f"{self.source} refers to the global {module}.{name}, which a weights/checkpoint file does not need "
                f"and which could run code on loading; refused (nothing was executed). Only state dicts, optimizer "
                f"states and training states (arrays, numbers, strings, lists, dicts) are read. If you trust the "
                f"file, convert it with paddle.load + ppbackbone.save_weights in a separate process")
        if found is _NDARRAY:
            return found

        def call(*args):  # the file calls the global through this: charged, and its result's nesting tracked
            self.charge(_call_cost(found, args), f"{module}.{name}")
            result = found(*args)
            self.track(result)
            return result
        return call

    def load(self):
        try:
            return super().load()
        except UnsafePickleError as err:
            if self.source in str(err):
                raise
            raise UnsafePickleError(f"{self.source}: {err}; refused (nothing was executed)") from None
        except Exception as err:  # noqa: BLE001 - any failure of the format: a damaged or foreign file
            if isinstance(err, (pickle.UnpicklingError, EOFError, MemoryError)):
                raise
            raise pickle.UnpicklingError(f"{type(err).__name__}: {err}") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source} uses pickle persistent ids ({pid!r}), which paddle.save never writes")


def _children(obj):
    return itertools.chain(obj.keys(), obj.values()) if isinstance(obj, dict) else iter(obj)


def _walk(root, source, max_depth):
    """The containers of `root`, children before parents, each shared one once. Refuses object arrays,
    reference cycles and nesting past `max_depth`, without recursion (a crafted file may nest deeply)."""
    def too_deep():
        raise PickleLimitError(f"{source}: it nests containers more than {max_depth} levels deep "
                               f"({limit_hint('pickle_max_depth')}); refused")

    def check_array(value):
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise UnsafePickleError(f"{source} holds a numpy object array, which a weights file never needs")

    check_array(root)
    if not isinstance(root, _CONTAINERS):
        return []
    order, done, active = [], {}, {id(root)}
    stack = [[root, _children(root), 0]]  # container, its remaining children, deepest child so far
    while stack:
        frame = stack[-1]
        for child in frame[1]:
            if not isinstance(child, _CONTAINERS):
                check_array(child)
                continue
            key = id(child)
            if key in done:
                if len(stack) + done[key] > max_depth:
                    too_deep()
                frame[2] = max(frame[2], done[key])
                continue
            if key in active:
                raise PickleLimitError(f"{source}: it holds a reference cycle (a container inside itself), which "
                                       f"paddle.save never writes; refused")
            if len(stack) >= max_depth:
                too_deep()
            active.add(key)
            stack.append([child, _children(child), 0])
            break
        else:
            stack.pop()
            active.discard(id(frame[0]))
            done[id(frame[0])] = frame[2] + 1
            order.append(frame[0])
            if stack:
                stack[-1][2] = max(stack[-1][2], frame[2] + 1)
    return order


def _is_named_tensor(obj):
    """paddle.save writes a Tensor as (name, array)."""
    return isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray)


def _rebuild(root, order, convert):
    """`root` with every object `x` for which convert(x) is not x replaced, the dicts, lists and tuples
    around them copied; `order` is `_walk`'s (children first), so a shared object is converted once and
    stays shared."""
    made = {}

    def new(value):
        key = id(value)
        if key not in made:
            made[key] = convert(value)
        return made[key]

    for node in order:
        converted = convert(node)
        if converted is not node or not isinstance(node, (dict, list, tuple)):
            made[id(node)] = converted
        elif isinstance(node, dict):
            made[id(node)] = type(node)((k, new(v)) for k, v in node.items())
        else:
            made[id(node)] = type(node)(new(v) for v in node)
    return new(root)


def _join_big_arrays(obj):
    """paddle.save (protocol 2/3) splits arrays over 1 GiB into slices listed in 'UnpackBigParamInfor@@'."""
    info = obj.pop("UnpackBigParamInfor@@", None) if isinstance(obj, dict) else None  # (paddle's spelling)
    for key, spec in (info or {}).items():
        obj[key] = np.concatenate([obj.pop(part) for part in spec["slices"]]).reshape(spec["OriginShape"])
    return obj


def _to_tensor(item):
    import paddle
    if isinstance(item, np.ndarray):
        return paddle.to_tensor(item)
    tensor = paddle.to_tensor(item[1])
    tensor.name = item[0]
    return tensor


def _to_paddle(obj, order, return_numpy):
    """What paddle.load makes of the unpickled object: (name, array) tuples (or, in files without
    them, bare arrays) become tensors, or arrays when `return_numpy`."""
    obj = _join_big_arrays(obj)
    if isinstance(obj, dict) and "StructuredToParameterName@@" in obj:  # paddle.save(layer.state_dict())
        names = obj.pop("StructuredToParameterName@@")
        if not return_numpy:
            for key, name in dict(names).items():
                if isinstance(obj.get(key), np.ndarray):
                    obj[key] = _to_tensor((name, obj[key]))
        return obj
    if any(_is_named_tensor(node) for node in order):
        return _rebuild(obj, order, lambda v: (v[1] if return_numpy else _to_tensor(v)) if _is_named_tensor(v) else v)
    if return_numpy:
        return obj
    return _rebuild(obj, order, lambda v: _to_tensor(v) if isinstance(v, np.ndarray) else v)


def _load(file, source, size, return_numpy):
    unpickler = _RestrictedUnpickler(file, source, size)
    obj = unpickler.load()
    del unpickler  # its memo and tracking tables
    order = _walk(obj, source, limit("pickle_max_depth"))
    try:
        return _to_paddle(obj, order, return_numpy)
    except (KeyError, TypeError, ValueError, AttributeError) as err:  # paddle's own keys, malformed
        raise pickle.UnpicklingError(f"paddle's bookkeeping entries are malformed ({type(err).__name__}: "
                                     f"{err})") from None


def loads_pickle(data, source="<bytes>", return_numpy=True):
    """Unpickle `data` (bytes of a paddle.save file) with the allow-list and limits; see the module docstring."""
    return _load(io.BytesIO(data), source, len(data), return_numpy)


def load_pickle(path, return_numpy=True):
    """Read the paddle.save pickle at `path` without executing code: arrays (or paddle tensors when
    `return_numpy` is False) in the containers they were saved in. Raises InputFileError for a path that
    is missing or not a regular file, UnsafePickleError for a refused global, PickleLimitError past a
    limit, pickle.UnpicklingError / EOFError for a damaged file."""
    path = os.fspath(path)
    check_regular_file(path, "pickle file")
    with open(path, "rb") as f:
        return _load(f, path, os.fstat(f.fileno()).st_size, return_numpy)
