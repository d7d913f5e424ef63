"""Idle cost and CLI latency against a daemon holding 100 hourly jobs.

Idle — 100 hourly jobs (50 cron ``M * * * *`` at minutes not due during the
window, 50 ``every 1h``), nothing due for 60 s: the daemon's CPU (user +
system time over wall time), its wakeups (voluntary context switches summed
over every thread, from ``/proc/PID/task/*/status``) and its RSS.  Nothing
talks to the daemon during the window.

CLI — ``cronhub status`` (run in the registry's folder, as a user would)
against the same kind of daemon, wall time p50, interleaved with the
reference ``python -c "import typer, rich.table"``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    CRONHUB,
    PYTHON,
    Daemon,
    Row,
    Settings,
    command_job,
    cpu_seconds,
    median,
    read_history,
    rss_mib,
    time_interleaved,
    voluntary_switches,
    vs_limit,
    vs_reference,
    workdir,
    write_registry,
)

SETTLE_S = 3.0


def hourly_jobs(count: int = 100) -> dict[str, dict[str, Any]]:
    """``count`` hourly jobs, none due in the next few minutes."""
    minute = datetime.now(UTC).minute
    free = [m for m in range(60) if (m - minute) % 60 > 5]
    jobs = {}
    for i in range(count):
        if i % 2:
            jobs[f"hourly-{i:03d}"] = command_job("every 1h", description=f"interval job {i}")
        else:
            cron = f"{free[i % len(free)]} * * * *"
            jobs[f"hourly-{i:03d}"] = command_job(cron, description=f"cron job {i}")
    return jobs


def idle(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    window = settings.pick(60.0, 5.0)
    with workdir() as folder:
        config = write_registry(folder, hourly_jobs())
        with Daemon(config) as daemon:
            daemon.start()
            time.sleep(SETTLE_S)  # start-up writes and the first retention pass
            pid = daemon.pid
            cpu0, switches0, t0 = cpu_seconds(pid), voluntary_switches(pid), time.monotonic()
            time.sleep(window)
            cpu1, switches1, t1 = cpu_seconds(pid), voluntary_switches(pid), time.monotonic()
            rss = rss_mib(pid)
            threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
        runs = read_history(daemon.database)
    wall = t1 - t0
    cpu_pct = 100 * (cpu1 - cpu0) / wall
    wakeups = (switches1 - switches0) / wall
    note = f"{threads} threads, {len(runs)} runs in history"
    rows = [
        vs_limit("idle", "CPU", cpu_pct, unit="%", at_most=0.1, note=note),
        vs_limit("idle", "wakeups (voluntary ctx switches)", wakeups, unit="/s", at_most=1.0),
        vs_limit("idle", "RSS", rss, unit="MiB", at_most=60.0),
    ]
    details = {
        "window_s": wall,
        "cpu_s": cpu1 - cpu0,
        "voluntary_switches": switches1 - switches0,
        "threads": threads,
        "runs": len(runs),
    }
    return rows, details


def cli(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    rounds = settings.pick(15, 3)
    with workdir() as folder:
        config = write_registry(folder, hourly_jobs())
        with Daemon(config) as daemon:
            daemon.start()
            samples = time_interleaved(
                {
                    "status": [CRONHUB, "status"],
                    "import": [PYTHON, "-c", "import typer, rich.table"],
                },
                rounds=rounds,
                cwd=folder,
            )
    status_ms = [s * 1000 for s in samples["status"]]
    import_ms = [s * 1000 for s in samples["import"]]
    row = vs_reference(
        "CLI",
        "cronhub status wall p50 (100 jobs)",
        median(status_ms),
        median(import_ms),
        'python -c "import typer, rich.table"',
        unit="ms",
        at_most=1.3,
    )
    return [row], {"status_ms": status_ms, "import_ms": import_ms}
