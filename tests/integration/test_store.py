"""The history store on real SQLite files: schema, runs, aggregates, pruning, and the
writer service holding writes through a database outage."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from cronhub import store as store_module
from cronhub.errors import StoreError
from cronhub.model import (
    IntervalSchedule,
    JobSpec,
    RunRequest,
    RunResult,
    RunStatus,
    Trigger,
)
from cronhub.store import Store, StoreService

NOW = datetime(2024, 1, 1, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------


def request(
    job: str = "backup",
    at: datetime = NOW,
    *,
    attempt: int = 1,
    trigger: Trigger = Trigger.SCHEDULE,
    run_id: str | None = None,
) -> RunRequest:
    return RunRequest(
        run_id=run_id or f"{job}-{at.isoformat()}-{attempt}",
        job_name=job,
        trigger=trigger,
        attempt=attempt,
        scheduled_at=at,
    )


def result(
    req: RunRequest,
    status: RunStatus = RunStatus.SUCCESS,
    *,
    duration_ms: int = 1_000,
    output: str = "",
    error: str | None = None,
) -> RunResult:
    return RunResult(
        run_id=req.run_id,
        job_name=req.job_name,
        status=status,
        started_at=req.scheduled_at,
        completed_at=req.scheduled_at + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        exit_code=0 if status is RunStatus.SUCCESS else 1,
        error=error,
        output=output,
        cpu_user_s=0.25,
        cpu_system_s=0.5,
        max_rss_kb=2048,
        pid=4242,
    )


def spec(name: str, *, description: str = "", every: str = "every 1m", enabled: bool = True):
    return JobSpec(
        name=name,
        schedule=IntervalSchedule(every_ms=60_000, text=every),
        command="true",
        description=description,
        enabled=enabled,
    )


def record_run(db: Store, req: RunRequest, status: RunStatus = RunStatus.SUCCESS, **kw: Any):
    assert db.insert_run(req, started_at=req.scheduled_at)
    assert db.finish_run(result(req, status, **kw))


def sql(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "cronhub.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{db_path}")
    store.open()
    yield store
    store.close()


def run_async(main: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


# --- schema -------------------------------------------------------------------


def test_new_database_is_created_in_wal_mode_at_the_current_version(db: Store, db_path: Path):
    assert db_path.exists()
    assert sql(db_path, "SELECT value FROM cronhub_meta WHERE key = 'schema_version'") == [
        (str(store_module.SCHEMA_VERSION),)
    ]
    assert sql(db_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in sql(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"cronhub_meta", "scheduled_jobs", "scheduled_job_history"} <= tables


def test_database_from_a_newer_cronhub_is_refused(db: Store, db_path: Path):
    db.close()
    newer = store_module.SCHEMA_VERSION + 2
    sql(db_path, "UPDATE cronhub_meta SET value = ? WHERE key = 'schema_version'", str(newer))
    with pytest.raises(StoreError) as caught:
        Store(f"sqlite:///{db_path}").open()
    assert (
        f"database schema version {newer} is newer than this cronhub "
        f"({store_module.SCHEMA_VERSION}); upgrade cronhub"
    ) in str(caught.value)


def test_older_database_is_migrated_forward_on_open(
    db: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db.insert_run(request(), started_at=NOW)
    db.close()
    current = store_module.SCHEMA_VERSION

    def add_note_column(conn: Any) -> None:
        conn.exec_driver_sql("ALTER TABLE scheduled_job_history ADD COLUMN note TEXT")

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(store_module.MIGRATIONS, current, add_note_column)
    upgraded = Store(f"sqlite:///{db_path}")
    upgraded.open()
    upgraded.close()

    assert sql(db_path, "SELECT value FROM cronhub_meta") == [(str(current + 1),)]
    columns = [row[1] for row in sql(db_path, "PRAGMA table_info(scheduled_job_history)")]
    assert "note" in columns
    assert sql(db_path, "SELECT count(*) FROM scheduled_job_history") == [(1,)]


def test_failed_migration_leaves_the_database_as_it_was(
    db: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
):
    db.close()
    current = store_module.SCHEMA_VERSION

    def half_done(conn: Any) -> None:
        conn.exec_driver_sql("ALTER TABLE scheduled_jobs ADD COLUMN half TEXT")
        conn.exec_driver_sql("SELECT * FROM no_such_table")

    monkeypatch.setattr(store_module, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(store_module.MIGRATIONS, current, half_done)
    with pytest.raises(StoreError, match="cannot open database"):
        Store(f"sqlite:///{db_path}").open()

    assert sql(db_path, "SELECT value FROM cronhub_meta") == [(str(current),)]
    columns = [row[1] for row in sql(db_path, "PRAGMA table_info(scheduled_jobs)")]
    assert "half" not in columns


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"garbage\.db"):
        Store(f"sqlite:///{path}").open()


# --- runs and aggregates -----------------------------------------------------


def test_finished_runs_fold_into_the_job_aggregates(db: Store):
    db.sync_jobs([spec("backup")])
    first, second, third = (request(at=NOW + timedelta(minutes=i)) for i in range(3))
    record_run(db, first, duration_ms=1_000)
    record_run(db, second, RunStatus.FAILED, duration_ms=2_000, error="exit status 1")
    record_run(db, third, RunStatus.TIMEOUT, duration_ms=6_000, error="timed out")

    state = db.job_states()["backup"]
    assert state.total_runs == 3
    assert state.total_failures == 2
    assert state.average_duration_ms == pytest.approx(3_000)
    assert state.last_status is RunStatus.TIMEOUT
    assert state.last_error == "timed out"
    assert state.last_duration_ms == 6_000
    assert state.last_run == third.scheduled_at


def test_finishing_a_finished_run_changes_nothing(db: Store):
    req = request()
    record_run(db, req)
    assert db.finish_run(result(req, RunStatus.FAILED)) is False
    assert db.job_states()["backup"].total_runs == 1
    assert db.history()[0].status is RunStatus.SUCCESS


def test_a_tick_already_recorded_by_another_run_is_refused(db: Store):
    assert db.insert_run(request(run_id="first"), started_at=NOW) is True
    assert db.insert_run(request(run_id="second"), started_at=NOW) is False
    assert [r.id for r in db.history()] == ["first"]


def test_inserting_the_same_run_twice_is_idempotent(db: Store):
    req = request()
    assert db.insert_run(req, started_at=None)
    assert db.insert_run(req, started_at=None)
    assert len(db.history()) == 1


def test_a_later_attempt_of_the_same_tick_is_its_own_row(db: Store):
    assert db.insert_run(request(attempt=1), started_at=NOW)
    assert db.insert_run(request(attempt=2, trigger=Trigger.RETRY), started_at=NOW)
    assert [r.attempt for r in db.history()] == [2, 1]


def test_a_run_recorded_but_never_spawned_is_closed_as_skipped_not_counted(db: Store):
    db.sync_jobs([spec("backup")])
    req = request()
    db.insert_run(req, started_at=NOW)
    assert db.finish_run(result(req, RunStatus.SKIPPED, duration_ms=0, error="shutting down"))
    (row,) = db.history()
    assert (row.status, row.error) == (RunStatus.SKIPPED, "shutting down")
    assert db.job_states()["backup"].total_runs == 0


def test_running_row_gets_its_process_after_the_spawn(db: Store):
    req = request()
    db.insert_run(req, started_at=None)
    db.set_run_pid(req.run_id, 1234, 5678.25, NOW + timedelta(seconds=1))
    (row,) = db.history()
    assert (row.status, row.pid, row.pid_create_time) == (RunStatus.RUNNING, 1234, 5678.25)
    assert row.start_lag_ms == 1_000


def test_skipped_tick_is_recorded_but_not_counted_as_a_run(db: Store):
    db.sync_jobs([spec("backup")])
    assert db.record_skip(request(), "previous run still running") is True
    assert db.record_skip(request(run_id="again"), "previous run still running") is False
    (row,) = db.history()
    assert row.status is RunStatus.SKIPPED
    assert row.error == "previous run still running"
    assert row.started_at is None
    assert db.job_states()["backup"].total_runs == 0


def test_runs_left_running_are_recovered_as_interrupted(db: Store):
    running = request(at=NOW)
    done = request(at=NOW + timedelta(minutes=1))
    db.insert_run(running, started_at=NOW, pid=99, pid_create_time=123.5)
    record_run(db, done)

    recovered = db.recover_interrupted(NOW + timedelta(hours=1))

    assert [(r.id, r.pid, r.pid_create_time) for r in recovered] == [(running.run_id, 99, 123.5)]
    assert recovered[0].status is RunStatus.INTERRUPTED
    rows = {r.id: r for r in db.history()}
    assert rows[running.run_id].status is RunStatus.INTERRUPTED
    assert rows[running.run_id].error == "daemon stopped while the run was in progress"
    assert rows[running.run_id].completed_at == NOW + timedelta(hours=1)
    assert rows[done.run_id].status is RunStatus.SUCCESS
    state = db.job_states()["backup"]
    assert (state.total_runs, state.last_status) == (2, RunStatus.INTERRUPTED)
    assert db.recover_interrupted(NOW + timedelta(hours=2)) == []


def test_override_persists_across_reopen(db: Store, db_path: Path):
    db.sync_jobs([spec("backup"), spec("report")])
    db.set_override("backup", False)
    db.set_override("report", True)
    db.set_override("report", None)
    db.close()

    reopened = Store(f"sqlite:///{db_path}")
    reopened.open()
    states = reopened.job_states()
    reopened.close()
    assert states["backup"].override is False
    assert states["report"].override is None


def test_sync_updates_config_and_keeps_removed_jobs(db: Store, db_path: Path):
    db.sync_jobs([spec("backup", description="nightly"), spec("old")])
    record_run(db, request("old"))
    db.sync_jobs([spec("backup", description="hourly", every="every 1h", enabled=False)])

    rows = sql(db_path, "SELECT name, description, schedule, enabled FROM scheduled_jobs")
    assert sorted(rows) == [("backup", "hourly", "every 1h", 0), ("old", "", "every 1m", 1)]
    assert db.history("old")


def test_times_are_stored_as_utc_and_naive_times_refused(db: Store, db_path: Path):
    paris = timezone(timedelta(hours=1))
    db.insert_run(request(at=datetime(2024, 6, 1, 12, 0, tzinfo=paris)), started_at=None)
    assert sql(db_path, "SELECT scheduled_at FROM scheduled_job_history") == [
        ("2024-06-01 11:00:00.000000",)
    ]
    assert db.history()[0].scheduled_at == datetime(2024, 6, 1, 11, 0, tzinfo=UTC)
    with pytest.raises(StoreError):
        db.insert_run(request(at=datetime(2024, 6, 1)), started_at=None)


# --- queries ------------------------------------------------------------------


@pytest.fixture
def filled(db: Store) -> Store:
    """backup: 5 runs (2 failed) one a minute; report: 3 runs, interleaved."""
    for i in range(5):
        status = RunStatus.FAILED if i % 2 else RunStatus.SUCCESS
        record_run(db, request("backup", NOW + timedelta(minutes=i)), status, output=f"b{i}")
    for i in range(3):
        record_run(db, request("report", NOW + timedelta(minutes=i, seconds=30)), output=f"r{i}")
    return db


def test_history_is_newest_first_without_output(filled: Store):
    rows = filled.history(limit=4)
    assert [(r.job_name, r.scheduled_at) for r in rows] == [
        ("backup", NOW + timedelta(minutes=4)),
        ("backup", NOW + timedelta(minutes=3)),
        ("report", NOW + timedelta(minutes=2, seconds=30)),
        ("backup", NOW + timedelta(minutes=2)),
    ]
    assert all(r.output is None for r in rows)


def test_history_filters_by_job_status_and_since(filled: Store):
    assert len(filled.history("backup", limit=100)) == 5
    assert len(filled.history("backup", limit=2)) == 2
    failed = filled.history(status=RunStatus.FAILED)
    assert [r.scheduled_at.minute for r in failed] == [3, 1]
    recent = filled.history("report", since=NOW + timedelta(minutes=1))
    assert [r.scheduled_at.minute for r in recent] == [2, 1]
    assert filled.history("nobody") == []


def test_get_run_returns_the_latest_run_with_its_output(filled: Store):
    filled.record_skip(request("backup", NOW + timedelta(minutes=9)), "busy")
    latest = filled.get_run("backup")
    assert latest is not None
    assert (latest.scheduled_at, latest.output) == (NOW + timedelta(minutes=4), "b4")
    first = filled.history("backup", limit=100)[-1]
    by_id = filled.get_run("backup", first.id)
    assert by_id is not None and by_id.output == "b0"
    assert filled.get_run("report", first.id) is None
    assert filled.get_run("nobody") is None


def test_last_fired_counts_scheduled_ticks_only(db: Store):
    db.insert_run(request("backup", NOW + timedelta(minutes=2)), started_at=None)
    db.record_skip(request("backup", NOW + timedelta(minutes=3)), "busy")
    db.insert_run(request("backup", NOW + timedelta(minutes=1)), started_at=None)
    db.insert_run(
        request("backup", NOW + timedelta(minutes=9), trigger=Trigger.MANUAL), started_at=None
    )
    db.insert_run(request("report", NOW, trigger=Trigger.MANUAL), started_at=None)
    assert db.last_fired() == {"backup": NOW + timedelta(minutes=3)}


def test_prune_deletes_old_finished_runs_one_batch_at_a_time(db: Store):
    for i in range(7):
        record_run(db, request(at=NOW + timedelta(days=i)))
    db.insert_run(request(at=NOW - timedelta(days=1)), started_at=NOW)  # still running

    cutoff = NOW + timedelta(days=5)
    counts = []
    while (deleted := db.prune(cutoff, batch=2)) > 0:
        counts.append(deleted)
    assert counts == [2, 2, 1]
    left = {r.scheduled_at: r.status for r in db.history(limit=100)}
    assert left == {
        NOW - timedelta(days=1): RunStatus.RUNNING,  # old, but still running: kept
        NOW + timedelta(days=5): RunStatus.SUCCESS,
        NOW + timedelta(days=6): RunStatus.SUCCESS,
    }
    assert db.job_states()["backup"].total_runs == 7


def test_integrity_check_reports_ok(filled: Store):
    assert filled.integrity_check() == "ok"


def test_apply_batch_drops_only_the_faulty_write(db: Store):
    good, other = request(at=NOW), request(at=NOW + timedelta(minutes=1))
    bad = result(good, RunStatus.RUNNING)
    outcomes = db.apply_batch(
        [
            ("insert_run", (good,), {"started_at": NOW}),
            ("finish_run", (bad,), {}),
            ("insert_run", (other,), {"started_at": NOW}),
        ]
    )
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], ValueError)
    assert len(db.history()) == 2


# --- grouped writes -------------------------------------------------------------


@pytest.fixture(params=["prepared", "core"])
def grouped(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, db_path: Path):
    """A store whose grouped writes run prepared on the SQLite driver (its own way), or
    through SQLAlchemy Core (the way of other databases)."""
    if request.param == "core":
        monkeypatch.setattr(
            store_module, "_Prepared", lambda statement, _dialect: store_module._CoreMany(statement)
        )
    store = Store(f"sqlite:///{db_path}")
    store.open()
    yield store
    store.close()


def run_ops(req: RunRequest, res: RunResult) -> list[tuple[str, tuple[Any, ...], dict]]:
    return [
        ("insert_run", (req,), {"started_at": None}),
        ("set_run_pid", (req.run_id, 4242, 12.5, req.scheduled_at), {}),
        ("finish_run", (res,), {}),
    ]


def test_a_batch_of_runs_folds_into_the_jobs_as_one_write_at_a_time_would(
    grouped: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="cronhub.store")
    statuses = [RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.SUCCESS]
    ops = []
    for i in range(12):
        req = request(("backup", "report")[i % 2], NOW + timedelta(minutes=i))
        res = result(req, statuses[i % 4], duration_ms=100 * (i + 1), error=f"e{i}")
        ops += run_ops(req, res)
    never = request("report", NOW + timedelta(minutes=30))
    ops += run_ops(never, result(never, RunStatus.SKIPPED, duration_ms=0, error="stopping"))
    ops.append(("record_skip", (request("report", NOW + timedelta(hours=1)),), {"reason": "busy"}))
    alone = Store(f"sqlite:///{tmp_path / 'alone.db'}")
    alone.open()
    for name, args, kwargs in ops:
        getattr(alone, name)(*args, **kwargs)

    assert grouped.apply_batch(ops) == [True, None, True] * 13 + [True]

    assert grouped.job_states() == alone.job_states()
    assert (
        grouped.last_fired()
        == alone.last_fired()
        == {"backup": NOW + timedelta(minutes=10), "report": NOW + timedelta(hours=1)}
    )
    # Every column alike but a skip's completed_at, which is the moment it is written.
    assert grouped.history(limit=100)[1:] == alone.history(limit=100)[1:]
    alone.close()
    state = grouped.job_states()["backup"]
    assert (state.total_runs, state.total_failures, state.last_error) == (6, 3, "e10")
    assert state.average_duration_ms == pytest.approx(600)
    assert not [r for r in caplog.records if "replayed" in r.message]


def test_a_batch_tells_a_duplicate_tick_and_a_repeated_finish_apart(grouped: Store):
    first, rival = request(run_id="first"), request(run_id="rival")
    done = result(first)
    outcomes = grouped.apply_batch(
        [
            ("insert_run", (first,), {"started_at": NOW}),
            ("insert_run", (rival,), {"started_at": NOW}),
            ("finish_run", (done,), {}),
            ("finish_run", (result(first, RunStatus.FAILED),), {}),
            ("insert_run", (first,), {"started_at": NOW}),
        ]
    )
    assert outcomes == [True, False, True, False, True]
    assert [(r.id, r.status) for r in grouped.history()] == [("first", RunStatus.SUCCESS)]
    assert grouped.job_states()["backup"].total_runs == 1


def test_a_batch_for_a_job_never_synced_gives_it_a_row(grouped: Store):
    req = request("ghost")
    grouped.apply_batch(run_ops(req, result(req)))
    assert grouped.job_states()["ghost"].total_runs == 1
    assert grouped.last_fired() == {"ghost": NOW}


def test_a_job_row_deleted_behind_the_store_is_made_again(grouped: Store, db_path: Path):
    grouped.sync_jobs([spec("backup")])
    first, second = request(at=NOW), request(at=NOW + timedelta(minutes=1))
    grouped.apply_batch(run_ops(first, result(first)))
    sql(db_path, "DELETE FROM scheduled_jobs")
    grouped.apply_batch(run_ops(second, result(second)))
    state = grouped.job_states()["backup"]
    assert (state.total_runs, state.last_run) == (1, second.scheduled_at)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"job": "job-7"}, "sqlite_autoindex_scheduled_job_history_2"),
        ({}, "ix_history_scheduled_at"),
        ({"status": RunStatus.FAILED}, "ix_history_status_scheduled_at"),
    ],
)
def test_history_queries_use_an_index(db: Store, db_path: Path, filters: dict, index: str):
    statements: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if "FROM scheduled_job_history" in statement:
            statements.append((statement, parameters))

    event.listen(db._engine, "before_cursor_execute", capture)
    db.history(limit=20, **filters)
    ((statement, parameters),) = statements

    plan = " | ".join(
        row[3] for row in sql(db_path, "EXPLAIN QUERY PLAN " + statement, *parameters)
    )
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# --- the writer service ------------------------------------------------------


class CountingStore(Store):
    """A real store that records the size of every batch it commits."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.batches: list[int] = []
        self.fail_with: BaseException | None = None

    def apply_batch(self, ops):
        if self.fail_with is not None:
            raise self.fail_with
        outcomes = super().apply_batch(ops)
        self.batches.append(len(ops))
        return outcomes


