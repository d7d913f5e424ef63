"""Run history and job state in SQL: tables declared with SQLModel, queries in Core.

The only module that imports SQLModel or SQLAlchemy.  Rows never leave it: every
public method takes and returns the value objects of :mod:`cronhub.model`.  The
SQLModel classes declare the schema; every statement is SQLAlchemy Core on one
``Connection`` (no ORM session: it would cost more than the statements themselves).

Two layers:

* :class:`Store` — a synchronous API over one database URL.  The tables use nothing
  SQLite-specific and store every time as UTC, so the same code can later point at
  PostgreSQL; the few statements that differ between databases sit behind a dialect
  check (``INSERT … ON CONFLICT DO NOTHING``, the SQLite pragmas, and the prepared
  grouped writes below).
* :class:`StoreService` — the asyncio face of a ``Store``.  Every call runs on one
  dedicated thread, in submission order (a second thread only checkpoints the WAL).
  Queued writes go into one transaction; a write nobody waits for may linger a
  moment to share the transaction of the next; while the database fails (locked,
  read-only, disk full) writes are held in memory and retried with backoff, so a
  database error never stops scheduling and no result is lost once it is back.

The hot path is a run's three writes (``insert_run``, ``set_run_pid``,
``finish_run``).  In a batch they cost a few statements, not a few per run: one
executemany per kind, and one UPDATE per job folding the batch's results into its
aggregates.  A duplicate shows as an executemany that changed fewer rows than it had,
and the batch is then replayed one statement per op.  On SQLite those executemanys
run on the driver's cursor with SQL compiled once by SQLAlchemy (see
:class:`_Prepared`): about 13x cheaper per run than one ORM statement per write.

A scheduled run is keyed by ``(job_name, scheduled_at, attempt)`` with a unique
constraint: a tick can never be recorded twice, whether by a restart today or by a
second host on a shared database tomorrow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.exc import (
    DatabaseError,
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel, create_engine

from cronhub.errors import StoreError
from cronhub.model import (
    JobSpec,
    JobState,
    RunRecord,
    RunRequest,
    RunResult,
    RunStatus,
    Trigger,
)

__all__ = [
    "MIGRATIONS",
    "PRUNE_BATCH",
    "SCHEMA_VERSION",
    "Store",
    "StoreService",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Version of the schema this cronhub writes; stored in ``cronhub_meta``."""

MIGRATIONS: dict[int, Callable[[Connection], None]] = {}
"""Forward steps keyed by the version they start from: ``MIGRATIONS[n]`` takes a
database from version ``n`` to ``n + 1``.  All steps of one upgrade run in the opening
transaction, so a failed upgrade leaves the database as it was.  Version 1 is the first
schema; a database without ``cronhub_meta`` is new and is created at the current version."""

PRUNE_BATCH = 100
"""Rows deleted per prune transaction.  Measured on a 1,000,000-row history (random
UUID ids, so every delete touches a random page of the id index): 100 rows take a few
milliseconds, and a run's row queued behind a batch waits p99 ~35 ms; 500 rows push
that past 100 ms."""

INTERRUPTED_ERROR = "daemon stopped while the run was in progress"

DEFAULT_BUSY_TIMEOUT_MS = 250
"""How long one SQLite statement waits for another writer's lock before failing.

Short on purpose: cronhub is the only writer of its database, so a lock means an outside
tool or a fault, and the service holds and retries writes rather than stall the queue
(reads wait at most this long behind a write attempt)."""


_CACHE_KIB = 16 * 1024
"""SQLite page cache per connection, in KiB (allocated only as pages are used)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- column types -------------------------------------------------------------


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store takes aware datetimes only")
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC and read back as aware UTC.

    SQLite keeps a fixed-width naive UTC text (so text order is time order);
    databases with a real ``timestamp with time zone`` get the aware value.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = _as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Any) -> Callable[[Any], Any] | None:
        """On SQLite, straight to the text SQLite's ``DATETIME`` keeps (the same
        fixed-width ``YYYY-MM-DD HH:MM:SS.ffffff``) in one step, not two: several times
        are bound for every run written."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            return _as_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# --- tables -------------------------------------------------------------------


class MetaRow(SQLModel, table=True):
    """Key/value facts about the database itself (``schema_version``)."""

    __tablename__ = "cronhub_meta"

    key: str = Field(primary_key=True)
    value: str


