"""Measuring start lag the same way for cronhub and for the references.

A job set is a list of ``(name, period_s, offset_s)``: due at every epoch second
``t`` with ``t % period == offset``.  Each system runs the set for a while
before the measured window (warm-up), and only fires scheduled inside the
window ``[start, start + duration)`` count.  The expected number of starts is
known exactly from the set, so runs that never started count as lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import (
    Daemon,
    ScenarioFailed,
    Start,
    StartStats,
    command_job,
    cpu_seconds,
    fires_in,
    first_fire,
    history_starts,
    read_history,
    reference_process,
    sleep_until,
    start_stats,
    wait_history_settled,
    workdir,
    write_registry,
)

JobSet = Sequence[tuple[str, int, int]]

DAEMON_LEAD_S = 1.5
"""Between ``ping`` answering and the measured window: the daemon's warm-up fires."""
REFERENCE_LEAD_S = 3.0
"""Between launching a reference and its window (interpreter start, imports, warm-up)."""
SETTLE_S = 2.0


def cron_expr(period: int, offset: int) -> str:
    """The 6-field (seconds first) cron expression of ``(period, offset)``."""
    if period == 1:
        return "* * * * * *"
    if period == 60:
        return f"{offset} * * * * *"
    if offset == 0 and 60 % period == 0:
        return f"*/{period} * * * * *"
    raise ValueError(f"no cron expression for period {period} offset {offset}")


def expected_fires(jobs: JobSet, start: float, end: float) -> int:
    return sum(fires_in(start, end, period, offset) for _, period, offset in jobs)


def align_of(jobs: JobSet) -> int:
    """Window starts are aligned to the shortest common period under a minute."""
    periods = {period for _, period, _ in jobs if period < 60}
    return max(periods) if periods else 1


def cronhub_starts(jobs: JobSet, duration: int, **scheduler: object) -> StartStats:
    """Run ``jobs`` (``/bin/true``) under the real daemon; starts read from its history."""
    with workdir() as folder:
        registry = {name: command_job(cron_expr(p, o)) for name, p, o in jobs}
        config = write_registry(folder, registry, **scheduler)
        with Daemon(config) as daemon:
            daemon.start()
            start = first_fire(time.time() + DAEMON_LEAD_S, align_of(jobs))
            end = start + duration
            sleep_until(start)
            cpu_before = cpu_seconds(daemon.pid)
            sleep_until(end)
            cpu_s = cpu_seconds(daemon.pid) - cpu_before
            sleep_until(end + SETTLE_S)
            wait_history_settled(daemon.database, start, end, timeout=30)
            ready_s = daemon.ready_after_s
        if daemon.proc is not None and daemon.proc.returncode not in (0, None):
            raise ScenarioFailed(f"daemon exited {daemon.proc.returncode}:\n{daemon.log_tail()}")
        runs = read_history(daemon.database, since=start, until=end)
    stats = start_stats(history_starts(runs), expected_fires(jobs, start, end))
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run.status] = statuses.get(run.status, 0) + 1
    stats.extra.update(statuses=statuses, ready_s=ready_s, cpu_s=cpu_s)
    return stats


def reference_starts(which: str, jobs: JobSet, duration: int) -> StartStats:
    """Run ``jobs`` under the floor or APScheduler (``which``), as its own process."""
    with workdir("chb-ref-") as folder:
        job_file = Path(folder) / "jobs.json"
        job_file.write_text(json.dumps([list(job) for job in jobs]))
        start = first_fire(time.time() + REFERENCE_LEAD_S, align_of(jobs))
        end = start + duration
        done = reference_process(
            [which, "--jobs", str(job_file), "--start", str(start), "--end", str(end)],
            timeout=duration + REFERENCE_LEAD_S + 120,
        )
    result = json.loads(done.stdout)
    starts = [Start(*s) for s in result["starts"]]
    starts = [s for s in starts if start <= s.scheduled < end]
    stats = start_stats(starts, expected_fires(jobs, start, end))
    stats.extra.update(cpu_s=result["cpu_s"])
    return stats
