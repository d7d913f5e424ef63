"""What every scenario shares: result rows, statistics, temp folders, the daemon, history.

Nothing here knows a scenario.  The daemon is always the real one — the
``cronhub`` console script started as its own process on a ``jobs.toml`` the
scenario wrote — and runs are always counted from its SQLite history table,
read with :mod:`sqlite3` directly (never through cronhub's own code).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import tomli_w

VENV_BIN = Path(sys.executable).parent
CRONHUB = str(VENV_BIN / "cronhub")
PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent
TRUE = "/bin/true"

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


# --- settings ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """How long and how big: the full run, or ``--quick`` for a smoke run."""

    quick: bool = False

    def pick(self, full: Any, quick: Any) -> Any:
        """``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full


# --- result rows -----------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class Row:
    """One line of the results table.

    ``reference`` is a figure measured in the same run (then ``ratio`` is
    ``value / reference`` and the target bounds the ratio) or None for an
    absolute target (then the target bounds ``value`` itself).  ``passed`` is
    None for a figure reported without a target.
    """

    scenario: str
    metric: str
    value: float | None
    unit: str
    reference: float | None = None
    reference_name: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def vs_reference(
    scenario: str,
    metric: str,
    value: float | None,
    reference: float | None,
    reference_name: str,
    *,
    unit: str,
    at_most: float | None = None,
    at_least: float | None = None,
    note: str = "",
) -> Row:
    """A figure against a reference of the same run; the target bounds the ratio."""
    ratio = None
    if value is not None and reference:
        ratio = value / reference
    target, passed = _bound(ratio, f"× {reference_name}", at_most, at_least)
    return Row(
        scenario=scenario,
        metric=metric,
        value=value,
        unit=unit,
        reference=reference,
        reference_name=reference_name,
        ratio=ratio,
        target=target,
        passed=passed,
        note=note,
    )


def _bound(
    measured: float | None, suffix: str, at_most: float | None, at_least: float | None
) -> tuple[str, bool | None]:
    """The target's text and whether ``measured`` meets it (None: no target)."""
    if at_most is not None:
        return f"≤ {at_most:g}{suffix}", measured is not None and measured <= at_most
    if at_least is not None:
        return f"≥ {at_least:g}{suffix}", measured is not None and measured >= at_least
    return "", None


def vs_limit(
    scenario: str,
    metric: str,
    value: float | None,
    *,
    unit: str,
    at_most: float | None = None,
    at_least: float | None = None,
    note: str = "",
) -> Row:
    """A figure against an absolute limit."""
    target, passed = _bound(value, f" {unit}", at_most, at_least)
    return Row(
        scenario=scenario,
        metric=metric,
        value=value,
        unit=unit,
        target=target,
        passed=passed,
        note=note,
    )


class ScenarioFailed(Exception):
    """A scenario could not measure (the daemon did not start, runs went missing...)."""


# --- statistics --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


@dataclass(frozen=True, slots=True)
class Start:
    """One run's start: which job, when it was due and when it was spawned (epoch s)."""

    job: str
    scheduled: float
    started: float

    @property
    def lag_ms(self) -> float:
        return (self.started - self.scheduled) * 1000


@dataclass(kw_only=True, slots=True)
class StartStats:
    """Start lag over a measured window of fires, the same for every system measured."""

    runs: int
    expected: int
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    lag_max_ms: float | None
    burst_last_p50_ms: float | None
    """Per fire instant, the lag of the last run to start; median over instants."""
    bursts: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.runs)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lost"] = self.lost
        return data


