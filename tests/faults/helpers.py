"""Helpers of the fault suite: a tagged daemon, process scans and history figures.

Every daemon started here carries a unique ``CRONHUB_FAULT_TAG`` in its
environment, which its jobs inherit.  A job process is any process with that tag
and a ``CRONHUB_RUN_ID``: after its run has ended, or after the daemon has stopped,
each one still alive is a survivor.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import DaemonProcess, daemon_in, registry_text, short_tmpdir

FAULT_JOBS = Path(__file__).parent / "jobs"
TAG_VAR = "CRONHUB_FAULT_TAG"
FINAL = frozenset({"success", "failed", "timeout", "skipped", "interrupted"})
HISTORY_COLUMNS = (
    "id",
    "job_name",
    "trigger",
    "attempt",
    "scheduled_at",
    "started_at",
    "completed_at",
    "status",
    "error",
    "exit_code",
    "signal",
    "pid",
    "duration_ms",
)


# --- a daemon whose jobs can be found ---------------------------------------------


def expand(text: str, folder: Path) -> str:
    """Fill ``@DIR@`` (the daemon's folder) and ``@PY@`` (this interpreter) in a registry."""
    return text.replace("@DIR@", str(folder)).replace("@PY@", sys.executable)


def write_jobs(daemon: DaemonProcess, jobs: str, scheduler: str = "") -> None:
    """Replace the daemon's registry (atomically, by rename, as editors do)."""
    text = registry_text(daemon.socket, daemon.database, expand(jobs, daemon.folder), scheduler)
    staging = daemon.folder / ".jobs.toml.new"
    staging.write_text(text)
    staging.replace(daemon.config)


def tag_of(daemon: DaemonProcess) -> str:
    return daemon.env[TAG_VAR]


@contextmanager
def fault_daemon(
    jobs: str,
    scheduler: str = "",
    *,
    start: bool = True,
    env: dict[str, str] | None = None,
    folder: Path | None = None,
) -> Iterator[DaemonProcess]:
    """A real ``cronhub start`` with the fault jobs package beside its registry.

    ``jobs`` may use ``@DIR@`` and ``@PY@``.  On exit the daemon is stopped, any job
    process it left is killed (tests count survivors before that), and the folder
    removed.
    """
    folder = folder or short_tmpdir()
    shutil.copytree(
        FAULT_JOBS,
        folder / "faultjobs",
        ignore=shutil.ignore_patterns("__pycache__"),
        dirs_exist_ok=True,
    )
    tag = uuid.uuid4().hex
    daemon = daemon_in(folder, {TAG_VAR: tag, **(env or {})})
    write_jobs(daemon, jobs, scheduler)
    try:
        if start:
            daemon.start()
        yield daemon
    finally:
        try:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()
        finally:
            kill_job_processes(tag)
            shutil.rmtree(folder, ignore_errors=True)


# --- processes --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobProcess:
    pid: int
    run_id: str | None
    cmdline: str


def _environ(pid: int) -> dict[bytes, bytes] | None:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.partition(b"=") for item in data.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (dead, just not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def job_processes(tag: str | None = None, run_ids: Iterable[str] | None = None) -> list[JobProcess]:
    """Live processes started for a run: by the daemon's tag, or by their run ids."""
    wanted = None if run_ids is None else {r.encode() for r in run_ids}
    me = os.getpid()
    found: list[JobProcess] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        env = _environ(pid)
        if not env or b"CRONHUB_RUN_ID" not in env:
            continue
        run_id = env[b"CRONHUB_RUN_ID"]
        if tag is not None and env.get(TAG_VAR.encode()) != tag.encode():
            continue
        if wanted is not None and run_id not in wanted:
            continue
        if _alive(pid):
            found.append(JobProcess(pid, run_id.decode(errors="replace"), _cmdline(pid)))
    return found


def survivors(
    tag: str | None = None, run_ids: Iterable[str] | None = None, *, grace: float = 3.0
) -> list[JobProcess]:
    """Job processes still alive after ``grace`` seconds of polling (should be none)."""
    run_ids = None if run_ids is None else list(run_ids)
    deadline = time.monotonic() + grace
    while True:
        alive = job_processes(tag, run_ids)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def kill_job_processes(tag: str) -> None:
    for proc in job_processes(tag):
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


def pids_alive(pids: Iterable[int]) -> list[int]:
    return [pid for pid in pids if _alive(pid)]


def read_pids(path: Path) -> list[int]:
    try:
        return [int(word) for word in path.read_text().split()]
    except FileNotFoundError:
        return []


def read_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- history ----------------------------------------------------------------------


def history(daemon: DaemonProcess, where: str = "", *params: object) -> list[dict[str, Any]]:
    """Rows of ``scheduled_job_history`` read straight from the file (read-only)."""
    sql = f"SELECT {', '.join(HISTORY_COLUMNS)} FROM scheduled_job_history {where}"
    return [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in daemon.rows(sql, *params)]


def duplicates(rows: Iterable[dict[str, Any]]) -> int:
    """Rows beyond the first with the same id or the same (job, scheduled_at, attempt)."""
    rows = list(rows)
    by_id = Counter(r["id"] for r in rows)
    by_key = Counter((r["job_name"], r["scheduled_at"], r["attempt"]) for r in rows)
    return sum(n - 1 for n in by_id.values()) + sum(n - 1 for n in by_key.values())


def integrity_check(database: Path) -> str:
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def wait_recorded(
    daemon: DaemonProcess, run_ids: Iterable[str], timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """Poll until every run id has a finished row or ``timeout`` passes.

    Returns the finished rows found by id: the caller counts what is missing as lost.
    """
    wanted = set(run_ids)
    deadline = time.monotonic() + timeout
    while True:
        rows = {r["id"]: r for r in history(daemon) if r["id"] in wanted}
        done = {k: r for k, r in rows.items() if r["status"] in FINAL}
        if len(done) == len(wanted) or time.monotonic() > deadline:
            return done
        time.sleep(0.1)


# --- the daemon's health ----------------------------------------------------------


def crashes(daemon: DaemonProcess, log_from: int = 0, *, stopped: bool = False) -> int:
    """1 if the daemon died (unless it was ``stopped`` on purpose), plus the tracebacks
    it logged after ``log_from`` characters."""
    died = int(not stopped and daemon.proc is not None and daemon.proc.poll() is not None)
    return died + daemon.log_text()[log_from:].count("Traceback (most recent call last)")


def log_size(daemon: DaemonProcess) -> int:
    return len(daemon.log_text())