def test_service_writes_in_submission_order_and_reads_see_them(db_path: Path):
    async def main() -> None:
        service = StoreService(Store(f"sqlite:///{db_path}"))
        await service.start()
        for value in (True, False, None, False):
            service.submit("set_override", "backup", value)
        req = request()
        service.submit("insert_run", req, started_at=NOW)
        service.submit("finish_run", result(req))
        states = await service.call("job_states")
        rows = await service.call("history", "backup")
        await service.stop()
        assert states["backup"].override is False
        assert states["backup"].total_runs == 1
        assert [r.status for r in rows] == [RunStatus.SUCCESS]
        assert service.pending_count == 0

    run_async(main)


def test_service_submit_returns_the_write_result(db_path: Path):
    async def main() -> None:
        service = StoreService(Store(f"sqlite:///{db_path}"))
        await service.start()
        first = service.submit("insert_run", request(run_id="a"), started_at=NOW)
        again = service.submit("insert_run", request(run_id="b"), started_at=NOW)
        assert (await first, await again) == (True, False)
        await service.stop()

    run_async(main)


def test_service_batches_queued_writes_into_few_transactions(db_path: Path):
    store = CountingStore(f"sqlite:///{db_path}")

    async def main() -> None:
        service = StoreService(store)
        await service.start()
        for i in range(300):
            req = request(at=NOW + timedelta(seconds=i))
            service.submit("insert_run", req, started_at=NOW)
            service.submit("finish_run", result(req))
        await service.stop()

    run_async(main)
    assert sum(store.batches) == 600
    assert len(store.batches) < 100
    reopened = Store(f"sqlite:///{db_path}")
    reopened.open()
    assert reopened.job_states()["backup"].total_runs == 300
    reopened.close()