class JobRow(SQLModel, table=True):
    """One job: its configuration as last synced, its runtime override and aggregates.

    Rows of jobs removed from the registry are kept, with their history.
    """

    __tablename__ = "scheduled_jobs"

    name: str = Field(primary_key=True)
    description: str = ""
    schedule: str = ""
    enabled: bool = True
    override: bool | None = None
    last_run: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status: str | None = None
    last_error: str | None = Field(default=None, sa_type=Text)
    last_duration_ms: int | None = None
    total_runs: int = 0
    """Finished runs that started (every status but ``skipped``)."""
    total_failures: int = 0
    """Runs that ended ``failed`` or ``timeout``."""
    average_duration_ms: float | None = None
    """Running mean over the ``timed_runs`` finished runs that carry a duration."""
    timed_runs: int = 0
    last_fired: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Latest ``scheduled_at`` recorded with trigger ``schedule`` (run or skip)."""
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RunRow(SQLModel, table=True):
    """One run (or skipped tick) of one job."""

    __tablename__ = "scheduled_job_history"
    __table_args__ = (
        # The identity of a scheduled run.  Its index also serves `history JOB`
        # (job_name = ? ORDER BY scheduled_at DESC, attempt DESC).
        UniqueConstraint("job_name", "scheduled_at", "attempt", name="uq_history_run"),
        # `history` without a job, `--since`, and pruning (oldest first).
        Index("ix_history_scheduled_at", "scheduled_at", "attempt"),
        # `history --status`, and finding the rows left `running` after a crash.
        Index("ix_history_status_scheduled_at", "status", "scheduled_at", "attempt"),
    )

    id: str = Field(primary_key=True)
    job_name: str
    trigger: str
    attempt: int
    scheduled_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str
    duration_ms: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = Field(default=None, sa_type=Text)
    output: str | None = Field(default=None, sa_type=Text)
    output_truncated: bool = False
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    max_rss_kb: int | None = None
    pid: int | None = None
    pid_create_time: float | None = None
    meta: str = Field(default="{}", sa_column=Column("metadata", Text, nullable=False))


_META: Table = MetaRow.__table__  # type: ignore[attr-defined]
_JOBS: Table = JobRow.__table__  # type: ignore[attr-defined]
_RUNS: Table = RunRow.__table__  # type: ignore[attr-defined]
_TABLES = [_META, _JOBS, _RUNS]

# Every history column but the output, which only `get_run` loads.
_LIST_COLUMNS = [c for c in _RUNS.c if c.name != "output"]

_READS = frozenset({"job_states", "history", "get_run", "last_fired", "integrity_check"})
_URGENT = frozenset({"insert_run"})
"""Submitted writes someone waits for (the daemon spawns a run once its row is
committed): written at once.  Other submitted writes may wait a little for one."""
_URGENT_SLICE = 32
"""The most ops taken for one transaction while an urgent op (or a call) is queued."""
_WRITES = frozenset(
    {
        "sync_jobs",
        "insert_run",
        "set_run_pid",
        "record_skip",
        "finish_run",
        "recover_interrupted",
        "set_override",
        "prune",
    }
)


# --- statements ----------------------------------------------------------------
# Built once: a statement object caches its compiled form, which keeps the cost of a
# recorded run to a few hundred microseconds.  Bound names carry a ``b_`` prefix
# because an UPDATE may not bind a name equal to a column it sets.


def _param(name: str, type_: Any = None) -> Any:
    return bindparam(name, type_=type_)


_RUNNING = RunStatus.RUNNING.value
_JOB_NAMED = _JOBS.c.name == _param("b_name")
_NOW = _param("b_now", UTCDateTime())

_SYNC_JOB = (
    update(_JOBS)
    .where(_JOB_NAMED)
    .values(
        description=_param("b_description"),
        schedule=_param("b_schedule"),
        enabled=_param("b_enabled", Boolean()),
        updated_at=_NOW,
    )
)

_SET_RUN_PID = (
    update(_RUNS)
    .where(_RUNS.c.id == _param("b_id"), _RUNS.c.status == _RUNNING)
    .values(
        pid=_param("b_pid", Integer()),
        pid_create_time=_param("b_pid_create_time", Float()),
        started_at=_param("b_started_at", UTCDateTime()),
    )
)

_FINISH_RUN = (
    update(_RUNS)
    .where(_RUNS.c.id == _param("b_id"), _RUNS.c.status == _RUNNING)
    .values(
        status=_param("b_status"),
        started_at=_param("b_started_at", UTCDateTime()),
        completed_at=_param("b_completed_at", UTCDateTime()),
        duration_ms=_param("b_duration_ms", Integer()),
        exit_code=_param("b_exit_code", Integer()),
        signal=_param("b_signal", Integer()),
        error=_param("b_error", Text()),
        output=_param("b_output", Text()),
        output_truncated=_param("b_output_truncated", Boolean()),
        cpu_user_s=_param("b_cpu_user_s", Float()),
        cpu_system_s=_param("b_cpu_system_s", Float()),
        max_rss_kb=_param("b_max_rss_kb", Integer()),
        pid=func.coalesce(_param("b_pid", Integer()), _RUNS.c.pid),
        pid_create_time=func.coalesce(
            _param("b_pid_create_time", Float()), _RUNS.c.pid_create_time
        ),
    )
)

_INTERRUPT_RUN = (
    update(_RUNS)
    .where(_RUNS.c.id == _param("b_id"), _RUNS.c.status == _RUNNING)
    .values(
        status=RunStatus.INTERRUPTED.value,
        completed_at=_param("b_completed_at", UTCDateTime()),
        error=INTERRUPTED_ERROR,
    )
)


def _tally_job_statement() -> Any:
    """Fold a :class:`_Tally` into its job's row, with expressions on the current values
    (right even with several writers).

    ``b_runs`` finished runs, ``b_failures`` of them failed, ``b_timed`` carried a
    duration, summing to ``b_duration_sum``; ``last_*`` take the last of them (and stay
    as they are when ``b_runs`` is 0); the mean is a running mean over ``timed_runs``.
    ``last_fired`` rises to ``b_fired`` (NULL: no tick) and never falls.
    """
    jobs = _JOBS.c
    runs = _param("b_runs", Integer())
    timed = _param("b_timed", Integer())
    fired = _param("b_fired", UTCDateTime())
    total = func.coalesce(jobs.average_duration_ms, 0.0) * jobs.timed_runs
    mean = (total + _param("b_duration_sum", Integer())) / (jobs.timed_runs + timed)

    def last(column: Any, value: Any) -> Any:
        return case((runs == 0, column), else_=value)

    return (
        update(_JOBS)
        .where(_JOB_NAMED)
        .values(
            last_run=last(jobs.last_run, _param("b_last_run", UTCDateTime())),
            last_status=last(jobs.last_status, _param("b_status")),
            last_error=last(jobs.last_error, _param("b_error", Text())),
            last_duration_ms=last(jobs.last_duration_ms, _param("b_duration_ms", Integer())),
            total_runs=jobs.total_runs + runs,
            total_failures=jobs.total_failures + _param("b_failures", Integer()),
            average_duration_ms=case((timed == 0, jobs.average_duration_ms), else_=mean),
            timed_runs=jobs.timed_runs + timed,
            last_fired=case(
                (fired > jobs.last_fired, fired), else_=func.coalesce(jobs.last_fired, fired)
            ),
            updated_at=_NOW,
        )
    )


_TALLY_JOB = _tally_job_statement()

_SET_OVERRIDE = (
    update(_JOBS)
    .where(_JOB_NAMED)
    .values(override=_param("b_override", Boolean()), updated_at=_NOW)
)

_PRUNE = delete(_RUNS).where(
    _RUNS.c.id.in_(
        select(_RUNS.c.id)
        .where(_RUNS.c.scheduled_at < _param("b_before", UTCDateTime()), _RUNS.c.status != _RUNNING)
        .order_by(_RUNS.c.scheduled_at)
        .limit(_param("b_batch", Integer()))
    )
)

_OP_ERRORS = (ValueError, TypeError, LookupError)
"""Errors of one op's own data: that op is dropped, the others still written."""


# --- errors -------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """The driver's own message (``database is locked``), without SQL or parameters."""
    orig = getattr(exc, "orig", None)
    return str(orig) if orig is not None else str(exc)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed write may succeed later unchanged (locked, read-only, full, I/O).

    Constraint violations, bad data and programming errors are not: retrying them
    would fail forever.
    """
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(cause, (IntegrityError, DataError, ProgrammingError)):
        return False
    return isinstance(cause, (OperationalError, DatabaseError, OSError))


# --- grouped writes -------------------------------------------------------------


class _Replay(Exception):
    """A grouped statement changed fewer rows than it had ops: one of them is a
    duplicate or a no-op (or a job row went missing), whose own outcome only the
    statement-per-op path tells.  The transaction is rolled back and replayed that way."""


_GROUPED: dict[str, tuple[int, Any]] = {
    "insert_run": (0, True),
    "record_skip": (0, True),
    "set_run_pid": (1, None),
    "finish_run": (2, True),
}
"""The writes batched into one statement per kind: their phase (the order their
statements run in: a run is recorded, then spawned, then finished) and their outcome
when every row is written as planned."""


@dataclass(slots=True)
class _Tally:
    """What some writes add to one job's row, folded in submission order: its finished
    runs, and its latest scheduled tick.  Written by one ``_TALLY_JOB``."""

    runs: int = 0
    failures: int = 0
    timed: int = 0
    duration_sum: int = 0
    last_run: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    last_duration_ms: int | None = None
    fired: datetime | None = None

    def finished(
        self,
        status: RunStatus,
        started_at: datetime | None,
        error: str | None,
        duration_ms: int | None,
    ) -> None:
        """Count one finished run."""
        self.runs += 1
        self.failures += int(status.is_failure)
        if duration_ms is not None:
            self.timed += 1
            self.duration_sum += duration_ms
        self.last_run, self.last_status = started_at, status.value
        self.last_error, self.last_duration_ms = error, duration_ms

    def fire(self, scheduled_at: datetime) -> None:
        """Note one recorded tick of the job's schedule."""
        if self.fired is None or self.fired < scheduled_at:
            self.fired = scheduled_at

    def params(self, name: str, now: datetime) -> dict[str, Any]:
        return {
            "b_name": name,
            "b_now": now,
            "b_runs": self.runs,
            "b_failures": self.failures,
            "b_timed": self.timed,
            "b_duration_sum": self.duration_sum,
            "b_last_run": self.last_run,
            "b_status": self.last_status,
            "b_error": self.last_error,
            "b_duration_ms": self.last_duration_ms,
            "b_fired": self.fired,
        }


