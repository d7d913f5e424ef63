"""Helpers for tests that drive a real daemon process."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from cronhub.control import ControlClient
from cronhub.errors import ControlError

T = TypeVar("T")

CRONHUB = str(Path(sys.executable).with_name("cronhub"))
FIXTURES = Path(__file__).parent / "fixtures"


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def read_pids(path: Path) -> list[int]:
    """The pids a job wrote to ``path``, one per line or word."""
    return [int(pid) for pid in path.read_text().split()]


def gone(pid: int) -> bool:
    """Neither running nor a zombie: killed and reaped."""
    return not psutil.pid_exists(pid)


def not_running(pid: int) -> bool:
    """Dead: gone, or a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def short_tmpdir() -> Path:
    """A folder with a short path: Unix socket paths must fit in 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="ch-", dir="/tmp"))


@dataclass
class DaemonProcess:
    """A real ``cronhub start`` process on a registry in its own folder."""

    folder: Path
    config: Path
    socket: str
    database: Path
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [CRONHUB, "start", "--config", str(self.config), *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.folder,
            env=self.env,
        )
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode}:\n{self.log_text()}"
                )
            try:
                self.call("ping", timeout=2.0)
            except ControlError:
                return False
            return True

        wait_until(answers, timeout, what="the daemon to answer ping")

    def call(self, op: str, *, timeout: float = 30.0, **params: Any) -> Any:
        return ControlClient(self.socket, timeout=timeout).call(op, **params)

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CRONHUB, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.folder,
        )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop in {timeout}s:\n{self.log_text()}") from None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def write_registry(self, jobs: str, scheduler: str = "") -> None:
        self.config.write_text(registry_text(self.socket, self.database, jobs, scheduler))

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Query the history database directly (read-only)."""
        con = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


def registry_text(socket: str, database: Path, jobs: str, scheduler: str = "") -> str:
    head = f'[scheduler]\nsocket = "{socket}"\ndatabase = "{database}"\n'
    head += textwrap.dedent(scheduler).strip() + "\n\n"
    return head + textwrap.dedent(jobs).strip() + "\n"


def daemon_in(folder: Path, env: dict[str, str] | None = None) -> DaemonProcess:
    """A daemon (not started) for a registry in ``folder``, with a clean environment:
    none of systemd's variables from the test's own environment, plus ``env``."""
    environ = dict(os.environ)
    for name in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID"):
        environ.pop(name, None)
    environ.update(env or {})
    return DaemonProcess(
        folder=folder,
        config=folder / "jobs.toml",
        socket=str(folder / "d.sock"),
        database=folder / "history.db",
        log_path=folder / "daemon.log",
        env=environ,
    )


@contextmanager
def daemon_process(
    jobs: str, scheduler: str = "", *, start: bool = True, env: dict[str, str] | None = None
) -> Iterator[DaemonProcess]:
    """A daemon on the given ``[jobs.*]`` text, stopped (and its folder removed) afterwards."""
    folder = short_tmpdir()
    shutil.copytree(FIXTURES / "jobs", folder / "jobfixtures", dirs_exist_ok=True)
    daemon = daemon_in(folder, env)
    daemon.write_registry(jobs, scheduler)
    try:
        if start:
            daemon.start()
        yield daemon
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)