def test_service_writes_a_result_nobody_waits_for_within_the_linger(db_path: Path):
    async def main() -> None:
        service = StoreService(Store(f"sqlite:///{db_path}"), linger_s=0.05)
        await service.start()
        req = request()
        assert await service.submit("insert_run", req, started_at=NOW)
        service.submit("finish_run", result(req))
        status = "SELECT status FROM scheduled_job_history"
        await wait_for(lambda: sql(db_path, status) == [("success",)], what="the result")
        await service.stop()

    run_async(main)


def test_service_writes_waiting_results_with_the_next_run_row(db_path: Path):
    store = CountingStore(f"sqlite:///{db_path}")

    async def main() -> None:
        service = StoreService(store, linger_s=60.0)
        await service.start()
        first, second = request(at=NOW), request(at=NOW + timedelta(minutes=1))
        assert await service.submit("insert_run", first, started_at=NOW)
        service.submit("set_run_pid", first.run_id, 4242, 12.5, NOW)
        service.submit("finish_run", result(first))
        assert await service.submit("insert_run", second, started_at=NOW)
        assert sql(db_path, "SELECT status FROM scheduled_job_history ORDER BY id") == [
            ("success",),
            ("running",),
        ]
        await service.stop()

    run_async(main)
    assert store.batches == [1, 3]


