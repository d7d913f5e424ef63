"""The daemon-talking commands against a fake daemon on a real control socket.

A real :class:`~cronhub.control.ControlServer` runs in a background thread
with a handler that answers from canned data in the agreed protocol shapes,
so these tests pin what the CLI prints and how it exits, not what the daemon
decides.  Commands run through ``typer.testing.CliRunner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cronhub.cli import app
from cronhub.control import ControlServer, PeerCred
from cronhub.errors import ConfigError, ConfigIssue, JobBusy, JobNotFound, ProtocolError
from cronhub.protocol import ErrorCode, Request

RUN_ID = "5f0c2a9e4b7d4e1f8a6b3c2d1e0f9a8b"


def iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def job_status(name: str, **fields: Any) -> dict[str, Any]:
    status = {
        "name": name,
        "description": "",
        "schedule": "0 2 * * *",
        "schedule_kind": "cron",
        "schedule_human": "at 02:00 every day",
        "timezone": "UTC",
        "enabled": True,
        "enabled_config": True,
        "override": None,
        "paused": False,
        "last_run": iso(-timedelta(minutes=3)),
        "last_status": "success",
        "last_error": None,
        "last_duration_ms": 1200,
        "total_runs": 7,
        "total_failures": 1,
        "average_duration_ms": 1000.0,
        "next_run": iso(timedelta(hours=2, seconds=30)),
        "running": 0,
    }
    status.update(fields)
    return status


def a_run(status: str = "success", **fields: Any) -> dict[str, Any]:
    run = {
        "id": RUN_ID,
        "job_name": "backup",
        "trigger": "manual",
        "attempt": 1,
        "scheduled_at": iso(-timedelta(seconds=5)),
        "started_at": iso(-timedelta(seconds=5)),
        "completed_at": iso(-timedelta(seconds=4)),
        "status": status,
        "duration_ms": 1000,
        "exit_code": 0 if status == "success" else 1,
        "signal": None,
        "error": None if status == "success" else "exit status 1",
        "start_lag_ms": 3,
        "cpu_user_s": 0.01,
        "cpu_system_s": 0.0,
        "max_rss_kb": 1024,
        "pid": 4242,
    }
    run.update(fields)
    return run


class FakeDaemon:
    """Answers the protocol from canned data; records every request it saw."""

    def __init__(self) -> None:
        self.jobs = {
            "backup": job_status("backup", description="Dump [red]db[/]"),
            "report": job_status("report", enabled=False, override=False, next_run=None),
        }
        self.requests: list[Request] = []
        self.registry_errors: list[str] = []
        self.server: ControlServer | None = None

    async def __call__(self, request: Request, peer: PeerCred) -> object:
        self.requests.append(request)
        handler = getattr(self, f"op_{request.op}")
        return handler(**request.params)

    def _job(self, name: str) -> dict[str, Any]:
        if name not in self.jobs:
            raise JobNotFound(name, [n for n in self.jobs if n[0] == name[0]])
        return self.jobs[name]

    def op_ping(self) -> object:
        return {
            "version": "0.1.0",
            "protocol": 1,
            "pid": 4242,
            "started_at": iso(-timedelta(hours=1)),
            "uptime_s": 3725.0,
        }

    def op_status(self, job: str | None) -> object:
        daemon = {
            "pid": 4242,
            "version": "0.1.0",
            "started_at": iso(-timedelta(hours=1)),
            "paused": False,
            "running": 0,
            "max_concurrent": 10,
            "registry_path": "/srv/jobs.toml",
            "registry_loaded_at": iso(-timedelta(hours=1)),
            "registry_errors": self.registry_errors,
        }
        if job is None:
            return {"daemon": daemon, "jobs": list(self.jobs.values())}
        detail = dict(self._job(job), config={"command": "pg_dump", "timeout_ms": 600000})
        return {"daemon": daemon, "jobs": [detail], "runs": [a_run("failed"), a_run()]}

    def op_run(self, job: str, wait: bool, timeout: float | None) -> object:
        self._job(job)
        if job == "report":
            raise JobBusy(job)
        if not wait or job == "slow":  # "slow" outlasts any --timeout
            return {"run_id": RUN_ID, "job_name": job, "status": "running"}
        outcome = {"backup": "success"}.get(job, "failed")
        return {"run_id": RUN_ID, "job_name": job, "status": outcome, "run": a_run(outcome)}

    def op_enable(self, job: str) -> object:
        self._job(job)["enabled"] = True
        return {"job": job, "enabled": True, "override": True}

    def op_disable(self, job: str) -> object:
        self._job(job)["enabled"] = False
        return {"job": job, "enabled": False, "override": False}

    def op_history(
        self, job: str | None, limit: int, status: str | None, since: str | None
    ) -> object:
        runs = [a_run("failed", id=f"{index:08x}" + "0" * 24) for index in range(3)]
        return {"runs": runs[:limit]}

    def op_logs(self, job: str, run_id: str | None) -> object:
        self._job(job)
        if run_id not in (None, RUN_ID):
            raise ProtocolError(ErrorCode.NOT_FOUND, f'no run "{run_id}" of job "{job}"')
        return {"run": a_run(), "output": "[red]not markup[/]\nline 2\n", "truncated": False}

    def op_reload(self) -> object:
        if self.registry_errors:
            issues = [ConfigIssue("bad", path="jobs.toml", line=3, job="x", field="schedule")]
            raise ConfigError(issues)
        return {"added": ["new"], "removed": [], "changed": [], "unchanged": 2, "warnings": []}

    def op_shutdown(self) -> object:
        loop = asyncio.get_running_loop()
        assert self.server is not None
        loop.call_later(0.05, lambda: loop.create_task(self.server.close()))  # type: ignore[union-attr]
        return {"stopping": True}


class DaemonThread:
    """The fake daemon's ControlServer on an event loop in a background thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fake = FakeDaemon()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake.server = ControlServer(path, self.fake)
        self.thread.start()
        self.run(self.fake.server.start())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        assert self.fake.server is not None
        with contextlib.suppress(Exception):
            self.run(self.fake.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def daemon() -> Iterator[DaemonThread]:
    folder = tempfile.mkdtemp(dir="/tmp", prefix="ch-cli-")  # sun_path is only 108 bytes
    thread = DaemonThread(f"{folder}/ctl.sock")
    yield thread
    thread.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cli(daemon: DaemonThread) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, [*args, "--socket", daemon.path], catch_exceptions=False)

    return invoke


