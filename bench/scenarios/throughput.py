"""Throughput: the highest rate of ``/bin/true`` runs the daemon holds, every run in SQLite.

The rate is R jobs of ``every 1s``.  A scheduler that anchors every interval
job at the same instant would turn that into one burst of R per second, so the
jobs are configured disabled and enabled one by one over the control socket,
spread over a second: an interval job is anchored when it is enabled, so the
R fire instants spread evenly over each second — a steady rate, not a burst.

The rate rises through fractions of the ``posix_spawn`` ceiling measured in
the same run; each level is probed for a few seconds and passes when every
fire in the window has a started row in the history table (none lost) and the
start lag p99 is under 50 ms.  The best passing level is then held for 20 s;
if the hold fails, the next lower level is held instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.harness import (
    Daemon,
    Row,
    Settings,
    command_job,
    history_starts,
    read_history,
    reference_process,
    sleep_until,
    start_stats,
    vs_reference,
    workdir,
    write_registry,
)

LAG_P99_LIMIT_MS = 50.0
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
SETTLE_S = 1.5


def spawn_ceiling(seconds: float) -> dict[str, float]:
    """Runs per second of raw ``posix_spawn`` + ``waitpid`` with two in flight."""
    done = reference_process(
        ["spawn-ceiling", "--seconds", str(seconds), "--threads", "2"], timeout=seconds + 60
    )
    return json.loads(done.stdout)


def throughput(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    ceiling = spawn_ceiling(settings.pick(3.0, 1.0))["per_second"]
    rates = settings.pick(sorted({max(10, round(ceiling * f / 10) * 10) for f in LEVELS}), [20])
    probe_s, hold_s = settings.pick(5, 3), settings.pick(20, 3)
    names = [f"tp-{i:05d}" for i in range(rates[-1])]
    levels: list[dict[str, Any]] = []
    holds: list[dict[str, Any]] = []
    held: int | None = None
    with workdir() as folder:
        jobs = {name: command_job("every 1s", enabled=False) for name in names}
        config = write_registry(folder, jobs, max_concurrent=2000)
        with Daemon(config) as daemon:
            daemon.start()
            enabled = 0
            passing: list[int] = []
            for rate in rates:
                _enable_spread(daemon, names[enabled:rate])
                enabled = rate
                result = _measure(daemon, rate, probe_s)
                levels.append(result)
                if not result["ok"]:
                    break
                passing.append(rate)
            if settings.quick:
                held = passing[-1] if passing else None
            for rate in reversed(passing[-2:]):
                for name in names[rate:enabled]:
                    daemon.call("disable", job=name)
                enabled = rate
                time.sleep(2.0)  # let a failed level's backlog drain
                result = _measure(daemon, rate, hold_s)
                holds.append(result)
                if result["ok"]:
                    held = rate
                    break
    note = f"ceiling {ceiling:.0f}/s; levels " + ", ".join(
        f"{lv['rate']}:{'ok' if lv['ok'] else 'FAIL'}" for lv in levels
    )
    row = vs_reference(
        "throughput",
        f"rate held {hold_s}s (p99 lag < 50 ms, none lost)",
        held,
        ceiling,
        "posix_spawn ceiling",
        unit="runs/s",
        at_least=0.4,
        note=note,
    )
    return [row], {"ceiling_per_s": ceiling, "levels": levels, "holds": holds, "held": held}


def _enable_spread(daemon: Daemon, names: list[str], over_s: float = 1.0) -> None:
    """Enable ``names`` one by one, spread over ``over_s`` so their phases spread too."""
    began = time.monotonic()
    for i, name in enumerate(names):
        delay = began + over_s * i / max(1, len(names)) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        daemon.call("enable", job=name)
    time.sleep(1.2)  # every newly enabled job has fired once before the window


def _measure(daemon: Daemon, rate: int, seconds: int) -> dict[str, Any]:
    start = time.time() + 0.1
    end = start + seconds
    sleep_until(end + SETTLE_S)
    runs = read_history(daemon.database, since=start, until=end)
    stats = start_stats(history_starts(runs), expected=rate * seconds)
    p99 = stats.lag_p99_ms
    ok = stats.lost == 0 and p99 is not None and p99 < LAG_P99_LIMIT_MS
    return {"rate": rate, "seconds": seconds, "ok": ok, **stats.as_dict()}
