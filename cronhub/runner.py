"""Run one job in a supervised subprocess and measure how it ended.

A run is a process tree.  Its main process is spawned off the event loop (by a small
thread pool, so two spawns can be in flight and fork/exec never holds the loop) in
its own session and process group, with stdin on ``/dev/null`` and stdout and stderr
on one pipe.  The loop then watches two file descriptors: the pipe (the last
``output_limit`` bytes are kept) and a pidfd that becomes readable when the main
process exits.  The run ends when the main process exits, not when the pipe closes.

What outlives the main process is ended (SIGTERM, the job's ``kill_grace``, SIGKILL)
before the result is returned: members of the run's session and process group,
their descendants, and the processes that escaped both (``setsid`` plus a double
fork), recognised by ``CRONHUB_RUN_ID`` in their environment.  The daemon should be a
child subreaper (:func:`set_child_subreaper`): escaped processes are then re-parented
to it, so the search by environment is limited to its descendants, they are reaped,
and one carrying the id of a run that is no longer active is ended too.  A process
that escapes *and* clears its environment is out of reach (only a cgroup would
hold it).  Trees are found in ``/proc`` snapshots taken on a worker thread and
shared by the runs that end together.

Reaping is per pid, never ``waitpid(-1)``: the main process is reaped with ``wait4``
(for its status and rusage) only after its tree is gone, so its pid, which is also
the session and group id, cannot be reused while the tree is being signalled.

Callable jobs are forked from a pre-started interpreter, the launcher
(``launcher.py``), when the daemon is a subreaper: a fresh interpreter's start-up
is most of a small callable's run.  The launcher double-forks, so the run is
re-parented to the daemon, which adopts it (pidfd, ``wait4``) and from then on
treats it exactly as a process it spawned.  Whenever the launcher cannot start a
run as a fresh interpreter would, or is broken, the run is spawned fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from cronhub import launcher as _wire
from cronhub.model import JobSpec, RunRequest, RunResult, RunStatus

__all__ = [
    "RunHandle",
    "Runner",
    "is_child_subreaper",
    "kill_stale",
    "set_child_subreaper",
]

log = logging.getLogger("cronhub.runner")

ERROR_LINE_LIMIT = 500
"""Longest ``RunResult.error`` taken from a job's output."""

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_READ_CHUNK = 65_536
_DRAIN_READS = 64
_RSS_SAMPLE_FIRST_S = 0.5
_RSS_SAMPLE_MAX_S = 30.0
_KILL_WAIT_S = 10.0
"""How long a tree may take to die after SIGKILL before we give up on it."""
_STALE_MATCH_S = 1.0
"""Tolerance on a create time read back from the database (``btime`` is whole seconds)."""
_RUN_ID_VAR = b"CRONHUB_RUN_ID="
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_CHILDMAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "childmain.py")
_INHERITED_NOT = (
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
)
"""The daemon's own systemd variables: a job must not notify or inherit sockets as us."""


# --- the subreaper -------------------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: ctypes.c_ulong | ctypes._CArgObject) -> None:
    """``prctl(option, arg, 0, 0, 0)``; every argument is passed full width (it is variadic)."""
    zero = ctypes.c_ulong(0)
    if _libc().prctl(ctypes.c_int(option), arg, zero, zero, zero) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def set_child_subreaper(enabled: bool = True) -> bool:
    """Make this process the reaper of its orphaned descendants; return success.

    Linux only (``prctl(PR_SET_CHILD_SUBREAPER)``).  Orphans re-parented to the
    daemon are killed with their run and reaped by the runner.
    """
    try:
        _prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(int(enabled)))
    except (OSError, AttributeError) as exc:
        log.debug("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", exc)
        return False
    _SUBREAPER[os.getpid()] = enabled
    return True


def is_child_subreaper() -> bool:
    """Whether this process is a child subreaper (asked once, then as set here)."""
    pid = os.getpid()  # the flag is not inherited: a forked child asks again
    known = _SUBREAPER.get(pid)
    if known is not None:
        return known
    value = ctypes.c_int(0)
    try:
        _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value))
    except (OSError, AttributeError):
        return False
    _SUBREAPER[pid] = bool(value.value)
    return bool(value.value)


_SUBREAPER: dict[int, bool] = {}
"""The subreaper flag by process id: every run's end asks, and prctl via ctypes costs
a GIL hand-off."""


# --- /proc ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Proc:
    """One line of ``/proc/PID/stat``: enough to place a process in a tree."""

    pid: int
    ppid: int
    pgrp: int
    sid: int
    start: int
    """Start time in clock ticks since boot: with the pid, the process's identity."""
    zombie: bool


def _read_proc(pid: int) -> _Proc | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name is in parentheses and may itself contain ") ".
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return _Proc(
        pid=pid,
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        sid=int(fields[3]),
        start=int(fields[19]),
        zombie=fields[0] in (b"Z", b"X"),
    )


def _environ_run_id(pid: int) -> str | None:
    """The ``CRONHUB_RUN_ID`` a process was started with; ``""`` if none, None if unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            data = file.read()
    except OSError:
        return None
    if data.startswith(_RUN_ID_VAR):
        start = len(_RUN_ID_VAR)
    elif (found := data.find(b"\0" + _RUN_ID_VAR)) >= 0:
        start = found + 1 + len(_RUN_ID_VAR)
    else:
        return ""
    end = data.find(b"\0", start)
    return data[start : end if end >= 0 else len(data)].decode("ascii", "replace")


@dataclass(slots=True)
class _Snapshot:
    """Every process on the host at one moment, indexed for finding a run's tree."""

    procs: dict[int, _Proc]
    children: dict[int, list[int]]
    by_group: dict[int, set[int]]
    """Process group id and session id to their members."""
    run_of: dict[int, str | None]
    """``CRONHUB_RUN_ID`` of processes that no live run's session or group claims."""
    active_runs: frozenset[str]
    leftovers: bool
    """Whether unclaimed descendants of a finished run may be taken (subreaper mode)."""

    def members(self, main_pid: int, run_id: str) -> list[_Proc]:
        """The processes of a run, its main process excepted."""
        found = set(self.by_group.get(main_pid, ()))
        found.update(self.children.get(main_pid, ()))
        for pid, owner in self.run_of.items():
            if owner == run_id or (self.leftovers and owner and owner not in self.active_runs):
                found.add(pid)
        stack = list(found)
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        found.discard(main_pid)
        found.discard(os.getpid())
        return [self.procs[pid] for pid in found if pid in self.procs]


