"""Precision: bursts of jobs due at the same second, and a light load.

Bursts — N = 100 and 500 jobs due every second (``* * * * * *``) and 1,000
due together every 2 s (``*/2 * * * * *``), each running ``/bin/true``:
per burst, the lag of the last of the N to start (median over bursts), and
the per-run start lag p50/p99, against the floor (≤ 1.0×) and APScheduler
(≤ 0.6×).

Light load — 20 jobs at different seconds of the minute (``S * * * * *``)
for 60 s: start lag p50/p99, p99 ≤ 2× the floor's.  The floor runs alongside
(to fit the suite in its time budget) with its jobs one second later, so
the two never spawn in the same second and each load stays light.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import Row, Settings, StartStats, vs_reference
from bench.scenarios._starts import JobSet, cronhub_starts, reference_starts


def burst_jobs(n: int, period: int) -> JobSet:
    return [(f"burst-{i:04d}", period, 0) for i in range(n)]


def light_jobs(shift: int = 0) -> JobSet:
    return [(f"light-{s:02d}", 60, s + shift) for s in range(0, 60, 3)]


def bursts(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    duration = settings.pick(20, 4)
    configs = settings.pick([(100, 1), (500, 1), (1000, 2)], [(100, 1)])
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for n, period in configs:
        label = f"bursts N={n}/{period}s"
        jobs = burst_jobs(n, period)
        measured = {
            "cronhub": cronhub_starts(jobs, duration, max_concurrent=max(2000, 2 * n)),
            "floor": reference_starts("floor", jobs, duration),
            "apscheduler": reference_starts("apscheduler", jobs, duration),
        }
        details[label] = {name: stats.as_dict() for name, stats in measured.items()}
        rows.extend(_burst_rows(label, measured))
        rows.extend(_cpu_rows(label, measured))
    return rows, details


def _burst_rows(label: str, measured: dict[str, StartStats]) -> list[Row]:
    mine = measured["cronhub"]
    rows = []
    for metric, attr in (
        ("last start of burst (median)", "burst_last_p50_ms"),
        ("start lag p50", "lag_p50_ms"),
        ("start lag p99", "lag_p99_ms"),
    ):
        for ref, limit in (("floor", 1.0), ("apscheduler", 0.6)):
            rows.append(
                vs_reference(
                    label,
                    metric,
                    getattr(mine, attr),
                    getattr(measured[ref], attr),
                    ref,
                    unit="ms",
                    at_most=limit,
                    note=_lost_note(measured, ref),
                )
            )
    return rows


def _cpu_rows(label: str, measured: dict[str, StartStats]) -> list[Row]:
    """CPU per run in the window, beside each reference's: what each start costs."""
    per_run = {name: _cpu_ms_per_run(stats) for name, stats in measured.items()}
    return [
        vs_reference(label, "CPU per run", per_run["cronhub"], per_run[ref], ref, unit="ms")
        for ref in ("floor", "apscheduler")
    ]


def _cpu_ms_per_run(stats: StartStats) -> float | None:
    cpu_s = stats.extra.get("cpu_s")
    return None if cpu_s is None or not stats.expected else cpu_s * 1000 / stats.expected


def _lost_note(measured: dict[str, StartStats], ref: str) -> str:
    mine, theirs = measured["cronhub"], measured[ref]
    return f"runs {mine.runs}/{mine.expected} vs {theirs.runs}/{theirs.expected}"


def light(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    duration = settings.pick(60, 12)
    # The floor runs at the same time, its jobs one second later than cronhub's:
    # the same light load, and the two never spawn in the same second.
    with ThreadPoolExecutor(1) as pool:
        floor_future = pool.submit(reference_starts, "floor", light_jobs(shift=1), duration)
        mine = cronhub_starts(light_jobs(), duration)
        floor = floor_future.result()
    note = f"runs {mine.runs}/{mine.expected} vs {floor.runs}/{floor.expected}"
    rows = [
        vs_reference(
            "light load",
            "start lag p50",
            mine.lag_p50_ms,
            floor.lag_p50_ms,
            "floor",
            unit="ms",
            note=note,
        ),
        vs_reference(
            "light load",
            "start lag p99",
            mine.lag_p99_ms,
            floor.lag_p99_ms,
            "floor",
            unit="ms",
            at_most=2.0,
            note=note,
        ),
    ]
    return rows, {"cronhub": mine.as_dict(), "floor": floor.as_dict()}
