"""Native backbone sections of the host frameworks: `PPBackbone: {model: PPHGNetV2, <PPHGNetV2's own keys>}`
(PaddleDetection) or `Backbone: {name: PPBackbone, model: PPLCNetV3, <PPLCNetV3's own keys>}` (PaddleOCR).

A family that is weight-compatible with a host's backbone class registers that class here, once, at
the bottom of its file (as it registers its own names with `register_model`); `host` says whose class
it is ("PaddleDetection", the default, or "PaddleOCR": each host has its own table, so the same class
name may mean different networks in the two):

    register_native("PPHGNetV2", build_native_pphgnetv2,
                    defaults=dict(arch=REQUIRED, use_lab=False, lr_mult_list=[1.0] * 5, return_idx=[1, 2, 3],
                                  freeze_stem_only=True, freeze_at=0, freeze_norm=True),
                    reference="PaddleDetection ppdet/modeling/backbones/hgnet_v2.py")

`defaults` is the native constructor's signature: every key it accepts, with the native default
(`REQUIRED` for an argument without one). `build(**args)` gets all of them (the section's values over
the defaults) and returns the ppbackbone model that is key for key the native backbone: same
parameter names, order, shapes, learning rates and trainability. `unsupported` names native
arguments that ppbackbone does not implement, mapped to the only value accepted (usually the native
default, whose behaviour we do reproduce); another value is an error naming the argument and the
class. `shared` lists the class's PaddleDetection `__shared__` keys (global config values such as
CSPResNet's width_mult), which the plugin forwards only to natives that declare them.

This module imports nothing of the families; `ppbackbone.ppdet.PPBackbone` (and ppbackbone.ppocr's) dispatches
a section to `build_native` when its `model` is a registered native class name of its host (exact spelling,
as in the host), and to `create_model` otherwise.
"""
from dataclasses import dataclass, field

from ..errors import ConfigError, suggest

__all__ = ["REQUIRED", "NativeBackbone", "register_native", "build_native", "native_names", "native_info", "is_native"]


class _Required:
    def __repr__(self):
        return "<required>"


REQUIRED = _Required()


HOSTS = ("PaddleDetection", "PaddleOCR")


@dataclass
class NativeBackbone:
    """One native backbone class of a host framework and how ppbackbone builds it."""
    name: str
    build: object
    defaults: dict
    unsupported: dict = field(default_factory=dict)
    shared: tuple = ()
    reference: str = ""
    host: str = "PaddleDetection"


_NATIVE = {host: {} for host in HOSTS}


def _table(host):
    """The table of `host` (spelled as in HOSTS, any case: "PaddleOCR", "paddleocr")."""
    spelled = {h.lower(): h for h in HOSTS}.get(str(host).lower())
    if spelled is None:
        raise ValueError(f"host={host!r}; native tables exist for {', '.join(HOSTS)}")
    return _NATIVE[spelled]


def register_native(name, build, defaults, unsupported=None, shared=(), reference="", host="PaddleDetection"):
    """Register `host`'s class `name` (e.g. "PPHGNetV2"); see the module docstring."""
    table = _table(host)
    if name in table:
        raise ValueError(f"Native {host} backbone {name!r} is registered twice")
    unsupported = dict(unsupported or {})
    extra = sorted((set(unsupported) | set(shared)) - set(defaults))
    if extra:
        raise ValueError(f"register_native({name!r}): {extra} are not in its defaults (the native signature)")
    host = next(h for h in HOSTS if h.lower() == host.lower())
    table[name] = NativeBackbone(name, build, dict(defaults), unsupported, tuple(shared), reference, host)
    return table[name]


def is_native(name, host="PaddleDetection"):
    """True when `name` is a registered native class name of `host` (exact spelling)."""
    return isinstance(name, str) and name in _table(host)


def native_names(host="PaddleDetection"):
    return sorted(_table(host))


def native_info(name, host="PaddleDetection"):
    return _table(host)[name]


def build_native(name, host="PaddleDetection", **section):
    """Build the ppbackbone model equal to `host`'s `name(**section)`.

    Errors name the argument and the native class: an argument the native class does not take, a
    required one missing, or a native argument ppbackbone does not support set to another value.
    """
    table = _table(host)
    if name not in table:
        raise ConfigError(f"{name!r} is not a {host} backbone class that ppbackbone builds.{suggest(name, table)} "
                          f"{host} classes: {', '.join(sorted(table))}")
    spec = table[name]
    host = spec.host
    unknown = sorted(set(section) - set(spec.defaults))
    if unknown:
        raise ConfigError(f"PPBackbone: {name} ({host}) has no argument(s) {unknown}."
                          f"{suggest(unknown[0], spec.defaults)} Its arguments: {', '.join(spec.defaults)}. For "
                          f"ppbackbone's own arguments use a ppbackbone model name instead of model: {name}")
    args = dict(spec.defaults)
    args.update(section)
    missing = [k for k, v in args.items() if v is REQUIRED]
    if missing:
        raise ConfigError(f"PPBackbone: {name} needs {', '.join(missing)} ({host}'s {name} has no default)")
    for key, accepted in spec.unsupported.items():
        if args[key] != accepted:
            raise ConfigError(f"PPBackbone: native argument {key}={args[key]!r} of {name} is not supported by "
                             f"ppbackbone (only {accepted!r}); remove it or use {host}'s {name}")
    for key in spec.unsupported:
        del args[key]
    return spec.build(**args)
