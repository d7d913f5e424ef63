"""The sans-IO scheduling planner: which run starts when.

:class:`Engine` is a plain object driven by method calls.  It never awaits, never
does I/O and never reads the clock: every method that needs the time takes
``wall`` (aware UTC, used for cron schedules and records) and ``mono``
(monotonic seconds, used for intervals, retries and wake-ups).  The daemon
carries out the :data:`Action` values it returns and reports back with
:meth:`Engine.on_started` and :meth:`Engine.on_finished`.

Rules, in one place:

* Interval jobs fire at ``anchor + k * every`` on the monotonic clock (no drift);
  the anchor is when the job was scheduled (engine start, registry change,
  enable, unpause).  Cron jobs fire at :func:`cronhub.schedule.next_fire` instants
  on the wall clock.  Fires missed while the daemon was busy or asleep coalesce
  into one run (``scheduled_at`` is the earliest missed fire), never a burst.
* The ``scheduled_at`` of a job's timer fires strictly increases, so the key
  ``(job, scheduled_at, attempt)`` is never reused.  A cron fire at or before
  the job's high-water mark (the last fired ``scheduled_at``, seeded from
  ``last_fired``) is never fired again, so a wall clock stepped backward or a
  restart cannot repeat a tick (Vixie cron); a wall clock stepped forward fires
  the skipped span once, at the next tick.  Interval fires keep their monotonic
  timing through any step; after a step backward their ``scheduled_at`` is held
  just above the high-water mark until the wall clock catches up.
* A singleton job that comes due while it has a run active or queued yields a
  :class:`RecordSkip` instead of a run.
* Runs wait in a queue ordered by ``scheduled_at`` and start while fewer than
  ``max_concurrent`` runs are active.  Emitting :class:`StartRun` takes the slot;
  :meth:`Engine.on_finished` (or :meth:`Engine.on_not_started`) frees it.
* A failed or timed-out run with attempts left is retried after
  ``retry_delay * 2 ** (attempt - 1)``, with the same ``scheduled_at`` and the
  next attempt number.  Interrupted and successful runs are never retried.
* Every :class:`~cronhub.model.RunRequest` the engine creates leaves it exactly
  once, as a :class:`StartRun` or a :class:`RecordSkip` — except queued runs at
  shutdown, which :meth:`Engine.begin_shutdown` returns as skips.
* Scheduling (timers, ``@reboot``/``run_on_startup`` runs and retries) stops while
  the job is disabled or scheduling is paused; manual runs still work.
"""

from __future__ import annotations

import heapq
import itertools
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from cronhub.errors import JobBusy, JobNotFound, ShuttingDown
from cronhub.model import (
    CronSchedule,
    IntervalSchedule,
    JobSpec,
    RebootSchedule,
    Registry,
    RunRequest,
    RunResult,
    Trigger,
)
from cronhub.registry import RegistryDiff, diff_registries
from cronhub.schedule import next_fire

__all__ = [
    "Action",
    "Engine",
    "RecordSkip",
    "RegistryDiff",
    "RunState",
    "StartRun",
]

_FireMemo = dict[tuple[CronSchedule, datetime], datetime | None]
"""Next fires already computed in one pass, by (schedule, after)."""

DEFAULT_JUMP_THRESHOLD_S = 1.0
"""A change of ``wall - mono`` larger than this is a wall-clock step, not drift."""

DEFAULT_MAX_SLEEP_S = 30.0
"""While cron jobs are scheduled, :meth:`Engine.next_wakeup` is never further away
than this, so a wall-clock step forward is noticed within this time."""

SKIP_SINGLETON = "singleton: a run of this job is still active or queued"
SKIP_REMOVED = "job removed from the registry before its run started"
SKIP_DISABLED = "job disabled before its run started"
SKIP_RETRY_DROPPED = "retry not run: the job is disabled, removed or scheduling is paused"
SKIP_SHUTDOWN = "daemon shut down before the run started"