# --- status ----------------------------------------------------------------------------


def test_status_shows_a_row_per_job(cli: Any) -> None:
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert "backup" in result.stdout
    assert "(disabled by override)" in result.stdout
    assert "3m ago" in result.stdout
    assert "in 2h" in result.stdout
    assert "cronhub 0.1.0 · pid 4242" in result.stdout


def test_status_json_is_the_daemons_result(cli: Any) -> None:
    result = cli("status", "--json")
    document = json.loads(result.stdout)
    fields = {
        "name",
        "enabled",
        "last_run",
        "last_status",
        "last_error",
        "last_duration_ms",
        "total_runs",
        "total_failures",
        "average_duration_ms",
        "next_run",
    }
    assert all(fields <= set(job) for job in document["jobs"])
    assert document["daemon"]["pid"] == 4242


def test_status_of_one_job_shows_config_and_runs(cli: Any) -> None:
    result = cli("status", "backup")
    assert result.exit_code == 0
    assert "Dump [red]db[/]" in result.stdout
    assert "pg_dump" in result.stdout
    assert "Last runs" in result.stdout


def test_status_of_an_unknown_job_exits_1_with_the_closest_names(cli: Any) -> None:
    result = cli("status", "bakup")
    assert result.exit_code == 1
    assert result.stderr == 'cronhub: no job named "bakup" — did you mean "backup"?\n'


def test_status_warns_when_the_registry_on_disk_is_broken(cli: Any, daemon: DaemonThread) -> None:
    daemon.fake.registry_errors = ['jobs.toml:3: job "x": schedule: bad']
    result = cli("status")
    assert result.exit_code == 0
    assert "registry has errors" in result.stdout
    assert 'jobs.toml:3: job "x": schedule: bad' in result.stdout


# --- run -------------------------------------------------------------------------------


def test_run_prints_the_run_id(cli: Any) -> None:
    result = cli("run", "backup")
    assert result.exit_code == 0
    assert result.stdout == RUN_ID + "\n"


def test_run_wait_exits_0_on_success(cli: Any, daemon: DaemonThread) -> None:
    result = cli("run", "backup", "--wait", "--timeout", "30")
    assert result.exit_code == 0
    assert "success" in result.stdout
    request = daemon.fake.requests[-1]
    assert request.params["wait"] is True
    assert request.params["timeout"] == 30


def test_run_wait_exits_1_on_failure(cli: Any, daemon: DaemonThread) -> None:
    daemon.fake.jobs["flaky"] = job_status("flaky")
    result = cli("run", "flaky", "--wait")
    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert "exit status 1" in result.stdout


