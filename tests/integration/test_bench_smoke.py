"""A few-second smoke run of the benchmark suite, to keep it working.

Benchmarks print figures and tests check behaviour: nothing here asserts a
figure against a target, only that the suite measures and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_module(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_quick_cli_scenario_reports_a_figure_beside_its_reference(tmp_path: Path) -> None:
    out = tmp_path / "results.json"

    done = run_module("bench.run", "--quick", "--only", "cli", "--json", str(out))

    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    [row] = report["rows"]
    assert row["scenario"] == "CLI"
    assert row["value"] > 0 and row["reference"] > 0
    assert row["ratio"] == row["value"] / row["reference"]
    assert row["passed"] in (True, False)
    assert "cronhub benchmarks" in done.stdout


def test_floor_reference_starts_every_fire_in_its_window(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([[f"j{i}", 1, 0] for i in range(5)]))
    start = int(time.time()) + 2

    done = run_module(
        "bench.references",
        "floor",
        "--jobs",
        str(jobs),
        "--start",
        str(start),
        "--end",
        str(start + 2),
    )

    assert done.returncode == 0, done.stderr
    starts = json.loads(done.stdout)["starts"]
    assert sorted((name, scheduled) for name, scheduled, _ in starts) == sorted(
        (f"j{i}", float(t)) for i in range(5) for t in (start, start + 1)
    )
    assert all(started >= scheduled for _, scheduled, started in starts)
