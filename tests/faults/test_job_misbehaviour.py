"""Jobs that misbehave: each run ends with the right status and error, on time,
with no process of it left alive, and the daemon carries on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import Figures
from tests.faults.helpers import (
    crashes,
    fault_daemon,
    history,
    log_size,
    pids_alive,
    read_pids,
    rss_kb,
    survivors,
    wait_recorded,
)
from tests.support import DaemonProcess

pytestmark = pytest.mark.timeout(120)

NEVER = '"0 0 1 1 *"'  # only manual runs, in practice
MISBEHAVE = '["@PY@", "-m", "faultjobs.misbehave"'
ONE_GB = 1024**3
OUTPUT_LIMIT = 64 * 1024

JOBS = f"""
[jobs.ignores-term]
schedule = {NEVER}
command = {MISBEHAVE}, "ignore_term", "@DIR@/ignores-term.pids"]
timeout = "1s"
kill_grace = "1s"

[jobs.forks-200]
schedule = {NEVER}
command = {MISBEHAVE}, "fork_many", "200", "@DIR@/forks-200.pids"]
timeout = "30s"
kill_grace = "1s"

[jobs.forks-200-and-hangs]
schedule = {NEVER}
command = {MISBEHAVE}, "fork_many", "200", "@DIR@/forks-200-and-hangs.pids", "stay"]
timeout = "2s"
kill_grace = "1s"

[jobs.double-forks]
schedule = {NEVER}
command = {MISBEHAVE}, "double_fork", "@DIR@/double-forks.pids"]
timeout = "30s"
kill_grace = "1s"

[jobs.closes-stdout]
schedule = {NEVER}
command = {MISBEHAVE}, "close_stdout", "1.5", "@DIR@/closes-stdout.pids"]
timeout = "30s"

[jobs.closes-stdout-and-hangs]
schedule = {NEVER}
command = {MISBEHAVE}, "close_stdout", "forever", "@DIR@/closes-stdout-and-hangs.pids"]
timeout = "1s"
kill_grace = "1s"

[jobs.writes-1g]
schedule = {NEVER}
command = "yes 'fault output line' | head -c {ONE_GB}; echo END-OF-OUTPUT"
timeout = "90s"

[jobs.exits-by-signal]
schedule = {NEVER}
command = "echo about to die; kill -USR1 $$"
timeout = "30s"

[jobs.raises]
schedule = {NEVER}
callable = "faultjobs.misbehave:raises"
timeout = "30s"

[jobs.exits-3]
schedule = {NEVER}
callable = "faultjobs.misbehave:exit3"
timeout = "30s"

[jobs.hangs-in-c]
schedule = {NEVER}
callable = "faultjobs.misbehave:hang_in_c"
kwargs = {{ pidfile = "@DIR@/hangs-in-c.pids" }}
timeout = "1s"
kill_grace = "1s"

[jobs.imports-missing]
schedule = {NEVER}
callable = "faultjobs.badimport:run"
timeout = "30s"

[jobs.canary]
schedule = "every 1s"
command = "true"
timeout = "5s"
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    with fault_daemon(JOBS) as running:
        yield running


@dataclass
class Outcome:
    row: dict[str, Any]
    reply: dict[str, Any]
    elapsed: float
    leftovers: list[int]


def run_job(daemon: DaemonProcess, name: str, tally: Figures) -> Outcome:
    """Run ``name`` by hand, wait for its end, and count what the fault left."""
    log_from = log_size(daemon)
    pidfile = daemon.folder / f"{name}.pids"
    started = time.monotonic()
    reply = daemon.call("run", job=name, wait=True, timeout=120.0)
    elapsed = time.monotonic() - started
    run_id = reply["run_id"]
    # The reply comes when the run ends; its row is written just after.
    rows = list(wait_recorded(daemon, [run_id], timeout=15).values())
    tally.faults += 1
    tally.expected += 1
    tally.recorded += len(rows)
    tally.lost += 1 - min(1, len(rows))
    tally.duplicates += max(0, len(rows) - 1)
    tally.survivors += len(survivors(run_ids=[run_id]))
    leftovers = pids_alive(read_pids(pidfile))
    tally.survivors += len(leftovers)
    tally.crashes += crashes(daemon, log_from)
    assert rows, f"run {run_id} of {name} is not in history"
    return Outcome(row=rows[0], reply=reply, elapsed=elapsed, leftovers=leftovers)


def assert_canary_on_time(daemon: DaemonProcess) -> None:
    """The every-1s job kept its beat while the misbehaving run went on."""
    runs = daemon.call("history", job="canary", limit=5)["runs"]
    assert runs and all(r["start_lag_ms"] < 1500 for r in runs), runs


def test_job_ignoring_sigterm_is_killed_after_its_grace(daemon, tally) -> None:
    out = run_job(daemon, "ignores-term", tally)
    assert out.row["status"] == "timeout"
    assert "SIGKILL" in out.row["error"]
    assert 1.8 <= out.elapsed < 6.0
    tally.check()


def test_job_forking_200_children_leaves_none_behind(daemon, tally) -> None:
    out = run_job(daemon, "forks-200", tally)
    assert out.row["status"] == "success", out.row
    assert len(read_pids(daemon.folder / "forks-200.pids")) == 200
    assert out.elapsed < 15.0
    tally.check()


