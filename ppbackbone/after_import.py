"""Run a callback once a module is imported, whichever comes first: the module or the callback.

PaddleDetection and PaddleOCR have no plug-in entry points; the plug-ins register themselves into
their builders. A plug-in imported before its host must not import the host itself (the host may
not be on sys.path yet, or another copy of it would be imported), so registration waits for the
host's own import. A leaf module: imports nothing of the package."""
import importlib.abc
import importlib.util
import sys

__all__ = ["after_import"]


class _CallAfterExec(importlib.abc.MetaPathFinder):
    """A one-shot finder for one module name: finds it with the other finders, then wraps its loader's
    exec_module so that `callback(module)` runs right after the module's code."""

    def __init__(self, name, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, callback = spec.loader.exec_module, self.callback

        def exec_then_call(module):
            exec_module(module)
            callback(module)

        spec.loader.exec_module = exec_then_call
        return spec


def after_import(name, callback):
    """Call `callback(module)` now if module `name` is imported, else right after its first import."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    if not any(isinstance(f, _CallAfterExec) and f.name == name and f.callback is callback for f in sys.meta_path):
        sys.meta_path.insert(0, _CallAfterExec(name, callback))
