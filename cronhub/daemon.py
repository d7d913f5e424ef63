"""The composition root: wires registry, engine, runner, store and control socket.

``Daemon`` owns the lifecycle — start-up and crash recovery, the main loop
(sleep until the engine's next deadline or an event), live reloads, and the
three-phase graceful shutdown.  It makes no scheduling decisions itself:
those are :class:`cronhub.engine.Engine`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cronhub import __version__
from cronhub.clock import Clock, SystemClock
from cronhub.control import ControlServer, PeerCred
from cronhub.engine import Action, Engine, RecordSkip, StartRun
from cronhub.errors import (
    ConfigError,
    CronhubError,
    DaemonAlreadyRunning,
    JobBusy,
    JobNotFound,
    ProtocolError,
    ShuttingDown,
)
from cronhub.ids import uuid7
from cronhub.logs import configure_logging, skip_unused_record_fields
from cronhub.model import (
    JobSpec,
    Registry,
    RunRecord,
    RunRequest,
    RunResult,
    RunStatus,
    Schedule,
)
from cronhub.pidlock import PidLock
from cronhub.protocol import PROTOCOL_VERSION, Request
from cronhub.registry import RegistryCache, job_config
from cronhub.registry_file import load_registry
from cronhub.runner import RunHandle, Runner, kill_stale, set_child_subreaper
from cronhub.schedule import describe
from cronhub.sdnotify import Notifier
from cronhub.store import PRUNE_BATCH, Store, StoreService
from cronhub.views import iso, job_status_json, run_json
from cronhub.watch import watch_registry

log = logging.getLogger("cronhub.daemon")

MAX_SLEEP_S = 30.0
"""Longest the main loop sleeps, so a suspend/resume is noticed within this."""
RETENTION_EVERY_S = 86_400.0
REAP_DELAY_S = 5.0
EXTEND_STOP_MARGIN_S = 15.0
"""Asked of systemd beyond ``shutdown_grace`` for ending job trees and flushing history."""
STORE_MAX_BATCH = 1_000
"""Writes per transaction when none is urgent (a burst's inserts go in slices)."""
INSERT_WAIT_S = 2.0
"""How long a start waits for its ``running`` row to commit before spawning anyway."""


def run_daemon(config_path: str, *, log_level: str | None = None, socket: str | None = None) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; return the exit code."""
    try:
        configure_logging(log_level)
    except ConfigError as exc:
        print(f"cronhub: {exc}", file=sys.stderr)
        return 2
    skip_unused_record_fields()
    environ = dict(os.environ)
    try:
        cache = RegistryCache()
        registry = load_registry(config_path, environ=environ, cache=cache)
    except ConfigError as exc:
        for issue in exc.issues:
            log.error("%s", issue)
        log.error("not starting: %s has errors (check it with `cronhub validate`)", config_path)
        return 2
    for warning in registry.warnings:
        log.warning("%s", warning)
    socket_path = socket or environ.get("CRONHUB_SOCKET") or registry.settings.socket
    lock = PidLock(_lock_path(registry, socket_path))
    try:
        lock.acquire()
    except DaemonAlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot create the lock file %s: %s", lock.path, exc.strerror or exc)
        return 1
    try:
        daemon = Daemon(config_path, registry, socket_path=socket_path, registry_cache=cache)
        return asyncio.run(daemon.run())
    finally:
        lock.release()


def _lock_path(registry: Registry, socket_path: str) -> str:
    """The lock sits beside the SQLite file (one daemon per database), else the socket."""
    url = registry.settings.database
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///") + ".lock"
    return socket_path + ".lock"


class Daemon:
    """One running cronhub: call :meth:`run` inside an event loop."""

    def __init__(
        self,
        config_path: str,
        registry: Registry,
        *,
        socket_path: str,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        runner: Runner | None = None,
        store: StoreService | None = None,
        registry_cache: RegistryCache | None = None,
    ) -> None:
        self.config_path = str(Path(config_path).resolve())
        self.registry = registry
        self.socket_path = socket_path
        self._clock = clock or SystemClock()
        # Unset NOTIFY_SOCKET & co. so that jobs do not inherit them.
        self._notifier = notifier or Notifier.from_environ(unset_environment=True)
        self._runner = runner or Runner(base_dir=str(Path(self.config_path).parent))
        self._store = store or StoreService(
            Store(registry.settings.database), max_batch=STORE_MAX_BATCH
        )
        self._control = ControlServer(
            socket_path, self._handle_request, control_group=registry.settings.control_group
        )
        self._engine: Engine | None = None
        self._registry_cache = registry_cache or RegistryCache()
        self._started_at = self._clock.now()
        self._registry_loaded_at = self._started_at
        self._registry_errors: list[str] = []
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._forced = asyncio.Event()
        self._interrupting = False
        self._handles: dict[str, tuple[RunHandle, JobSpec]] = {}
        self._waiters: dict[str, list[asyncio.Future[RunResult]]] = {}
        self._launches: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self._status_pending = False
        self._reap_pending = False
        self._signal_fds: tuple[int, int] | None = None

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the daemon has not started"
        return self._engine

    # --- lifecycle -------------------------------------------------------------

    async def run(self) -> int:
        """Start, serve until asked to stop, shut down gracefully; return the exit code."""
        loop = asyncio.get_running_loop()
        self._install_signal_handlers(loop)
        if not set_child_subreaper():
            log.warning("cannot become a child subreaper: escaped job processes may be missed")
        try:
            await self._start()
        except (CronhubError, OSError) as exc:
            log.error("cannot start: %s", exc)
            await self._close_shell()
            return 1
        log.info(
            "cronhub %s started: %d jobs from %s, socket %s, pid %d",
            __version__,
            len(self.registry.jobs),
            self.config_path,
            self.socket_path,
            os.getpid(),
        )
        _freeze_long_lived()
        self._notifier.ready()
        self._update_status()
        self._execute(self.engine.startup(self._clock.now(), self._clock.monotonic()))
        try:
            await self._main_loop()
        finally:
            await self._shutdown()
        return 0

    async def _start(self) -> None:
        await self._store.start()
        recovered = await self._store.call("recover_interrupted", self._clock.now())
        for record in recovered:
            log.warning(
                "run %s of %s was left running by a daemon that died; recorded as interrupted",
                record.id,
                record.job_name,
            )
            # Matched by pid and start time when the row has them, and in any case by
            # CRONHUB_RUN_ID in the environment (the daemon may have died between the
            # spawn and recording the pid); never by pid alone.
            await asyncio.to_thread(
                kill_stale, record.pid or 0, record.pid_create_time or 0.0, run_id=record.id
            )
        states = await self._store.call("job_states")
        overrides = {n: s.override for n, s in states.items() if s.override is not None}
        last_fired = await self._store.call("last_fired")
        self._store.submit("sync_jobs", list(self.registry.jobs.values()))
        self._engine = Engine(
            self.registry,
            wall=self._clock.now(),
            mono=self._clock.monotonic(),
            overrides=overrides,
            last_fired=last_fired,
            new_id=uuid7,
        )
        await self._control.start()
        self._background = [
            asyncio.create_task(self._watch_registry(), name="watch-registry"),
            asyncio.create_task(self._retention_loop(), name="retention"),
        ]
        interval = self._notifier.watchdog_interval()
        if interval:
            self._background.append(asyncio.create_task(self._watchdog_loop(interval)))

    async def _main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                self._execute(self.engine.tick(self._clock.now(), self._clock.monotonic()))
            except Exception:
                log.exception("scheduler tick failed; retrying")
            deadline = self.engine.next_wakeup()
            timeout = MAX_SLEEP_S
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - self._clock.monotonic()))
            # A timer that sets the event: a fraction of wait_for's cost, paid on
            # every wake-up of a busy scheduler.
            timer = loop.call_later(timeout, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()

    def request_stop(self, *, force: bool = False) -> None:
        """Begin a graceful shutdown (``force`` skips the wait for running jobs)."""
        if self._stopping.is_set() or force:
            self._forced.set()
        self._stopping.set()
        self._wakeup.set()

    async def _shutdown(self) -> None:
        grace = self.registry.settings.shutdown_grace_ms / 1000
        self._notifier.stopping()
        self._notifier.extend_timeout(grace + EXTEND_STOP_MARGIN_S)
        self._execute(self.engine.begin_shutdown())
        active = len(self._launches)
        if active:
            log.info("stopping: waiting up to %.0fs for %d running job(s)", grace, active)
            deadline = time.monotonic() + grace
            forced = asyncio.ensure_future(self._forced.wait())
            while self._launches and time.monotonic() < deadline and not self._forced.is_set():
                await asyncio.wait(
                    {*self._launches, forced},
                    timeout=deadline - time.monotonic(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            forced.cancel()
            if self._launches:
                log.warning(
                    "stopping: interrupting %d run(s) still in progress", len(self._launches)
                )
                # Runs spawned from now on are interrupted by _launch itself.
                self._interrupting = True
                await asyncio.gather(
                    *(
                        handle.interrupt(spec.kill_grace_ms / 1000)
                        for handle, spec in list(self._handles.values())
                    ),
                    return_exceptions=True,
                )
                await asyncio.gather(*self._launches, return_exceptions=True)
        await self._close_shell()
        log.info("cronhub stopped")

    async def _close_shell(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._control.close()
        await self._store.stop(timeout=10.0)
        self._runner.close()
        self._remove_signal_handlers()

    # --- signals -----------------------------------------------------------------

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        """Record signals and let the loop act on them.

        A plain ``signal.signal`` handler plus ``call_soon_threadsafe`` does not
        depend on the wakeup pipe: if a burst of signals fills the pipe, the
        handler still runs and the callback still reaches the loop.
        """
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._signal_fds = (rfd, wfd)
        loop.add_reader(rfd, _drain, rfd)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)

        def on_signal(signum: int, _frame: object) -> None:
            loop.call_soon_threadsafe(self._on_signal, signum)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, on_signal)

    def _remove_signal_handlers(self) -> None:
        if self._signal_fds is None:
            return
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        rfd, wfd = self._signal_fds
        self._signal_fds = None
        asyncio.get_running_loop().remove_reader(rfd)
        os.close(rfd)
        os.close(wfd)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: reloading %s", self.config_path)
            self._spawn_background(self._reload_quietly("SIGHUP"))
            return
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            log.warning("%s again: interrupting running jobs now", name)
        else:
            log.info("%s: shutting down", name)
        self.request_stop()

    # --- runs --------------------------------------------------------------------

    def _execute(self, actions: Iterable[Action]) -> None:
        loop = asyncio.get_running_loop()
        gates: list[asyncio.Future[bool | None]] = []
        for action in actions:
            if isinstance(action, StartRun):
                if not gates:
                    # One timer for the whole burst, not one per run; set before
                    # any gate exists, so none is left without one.
                    loop.call_later(INSERT_WAIT_S, _open_gates, gates)
                # Queue every row of a burst before any task runs: few transactions.
                inserted = self._store.submit(
                    "insert_run", action.request, started_at=self._clock.now()
                )
                gate: asyncio.Future[bool | None] = loop.create_future()
                inserted.add_done_callback(functools.partial(_pass_outcome, gate))
                gates.append(gate)
                task = asyncio.create_task(self._launch(action.request, action.spec, gate))
                self._launches.add(task)
                task.add_done_callback(self._launches.discard)
            elif isinstance(action, RecordSkip):
                log.info(
                    "run skipped job=%s scheduled=%s: %s",
                    action.request.job_name,
                    iso(action.request.scheduled_at),
                    action.reason,
                )
                self._store.submit("record_skip", action.request, action.reason)
                self._resolve_waiters(self._not_started(action.request, action.reason))

    async def _launch(
        self, request: RunRequest, spec: JobSpec, gate: asyncio.Future[bool | None]
    ) -> None:
        run_id = request.run_id
        try:
            result = await self._supervise(request, spec, gate)
        except Exception as exc:
            log.exception("run %s of %s could not be supervised", run_id, request.job_name)
            result = replace(
                self._not_started(request, f"cronhub could not run the job: {exc}"),
                status=RunStatus.FAILED,
            )
        finally:
            self._handles.pop(run_id, None)
        if result is not None:
            self._finish(request, result)

    async def _supervise(
        self, request: RunRequest, spec: JobSpec, gate: asyncio.Future[bool | None]
    ) -> RunResult | None:
        """Record, spawn and watch one run; None if history already holds its key."""
        run_id = request.run_id
        if not await self._row_committed(request, gate):
            log.warning(
                "run of %s scheduled at %s attempt %d is already in history; not starting it",
                request.job_name,
                iso(request.scheduled_at),
                request.attempt,
            )
            self.engine.on_not_started(run_id)
            self._wakeup.set()
            self._resolve_waiters(
                self._not_started(request, "not started: this run is already in history")
            )
            return None
        if self._stopping.is_set():
            return self._not_started(request, "not started: the daemon is shutting down")
        handle = await self._runner.start(spec, request)
        self._handles[run_id] = (handle, spec)
        if self._interrupting:
            await handle.interrupt(spec.kill_grace_ms / 1000)
        self.engine.on_started(run_id)
        self._store.submit(
            "set_run_pid", run_id, handle.pid, handle.pid_create_time, self._clock.now()
        )
        log.info(
            "run started job=%s run=%s trigger=%s attempt=%d pid=%s",
            request.job_name,
            run_id,
            request.trigger,
            request.attempt,
            handle.pid,
        )
        self._update_status()
        return await handle.wait()

    def _not_started(self, request: RunRequest, reason: str) -> RunResult:
        return RunResult.never_ran(request, RunStatus.SKIPPED, reason, self._clock.now())

    async def _row_committed(self, request: RunRequest, gate: asyncio.Future[bool | None]) -> bool:
        """Wait for the run's ``running`` row to commit before spawning it.

        ``gate`` gets the insert's outcome, or None if the database did not answer
        within ``INSERT_WAIT_S``: the row stays queued (it will be written once the
        database recovers) and the run starts anyway, since a database error never
        stops scheduling.  Returns False when history already holds this run's key
        (job, scheduled time, attempt).
        """
        if not self._store.available:
            gate.cancel()  # nobody reads its outcome: not even a failure to log
            return True  # in an outage: do not hold the start for a write that is held
        outcome = await gate
        if outcome is None:
            log.warning(
                "history database is slow or unavailable: starting run %s of %s before its "
                "row is committed",
                request.run_id,
                request.job_name,
            )
            return True
        return outcome

    def _finish(self, request: RunRequest, result: RunResult) -> None:
        self.engine.on_finished(result, self._clock.now(), self._clock.monotonic())
        self._store.submit("finish_run", result)
        level = logging.INFO if result.status is RunStatus.SUCCESS else logging.WARNING
        log.log(
            level,
            "run finished job=%s run=%s status=%s duration=%dms%s",
            result.job_name,
            result.run_id,
            result.status,
            result.duration_ms,
            f" error={result.error!r}" if result.error else "",
        )
        self._resolve_waiters(result)
        self._update_status()
        self._schedule_reap()
        self._wakeup.set()

    def _resolve_waiters(self, result: RunResult) -> None:
        """Answer the `run --wait` requests waiting for this run."""
        for waiter in self._waiters.pop(result.run_id, []):
            if not waiter.done():
                waiter.set_result(result)

    def _schedule_reap(self) -> None:
        """Reap stray zombies (escaped job processes that ended) a moment after runs end."""
        if self._reap_pending:
            return
        self._reap_pending = True

        def reap() -> None:
            self._reap_pending = False
            self._spawn_background(self._reap_orphans())

        asyncio.get_running_loop().call_later(REAP_DELAY_S, reap)

    async def _reap_orphans(self) -> None:
        try:
            reaped = await asyncio.to_thread(self._runner.reap_orphans)
        except Exception:
            log.exception("reaping stray job processes failed")
            return
        if reaped:
            log.debug("reaped %d stray job process(es)", reaped)

    # --- registry ----------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Re-read the registry; apply it as a difference or keep the last good one."""
        async with self._reload_lock:
            self._notifier.reloading(time.monotonic_ns() // 1000)
            try:
                try:
                    registry = await asyncio.to_thread(
                        load_registry, self.config_path, cache=self._registry_cache
                    )
                except ConfigError as exc:
                    self._registry_errors = [str(issue) for issue in exc.issues]
                    for issue in exc.issues:
                        log.error("%s", issue)
                    log.error("registry not reloaded: keeping the last good registry")
                    raise
                self._warn_restart_only_changes(registry)
                diff = self.engine.on_registry(registry, self._clock.now(), self._clock.monotonic())
                self.registry = registry
                self._registry_errors = []
                self._registry_loaded_at = self._clock.now()
                for name in diff.added:
                    override = self.engine.override(name)
                    if override is not None:
                        log.info(
                            "job %s is back with its earlier runtime override: %s "
                            "(cronhub %s to change it)",
                            name,
                            "enabled" if override else "disabled",
                            "disable" if override else "enable",
                        )
                touched = (*diff.added, *diff.changed)
                if touched:
                    self._store.submit("sync_jobs", [registry.jobs[n] for n in touched])
                for warning in registry.warnings:
                    log.warning("%s", warning)
                log.info(
                    "registry reloaded: %d added, %d removed, %d changed, %d unchanged",
                    len(diff.added),
                    len(diff.removed),
                    len(diff.changed),
                    len(diff.unchanged),
                )
                self._wakeup.set()
                self._update_status()
                return {
                    "added": list(diff.added),
                    "removed": list(diff.removed),
                    "changed": list(diff.changed),
                    "unchanged": len(diff.unchanged),
                    "warnings": [str(w) for w in registry.warnings],
                }
            finally:
                self._notifier.ready()

    async def _reload_quietly(self, reason: str) -> None:
        try:
            await self.reload()
        except ConfigError:
            pass  # already logged, and shown by `status`
        except Exception:
            log.exception("reload after %s failed", reason)

    def _warn_restart_only_changes(self, new: Registry) -> None:
        old = self.registry.settings
        for name in ("database", "socket", "control_group"):
            if getattr(old, name) != getattr(new.settings, name):
                log.warning("[scheduler] %s changed: it takes effect at the next restart", name)

    async def _watch_registry(self) -> None:
        await watch_registry(
            self.config_path, functools.partial(self._reload_quietly, "an edit"), self._stopping
        )

    # --- background --------------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self._prune_once()
            except Exception:
                log.exception("pruning old history failed")
            await asyncio.sleep(RETENTION_EVERY_S)

    async def _prune_once(self) -> None:
        days = self.registry.settings.history_retention_days
        before = self._clock.now() - timedelta(days=days)
        total = 0
        while True:
            deleted = await self._store.call("prune", before, PRUNE_BATCH)
            total += deleted
            if deleted < PRUNE_BATCH:
                break
            await asyncio.sleep(0)
        if total:
            log.info("pruned %d run(s) older than %d days", total, days)

    async def _watchdog_loop(self, interval: float) -> None:
        while True:
            self._notifier.watchdog()
            self._update_status()  # keeps "next: JOB in 3m" current
            await asyncio.sleep(interval)

    def _spawn_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.append(task)
        task.add_done_callback(lambda t: t in self._background and self._background.remove(t))

    def _update_status(self) -> None:
        """Send STATUS= to systemd at most once a second."""
        if not self._notifier.enabled or self._status_pending:
            return
        self._status_pending = True
        asyncio.get_running_loop().call_later(1.0, self._send_status)

    def _send_status(self) -> None:
        self._status_pending = False
        engine = self.engine
        text = f"{len(self.registry.jobs)} jobs, {engine.active_total()} running"
        upcoming = [(engine.next_run(n), n) for n in self.registry.jobs]
        upcoming = [(at, n) for at, n in upcoming if at is not None]
        if upcoming:
            at, name = min(upcoming)
            seconds = max(0, int((at - self._clock.now()).total_seconds()))
            text += f", next: {name} in {_short(seconds)}"
        if self._stopping.is_set():
            text += ", stopping"
        self._notifier.status(text)

    # --- control requests --------------------------------------------------------

    async def _handle_request(self, request: Request, peer: PeerCred) -> object:
        handler = self._ops.get(request.op)
        if handler is None:
            raise ProtocolError("unknown_op", f"unknown operation {request.op!r}")
        try:
            return await handler(self, request.params)
        except JobNotFound as exc:
            raise ProtocolError(
                "not_found", str(exc), details={"candidates": list(exc.candidates)}
            ) from exc
        except JobBusy as exc:
            raise ProtocolError("busy", str(exc)) from exc
        except ShuttingDown as exc:
            raise ProtocolError("shutting_down", str(exc)) from exc
        except ConfigError as exc:
            raise ProtocolError(
                "config_invalid",
                "the registry has errors; the daemon keeps the last good registry",
                details={"issues": [str(issue) for issue in exc.issues]},
            ) from exc

    async def _op_ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "started_at": iso(self._started_at),
            "uptime_s": (self._clock.now() - self._started_at).total_seconds(),
        }

    async def _op_status(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("job")
        if name is not None:
            self._require_job(name)
        states = await self._store_read("job_states", name)
        names = [name] if name is not None else list(self.registry.jobs)
        jobs = [self._job_status(n, states.get(n)) for n in names]
        result: dict[str, Any] = {"daemon": self._daemon_info(), "jobs": jobs}
        if name is not None:
            jobs[0]["config"] = job_config(self.registry.jobs[name])
            runs = await self._store_read("history", name, 10)
            result["runs"] = [run_json(r) for r in runs]
        return result

    async def _op_run(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["job"]
        request = self.engine.request_run(name, self._clock.now(), self._clock.monotonic())
        log.info("manual run requested job=%s run=%s", name, request.run_id)
        waiter: asyncio.Future[RunResult] | None = None
        if params.get("wait"):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(request.run_id, []).append(waiter)
        self._wakeup.set()
        reply: dict[str, Any] = {
            "run_id": request.run_id,
            "job_name": name,
            "status": str(RunStatus.RUNNING),
        }
        if waiter is None:
            return reply
        try:
            result = await asyncio.wait_for(waiter, params.get("timeout"))
        except TimeoutError:
            raise ProtocolError(
                "timeout", f"run {request.run_id} of {name} is still running"
            ) from None
        reply["status"] = str(result.status)
        reply["run"] = run_json(_record(request, result))
        return reply

    async def _op_enable(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._set_enabled(params["job"], True)

    async def _op_disable(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._set_enabled(params["job"], False)

    def _set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        self._require_job(name)
        override = enabled  # an explicit choice, kept over later edits of jobs.toml
        self.engine.set_override(
            name, override, wall=self._clock.now(), mono=self._clock.monotonic()
        )
        self._store.submit("set_override", name, override)
        log.info("job %s %s by request", name, "enabled" if enabled else "disabled")
        self._wakeup.set()
        return {"job": name, "enabled": self.engine.is_enabled(name), "override": override}

    async def _op_history(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("job")
        since = params.get("since")
        status = params.get("status")
        runs = await self._store_read(
            "history",
            name,
            params.get("limit", 20),
            None if status is None else RunStatus(status),
            None if since is None else datetime.fromisoformat(since),
        )
        if name is not None and not runs:
            self._require_job(name)
        return {"runs": [run_json(r) for r in runs]}

    async def _op_logs(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["job"]
        record: RunRecord | None = await self._store_read("get_run", name, params.get("run_id"))
        if record is None:
            self._require_job(name)
            if params.get("run_id"):
                message = f'no run {params["run_id"]} of job "{name}" in history'
            else:
                message = f'job "{name}" has no run in history yet'
            raise ProtocolError("not_found", message)
        return {
            "run": run_json(record),
            "output": record.output or "",
            "truncated": record.output_truncated,
        }

    async def _op_reload(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self.reload()

    async def _op_shutdown(self, params: dict[str, Any]) -> dict[str, Any]:
        log.info("shutdown requested over the control socket")
        asyncio.get_running_loop().call_soon(self.request_stop)
        return {"stopping": True}

    _ops: ClassVar[dict[str, Callable[[Daemon, dict[str, Any]], Awaitable[dict[str, Any]]]]] = {
        "ping": _op_ping,
        "status": _op_status,
        "run": _op_run,
        "enable": _op_enable,
        "disable": _op_disable,
        "history": _op_history,
        "logs": _op_logs,
        "reload": _op_reload,
        "shutdown": _op_shutdown,
    }

    def _require_job(self, name: str) -> JobSpec:
        spec = self.registry.jobs.get(name)
        if spec is None:
            raise JobNotFound.among(name, self.registry.jobs)
        return spec

    async def _store_read(self, method: str, *args: object) -> Any:
        try:
            return await self._store.call(method, *args)
        except CronhubError as exc:
            raise ProtocolError("internal", f"history database unavailable: {exc}") from exc

    def _job_status(self, name: str, state: Any) -> dict[str, Any]:
        spec = self.registry.jobs[name]
        engine = self.engine
        return job_status_json(
            spec,
            state,
            enabled=engine.is_enabled(name),
            override=engine.override(name),
            paused=not self.registry.settings.enabled,
            next_run=engine.next_run(name),
            running=engine.active(name),
            schedule_human=_describe(spec.schedule),
        )

    def _daemon_info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": iso(self._started_at),
            "paused": not self.registry.settings.enabled,
            "running": self.engine.active_total(),
            "max_concurrent": self.registry.settings.max_concurrent,
            "registry_path": self.config_path,
            "registry_loaded_at": iso(self._registry_loaded_at),
            "registry_errors": list(self._registry_errors),
        }


@functools.lru_cache(maxsize=4096)
def _describe(schedule: Schedule) -> str:
    return describe(schedule)


def _record(request: RunRequest, result: RunResult) -> RunRecord:
    return RunRecord(
        id=request.run_id,
        job_name=request.job_name,
        trigger=request.trigger,
        attempt=request.attempt,
        scheduled_at=request.scheduled_at,
        status=result.status,
        started_at=result.started_at,
        completed_at=result.completed_at,
        duration_ms=result.duration_ms,
        exit_code=result.exit_code,
        signal=result.signal,
        error=result.error,
        cpu_user_s=result.cpu_user_s,
        cpu_system_s=result.cpu_system_s,
        max_rss_kb=result.max_rss_kb,
        pid=result.pid,
    )


def _freeze_long_lived() -> None:
    """Keep what the daemon has loaded out of every future garbage collection.

    The modules, the registry and the database machinery live as long as the
    daemon; left in the collector, each full collection walks all of them
    (~20 ms with the example registry, ~36 ms with 10,000 jobs), a pause that
    lands in the start lag of whatever run is due.  Called once, when started,
    after collecting what is garbage by then.  Reloads are not frozen: that
    would pause the loop for one such collection each time, and the jobs a
    reload leaves unchanged keep their (frozen) objects anyway.
    """
    gc.collect()
    gc.freeze()


def _pass_outcome(gate: asyncio.Future[bool | None], inserted: asyncio.Future[Any]) -> None:
    """Open a run's gate with its insert's outcome (unless the wait timed out first)."""
    if gate.done():
        return
    if inserted.cancelled():
        gate.cancel()
    elif (error := inserted.exception()) is not None:
        gate.set_exception(error)
    else:
        gate.set_result(bool(inserted.result()))


def _open_gates(gates: list[asyncio.Future[bool | None]]) -> None:
    """The inserts of a burst took longer than ``INSERT_WAIT_S``: start what still waits."""
    for gate in gates:
        if not gate.done():
            gate.set_result(None)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while os.read(fd, 4096):
            pass


def _short(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86_400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86_400}d"