def test_service_holds_writes_while_the_database_is_locked(
    db_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="cronhub.store")
    store = Store(f"sqlite:///{db_path}", busy_timeout_ms=50)
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()

    async def main() -> None:
        service = StoreService(store, retry_initial_s=0.05, retry_max_s=0.2)
        await service.start()
        locker = threading.Thread(target=hold_lock)
        locker.start()
        await asyncio.to_thread(locked.wait, 10)
        requests = [request(at=NOW + timedelta(minutes=i)) for i in range(20)]
        for req in requests:
            service.submit("insert_run", req, started_at=NOW)
            service.submit("finish_run", result(req))
        await wait_for(lambda: not service.available, what="the outage to be noticed")
        assert service.pending_count == 40

        # Reads still answer, and awaited writes fail fast instead of waiting.
        assert await service.call("history") == []
        with pytest.raises(StoreError, match="unavailable"):
            await service.call("set_override", "backup", False)

        release.set()
        await asyncio.to_thread(locker.join, 10)
        await wait_for(lambda: service.pending_count == 0, what="held writes to be written")
        assert service.available
        rows = await service.call("history", None, 100)
        states = await service.call("job_states")
        await service.stop()

        assert sorted(r.id for r in rows) == sorted(r.run_id for r in requests)
        assert {r.status for r in rows} == {RunStatus.SUCCESS}
        assert states["backup"].total_runs == 20

    run_async(main)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "history database unavailable: database is locked; holding" in warnings[0].message
    assert any("available again" in r.message for r in caplog.records)