def test_run_wait_exits_124_when_the_wait_times_out(cli: Any, daemon: DaemonThread) -> None:
    daemon.fake.jobs["slow"] = job_status("slow")
    result = cli("run", "slow", "--wait", "--timeout", "0.5")
    assert result.exit_code == 124
    assert f"run {RUN_ID} is still running after 0.5s" in result.stderr


def test_run_wait_exits_124_when_the_run_timed_out(cli: Any, daemon: DaemonThread) -> None:
    daemon.fake.jobs["hung"] = job_status("hung")
    daemon.fake.op_run = lambda **_: {  # type: ignore[method-assign]
        "run_id": RUN_ID,
        "job_name": "hung",
        "status": "timeout",
        "run": a_run("timeout", exit_code=None, signal=9, error="timed out after 10s"),
    }
    result = cli("run", "hung", "--wait")
    assert result.exit_code == 124
    assert "timeout" in result.stdout
    assert "SIGKILL" in result.stdout


def test_run_of_a_busy_singleton_exits_1(cli: Any) -> None:
    result = cli("run", "report")
    assert result.exit_code == 1
    assert "already running" in result.stderr


def test_run_timeout_needs_wait(cli: Any) -> None:
    assert cli("run", "backup", "--timeout", "5").exit_code == 2


# --- enable / disable, history, logs -----------------------------------------------------


def test_disable_then_enable_report_the_override(cli: Any) -> None:
    assert 'job "backup" disabled' in cli("disable", "backup").stdout
    assert 'job "backup" enabled' in cli("enable", "backup").stdout


def test_history_sends_the_filters_and_shows_runs(cli: Any, daemon: DaemonThread) -> None:
    result = cli("history", "backup", "-n", "2", "--status", "failed", "--since", "1d")
    assert result.exit_code == 0, result.output
    params = daemon.fake.requests[-1].params
    assert (params["job"], params["limit"], params["status"]) == ("backup", 2, "failed")
    since = datetime.fromisoformat(params["since"])
    assert abs(since - (datetime.now(UTC) - timedelta(days=1))) < timedelta(minutes=1)
    assert "00000000" in result.stdout
    assert "00000002" not in result.stdout


def test_history_json_is_a_list_of_runs(cli: Any) -> None:
    runs = json.loads(cli("history", "--json").stdout)
    assert isinstance(runs, list)
    assert {"id", "job_name", "trigger", "attempt", "status", "exit_code", "error"} <= set(runs[0])


def test_history_refuses_a_bad_since(cli: Any) -> None:
    assert cli("history", "--since", "yesterday").exit_code == 2


def test_logs_prints_output_raw_and_the_header_on_stderr(cli: Any) -> None:
    result = cli("logs", "backup")
    assert result.exit_code == 0
    assert result.stdout == "[red]not markup[/]\nline 2\n"
    assert f"run {RUN_ID}" in result.stderr


def test_logs_accepts_a_run_id_prefix(cli: Any, daemon: DaemonThread) -> None:
    daemon.fake.op_history = lambda **_: {"runs": [a_run()]}  # type: ignore[method-assign]
    result = cli("logs", "backup", "--run", RUN_ID[:8])
    assert result.exit_code == 0, result.output
    assert daemon.fake.requests[-1].params["run_id"] == RUN_ID


# --- reload, ping, stop ------------------------------------------------------------------


def test_reload_summarises_the_difference(cli: Any) -> None:
    result = cli("reload")
    assert result.exit_code == 0
    assert "1 added (+new)" in result.stdout


def test_reload_of_a_broken_registry_exits_2_with_the_issues(
    cli: Any, daemon: DaemonThread
) -> None:
    daemon.fake.registry_errors = ["x"]
    result = cli("reload")
    assert result.exit_code == 2
    assert 'jobs.toml:3: job "x": schedule: bad' in result.stderr


def test_ping_prints_version_pid_and_uptime(cli: Any) -> None:
    assert cli("ping").stdout == "cronhub 0.1.0 (protocol 1) · pid 4242 · up 1h2m\n"


def test_stop_waits_until_the_daemon_is_gone(cli: Any) -> None:
    result = cli("stop", "--timeout", "10")
    assert result.exit_code == 0, result.output
    assert "stopped" in result.stdout
    assert cli("ping").exit_code == 3


def test_logs_accepts_the_short_id_history_shows(cli: Any, daemon: DaemonThread) -> None:
    daemon.fake.op_history = lambda **_: {"runs": [a_run()]}  # type: ignore[method-assign]
    result = cli("logs", "backup", "--run", RUN_ID[-8:])
    assert result.exit_code == 0, result.output
    assert daemon.fake.requests[-1].params["run_id"] == RUN_ID
