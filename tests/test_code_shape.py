"""The code's shape, checked like a test (issue 9): mypy --strict clean, no function over 60 lines or
cyclomatic complexity over 15 (ruff's C901), no line over 120 characters.

ruff and mypy are configured in pyproject.toml ([tool.ruff], [tool.mypy]), so `ruff check gitops_agent` and
`mypy gitops_agent` by hand give the same answer as this test. Every file of gitops_agent is checked.
The three checks take about 10 s together (mypy without a cache is most of it).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gitops_agent"
MAX_LINES = 60

# one finding of ruff (--output-format concise) or mypy: "gitops_agent/x.py:12:3: C901 ..." / "... 12: error: ..."
FINDING = re.compile(r"^(gitops_agent/\S+?\.py):\d+(:\d+)?: ")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


def findings(output: str) -> list[str]:
    """The finding lines of a ruff or mypy run (notes and summaries dropped)."""
    out = []
    for line in output.splitlines():
        found = FINDING.match(line)
        if found and ": note: " not in line:
            out.append(line)
    return out


def test_findings_filter_keeps_findings_and_drops_notes_and_the_summary() -> None:
    """The filter keeps every finding line and drops mypy's notes and the summary line."""
    output = "\n".join([
        "gitops_agent/cli.py:82:121: E501 Line too long (123 > 120)",
        "gitops_agent/agent.py:10:5: C901 `run` is too complex (20 > 15)",
        "gitops_agent/rollout.py:3: error: Missing return statement  [return]",
        "gitops_agent/podman.py:117: error: Call to untyped function \"close\" in typed context  [no-untyped-call]",
        "gitops_agent/podman.py:117: note: See https://mypy.readthedocs.io/en/stable/...",
        "Found 4 errors in 3 files (checked 31 source files)",
    ])
    assert findings(output) == [
        "gitops_agent/cli.py:82:121: E501 Line too long (123 > 120)",
        "gitops_agent/agent.py:10:5: C901 `run` is too complex (20 > 15)",
        "gitops_agent/rollout.py:3: error: Missing return statement  [return]",
        "gitops_agent/podman.py:117: error: Call to untyped function \"close\" in typed context  [no-untyped-call]",
    ]


def test_ruff_complexity_and_line_length() -> None:
    """No function of cyclomatic complexity over 15 and no line over 120 characters (pyproject.toml's [tool.ruff])."""
    cp = _run("ruff", "check", "--no-cache", "--output-format", "concise", "gitops_agent")
    assert cp.returncode in (0, 1), cp.stdout + cp.stderr  # 1: findings (filtered below); 2: ruff itself failed
    kept = findings(cp.stdout)
    assert kept == [], "\n".join(kept)


def test_mypy_strict() -> None:
    """mypy --strict (pyproject.toml's [tool.mypy]) finds no error."""
    cp = _run("mypy", "--strict", "--no-incremental", "gitops_agent")
    assert cp.returncode in (0, 1), cp.stdout + cp.stderr  # 1: errors (filtered below); 2: mypy itself failed
    checked = re.search(r"(?:checked|in) (\d+) source files?\)?$", cp.stdout.strip())
    assert checked and int(checked.group(1)) == len(list(PACKAGE.rglob("*.py"))), cp.stdout  # every module read
    kept = findings(cp.stdout)
    assert kept == [], "\n".join(kept)


def long_functions(root: Path) -> list[str]:
    """One line per function (decorators included) longer than MAX_LINES lines."""
    out = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > MAX_LINES:
                    out.append(f"{relative}:{node.lineno} {node.name}: {length} lines")
    return out


def test_no_function_over_60_lines() -> None:
    """No function in gitops_agent is longer than 60 lines."""
    long = long_functions(PACKAGE)
    assert long == [], "\n".join(long)