# --- actions -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class StartRun:
    """Start ``request`` now, as ``spec`` defines it (record it, then spawn it)."""

    request: RunRequest
    spec: JobSpec


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordSkip:
    """Do not start ``request``; record it as skipped with ``reason``."""

    request: RunRequest
    spec: JobSpec
    reason: str


Action = StartRun | RecordSkip


# --- run lifecycle -----------------------------------------------------------


class RunState(Enum):
    """Where one run request stands inside the engine."""

    QUEUED = "queued"
    """Decided, waiting for a free slot."""
    STARTING = "starting"
    """``StartRun`` emitted; the slot is taken."""
    RUNNING = "running"
    """The daemon reported the process started."""
    FINISHED = "finished"
    """The daemon reported the result, or that it did not start it."""
    DROPPED = "dropped"
    """Never started: its job was removed or the daemon shut down."""


_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    # Either a slot frees up, or the job goes away / the daemon stops first.
    RunState.QUEUED: frozenset({RunState.STARTING, RunState.DROPPED}),
    # on_started, or a result straight away (spawn failed, store refused the row).
    RunState.STARTING: frozenset({RunState.RUNNING, RunState.FINISHED}),
    RunState.RUNNING: frozenset({RunState.FINISHED}),
    RunState.FINISHED: frozenset(),
    RunState.DROPPED: frozenset(),
}

_ACTIVE = frozenset({RunState.STARTING, RunState.RUNNING})


@dataclass(slots=True)
class _Run:
    request: RunRequest
    spec: JobSpec
    state: RunState = RunState.QUEUED

    def transition(self, new: RunState) -> None:
        if new not in _TRANSITIONS[self.state]:
            raise RuntimeError(
                f"run {self.request.run_id}: cannot go from {self.state.value} to {new.value}"
            )
        self.state = new


# --- per-job timer -----------------------------------------------------------


@dataclass(slots=True)
class _Timer:
    """The schedule state of one scheduled job.

    ``generation`` is unique across the engine's life: a heap entry is live only
    while its job's timer still carries the entry's generation.
    """

    generation: int
    due_wall: datetime | None = None
    """Next cron fire (aware UTC)."""
    anchor: float = 0.0
    every: float = 0.0
    k: int = 0
    """Next interval fire is ``anchor + k * every`` (monotonic seconds)."""

    @property
    def due_mono(self) -> float | None:
        return self.anchor + self.k * self.every if self.every else None


@dataclass(order=True, slots=True)
class _Retry:
    due: float
    seq: int
    request: RunRequest = field(compare=False)