def test_job_forking_200_children_that_ignore_sigterm_times_out_clean(daemon, tally) -> None:
    out = run_job(daemon, "forks-200-and-hangs", tally)
    assert out.row["status"] == "timeout", out.row
    assert len(read_pids(daemon.folder / "forks-200-and-hangs.pids")) == 200
    assert 2.0 <= out.elapsed < 10.0
    tally.check()


def test_double_forked_setsid_grandchild_is_ended_with_its_run(daemon, tally) -> None:
    out = run_job(daemon, "double-forks", tally)
    assert out.row["status"] == "success", out.row
    assert read_pids(daemon.folder / "double-forks.pids")
    assert out.elapsed < 10.0
    tally.check()


def test_job_closing_stdout_is_followed_until_it_exits(daemon, tally) -> None:
    out = run_job(daemon, "closes-stdout", tally)
    assert out.row["status"] == "success", out.row
    assert out.row["duration_ms"] >= 1400
    assert out.elapsed < 8.0
    tally.check()


def test_job_closing_stdout_and_hanging_times_out(daemon, tally) -> None:
    out = run_job(daemon, "closes-stdout-and-hangs", tally)
    assert out.row["status"] == "timeout", out.row
    assert 1.0 <= out.elapsed < 6.0
    tally.check()


def test_job_writing_1gb_keeps_the_daemon_memory_bounded(daemon, tally) -> None:
    pid = daemon.proc.pid
    before = rss_kb(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kb(pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = run_job(daemon, "writes-1g", tally)
    finally:
        done.set()
        sampler.join()
    assert out.row["status"] == "success", out.row
    logs = daemon.call("logs", job="writes-1g", run_id=out.row["id"])
    assert logs["truncated"] is True
    assert logs["output"].rstrip().endswith("END-OF-OUTPUT")
    assert len(logs["output"].encode()) <= OUTPUT_LIMIT
    assert peak - before < 64 * 1024, f"daemon RSS grew {peak - before} KiB for 1 GB of output"
    tally.check()


def test_job_dying_by_signal_is_failed_with_the_signal(daemon, tally) -> None:
    out = run_job(daemon, "exits-by-signal", tally)
    assert out.row["status"] == "failed", out.row
    assert out.row["signal"] == 10 and out.row["exit_code"] is None
    assert "signal 10" in out.row["error"] and "SIGUSR1" in out.row["error"]
    tally.check()


def test_callable_raising_fails_with_its_exception_line(daemon, tally) -> None:
    out = run_job(daemon, "raises", tally)
    assert out.row["status"] == "failed", out.row
    assert "ValueError: fault-marker: raised on purpose" in out.row["error"]
    logs = daemon.call("logs", job="raises", run_id=out.row["id"])
    assert "Traceback (most recent call last)" in logs["output"]
    tally.check()


def test_callable_calling_sys_exit_3_fails_with_status_3(daemon, tally) -> None:
    out = run_job(daemon, "exits-3", tally)
    assert out.row["status"] == "failed", out.row
    assert out.row["exit_code"] == 3
    tally.check()


def test_callable_hanging_in_c_code_is_killed_at_its_timeout(daemon, tally) -> None:
    out = run_job(daemon, "hangs-in-c", tally)
    assert out.row["status"] == "timeout", out.row
    assert "SIGKILL" in out.row["error"]
    assert 1.8 <= out.elapsed < 6.0
    tally.check()


def test_callable_importing_a_missing_module_fails_with_the_import_error(daemon, tally) -> None:
    out = run_job(daemon, "imports-missing", tally)
    assert out.row["status"] == "failed", out.row
    assert "ModuleNotFoundError" in out.row["error"]
    assert "faultjobs_no_such_module" in out.row["error"]
    tally.check()


def test_scheduling_kept_its_beat_through_every_misbehaving_job(daemon, tally) -> None:
    assert_canary_on_time(daemon)
    tally.crashes += crashes(daemon)
    tally.survivors += len(
        [p for p in survivors(run_ids=[], grace=0) if p]  # nothing to find: sanity
    )
    tally.check()


def test_no_job_process_outlives_the_daemon(tally) -> None:
    """A fresh daemon with a job running when it stops: the tree goes with it."""
    jobs = f"""
    [jobs.hangs]
    schedule = "@reboot"
    command = {MISBEHAVE}, "fork_many", "20", "@DIR@/hangs.pids", "stay"]
    """
    with fault_daemon(jobs, 'shutdown_grace = "1s"') as daemon:
        pidfile: Path = daemon.folder / "hangs.pids"
        from tests.support import wait_until

        wait_until(lambda: len(read_pids(pidfile)) == 20, 15, what="20 children")
        assert daemon.stop() == 0
        tag_survivors = survivors(daemon.env["CRONHUB_FAULT_TAG"])
        leftovers = pids_alive(read_pids(pidfile))
        rows = history(daemon)
        tally.faults += 1
        tally.expected += 1
        tally.recorded += len(rows)
        tally.survivors += len(tag_survivors) + len(leftovers)
        tally.crashes += crashes(daemon, stopped=True)
        assert [r["status"] for r in rows] == ["interrupted"]
    tally.check()