def test_service_holds_writes_through_a_full_disk(db_path: Path):
    store = CountingStore(f"sqlite:///{db_path}")

    async def main() -> None:
        service = StoreService(store, retry_initial_s=0.02, retry_max_s=0.05)
        await service.start()
        store.fail_with = OSError(errno.ENOSPC, "No space left on device")
        futures = []
        for i in range(10):
            req = request(at=NOW + timedelta(minutes=i))
            futures.append(service.submit("insert_run", req, started_at=NOW))
            futures.append(service.submit("finish_run", result(req)))
        await wait_for(lambda: not service.available, what="the outage to be noticed")
        store.fail_with = None
        assert all(await asyncio.gather(*futures))
        await service.stop()

    run_async(main)
    reopened = Store(f"sqlite:///{db_path}")
    reopened.open()
    assert len(reopened.history(limit=100)) == 10
    assert reopened.job_states()["backup"].total_runs == 10
    reopened.close()


def test_service_drops_a_duplicate_tick_without_retrying(
    db_path: Path, caplog: pytest.LogCaptureFixture
):
    async def main() -> None:
        service = StoreService(Store(f"sqlite:///{db_path}"))
        await service.start()
        service.submit("insert_run", request(run_id="one"), started_at=NOW)
        duplicate = service.submit("insert_run", request(run_id="two"), started_at=NOW)
        assert await duplicate is False
        assert service.available and service.pending_count == 0
        await service.stop()

    run_async(main)
    assert any("already recorded" in r.message for r in caplog.records)


