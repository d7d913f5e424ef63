"""The runner with real processes: statuses, output, trees that misbehave, cleanup.

The test process is made a child subreaper for this module (and restored after),
as the daemon is: escaped grandchildren are re-parented to it, and the runner must
kill and reap them.  One test runs without it.  Callable tests run twice: through
the pre-forked launcher and in a fresh interpreter (``test_launcher.py`` has more).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

import cronhub.runner as runner_module
from cronhub.model import IntervalSchedule, JobSpec, RunRequest, RunResult, RunStatus, Trigger
from cronhub.runner import (
    Runner,
    is_child_subreaper,
    kill_stale,
    set_child_subreaper,
)
from tests.support import gone, not_running, read_pids, wait_until

pytestmark = pytest.mark.timeout(60)

JOBS = Path(__file__).resolve().parent.parent / "fixtures" / "jobs"
MISBEHAVE = str(JOBS / "misbehave.py")
PY = sys.executable
SCHEDULED_AT = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True, scope="module")
def subreaper() -> Iterator[None]:
    was = is_child_subreaper()
    assert set_child_subreaper(True)
    yield
    set_child_subreaper(was)


def spec(**fields: object) -> JobSpec:
    fields.setdefault("cwd", str(JOBS))
    return JobSpec(name="job", schedule=IntervalSchedule(every_ms=60_000, text="1m"), **fields)


def misbehave(*args: str) -> tuple[str, ...]:
    return (PY, MISBEHAVE, *args)


def request(**fields: object) -> RunRequest:
    values: dict[str, object] = {
        "run_id": str(uuid.uuid4()),
        "job_name": "job",
        "trigger": Trigger.MANUAL,
        "attempt": 1,
        "scheduled_at": SCHEDULED_AT,
    }
    values.update(fields)
    return RunRequest(**values)  # type: ignore[arg-type]


def run(
    job: JobSpec, req: RunRequest | None = None, *, limit_s: float = 30, launcher: bool = True
) -> RunResult:
    """Start one run, wait for its result."""

    async def go() -> RunResult:
        runner = Runner(launcher=launcher)
        try:
            handle = await runner.start(job, req or request())
            return await handle.wait()
        finally:
            runner.close()

    return asyncio.run(asyncio.wait_for(go(), limit_s))


# --- outcomes ------------------------------------------------------------------------


def test_success_records_exit_code_output_and_timing() -> None:
    result = run(spec(command="echo hello; echo world >&2"))
    assert result.status is RunStatus.SUCCESS
    assert result.exit_code == 0
    assert result.signal is None
    assert result.error is None
    assert result.output == "hello\nworld\n"
    assert not result.output_truncated
    assert result.pid is not None
    assert result.completed_at >= result.started_at
    assert 0 <= result.duration_ms < 10_000


def test_nonzero_exit_fails_with_last_output_line_as_error() -> None:
    result = run(spec(command="echo first; echo '  last words  '; echo; exit 3"))
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 3
    assert result.error == "last words"


def test_nonzero_exit_without_output_reports_the_status() -> None:
    result = run(spec(command=("/bin/sh", "-c", "exit 4")))
    assert result.status is RunStatus.FAILED
    assert result.error == "exited with status 4"


def test_exit_by_signal_fails_with_signal() -> None:
    result = run(spec(command="kill -9 $$"))
    assert result.status is RunStatus.FAILED
    assert result.signal == signal.SIGKILL
    assert result.exit_code is None
    assert result.error == "killed by signal 9 (SIGKILL)"


def test_argv_command_runs_without_a_shell() -> None:
    result = run(spec(command=("/bin/echo", "$HOME", "a b")))
    assert result.output == "$HOME a b\n"


def test_rusage_figures_are_recorded() -> None:
    # Above the test process's own peak, which Linux counts in every child's figure.
    ballast_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + 50
    result = run(spec(command=misbehave("burn", "0.2", str(ballast_mb))))
    assert result.status is RunStatus.SUCCESS
    assert result.cpu_user_s is not None and result.cpu_user_s >= 0.1
    assert result.cpu_system_s is not None
    assert result.max_rss_kb is not None and result.max_rss_kb > ballast_mb * 1024


def test_peak_rss_of_a_small_job_is_its_own_not_the_daemons() -> None:
    result = run(spec(command=("sleep", "1.2")))
    assert result.max_rss_kb is not None
    assert result.max_rss_kb < 10 * 1024


def test_peak_rss_of_a_short_small_job_is_unknown_rather_than_the_daemons() -> None:
    assert run(spec(command=("true",))).max_rss_kb is None


# --- spawn failures ------------------------------------------------------------------


def test_missing_executable_is_a_failed_run_not_an_exception() -> None:
    result = run(spec(command=("/nonexistent/tool", "x")))
    assert result.status is RunStatus.FAILED
    assert result.pid is None
    assert result.error == "cannot start '/nonexistent/tool': No such file or directory"


def test_missing_cwd_is_a_failed_run(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    result = run(spec(command=("/bin/true",), cwd=missing))
    assert result.status is RunStatus.FAILED
    assert result.error == f"cannot start: working directory {missing!r}: No such file or directory"


def test_unexecutable_file_is_a_failed_run(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\ntrue\n")
    result = run(spec(command=(str(script),), cwd=str(tmp_path)))
    assert result.status is RunStatus.FAILED
    assert result.error is not None and "Permission denied" in result.error


# --- environment -------------------------------------------------------------------------


def test_child_gets_daemon_env_job_env_and_run_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_DAEMON", "inherited")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    req = request(trigger=Trigger.RETRY, attempt=2)
    result = run(
        spec(command=misbehave("env"), env={"FROM_JOB": "set", "FROM_DAEMON": "over"}), req
    )
    env = json.loads(result.output)
    assert env["FROM_DAEMON"] == "over"
    assert env["FROM_JOB"] == "set"
    assert env["CRONHUB_JOB"] == "job"
    assert env["CRONHUB_RUN_ID"] == req.run_id
    assert env["CRONHUB_SCHEDULED_AT"] == "2024-01-02T03:04:05.123456+00:00"
    assert env["CRONHUB_ATTEMPT"] == "2"
    assert env["CRONHUB_TRIGGER"] == "retry"
    assert "NOTIFY_SOCKET" not in env
    assert "CRONHUB_RUN_ID" not in os.environ


def test_child_runs_in_the_job_cwd(tmp_path: Path) -> None:
    result = run(spec(command="pwd", cwd=str(tmp_path)))
    assert result.output.strip() == str(tmp_path)


def test_stdin_is_dev_null() -> None:
    result = run(spec(command="readlink /proc/self/fd/0; cat; echo done"))
    assert result.output == "/dev/null\ndone\n"


def test_each_run_leads_its_own_session() -> None:
    result = run(spec(command=(PY, "-c", "import os; print(os.getsid(0) == os.getpid())")))
    assert result.output == "True\n"


# --- output --------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_huge_output_keeps_the_tail_in_bounded_memory() -> None:
    daemon = psutil.Process()
    before = daemon.memory_info().rss
    result = run(spec(command=misbehave("write", "200"), output_limit=10_000), limit_s=100)
    growth = daemon.memory_info().rss - before
    assert result.status is RunStatus.SUCCESS
    assert result.output_truncated
    assert len(result.output.encode()) <= 10_000
    assert result.output.endswith("x\nEND-MARKER\n")
    assert growth < 20 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB"


def test_truncation_does_not_start_on_half_a_character() -> None:
    result = run(spec(command="printf 'é%.0s' $(seq 100)", output_limit=51))
    assert result.output_truncated
    assert result.output == "é" * 25


def test_run_ends_when_main_exits_even_if_a_child_holds_the_pipe() -> None:
    started = time.monotonic()
    result = run(spec(command="sleep 1000 & echo started"))
    assert result.status is RunStatus.SUCCESS
    assert result.output == "started\n"
    assert time.monotonic() - started < 10


def test_job_closing_stdout_is_tracked_until_it_exits() -> None:
    result = run(spec(command=misbehave("close_stdout", "0.5", "3")))
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 3
    assert result.duration_ms >= 500
    assert result.output == "closing\n"


# --- trees ---------------------------------------------------------------------------


def test_children_left_behind_are_killed_and_reaped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run(spec(command=misbehave("fork_children", "200", str(pidfile))))
    assert result.status is RunStatus.SUCCESS
    assert result.output == "forked 200\n"
    pids = read_pids(pidfile)
    assert len(pids) == 200
    assert [pid for pid in pids if not gone(pid)] == []


def test_double_forked_setsid_grandchild_is_killed_and_reaped(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run(spec(command=misbehave("double_fork", str(pidfile))))
    assert result.status is RunStatus.SUCCESS
    [grandchild] = read_pids(pidfile)
    assert gone(grandchild)


def test_only_a_run_that_leaves_processes_behind_costs_a_proc_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = 0
    take_snapshot = runner_module._take_snapshot

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal scans
        scans += 1
        return take_snapshot(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner_module, "_take_snapshot", counting)
    Runner.reap_orphans()  # what earlier tests may have left on our list
    assert run(spec(command=("true",))).status is RunStatus.SUCCESS
    assert scans == 0  # the main is gone and no child of ours belongs to a run
    pidfile = tmp_path / "pids"
    assert run(spec(command=misbehave("double_fork", str(pidfile)))).status is RunStatus.SUCCESS
    assert scans >= 1
    [grandchild] = read_pids(pidfile)
    assert gone(grandchild)


def test_a_leftover_at_the_end_of_a_long_children_list_is_seen() -> None:
    # More children than one page of /proc/self/task/PID/children holds; the
    # kernel appends adopted orphans, so a leftover is at the end of the list.
    procs = [
        subprocess.Popen(["sleep", "30"], start_new_session=True, stdin=subprocess.DEVNULL)
        for _ in range(800)
    ]
    *mains, leftover = procs
    try:
        with runner_module._TABLE.lock:
            runner_module._TABLE.mains.update((p.pid, "run") for p in mains)
        assert len(runner_module._CHILDREN.read()) >= 800
        assert runner_module._may_have_leftovers()
        with runner_module._TABLE.lock:
            runner_module._TABLE.mains[leftover.pid] = "run"
        assert not runner_module._may_have_leftovers()
    finally:
        with runner_module._TABLE.lock:
            for p in procs:
                runner_module._TABLE.mains.pop(p.pid, None)
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def test_double_forked_grandchild_is_found_without_subreaper(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    set_child_subreaper(False)
    try:
        result = run(spec(command=misbehave("double_fork", str(pidfile))))
    finally:
        set_child_subreaper(True)
    assert result.status is RunStatus.SUCCESS
    [grandchild] = read_pids(pidfile)
    wait_until(lambda: not_running(grandchild), timeout=5, what="grandchild killed")


def test_timeout_kills_whole_tree_including_processes_ignoring_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    result = run(
        spec(command=misbehave("ignore_term", str(pidfile)), timeout_ms=800, kill_grace_ms=300)
    )
    elapsed = time.monotonic() - started
    assert result.status is RunStatus.TIMEOUT
    assert result.signal == signal.SIGKILL
    assert result.error == "timed out after 800ms (killed with SIGKILL after 300ms grace)"
    assert 1.0 <= elapsed < 5
    assert [pid for pid in read_pids(pidfile) if not gone(pid)] == []


def test_timeout_kills_an_escaped_grandchild_ignoring_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    result = run(
        spec(
            command=misbehave("double_fork", str(pidfile), "ignore"),
            timeout_ms=1000,
            kill_grace_ms=200,
        )
    )
    assert result.status is RunStatus.TIMEOUT
    assert result.output == "escaped\n"
    [grandchild] = read_pids(pidfile)
    assert gone(grandchild)


def test_timeout_with_sigterm_obeyed_says_so() -> None:
    result = run(spec(command=("sleep", "100"), timeout_ms=200, kill_grace_ms=5_000))
    assert result.status is RunStatus.TIMEOUT
    assert result.signal == signal.SIGTERM
    assert result.error == "timed out after 200ms (terminated with SIGTERM)"
    assert result.duration_ms < 3_000


def test_interrupt_ends_the_tree_and_records_interrupted(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"

    async def go() -> tuple[RunResult, bool]:
        runner = Runner()
        try:
            handle = await runner.start(
                spec(command=misbehave("ignore_term", str(pidfile))), request()
            )
            await asyncio.to_thread(wait_until, pidfile.exists, 10)
            await handle.interrupt(0.2)
            return await handle.wait(), handle.done
        finally:
            runner.close()

    result, done = asyncio.run(asyncio.wait_for(go(), 30))
    assert done
    assert result.status is RunStatus.INTERRUPTED
    assert result.error == "interrupted (killed with SIGKILL after 200ms grace)"
    assert [pid for pid in read_pids(pidfile) if not gone(pid)] == []


def test_interrupt_after_the_run_ended_keeps_its_result() -> None:
    async def go() -> RunResult:
        runner = Runner()
        try:
            handle = await runner.start(spec(command="true"), request())
            first = await handle.wait()
            await handle.interrupt(1)
            assert await handle.wait() is first
            return first
        finally:
            runner.close()

    assert asyncio.run(go()).status is RunStatus.SUCCESS


def test_concurrent_runs_all_succeed() -> None:
    async def go() -> list[RunResult]:
        runner = Runner()
        try:
            handles = await asyncio.gather(
                *(runner.start(spec(command=("/bin/echo", str(i))), request()) for i in range(40))
            )
            assert all(h.pid and h.pid_create_time for h in handles)
            return list(await asyncio.gather(*(h.wait() for h in handles)))
        finally:
            runner.close()

    results = asyncio.run(asyncio.wait_for(go(), 30))
    assert [r.output for r in results] == [f"{i}\n" for i in range(40)]
    assert all(r.status is RunStatus.SUCCESS for r in results)


# --- callables -----------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["launcher", "fresh"])
def launcher(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[bool]:
    """Whether to use the launcher; checks afterwards that the runs took that path."""
    caplog.set_level(logging.DEBUG, logger="cronhub.runner")
    yield request.param
    records = caplog.get_records("call")
    starts = [m for r in records if (m := r.getMessage()).startswith("run ") and " started " in m]
    assert starts, "no run was started"
    assert all(("by the launcher" in message) is request.param for message in starts), starts


def test_callable_gets_args_and_kwargs(launcher: bool) -> None:
    job = spec(callable="misbehave:greet", args=("world",), kwargs={"punctuation": "?"})
    result = run(job, launcher=launcher)
    assert result.status is RunStatus.SUCCESS
    assert result.output == "hello world?\n"


def test_async_callable_is_awaited(launcher: bool) -> None:
    result = run(spec(callable="misbehave:async_greet", args=("loop",)), launcher=launcher)
    assert result.status is RunStatus.SUCCESS
    assert result.output == "async hello loop\n"


def test_raising_callable_fails_with_traceback_and_last_line(launcher: bool) -> None:
    result = run(spec(callable="misbehave:boom"), launcher=launcher)
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 1
    assert result.error == "ValueError: boom"
    assert result.output.startswith("about to fail\nTraceback (most recent call last):\n")
    assert "childmain" not in result.output


def test_callable_sys_exit_keeps_its_status(launcher: bool) -> None:
    result = run(spec(callable="misbehave:exit3"), launcher=launcher)
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 3
    assert result.error == "exited with status 3"


def test_callable_in_missing_module_fails_with_module_not_found(launcher: bool) -> None:
    result = run(spec(callable="nosuchmodule:main"), launcher=launcher)
    assert result.status is RunStatus.FAILED
    assert result.error == "ModuleNotFoundError: No module named 'nosuchmodule'"


def test_callable_is_imported_from_base_dir_not_only_cwd(tmp_path: Path, launcher: bool) -> None:
    async def go() -> RunResult:
        runner = Runner(base_dir=str(JOBS), launcher=launcher)
        try:
            handle = await runner.start(
                spec(callable="misbehave:greet", args=("x",), cwd=str(tmp_path)), request()
            )
            return await handle.wait()
        finally:
            runner.close()

    assert asyncio.run(go()).output == "hello x!\n"


@pytest.mark.parametrize("name", ["hang", "pause"])
def test_callable_hanging_in_c_code_times_out(name: str, launcher: bool) -> None:
    job = spec(callable=f"misbehave:{name}", timeout_ms=500, kill_grace_ms=2_000)
    result = run(job, launcher=launcher)
    assert result.status is RunStatus.TIMEOUT
    assert result.signal == signal.SIGTERM
    assert result.duration_ms < 2_000


# --- crash recovery ------------------------------------------------------------------


STALE_RUN_ID = "0b7c2a1e-stale"


def stale_tree(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    """A run tree as a dead daemon would have left it: a session leader and a child."""
    pidfile = tmp_path / "pids"
    proc = subprocess.Popen(
        [PY, MISBEHAVE, "ignore_term", str(pidfile)],
        start_new_session=True,
        env={**os.environ, "CRONHUB_RUN_ID": STALE_RUN_ID},
    )
    wait_until(pidfile.exists, 10, what="stale tree up")
    return proc, read_pids(pidfile)


def test_kill_stale_ends_the_tree_of_a_matching_process(tmp_path: Path) -> None:
    proc, pids = stale_tree(tmp_path)
    created = psutil.Process(proc.pid).create_time()
    assert kill_stale(proc.pid, created, run_id=STALE_RUN_ID, grace_s=0.2)
    assert proc.wait(5) == -signal.SIGKILL
    wait_until(lambda: all(not_running(pid) for pid in pids), 5, what="tree gone")
    Runner.reap_orphans()


def test_kill_stale_leaves_a_process_with_another_create_time(tmp_path: Path) -> None:
    proc, pids = stale_tree(tmp_path)
    try:
        created = psutil.Process(proc.pid).create_time()
        assert not kill_stale(proc.pid, created - 3600)
        assert not kill_stale(proc.pid, created, run_id="some-other-run")
        assert all(psutil.Process(pid).is_running() for pid in pids)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_kill_stale_of_a_dead_pid_is_false() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not kill_stale(proc.pid, time.time())


def test_kill_stale_ends_escaped_processes_of_a_dead_main_by_run_id(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    proc = subprocess.Popen(
        [PY, MISBEHAVE, "double_fork", str(pidfile)],
        start_new_session=True,
        env={**os.environ, "CRONHUB_RUN_ID": STALE_RUN_ID},
        stdout=subprocess.DEVNULL,
    )
    created = psutil.Process(proc.pid).create_time()
    assert proc.wait(10) == 0
    [grandchild] = read_pids(pidfile)
    assert not kill_stale(proc.pid, created)
    assert psutil.Process(grandchild).is_running()
    assert kill_stale(proc.pid, created, run_id=STALE_RUN_ID, grace_s=0.5)
    wait_until(lambda: not_running(grandchild), 5, what="escaped grandchild killed")
    Runner.reap_orphans()


def test_callable_args_that_are_not_json_fail_the_run() -> None:
    result = run(spec(callable="misbehave:greet", args=(object(),)))
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("the callable's args are not JSON")


def test_childmain_without_target_prints_usage() -> None:
    proc = subprocess.run(
        [PY, "-m", "cronhub.childmain"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert "usage: python -m cronhub.childmain MODULE:FUNCTION" in proc.stderr


def zombie(**popen_args: object) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["true"], **popen_args)  # type: ignore[call-overload]
    wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE, 10)
    return proc


def test_reap_orphans_reaps_untracked_zombies_of_other_sessions() -> None:
    proc = zombie(start_new_session=True)
    assert Runner.reap_orphans() >= 1
    assert gone(proc.pid)
    proc.returncode = 0  # reaped behind Popen's back, on purpose


def test_reap_orphans_leaves_children_of_the_daemon_session() -> None:
    proc = zombie()
    Runner.reap_orphans()
    assert psutil.pid_exists(proc.pid)
    assert proc.wait(5) == 0
