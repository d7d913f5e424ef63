"""The example registry and the example jobs behind it, run for real on files in tmp_path."""

from __future__ import annotations

import asyncio
import gzip
import importlib
import inspect
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cronhub.model import CronSchedule, IntervalSchedule, JobSpec
from cronhub.registry_file import load_registry
from examples import dpop, plugins, privacy, queue
from examples.analytics import generate_daily_report
from examples.health import HealthCheckFailed, check
from examples.seed import seed

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "jobs.toml"
DAY = 86_400
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def _file(path: Path, *, age_s: float = 0, now: float | None = None, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    mtime = (time.time() if now is None else now) - age_s
    os.utime(path, (mtime, mtime))
    return path


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


# --- the registry ------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs() -> dict[str, JobSpec]:
    return dict(load_registry(REGISTRY, environ={}).jobs)


def test_example_registry_has_the_designs_jobs(jobs: dict[str, JobSpec]) -> None:
    assert list(jobs) == [
        "dpop-cache-cleanup",
        "plugin-instance-cleanup",
        "cleanup-expired-privacy-exports",
        "cleanup-old-privacy-requests",
        "cleanup-old-audit-logs",
        "job-queue-processing",
        "plugin-health-check",
        "generate-daily-analytics",
    ]


@pytest.mark.parametrize(
    ("name", "every_ms"),
    [
        ("dpop-cache-cleanup", 60_000),
        ("plugin-instance-cleanup", 300_000),
        ("job-queue-processing", 5_000),
        ("plugin-health-check", 60_000),
    ],
)
def test_interval_jobs_match_the_design(jobs: dict[str, JobSpec], name: str, every_ms: int) -> None:
    schedule = jobs[name].schedule
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.every_ms == every_ms


@pytest.mark.parametrize(
    ("name", "expr"),
    [
        ("cleanup-expired-privacy-exports", "0 2 * * *"),
        ("cleanup-old-privacy-requests", "0 3 * * 0"),
        ("cleanup-old-audit-logs", "0 4 * * 0"),
        ("generate-daily-analytics", "0 1 * * *"),
    ],
)
def test_cron_jobs_match_the_design(jobs: dict[str, JobSpec], name: str, expr: str) -> None:
    schedule = jobs[name].schedule
    assert isinstance(schedule, CronSchedule)
    assert schedule.expr == expr


def test_registry_carries_the_designs_limits(jobs: dict[str, JobSpec]) -> None:
    exports = jobs["cleanup-expired-privacy-exports"]
    assert (exports.timeout_ms, exports.retries, exports.retry_delay_ms) == (600_000, 3, 30_000)
    assert jobs["cleanup-old-audit-logs"].timeout_ms == 1_800_000
    assert jobs["plugin-health-check"].timeout_ms == 30_000
    assert jobs["job-queue-processing"].singleton
    assert not jobs["generate-daily-analytics"].enabled
    assert all(spec.timeout_ms for spec in jobs.values())
    assert any(spec.run_on_startup for spec in jobs.values())


def test_every_callable_exists_and_accepts_its_arguments(jobs: dict[str, JobSpec]) -> None:
    callables = [spec for spec in jobs.values() if spec.callable]
    assert len(callables) >= 5
    for spec in callables:
        assert spec.callable is not None
        module, _, attribute = spec.callable.partition(":")
        function = getattr(importlib.import_module(module), attribute)
        inspect.signature(function).bind(*spec.args, **spec.kwargs)


def _run_job(spec: JobSpec, cwd: Path) -> str:
    """Run a job roughly as cronhub does: a shell string with its env, or the callable."""
    if spec.command is not None:
        assert isinstance(spec.command, str)
        result = subprocess.run(
            ["/bin/sh", "-c", spec.command],
            cwd=cwd,
            env={**os.environ, **spec.env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout
    assert spec.callable is not None
    module, _, attribute = spec.callable.partition(":")
    outcome = getattr(importlib.import_module(module), attribute)(*spec.args, **spec.kwargs)
    if inspect.iscoroutine(outcome):
        asyncio.run(outcome)
    return ""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_every_example_job_succeeds_on_seeded_data(
    jobs: dict[str, JobSpec], in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed("var")
    assert capsys.readouterr().out == "seeded example data in var\n"
    for spec in jobs.values():
        _run_job(spec, in_tmp)
    var = in_tmp / "var"
    assert "export-old.json" not in _names(var / "privacy-exports")
    assert "request-old.json" not in _names(var / "privacy-requests")
    assert "audit-old.log.gz" in _names(var / "audit")
    assert list((var / "queue" / "pending").iterdir()) == []
    assert len(list((var / "queue" / "done").iterdir())) == 2
    assert len(list((var / "queue" / "failed").iterdir())) == 1
    summaries = capsys.readouterr().out.splitlines()
    assert len(summaries) == len([spec for spec in jobs.values() if spec.callable])


def test_every_example_job_succeeds_on_a_fresh_checkout(
    jobs: dict[str, JobSpec], in_tmp: Path
) -> None:
    for spec in jobs.values():
        _run_job(spec, in_tmp)


# --- shell commands from jobs.toml --------------------------------------------


def test_privacy_requests_command_deletes_only_requests_past_90_days(
    jobs: dict[str, JobSpec], tmp_path: Path
) -> None:
    folder = tmp_path / "var" / "privacy-requests"
    _file(folder / "old.json", age_s=95 * DAY)
    _file(folder / "recent.json", age_s=30 * DAY)
    _file(folder / "old.txt", age_s=95 * DAY)
    output = _run_job(jobs["cleanup-old-privacy-requests"], tmp_path)
    assert _names(folder) == {"recent.json", "old.txt"}
    assert output.strip() == "var/privacy-requests/old.json"


def test_audit_log_command_compresses_logs_past_30_days(
    jobs: dict[str, JobSpec], tmp_path: Path
) -> None:
    folder = tmp_path / "var" / "audit"
    _file(folder / "old.log", age_s=40 * DAY, text="login ok\n")
    _file(folder / "recent.log", age_s=2 * DAY)
    _run_job(jobs["cleanup-old-audit-logs"], tmp_path)
    assert _names(folder) == {"old.log.gz", "recent.log"}
    assert gzip.decompress((folder / "old.log.gz").read_bytes()) == b"login ok\n"


# --- callables ---------------------------------------------------------------


def test_privacy_export_cleanup_deletes_json_older_than_seven_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _file(tmp_path / "old.json", age_s=7 * DAY + 60, now=NOW)
    _file(tmp_path / "week-minus-a-minute.json", age_s=7 * DAY - 60, now=NOW)
    _file(tmp_path / "new.json", now=NOW)
    _file(tmp_path / "old.txt", age_s=30 * DAY, now=NOW)
    _file(tmp_path / "nested" / "old.json", age_s=30 * DAY, now=NOW)
    privacy.cleanup_expired_exports(str(tmp_path), now=NOW)
    assert _names(tmp_path) == {"week-minus-a-minute.json", "new.json", "old.txt", "nested"}
    assert (tmp_path / "nested" / "old.json").exists()
    assert capsys.readouterr().out == (
        f"privacy-exports: deleted 1 of 3 exports older than 7 days in {tmp_path}\n"
    )


def test_privacy_export_cleanup_creates_a_missing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    privacy.cleanup_expired_exports(str(folder))
    assert folder.is_dir()


def test_dpop_cleanup_removes_only_expired_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "dpop.json"
    cache.write_text(json.dumps({"a": NOW - 1, "b": NOW + 1, "c": NOW + 3600, "d": NOW}))
    dpop.cleanup_expired(str(cache), now=NOW)
    assert json.loads(cache.read_text()) == {"b": NOW + 1, "c": NOW + 3600}
    assert capsys.readouterr().out == "dpop-cache: removed 2 expired of 4 tokens (2 left)\n"


def test_dpop_cleanup_without_a_cache_creates_nothing(tmp_path: Path) -> None:
    dpop.cleanup_expired(str(tmp_path / "missing.json"))
    assert list(tmp_path.iterdir()) == []


def test_dpop_cleanup_refuses_a_malformed_cache_with_its_path(tmp_path: Path) -> None:
    cache = tmp_path / "dpop.json"
    cache.write_text('{"a": "tomorrow"}')
    with pytest.raises(ValueError, match=r"dpop\.json: expected an object of token id"):
        dpop.cleanup_expired(str(cache))
    cache.write_text("{not json")
    with pytest.raises(ValueError, match=r"dpop\.json: not valid JSON"):
        dpop.cleanup_expired(str(cache))


def test_plugin_cleanup_removes_instances_without_a_recent_heartbeat(tmp_path: Path) -> None:
    _file(tmp_path / "stale.json", age_s=301, now=NOW)
    _file(tmp_path / "alive.json", age_s=10, now=NOW)
    plugins.cleanup_stale_instances(str(tmp_path), stale_after_s=300, now=NOW)
    assert _names(tmp_path) == {"alive.json"}


def test_queue_moves_valid_entries_to_done_and_malformed_to_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = queue.enqueue(str(tmp_path), "send-email", user=7)
    _file(tmp_path / "pending" / "broken.json", text="[1, 2]")
    queue.process_queue(str(tmp_path))
    assert list((tmp_path / "pending").iterdir()) == []
    done = json.loads((tmp_path / "done" / first.name).read_text())
    assert done["task"] == "send-email"
    assert done["payload"] == {"user": 7}
    assert done["processed_at"] > 0
    failed = json.loads((tmp_path / "failed" / "broken.json").read_text())
    assert failed == {"raw": "[1, 2]", "error": "not a JSON object"}
    assert capsys.readouterr().out == (
        "job-queue: processed 2 entries (1 failed), 0 still pending\n"
    )


def test_queue_processes_at_most_a_batch_oldest_first(tmp_path: Path) -> None:
    entries = [queue.enqueue(str(tmp_path), f"task-{i}") for i in range(3)]
    queue.process_queue(str(tmp_path), batch=2)
    assert _names(tmp_path / "done") == {entries[0].name, entries[1].name}
    assert _names(tmp_path / "pending") == {entries[2].name}


def test_queue_requeues_a_claim_abandoned_by_a_killed_run(tmp_path: Path) -> None:
    _file(tmp_path / "pending" / "orphan.processing", age_s=120, text='{"task": "t"}')
    _file(tmp_path / "pending" / "fresh.processing", age_s=1, text='{"task": "t"}')
    queue.process_queue(str(tmp_path), stale_claim_s=60)
    assert _names(tmp_path / "done") == {"orphan.json"}
    assert _names(tmp_path / "pending") == {"fresh.processing"}


def test_health_check_passes_on_a_writable_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(check(str(tmp_path / "data"), min_free_mb=1))
    assert capsys.readouterr().out.startswith(f"plugin-health: ok ({tmp_path / 'data'} writable")
    assert list((tmp_path / "data").iterdir()) == []


def test_health_check_fails_when_the_folder_cannot_be_written(tmp_path: Path) -> None:
    blocker = _file(tmp_path / "a-file")
    with pytest.raises(HealthCheckFailed, match=r"unhealthy: .*a-file/data is not writable"):
        asyncio.run(check(str(blocker / "data")))


def test_health_check_fails_when_disk_space_is_short(tmp_path: Path) -> None:
    with pytest.raises(HealthCheckFailed, match=r"MiB free on .* \(need 1e\+12 MiB\)"):
        asyncio.run(check(str(tmp_path), min_free_mb=1e12))


def test_health_check_reaches_a_listening_port(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        asyncio.run(check(str(tmp_path), min_free_mb=1, tcp=f"127.0.0.1:{port}"))


def test_health_check_fails_on_a_closed_port(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    with pytest.raises(HealthCheckFailed, match=rf"127\.0\.0\.1:{port} refused the connection"):
        asyncio.run(check(str(tmp_path), min_free_mb=1, tcp=f"127.0.0.1:{port}"))


def test_daily_report_counts_the_days_processed_entries_per_task(tmp_path: Path) -> None:
    done = tmp_path / "queue" / "done"
    day = 1_800_000_000 - 1_800_000_000 % DAY  # midnight UTC
    for name, task, at in [("1", "mail", day + 10), ("2", "mail", day + 20), ("3", "index", day)]:
        _file(done / f"{name}.json", text=json.dumps({"task": task, "processed_at": at}))
    _file(done / "4.json", text=json.dumps({"task": "mail", "processed_at": day - 1}))
    generate_daily_report(str(tmp_path / "queue"), str(tmp_path / "reports"), day="2027-01-15")
    report = json.loads((tmp_path / "reports" / "2027-01-15.json").read_text())
    assert report == {"day": "2027-01-15", "processed": 3, "tasks": {"index": 1, "mail": 2}}
