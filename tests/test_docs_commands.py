"""The commands in README.md and docs/*.md work as written.

Every ```bash block carries a marker, an HTML comment on the lines just above its fence (invisible in the
rendered page), holding a YAML mapping:

    <!-- docs-test: {run: quickstart, drop: "pip install -e . && ", why: "...", add: {tools/train.py: "-o ..."}} -->
    <!-- docs-test: {run: readme-eval, after: quickstart} -->
    <!-- docs-test: {skip: "needs a GPU and ImageNet"} -->

- `run: ID` makes the block runnable. It runs with bash (`set -eo pipefail`), `python` being this interpreter,
  in a temporary copy of the repository on the demo data. `after: ID` continues in the copy where block ID ran,
  after it (so a reader's order is kept and one tiny trained checkpoint serves every later block); a block
  without `after` starts in a fresh copy.
- `add: {SCRIPT: ARGS}` appends ARGS to every command of the block that calls SCRIPT: documented overrides that
  shrink a long command (one epoch, 32x32 crops). `drop: TEXT` (a string or a list, with `why`) removes a part
  that does not belong in a test run (installing the package the suite already runs in).
- `needs: [MODULE, ...]` runs the block only where those optional packages import (e.g. the `[onnx]` extra,
  which the test extra does not install); elsewhere it is skipped, naming them.
- `skip: REASON` says why a block is not run (a GPU, ImageNet, a PaddleDetection checkout, the network, minutes of
  benchmarking). A bash block with neither is a failure, so a new command cannot be left out silently.

The runnable blocks take about 3 minutes of CPU together (marked `docs_commands`; deselect with
`-m "not docs_commands"`).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND_LANGS = ("bash", "sh", "shell", "console")
MARKER = re.compile(r"<!--\s*docs-test:(.*?)-->", re.DOTALL)
KEYS = {"run", "after", "add", "drop", "why", "skip", "needs"}
COPY_IGNORE = shutil.ignore_patterns(".git", "output", "inference", "log", "__pycache__", "*.egg-info",
                                     ".pytest_cache", "build", "dist", ".venv")
BLOCK_TIMEOUT = 600


def doc_files():
    """README.md, then docs/*.md in name order: the order blocks are listed (and `after` may point back)."""
    docs = os.path.join(ROOT, "docs")
    return [os.path.join(ROOT, "README.md")] + [os.path.join(docs, n) for n in sorted(os.listdir(docs))
                                                if n.endswith(".md")]


class Block:
    """A fenced command block: where it is, its text, and its parsed marker (None when it has none)."""

    def __init__(self, path, line, lang, text, marker):
        self.path, self.line, self.lang, self.text, self.marker = path, line, lang, text, marker

    @property
    def where(self):
        return f"{os.path.relpath(self.path, ROOT)}:{self.line}"

    @property
    def id(self):
        return (self.marker or {}).get("run")


def _marker_above(lines, fence):
    """The docs-test mapping in the contiguous non-blank lines above line index `fence` (None if absent)."""
    start = fence
    while start > 0 and lines[start - 1].strip():
        start -= 1
    found = MARKER.findall("\n".join(lines[start:fence]))
    if not found:
        return None
    if len(found) > 1:
        return {"error": "more than one docs-test marker"}
    try:
        value = yaml.safe_load(found[0])
    except yaml.YAMLError as err:
        return {"error": f"not YAML: {err}"}
    return value if isinstance(value, dict) else {"error": f"not a mapping: {found[0].strip()!r}"}


def parse_blocks(path):
    """The command blocks (```bash, ```sh, ```shell, ```console) of one markdown file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        match = re.match(r"^```\s*([\w-]*)", lines[index])
        if not match:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if match.group(1) in COMMAND_LANGS:
            blocks.append(Block(path, index + 1, match.group(1), "\n".join(lines[index + 1:end]),
                                _marker_above(lines, index)))
        index = end + 1
    return blocks


BLOCKS = [block for path in doc_files() for block in parse_blocks(path)]
RUNNABLE = [block for block in BLOCKS if block.id]
BY_ID = {block.id: block for block in RUNNABLE}


def marker_problems(block, known_ids):
    """What is wrong with a block's marker ([] when it is usable); `known_ids` are the ids listed before it."""
    marker = block.marker
    if marker is None:
        return ["no <!-- docs-test: {...} --> marker: say `run: ID` or `skip: REASON`"]
    if "error" in marker:
        return [f"docs-test marker: {marker['error']}"]
    problems = [f"unknown marker key {key!r} (known: {', '.join(sorted(KEYS))})" for key in marker if key not in KEYS]
    if bool(marker.get("run")) == bool(marker.get("skip")):
        problems.append("say exactly one of `run: ID` or `skip: REASON`")
    if marker.get("skip") and set(marker) - {"skip"}:
        problems.append(f"a skipped block takes no other keys, got {sorted(set(marker) - {'skip'})}")
    if "after" in marker and marker["after"] not in known_ids:
        problems.append(f"after: {marker['after']!r} is not the id of a runnable block above it")
    if marker.get("drop") and not marker.get("why"):
        problems.append("drop needs a `why`")
    text = _joined(block.text)
    for part in _drops(marker):
        if part not in text:
            problems.append(f"drop: {part!r} is not in the block")
    for script in (marker.get("add") or {}):
        if not any(script in command for command in _commands(text)):
            problems.append(f"add: no command of the block calls {script}")
    return problems


def _drops(marker):
    drop = marker.get("drop") or []
    return [drop] if isinstance(drop, str) else list(drop)


def _joined(text):
    """The block with backslash-continued lines joined (what bash runs)."""
    return re.sub(r"\\\n\s*", "", text)


def _split_comment(line):
    """(command, trailing comment) of one shell line (a ` #` outside quotes starts a comment)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index:]
    return line, ""


def _commands(text):
    return [_split_comment(line)[0] for line in text.splitlines() if _split_comment(line)[0].strip()]


def runnable_script(block):
    """The shell text the test runs for a block: continuations joined, `drop` parts removed, `add` arguments
    appended to each command that calls the named script."""
    marker = block.marker
    text = _joined(block.text)
    for part in _drops(marker):
        text = text.replace(part, "")
    lines = []
    for line in text.splitlines():
        command, comment = _split_comment(line)
        for script, args in (marker.get("add") or {}).items():
            if script in command:
                tail = command[command.index(script):]
                assert not re.search(r"&&|\|\||;|\|", tail), (
                    f"{block.where}: add {script}: its command is not the last of the line: {line!r}")
                command = f"{command} {args}"
        lines.append(f"{command}  {comment}".rstrip())
    return "set -eo pipefail\n" + "\n".join(lines) + "\n"


def test_every_command_block_is_marked():
    """A bash block without a usable marker fails: a new command must be run, or say why it cannot be."""
    seen, problems = set(), []
    for block in BLOCKS:
        problems += [f"{block.where}: {p}" for p in marker_problems(block, seen)]
        if block.id:
            if block.id in seen:
                problems.append(f"{block.where}: run id {block.id!r} is used twice")
            seen.add(block.id)
    assert not problems, "\n".join(problems)
    assert RUNNABLE, "no runnable command block found"


def test_ci_still_reads_the_readme_test_command():
    """.ci/run takes the first ```bash block after <!-- test-command -->; the docs-test markers must not hide it."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        after = text.split(marker, 1)[1]
        block = after.split("```bash\n", 1)[1].split("```", 1)[0]
        assert "python" in block and "```" not in after.split("```bash\n", 1)[0], marker


def test_runnable_script_applies_the_marker():
    block = Block("README.md", 1, "bash", "pip install -e . && python tools/train.py -c q.yaml  # note\n"
                  "python tools/eval.py \\\n    -c q.yaml",
                  {"run": "x", "drop": "pip install -e . && ", "why": "w", "add": {"tools/train.py": "-o A=1"}})
    assert runnable_script(block) == ("set -eo pipefail\npython tools/train.py -c q.yaml -o A=1  # note\n"
                                      "python tools/eval.py -c q.yaml\n")


class Runner:
    """Runs blocks in reading order: a block's `after` chain first (once), in that chain's copy of the repo."""

    def __init__(self, base):
        self.base, self.copies, self.results = base, {}, {}

    def workdir(self, block):
        root = block
        while root.marker.get("after"):
            root = BY_ID[root.marker["after"]]
        if root.id not in self.copies:
            path = os.path.join(self.base, root.id)
            shutil.copytree(ROOT, path, ignore=COPY_IGNORE)
            self.copies[root.id] = path
        return self.copies[root.id]

    def run(self, block):
        """(ok, report) of a block, running what it follows first."""
        if block.id in self.results:
            return self.results[block.id]
        after = block.marker.get("after")
        if after:
            ok, _ = self.run(BY_ID[after])
            if not ok:
                self.results[block.id] = (False, f"it follows {after!r} ({BY_ID[after].where}), which failed")
                return self.results[block.id]
        script = runnable_script(block)
        env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
                   PYTHONDONTWRITEBYTECODE="1")
        env.pop("PPBACKBONE_DEBUG", None)
        try:
            proc = subprocess.run(["bash", "-c", script], cwd=self.workdir(block), env=env, capture_output=True,
                                  text=True, timeout=BLOCK_TIMEOUT)
            ok, output = proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stdout[-3000:]}" \
                                               f"\n--- stderr ---\n{proc.stderr[-3000:]}"
        except subprocess.TimeoutExpired as err:
            ok, output = False, f"timed out after {BLOCK_TIMEOUT} s\n{(err.stderr or b'')[-3000:]!r}"
        self.results[block.id] = (ok, f"ran:\n{script}{output}")
        return self.results[block.id]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return Runner(str(tmp_path_factory.mktemp("docs_commands")))


@pytest.mark.docs_commands
@pytest.mark.timeout(BLOCK_TIMEOUT * 3)
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_documented_command_runs(block, runner):
    problems = marker_problems(block, set(BY_ID))
    assert not problems, f"{block.where}: {problems}"
    missing = [name for name in block.marker.get("needs") or () if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{block.where} needs {', '.join(missing)} (not installed)")
    ok, report = runner.run(block)
    assert ok, f"{block.where}: the documented command failed; {report}"
