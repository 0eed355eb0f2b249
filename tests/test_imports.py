"""The package's import structure: errors.py is a leaf, and no two modules import each other (directly
or through a chain), counting imports anywhere in a module, function-level ones included."""
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