@dataclass(slots=True)
class _Group:
    """Consecutive grouped writes of a batch, waiting for their few statements.

    Per kind, rows keep submission order; across kinds, statements run by phase.  That
    reorders nothing that matters: ops of different runs touch different history rows,
    the job rows' tallies are folded in submission order, and an op of a run that has
    an op of a later phase in the group is not admitted (the group is written first).
    """

    inserts: list[dict[str, Any]] = field(default_factory=list)
    pids: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By run id; a run finished in the same group takes its pid in its finish."""
    finishes: list[dict[str, Any]] = field(default_factory=list)
    tallies: dict[str, _Tally] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    """Per run id, the latest phase planned."""

    def add(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        """Plan one write; False (planning nothing) if it must wait for the next group."""
        phase = _GROUPED[name][0]
        first = args[0]
        run_id = first if isinstance(first, str) else first.run_id
        if self.phases.get(run_id, phase) > phase:
            return False
        if name == "finish_run":
            finish = _finish_params(first)
            if (spawned := self.pids.pop(run_id, None)) is not None:
                finish["b_pid"] = finish["b_pid"] or spawned["b_pid"]
                finish["b_pid_create_time"] = spawned["b_pid_create_time"]
            self.finishes.append(finish)
            status = RunStatus(first.status)
            if status is not RunStatus.SKIPPED:
                self._tally(first.job_name).finished(
                    status, first.started_at, first.error, first.duration_ms
                )
        elif name == "set_run_pid":
            self.pids[run_id] = _pid_params(*args, **kwargs)
        else:
            build = _insert_run_values if name == "insert_run" else _skip_values
            self.inserts.append(build(*args, **kwargs))
            if first.trigger is Trigger.SCHEDULE:
                self._tally(first.job_name).fire(first.scheduled_at)
        self.phases[run_id] = phase
        return True

    def _tally(self, job_name: str) -> _Tally:
        tally = self.tallies.get(job_name)
        if tally is None:
            tally = self.tallies[job_name] = _Tally()
        return tally


def _insert_run_values(
    request: RunRequest,
    *,
    started_at: datetime | None,
    pid: int | None = None,
    pid_create_time: float | None = None,
    status: RunStatus = RunStatus.RUNNING,
) -> dict[str, Any]:
    return _history_values(
        request,
        status=RunStatus(status),
        started_at=started_at,
        pid=pid,
        pid_create_time=pid_create_time,
    )


def _skip_values(request: RunRequest, reason: str) -> dict[str, Any]:
    return _history_values(request, status=RunStatus.SKIPPED, completed_at=_utcnow(), error=reason)


def _pid_params(
    run_id: str, pid: int, pid_create_time: float | None, started_at: datetime
) -> dict[str, Any]:
    return {
        "b_id": run_id,
        "b_pid": pid,
        "b_pid_create_time": pid_create_time,
        "b_started_at": started_at,
    }


def _finish_params(result: RunResult) -> dict[str, Any]:
    status = RunStatus(result.status)
    if not status.finished:
        raise ValueError(f"finish_run needs the status a run ended with, not {status}")
    return {
        "b_id": result.run_id,
        "b_status": status.value,
        "b_started_at": result.started_at,
        "b_completed_at": result.completed_at,
        "b_duration_ms": result.duration_ms,
        "b_exit_code": result.exit_code,
        "b_signal": result.signal,
        "b_error": result.error,
        "b_output": result.output,
        "b_output_truncated": result.output_truncated,
        "b_cpu_user_s": result.cpu_user_s,
        "b_cpu_system_s": result.cpu_system_s,
        "b_max_rss_kb": result.max_rss_kb,
        "b_pid": result.pid,
        "b_pid_create_time": None,
    }


class _CoreMany:
    """A Core statement run as one executemany through SQLAlchemy (any database)."""

    def __init__(self, statement: Any) -> None:
        self._statement = statement

    def run(self, conn: Connection, params: list[dict[str, Any]]) -> int:
        """Execute once per ``params`` item; return the rows changed in all."""
        return conn.execute(self._statement, params).rowcount


_Slot = tuple[str, bool, Any, Callable[[Any], Any] | None]
"""A positional parameter: its bind name, whether the caller supplies it (else it is
the constant of a literal), that constant, and the type's bind processor."""


class _Prepared:
    """A Core statement run as one executemany straight on the SQLite driver's cursor.

    The SQL text is SQLAlchemy's own, compiled from the same Core statement for the
    same dialect (once per set of parameter names, as SQLAlchemy does), and each value
    goes through the same bind processor; what is left out is SQLAlchemy's
    per-execution work (execution context, ``construct_params``, events, result
    set-up), which measured ~70% of the CPU of the small batches a busy daemon writes.
    Driver errors are wrapped as SQLAlchemy wraps them, so callers cannot tell.

    For the pysqlite driver only: positional parameters, and an executemany rowcount
    that is the sum over its rows.
    """

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        self._statement = statement
        self._dialect = dialect
        self._forms: dict[tuple[str, ...], tuple[str, list[_Slot]]] = {}

    def run(self, conn: Connection, params: list[dict[str, Any]]) -> int:
        """Execute once per ``params`` item; return the rows changed in all."""
        sql, slots = self._form(tuple(sorted(params[0])))
        rows = [_positional(slots, p) for p in params]
        dbapi = self._dialect.loaded_dbapi
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(sql, rows)
            return cursor.rowcount
        except dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, rows, exc, dbapi.Error, hide_parameters=True, dialect=self._dialect
            ) from exc
        finally:
            cursor.close()

    def _form(self, keys: tuple[str, ...]) -> tuple[str, list[_Slot]]:
        form = self._forms.get(keys)
        if form is None:
            dialect = self._dialect
            compiled = self._statement.compile(dialect=dialect, column_keys=list(keys))
            if compiled.positiontup is None:
                raise TypeError(f"{dialect.name}: prepared statements need positional binds")
            slots = []
            for name in compiled.positiontup:
                bind = compiled.binds[name]
                constant = None if bind.required else bind.effective_value
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                slots.append((name, bind.required, constant, process))
            form = self._forms[keys] = (compiled.string, slots)
        return form


def _positional(slots: list[_Slot], params: Mapping[str, Any]) -> tuple[Any, ...]:
    row = []
    for name, given, constant, process in slots:
        value = params[name] if given else constant
        row.append(value if process is None else process(value))
    return tuple(row)


def _grouped_statements(engine: Engine, insert_run: Any) -> dict[str, _CoreMany | _Prepared] | None:
    """The statements of grouped writes on ``engine``, or None where the driver does
    not count the rows of an executemany (grouped writes then fall back to a statement
    per op).  On SQLite (pysqlite) they run prepared on the driver's cursor."""
    statements = {
        "insert_run": insert_run,
        "set_run_pid": _SET_RUN_PID,
        "finish_run": _FINISH_RUN,
        "tally_job": _TALLY_JOB,
    }
    dialect = engine.dialect
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        return {name: _Prepared(statement, dialect) for name, statement in statements.items()}
    if not dialect.supports_sane_multi_rowcount:
        return None
    return {name: _CoreMany(statement) for name, statement in statements.items()}


def _run_all(runner: _CoreMany | _Prepared, conn: Connection, params: list[dict[str, Any]]) -> None:
    """One executemany of ``params``; :class:`_Replay` unless each changed one row."""
    try:
        changed = runner.run(conn, params)
    except IntegrityError as exc:  # a duplicate, where INSERT cannot ignore conflicts
        raise _Replay(f"{len(params)} rows: {_describe(exc)}") from exc
    if changed != len(params):
        raise _Replay(f"{changed} of {len(params)} rows changed")


# --- the synchronous store ---------------------------------------------------