def start_stats(starts: Iterable[Start], expected: int) -> StartStats:
    """Lag percentiles and the per-burst time to the last start."""
    starts = list(starts)
    lags = [s.lag_ms for s in starts]
    by_instant: dict[float, float] = {}
    for s in starts:
        key = round(s.scheduled, 3)
        by_instant[key] = max(by_instant.get(key, -math.inf), s.lag_ms)
    return StartStats(
        runs=len(starts),
        expected=expected,
        lag_p50_ms=percentile(lags, 50),
        lag_p99_ms=percentile(lags, 99),
        lag_max_ms=max(lags) if lags else None,
        burst_last_p50_ms=median(list(by_instant.values())),
        bursts=len(by_instant),
    )


# --- fire instants -----------------------------------------------------------------


def first_fire(at_or_after: float, period: int, offset: int = 0) -> int:
    """The first epoch second ``t >= at_or_after`` with ``t % period == offset``."""
    k = math.ceil((at_or_after - offset) / period)
    return k * period + offset


def fires_in(start: float, end: float, period: int, offset: int = 0) -> int:
    """How many fire instants of (period, offset) fall in ``[start, end)``."""
    t, count = first_fire(start, period, offset), 0
    while t < end:
        count += 1
        t += period
    return count


def sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        time.sleep(delay)


# --- temp folders and registries ---------------------------------------------------


