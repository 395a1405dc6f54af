"""CI smoke of the benchmark harness: `python -m benchmarks --quick` runs, prints the
table with a row for each workload run and writes its Markdown file. Never asserts on a time.

CI runs a representative subset (the event-driven copy on Podman, whose rows include the no-op pass and a drift
repair; validate against its floor; polling): cold-apply, rollout, the list-based no-op pass and memory (about
75 s together here) run with GITOPS_BENCH_FULL=1, as does every full `python -m benchmarks` run that fills
BENCHMARKS.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALL = ("cold-apply", "noop", "rollout", "validate", "memory", "poll", "informer")
WORKLOADS = ALL if os.environ.get("GITOPS_BENCH_FULL") == "1" else ("validate", "poll", "informer")


@pytest.mark.podman
def test_quick_benchmark_run_prints_every_workload_and_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--only", ",".join(WORKLOADS), "--out", str(out)]
    cp = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    assert any(line.startswith("| Workload") and "| Result" in line and "| Target" in line for line in lines), cp.stdout
    rows = [line.split("|")[1].strip() for line in lines if line.startswith("| ") and not line.startswith("| Workload")]
    for name in WORKLOADS:
        assert name in rows, f"no row for {name}:\n{cp.stdout}"
    assert "error" not in [line.split("|")[5].strip() for line in lines if line.startswith("| ") and line.count("|") >= 6]
    text = out.read_text()
    assert "<!-- results:begin -->" in text and "<!-- results:end -->" in text
    assert all(f"| {name}" in text for name in WORKLOADS)
    assert "## Profile" in text and "## Optimisations" in text