class Store:
    """History and job state over one SQLAlchemy URL.

    Not thread-safe: use it from one thread at a time (``StoreService`` does).
    Database failures surface as :class:`StoreError` chained to the driver's error.
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> None:
        self.url = url
        self._busy_timeout_ms = busy_timeout_ms
        self._auto_checkpoint = True
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._insert_run_ignoring: Any = None
        self._insert_job_ignoring: Any = None
        self._grouped: dict[str, _CoreMany | _Prepared] | None = None
        # Jobs known to have a row (rows are never deleted), so grouped writes need not
        # create them; names seen in the current write transaction join on commit.
        self._known_jobs: set[str] = set()
        self._txn_jobs: set[str] = set()

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        """Connect, create or migrate the schema.  Idempotent.

        Raises :class:`StoreError` if the database cannot be opened or was written by a
        newer cronhub.
        """
        if self._engine is not None:
            return
        engine = self._create_engine()
        try:
            with engine.execution_options(cronhub_begin="IMMEDIATE").begin() as conn:
                _prepare_schema(conn, self._label())
        except StoreError:
            engine.dispose()
            raise
        except (SQLAlchemyError, OSError) as exc:
            engine.dispose()
            raise StoreError(f"{self._label()}: cannot open database: {_describe(exc)}") from exc
        self._engine = engine
        self._insert_run_ignoring = _insert_ignoring_duplicates(engine, _RUNS)
        self._insert_job_ignoring = _insert_ignoring_duplicates(engine, _JOBS)
        insert_run = self._insert_run_ignoring
        self._grouped = _grouped_statements(
            engine, insert(_RUNS) if insert_run is None else insert_run
        )
        self._known_jobs.clear()

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    def close(self) -> None:
        """Close every connection.  Idempotent."""
        self._disconnect()
        self._engine = None

    def _label(self) -> str:
        """How messages name the database: its file, or its URL without the password."""
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite":
            return url.database or ":memory:"
        return url.render_as_string(hide_password=True)

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        if url.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
        database = url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not in_memory:
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{database}: cannot create its directory: {exc}") from exc
        engine = create_engine(url, poolclass=StaticPool) if in_memory else create_engine(url)
        _configure_sqlite(engine, self._busy_timeout_ms, auto_checkpoint=self._auto_checkpoint)
        return engine

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        """One transaction: committed on success, rolled back on any error.

        Every transaction runs on one connection kept open between them: checking one
        out of the pool costs more than a small batch's statements, and one connection
        keeps one page cache.  Database and OS errors become :class:`StoreError`; a
        connection that failed is discarded so the next attempt reconnects (and sees a
        file made writable again).
        """
        if self._engine is None:
            raise StoreError("the history database is not open")
        self._txn_jobs.clear()
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            conn = self._conn.execution_options(cronhub_begin="IMMEDIATE" if write else "")
            with conn.begin():
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            if is_retryable(exc):
                self._disconnect(failed=True)
            raise StoreError(f"history database error: {_describe(exc)}") from exc
        if write:
            self._known_jobs |= self._txn_jobs

    def _disconnect(self, *, failed: bool = False) -> None:
        """Close every connection (discarding a ``failed`` one); the next transaction
        opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if failed:
                    conn.invalidate()
                conn.close()
            except (SQLAlchemyError, OSError) as exc:
                log.debug("closing the history connection failed: %s", _describe(exc))
        if self._engine is not None:
            self._engine.dispose()

    # -- batches -----------------------------------------------------------

    def apply_batch(
        self, ops: Sequence[tuple[str, tuple[Any, ...], Mapping[str, Any]]]
    ) -> list[Any]:
        """Run several write methods in ONE transaction and return one outcome per op.

        ``ops`` are ``(method_name, args, kwargs)``.  An outcome is the op's return
        value, or the exception it raised when that failure is not retryable (bad data,
        a bug): then the batch is rolled back and replayed one op per transaction, so
        only the faulty op is lost.  A retryable failure (locked, read-only, disk full)
        raises :class:`StoreError`.  Every write is idempotent, so replaying a batch
        that was partly committed changes nothing twice.

        Runs of consecutive run writes (``insert_run``, ``record_skip``,
        ``set_run_pid``, ``finish_run``) cost a few statements, not a few per op: one
        executemany per kind, and one UPDATE per job for the aggregates.  If one of
        them changes fewer rows than planned (a duplicate tick, a run finished twice),
        the transaction is replayed with one statement per op, which tells each op's
        outcome.
        """
        for name, _, _ in ops:
            if name not in _WRITES:
                raise ValueError(f"not a store write: {name!r}")
        one_by_one = len(ops) == 1
        if self._grouped is not None:
            try:
                with self._transaction(write=True) as conn:
                    return self._apply_grouped(conn, ops, self._grouped)
            except _Replay as exc:
                log.debug("grouped writes replayed op by op: %s", exc)
            except StoreError as exc:
                if is_retryable(exc):
                    raise
                log.debug("batch of %d writes refused (%s); replaying one by one", len(ops), exc)
                one_by_one = True
            except _OP_ERRORS as exc:
                log.debug("batch of %d writes refused (%s); replaying one by one", len(ops), exc)
                one_by_one = True
        if not one_by_one:
            try:
                with self._transaction(write=True) as conn:
                    return [self._apply(conn, name, args, kwargs) for name, args, kwargs in ops]
            except StoreError as exc:
                if is_retryable(exc):
                    raise
                log.debug("batch of %d writes refused (%s); replaying one by one", len(ops), exc)
            except _OP_ERRORS as exc:
                log.debug("batch of %d writes refused (%s); replaying one by one", len(ops), exc)
        return [self._apply_alone(name, args, kwargs) for name, args, kwargs in ops]

    def _apply_alone(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        try:
            return self._write(name, *args, **kwargs)
        except StoreError as exc:
            if is_retryable(exc):
                raise
            return exc
        except _OP_ERRORS as exc:
            return exc

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._transaction(write=True) as conn:
            return self._apply(conn, name, args, kwargs)

    def _apply(
        self, conn: Connection, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        return getattr(self, f"_{name}")(conn, *args, **kwargs)

    def _apply_grouped(
        self,
        conn: Connection,
        ops: Sequence[tuple[str, tuple[Any, ...], Mapping[str, Any]]],
        statements: Mapping[str, _CoreMany | _Prepared],
    ) -> list[Any]:
        """The batch as groups of run writes (see :class:`_Group`), each written with
        a few statements, and the other writes one by one between them."""
        outcomes = []
        group = _Group()
        for name, args, kwargs in ops:
            grouped = _GROUPED.get(name)
            if grouped is None:
                self._write_group(conn, group, statements)
                group = _Group()
                outcomes.append(self._apply(conn, name, args, kwargs))
                continue
            if not group.add(name, args, kwargs):
                self._write_group(conn, group, statements)
                group = _Group()
                group.add(name, args, kwargs)
            outcomes.append(grouped[1])
        self._write_group(conn, group, statements)
        return outcomes

    def _write_group(
        self, conn: Connection, group: _Group, statements: Mapping[str, _CoreMany | _Prepared]
    ) -> None:
        if group.inserts:
            _run_all(statements["insert_run"], conn, group.inserts)
        if group.pids:
            statements["set_run_pid"].run(conn, list(group.pids.values()))
        if group.finishes:
            _run_all(statements["finish_run"], conn, group.finishes)
        if group.tallies:
            now = _utcnow()
            self._ensure_jobs(conn, group.tallies, now)
            params = [tally.params(name, now) for name, tally in group.tallies.items()]
            try:
                _run_all(statements["tally_job"], conn, params)
            except _Replay:
                self._known_jobs.clear()  # a job row went missing behind our back
                raise

    def _ensure_jobs(self, conn: Connection, names: Iterable[str], now: datetime) -> None:
        """Create a bare row for each job of ``names`` without one (a run or an override
        can come before the registry names the job)."""
        missing = [name for name in names if name not in self._known_jobs]
        if not missing:
            return
        if self._insert_job_ignoring is not None:
            conn.execute(self._insert_job_ignoring, [_bare_job(name, now) for name in missing])
        else:
            known = select(_JOBS.c.name).where(_JOBS.c.name.in_(missing))
            have = set(conn.execute(known).scalars())
            bare = [_bare_job(name, now) for name in missing if name not in have]
            if bare:
                conn.execute(insert(_JOBS), bare)
        self._txn_jobs.update(missing)

    # -- writes ------------------------------------------------------------

    def sync_jobs(self, specs: Iterable[JobSpec]) -> None:
        """Upsert each job's description, schedule text and enabled flag.

        Jobs missing from ``specs`` keep their rows (and history).
        """
        self._write("sync_jobs", list(specs))

    def _sync_jobs(self, conn: Connection, specs: Sequence[JobSpec]) -> None:
        existing = {
            row.name: (row.description, row.schedule, row.enabled)
            for row in conn.execute(
                select(_JOBS.c.name, _JOBS.c.description, _JOBS.c.schedule, _JOBS.c.enabled)
            )
        }
        now = _utcnow()
        new, changed = [], []
        for spec in specs:
            config = (spec.description, spec.schedule.text, spec.enabled)
            if spec.name not in existing:
                new.append(
                    _bare_job(spec.name, now)
                    | {"description": config[0], "schedule": config[1], "enabled": config[2]}
                )
            elif existing[spec.name] != config:
                changed.append(
                    {
                        "b_name": spec.name,
                        "b_description": config[0],
                        "b_schedule": config[1],
                        "b_enabled": config[2],
                        "b_now": now,
                    }
                )
        if new:
            conn.execute(insert(_JOBS), new)
        if changed:
            conn.execute(_SYNC_JOB, changed)
        self._txn_jobs.update(existing)
        self._txn_jobs.update(spec.name for spec in specs)

    def insert_run(
        self,
        request: RunRequest,
        *,
        started_at: datetime | None,
        pid: int | None = None,
        pid_create_time: float | None = None,
        status: RunStatus = RunStatus.RUNNING,
    ) -> bool:
        """Record a run (normally as ``running``, before its process is spawned).

        Returns False, writing nothing, if another run already holds its
        ``(job, scheduled_at, attempt)``; True if it is recorded (also when this very
        run id already was: inserting is idempotent).  Aggregates are counted by
        :meth:`finish_run` only.
        """
        return self._write(
            "insert_run",
            request,
            started_at=started_at,
            pid=pid,
            pid_create_time=pid_create_time,
            status=status,
        )

    def _insert_run(
        self,
        conn: Connection,
        request: RunRequest,
        *,
        started_at: datetime | None,
        pid: int | None = None,
        pid_create_time: float | None = None,
        status: RunStatus = RunStatus.RUNNING,
    ) -> bool:
        values = _insert_run_values(
            request,
            started_at=started_at,
            pid=pid,
            pid_create_time=pid_create_time,
            status=status,
        )
        return self._insert_history(conn, request, values)

    def set_run_pid(
        self, run_id: str, pid: int, pid_create_time: float | None, started_at: datetime
    ) -> None:
        """Fill in the process of a ``running`` row once it has been spawned."""
        self._write("set_run_pid", run_id, pid, pid_create_time, started_at)

    def _set_run_pid(
        self,
        conn: Connection,
        run_id: str,
        pid: int,
        pid_create_time: float | None,
        started_at: datetime,
    ) -> None:
        conn.execute(_SET_RUN_PID, _pid_params(run_id, pid, pid_create_time, started_at))

    def record_skip(self, request: RunRequest, reason: str) -> bool:
        """Record a tick that was not started (``skipped``, with ``reason`` as its error).

        Returns False if that tick is already recorded by another run.
        """
        return self._write("record_skip", request, reason)

    def _record_skip(self, conn: Connection, request: RunRequest, reason: str) -> bool:
        return self._insert_history(conn, request, _skip_values(request, reason))

    def _insert_history(
        self, conn: Connection, request: RunRequest, values: dict[str, Any]
    ) -> bool:
        if self._insert_run_ignoring is not None:
            inserted = conn.execute(self._insert_run_ignoring, values).rowcount == 1
        else:
            try:
                with conn.begin_nested():
                    conn.execute(insert(_RUNS), values)
                inserted = True
            except IntegrityError:
                inserted = False
        if not inserted:
            # Our own row already there (a batch replayed after a partial commit)?
            return self._run_exists(conn, request.run_id)
        if request.trigger is Trigger.SCHEDULE:
            tally = _Tally()
            tally.fire(request.scheduled_at)
            self._tally_jobs(conn, {request.job_name: tally})
        return True

    @staticmethod
    def _run_exists(conn: Connection, run_id: str) -> bool:
        return conn.execute(select(_RUNS.c.id).where(_RUNS.c.id == run_id)).first() is not None

    def finish_run(self, result: RunResult) -> bool:
        """Close a ``running`` row with its result and count it in the job's aggregates.

        A ``skipped`` result closes a run recorded but never spawned: it is not counted
        as a run.  Idempotent: returns False, changing nothing, if the row is already
        finished or was never recorded.
        """
        return self._write("finish_run", result)

    def _finish_run(self, conn: Connection, result: RunResult) -> bool:
        params = _finish_params(result)
        if conn.execute(_FINISH_RUN, params).rowcount != 1:
            if not self._run_exists(conn, result.run_id):
                log.warning(
                    "no history row for run %s of %s; its result is not recorded",
                    result.run_id,
                    result.job_name,
                )
            return False
        status = RunStatus(result.status)
        if status is not RunStatus.SKIPPED:
            tally = _Tally()
            tally.finished(status, result.started_at, result.error, result.duration_ms)
            self._tally_jobs(conn, {result.job_name: tally})
        return True

    def _tally_jobs(self, conn: Connection, tallies: Mapping[str, _Tally]) -> None:
        """Fold finished runs and fired ticks into their jobs' rows."""
        now = _utcnow()
        for name, tally in tallies.items():
            self._update_job(conn, _TALLY_JOB, tally.params(name, now))

    def _update_job(self, conn: Connection, statement: Any, params: dict[str, Any]) -> None:
        """Run an UPDATE of one job's row, creating a bare row first if the job was never
        synced (a run or an override can come before the registry names the job)."""
        now = params.setdefault("b_now", _utcnow())
        name = params["b_name"]
        if conn.execute(statement, params).rowcount != 1:
            bare = _bare_job(name, now)
            ignoring = self._insert_job_ignoring
            conn.execute(insert(_JOBS) if ignoring is None else ignoring, bare)
            conn.execute(statement, params)
        self._txn_jobs.add(name)

    def recover_interrupted(self, now: datetime) -> list[RunRecord]:
        """Mark every run left ``running`` as ``interrupted`` (after a daemon crash).

        Returns those runs, with ``pid`` and ``pid_create_time``, so the caller can end
        any process of theirs that survived.
        """
        return self._write("recover_interrupted", now)

    def _recover_interrupted(self, conn: Connection, now: datetime) -> list[RunRecord]:
        rows = conn.execute(
            select(*_LIST_COLUMNS)
            .where(_RUNS.c.status == RunStatus.RUNNING.value)
            .order_by(_RUNS.c.scheduled_at, _RUNS.c.attempt)
        ).all()
        if not rows:
            return []
        conn.execute(_INTERRUPT_RUN, [{"b_id": row.id, "b_completed_at": now} for row in rows])
        tallies: dict[str, _Tally] = {}
        for row in rows:
            tally = tallies.setdefault(row.job_name, _Tally())
            tally.finished(RunStatus.INTERRUPTED, row.started_at, INTERRUPTED_ERROR, None)
        self._tally_jobs(conn, tallies)
        interrupted = {
            "status": RunStatus.INTERRUPTED,
            "completed_at": now,
            "error": INTERRUPTED_ERROR,
        }
        return [replace(_record(row, output=None), **interrupted) for row in rows]

    def set_override(self, name: str, enabled: bool | None) -> None:
        """Persist a runtime enable/disable of a job; ``None`` follows the config again."""
        self._write("set_override", name, enabled)

    def _set_override(self, conn: Connection, name: str, enabled: bool | None) -> None:
        self._update_job(conn, _SET_OVERRIDE, {"b_name": name, "b_override": enabled})

    def prune(self, before: datetime, batch: int = PRUNE_BATCH) -> int:
        """Delete up to ``batch`` finished runs scheduled before ``before``, oldest first.

        One short transaction; returns how many rows went.  Call it again until it
        returns less than ``batch`` — other writes get their turn in between.
        """
        return self._write("prune", before, batch)

    def _prune(self, conn: Connection, before: datetime, batch: int = PRUNE_BATCH) -> int:
        if batch <= 0:
            return 0
        return conn.execute(_PRUNE, {"b_before": before, "b_batch": batch}).rowcount

    # -- reads ------------------------------------------------------------

    def job_states(self, name: str | None = None) -> dict[str, JobState]:
        """The aggregates and override of every job ever synced or run (or of one)."""
        query = select(_JOBS)
        if name is not None:
            query = query.where(_JOBS.c.name == name)
        with self._transaction(write=False) as conn:
            rows = conn.execute(query).all()
        return {row.name: _job_state(row) for row in rows}

    def history(
        self,
        job: str | None = None,
        limit: int = 20,
        status: RunStatus | None = None,
        since: datetime | None = None,
    ) -> list[RunRecord]:
        """Runs newest first (by scheduled time, then attempt), without their output.

        Ordered by ``scheduled_at``, which every row has (a skipped tick or a run not
        yet spawned has no ``started_at``), and which the unique key's index serves.
        """
        query = select(*_LIST_COLUMNS)
        if job is not None:
            query = query.where(_RUNS.c.job_name == job)
        if status is not None:
            query = query.where(_RUNS.c.status == RunStatus(status).value)
        if since is not None:
            query = query.where(_RUNS.c.scheduled_at >= since)
        query = query.order_by(_RUNS.c.scheduled_at.desc(), _RUNS.c.attempt.desc())
        query = query.limit(max(limit, 0))
        with self._transaction(write=False) as conn:
            rows = conn.execute(query).all()
        return [_record(row, output=None) for row in rows]

    def get_run(self, job: str, run_id: str | None = None) -> RunRecord | None:
        """One run with its output: ``run_id`` of ``job``, or the job's latest run
        (running or finished; skipped ticks are not runs)."""
        query = select(_RUNS).where(_RUNS.c.job_name == job)
        if run_id is not None:
            query = query.where(_RUNS.c.id == run_id)
        else:
            query = (
                query.where(_RUNS.c.status != RunStatus.SKIPPED.value)
                .order_by(_RUNS.c.scheduled_at.desc(), _RUNS.c.attempt.desc())
                .limit(1)
            )
        with self._transaction(write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else _record(row, output=row.output)

    def last_fired(self) -> dict[str, datetime]:
        """Per job, the latest ``scheduled_at`` recorded with trigger ``schedule``."""
        query = select(_JOBS.c.name, _JOBS.c.last_fired).where(_JOBS.c.last_fired.is_not(None))
        with self._transaction(write=False) as conn:
            return {row.name: row.last_fired for row in conn.execute(query)}

    # -- checkpoints -------------------------------------------------------

    def use_manual_checkpoints(self) -> None:
        """Stop SQLite from checkpointing the WAL inside a commit; the owner then calls
        :meth:`checkpoint` (from another thread) instead.

        An automatic checkpoint copies ~1,000 pages and syncs the file inside whichever
        commit crosses the threshold, stalling that commit for tens of milliseconds —
        too long for the row a due run waits for.  Call before :meth:`open`.
        """
        if self._engine is not None:
            raise RuntimeError("use_manual_checkpoints() must come before open()")
        self._auto_checkpoint = False

    def checkpoint(self) -> None:
        """Copy the WAL back into the database without blocking writers (SQLite only).

        The one method safe to call from another thread than the store's user: it
        checks out its own connection.
        """
        engine = self._engine
        if engine is None or engine.dialect.name != "sqlite":
            return
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
        except (SQLAlchemyError, OSError) as exc:
            log.debug("WAL checkpoint failed: %s", _describe(exc))

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` ("ok" when sound); "ok" elsewhere, where
        the server checks its own storage."""
        with self._transaction(write=False) as conn:
            if conn.dialect.name != "sqlite":
                return "ok"
            lines = conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
        return "\n".join(str(line) for line in lines)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int, *, auto_checkpoint: bool) -> None:
    """Pragmas on every new connection, and explicit transactions.

    The driver is put in autocommit mode and SQLAlchemy's ``begin`` emits ``BEGIN``
    itself (SQLAlchemy's documented pysqlite recipe): without it the driver starts
    transactions only before DML, which breaks savepoints, transactional DDL and
    read-then-write consistency.  Write transactions ask for ``BEGIN IMMEDIATE``, so they
    take the write lock up front and wait ``busy_timeout`` for it rather than failing
    midway.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # WAL: readers never block the writer nor each other.  With WAL,
            # synchronous=NORMAL is durable against a crash of the process (the WAL is
            # in the OS cache); a power loss may lose the last commits but never
            # corrupts the database.  FULL would fsync every commit, capping throughput.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # A larger page cache (default 2 MiB) keeps index pages hot for the
            # random-key deletes of pruning a big history.
            cursor.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            if not auto_checkpoint:
                cursor.execute("PRAGMA wal_autocheckpoint = 0")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("cronhub_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())


def _insert_ignoring_duplicates(engine: Engine, table: Table) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` where the database has it, else None."""
    if engine.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if engine.dialect.name == "postgresql":
        # Imported here: the dialect weighs ~2 MiB that a SQLite daemon never needs.
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    return None


def _prepare_schema(conn: Connection, label: str) -> None:
    """Create a new database, or check and migrate an existing one, in one transaction."""
    inspector = inspect(conn)
    if not inspector.has_table(_META.name):
        leftovers = [t.name for t in (_JOBS, _RUNS) if inspector.has_table(t.name)]
        if leftovers:
            raise StoreError(
                f"{label}: has cronhub tables ({', '.join(leftovers)}) but no schema version; "
                "it was not made by cronhub or is damaged"
            )
        SQLModel.metadata.create_all(conn, tables=_TABLES)
        conn.execute(insert(_META).values(key="schema_version", value=str(SCHEMA_VERSION)))
        return
    raw = conn.execute(select(_META.c.value).where(_META.c.key == "schema_version")).scalar()
    try:
        version = int(raw) if raw is not None else None
    except ValueError:
        version = None
    if version is None:
        raise StoreError(f"{label}: unreadable schema version {raw!r} in cronhub_meta")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{label}: database schema version {version} is newer than this cronhub "
            f"({SCHEMA_VERSION}); upgrade cronhub"
        )
    for step in range(version, SCHEMA_VERSION):
        migrate = MIGRATIONS.get(step)
        if migrate is None:
            raise StoreError(f"{label}: no migration from schema version {step} to {step + 1}")
        log.info("migrating %s from schema version %d to %d", label, step, step + 1)
        migrate(conn)
    if version != SCHEMA_VERSION:
        conn.execute(
            update(_META).where(_META.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
        )


# --- rows to value objects ---------------------------------------------------


def _history_values(
    request: RunRequest,
    *,
    status: RunStatus,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    error: str | None = None,
    pid: int | None = None,
    pid_create_time: float | None = None,
) -> dict[str, Any]:
    """A new history row; always the same keys, so the compiled INSERT is reused."""
    return {
        "id": request.run_id,
        "job_name": request.job_name,
        "trigger": Trigger(request.trigger).value,
        "attempt": request.attempt,
        "scheduled_at": request.scheduled_at,
        "status": status.value,
        "started_at": started_at,
        "completed_at": completed_at,
        "error": error,
        "pid": pid,
        "pid_create_time": pid_create_time,
        "output_truncated": False,
        "metadata": "{}",
    }


def _bare_job(name: str, now: datetime) -> dict[str, Any]:
    """A job row with no configuration yet."""
    return {
        "name": name,
        "description": "",
        "schedule": "",
        "enabled": True,
        "total_runs": 0,
        "total_failures": 0,
        "timed_runs": 0,
        "updated_at": now,
    }


def _load_metadata(text: str | None) -> Mapping[str, object]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"unparsed": text}
    return value if isinstance(value, dict) else {"value": value}


def _record(row: Any, *, output: str | None) -> RunRecord:
    return RunRecord(
        id=row.id,
        job_name=row.job_name,
        trigger=Trigger(row.trigger),
        attempt=row.attempt,
        scheduled_at=row.scheduled_at,
        status=RunStatus(row.status),
        started_at=row.started_at,
        completed_at=row.completed_at,
        duration_ms=row.duration_ms,
        exit_code=row.exit_code,
        signal=row.signal,
        error=row.error,
        output=output,
        output_truncated=bool(row.output_truncated),
        cpu_user_s=row.cpu_user_s,
        cpu_system_s=row.cpu_system_s,
        max_rss_kb=row.max_rss_kb,
        pid=row.pid,
        pid_create_time=row.pid_create_time,
        metadata=_load_metadata(row.metadata),
    )


def _job_state(row: Any) -> JobState:
    return JobState(
        name=row.name,
        last_run=row.last_run,
        last_status=None if row.last_status is None else RunStatus(row.last_status),
        last_error=row.last_error,
        last_duration_ms=row.last_duration_ms,
        total_runs=row.total_runs,
        total_failures=row.total_failures,
        average_duration_ms=row.average_duration_ms,
        override=row.override,
    )


# --- the asyncio service -----------------------------------------------------


@dataclass(eq=False, slots=True)
class _Op:
    """One store call waiting for the writer thread."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: asyncio.Future[Any]
    hold: bool = False
    """A ``submit``ted write: held and retried while the database fails."""
    urgent: bool = True
    """Written as soon as the writer is free; else it may wait, until ``due``, for
    an urgent op to share its transaction."""
    due: float = 0.0

    @property
    def is_read(self) -> bool:
        return self.method in _READS or self.method == "open"

    def describe(self) -> str:
        first = self.args[0] if self.args else None
        run_id = getattr(first, "run_id", None)
        return f"{self.method}({run_id})" if run_id else self.method


_CHECKPOINT_EVERY_WRITES = 400
"""Writes between two WAL checkpoints requested by the service.  A write adds at most
~2.5 pages to the WAL (measured: a run's three writes, one run per transaction; fewer
in bigger batches), so the WAL stays under SQLite's own checkpoint threshold of 1,000
pages, and a busy daemon checkpoints a few times a second, not dozens."""

_Settlement = tuple[asyncio.Future[Any], Any, BaseException | None, bool]
"""A finished op's future, its value or error, and whether a failure was already
logged (a ``submit`` future nobody may await must not log "exception never
retrieved")."""


def _settle_all(settlements: list[_Settlement]) -> None:
    """On the event loop: resolve the futures of ops the writer thread finished."""
    for future, value, error, logged in settlements:
        if future.done():
            continue
        if error is None:
            future.set_result(value)
            continue
        future.set_exception(error)
        if logged:
            future.exception()  # marks it retrieved; an awaiting caller still gets it


class StoreService:
    """A :class:`Store` behind one dedicated thread, for the event loop.

    * Every call runs on that thread, in the order it was made, so a read sees every
      write submitted before it, and no session ever crosses threads.
    * :meth:`submit` queues a write and returns a future of its result at once.
      Consecutive queued writes run in one transaction (up to ``max_batch``; in
      slices of 32 while someone waits for one of them).  While
      the database fails (locked, read-only, disk full, I/O error) they are held in
      memory, in order, and retried with exponential backoff from
      ``retry_initial_s`` to ``retry_max_s``; one warning is logged per outage and an
      info line when it ends.  Nothing is lost unless :meth:`stop` times out.
    * :meth:`call` runs a read or a write and returns its result.  Reads are not held
      behind the held writes of an outage: they run at once and may fail with
      :class:`StoreError` (the longest they wait is one write attempt, bounded by the
      store's busy timeout).  A write ``call`` made during an outage fails at once with
      :class:`StoreError`.
    * A duplicate ``insert_run``/``record_skip`` (the tick is already recorded by
      another run) is no failure to retry: its result is False, and it is logged.

    ``submit``, ``call``, ``start`` and ``stop`` are for the event loop's thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        max_batch: int = 200,
        linger_s: float = 0.05,
    ) -> None:
        self._store = store
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._cond = threading.Condition()
        self._queue: deque[_Op] = deque()  # guarded by _cond
        self._urgent = 0  # urgent ops queued, guarded by _cond
        self._pending = 0  # writes queued or held, guarded by _cond
        self._stopping = False
        self._stop_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        # Writer-thread state.
        self._held: deque[_Op] = deque()
        self._outage_since: float | None = None
        self._backoff = retry_initial_s
        self._retry_at = 0.0
        self._written_while_held = 0
        self._settlements: list[_Settlement] = []
        self._written_since_checkpoint = 0
        self._checkpoint_due = threading.Event()
        self._checkpointer: threading.Thread | None = None

    # -- event-loop side ---------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Writes submitted or called and not yet committed (queued or held)."""
        return self._pending

    @property
    def available(self) -> bool:
        """False from a failed write until a write succeeds again."""
        return self._outage_since is None

    async def start(self) -> None:
        """Start the writer thread and open the store on it (raises :class:`StoreError`)."""
        if self._thread is not None:
            raise RuntimeError("StoreService already started")
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="cronhub-store", daemon=True)
        if not self._store.is_open:
            # WAL checkpoints run on their own thread, so no commit of the writer
            # (such as the row a due run waits for) pays for one.
            self._store.use_manual_checkpoints()
            self._checkpointer = threading.Thread(
                target=self._run_checkpointer, name="cronhub-store-checkpoint", daemon=True
            )
            self._checkpointer.start()
        self._thread.start()
        try:
            await self._enqueue("open", (), {}, hold=False)
        except BaseException:
            await self.stop(timeout=0)
            raise

    def submit(self, method_name: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Queue a write; it is committed in order, held and retried while the database
        fails.  The returned future (which may be ignored) gets the method's result once
        the write is committed, or the error that made it be dropped."""
        if method_name not in _WRITES:
            raise ValueError(f"not a store write: {method_name!r}")
        return self._enqueue(method_name, args, kwargs, hold=True)

    async def call(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """Run a store method on the writer thread and return its result."""
        if method_name not in _READS and method_name not in _WRITES:
            raise ValueError(f"not a store method: {method_name!r}")
        return await self._enqueue(method_name, args, kwargs, hold=False)

    async def stop(self, timeout: float = 10.0) -> None:
        """Write everything pending (retrying until ``timeout``), then close the store.

        Writes still held when ``timeout`` passes are logged as lost.
        """
        if self._thread is None or self._done is None:
            return
        with self._cond:
            if not self._stopping:
                self._stopping = True
                self._stop_deadline = time.monotonic() + timeout
            self._cond.notify()
        await asyncio.shield(self._done)

    def _enqueue(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, hold: bool
    ) -> asyncio.Future[Any]:
        if self._loop is None:
            raise StoreError("the history store is not started")
        urgent = not hold or method in _URGENT
        due = time.monotonic() + (0.0 if urgent else self._linger_s)
        op = _Op(method, args, kwargs, self._loop.create_future(), hold, urgent, due)
        with self._cond:
            if self._stopping:
                raise StoreError("the history store is stopping")
            self._queue.append(op)
            if not op.is_read:
                self._pending += 1
            self._urgent += urgent
            # A lazy op behind others changes nothing the writer waits for.
            if urgent or len(self._queue) == 1 or len(self._queue) == self._max_batch:
                self._cond.notify()
        return op.future

    # -- writer thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            while (ops := self._next_ops()) is not None:
                try:
                    self._process(ops)
                except Exception:  # loop boundary: keep the writer alive
                    log.exception("history writer failed; continuing")
                finally:
                    self._dispatch()
        finally:
            self._finish()

    def _next_ops(self) -> list[_Op] | None:
        """Block until there is work: queued ops, a retry that is due, or the end.

        Returns the queued ops (none when only a retry is due), or None to stop.
        """
        with self._cond:
            while True:
                now = time.monotonic()
                queue = self._queue
                if queue and (
                    self._urgent
                    or self._stopping
                    or len(queue) >= self._max_batch
                    or queue[0].due <= now
                ):
                    # Someone waits (runs for their inserts, a caller for its call):
                    # a long queue is written in slices, so the first runs start
                    # while the rest are written.
                    limit = _URGENT_SLICE if self._urgent else self._max_batch
                    ops = [queue.popleft() for _ in range(min(len(queue), limit))]
                    self._urgent -= sum(op.urgent for op in ops)
                    return ops
                if self._held and now >= self._retry_at:
                    return []
                if self._stopping and (not self._held or now >= self._stop_deadline):
                    return None
                waits = []
                if queue:
                    waits.append(queue[0].due - now)
                if self._held:
                    waits.append(self._retry_at - now)
                if self._stopping:
                    waits.append(self._stop_deadline - now)
                self._cond.wait(min(waits) if waits else None)

    def _process(self, ops: list[_Op]) -> None:
        if self._held and time.monotonic() >= self._retry_at:
            self._retry_held()
        writes: list[_Op] = []
        for op in ops:
            if op.is_read:
                self._flush(writes)
                writes = []
                self._run_read(op)
            elif self._held:
                self._flush(writes)
                writes = []
                self._hold_or_refuse(op, "database unavailable")
            else:
                writes.append(op)
        self._flush(writes)

    def _run_read(self, op: _Op) -> None:
        try:
            value = getattr(self._store, op.method)(*op.args, **op.kwargs)
        except Exception as exc:  # handed to the awaiting caller
            self._settlements.append((op.future, None, exc, False))
        else:
            self._settlements.append((op.future, value, None, False))

    def _hold_or_refuse(self, op: _Op, reason: str) -> None:
        if op.hold:
            self._held.append(op)
            return
        self._done_pending(1)
        error = StoreError(
            f"history database unavailable ({reason}; {len(self._held)} writes held): "
            f"{op.method} not done"
        )
        self._settlements.append((op.future, None, error, False))

    def _flush(self, ops: list[_Op]) -> None:
        if not ops:
            return
        try:
            outcomes = self._store.apply_batch([(op.method, op.args, op.kwargs) for op in ops])
        except (StoreError, SQLAlchemyError, OSError) as exc:
            if is_retryable(exc):
                self._enter_outage(exc, ops)
                return
            outcomes = [exc] * len(ops)
        self._done_pending(len(ops))
        for op, outcome in zip(ops, outcomes, strict=True):
            self._settle(op, outcome)
        self._note_written(ops)
        self._leave_outage()

    def _enter_outage(self, exc: BaseException, ops: list[_Op]) -> None:
        reason = _describe(exc.__cause__ or exc)
        for op in ops:
            self._hold_or_refuse(op, reason)
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self._backoff = self._retry_initial_s
            log.warning(
                "history database unavailable: %s; holding %d results", reason, len(self._held)
            )
        self._retry_at = now + self._backoff

    def _retry_held(self) -> None:
        count = min(len(self._held), self._max_batch)
        ops = [self._held[i] for i in range(count)]
        try:
            outcomes = self._store.apply_batch([(op.method, op.args, op.kwargs) for op in ops])
        except (StoreError, SQLAlchemyError, OSError) as exc:
            if is_retryable(exc):
                self._backoff = min(self._backoff * 2, self._retry_max_s)
                self._retry_at = time.monotonic() + self._backoff
                log.debug("history database still unavailable: %s", _describe(exc))
                return
            outcomes = [exc] * count
        for _ in range(count):
            self._held.popleft()
        self._done_pending(count)
        for op, outcome in zip(ops, outcomes, strict=True):
            self._settle(op, outcome)
        self._written_while_held += count
        self._note_written(ops)
        self._retry_at = time.monotonic()
        self._leave_outage()

    def _leave_outage(self) -> None:
        if self._outage_since is None or self._held:
            return
        log.info(
            "history database available again after %.1f s; wrote %d held results",
            time.monotonic() - self._outage_since,
            self._written_while_held,
        )
        self._outage_since = None
        self._written_while_held = 0
        self._backoff = self._retry_initial_s

    def _note_written(self, ops: list[_Op]) -> None:
        """Ask for a WAL checkpoint every so many writes, and after each prune."""
        if self._checkpointer is None:
            return
        self._written_since_checkpoint += len(ops)
        pruned = any(op.method == "prune" for op in ops)
        if pruned or self._written_since_checkpoint >= _CHECKPOINT_EVERY_WRITES:
            self._written_since_checkpoint = 0
            self._checkpoint_due.set()

    def _run_checkpointer(self) -> None:
        while True:
            self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            if self._checkpointer is None:
                return
            self._store.checkpoint()

    def _stop_checkpointer(self) -> None:
        thread, self._checkpointer = self._checkpointer, None
        if thread is not None:
            self._checkpoint_due.set()
            thread.join(timeout=30)

    def _settle(self, op: _Op, outcome: Any) -> None:
        """Record a write's outcome for its caller, and log what nobody may be watching."""
        if isinstance(outcome, BaseException):
            if op.hold:
                log.error("history write %s dropped: %s", op.describe(), outcome, exc_info=outcome)
            self._settlements.append((op.future, None, outcome, op.hold))
            return
        if outcome is False and op.hold and op.method in ("insert_run", "record_skip"):
            request = op.args[0]
            log.warning(
                "run %s of %s at %s attempt %d: that tick is already recorded; not written again",
                request.run_id,
                request.job_name,
                request.scheduled_at.isoformat(),
                request.attempt,
            )
        self._settlements.append((op.future, outcome, None, False))

    def _dispatch(self) -> None:
        """Hand the finished ops' results to the event loop, in one wakeup."""
        settlements, self._settlements = self._settlements, []
        if not settlements or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(_settle_all, settlements)
        except RuntimeError:
            log.debug("event loop closed; %d results not delivered", len(settlements))

    def _done_pending(self, count: int) -> None:
        with self._cond:
            self._pending -= count

    def _finish(self) -> None:
        """Writer-thread exit: report what could not be written, close, signal."""
        if self._held:
            log.error(
                "history database still unavailable at shutdown; %d results not recorded: %s",
                len(self._held),
                ", ".join(op.describe() for op in self._held),
            )
            error = StoreError("history database unavailable at shutdown; result not recorded")
            self._settlements.extend((op.future, None, error, True) for op in self._held)
            self._done_pending(len(self._held))
            self._held.clear()
        self._stop_checkpointer()
        try:
            self._store.close()
        except Exception:  # loop boundary: shutdown must complete
            log.exception("closing the history database failed")
        if self._done is not None:
            self._settlements.append((self._done, None, None, False))
        self._dispatch()
