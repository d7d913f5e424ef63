"""Value objects shared by the core and the shell.

Everything here is immutable, keyword-only and free of I/O.  Datetimes are
always timezone-aware UTC unless a field says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cronhub.errors import ConfigIssue


class RunStatus(StrEnum):
    """How a run stands or ended."""

    RUNNING = "running"
    """Started and not yet finished."""
    SUCCESS = "success"
    """Exited 0 (a callable returned)."""
    FAILED = "failed"
    """Exited non-zero, died by a signal, raised, or could not be spawned."""
    TIMEOUT = "timeout"
    """Killed by cronhub after its ``timeout``."""
    SKIPPED = "skipped"
    """Not started: a singleton job was still running when it came due."""
    INTERRUPTED = "interrupted"
    """The daemon stopped or died while it ran."""

    @property
    def finished(self) -> bool:
        return self is not RunStatus.RUNNING

    @property
    def is_failure(self) -> bool:
        """Counted in ``total_failures`` and eligible for a retry."""
        return self in (RunStatus.FAILED, RunStatus.TIMEOUT)


class Trigger(StrEnum):
    """Why a run was started."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    STARTUP = "startup"
    RETRY = "retry"


# --- schedules ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class CronSchedule:
    """A cron expression evaluated in a time zone.

    ``expr`` is the normalised expression (macros expanded, 5 or 6 fields with
    seconds first); ``text`` is what the user wrote.
    """

    expr: str
    text: str
    timezone: str
    has_seconds: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class IntervalSchedule:
    """Fire every ``every_ms`` milliseconds, timed on the monotonic clock."""

    every_ms: int
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RebootSchedule:
    """``@reboot``: run once when the daemon starts, never on a timer."""

    text: str = "@reboot"


Schedule = CronSchedule | IntervalSchedule | RebootSchedule


# --- registry ----------------------------------------------------------------

DEFAULT_OUTPUT_LIMIT = 64 * 1024
DEFAULT_KILL_GRACE_MS = 5_000
DEFAULT_RETRY_DELAY_MS = 10_000
DEFAULT_SHUTDOWN_GRACE_MS = 30_000


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """One validated job from the registry.

    Exactly one of ``command`` and ``callable`` is set.  ``command`` is a shell
    string (run with ``/bin/sh -c``) or an argv tuple (run directly).
    ``cwd`` is absolute.  ``line`` is the line of the job's table header and
    does not take part in equality, so moving a job in the file is no change.
    """

    name: str
    schedule: Schedule
    description: str = ""
    command: str | tuple[str, ...] | None = None
    callable: str | None = None
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = field(default_factory=dict)
    timeout_ms: int | None = None
    kill_grace_ms: int = DEFAULT_KILL_GRACE_MS
    retries: int = 0
    retry_delay_ms: int = DEFAULT_RETRY_DELAY_MS
    run_on_startup: bool = False
    singleton: bool = True
    enabled: bool = True
    timezone: str = "UTC"
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class SchedulerSettings:
    """The ``[scheduler]`` table with environment overrides applied.

    ``database`` is an SQLAlchemy URL; ``socket`` an absolute path.
    ``enabled`` false means scheduling is paused (manual runs still work).
    """

    timezone: str = "UTC"
    max_concurrent: int = 10
    history_retention_days: int = 30
    database: str = "sqlite:///cronhub.db"
    socket: str = "cronhub.sock"
    shutdown_grace_ms: int = DEFAULT_SHUTDOWN_GRACE_MS
    control_group: str | None = None
    enabled: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Registry:
    """A whole validated registry: settings, jobs in file order, and warnings."""

    path: str
    settings: SchedulerSettings
    jobs: Mapping[str, JobSpec]
    warnings: tuple[ConfigIssue, ...] = ()


# --- runs --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRequest:
    """A decision to run a job once.

    A scheduled run is identified by ``(job_name, scheduled_at, attempt)``;
    ``run_id`` (a UUID string) is its history row id and ``CRONHUB_RUN_ID``.
    """

    run_id: str
    job_name: str
    trigger: Trigger
    attempt: int
    scheduled_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """How one run ended, as measured by the runner."""

    run_id: str
    job_name: str
    status: RunStatus
    started_at: datetime
    completed_at: datetime
    duration_ms: int
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    output: str = ""
    output_truncated: bool = False
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    max_rss_kb: int | None = None
    pid: int | None = None

    @classmethod
    def never_ran(
        cls, request: RunRequest, status: RunStatus, error: str, at: datetime
    ) -> RunResult:
        """The result of a run that ended, with ``error``, before any process ran."""
        return cls(
            run_id=request.run_id,
            job_name=request.job_name,
            status=status,
            started_at=at,
            completed_at=at,
            duration_ms=0,
            error=error,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class RunRecord:
    """One row of run history, as the store returns it."""

    id: str
    job_name: str
    trigger: Trigger
    attempt: int
    scheduled_at: datetime
    status: RunStatus
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    output: str | None = None
    output_truncated: bool = False
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    max_rss_kb: int | None = None
    pid: int | None = None
    pid_create_time: float | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)

    @property
    def start_lag_ms(self) -> int | None:
        if self.started_at is None:
            return None
        return int((self.started_at - self.scheduled_at).total_seconds() * 1000)


@dataclass(frozen=True, kw_only=True, slots=True)
class JobState:
    """Per-job aggregates kept by the store (the design's status fields)."""

    name: str
    last_run: datetime | None = None
    last_status: RunStatus | None = None
    last_error: str | None = None
    last_duration_ms: int | None = None
    total_runs: int = 0
    total_failures: int = 0
    average_duration_ms: float | None = None
    override: bool | None = None
    """Runtime enable/disable set with ``cronhub enable|disable``; None = follow config."""