@contextlib.contextmanager
def workdir(prefix: str = "chb-") -> Iterator[Path]:
    """A fresh folder under /tmp (short, so the socket path fits), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def scheduler_table(folder: Path, **overrides: Any) -> dict[str, Any]:
    """A ``[scheduler]`` table with the database and socket in ``folder``."""
    table: dict[str, Any] = {
        "timezone": "UTC",
        "max_concurrent": 2000,
        "history_retention_days": 30,
        "shutdown_grace": "5s",
        "database": str(folder / "cronhub.db"),
        "socket": str(folder / "cronhub.sock"),
    }
    table.update(overrides)
    return table


def command_job(schedule: str | int, *, description: str = "", **extra: Any) -> dict[str, Any]:
    """A job running ``/bin/true`` as an argv list (no shell), singleton with a timeout."""
    job: dict[str, Any] = {
        "schedule": schedule,
        "command": [TRUE],
        "timeout": "10s",
        "singleton": True,
    }
    if description:
        job["description"] = description
    job.update(extra)
    return job


def write_registry(folder: Path, jobs: Mapping[str, Mapping[str, Any]], **scheduler: Any) -> Path:
    """Write ``folder/jobs.toml`` and return its path."""
    document = {"scheduler": scheduler_table(folder, **scheduler), "jobs": dict(jobs)}
    path = folder / "jobs.toml"
    path.write_text(tomli_w.dumps(document))
    return path


# --- the daemon -------------------------------------------------------------------


class Daemon:
    """A real ``cronhub start --config jobs.toml`` process.

    Use as a context manager: it is stopped (SIGTERM, then SIGKILL of its
    process group) on the way out, whatever happened inside.
    """

    def __init__(self, config: Path) -> None:
        self.config = config
        self.folder = config.parent
        self.socket = str(self.folder / "cronhub.sock")
        self.database = self.folder / "cronhub.db"
        self.log_path = self.folder / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.launched_at = 0.0
        self.ready_after_s: float | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> Daemon:
        """Launch the daemon and, with ``wait``, return once ``ping`` answers."""
        with open(self.log_path, "ab") as log:
            self.launched_at = time.monotonic()
            self.proc = subprocess.Popen(
                [CRONHUB, "start", "--config", str(self.config)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll ``ping`` until it answers; return seconds since launch."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ScenarioFailed(
                    f"the daemon exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if ping(self.socket):
                self.ready_after_s = time.monotonic() - self.launched_at
                return self.ready_after_s
            if time.monotonic() > deadline:
                raise ScenarioFailed(
                    f"the daemon did not answer within {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.002)

    def call(self, op: str, timeout: float = 10.0, **params: Any) -> Any:
        """One request over the control socket (cronhub's own client)."""
        from cronhub.control import ControlClient

        return ControlClient(self.socket, timeout=timeout).call(op, **params)

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole group; return the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Anything it left in its group (it should have left nothing).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ping(path: str) -> bool:
    """Whether a daemon answers ``ping`` on ``path`` (cronhub's client, else raw NDJSON)."""
    try:
        from cronhub.control import ControlClient
        from cronhub.errors import CronhubError
    except ImportError:  # the control module has not landed: speak the protocol directly
        return _raw_ping(path)
    try:
        ControlClient(path, timeout=1.0).call("ping")
    except (CronhubError, OSError):
        return False
    return True


def _raw_ping(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
            sock.sendall(b'{"op":"ping"}\n')
            return b'"ok"' in sock.recv(65536)
        except OSError:
            return False


# --- the history table --------------------------------------------------------------

HISTORY_TABLE = "scheduled_job_history"


def to_epoch(text: str | None) -> float | None:
    """A stored timestamp (naive UTC text, as SQLAlchemy writes it) as epoch seconds."""
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def to_stored(epoch: float) -> str:
    """Epoch seconds as the store writes them: ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC."""
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@dataclass(frozen=True, slots=True)
class HistoryRun:
    job: str
    trigger: str
    status: str
    scheduled: float
    started: float | None
    completed: float | None
    duration_ms: int | None
    error: str | None = None


def read_history(
    database: Path, *, since: float | None = None, until: float | None = None
) -> list[HistoryRun]:
    """Every history row whose ``scheduled_at`` is in ``[since, until)``, read-only."""
    where, args = [], []
    if since is not None:
        where.append("scheduled_at >= ?")
        args.append(to_stored(since))
    if until is not None:
        where.append("scheduled_at < ?")
        args.append(to_stored(until))
    sql = (
        "SELECT job_name, trigger, status, scheduled_at, started_at, completed_at, duration_ms, "
        "error "
        f"FROM {HISTORY_TABLE}" + (" WHERE " + " AND ".join(where) if where else "")
    )
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute(sql, args).fetchall()
    return [
        HistoryRun(
            job=job,
            trigger=trigger,
            status=status,
            scheduled=to_epoch(scheduled),  # type: ignore[arg-type]
            started=to_epoch(started),
            completed=to_epoch(completed),
            duration_ms=duration,
            error=error,
        )
        for job, trigger, status, scheduled, started, completed, duration, error in rows
    ]


def history_starts(runs: Iterable[HistoryRun]) -> list[Start]:
    """Runs that were spawned (a ``started_at``), as :class:`Start` values."""
    return [
        Start(r.job, r.scheduled, r.started)
        for r in runs
        if r.started is not None and r.trigger == "schedule"
    ]


def wait_history_settled(database: Path, since: float, until: float, timeout: float) -> None:
    """Poll until no run scheduled in the window is still ``running`` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = read_history(database, since=since, until=until)
        if runs and all(r.status != "running" for r in runs):
            return
        time.sleep(0.1)


# --- process measurements -------------------------------------------------------------


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches summed over every thread of ``pid``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def time_command(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> float:
    """Wall seconds from spawn to exit of one command (which must succeed)."""
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise ScenarioFailed(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    return elapsed


def time_interleaved(
    commands: Mapping[str, Sequence[str]], *, rounds: int, warmup: int = 2, cwd: Path | None = None
) -> dict[str, list[float]]:
    """Time several commands in turn, ``rounds`` times each (after ``warmup`` unmeasured).

    Interleaving spreads the machine's noise evenly over the commands compared.
    """
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(warmup + rounds):
        for name, argv in commands.items():
            elapsed = time_command(argv, cwd=cwd)
            if i >= warmup:
                samples[name].append(elapsed)
    return samples


def reference_process(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bench.references ARGS`` from the repository (a fresh process)."""
    done = subprocess.run(
        [PYTHON, "-m", "bench.references", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise ScenarioFailed(f"reference {args[0]} failed:\n{done.stderr[-3000:]}")
    return done


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }
