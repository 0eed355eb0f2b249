"""Size limits that keep the package readable: no module over 600 lines, no function (or method) over 60
lines, counted from its first decorator to its last line, docstring included. An exception needs an entry
below with its reason."""
import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ppbackbone")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
# "path/to/module.py" or "path/to/module.py::function": the reason it may be longer. None today.
EXCEPTIONS = {}


def _sources():
    for folder, _, files in os.walk(ROOT):
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                yield os.path.relpath(path, os.path.dirname(ROOT)).replace(os.sep, "/"), path


def _functions(tree):
    """(qualified name, lines) of every function and method, nested ones included."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    yield name, child.end_lineno - first + 1
                yield from walk(child, name + ".")
            else:
                yield from walk(child, prefix)
    yield from walk(tree, "")


def test_no_module_or_function_is_too_long():
    problems = []
    for rel, path in _sources():
        text = open(path, encoding="utf-8").read()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and rel not in EXCEPTIONS:
            problems.append(f"{rel}: {lines} lines (at most {MAX_MODULE_LINES}): split it by concern")
        for name, length in _functions(ast.parse(text)):
            if length > MAX_FUNCTION_LINES and f"{rel}::{name}" not in EXCEPTIONS:
                problems.append(f"{rel}::{name}: {length} lines (at most {MAX_FUNCTION_LINES}): cut it into "
                                f"named steps")
    assert not problems, "too long:\n" + "\n".join(problems)


def test_exceptions_are_still_needed():
    """An entry in EXCEPTIONS whose module or function is gone or short again must go (no stale list)."""
    found = {}
    for rel, path in _sources():
        text = open(path, encoding="utf-8").read()
        found[rel] = len(text.splitlines()) > MAX_MODULE_LINES
        for name, length in _functions(ast.parse(text)):
            found[f"{rel}::{name}"] = length > MAX_FUNCTION_LINES
    stale = sorted(key for key in EXCEPTIONS if not found.get(key))
    assert not stale, f"remove from EXCEPTIONS (no longer too long, or gone): {stale}"
