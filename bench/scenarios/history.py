"""History scale: a million history rows, read and pruned by the real daemon.

One database is built once: the daemon creates its schema, is stopped, and
1,000,000 rows are inserted with ``sqlite3`` ``executemany`` (10 jobs of
100,000 rows each; 900,000 of them older than 30 days).

* Reading — with ``history_retention_days`` large (nothing to prune), wall
  p50 of ``cronhub history hist-0 -n 20`` against ``cronhub status`` on the
  same daemon, interleaved: ≤ 1.3×.
* Pruning — the registry is changed to 30 days of retention and the daemon
  restarted: it prunes the 900,000 old rows at start.  A ``* * * * * *``
  job runs meanwhile; the start lag of its runs scheduled while the prune
  goes on (until no old row is left) must stay ≤ 50 ms.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    CRONHUB,
    HISTORY_TABLE,
    Daemon,
    Row,
    ScenarioFailed,
    Settings,
    command_job,
    history_starts,
    median,
    percentile,
    read_history,
    start_stats,
    time_interleaved,
    to_stored,
    vs_limit,
    vs_reference,
    workdir,
    write_registry,
)

JOBS = 10
RETENTION_DAYS = 30
PRUNE_LAG_LIMIT_MS = 50.0
MIN_PRUNE_WINDOW_S = 5.0


def registry(folder: Path, retention_days: int) -> Path:
    minute = datetime.now(UTC).minute
    jobs = {f"hist-{i}": command_job(f"{(minute + 30 + i) % 60} * * * *") for i in range(JOBS)}
    jobs["tick"] = command_job("* * * * * *")
    return write_registry(folder, jobs, history_retention_days=retention_days)


def history_scale(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    total = settings.pick(1_000_000, 20_000)
    old = total * 9 // 10
    rounds = settings.pick(10, 3)
    with workdir() as folder:
        config = registry(folder, retention_days=36_500)
        with Daemon(config) as daemon:
            daemon.start()
        began = time.monotonic()
        fill_history(daemon.database, total=total, old=old)
        fill_s = time.monotonic() - began

        with Daemon(config) as daemon:
            daemon.start()
            samples = time_interleaved(
                {
                    "history": [CRONHUB, "history", "hist-0", "-n", "20"],
                    "status": [CRONHUB, "status"],
                },
                rounds=rounds,
                cwd=folder,
            )

        config = registry(folder, retention_days=RETENTION_DAYS)
        cutoff = time.time() - RETENTION_DAYS * 86_400
        with Daemon(config) as daemon:
            launched = time.time()
            daemon.start(wait=False)
            prune_s = wait_pruned(daemon, cutoff, timeout=settings.pick(240, 60))
            daemon.wait_ready()
            # Every tick due while the prune ran, and at least a few seconds of them.
            until = max(time.time() + 1, launched + MIN_PRUNE_WINDOW_S)
            time.sleep(max(0.0, until - time.time()) + 1.5)
        left = count_older(daemon.database, cutoff)
        runs = [
            r for r in read_history(daemon.database, since=launched, until=until) if r.job == "tick"
        ]
    stats = start_stats(history_starts(runs), expected=len(runs))
    history_ms = [s * 1000 for s in samples["history"]]
    status_ms = [s * 1000 for s in samples["status"]]
    rows = [
        vs_reference(
            "history scale",
            f"history JOB -n 20 wall p50 ({total:,} rows)",
            median(history_ms),
            median(status_ms),
            "cronhub status",
            unit="ms",
            at_most=1.3,
        ),
        vs_limit(
            "history scale",
            f"start lag max while pruning {old:,} rows",
            stats.lag_max_ms,
            unit="ms",
            at_most=PRUNE_LAG_LIMIT_MS,
            note=(
                f"prune took {prune_s:.1f}s, {left} old rows left, "
                f"{stats.runs} tick runs, lag p50 {fmt(stats.lag_p50_ms)} ms"
            ),
        ),
    ]
    details = {
        "rows": total,
        "old_rows": old,
        "fill_s": fill_s,
        "history_ms": history_ms,
        "status_ms": status_ms,
        "prune_s": prune_s,
        "old_rows_left": left,
        "tick_lags_ms": [s.lag_ms for s in history_starts(runs)],
        "tick_lag_p99_ms": percentile([s.lag_ms for s in history_starts(runs)], 99),
    }
    return rows, details


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fill_history(database: Path, *, total: int, old: int) -> None:
    """Insert ``total`` finished runs, ``old`` of them older than the retention."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        columns = db.execute(f"PRAGMA table_info({HISTORY_TABLE})").fetchall()
        names = [c[1] for c in columns]
        defaults = {c[1]: _filler(c[2], c[3]) for c in columns}
        db.execute("PRAGMA synchronous = OFF")
        sql = (
            f"INSERT INTO {HISTORY_TABLE} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})"
        )
        with db:
            for chunk in _chunks(_rows(total, old), 50_000):
                db.executemany(sql, [[row.get(n, defaults[n]) for n in names] for row in chunk])


def _filler(sql_type: str, not_null: int) -> object:
    if not not_null:
        return None
    return "" if any(t in sql_type.upper() for t in ("CHAR", "TEXT", "CLOB")) else 0


def _rows(total: int, old: int) -> Iterator[dict[str, Any]]:
    """Runs spread evenly: the old ones over 31–400 days ago, the rest over the last 29."""
    now = datetime.now(UTC)
    for i in range(total):
        if i < old:
            age = timedelta(days=400) - (timedelta(days=369) * i / old)
        else:
            age = timedelta(days=29) * (total - i) / (total - old)
        scheduled = (now - age).timestamp()
        yield {
            "id": f"{i:08x}-0000-4000-8000-{i:012x}",
            "job_name": f"hist-{i % JOBS}",
            "trigger": "schedule",
            "attempt": 1,
            "scheduled_at": to_stored(scheduled),
            "started_at": to_stored(scheduled + 0.002),
            "completed_at": to_stored(scheduled + 0.012),
            "status": "success",
            "duration_ms": 10,
            "exit_code": 0,
            "output": "",
            "output_truncated": 0,
            "pid": 1000 + i % 30000,
            "metadata": "{}",
        }


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def count_older(database: Path, cutoff: float) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        sql = f"SELECT count(*) FROM {HISTORY_TABLE} WHERE scheduled_at < ?"
        return int(db.execute(sql, (to_stored(cutoff),)).fetchone()[0])


def wait_pruned(daemon: Daemon, cutoff: float, timeout: float) -> float:
    """Seconds until no row older than ``cutoff`` is left (raises after ``timeout``)."""
    began = time.monotonic()
    while count_older(daemon.database, cutoff):
        if daemon.proc is not None and daemon.proc.poll() is not None:
            raise ScenarioFailed(f"the daemon exited while pruning:\n{daemon.log_tail()}")
        if time.monotonic() - began > timeout:
            raise ScenarioFailed(f"old history rows still there after {timeout:.0f}s")
        time.sleep(0.25)
    return time.monotonic() - began