def test_service_stop_flushes_every_pending_write(db_path: Path):
    async def main() -> None:
        service = StoreService(Store(f"sqlite:///{db_path}"))
        await service.start()
        for i in range(200):
            service.submit("record_skip", request(at=NOW + timedelta(seconds=i)), "busy")
        await service.stop()
        with pytest.raises(StoreError):
            service.submit("record_skip", request(), "busy")

    run_async(main)
    assert sql(db_path, "SELECT count(*) FROM scheduled_job_history") == [(200,)]


def test_service_start_reports_a_database_it_cannot_open(db_path: Path):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"not a database" * 100)

    async def main() -> None:
        service = StoreService(Store(f"sqlite:///{db_path}"))
        with pytest.raises(StoreError):
            await service.start()

    run_async(main)


def test_job_states_of_one_job(tmp_path) -> None:
    from cronhub.model import IntervalSchedule, JobSpec

    store = Store(f"sqlite:///{tmp_path / 'one.db'}")
    store.open()
    specs = [
        JobSpec(name=n, schedule=IntervalSchedule(every_ms=60_000, text="every 60s"))
        for n in ("a", "b")
    ]
    store.sync_jobs(specs)
    assert set(store.job_states()) == {"a", "b"}
    assert set(store.job_states("b")) == {"b"}
    assert store.job_states("nope") == {}
    store.close()
