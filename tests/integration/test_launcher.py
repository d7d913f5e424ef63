"""Callables started by the pre-forked launcher behave as if started fresh.

Most tests run twice, through the launcher and in a fresh interpreter, and check
the same behaviour; the rest are the launcher's own: it is the daemon that adopts
and reaps its runs, it restarts when it breaks or goes stale, it steps aside when
a run needs an interpreter it cannot be.  As in ``test_runner.py``, the test
process is a child subreaper, as the daemon is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from cronhub.model import IntervalSchedule, JobSpec, RunRequest, RunResult, RunStatus, Trigger
from cronhub.runner import (
    RunHandle,
    Runner,
    is_child_subreaper,
    kill_stale,
    set_child_subreaper,
)
from tests.support import gone, not_running, read_pids, wait_until

pytestmark = pytest.mark.timeout(60)

JOBS = Path(__file__).resolve().parent.parent / "fixtures" / "jobs"
T = TypeVar("T")

PROBE = '''\
"""Reports what a job sees of its process, for comparing how it was started."""

import gc
import json
import os
import signal
import stat
import sys
import time


def _proc_run_id():
    with open("/proc/self/environ", "rb") as file:
        entries = file.read().split(b"\\0")
    for entry in entries:
        if entry.startswith(b"CRONHUB_RUN_ID="):
            return entry.split(b"=", 1)[1].decode()
    return None


def state():
    umask = os.umask(0)
    os.umask(umask)
    out, err = os.fstat(1), os.fstat(2)
    print(json.dumps({
        "cwd": os.getcwd(),
        "stdin": os.readlink("/proc/self/fd/0"),
        "stdout_is_pipe": stat.S_ISFIFO(out.st_mode),
        "stderr_is_stdout": (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "leads_session": os.getsid(0) == os.getpid(),
        "leads_group": os.getpgrp() == os.getpid(),
        "env": dict(os.environ),
        "proc_run_id": _proc_run_id(),
        "path": sys.path,
        "argv": sys.argv,
        "flags": list(sys.flags),
        "signals": {
            sig.name: repr(signal.getsignal(sig))
            for sig in signal.valid_signals()
            if isinstance(sig, signal.Signals) and sig not in (signal.SIGKILL, signal.SIGSTOP)
        },
        "mask": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "stdout": [sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering],
        "stderr": [sys.stderr.encoding, sys.stderr.errors, sys.stderr.line_buffering],
        "umask": umask,
        "gc": gc.isenabled(),
        "probe": __file__,
    }))


PREFIX = "finalized"
_kept = []


class Noisy:
    def __del__(self):
        print(PREFIX, "with its globals", flush=True)


def shutdown(folder):
    """Leave work for interpreter shutdown: a thread, an atexit handler, buffers."""
    import atexit
    import threading

    def late():
        time.sleep(0.3)
        with open(os.path.join(folder, "thread"), "w") as file:
            file.write("joined")

    global NOISY
    NOISY = Noisy()
    threading.Thread(target=late).start()
    atexit.register(print, "atexit ran")
    buffered = open(os.path.join(folder, "buffered"), "w", buffering=1 << 20)
    buffered.write("flushed at exit")
    _kept.append(buffered)
    sys.stdout.write("unterminated")


def exit_with(code):
    print("exiting")
    sys.exit(code)


def sleep(seconds):
    print("sleeping", flush=True)
    time.sleep(seconds)


def version():
    print("one")
'''


@pytest.fixture(autouse=True, scope="module")
def subreaper() -> Iterator[None]:
    was = is_child_subreaper()
    assert set_child_subreaper(True)
    yield
    set_child_subreaper(was)


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.py").write_text(PROBE)
    return folder


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="cronhub.runner")
    return caplog


@pytest.fixture(params=[True, False], ids=["launcher", "fresh"])
def launcher(request: pytest.FixtureRequest, logs: pytest.LogCaptureFixture) -> Iterator[bool]:
    """Whether to use the launcher; checks afterwards that the runs took that path."""
    yield request.param
    starts = started_messages(logs.get_records("call"))
    assert starts, "no run was started"
    assert all(("by the launcher" in message) is request.param for message in starts), starts


def started_messages(records: list[logging.LogRecord]) -> list[str]:
    return [m for r in records if (m := r.getMessage()).startswith("run ") and " started " in m]


def by_launcher(logs: pytest.LogCaptureFixture) -> list[bool]:
    """For each run started so far in this test: whether the launcher started it."""
    return ["by the launcher" in message for message in started_messages(logs.records)]


def spec(**fields: Any) -> JobSpec:
    fields.setdefault("cwd", str(JOBS))
    return JobSpec(name="job", schedule=IntervalSchedule(every_ms=60_000, text="1m"), **fields)


def request(run_id: str | None = None) -> RunRequest:
    return RunRequest(
        run_id=run_id or str(uuid.uuid4()),
        job_name="job",
        trigger=Trigger.MANUAL,
        attempt=1,
        scheduled_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def with_runner(
    body: Callable[[Runner], Awaitable[T]], *, limit_s: float = 30, **options: Any
) -> T:
    async def go() -> T:
        runner = Runner(**options)
        try:
            return await body(runner)
        finally:
            runner.close()

    return asyncio.run(asyncio.wait_for(go(), limit_s))


def run(job: JobSpec, *, launcher: bool = True, **options: Any) -> RunResult:
    async def body(runner: Runner) -> RunResult:
        return await (await runner.start(job, request())).wait()

    return with_runner(body, launcher=launcher, **options)


def launcher_pids() -> list[int]:
    """Our launcher processes (children of this process running launcher.py)."""
    found = []
    for child in psutil.Process().children():
        try:
            if any(part.endswith("launcher.py") for part in child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


async def wait_for_output(handle: RunHandle, marker: str) -> None:
    """Until the run has printed ``marker`` (its output is read by the loop)."""
    deadline = time.monotonic() + 10
    while marker not in handle._tail.text():
        assert time.monotonic() < deadline, f"no {marker!r} in the output"
        await asyncio.sleep(0.01)


# --- the same as a fresh interpreter ---------------------------------------------------------


def test_launched_job_sees_the_same_process_state_as_a_fresh_one(
    probe_dir: Path, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    job = spec(callable="probe:state", cwd=str(tmp_path), env={"FROM_JOB": "yes"})
    req = request()

    async def body(runner: Runner) -> RunResult:
        return await (await runner.start(job, req)).wait()

    states = {}
    for launcher in (True, False):
        result = with_runner(body, base_dir=str(probe_dir), launcher=launcher)
        assert result.status is RunStatus.SUCCESS, result.output
        states[launcher] = json.loads(result.output)
    assert by_launcher(logs) == [True, False]
    assert states[True] == states[False]
    fresh = states[False]
    assert fresh["cwd"] == str(tmp_path)
    assert fresh["stdin"] == "/dev/null"
    assert fresh["fds"] == [0, 1, 2, 3]  # 3: the listing itself
    assert fresh["leads_session"] and fresh["leads_group"]
    assert fresh["env"]["FROM_JOB"] == "yes"
    assert fresh["env"]["CRONHUB_RUN_ID"] == fresh["proc_run_id"] == req.run_id
    assert fresh["path"][0] == str(probe_dir)
    assert fresh["signals"]["SIGINT"] == repr(signal.default_int_handler)
    assert fresh["mask"] == []


def test_shutdown_work_is_done_as_in_a_fresh_interpreter(
    probe_dir: Path, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    outcomes = {}
    for launcher in (True, False):
        folder = tmp_path / str(launcher)
        folder.mkdir()
        job = spec(callable="probe:shutdown", args=(str(folder),))
        result = run(job, launcher=launcher, base_dir=str(probe_dir))
        files = {path.name: path.read_text() for path in folder.iterdir()}
        outcomes[launcher] = (result.status, result.output, files)
    assert by_launcher(logs) == [True, False]
    assert outcomes[True] == outcomes[False]
    status, output, files = outcomes[False]
    assert status is RunStatus.SUCCESS
    assert "atexit ran" in output and "finalized with its globals" in output
    assert files == {"thread": "joined", "buffered": "flushed at exit"}


@pytest.mark.parametrize(
    ("code", "status", "output"),
    [
        (None, 0, "exiting\n"),
        (3, 3, "exiting\n"),
        (259, 3, "exiting\n"),
        ("bye", 1, "exiting\nbye\n"),
    ],
)
def test_sys_exit_status_and_message(
    probe_dir: Path, launcher: bool, code: object, status: int, output: str
) -> None:
    job = spec(callable="probe:exit_with", args=(code,))
    result = run(job, launcher=launcher, base_dir=str(probe_dir))
    assert result.exit_code == status
    assert result.output == output


def test_env_is_replaced_wholesale_for_each_run(probe_dir: Path, launcher: bool) -> None:
    async def body(runner: Runner) -> list[dict[str, str]]:
        envs = []
        for env in ({"CHANGES": "before"}, {}):
            handle = await runner.start(spec(callable="probe:state", env=env), request())
            envs.append(json.loads((await handle.wait()).output)["env"])
        return envs

    first, second = with_runner(body, base_dir=str(probe_dir), launcher=launcher)
    assert first["CHANGES"] == "before"
    assert "CHANGES" not in second


def test_output_keeps_the_tail(launcher: bool) -> None:
    job = spec(callable="misbehave:write", args=("3",), output_limit=10_000)
    result = run(job, launcher=launcher)
    assert result.status is RunStatus.SUCCESS
    assert result.output_truncated
    assert result.output.endswith("x\nEND-MARKER\n")


@pytest.mark.parametrize("launcher", [True, False], ids=["launcher", "fresh"])
def test_missing_cwd_is_a_failed_run(
    tmp_path: Path, launcher: bool, logs: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "nope")
    job = spec(callable="misbehave:greet", args=("x",), cwd=missing)
    result = run(job, launcher=launcher, base_dir=str(JOBS))
    assert result.status is RunStatus.FAILED
    assert result.pid is None
    assert result.error == f"cannot start: working directory {missing!r}: No such file or directory"
    refused = [r for r in logs.records if r.getMessage().startswith("callable launcher: cannot")]
    assert bool(refused) is launcher


def test_children_left_behind_are_killed_and_reaped(tmp_path: Path, launcher: bool) -> None:
    pidfile = tmp_path / "pids"
    job = spec(callable="misbehave:fork_children", args=("20", str(pidfile)))
    result = run(job, launcher=launcher)
    assert result.status is RunStatus.SUCCESS
    assert result.output == "forked 20\n"
    assert [pid for pid in read_pids(pidfile) if not gone(pid)] == []


def test_escaped_grandchild_is_killed_and_reaped(tmp_path: Path, launcher: bool) -> None:
    pidfile = tmp_path / "pids"
    job = spec(callable="misbehave:double_fork", args=(str(pidfile),))
    result = run(job, launcher=launcher)
    assert result.status is RunStatus.SUCCESS
    [grandchild] = read_pids(pidfile)
    assert gone(grandchild)


def test_timeout_kills_whole_tree_ignoring_sigterm(tmp_path: Path, launcher: bool) -> None:
    pidfile = tmp_path / "pids"
    job = spec(
        callable="misbehave:ignore_term", args=(str(pidfile),), timeout_ms=800, kill_grace_ms=300
    )
    result = run(job, launcher=launcher)
    assert result.status is RunStatus.TIMEOUT
    assert result.signal == signal.SIGKILL
    assert result.error == "timed out after 800ms (killed with SIGKILL after 300ms grace)"
    assert [pid for pid in read_pids(pidfile) if not gone(pid)] == []


def test_interrupt_ends_the_tree(tmp_path: Path, launcher: bool) -> None:
    pidfile = tmp_path / "pids"

    async def body(runner: Runner) -> RunResult:
        handle = await runner.start(
            spec(callable="misbehave:ignore_term", args=(str(pidfile),)), request()
        )
        await asyncio.to_thread(wait_until, pidfile.exists, 10)
        await handle.interrupt(0.2)
        return await handle.wait()

    result = with_runner(body, launcher=launcher)
    assert result.status is RunStatus.INTERRUPTED
    assert result.error == "interrupted (killed with SIGKILL after 200ms grace)"
    assert [pid for pid in read_pids(pidfile) if not gone(pid)] == []


def test_rusage_is_the_jobs(launcher: bool) -> None:
    # Above the test process's own peak, which Linux counts in a fresh child's figure.
    ballast_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + 50
    job = spec(callable="misbehave:burn", args=("0.2", str(ballast_mb)))
    result = run(job, launcher=launcher)
    assert result.status is RunStatus.SUCCESS
    assert result.cpu_user_s is not None and result.cpu_user_s >= 0.1
    assert result.max_rss_kb is not None and result.max_rss_kb > ballast_mb * 1024


def test_pid_and_create_time_identify_the_run_for_kill_stale(
    probe_dir: Path, launcher: bool
) -> None:
    req = request()

    async def body(runner: Runner) -> tuple[RunResult, float, float | None]:
        handle = await runner.start(spec(callable="probe:sleep", args=(60,)), req)
        await wait_for_output(handle, "sleeping")
        assert handle.pid is not None
        actual = psutil.Process(handle.pid).create_time()
        # As crash recovery would, from what the daemon stored for the run.
        assert handle.pid_create_time is not None
        killed = await asyncio.to_thread(
            kill_stale, handle.pid, handle.pid_create_time, run_id=req.run_id, grace_s=5
        )
        assert killed
        return await handle.wait(), actual, handle.pid_create_time

    result, actual, recorded = with_runner(body, base_dir=str(probe_dir), launcher=launcher)
    assert recorded is not None and abs(recorded - actual) < 0.05
    assert result.status is RunStatus.FAILED
    assert result.signal == signal.SIGTERM


def test_concurrent_callables_all_succeed(launcher: bool) -> None:
    async def body(runner: Runner) -> list[RunResult]:
        jobs = [spec(callable="misbehave:greet", args=(str(i),)) for i in range(12)]
        handles = await asyncio.gather(*(runner.start(job, request()) for job in jobs))
        return list(await asyncio.gather(*(handle.wait() for handle in handles)))

    results = with_runner(body, launcher=launcher)
    assert [r.output for r in results] == [f"hello {i}!\n" for i in range(12)]


# --- the launcher's own behaviour --------------------------------------------------------------


def test_launched_run_is_the_daemons_child_in_its_own_session(probe_dir: Path) -> None:
    async def body(runner: Runner) -> tuple[int, int, int]:
        handle = await runner.start(spec(callable="probe:sleep", args=(60,)), request())
        await wait_for_output(handle, "sleeping")
        assert handle.pid is not None
        process = psutil.Process(handle.pid)
        facts = process.ppid(), os.getsid(handle.pid), os.getpgid(handle.pid)
        await handle.interrupt(5)
        return facts

    ppid, sid, pgid = with_runner(body, base_dir=str(probe_dir))
    assert ppid == os.getpid()
    assert sid == pgid != os.getsid(0)


def test_job_module_is_imported_afresh_in_every_run(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    module = tmp_path / "edited.py"
    module.write_text('def main():\n    print("one")\n')
    job = spec(callable="edited:main", cwd=str(tmp_path))

    async def body(runner: Runner) -> list[str]:
        outputs = []
        for text in ('"two, longer"', '"three, longer still"'):
            outputs.append((await (await runner.start(job, request())).wait()).output)
            module.write_text(f"def main():\n    print({text})\n")
        outputs.append((await (await runner.start(job, request())).wait()).output)
        return outputs

    assert with_runner(body) == ["one\n", "two, longer\n", "three, longer still\n"]
    assert by_launcher(logs) == [True, True, True]


def test_a_killed_launcher_is_replaced_and_its_runs_start_fresh_meanwhile(
    logs: pytest.LogCaptureFixture,
) -> None:
    job = spec(callable="misbehave:greet", args=("x",))

    async def body(runner: Runner) -> tuple[int, int, list[RunResult]]:
        results = [await (await runner.start(job, request())).wait()]
        [first] = launcher_pids()
        os.kill(first, signal.SIGKILL)
        await asyncio.to_thread(wait_until, lambda: not_running(first), 10, what="launcher killed")
        results.append(await (await runner.start(job, request())).wait())
        deadline = time.monotonic() + 15
        while not by_launcher(logs)[-1]:
            assert time.monotonic() < deadline, "the launcher did not come back"
            results.append(await (await runner.start(job, request())).wait())
            await asyncio.sleep(0.1)
        [second] = launcher_pids()
        return first, second, results

    first, second, results = with_runner(body)
    assert all(r.status is RunStatus.SUCCESS and r.output == "hello x!\n" for r in results)
    assert first != second and gone(first)
    assert by_launcher(logs)[:2] == [True, False]
    assert any("callable launcher failed" in r.getMessage() for r in logs.records)


def test_without_subreaper_callables_start_fresh(logs: pytest.LogCaptureFixture) -> None:
    set_child_subreaper(False)
    try:
        result = run(spec(callable="misbehave:greet", args=("x",)))
    finally:
        set_child_subreaper(True)
    assert result.output == "hello x!\n"
    assert by_launcher(logs) == [False]


def test_job_env_with_interpreter_startup_variables_starts_fresh(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "onlyhere.py").write_text('def main():\n    print("found")\n')
    job = spec(callable="onlyhere:main", cwd=str(tmp_path), env={"PYTHONPATH": str(extra)})
    result = run(job)
    assert result.output == "found\n"
    assert by_launcher(logs) == [False]


def test_launcher_restarts_when_a_sys_path_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    extra = tmp_path / "site"
    extra.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(extra))
    job = spec(callable="newpkg:main", cwd=str(tmp_path))

    async def body(runner: Runner) -> tuple[RunResult, list[int], RunResult, list[int]]:
        before = await (await runner.start(job, request())).wait()
        first = launcher_pids()
        (extra / "newpkg.py").write_text('def main():\n    print("installed")\n')
        after = await (await runner.start(job, request())).wait()
        return before, first, after, launcher_pids()

    before, first, after, second = with_runner(body)
    assert "ModuleNotFoundError" in (before.error or "")
    assert after.output == "installed\n"
    assert len(first) == len(second) == 1 and first != second
    assert by_launcher(logs) == [True, True]


def test_close_stops_the_launcher() -> None:
    async def body(runner: Runner) -> int:
        await (await runner.start(spec(callable="misbehave:greet", args=("x",)), request())).wait()
        [pid] = launcher_pids()
        return pid

    pid = with_runner(body)
    assert gone(pid)
    assert launcher_pids() == []


def test_launched_runs_peak_rss_is_its_own(tmp_path: Path) -> None:
    result = run(spec(callable="misbehave:greet", args=("x",)))
    assert result.max_rss_kb is not None
    # What a fresh interpreter would show, not the daemon's (the test process's).
    assert result.max_rss_kb < 64 * 1024


def test_run_id_too_long_for_the_launcher_starts_fresh(logs: pytest.LogCaptureFixture) -> None:
    async def body(runner: Runner) -> RunResult:
        job = spec(callable="misbehave:env")
        return await (await runner.start(job, request("r" * 100))).wait()

    result = with_runner(body)
    assert json.loads(result.output)["CRONHUB_RUN_ID"] == "r" * 100
    assert by_launcher(logs) == [False]


def test_launcher_is_not_used_when_disabled(logs: pytest.LogCaptureFixture) -> None:
    assert run(spec(callable="misbehave:greet", args=("x",)), launcher=False).output == "hello x!\n"
    assert by_launcher(logs) == [False]
    assert launcher_pids() == []


def test_launcher_rejects_being_run_by_hand() -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parents[2] / "cronhub" / "launcher.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "usage" in proc.stderr