def _take_snapshot(
    mains: frozenset[int], active_runs: frozenset[str], *, subreaper: bool | None = None
) -> _Snapshot:
    """Read ``/proc`` (blocking: call it off the loop).

    ``mains`` are the unreaped main processes of runs (their sessions and groups
    are theirs); ``subreaper`` (default: whether this process is one) limits the
    search by environment to this process's descendants.
    """
    self_pid = os.getpid()
    own_sid = os.getsid(0)
    procs: dict[int, _Proc] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (proc := _read_proc(int(name))) is not None:
            procs[proc.pid] = proc
    children: dict[int, list[int]] = {}
    by_group: dict[int, set[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
        by_group.setdefault(proc.pgrp, set()).add(proc.pid)
        by_group.setdefault(proc.sid, set()).add(proc.pid)
    if subreaper is None:
        subreaper = is_child_subreaper()
    pool: Iterable[int] = _descendants(children, self_pid) if subreaper else procs
    run_of: dict[int, str | None] = {}
    for pid in pool:
        proc = procs[pid]
        claimed = proc.sid in mains or proc.pgrp in mains or pid in mains
        if pid == self_pid or proc.zombie or claimed or proc.sid == own_sid:
            continue
        run_of[pid] = _environ_run_id(pid)
    return _Snapshot(procs, children, by_group, run_of, active_runs, leftovers=subreaper)


def _descendants(children: Mapping[int, list[int]], root: int) -> set[int]:
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _signal_proc(proc: _Proc, sig: int) -> bool:
    """Signal ``proc`` if it is still the same process; return whether it was."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfd (old kernel): check, then signal by pid
        current = _read_proc(proc.pid)
        if current is None or current.start != proc.start:
            return False
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True
    try:
        current = _read_proc(proc.pid)  # the pidfd pins the pid: this is the process now
        if current is None or current.start != proc.start:
            return False
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
    return True


# --- the book of spawned processes ------------------------------------------------------


class _ProcessTable:
    """What this process has spawned and not yet reaped, shared by every Runner.

    Reaping is a per-process concern, so this is process-wide.  ``lock`` orders
    the registration of a new child against the reaping of unknown zombies: a
    just-forked main is never mistaken for an orphan.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spawning = 0
        self.mains: dict[int, str] = {}
        self.active_runs: set[str] = set()

    def frozen(self) -> tuple[frozenset[int], frozenset[str]]:
        with self.lock:
            return frozenset(self.mains), frozenset(self.active_runs)

    def reap_strays(self, pids: Iterable[int]) -> int:
        """Reap zombie children of ours that no run owns; return how many."""
        reaped = 0
        with self.lock:
            if self.spawning:
                return 0  # a zombie may be a main whose spawn is not registered yet
            for pid in pids:
                if pid not in self.mains and _reap(pid):
                    reaped += 1
        return reaped


def _reap(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


_TABLE = _ProcessTable()


def _may_have_leftovers() -> bool:
    """Whether a run's process may have outlived its main process (subreaper mode).

    A subreaper adopts every orphan below it, and the kernel (3.19 and later)
    gives orphans to the first live thread of the adopting process, its main
    thread; runs' mains, forked by the spawn threads, are on those threads'
    lists.  So if every child on the main thread's list is an unreaped main or
    in our own session (a launched run before its ``setsid()``), no run left
    anything behind.  Reading that list costs microseconds; a scan of ``/proc``
    on a busy host, milliseconds.  Whenever the list or a child's state cannot
    be read, the answer is yes.
    """
    own_sid = os.getsid(0)
    # Held while reading: no reaper can take a child off the list meanwhile (the
    # kernel may skip an entry when an earlier one goes during a read).
    with _TABLE.lock:
        try:
            children = _CHILDREN.read()
        except OSError:  # a kernel without CONFIG_PROC_CHILDREN
            return True
        unknown = [pid for pid in children if pid not in _TABLE.mains]
    for pid in unknown:
        proc = _read_proc(pid)
        if proc is None:
            if os.path.exists(f"/proc/{pid}"):
                return True  # there, but unreadable (out of descriptors?)
            continue  # gone since
        if proc.sid != own_sid:
            return True
    return False


class _ChildrenList:
    """``/proc/self/task/PID/children`` of the main thread, kept open and re-read."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._pid = 0

    def read(self) -> list[int]:
        """The pids listed now (raises OSError if the list cannot be read)."""
        pid = os.getpid()
        if self._fd is None or self._pid != pid:  # first use, or in a forked child
            self._fd = os.open(f"/proc/self/task/{pid}/children", os.O_RDONLY | os.O_CLOEXEC)
            self._pid = pid
        # A seq_file: read from 0 each time, to the end (one read returns a page).
        chunks = []
        offset = 0
        while chunk := os.pread(self._fd, 65_536, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return [int(field) for field in b"".join(chunks).split()]


_CHILDREN = _ChildrenList()


def _stray_zombies(snapshot: _Snapshot) -> list[int]:
    self_pid, own_sid = os.getpid(), os.getsid(0)
    return [
        p.pid
        for p in snapshot.procs.values()
        if p.zombie and p.ppid == self_pid and p.sid != own_sid
    ]


class _Scanner:
    """Takes ``/proc`` snapshots on a worker thread, one at a time, for all waiters.

    A waiter always gets a snapshot that began after it asked.  Scans are spaced
    (at least ``min_interval``, or three times the last scan's duration), so a burst
    of run ends costs a few scans, not one each.
    """

    def __init__(self, min_interval: float = 0.02) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cronhub-scan")
        self._min_interval = min_interval
        self._pending: asyncio.Future[_Snapshot] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._next_at = 0.0

    async def snapshot(self) -> _Snapshot:
        loop = asyncio.get_running_loop()
        if self._pending is None:
            self._pending = loop.create_future()
        pending = self._pending
        if self._worker is None:
            self._worker = loop.create_task(self._work(), name="cronhub-scan")
        return await asyncio.shield(pending)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending is not None:
                delay = self._next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                waiters, self._pending = self._pending, None
                started = time.monotonic()
                try:
                    snapshot = await loop.run_in_executor(
                        self._executor, _take_snapshot, *_TABLE.frozen()
                    )
                except OSError as exc:
                    waiters.set_exception(exc)
                else:
                    waiters.set_result(snapshot)
                elapsed = time.monotonic() - started
                self._next_at = time.monotonic() + max(self._min_interval, 3 * elapsed)
        finally:
            self._worker = None

    def close(self) -> None:
        self._executor.shutdown(wait=False)


# --- output ----------------------------------------------------------------------------


class _OutputTail:
    """The last ``limit`` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._buffer = bytearray()
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        excess = len(self._buffer) - self._limit
        if excess > 0:
            del self._buffer[:excess]
            self.truncated = True

    def text(self) -> str:
        data = bytes(self._buffer)
        if self.truncated:  # do not start on half a UTF-8 character
            skip = 0
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
            data = data[skip:]
        return data.decode("utf-8", errors="replace")


def _last_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        if stripped := line.strip():
            return stripped[:ERROR_LINE_LIMIT]
    return None


# --- spawning --------------------------------------------------------------------------


@dataclass(slots=True)
class _Spawned:
    popen: subprocess.Popen[bytes] | None
    """None for a run started by the launcher (a grandchild we adopted)."""
    pid: int
    create_time: float | None
    output_fd: int
    pidfd: int | None
    started_at: datetime
    started_mono: float
    inherited_rss_kb: int
    """The daemon's peak RSS once the child had exec'd: Linux folds the memory a
    process had before ``execve`` into its ``ru_maxrss``, so figures up to this
    one say nothing about the job.  0 for a launched run: it never had the
    daemon's memory (its peak starts at the launcher's, shared pages counted)."""

    @property
    def launched(self) -> bool:
        return self.popen is None

    def set_returncode(self, code: int) -> None:
        """Tell the Popen (if any) that its process was reaped behind its back."""
        if self.popen is not None:
            self.popen.returncode = code


class _SpawnError(Exception):
    """Why a run could not be started (never leaves this module)."""


def _inherited_env() -> dict[str, str]:
    """The daemon's environment as its jobs inherit it."""
    env = dict(os.environ)
    for name in _INHERITED_NOT:
        env.pop(name, None)
    return env


def _child_env(spec: JobSpec, request: RunRequest, inherited: Mapping[str, str]) -> dict[str, str]:
    env = dict(inherited)
    env.update(spec.env)
    env.update(
        CRONHUB_JOB=request.job_name,
        CRONHUB_RUN_ID=request.run_id,
        CRONHUB_SCHEDULED_AT=request.scheduled_at.isoformat(timespec="microseconds"),
        CRONHUB_ATTEMPT=str(request.attempt),
        CRONHUB_TRIGGER=str(request.trigger.value),
    )
    return env


def _argv(spec: JobSpec, python: str, base_dir: str | None) -> list[str]:
    if isinstance(spec.command, str):
        return ["/bin/sh", "-c", spec.command]
    if spec.command is not None:
        if not spec.command:
            raise _SpawnError("the command is an empty list")
        return list(spec.command)
    if spec.callable is None:
        raise _SpawnError("the job has neither a command nor a callable")
    argv = [python, _CHILDMAIN, spec.callable, "--path", base_dir or spec.cwd]
    if spec.args or spec.kwargs:
        try:
            call = json.dumps({"args": list(spec.args), "kwargs": dict(spec.kwargs)})
        except (TypeError, ValueError) as exc:
            raise _SpawnError(f"the callable's args are not JSON: {exc}") from exc
        argv += ["--args", call]
    return argv


def _spawn(argv: list[str], spec: JobSpec, request: RunRequest, env: dict[str, str]) -> _Spawned:
    """Start a run's main process (blocking: runs on a spawn thread)."""
    read_fd, write_fd = os.pipe()
    try:
        popen, started_at, started_mono = _popen(argv, spec.cwd, env, request.run_id, write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    os.set_blocking(read_fd, False)
    try:
        pidfd: int | None = os.pidfd_open(popen.pid)
    except OSError:  # kernel older than 5.3
        pidfd = None
    inherited_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _Spawned(
        popen,
        popen.pid,
        _create_time(popen.pid),
        read_fd,
        pidfd,
        started_at,
        started_mono,
        inherited_rss_kb,
    )


def _popen(
    argv: list[str], cwd: str, env: dict[str, str], run_id: str, output_fd: int
) -> tuple[subprocess.Popen[bytes], datetime, float]:
    """Fork and exec; the new pid is registered before a reaper could take it for a stray."""
    popen: subprocess.Popen[bytes] | None = None
    with _TABLE.lock:
        _TABLE.spawning += 1
    try:
        started_at, started_mono = datetime.now(UTC), time.monotonic()
        popen = subprocess.Popen(
            argv,
            stdin=_devnull(),  # not DEVNULL: Popen would open and close it every time
            stdout=output_fd,
            stderr=output_fd,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        return popen, started_at, started_mono
    finally:
        with _TABLE.lock:
            _TABLE.spawning -= 1
            if popen is not None:
                _TABLE.mains[popen.pid] = run_id


@functools.cache
def _devnull() -> int:
    """A read-only ``/dev/null`` kept open for runs' stdin (close-on-exec here)."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def _create_time(pid: int) -> float | None:
    """psutil's ``create_time()``, at a fifth of the cost (boot time read once)."""
    proc = _read_proc(pid)
    return None if proc is None else proc.start / _CLOCK_TICKS + _boot_time()


@functools.cache
def _boot_time() -> float:
    return psutil.boot_time()


def _spawn_error(exc: BaseException, argv: list[str], cwd: str) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        if exc.filename == cwd and exc.filename != argv[0]:
            return f"cannot start: working directory {cwd!r}: {exc.strerror}"
        name = exc.filename or argv[0]
        if exc.errno == errno.ENOENT and "/" not in name:
            return f"cannot start {name!r}: command not found"
        return f"cannot start {name!r}: {exc.strerror}"
    return f"cannot start: {exc}"


def _format_ms(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    return f"{ms / 1000:g}s"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- the launcher --------------------------------------------------------------------


_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")
_LAUNCHER_READY_S = 10.0
"""How long the launcher may take to start (a fresh interpreter, and ``childmain``)."""
_LAUNCHER_REPLY_S = 5.0
"""How long one request may take (two forks); longer means the launcher is broken."""
_LAUNCHER_RETRY_S = (1.0, 60.0)
"""After a failure, callables start fresh for this long, doubling up to the second."""
_STARTUP_NAMES = frozenset({"HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "GLIBC_TUNABLES"})
_STARTUP_PREFIXES = ("PYTHON", "LD_", "MALLOC_")


def _startup_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables read while an interpreter starts, which a forked run cannot honour.

    ``PYTHON*`` (``sys.path``, hash seed, flags), ``HOME`` (the user site
    directory), the locale (stdio and file-system encodings), ``TZ`` (read when
    ``time`` is imported) and the dynamic loader's and allocator's settings.
    """
    return {
        name: value
        for name, value in env.items()
        if name in _STARTUP_NAMES or name.startswith(_STARTUP_PREFIXES)
    }


class _Launcher:
    """The daemon's end of the pre-forked launcher (``launcher.py``); thread-safe.

    The launcher is started on first use and kept; requests are one at a time.
    It is used only when it can start a run exactly as a fresh interpreter would:
    the run's start-up variables are the launcher's, and nothing it watches
    (interpreter, ``sys.path`` folders, cronhub's own files) has changed since
    it started -- else it is restarted.  When it fails it is stopped, callables
    start fresh for a while, and then it is started again.
    """

    def __init__(self, python: str) -> None:
        self._python = python
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._stdin: int | None = None
        self._startup: dict[str, str] = {}
        self._watch: dict[str, int] = {}
        self._closed = False
        self._disabled = False
        self._failures = 0
        self._retry_at = 0.0

    def launch(
        self, request: bytes, env: Mapping[str, str], cwd: str, output_fd: int
    ) -> tuple[int, int | None] | None:
        """Start a run; its pid and start (clock ticks), or None to start it fresh.

        Blocking (a spawn thread calls it).  The run's own failure to start (its
        working directory) is raised as the ``OSError`` a fresh spawn would raise.
        """
        if len(request) > _wire.MAX_MESSAGE:
            return None
        with self._lock:
            if not self._ready() or _startup_env(env) != self._startup:
                return None
            assert self._sock is not None and self._stdin is not None
            try:
                socket.send_fds(self._sock, [request], [self._stdin, output_fd])
            except OSError as exc:  # nothing was delivered
                if exc.errno != errno.EMSGSIZE:
                    self._fail(f"cannot reach it: {exc}")
                return None
            reply = self._receive()
        if reply is None:
            return None
        pid, start = reply.get("pid"), reply.get("start")
        if isinstance(pid, int):
            return pid, start if isinstance(start, int) else None
        if reply.get("cwd"):
            code = reply.get("errno")
            code = code if isinstance(code, int) else errno.ENOENT
            log.debug("callable launcher: cannot enter %r: %s", cwd, os.strerror(code))
            raise OSError(code, os.strerror(code), cwd)
        log.warning("callable launcher could not start a run (%s): starting it fresh", reply)
        return None

    def _receive(self) -> dict[str, object] | None:
        assert self._sock is not None
        try:
            data = self._sock.recv(65_536)
        except OSError as exc:  # the timeout included
            data, why = b"", f"no answer: {exc or 'timed out'}"
        else:
            why = "it exited"
        try:
            reply = json.loads(data) if data else None
        except ValueError:
            reply, why = None, f"garbled answer {data[:80]!r}"
        if not isinstance(reply, dict):
            # Whether the run started is unknown: if it did, it carries the run's id,
            # and the fresh run that replaces it ends it with its own tree.
            self._fail(f"{why}, mid-request")
            return None
        return reply

    def close(self) -> None:
        """Stop the launcher (runs it started are not touched); no restart after this."""
        self._closed = True
        sock = self._sock
        if sock is not None:  # wakes a spawn thread waiting for an answer
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._stop(kill=False)
            if self._stdin is not None:
                os.close(self._stdin)
                self._stdin = None

    # --- life cycle (self._lock held) ------------------------------------------------------

    def _ready(self) -> bool:
        """Whether the launcher is up and current, (re)starting it if due."""
        if self._closed or self._disabled:
            return False
        if self._proc is not None:
            if self._proc.poll() is None and not self._stale():
                return True
            if self._proc.returncode is not None:
                self._fail(f"it exited with status {self._proc.returncode}")
            else:
                self._stop(kill=False)
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._start()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._fail(f"cannot start it: {exc}")
            return False
        return self._proc is not None

    def _start(self) -> None:
        if self._stdin is None:
            self._stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        env = {name: value for name, value in os.environ.items() if not name.startswith("CRONHUB_")}
        for name in _INHERITED_NOT:
            env.pop(name, None)
        env[_wire.RUN_ID_VAR] = "-" * _wire.RUN_ID_SLOT  # the run's id is written here
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [self._python, _LAUNCHER, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        ours.settimeout(_LAUNCHER_READY_S)
        ready = json.loads(ours.recv(65_536) or b"null")
        if not isinstance(ready, dict) or ready.get("ready") != self._proc.pid:
            raise OSError(f"unexpected greeting {ready!r}")
        ours.settimeout(_LAUNCHER_REPLY_S)
        if not ready.get("stamp"):
            # Runs could not be found by their id in /proc: not identical, not used.
            log.warning("callable launcher cannot label its runs: callables start fresh")
            self._disabled = True
            self._stop(kill=False)
            return
        self._watch = dict(ready.get("watch") or {})
        self._startup = _startup_env(env)
        log.debug("callable launcher started as pid %d", self._proc.pid)

    def _stale(self) -> bool:
        """Whether something the launcher loaded has changed since it started."""
        for path, mtime_ns in self._watch.items():
            try:
                changed = os.stat(path).st_mtime_ns != mtime_ns
            except OSError:
                changed = True
            if changed:
                log.info("callable launcher restarting: %s changed", path)
                return True
        return False

    def _fail(self, why: str) -> None:
        if self._closed:
            self._stop(kill=True)
            return
        self._failures += 1
        delay = min(_LAUNCHER_RETRY_S[0] * 2 ** (self._failures - 1), _LAUNCHER_RETRY_S[1])
        self._retry_at = time.monotonic() + delay
        log.warning(
            "callable launcher failed (%s): callables start fresh; retrying in %gs", why, delay
        )
        self._stop(kill=True)

    def _stop(self, *, kill: bool) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # the launcher exits when it reads the end of its socket
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if kill:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        try:
            proc.wait(timeout=_LAUNCHER_REPLY_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def succeeded(self) -> None:
        """A run was adopted: the next failure backs off from the start."""
        self._failures = 0

    def broken(self, why: str) -> None:
        """The launcher misbehaved in a way only its caller could see: stop it."""
        with self._lock:
            self._fail(why)


def _launch_request(spec: JobSpec, request: RunRequest, env: dict[str, str], path: str) -> bytes:
    assert spec.callable is not None
    return json.dumps(
        {
            "target": spec.callable,
            "path": path,
            "args": list(spec.args),
            "kwargs": dict(spec.kwargs),
            "env": env,
            "cwd": spec.cwd,
            "run_id": request.run_id,
        }
    ).encode()


def _launch(
    launcher: _Launcher, spec: JobSpec, request: RunRequest, env: dict[str, str], path: str
) -> _Spawned | None:
    """Start a callable run through the launcher; None if it should be started fresh.

    The run is a grandchild re-parented to this process (a subreaper); it is
    registered as a main before any reaper may look at it, then adopted.
    """
    if len(request.run_id.encode()) > _wire.RUN_ID_SLOT:
        return None
    message = _launch_request(spec, request, env, path)
    read_fd, write_fd = os.pipe()
    launched: tuple[int, int | None] | None = None
    with _TABLE.lock:
        _TABLE.spawning += 1
    try:
        started_at, started_mono = datetime.now(UTC), time.monotonic()
        launched = launcher.launch(message, env, spec.cwd, write_fd)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
        with _TABLE.lock:
            _TABLE.spawning -= 1
            if launched is not None:
                _TABLE.mains[launched[0]] = request.run_id
    if launched is None:
        os.close(read_fd)
        return None
    pid, start = launched
    try:
        pidfd: int | None = os.pidfd_open(pid)  # works on a zombie too
    except OSError:  # kernel older than 5.3 (or no such process: caught below)
        pidfd = None
    # Our child by now (the launcher reaped the intermediate before answering),
    # and only we reap our children: the pid cannot have been reused.
    proc = _read_proc(pid)
    if proc is None or proc.ppid != os.getpid() or start not in (None, proc.start):
        with _TABLE.lock:
            _TABLE.mains.pop(pid, None)
        if pidfd is not None:
            os.close(pidfd)
        os.close(read_fd)
        launcher.broken(f"it answered with pid {pid}, which is not a run of ours")
        return None
    os.set_blocking(read_fd, False)
    launcher.succeeded()
    return _Spawned(
        None,
        pid,
        proc.start / _CLOCK_TICKS + _boot_time(),
        read_fd,
        pidfd,
        started_at,
        started_mono,
        inherited_rss_kb=0,
    )


# --- the runner ------------------------------------------------------------------------


class Runner:
    """Starts runs; one per daemon.

    ``python`` runs callable jobs; ``spawn_workers`` threads fork and exec (two can
    be in flight).  ``base_dir`` is put first on a callable's ``sys.path`` (the
    registry's folder); by default the job's ``cwd`` is.  With ``launcher``,
    callables are forked from a pre-started interpreter (``launcher.py``) when
    this process is a child subreaper, and started fresh otherwise.  Runs inherit
    this process's environment as it was when the runner was made.
    """

    def __init__(
        self,
        *,
        python: str = sys.executable,
        spawn_workers: int = 2,
        base_dir: str | None = None,
        launcher: bool = True,
    ) -> None:
        self._python = python
        self._base_dir = base_dir
        self._executor = ThreadPoolExecutor(
            max_workers=spawn_workers, thread_name_prefix="cronhub-spawn"
        )
        self._scanner = _Scanner()
        self._launcher = _Launcher(python) if launcher else None
        self._inherited_env = _inherited_env()

    async def start(self, spec: JobSpec, request: RunRequest) -> RunHandle:
        """Spawn a run; return once its process exists (or the spawn failed).

        A spawn failure is not raised: the handle is already done and its result
        is ``failed`` with the reason.
        """
        loop = asyncio.get_running_loop()
        try:
            argv = _argv(spec, self._python, self._base_dir)
        except _SpawnError as exc:
            return RunHandle._failed(spec, request, str(exc))
        with _TABLE.lock:
            _TABLE.active_runs.add(request.run_id)
        if spec.callable is not None and self._launcher is not None:
            future = loop.run_in_executor(self._executor, self._start_callable, argv, spec, request)
        else:
            env = _child_env(spec, request, self._inherited_env)
            future = loop.run_in_executor(self._executor, _spawn, argv, spec, request, env)
        try:
            spawned = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_abandon)
            raise
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            with _TABLE.lock:
                _TABLE.active_runs.discard(request.run_id)
            error = _spawn_error(exc, argv, spec.cwd)
            log.debug("run %s of %s: %s", request.run_id, spec.name, error)
            return RunHandle._failed(spec, request, error)
        log.debug(
            "run %s of %s started as pid %d%s",
            request.run_id,
            spec.name,
            spawned.pid,
            " by the launcher" if spawned.launched else "",
        )
        return RunHandle(spec, request, spawned, self._scanner)

    def _start_callable(self, argv: list[str], spec: JobSpec, request: RunRequest) -> _Spawned:
        """Through the launcher if it can, else fresh (blocking: runs on a spawn thread).

        Only a subreaper can adopt a launched run: without one the run would be
        re-parented to init, which may reap it before its pid is watched.
        """
        assert self._launcher is not None
        env = _child_env(spec, request, self._inherited_env)
        if is_child_subreaper():
            path = self._base_dir or spec.cwd
            spawned = _launch(self._launcher, spec, request, env, path)
            if spawned is not None:
                return spawned
        return _spawn(argv, spec, request, env)

    @staticmethod
    def reap_orphans() -> int:
        """Reap zombie children that belong to no tracked run; return how many.

        Only children in another session than the daemon's are considered: those
        are what runs leave behind.  Call it now and then; runs also reap what
        they find when they end.
        """
        self_pid, own_sid = os.getpid(), os.getsid(0)
        zombies = []
        for child in psutil.Process(self_pid).children():
            proc = _read_proc(child.pid)
            if proc and proc.zombie and proc.ppid == self_pid and proc.sid != own_sid:
                zombies.append(proc.pid)
        return _TABLE.reap_strays(zombies)

    @staticmethod
    def kill_stale(pid: int, create_time: float, *, run_id: str | None = None) -> bool:
        """See :func:`kill_stale`."""
        return kill_stale(pid, create_time, run_id=run_id)

    def close(self) -> None:
        """Stop the worker threads and the launcher (running runs are not touched)."""
        self._executor.shutdown(wait=False)
        self._scanner.close()
        if self._launcher is not None:
            self._launcher.close()


def _abandon(future: asyncio.Future[_Spawned]) -> None:
    """A spawn finished after its caller gave up: end that process at once."""
    if future.cancelled() or future.exception() is not None:
        return
    spawned = future.result()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(spawned.pid, signal.SIGKILL)
    os.close(spawned.output_fd)
    if spawned.pidfd is not None:
        os.close(spawned.pidfd)

    def reap() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spawned.pid, 0)
        spawned.set_returncode(-signal.SIGKILL)
        with _TABLE.lock:
            run_id = _TABLE.mains.pop(spawned.pid, None)
            _TABLE.active_runs.discard(run_id or "")

    threading.Thread(target=reap, name="cronhub-abandon", daemon=True).start()


async def _until(when: float, *futures: asyncio.Future[Any]) -> None:
    """Return at monotonic time ``when``, or as soon as one of ``futures`` is done.

    ``asyncio.wait`` with a timeout, at a third of its cost: runs are watched
    with it, so a burst pays it hundreds of times a second.
    """
    if any(future.done() for future in futures):
        return
    loop = asyncio.get_running_loop()
    waker: asyncio.Future[None] = loop.create_future()
    wake = functools.partial(_wake, waker)
    timer = loop.call_at(when, wake, None)  # loop.time() is time.monotonic()
    for future in futures:
        future.add_done_callback(wake)
    try:
        await waker
    finally:
        timer.cancel()
        for future in futures:
            future.remove_done_callback(wake)


def _wake(waker: asyncio.Future[None], _: object) -> None:
    if not waker.done():
        waker.set_result(None)


@dataclass(slots=True)
class _Stop:
    """Why a run is being ended before its main process exited by itself."""

    status: RunStatus
    grace_s: float


@dataclass(slots=True)
class _Ending:
    signal_sent: int | None = None
    signalled: set[tuple[int, int, int]] = field(default_factory=set)
    """(pid, start, signal) already sent: a process gets each signal once."""


class RunHandle:
    """One started run: its pid, and its result once it has ended."""

    pid: int | None
    pid_create_time: float | None

    def __init__(
        self, spec: JobSpec, request: RunRequest, spawned: _Spawned, scanner: _Scanner
    ) -> None:
        loop = asyncio.get_running_loop()
        self.pid = spawned.pid
        self.pid_create_time = spawned.create_time
        self._spec = spec
        self._request = request
        self._spawned = spawned
        self._scanner = scanner
        self._loop = loop
        self._tail = _OutputTail(spec.output_limit)
        self._output_fd: int | None = spawned.output_fd
        self._exited: asyncio.Future[float] = loop.create_future()
        self._stop: asyncio.Future[_Stop] = loop.create_future()
        self._result: RunResult | None = None
        self._sampled_rss_kb: int | None = None
        loop.add_reader(spawned.output_fd, self._on_output)
        self._watch_exit()
        self._task: asyncio.Task[RunResult] | None = loop.create_task(
            self._supervise(), name=f"run {request.job_name} {request.run_id}"
        )

    @classmethod
    def _failed(cls, spec: JobSpec, request: RunRequest, error: str) -> RunHandle:
        handle = cls.__new__(cls)
        handle.pid = None
        handle.pid_create_time = None
        handle._task = None
        handle._result = RunResult.never_ran(request, RunStatus.FAILED, error, datetime.now(UTC))
        return handle

    @property
    def done(self) -> bool:
        """Whether the run has ended and its result is ready."""
        return self._result is not None

    async def wait(self) -> RunResult:
        """Wait for the run to end (tree gone, main process reaped); return its result."""
        if self._task is not None:
            return await asyncio.shield(self._task)
        assert self._result is not None
        return self._result

    async def interrupt(self, grace_s: float) -> None:
        """End the run now: SIGTERM to its tree, SIGKILL after ``grace_s``.

        The result is ``interrupted`` unless the run had already ended by itself.
        Returns once the run has ended.
        """
        if self._task is None:
            return
        if not self._stop.done():
            self._stop.set_result(_Stop(RunStatus.INTERRUPTED, grace_s))
        await asyncio.shield(self._task)

    # --- watching ---------------------------------------------------------------------

    def _watch_exit(self) -> None:
        pidfd = self._spawned.pidfd
        if pidfd is not None:
            self._loop.add_reader(pidfd, self._on_exit)
            return
        # No pidfd: a default-executor thread waits without reaping.
        pid = self._spawned.pid
        waiting = self._loop.run_in_executor(
            None, os.waitid, os.P_PID, pid, os.WEXITED | os.WNOWAIT
        )
        waiting.add_done_callback(lambda _: self._on_exit())

    def _on_exit(self) -> None:
        if self._spawned.pidfd is not None:
            self._loop.remove_reader(self._spawned.pidfd)
        if not self._exited.done():
            self._exited.set_result(time.monotonic())

    def _on_output(self) -> None:
        assert self._output_fd is not None
        try:
            chunk = os.read(self._output_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._tail.feed(chunk)
        else:
            self._close_output()

    def _close_output(self, *, drain: bool = False) -> None:
        fd, self._output_fd = self._output_fd, None
        if fd is None:
            return
        self._loop.remove_reader(fd)
        for _ in range(_DRAIN_READS if drain else 0):
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except OSError:  # EAGAIN: nothing more for now; the rest is not waited for
                break
            if not chunk:
                break
            self._tail.feed(chunk)
        os.close(fd)

    # --- supervising ------------------------------------------------------------------

    async def _supervise(self) -> RunResult:
        spec = self._spec
        reaped = False
        try:
            stop = await self._wait_main()
            grace = stop.grace_s if stop else spec.kill_grace_ms / 1000
            ending = await self._end_tree(grace)
            status, rusage = self._reap_main()
            reaped = True
            self._close_output(drain=True)
            result = self._build_result(stop, ending, status, rusage)
        finally:
            if not reaped:
                self._abort()
            self._close_fds()
            with _TABLE.lock:
                _TABLE.active_runs.discard(self._request.run_id)
        self._result = result
        log.debug(
            "run %s of %s ended: %s in %d ms",
            result.run_id,
            result.job_name,
            result.status,
            result.duration_ms,
        )
        return result

    async def _wait_main(self) -> _Stop | None:
        """Wait for the main process to exit, the timeout, or an interrupt.

        Meanwhile the main process's own peak RSS is sampled, at growing intervals.
        """
        started = self._spawned.started_mono
        deadline = None
        if self._spec.timeout_ms is not None:
            deadline = started + self._spec.timeout_ms / 1000
        gap = _RSS_SAMPLE_FIRST_S
        sample_at = started + gap
        while True:
            wake = sample_at if deadline is None else min(deadline, sample_at)
            await _until(wake, self._exited, self._stop)
            if self._exited.done():
                return None
            if self._stop.done():
                return self._stop.result()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return _Stop(RunStatus.TIMEOUT, self._spec.kill_grace_ms / 1000)
            if now >= sample_at:
                self._sample_rss()
                gap = min(gap * 2, _RSS_SAMPLE_MAX_S)
                sample_at = now + gap

    def _sample_rss(self) -> None:
        try:
            with open(f"/proc/{self._spawned.pid}/status", "rb") as file:
                for line in file:
                    if line.startswith(b"VmHWM:"):
                        self._sampled_rss_kb = max(self._sampled_rss_kb or 0, int(line.split()[1]))
                        return
        except (OSError, ValueError, IndexError):
            return  # exiting: its memory is gone

    async def _end_tree(self, grace_s: float) -> _Ending:
        """End what is left of the run: SIGTERM, ``grace_s``, then SIGKILL."""
        ending = _Ending()
        members = await self._live_members()
        if not members and self._exited.done():
            return ending
        self._signal_tree(signal.SIGTERM, members, ending)
        if await self._until_gone(time.monotonic() + grace_s, signal.SIGTERM, ending):
            return ending
        self._signal_tree(signal.SIGKILL, await self._live_members(), ending)
        if not await self._until_gone(time.monotonic() + _KILL_WAIT_S, signal.SIGKILL, ending):
            log.warning(
                "run %s of %s: processes survived SIGKILL for %gs (uninterruptible sleep?)",
                self._request.run_id,
                self._request.job_name,
                _KILL_WAIT_S,
            )
            await self._exited  # nothing more to do: the kernel decides when it dies
        return ending

    async def _until_gone(self, deadline: float, sig: int, ending: _Ending) -> bool:
        """Poll until the main process and every member are gone; False at ``deadline``."""
        delay = 0.005
        while True:
            if self._exited.done():
                members = await self._live_members()
                if not members:
                    return True
                self._signal_tree(sig, members, ending)  # late forks get the signal too
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await _until(time.monotonic() + min(delay, remaining), self._exited)
            delay = min(delay * 2, 0.1)

    async def _live_members(self) -> list[_Proc]:
        if (
            self._exited.done()
            and self._spawned.pidfd is not None  # a kernel of 5.3 or later (see below)
            and is_child_subreaper()
            and not _may_have_leftovers()
        ):
            return []  # the main is gone and nothing of any run was re-parented to us
        snapshot = await self._scanner.snapshot()
        members = snapshot.members(self._spawned.pid, self._request.run_id)
        self_pid = os.getpid()
        for proc in members:
            if proc.zombie and proc.ppid == self_pid:
                _reap(proc.pid)  # ours, in the run's tree: cannot be a fresh main
        _TABLE.reap_strays(_stray_zombies(snapshot))
        return [proc for proc in members if not proc.zombie]

    def _signal_tree(self, sig: int, members: list[_Proc], ending: _Ending) -> None:
        ending.signal_sent = sig
        # Safe by number: the main is not reaped yet, so its group id is still this run's.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._spawned.pid, sig)
        for proc in members:
            key = (proc.pid, proc.start, sig)
            if key not in ending.signalled and _signal_proc(proc, sig):
                ending.signalled.add(key)

    def _reap_main(self) -> tuple[int, resource.struct_rusage]:
        pid = self._spawned.pid
        _, status, rusage = os.wait4(pid, 0)  # exited already: does not block
        self._spawned.set_returncode(os.waitstatus_to_exitcode(status))
        with _TABLE.lock:
            _TABLE.mains.pop(pid, None)
        return status, rusage

    def _abort(self) -> None:
        """Cancelled or broken supervision: kill the group and reap the main at once."""
        pid = self._spawned.pid
        log.warning(
            "run %s of %s: supervision stopped; killing its group",
            self._request.run_id,
            self._request.job_name,
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self._spawned.set_returncode(-signal.SIGKILL)
        with _TABLE.lock:
            _TABLE.mains.pop(pid, None)

    def _close_fds(self) -> None:
        self._close_output()
        pidfd, self._spawned.pidfd = self._spawned.pidfd, None
        if pidfd is not None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)

    def _build_result(
        self, stop: _Stop | None, ending: _Ending, status: int, rusage: resource.struct_rusage
    ) -> RunResult:
        ended_mono = self._exited.result() if self._exited.done() else time.monotonic()
        duration_ms = max(0, round((ended_mono - self._spawned.started_mono) * 1000))
        output = self._tail.text()
        exit_code: int | None = None
        sig: int | None = None
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        else:
            exit_code = os.WEXITSTATUS(status)
        if stop is None:
            run_status, error = self._outcome(exit_code, sig, output)
        else:
            run_status = stop.status
            error = self._stop_error(stop, ending)
        return RunResult(
            run_id=self._request.run_id,
            job_name=self._request.job_name,
            status=run_status,
            started_at=self._spawned.started_at,
            completed_at=self._spawned.started_at + timedelta(seconds=duration_ms / 1000),
            duration_ms=duration_ms,
            exit_code=exit_code,
            signal=sig,
            error=error,
            output=output,
            output_truncated=self._tail.truncated,
            cpu_user_s=rusage.ru_utime,
            cpu_system_s=rusage.ru_stime,
            max_rss_kb=self._peak_rss_kb(rusage.ru_maxrss),
            pid=self.pid,
        )

    def _peak_rss_kb(self, ru_maxrss: int) -> int | None:
        """The run's peak RSS: ``wait4``'s when it rose above what the child inherited,
        else the main process's sampled peak, else unknown."""
        if ru_maxrss > self._spawned.inherited_rss_kb:
            return ru_maxrss
        return self._sampled_rss_kb

    @staticmethod
    def _outcome(
        exit_code: int | None, sig: int | None, output: str
    ) -> tuple[RunStatus, str | None]:
        if sig is not None:
            return RunStatus.FAILED, f"killed by signal {sig} ({_signal_name(sig)})"
        if exit_code == 0:
            return RunStatus.SUCCESS, None
        return RunStatus.FAILED, _last_line(output) or f"exited with status {exit_code}"

    def _stop_error(self, stop: _Stop, ending: _Ending) -> str:
        grace_ms = round(stop.grace_s * 1000)
        if ending.signal_sent == signal.SIGKILL:
            how = f"killed with SIGKILL after {_format_ms(grace_ms)} grace"
        else:
            how = "terminated with SIGTERM"
        if stop.status is RunStatus.TIMEOUT:
            return f"timed out after {_format_ms(self._spec.timeout_ms or 0)} ({how})"
        return f"interrupted ({how})"


# --- crash recovery ---------------------------------------------------------------------


def kill_stale(
    pid: int, create_time: float, *, run_id: str | None = None, grace_s: float = 2.0
) -> bool:
    """End what is left of a run whose daemon died; return whether anything was found.

    The main process is matched by ``pid`` and ``create_time`` (psutil's, as stored
    with the run), never by pid alone; if ``run_id`` is given and the process's
    environment can be read, it must match too.  Its session, group and
    descendants are ended with it.  With ``run_id``, processes that escaped the
    session (found by ``CRONHUB_RUN_ID``) are ended too, even when the main process
    is gone.  SIGTERM, ``grace_s``, then SIGKILL.  Blocking: call it in a thread.
    """
    main = _stale_main(pid, create_time, run_id)
    if main is None and run_id is None:
        return False
    snapshot = _take_snapshot(
        frozenset({pid}) if main else frozenset(), frozenset(), subreaper=False
    )
    targets = snapshot.members(pid if main else -1, run_id or "")
    if main is not None:
        targets.append(main)
    if not targets:
        return False
    log.debug("ending %d processes left by run %s (pid %d)", len(targets), run_id, pid)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, _KILL_WAIT_S)):
        alive = [proc for proc in targets if _signal_proc(proc, sig)]
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)
            alive = [proc for proc in alive if _is_running(proc)]
        if not alive:
            break
    return True


def _stale_main(pid: int, create_time: float, run_id: str | None) -> _Proc | None:
    try:
        if abs(psutil.Process(pid).create_time() - create_time) > _STALE_MATCH_S:
            return None
    except psutil.Error:
        return None
    main = _read_proc(pid)
    if main is None or main.zombie or main.sid != pid:  # a run's main leads its session
        return None
    if run_id is not None and _environ_run_id(pid) not in (None, run_id):
        return None  # readable, and another run's (or none's)
    return main


def _is_running(proc: _Proc) -> bool:
    current = _read_proc(proc.pid)
    return current is not None and current.start == proc.start and not current.zombie
