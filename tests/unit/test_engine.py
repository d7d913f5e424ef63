"""The sans-IO planner, driven step by step with a FakeClock (no event loop, no sleeps)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import cronhub.engine as engine_module
from cronhub.engine import SKIP_DISABLED, Action, Engine, RecordSkip, RunState, StartRun
from cronhub.errors import JobBusy, JobNotFound
from cronhub.model import (
    CronSchedule,
    IntervalSchedule,
    JobSpec,
    RebootSchedule,
    Registry,
    RunRequest,
    RunResult,
    RunStatus,
    SchedulerSettings,
    Trigger,
)
from cronhub.schedule import next_fire, parse_schedule
from cronhub.testing import FakeClock

NOW = datetime(2024, 1, 1, 10, 0, 30, tzinfo=UTC)
"""Half a minute past 10:00, so minute crons are not due at the start instant."""


# --- helpers -----------------------------------------------------------------


def every(seconds: int) -> IntervalSchedule:
    return IntervalSchedule(every_ms=seconds * 1000, text=f"every {seconds}s")


def cron(expr: str, timezone: str = "UTC") -> CronSchedule:
    schedule = parse_schedule(expr, timezone=timezone)
    assert isinstance(schedule, CronSchedule)
    return schedule


def job(name: str, schedule: object = None, **fields: object) -> JobSpec:
    return JobSpec(
        name=name,
        schedule=schedule or every(60),
        command="true",
        **fields,  # type: ignore[arg-type]
    )


def registry(*jobs: JobSpec, **settings: object) -> Registry:
    return Registry(
        path="/etc/cronhub/jobs.toml",
        settings=SchedulerSettings(**settings),  # type: ignore[arg-type]
        jobs={spec.name: spec for spec in jobs},
    )


class Harness:
    """An engine, its fake clock, and a fake daemon that records what it was told."""

    def __init__(self, *jobs: JobSpec, clock: FakeClock | None = None, **kwargs: object) -> None:
        self.clock = clock or FakeClock(NOW)
        ids = itertools.count(1)
        self.registry = registry(*jobs, **kwargs.pop("settings", {}))  # type: ignore[arg-type]
        self.engine = Engine(
            self.registry,
            wall=self.clock.now(),
            mono=self.clock.monotonic(),
            new_id=lambda: f"run-{next(ids)}",
            **kwargs,  # type: ignore[arg-type]
        )
        self.running: dict[str, RunRequest] = {}
        self.started: list[RunRequest] = []
        self.skipped: list[RecordSkip] = []

    def take(self, actions: Iterable[Action]) -> list[Action]:
        actions = list(actions)
        for action in actions:
            if isinstance(action, StartRun):
                self.running[action.request.run_id] = action.request
                self.started.append(action.request)
                self.engine.on_started(action.request.run_id)
            else:
                self.skipped.append(action)
        return actions

    def startup(self) -> list[Action]:
        return self.take(self.engine.startup(self.clock.now(), self.clock.monotonic()))

    def tick(self) -> list[Action]:
        return self.take(self.engine.tick(self.clock.now(), self.clock.monotonic()))

    def run_for(self, seconds: float, step: float = 1.0) -> None:
        """Tick every ``step`` seconds, finishing every run at once with success."""
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end:
            self.clock.advance(step)
            self.tick()
            for run_id in list(self.running):
                self.finish(run_id)

    def finish(self, run_id: str, status: RunStatus = RunStatus.SUCCESS) -> None:
        request = self.running.pop(run_id)
        now = self.clock.now()
        result = RunResult(
            run_id=run_id,
            job_name=request.job_name,
            status=status,
            started_at=now,
            completed_at=now,
            duration_ms=0,
        )
        self.engine.on_finished(result, now, self.clock.monotonic())

    def finish_job(self, name: str, status: RunStatus = RunStatus.SUCCESS) -> None:
        for run_id, request in list(self.running.items()):
            if request.job_name == name:
                self.finish(run_id, status)

    def request_run(self, name: str) -> RunRequest:
        return self.engine.request_run(name, self.clock.now(), self.clock.monotonic())

    def reload(self, *jobs: JobSpec, **settings: object) -> engine_module.RegistryDiff:
        self.registry = registry(*jobs, **settings)
        return self.engine.on_registry(self.registry, self.clock.now(), self.clock.monotonic())

    def scheduled(self, name: str | None = None) -> list[datetime]:
        return [r.scheduled_at for r in self.started if name is None or r.job_name == name]


def starts(actions: Iterable[Action]) -> list[RunRequest]:
    return [a.request for a in actions if isinstance(a, StartRun)]


def skips(actions: Iterable[Action]) -> list[RecordSkip]:
    return [a for a in actions if isinstance(a, RecordSkip)]


# --- intervals ---------------------------------------------------------------


def test_interval_first_fires_one_interval_after_start() -> None:
    h = Harness(job("poll", every(60)))
    assert h.startup() == []
    h.clock.advance(59.9)
    assert h.tick() == []
    h.clock.advance(0.1)
    [request] = starts(h.tick())
    assert request.job_name == "poll"
    assert request.trigger is Trigger.SCHEDULE
    assert request.attempt == 1
    assert request.scheduled_at == NOW + timedelta(seconds=60)


def test_interval_with_run_on_startup_also_fires_at_once() -> None:
    h = Harness(job("poll", every(60), run_on_startup=True))
    [request] = starts(h.startup())
    assert request.trigger is Trigger.STARTUP
    assert request.scheduled_at == NOW
    h.finish(request.run_id)
    h.clock.advance(60)
    assert [r.trigger for r in starts(h.tick())] == [Trigger.SCHEDULE]


def test_startup_runs_only_once() -> None:
    h = Harness(job("boot", RebootSchedule()))
    assert len(starts(h.startup())) == 1
    assert h.startup() == []


def test_reboot_job_runs_at_startup_and_never_on_a_timer() -> None:
    h = Harness(job("boot", RebootSchedule()))
    [request] = starts(h.startup())
    assert request.trigger is Trigger.STARTUP
    assert h.engine.next_run("boot") is None
    h.run_for(3 * 86_400, step=3_600)
    assert len(h.started) == 1


def test_interval_does_not_drift_over_days() -> None:
    h = Harness(job("poll", every(61)))
    # Ticks arrive late by an irregular amount each time; fires stay on the grid.
    h.clock.advance(61.3)
    for lateness in itertools.islice(itertools.cycle([0.4, 0.01, 2.5, 0.0]), 3 * 86_400 // 61):
        h.tick()
        h.finish_job("poll")
        due = h.engine.next_wakeup()
        assert due is not None
        h.clock.advance(due - h.clock.monotonic() + lateness)
    offsets = {(at - NOW).total_seconds() % 61 for at in h.scheduled("poll")}
    assert offsets == {0.0}
    assert h.scheduled("poll")[-1] >= NOW + timedelta(days=2, hours=23)


def test_missed_intervals_coalesce_into_one_run() -> None:
    h = Harness(job("poll", every(10)))
    h.clock.advance(95)  # the daemon was busy: fires at 10..90 were missed
    [request] = starts(h.tick())
    assert request.scheduled_at == NOW + timedelta(seconds=10)
    h.finish(request.run_id)
    assert h.engine.next_wakeup() == pytest.approx(h.clock.monotonic() + 5)
    h.clock.advance(5)
    assert [r.scheduled_at for r in starts(h.tick())] == [NOW + timedelta(seconds=100)]


def test_interval_scheduled_at_is_the_nominal_fire_time_not_the_tick_time() -> None:
    h = Harness(job("poll", every(60)))
    h.clock.advance(61.5)
    [request] = starts(h.tick())
    assert request.scheduled_at == NOW + timedelta(seconds=60)


# --- cron --------------------------------------------------------------------


def test_cron_fires_on_time() -> None:
    h = Harness(job("hourly", cron("0 * * * *")))
    assert h.engine.next_run("hourly") == datetime(2024, 1, 1, 11, tzinfo=UTC)
    h.clock.advance_to(datetime(2024, 1, 1, 10, 59, 59, 999_000, tzinfo=UTC))
    assert h.tick() == []
    h.clock.advance_to(datetime(2024, 1, 1, 11, tzinfo=UTC))
    [request] = starts(h.tick())
    assert request.scheduled_at == datetime(2024, 1, 1, 11, tzinfo=UTC)
    assert h.engine.next_run("hourly") == datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_cron_in_a_time_zone_fires_at_local_time() -> None:
    h = Harness(job("berlin", cron("0 2 * * *", "Europe/Berlin")))
    # 02:00 in Berlin in winter is 01:00 UTC.
    assert h.engine.next_run("berlin") == datetime(2024, 1, 2, 1, tzinfo=UTC)


def test_cron_next_wakeup_maps_wall_due_to_monotonic_time() -> None:
    h = Harness(job("minutely", cron("* * * * *")))
    assert h.engine.next_wakeup() == pytest.approx(h.clock.monotonic() + 30)


def test_cron_next_wakeup_is_capped_so_a_wall_step_is_noticed() -> None:
    h = Harness(job("daily", cron("0 3 * * *")), max_sleep_s=30)
    assert h.engine.next_wakeup() == pytest.approx(h.clock.monotonic() + 30)


def test_missed_cron_fires_coalesce_into_one_run() -> None:
    h = Harness(job("minutely", cron("* * * * *")))
    h.clock.advance(10 * 60)  # asleep for ten minutes
    [request] = starts(h.tick())
    assert request.scheduled_at == datetime(2024, 1, 1, 10, 1, tzinfo=UTC)
    assert h.engine.next_run("minutely") == datetime(2024, 1, 1, 10, 11, tzinfo=UTC)


def test_cron_that_never_fires_is_not_scheduled() -> None:
    # The registry refuses such an expression; the engine still copes with None.
    never = CronSchedule(expr="0 0 30 2 *", text="0 0 30 2 *", timezone="UTC")
    h = Harness(job("never", never))
    assert h.engine.next_run("never") is None
    assert h.engine.next_wakeup() is None


# --- singleton and overlap ---------------------------------------------------


def test_singleton_fire_while_running_is_recorded_as_skipped() -> None:
    h = Harness(job("slow", every(60)))
    h.clock.advance(60)
    [first] = starts(h.tick())
    h.clock.advance(60)
    actions = h.tick()
    assert starts(actions) == []
    [skip] = skips(actions)
    assert skip.request.job_name == "slow"
    assert skip.request.trigger is Trigger.SCHEDULE
    assert skip.request.scheduled_at == NOW + timedelta(seconds=120)
    assert skip.request.run_id != first.run_id
    assert "singleton" in skip.reason
    h.finish(first.run_id)
    h.clock.advance(60)
    assert len(starts(h.tick())) == 1


def test_overlap_is_allowed_when_not_singleton() -> None:
    h = Harness(job("fanout", every(60), singleton=False))
    h.clock.advance(60)
    h.tick()
    h.clock.advance(60)
    h.tick()
    assert h.engine.active("fanout") == 2
    assert h.skipped == []


def test_singleton_fire_while_queued_is_skipped() -> None:
    h = Harness(job("hog", every(1_000)), job("poll", every(60)), settings={"max_concurrent": 1})
    h.request_run("hog")
    h.tick()
    h.clock.advance(60)
    assert h.tick() == []  # poll queued behind hog
    h.clock.advance(60)
    [skip] = skips(h.tick())
    assert skip.request.job_name == "poll"


# --- retries -----------------------------------------------------------------


def test_failed_run_is_retried_with_doubling_delay_and_same_scheduled_at() -> None:
    h = Harness(job("flaky", every(3_600), retries=3, retry_delay_ms=10_000))
    h.clock.advance(3_600)
    [first] = starts(h.tick())
    attempts = [first]
    for delay in (10, 20, 40):
        h.finish(attempts[-1].run_id, RunStatus.FAILED)
        h.clock.advance(delay - 0.001)
        assert h.tick() == []
        h.clock.advance(0.001)
        [retry] = starts(h.tick())
        attempts.append(retry)
    assert [r.attempt for r in attempts] == [1, 2, 3, 4]
    assert [r.trigger for r in attempts] == [Trigger.SCHEDULE] + [Trigger.RETRY] * 3
    assert {r.scheduled_at for r in attempts} == {first.scheduled_at}
    assert len({r.run_id for r in attempts}) == 4
    h.finish(attempts[-1].run_id, RunStatus.FAILED)
    h.clock.advance(1_000)
    assert h.tick() == []  # retries exhausted; the next hourly fire is later


def test_timeout_is_retried() -> None:
    h = Harness(job("slow", every(3_600), retries=1, retry_delay_ms=1_000))
    h.clock.advance(3_600)
    [first] = starts(h.tick())
    h.finish(first.run_id, RunStatus.TIMEOUT)
    h.clock.advance(1)
    assert [r.attempt for r in starts(h.tick())] == [2]


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.INTERRUPTED])
def test_success_and_interrupted_runs_are_never_retried(status: RunStatus) -> None:
    h = Harness(job("job", every(3_600), retries=3, retry_delay_ms=1_000))
    h.clock.advance(3_600)
    [first] = starts(h.tick())
    h.finish(first.run_id, status)
    assert h.engine.next_wakeup() == pytest.approx(h.clock.monotonic() + 3_600)


def test_manual_run_failure_is_retried_as_retry_of_that_run() -> None:
    h = Harness(job("job", every(3_600), retries=1, retry_delay_ms=1_000))
    manual = h.request_run("job")
    h.tick()
    h.finish(manual.run_id, RunStatus.FAILED)
    h.clock.advance(1)
    [retry] = starts(h.tick())
    assert (retry.trigger, retry.attempt, retry.scheduled_at) == (
        Trigger.RETRY,
        2,
        manual.scheduled_at,
    )


def test_retry_of_a_removed_job_is_dropped() -> None:
    h = Harness(job("gone", every(3_600), retries=2), job("stays"))
    h.clock.advance(3_600)
    h.tick()
    h.finish_job("gone", RunStatus.FAILED)
    h.finish_job("stays")
    h.reload(job("stays"))
    h.clock.advance(60)
    assert [r.job_name for r in starts(h.tick())] == ["stays"]


# --- max_concurrent ----------------------------------------------------------


def test_runs_over_max_concurrent_wait_in_scheduled_order_and_start_when_a_slot_frees() -> None:
    jobs = [job(f"j{i}", every(10 + i)) for i in range(4)]
    h = Harness(*jobs, settings={"max_concurrent": 2})
    h.clock.advance(20)  # all four due, at 10, 11, 12 and 13 s
    assert [r.job_name for r in starts(h.tick())] == ["j0", "j1"]
    assert h.engine.queued_total() == 2
    assert h.engine.active_total() == 2
    assert h.tick() == []
    h.finish_job("j1")
    assert h.engine.next_wakeup() == h.clock.monotonic()
    assert [r.job_name for r in starts(h.tick())] == ["j2"]
    h.finish_job("j0")
    [late] = starts(h.tick())
    assert late.job_name == "j3"
    assert late.scheduled_at == NOW + timedelta(seconds=13)


def test_a_retry_keeps_its_place_in_the_queue_by_original_scheduled_time() -> None:
    h = Harness(
        job("a", every(100), retries=1, retry_delay_ms=1_000),
        job("b", every(150)),
        settings={"max_concurrent": 1},
    )
    h.clock.advance(100)
    [a] = starts(h.tick())
    h.clock.advance(50)
    h.tick()  # b queued (scheduled at 150)
    h.finish(a.run_id, RunStatus.FAILED)  # retry of a (scheduled at 100) due at 151
    h.clock.advance(1)
    [first] = starts(h.tick())
    assert (first.job_name, first.trigger) == ("a", Trigger.RETRY)


def test_start_run_emission_takes_the_slot_until_finished_or_not_started() -> None:
    h = Harness(job("a", every(10), singleton=False), settings={"max_concurrent": 1})
    h.clock.advance(10)
    [first] = starts(h.tick())
    h.clock.advance(10)
    assert h.tick() == []
    h.engine.on_not_started(first.run_id)  # e.g. the store refused the row
    assert len(starts(h.tick())) == 1


# --- manual runs -------------------------------------------------------------


def test_manual_run_starts_on_next_tick() -> None:
    h = Harness(job("report", every(3_600)))
    request = h.request_run("report")
    assert (request.trigger, request.attempt, request.scheduled_at) == (Trigger.MANUAL, 1, NOW)
    assert h.engine.next_wakeup() == h.clock.monotonic()
    assert starts(h.tick()) == [request]


def test_manual_run_of_unknown_job_names_close_matches() -> None:
    h = Harness(job("backup-db"), job("backup-files"), job("rotate-logs"))
    with pytest.raises(JobNotFound) as caught:
        h.request_run("backup-dc")
    assert caught.value.candidates[0] == "backup-db"
    assert "rotate-logs" not in caught.value.candidates


def test_manual_run_of_a_busy_singleton_raises_job_busy() -> None:
    h = Harness(job("report"))
    h.request_run("report")
    with pytest.raises(JobBusy):
        h.request_run("report")  # queued
    h.tick()
    with pytest.raises(JobBusy):
        h.request_run("report")  # running


def test_manual_runs_overlap_when_not_singleton() -> None:
    h = Harness(job("report", singleton=False))
    h.request_run("report")
    h.request_run("report")
    assert len(starts(h.tick())) == 2


def test_manual_run_works_for_disabled_job_and_while_paused() -> None:
    h = Harness(job("off", enabled=False), settings={"enabled": False})
    h.request_run("off")
    assert len(starts(h.tick())) == 1


# --- enable, disable, pause --------------------------------------------------


def test_disabled_job_is_not_scheduled() -> None:
    h = Harness(job("off", every(10), enabled=False, run_on_startup=True))
    assert h.startup() == []
    assert h.engine.is_enabled("off") is False
    assert h.engine.next_run("off") is None
    h.run_for(100, step=10)
    assert h.started == []


def test_override_disables_and_enables_from_now() -> None:
    h = Harness(job("poll", every(60)))
    h.clock.advance(30)
    h.engine.set_override("poll", False, wall=h.clock.now(), mono=h.clock.monotonic())
    assert h.engine.is_enabled("poll") is False
    h.clock.advance(60)
    assert h.tick() == []
    h.engine.set_override("poll", True, wall=h.clock.now(), mono=h.clock.monotonic())
    assert h.engine.next_run("poll") == h.clock.now() + timedelta(seconds=60)


def test_override_none_follows_the_registry_again() -> None:
    h = Harness(job("off", every(60), enabled=False), overrides={"off": True})
    assert h.engine.is_enabled("off") is True
    h.engine.set_override("off", None)
    assert h.engine.is_enabled("off") is False
    assert h.engine.next_run("off") is None


def test_disabling_keeps_the_run_in_progress_and_skips_queued_scheduled_runs() -> None:
    h = Harness(job("a", every(60)), job("b", every(60)), settings={"max_concurrent": 1})
    h.clock.advance(60)
    h.tick()  # a runs, b queued
    h.engine.set_override("a", False)
    h.engine.set_override("b", False)
    assert h.engine.active("a") == 1
    h.finish_job("a")
    actions = h.tick()
    assert starts(actions) == []
    assert [(a.request.job_name, a.reason) for a in actions] == [("b", SKIP_DISABLED)]


def test_disabling_keeps_a_queued_manual_run() -> None:
    h = Harness(job("a", every(60)), job("b", every(600)), settings={"max_concurrent": 1})
    h.clock.advance(60)
    h.tick()  # a runs
    h.engine.request_run("b", h.clock.now(), h.clock.monotonic())
    h.tick()  # b queued behind a
    h.engine.set_override("b", False)
    h.finish_job("a")
    assert [r.job_name for r in starts(h.tick())] == ["b"]


def test_paused_scheduler_fires_nothing_and_resumes_from_now() -> None:
    h = Harness(job("poll", every(60)), job("boot", RebootSchedule()), settings={"enabled": False})
    assert h.engine.paused
    assert h.startup() == []
    assert h.engine.next_wakeup() is None
    h.run_for(600, step=60)
    assert h.started == []
    h.engine.set_paused(False, wall=h.clock.now(), mono=h.clock.monotonic())
    assert h.engine.next_run("poll") == h.clock.now() + timedelta(seconds=60)
    h.engine.set_paused(True)
    assert h.engine.next_run("poll") is None


def test_override_of_unknown_job_raises_job_not_found() -> None:
    h = Harness(job("poll"))
    with pytest.raises(JobNotFound):
        h.engine.set_override("pol", False)


# --- live registry edits -----------------------------------------------------


def test_registry_diff_keeps_unchanged_timers_exactly() -> None:
    h = Harness(job("keep", every(60)), job("hourly", cron("0 * * * *")), job("edit", every(60)))
    h.clock.advance(45)
    before = (h.engine.next_run("keep"), h.engine.next_run("hourly"))
    diff = h.reload(
        job("keep", every(60)),
        job("hourly", cron("0 * * * *")),
        job("edit", every(30)),
        job("new", every(60)),
    )
    assert diff.unchanged == ("keep", "hourly")
    assert diff.changed == ("edit",)
    assert diff.added == ("new",)
    assert diff.removed == ()
    assert (h.engine.next_run("keep"), h.engine.next_run("hourly")) == before
    assert h.engine.next_run("edit") == h.clock.now() + timedelta(seconds=30)
    assert h.engine.next_run("new") == h.clock.now() + timedelta(seconds=60)
    h.clock.advance(15)
    assert [r.job_name for r in starts(h.tick())] == ["keep"]


def test_changed_job_with_the_same_schedule_keeps_its_timer() -> None:
    h = Harness(job("poll", every(60)))
    h.clock.advance(45)
    before = h.engine.next_run("poll")
    diff = h.reload(replace(job("poll", every(60)), command="echo new"))
    assert diff.changed == ("poll",)
    assert h.engine.next_run("poll") == before
    h.clock.advance(15)
    [start] = h.tick()
    assert isinstance(start, StartRun)
    assert start.spec.command == "echo new"


def test_removed_job_active_run_finishes_and_queued_run_is_skipped() -> None:
    h = Harness(job("a", every(60)), job("b", every(60)), settings={"max_concurrent": 1})
    h.clock.advance(60)
    h.tick()  # a running, b queued
    h.reload()
    assert h.engine.job_names() == ()
    [skip] = skips(h.tick())
    assert skip.request.job_name == "b"
    assert "removed" in skip.reason
    assert h.engine.active("a") == 1
    h.finish_job("a", RunStatus.FAILED)
    assert h.engine.active_total() == 0
    assert h.engine.next_wakeup() is None


def test_readded_job_still_running_is_a_busy_singleton() -> None:
    spec = job("a", every(60))
    h = Harness(spec)
    h.clock.advance(60)
    h.tick()
    h.reload()
    h.reload(spec)
    with pytest.raises(JobBusy):
        h.request_run("a")


def test_registry_settings_change_applies_max_concurrent_and_pause() -> None:
    jobs = [job(f"j{i}", every(60)) for i in range(3)]
    h = Harness(*jobs, settings={"max_concurrent": 1})
    h.clock.advance(60)
    assert len(starts(h.tick())) == 1
    h.reload(*jobs, max_concurrent=3)
    assert len(starts(h.tick())) == 2
    h.reload(*jobs, max_concurrent=3, enabled=False)
    assert h.engine.paused
    assert all(h.engine.next_run(n) is None for n in h.engine.job_names())


# --- wall clock steps --------------------------------------------------------


def test_wall_jump_forward_an_hour_coalesces_cron_fires_into_one() -> None:
    h = Harness(job("minutely", cron("* * * * *")), job("poll", every(60)))
    h.run_for(60 * 5, step=15)
    h.clock.jump_wall(3_600)  # 10:05:30 -> 11:05:30
    h.run_for(60 * 5, step=15)
    fires = h.scheduled("minutely")
    assert len(fires) == len(set(fires))
    # Exactly one coalesced run for the skipped hour (the first fire it skipped) ...
    skipped_span = [
        at for at in fires if NOW + timedelta(minutes=5) < at <= NOW + timedelta(minutes=65)
    ]
    assert skipped_span == [datetime(2024, 1, 1, 10, 6, tzinfo=UTC)]
    # ... then back on the minute, none lost after it.
    assert fires[-5:] == [datetime(2024, 1, 1, 11, m, tzinfo=UTC) for m in range(6, 11)]
    # Intervals are unaffected: one run per 60 s of monotonic time.
    assert len(h.scheduled("poll")) == 10


def test_wall_jump_backward_an_hour_never_repeats_a_cron_fire() -> None:
    h = Harness(job("minutely", cron("* * * * *")), job("hourly", cron("0 * * * *")))
    h.run_for(60 * 60, step=15)
    h.clock.jump_wall(-3_600)
    h.run_for(90 * 60, step=15)
    minutely = h.scheduled("minutely")
    assert len(minutely) == len(set(minutely))
    assert minutely == sorted(minutely)
    assert h.scheduled("hourly") == [datetime(2024, 1, 1, 11, tzinfo=UTC)]
    # After the step the clock reads 10:00 again; the job resumes after 11:00.
    assert minutely[-1] == datetime(2024, 1, 1, 11, 30, tzinfo=UTC)


def test_wall_jump_backward_does_not_affect_intervals_or_repeat_their_keys() -> None:
    h = Harness(job("poll", every(60)))
    h.run_for(60 * 10, step=10)
    h.clock.jump_wall(-3_600)
    h.run_for(60 * 10, step=10)
    assert len(h.started) == 20
    assert [r.scheduled_at for r in h.started] == sorted({r.scheduled_at for r in h.started})


def test_wall_jump_backward_lets_a_never_fired_cron_fire_at_the_earlier_time() -> None:
    h = Harness(job("hourly", cron("0 * * * *")))
    h.clock.advance(60)
    h.clock.jump_wall(-3_600)  # 09:01:30
    h.tick()
    assert h.engine.next_run("hourly") == datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_small_wall_drift_is_not_a_jump() -> None:
    h = Harness(job("hourly", cron("0 * * * *")))
    h.clock.advance(600)
    h.clock.jump_wall(-0.5)
    h.tick()
    assert h.engine.next_run("hourly") == datetime(2024, 1, 1, 11, tzinfo=UTC)


# --- restart -----------------------------------------------------------------


def test_last_fired_prevents_refiring_a_recorded_tick_after_restart() -> None:
    spec = job("hourly", cron("0 * * * *"))
    first = Harness(spec, clock=FakeClock(datetime(2024, 1, 1, 10, 59, 50, tzinfo=UTC)))
    first.clock.advance(10)
    [request] = starts(first.tick())
    # The daemon restarts with its wall clock a little behind the recorded fire.
    clock = FakeClock(datetime(2024, 1, 1, 10, 59, 58, tzinfo=UTC), mono=5.0)
    second = Harness(spec, clock=clock, last_fired={"hourly": request.scheduled_at})
    assert second.engine.next_run("hourly") == datetime(2024, 1, 1, 12, tzinfo=UTC)
    second.run_for(120)
    assert second.started == []


def test_last_fired_in_the_past_does_not_delay_the_next_fire() -> None:
    h = Harness(
        job("hourly", cron("0 * * * *")),
        last_fired={"hourly": datetime(2023, 12, 31, tzinfo=UTC)},
    )
    assert h.engine.next_run("hourly") == datetime(2024, 1, 1, 11, tzinfo=UTC)


# --- shutdown ----------------------------------------------------------------


def test_shutdown_stops_starts_and_returns_queued_runs_as_skips() -> None:
    h = Harness(job("a", every(60), retries=3), job("b", every(60)), settings={"max_concurrent": 1})
    h.clock.advance(60)
    [running] = starts(h.tick())
    [skip] = h.engine.begin_shutdown()
    assert skip.request.job_name == "b"
    assert "shut down" in skip.reason
    h.finish(running.run_id, RunStatus.FAILED)  # accepted, never retried
    assert h.engine.active_total() == 0
    h.clock.advance(3_600)
    assert h.tick() == []
    assert h.engine.next_wakeup() is None


# --- lifecycle and bookkeeping -----------------------------------------------


def test_result_for_unknown_run_is_accepted_quietly() -> None:
    h = Harness(job("a"))
    h.running["stray"] = RunRequest(
        run_id="stray", job_name="zzz", trigger=Trigger.MANUAL, attempt=1, scheduled_at=NOW
    )
    h.finish("stray", RunStatus.FAILED)
    assert h.engine.active_total() == 0


def test_run_state_table_refuses_impossible_transitions() -> None:
    run = engine_module._Run(
        request=RunRequest(
            run_id="r", job_name="a", trigger=Trigger.MANUAL, attempt=1, scheduled_at=NOW
        ),
        spec=job("a"),
    )
    with pytest.raises(RuntimeError):
        run.transition(RunState.FINISHED)


def test_naive_wall_time_is_refused() -> None:
    h = Harness(job("a"))
    with pytest.raises(ValueError):
        h.engine.tick(datetime(2024, 1, 1), 0.0)


def test_next_wakeup_is_none_when_nothing_is_scheduled() -> None:
    assert Harness(job("boot", RebootSchedule())).engine.next_wakeup() is None


# --- scale -------------------------------------------------------------------


def test_ten_thousand_jobs_load_and_tick_in_work_proportional_to_due_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    def counting_next_fire(schedule: CronSchedule, after: datetime) -> datetime:
        nonlocal calls
        calls += 1
        minute = int(schedule.expr.split()[0])
        at = after.replace(minute=minute, second=0, microsecond=0)
        return at if at > after else at + timedelta(hours=1)

    monkeypatch.setattr(engine_module, "next_fire", counting_next_fire)
    # 10,000 hourly jobs spread over the minutes; 1,000 share minute 5.
    specs = [
        job(
            f"j{i:05}",
            CronSchedule(  # distinct texts: no two jobs share a schedule
                expr=f"{5 if i < 1_000 else 10 + i % 50} * * * *", text=f"{i}", timezone="UTC"
            ),
        )
        for i in range(10_000)
    ]
    h = Harness(*specs, clock=FakeClock(datetime(2024, 1, 1, 10, 0, tzinfo=UTC)))
    assert calls == 10_000
    h.clock.advance(4 * 60)
    assert h.tick() == []
    assert calls == 10_000
    h.clock.advance(60)
    actions = h.tick()
    assert len(starts(actions)) == 10  # SchedulerSettings.max_concurrent
    assert h.engine.queued_total() == 990
    assert calls == 11_000  # one next fire per due job, none for the other 9,000


def test_jobs_sharing_a_schedule_compute_its_next_fire_once_per_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def counting_next_fire(schedule: CronSchedule, after: datetime) -> datetime | None:
        calls.append(schedule.expr)
        return next_fire(schedule, after)

    monkeypatch.setattr(engine_module, "next_fire", counting_next_fire)
    shared = [job(f"s{i}", cron("* * * * *")) for i in range(100)]
    h = Harness(*shared, job("other", cron("*/2 * * * *")), settings={"max_concurrent": 200})
    assert sorted(calls) == ["* * * * *", "*/2 * * * *"]  # loading: once per schedule
    calls.clear()
    h.clock.advance(60)
    assert len(starts(h.tick())) == 100  # 10:01:30: "other" is not due
    assert calls == ["* * * * *"]  # the tick: once for the 100 jobs
    assert {h.engine.next_run(f"s{i}") for i in range(100)} == {NOW + timedelta(seconds=90)}


def test_repeated_reloads_keep_timer_memory_bounded() -> None:
    h = Harness(*(job(f"j{i}", every(60)) for i in range(10)))
    for round_ in range(200):
        h.reload(*(job(f"j{i}", every(60 + round_ % 2)) for i in range(10)))
        h.reload(*(job(f"k{i}", cron("0 * * * *")) for i in range(10)))
    heaps = len(h.engine._interval_heap) + len(h.engine._cron_heap)
    assert heaps <= 2 * 2 * 10 + 2 * 64


def test_unknown_job_always_gets_the_closest_names() -> None:
    h = Harness(job("backup-db"), job("cleanup"), job("report"))
    with pytest.raises(JobNotFound) as close:
        h.engine.request_run("backup", h.clock.now(), h.clock.monotonic())
    assert close.value.candidates[0] == "backup-db"
    with pytest.raises(JobNotFound) as far:
        h.engine.request_run("zz", h.clock.now(), h.clock.monotonic())
    assert len(far.value.candidates) == 3