class Engine:
    """Decides due runs, singleton skips, retries and the concurrency limit.

    ``overrides`` are the runtime enable/disable switches kept by the store;
    ``last_fired`` the last recorded ``scheduled_at`` per job, so a restart never
    fires a tick twice.  ``new_id`` makes run ids.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        wall: datetime,
        mono: float,
        overrides: Mapping[str, bool] | None = None,
        last_fired: Mapping[str, datetime] | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        jump_threshold_s: float = DEFAULT_JUMP_THRESHOLD_S,
        max_sleep_s: float = DEFAULT_MAX_SLEEP_S,
    ) -> None:
        _check_aware(wall)
        self._registry = registry
        self._specs: dict[str, JobSpec] = dict(registry.jobs)
        self._overrides: dict[str, bool] = dict(overrides or {})
        self._high_water: dict[str, datetime] = dict(last_fired or {})
        self._new_id = new_id
        self._jump_threshold = jump_threshold_s
        self._max_sleep = max_sleep_s
        self._max_concurrent = registry.settings.max_concurrent
        self._paused = not registry.settings.enabled
        self._shutting_down = False
        self._started_up = False

        self._wall = wall
        self._mono = mono
        self._offset = _offset(wall, mono)

        self._seq = itertools.count()
        self._timers: dict[str, _Timer] = {}
        self._cron_heap: list[tuple[datetime, int, str, int]] = []
        self._interval_heap: list[tuple[float, int, str, int]] = []
        self._retries: list[_Retry] = []
        self._queue: list[tuple[datetime, int, str]] = []
        self._runs: dict[str, _Run] = {}
        self._active: Counter[str] = Counter()
        self._queued: Counter[str] = Counter()
        self._active_total = 0
        self._pending: list[Action] = []

        if not self._paused:
            self._schedule_all(self._specs, wall, mono, bulk=True)

    # --- queries -------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while scheduling is paused (manual runs still work)."""
        return self._paused

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def max_concurrent(self) -> int:
        return self._max_concurrent

    def job_names(self) -> tuple[str, ...]:
        """Names of the current registry's jobs, in file order."""
        return tuple(self._specs)

    def spec(self, name: str) -> JobSpec:
        """The current definition of ``name``; raises :class:`JobNotFound`."""
        return self._lookup(name)

    def is_enabled(self, name: str) -> bool:
        """The runtime override if one is set, else the job's ``enabled``."""
        return self._enabled(self._lookup(name))

    def override(self, name: str) -> bool | None:
        """The runtime override of ``name`` (None = follow the registry)."""
        return self._overrides.get(name)

    def next_run(self, name: str) -> datetime | None:
        """When ``name`` next fires on its timer (aware UTC), or None."""
        spec = self._lookup(name)
        timer = self._timers.get(name)
        if timer is None or self._paused or not self._enabled(spec):
            return None
        if timer.due_wall is not None:
            return timer.due_wall
        due_mono = timer.due_mono
        if due_mono is None:
            return None
        return self._wall + timedelta(seconds=due_mono - self._mono)

    def active(self, name: str) -> int:
        """Runs of ``name`` started and not yet finished (removed jobs included)."""
        return self._active[name]

    def queued(self, name: str) -> int:
        """Runs of ``name`` waiting for a slot."""
        return self._queued[name]

    def active_total(self) -> int:
        return self._active_total

    def queued_total(self) -> int:
        return sum(self._queued.values())

    def next_wakeup(self) -> float | None:
        """The monotonic time by which :meth:`tick` should next be called, or None.

        Cron fires are mapped to the monotonic clock through the last ``(wall, mono)``
        seen, and are never further away than ``max_sleep_s`` so that a wall-clock
        step is noticed.  A past deadline means "now".
        """
        if self._shutting_down:
            return None
        if self._pending or (self._queue and self._active_total < self._max_concurrent):
            return self._mono
        deadlines: list[float] = []
        if self._retries:  # a retry that will be dropped costs one spurious wake-up
            deadlines.append(self._retries[0].due)
        if not self._paused:
            self._clean(self._interval_heap)
            if self._interval_heap:
                deadlines.append(self._interval_heap[0][0])
            self._clean(self._cron_heap)
            if self._cron_heap:
                due = self._cron_heap[0][0]
                to_due = (due - self._wall).total_seconds()
                deadlines.append(self._mono + min(to_due, self._max_sleep))
        return min(deadlines, default=None)

    # --- driving -------------------------------------------------------------

    def startup(self, wall: datetime, mono: float) -> list[Action]:
        """Queue the ``@reboot`` and ``run_on_startup`` runs (once) and start what fits.

        Only enabled jobs, and none while scheduling is paused: these runs are
        scheduling, not manual requests.
        """
        self._observe(wall, mono)
        if self._started_up or self._shutting_down:
            return []
        self._started_up = True
        actions: list[Action] = []
        if not self._paused:
            for spec in self._specs.values():
                on_startup = spec.run_on_startup or isinstance(spec.schedule, RebootSchedule)
                if on_startup and self._enabled(spec):
                    request = self._request(spec.name, Trigger.STARTUP, 1, wall)
                    self._fire(request, spec, actions)
        actions.extend(self._start_queued())
        return actions

    def tick(self, wall: datetime, mono: float) -> list[Action]:
        """Everything to do now: skips, then starts in ``scheduled_at`` order."""
        self._observe(wall, mono)
        if self._shutting_down:
            return []
        actions, self._pending = self._pending, []
        if not self._paused:
            self._fire_due_cron(wall, actions)
            self._fire_due_intervals(wall, mono, actions)
        self._fire_due_retries(mono, actions)
        actions.extend(self._start_queued())
        return actions

    def request_run(self, name: str, wall: datetime, mono: float) -> RunRequest:
        """Queue a manual run of ``name``; its :class:`StartRun` comes out of :meth:`tick`.

        Works for disabled jobs and while paused.  Raises :class:`JobNotFound`, or
        :class:`JobBusy` for a singleton job with a run active or queued.
        """
        self._observe(wall, mono)
        spec = self._lookup(name)
        if self._shutting_down:
            raise ShuttingDown()
        if spec.singleton and self._busy(name):
            raise JobBusy(name)
        request = self._request(name, Trigger.MANUAL, 1, wall)
        self._enqueue(request, spec)
        return request

    def on_started(self, run_id: str) -> None:
        """The daemon spawned the run (bookkeeping only; the slot was already taken)."""
        run = self._runs.get(run_id)
        if run is not None and run.state is RunState.STARTING:
            run.transition(RunState.RUNNING)

    def on_finished(self, result: RunResult, wall: datetime, mono: float) -> None:
        """Free the run's slot and schedule a retry for a failure with attempts left.

        A result for an unknown run, or for a job no longer in the registry, is
        accepted quietly.
        """
        self._observe(wall, mono)
        run = self._finish(result.run_id)
        if run is None or self._shutting_down or not result.status.is_failure:
            return
        spec = self._specs.get(run.request.job_name)
        if spec is None or run.request.attempt > spec.retries:
            return
        delay = spec.retry_delay_ms / 1000 * 2 ** (run.request.attempt - 1)
        retry = _Retry(due=mono + delay, seq=next(self._seq), request=run.request)
        heapq.heappush(self._retries, retry)

    def on_not_started(self, run_id: str) -> None:
        """The daemon did not start a :class:`StartRun` (e.g. the store refused it).

        Frees the slot; never retried.
        """
        self._finish(run_id)

    def on_registry(self, registry: Registry, wall: datetime, mono: float) -> RegistryDiff:
        """Apply a new registry as a difference; return what changed.

        Added and changed jobs are scheduled from now; unchanged jobs keep their
        timers.  Removed jobs are unscheduled: their runs in progress finish, their
        queued runs are dropped and come out of the next :meth:`tick` as skips.
        Changed settings (``max_concurrent``, ``enabled``) take effect.
        """
        self._observe(wall, mono)
        old_specs, old_settings = self._specs, self._registry.settings
        diff = diff_registries(self._registry, registry)
        self._registry = registry
        self._specs = dict(registry.jobs)
        self._max_concurrent = registry.settings.max_concurrent
        removed = frozenset(diff.removed)
        for name in removed:
            self._unschedule(name)
        if removed:
            self._drop_queued(lambda run: run.request.job_name in removed, SKIP_REMOVED)
        if registry.settings.enabled != old_settings.enabled:
            self._set_paused(not registry.settings.enabled, wall, mono)
        elif not self._paused:
            retimed = [
                name
                for name in diff.changed
                if not self._keeps_timer(old_specs[name], self._specs[name])
            ]
            self._schedule_all((*diff.added, *retimed), wall, mono)
        return diff

    def set_override(
        self,
        name: str,
        enabled: bool | None,
        *,
        wall: datetime | None = None,
        mono: float | None = None,
    ) -> None:
        """Enable or disable ``name`` at runtime (None = follow the registry).

        Disabling drops the job's timer (and a retry that comes due while it is
        disabled) but not its active or queued runs; enabling schedules it from now
        (the given time, else the last time seen).
        """
        spec = self._lookup(name)
        wall, mono = self._now(wall, mono)
        if enabled is None:
            self._overrides.pop(name, None)
        else:
            self._overrides[name] = enabled
        if self._paused:
            return
        if self._enabled(spec):
            if not self._scheduled(name):
                self._schedule(spec, wall, mono)
        else:
            self._unschedule(name)
            self._drop_queued(
                lambda run: (
                    run.request.job_name == name and run.request.trigger is not Trigger.MANUAL
                ),
                SKIP_DISABLED,
            )

    def set_paused(
        self, paused: bool, *, wall: datetime | None = None, mono: float | None = None
    ) -> None:
        """Pause or resume all scheduling; resuming schedules every job from now."""
        self._set_paused(paused, *self._now(wall, mono))

    def begin_shutdown(self) -> list[RecordSkip]:
        """Stop starting runs; return the queued runs that will now never start.

        Afterwards :meth:`tick` returns nothing and no retry is scheduled; results
        of active runs are still accepted.
        """
        self._shutting_down = True
        self._drop_queued(lambda run: True, SKIP_SHUTDOWN)
        skips = [action for action in self._pending if isinstance(action, RecordSkip)]
        self._pending.clear()
        self._retries.clear()
        return skips

    # --- firing --------------------------------------------------------------

    def _fire_due_cron(self, wall: datetime, actions: list[Action]) -> None:
        # Jobs due together mostly share their schedule: compute each next fire once.
        memo: _FireMemo = {}
        # Pushing may rebuild the heap (see _compact): always go through self.
        while self._cron_heap and self._cron_heap[0][0] <= wall:
            due, _, name, generation = heapq.heappop(self._cron_heap)
            timer = self._timers.get(name)
            if timer is None or timer.generation != generation:
                continue
            spec = self._specs[name]
            high_water = self._high_water.get(name)
            if high_water is None or due > high_water:
                self._high_water[name] = due
                self._fire(self._request(name, Trigger.SCHEDULE, 1, due), spec, actions)
            self._push_cron(name, timer, _next_cron(spec, wall, self._high_water.get(name), memo))

    def _fire_due_intervals(self, wall: datetime, mono: float, actions: list[Action]) -> None:
        while self._interval_heap and self._interval_heap[0][0] <= mono:
            due, _, name, generation = heapq.heappop(self._interval_heap)
            timer = self._timers.get(name)
            if timer is None or timer.generation != generation:
                continue
            scheduled_at = wall - timedelta(seconds=mono - due)
            high_water = self._high_water.get(name)
            if high_water is not None and scheduled_at <= high_water:
                # The wall clock went back: keep (job, scheduled_at) unique.
                scheduled_at = high_water + timedelta(microseconds=1)
            self._high_water[name] = scheduled_at
            request = self._request(name, Trigger.SCHEDULE, 1, scheduled_at)
            self._fire(request, self._specs[name], actions)
            timer.k = math.floor((mono - timer.anchor) / timer.every) + 1
            while timer.due_mono is not None and timer.due_mono <= mono:
                timer.k += 1
            self._push_interval(name, timer)

    def _fire_due_retries(self, mono: float, actions: list[Action]) -> None:
        while self._retries and self._retries[0].due <= mono:
            failed = heapq.heappop(self._retries).request
            spec = self._specs.get(failed.job_name)
            if spec is None or self._paused or not self._enabled(spec):
                if spec is not None:  # record why the retry never ran
                    request = self._request(
                        failed.job_name, Trigger.RETRY, failed.attempt + 1, failed.scheduled_at
                    )
                    actions.append(
                        RecordSkip(request=request, spec=spec, reason=SKIP_RETRY_DROPPED)
                    )
                continue
            request = self._request(
                failed.job_name, Trigger.RETRY, failed.attempt + 1, failed.scheduled_at
            )
            self._fire(request, spec, actions)

    def _fire(self, request: RunRequest, spec: JobSpec, actions: list[Action]) -> None:
        """Queue ``request``, or skip it if its singleton job is busy."""
        if spec.singleton and self._busy(spec.name):
            actions.append(RecordSkip(request=request, spec=spec, reason=SKIP_SINGLETON))
        else:
            self._enqueue(request, spec)

    def _start_queued(self) -> list[Action]:
        starts: list[Action] = []
        while self._queue and self._active_total < self._max_concurrent:
            _, _, run_id = heapq.heappop(self._queue)
            run = self._runs.get(run_id)
            if run is None or run.state is not RunState.QUEUED:
                continue
            name = run.request.job_name
            run.spec = self._specs.get(name, run.spec)
            run.transition(RunState.STARTING)
            _decrement(self._queued, name)
            self._active[name] += 1
            self._active_total += 1
            starts.append(StartRun(request=run.request, spec=run.spec))
        return starts

    # --- runs ----------------------------------------------------------------

    def _request(
        self, name: str, trigger: Trigger, attempt: int, scheduled_at: datetime
    ) -> RunRequest:
        return RunRequest(
            run_id=self._new_id(),
            job_name=name,
            trigger=trigger,
            attempt=attempt,
            scheduled_at=scheduled_at,
        )

    def _enqueue(self, request: RunRequest, spec: JobSpec) -> None:
        self._runs[request.run_id] = _Run(request=request, spec=spec)
        self._queued[request.job_name] += 1
        heapq.heappush(self._queue, (request.scheduled_at, next(self._seq), request.run_id))

    def _finish(self, run_id: str) -> _Run | None:
        run = self._runs.get(run_id)
        if run is None or run.state not in _ACTIVE:
            return None
        run.transition(RunState.FINISHED)
        del self._runs[run_id]
        _decrement(self._active, run.request.job_name)
        self._active_total -= 1
        return run

    def _drop_queued(self, select: Callable[[_Run], bool], reason: str) -> None:
        for run_id, run in list(self._runs.items()):
            if run.state is RunState.QUEUED and select(run):
                run.transition(RunState.DROPPED)
                del self._runs[run_id]
                _decrement(self._queued, run.request.job_name)
                self._pending.append(RecordSkip(request=run.request, spec=run.spec, reason=reason))

    def _busy(self, name: str) -> bool:
        return self._active[name] > 0 or self._queued[name] > 0

    # --- timers --------------------------------------------------------------

    def _schedule_all(
        self, names: Iterable[str], wall: datetime, mono: float, *, bulk: bool = False
    ) -> None:
        """Schedule ``names`` from now; ``bulk`` rebuilds the heaps in one pass."""
        memo: _FireMemo = {}
        for name in names:
            spec = self._specs[name]
            if self._enabled(spec):
                self._schedule(spec, wall, mono, push=not bulk, memo=memo)
            else:
                self._unschedule(name)
        if bulk:
            self._rebuild_heaps()

    def _schedule(
        self,
        spec: JobSpec,
        wall: datetime,
        mono: float,
        *,
        push: bool = True,
        memo: _FireMemo | None = None,
    ) -> None:
        """(Re)start ``spec``'s timer from now, invalidating any older heap entry."""
        timer = _Timer(generation=next(self._seq))
        self._timers[spec.name] = timer
        schedule = spec.schedule
        if isinstance(schedule, IntervalSchedule):
            timer.anchor, timer.every, timer.k = mono, schedule.every_ms / 1000, 1
            if push:
                self._push_interval(spec.name, timer)
        elif isinstance(schedule, CronSchedule):
            due = _next_cron(spec, wall, self._high_water.get(spec.name), memo)
            if push:
                self._push_cron(spec.name, timer, due)
            else:
                timer.due_wall = due

    def _keeps_timer(self, old: JobSpec, new: JobSpec) -> bool:
        """A changed job whose schedule and enablement did not change keeps its timer."""
        return (
            old.schedule == new.schedule
            and self._enabled(old) == self._enabled(new)
            and self._scheduled(new.name)
        )

    def _unschedule(self, name: str) -> None:
        self._timers.pop(name, None)

    def _scheduled(self, name: str) -> bool:
        timer = self._timers.get(name)
        return timer is not None and (timer.due_wall is not None or timer.every > 0)

    def _push_cron(self, name: str, timer: _Timer, due: datetime | None) -> None:
        timer.due_wall = due
        if due is not None:
            heapq.heappush(self._cron_heap, (due, next(self._seq), name, timer.generation))
            self._compact(self._cron_heap)

    def _push_interval(self, name: str, timer: _Timer) -> None:
        due = timer.due_mono
        if due is not None:
            heapq.heappush(self._interval_heap, (due, next(self._seq), name, timer.generation))
            self._compact(self._interval_heap)

    def _rebuild_heaps(self) -> None:
        """Heaps of the live timers only, built in O(n)."""
        self._cron_heap = []
        self._interval_heap = []
        for name, timer in self._timers.items():
            if timer.due_wall is not None:
                self._cron_heap.append((timer.due_wall, next(self._seq), name, timer.generation))
            elif timer.due_mono is not None:
                self._interval_heap.append(
                    (timer.due_mono, next(self._seq), name, timer.generation)
                )
        heapq.heapify(self._cron_heap)
        heapq.heapify(self._interval_heap)

    def _compact(self, heap: list[tuple[object, int, str, int]]) -> None:
        """Rebuild when stale entries outnumber live timers (keeps memory O(n))."""
        if len(heap) > 2 * len(self._timers) + 64:
            self._rebuild_heaps()

    def _clean(self, heap: list[tuple[object, int, str, int]]) -> None:
        """Drop stale entries from the top of ``heap``."""
        while heap:
            timer = self._timers.get(heap[0][2])
            if timer is not None and timer.generation == heap[0][3]:
                return
            heapq.heappop(heap)

    def _set_paused(self, paused: bool, wall: datetime, mono: float) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        if paused:
            self._timers.clear()
            self._rebuild_heaps()
        else:
            self._schedule_all(self._specs, wall, mono, bulk=True)

    # --- time ----------------------------------------------------------------

    def _observe(self, wall: datetime, mono: float) -> None:
        """Remember the time; on a wall-clock step backward, recompute cron fires."""
        _check_aware(wall)
        offset = _offset(wall, mono)
        stepped_back = offset < self._offset - self._jump_threshold
        self._wall, self._mono, self._offset = wall, mono, offset
        if stepped_back and not self._paused:
            self._recompute_cron(wall)

    def _recompute_cron(self, wall: datetime) -> None:
        """Next fire after ``max(wall, high-water)`` for every cron job: O(n), rare.

        A step forward needs no recomputation: fires in the skipped span are due
        and coalesce into one run at the next tick.
        """
        memo: _FireMemo = {}
        for name, timer in self._timers.items():
            if timer.due_wall is not None:
                spec = self._specs[name]
                timer.due_wall = _next_cron(spec, wall, self._high_water.get(name), memo)
                timer.generation = next(self._seq)
        self._rebuild_heaps()

    def _now(self, wall: datetime | None, mono: float | None) -> tuple[datetime, float]:
        if wall is None or mono is None:
            return self._wall, self._mono
        self._observe(wall, mono)
        return wall, mono

    # --- lookups -------------------------------------------------------------

    def _lookup(self, name: str) -> JobSpec:
        spec = self._specs.get(name)
        if spec is None:
            raise JobNotFound.among(name, self._specs)
        return spec

    def _enabled(self, spec: JobSpec) -> bool:
        return self._overrides.get(spec.name, spec.enabled)


def _next_cron(
    spec: JobSpec,
    wall: datetime,
    high_water: datetime | None,
    memo: _FireMemo | None = None,
) -> datetime | None:
    """The job's next fire after ``max(wall, high_water)``; ``memo`` shares the
    computation between jobs with the same schedule within one pass."""
    schedule = spec.schedule
    assert isinstance(schedule, CronSchedule)
    after = wall if high_water is None else max(wall, high_water)
    if memo is None:
        return next_fire(schedule, after)
    key = (schedule, after)
    if key not in memo:
        memo[key] = next_fire(schedule, after)
    return memo[key]


def _decrement(counter: Counter[str], name: str) -> None:
    counter[name] -= 1
    if counter[name] <= 0:
        del counter[name]


def _offset(wall: datetime, mono: float) -> float:
    return wall.timestamp() - mono


def _check_aware(wall: datetime) -> None:
    if wall.tzinfo is None or wall.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {wall!r}")
