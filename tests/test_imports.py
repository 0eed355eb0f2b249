"""The package's import structure: the layers (LAYERS below: a module imports only its own layer and earlier
ones), the leaves import nothing of the package, and no two modules import each other (directly or through
a chain), counting imports anywhere in a module, function-level ones included."""
import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ppbackbone")


def _module_name(path):
    rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path, name):
    """ppbackbone modules that `path` imports (package __init__ re-exports excluded by the caller)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ppbackbone"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ppbackbone"))
    return found


def _graph():
    modules = {}
    for folder, _, files in os.walk(ROOT):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                modules[_module_name(path)] = path
    graph = {}
    for name, path in modules.items():
        if path.endswith("__init__.py"):
            continue  # packages re-export their modules; the cycles that matter are between modules
        graph[name] = {m for m in _imports(path, name) if m in modules and m != name
                       and not modules[m].endswith("__init__.py")}
    return graph


def test_errors_module_is_a_leaf():
    graph = _graph()
    assert graph["ppbackbone.errors"] == set(), graph["ppbackbone.errors"]


# Cycles that exist on main and are being removed by an open issue; a new cycle fails the test, and
# so does an entry here once its cycle is gone (so the list cannot go stale).
KNOWN_CYCLES = set()


def _cycles(graph):
    """Each cycle once, as the tuple of its modules rotated to start at the smallest name."""
    found, state, stack = set(), {}, []

    def visit(node):
        state[node] = "active"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "active":
                cycle = stack[stack.index(nxt):]
                start = cycle.index(min(cycle))
                found.add(tuple(cycle[start:] + cycle[:start]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles_between_modules():
    cycles = _cycles(_graph())
    new = sorted(" -> ".join(c + (c[0],)) for c in cycles - KNOWN_CYCLES)
    assert not new, "import cycles: " + "; ".join(new)
    gone = sorted(" -> ".join(c) for c in KNOWN_CYCLES - cycles)
    assert not gone, f"remove from KNOWN_CYCLES (fixed): {gone}"


# ------------------------------------------------------------------------------------------- the layers
# The package's layers, lowest first (docs/design.md draws them). A module may import its own layer and
# the layers before it, never a later one: module-level and function-level imports alike, package
# __init__ files included. Each entry names top-level modules or packages of ppbackbone/.
LAYERS = (
    ("errors", "after_import", "flops", "progress", "host_checkout"),  # leaves: import nothing of the package
    ("weights",),                         # reading/writing weights, the restricted unpickler, converters
    ("arch",),                            # models, the registry, Rep fusion, build_model
    ("data",),                            # datasets, transforms, loaders, samplers, demo data
    ("engine",),                          # trainer, optimizers, EMA, checkpoints, losses, metrics
    ("config",),                          # the PaddleClas schema: loading and validating every section
    ("deploy",),                          # export, the export directory, runtimes, Predictor
    ("ppdet", "ppocr"),                   # integrations, independent of each other
    ("benchmarks", "summary", "cli"),     # what the tools call
)
LEAVES = LAYERS[0]
INDEPENDENT = ("ppdet", "ppocr")
# Names any module may import from the package root (ppbackbone/__init__.py, the public facade that
# imports every layer): the version string is metadata, not code of a later layer.
ROOT_NAMES_ALLOWED = {"__version__"}


def _layer_index():
    return {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _import_edges(path, name):
    """(target module or `ppbackbone` for the root, imported names, line) for each ppbackbone import in
    `path`, wherever it is in the file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ppbackbone":  # `from ppbackbone import x`: x is a top-level module or a root name
                for alias in node.names:
                    yield ("ppbackbone." + alias.name, (), node.lineno)
            elif target.startswith("ppbackbone."):
                yield target, tuple(a.name for a in node.names), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "ppbackbone" or alias.name.startswith("ppbackbone."):
                    yield alias.name, (), node.lineno


def _top(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _modules():
    for folder, _, files in os.walk(ROOT):
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                yield _module_name(path), path


def layer_violations():
    """One message per import that breaks the layering: `a imports b (file:line): why`."""
    index, problems = _layer_index(), []
    tops = {_top(name) for name, _ in _modules()} - {None}
    for top in sorted(tops - set(index)):
        problems.append(f"ppbackbone.{top} is in no layer: add it to LAYERS in tests/test_imports.py (and to the "
                        f"layer picture in docs/design.md)")
    for name, path in _modules():
        source = _top(name)
        if source is None or source not in index:
            continue  # the root facade may import every layer
        where = f"{os.path.relpath(path, os.path.dirname(ROOT))}:"
        for target, names, line in _import_edges(path, name):
            top = _top(target)
            if top not in tops:  # a name defined in ppbackbone/__init__.py
                if top not in ROOT_NAMES_ALLOWED:
                    problems.append(f"{name} imports ppbackbone.{top} from the package root ({where}{line}): "
                                    f"the root imports every layer; import it from the module defining it")
                continue
            if top == source:
                continue
            if source in LEAVES:
                why = f"{source} is a leaf (imports nothing of the package)"
            elif index[top] > index[source]:
                why = (f"{source} (layer {index[source]}) may not import {top} (layer {index[top]}, later); "
                       f"layers: {' < '.join('/'.join(layer) for layer in LAYERS)}")
            elif index[top] == index[source] and source in INDEPENDENT:
                why = f"the integrations {INDEPENDENT} are independent of each other"
            else:
                continue
            problems.append(f"{name} imports {target} ({where}{line}): {why}")
    return problems


def test_layers_only_import_downward():
    problems = layer_violations()
    assert not problems, "layering broken:\n" + "\n".join(problems)
