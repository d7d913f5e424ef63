"""Value objects to the JSON shapes of the control protocol (see docs/protocol.md).

Pure: the daemon passes in everything, including the current time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cronhub.model import (
    CronSchedule,
    IntervalSchedule,
    JobSpec,
    JobState,
    RunRecord,
)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 with microseconds and UTC offset, or None."""
    return None if value is None else value.isoformat(timespec="microseconds")


def schedule_kind(spec: JobSpec) -> str:
    if isinstance(spec.schedule, CronSchedule):
        return "cron"
    if isinstance(spec.schedule, IntervalSchedule):
        return "interval"
    return "reboot"


def run_json(record: RunRecord) -> dict[str, Any]:
    """A history row as the ``Run`` shape."""
    return {
        "id": record.id,
        "job_name": record.job_name,
        "trigger": str(record.trigger),
        "attempt": record.attempt,
        "scheduled_at": iso(record.scheduled_at),
        "started_at": iso(record.started_at),
        "completed_at": iso(record.completed_at),
        "status": str(record.status),
        "duration_ms": record.duration_ms,
        "exit_code": record.exit_code,
        "signal": record.signal,
        "error": record.error,
        "start_lag_ms": record.start_lag_ms,
        "cpu_user_s": record.cpu_user_s,
        "cpu_system_s": record.cpu_system_s,
        "max_rss_kb": record.max_rss_kb,
        "pid": record.pid,
    }


def job_status_json(
    spec: JobSpec,
    state: JobState | None,
    *,
    enabled: bool,
    override: bool | None,
    paused: bool,
    next_run: datetime | None,
    running: int,
    schedule_human: str,
) -> dict[str, Any]:
    """One job as the ``JobStatus`` shape."""
    state = state or JobState(name=spec.name)
    return {
        "name": spec.name,
        "description": spec.description,
        "schedule": spec.schedule.text,
        "schedule_kind": schedule_kind(spec),
        "schedule_human": schedule_human,
        "timezone": spec.timezone,
        "enabled": enabled,
        "enabled_config": spec.enabled,
        "override": override,
        "paused": paused,
        "last_run": iso(state.last_run),
        "last_status": None if state.last_status is None else str(state.last_status),
        "last_error": state.last_error,
        "last_duration_ms": state.last_duration_ms,
        "total_runs": state.total_runs,
        "total_failures": state.total_failures,
        "average_duration_ms": state.average_duration_ms,
        "next_run": iso(next_run),
        "running": running,
    }
