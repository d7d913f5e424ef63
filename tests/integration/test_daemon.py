"""A real daemon process: runs, history, overlap, retries, crash recovery, shutdown."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import stat
import subprocess
import weakref
from pathlib import Path

import psutil
import pytest

from cronhub.daemon import _freeze_long_lived, _open_gates, _pass_outcome
from cronhub.errors import StoreError
from tests.support import CRONHUB, daemon_process, wait_until

pytestmark = pytest.mark.timeout(90)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(p) for p in path.read_text().split()]


def runs_of(daemon, job: str) -> list[dict]:
    return daemon.call("history", job=job, limit=100)["runs"]


def finished_runs(daemon, job: str, n: int, timeout: float = 20.0) -> list[dict]:
    def enough() -> list[dict] | None:
        runs = [r for r in runs_of(daemon, job) if r["status"] != "running"]
        return runs if len(runs) >= n else None

    return wait_until(enough, timeout, what=f"{n} finished runs of {job}")


def test_success_and_failure_are_recorded_with_status_aggregates() -> None:
    jobs = """
    [jobs.ok]
    schedule = "every 1s"
    command = "echo hello from $CRONHUB_JOB"
    timeout = "10s"

    [jobs.bad]
    schedule = "every 1s"
    command = "echo about to fail; exit 3"
    timeout = "10s"
    """
    with daemon_process(jobs) as daemon:
        ok = finished_runs(daemon, "ok", 2)[0]
        bad = finished_runs(daemon, "bad", 2)[0]
        assert ok["status"] == "success" and ok["exit_code"] == 0
        assert ok["trigger"] == "schedule" and ok["attempt"] == 1
        assert bad["status"] == "failed" and bad["exit_code"] == 3
        assert "about to fail" in (bad["error"] or "")
        logs = daemon.call("logs", job="ok")
        assert logs["output"].strip() == "hello from ok"
        status = {j["name"]: j for j in daemon.call("status")["jobs"]}
        assert status["bad"]["total_failures"] >= 2
        assert status["ok"]["total_runs"] >= 2 and status["ok"]["total_failures"] == 0
        assert status["ok"]["last_status"] == "success"
        assert status["ok"]["next_run"] is not None


def test_timeout_ends_the_whole_tree_including_escaped_grandchildren() -> None:
    jobs = """
    [jobs.escape]
    schedule = "@reboot"
    command = '''
    trap '' TERM
    setsid sh -c 'trap "" TERM; sleep 1000' &
    echo $! >> pids
    (sleep 1000 & echo $! >> pids)
    echo $$ >> pids
    sleep 1000
    '''
    timeout = "1s"
    kill_grace = "500ms"
    """
    with daemon_process(jobs) as daemon:
        run = finished_runs(daemon, "escape", 1)[0]
        assert run["status"] == "timeout"
        pids = read_pids(daemon.folder / "pids")
        assert len(pids) == 3
        wait_until(lambda: not any(alive(p) for p in pids), 5, what="no survivors")


def test_huge_output_keeps_only_the_tail_and_bounded_memory() -> None:
    jobs = """
    [jobs.loud]
    schedule = "@reboot"
    command = "head -c 100000000 /dev/zero | tr '\\\\0' x; echo; echo THE-END"
    output_limit = "64KiB"
    timeout = "60s"
    """
    with daemon_process(jobs) as daemon:
        assert daemon.proc is not None
        run = finished_runs(daemon, "loud", 1, timeout=60)[0]
        assert run["status"] == "success"
        logs = daemon.call("logs", job="loud")
        assert logs["truncated"] is True
        assert logs["output"].rstrip().endswith("THE-END")
        assert len(logs["output"].encode()) <= 64 * 1024
        rss = psutil.Process(daemon.proc.pid).memory_info().rss
        assert rss < 150 * 1024 * 1024


def test_singleton_skips_overlapping_ticks_and_non_singleton_overlaps() -> None:
    jobs = """
    [jobs.single]
    schedule = "every 1s"
    command = "sleep 2.5"
    timeout = "10s"

    [jobs.multi]
    schedule = "every 1s"
    command = "sleep 2.5"
    singleton = false
    timeout = "10s"
    """
    with daemon_process(jobs) as daemon:
        wait_until(
            lambda: any(r["status"] == "skipped" for r in runs_of(daemon, "single")),
            10,
            what="a skipped tick",
        )
        wait_until(
            lambda: daemon.call("status", job="multi")["jobs"][0]["running"] >= 2,
            10,
            what="overlapping runs",
        )
        assert daemon.call("status", job="single")["jobs"][0]["running"] <= 1


def test_failed_run_is_retried_with_attempt_numbers() -> None:
    jobs = """
    [jobs.flaky]
    schedule = "@reboot"
    command = "echo attempt $CRONHUB_ATTEMPT $CRONHUB_TRIGGER >> attempts; exit 1"
    retries = 2
    retry_delay = "200ms"
    timeout = "10s"
    """
    with daemon_process(jobs) as daemon:
        runs = finished_runs(daemon, "flaky", 3)
        assert sorted(r["attempt"] for r in runs) == [1, 2, 3]
        assert {r["scheduled_at"] for r in runs} == {runs[0]["scheduled_at"]}
        assert sorted(r["trigger"] for r in runs) == ["retry", "retry", "startup"]
        lines = (daemon.folder / "attempts").read_text().splitlines()
        assert lines == ["attempt 1 startup", "attempt 2 retry", "attempt 3 retry"]


def test_environment_cwd_and_stdin_of_a_run(tmp_path: Path) -> None:
    jobs = f"""
    [jobs.env]
    schedule = "@reboot"
    command = '''
    out={tmp_path}/env.txt
    env | grep ^CRONHUB_ | sort > $out; pwd >> $out; cat >> $out; echo FOO=$FOO >> $out
    '''
    env = {{ FOO = "bar" }}
    cwd = "/tmp"
    timeout = "10s"
    """
    with daemon_process(jobs) as daemon:
        run = finished_runs(daemon, "env", 1)[0]
        text = (tmp_path / "env.txt").read_text()
        assert f"CRONHUB_RUN_ID={run['id']}" in text
        assert "CRONHUB_JOB=env" in text
        assert "CRONHUB_TRIGGER=startup" in text
        assert "CRONHUB_ATTEMPT=1" in text
        assert "CRONHUB_SCHEDULED_AT=" in text
        assert "\n/tmp\n" in text
        assert "FOO=bar" in text


def test_sigkill_mid_run_then_restart_records_interrupted_and_kills_survivor() -> None:
    jobs = """
    [jobs.long]
    schedule = "@reboot"
    command = "echo $$ > pid; exec sleep 1000"
    timeout = "1h"
    """
    with daemon_process(jobs) as daemon:
        pidfile = daemon.folder / "pid"
        wait_until(pidfile.exists, 10, what="the job to start")
        job_pid = int(pidfile.read_text())
        wait_until(lambda: runs_of(daemon, "long"), 5)
        daemon.kill()
        assert alive(job_pid), "the job survives its daemon's SIGKILL until recovery"
        daemon.write_registry(
            '[jobs.other]\nschedule = "every 1h"\ncommand = "true"\ntimeout = "1s"'
        )
        daemon.start()
        wait_until(lambda: not alive(job_pid), 10, what="recovery to end the orphaned run")
        run = runs_of(daemon, "long")[0]
        assert run["status"] == "interrupted"
        assert daemon.rows("PRAGMA integrity_check") == [("ok",)]


def test_sigterm_during_long_runs_interrupts_them_and_exits_cleanly() -> None:
    jobs = """
    [jobs.stubborn]
    schedule = "@reboot"
    command = "trap '' TERM; echo $$ > pid; while true; do sleep 0.1; done"
    timeout = "1h"
    kill_grace = "300ms"
    """
    with daemon_process(jobs, scheduler='shutdown_grace = "500ms"') as daemon:
        pidfile = daemon.folder / "pid"
        wait_until(pidfile.exists, 10, what="the job to start")
        job_pid = int(pidfile.read_text())
        assert daemon.stop(timeout=15) == 0
        assert not alive(job_pid)
        assert not Path(daemon.socket).exists()
        rows = daemon.rows("SELECT status FROM scheduled_job_history WHERE job_name='stubborn'")
        assert rows == [("interrupted",)]


def test_graceful_shutdown_lets_short_runs_finish() -> None:
    jobs = """
    [jobs.short]
    schedule = "@reboot"
    command = "touch started; sleep 1; echo done"
    timeout = "10s"
    """
    with daemon_process(jobs, scheduler='shutdown_grace = "10s"') as daemon:
        wait_until((daemon.folder / "started").exists, 10)
        assert daemon.stop() == 0
        rows = daemon.rows("SELECT status FROM scheduled_job_history WHERE job_name='short'")
        assert rows == [("success",)]


def test_read_only_database_holds_results_until_it_is_writable_again() -> None:
    jobs = """
    [jobs.tick]
    schedule = "every 1s"
    command = "echo $CRONHUB_RUN_ID >> ran"
    timeout = "5s"
    """
    with daemon_process(jobs) as daemon:
        finished_runs(daemon, "tick", 1)
        db = daemon.database
        folder_mode = daemon.folder.stat().st_mode
        os.chmod(db, stat.S_IRUSR)
        for suffix in ("-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                os.chmod(f"{db}{suffix}", stat.S_IRUSR)
        ran = daemon.folder / "ran"
        # chmod does not stop root: block writes with an exclusive lock instead when root.
        blocker = None
        if os.geteuid() == 0:
            import sqlite3

            blocker = sqlite3.connect(db, timeout=5, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
        before = len(read_pids_lines(ran))
        wait_until(lambda: len(read_pids_lines(ran)) >= before + 3, 15, what="runs during outage")
        if blocker is not None:
            blocker.execute("ROLLBACK")
            blocker.close()
        os.chmod(db, stat.S_IRUSR | stat.S_IWUSR)
        for suffix in ("-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                os.chmod(f"{db}{suffix}", stat.S_IRUSR | stat.S_IWUSR)
        os.chmod(daemon.folder, folder_mode)
        daemon.stop()
        ids = read_pids_lines(ran)
        rows = dict(
            daemon.rows("SELECT id, status FROM scheduled_job_history WHERE job_name='tick'")
        )
        missing = [i for i in ids if i not in rows]
        assert not missing, f"{len(missing)} runs lost during the outage"
        assert "warning" in daemon.log_text().lower() or "WARNING" in daemon.log_text()


def read_pids_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_second_daemon_on_the_same_registry_exits_1_naming_the_pid() -> None:
    with daemon_process(
        '[jobs.a]\nschedule = "every 1h"\ncommand = "true"\ntimeout = "1s"'
    ) as daemon:
        assert daemon.proc is not None
        second = subprocess.run(
            [CRONHUB, "start", "--config", str(daemon.config)],
            capture_output=True,
            text=True,
            timeout=30,
            env=daemon.env,
        )
        assert second.returncode == 1
        assert str(daemon.proc.pid) in second.stderr


def test_sighup_reloads_and_broken_edit_keeps_last_good_registry() -> None:
    with daemon_process(
        '[jobs.a]\nschedule = "every 1h"\ncommand = "true"\ntimeout = "1s"'
    ) as daemon:
        daemon.write_registry(
            '[jobs.a]\nschedule = "every 1h"\ncommand = "true"\ntimeout = "1s"\n\n'
            '[jobs.b]\nschedule = "every 1h"\ncommand = "true"\ntimeout = "1s"\n'
        )
        daemon.signal(signal.SIGHUP)
        wait_until(
            lambda: {j["name"] for j in daemon.call("status")["jobs"]} == {"a", "b"},
            10,
            what="job b to appear",
        )
        daemon.config.write_text(daemon.config.read_text() + "\n[jobs.c]\nscedule = 5\n")
        daemon.signal(signal.SIGHUP)
        status = wait_until(
            lambda: (s := daemon.call("status"))["daemon"]["registry_errors"] and s,
            10,
            what="status to show the broken registry",
        )
        assert any("scedule" in e for e in status["daemon"]["registry_errors"])
        assert {j["name"] for j in status["jobs"]} == {"a", "b"}


def test_second_sigterm_interrupts_running_jobs_without_waiting_for_the_grace() -> None:
    jobs = """
    [jobs.slow]
    schedule = "@reboot"
    command = "touch started; sleep 30"
    timeout = "1m"
    """
    with daemon_process(jobs, scheduler='shutdown_grace = "60s"') as daemon:
        wait_until((daemon.folder / "started").exists, 10)
        daemon.signal(signal.SIGTERM)
        wait_until(lambda: "shutting down" in daemon.log_text(), 5)
        daemon.signal(signal.SIGTERM)
        assert daemon.stop(timeout=15) == 0
        rows = daemon.rows("SELECT status FROM scheduled_job_history WHERE job_name='slow'")
        assert rows == [("interrupted",)]


def test_run_wait_returns_when_its_queued_run_is_dropped() -> None:
    jobs = """
    [jobs.hog]
    schedule = "@reboot"
    command = "touch hog; sleep 30"
    timeout = "1m"

    [jobs.queued]
    schedule = "every 1h"
    command = "true"
    timeout = "5s"
    """
    scheduler = 'max_concurrent = 1\nshutdown_grace = "1s"'
    with daemon_process(jobs, scheduler=scheduler) as daemon:
        wait_until((daemon.folder / "hog").exists, 10)
        waiting = subprocess.Popen(
            [CRONHUB, "run", "queued", "--wait", "--config", str(daemon.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=daemon.env,
        )
        wait_until(lambda: "manual run requested job=queued" in daemon.log_text(), 10)
        daemon.write_registry('[jobs.hog]\nschedule = "@reboot"\ncommand = "sleep 30"\n', scheduler)
        _out, err = waiting.communicate(timeout=20)
        assert waiting.returncode == 1, err
        assert "skipped" in _out + err


def test_enable_and_disable_are_kept_over_restarts_and_edits() -> None:
    jobs = '[jobs.a]\nschedule = "every 1h"\ncommand = "true"\ntimeout = "5s"\n'
    with daemon_process(jobs) as daemon:
        assert daemon.call("disable", job="a") == {"job": "a", "enabled": False, "override": False}
        daemon.stop()
        daemon.start()
        job = daemon.call("status", job="a")["jobs"][0]
        assert (job["enabled"], job["override"]) == (False, False)
        assert daemon.call("enable", job="a")["override"] is True
        daemon.write_registry(jobs.replace('timeout = "5s"', 'timeout = "5s"\nenabled = false'))
        wait_until(lambda: daemon.call("status", job="a")["jobs"][0]["enabled_config"] is False, 10)
        assert daemon.call("status", job="a")["jobs"][0]["enabled"] is True


def test_long_lived_objects_leave_the_collector_after_garbage_is_collected() -> None:
    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]
    dead = weakref.ref(cycle)
    del cycle  # garbage, but only a collection can free a cycle
    kept = Node()
    try:
        _freeze_long_lived()
        assert dead() is None  # collected first, not frozen forever
        assert not any(o is kept for o in gc.get_objects())  # the rest is frozen
    finally:
        gc.unfreeze()


def test_a_gate_opens_with_its_insert_or_unanswered_after_the_wait() -> None:
    loop = asyncio.new_event_loop()
    try:
        inserted = [loop.create_future() for _ in range(4)]
        gates: list[asyncio.Future[bool | None]] = [loop.create_future() for _ in range(4)]
        inserted[0].set_result(True)
        inserted[1].set_result(False)  # that tick is already in history
        inserted[2].set_exception(StoreError("disk full"))
        for done, gate in zip(inserted[:3], gates[:3], strict=True):
            _pass_outcome(gate, done)
        _open_gates(gates)  # the burst's wait is over: the rest start unanswered
        inserted[3].set_result(True)
        _pass_outcome(gates[3], inserted[3])  # too late to change anything
        assert [gates[0].result(), gates[1].result(), gates[3].result()] == [True, False, None]
        assert isinstance(gates[2].exception(), StoreError)
    finally:
        loop.close()
