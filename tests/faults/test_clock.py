"""Wall-clock steps, simulated at the clock boundary.

The engine takes ``wall`` and ``mono`` as arguments, so the real
:class:`~cronhub.engine.Engine` is driven here by a :class:`~cronhub.testing.FakeClock`
one simulated second at a time, through a step of the wall clock of an hour forward
and an hour backward (NTP step, suspend/resume).  Every run it starts finishes at
once.  Then, per job:

* no cron fire is doubled: ``scheduled_at`` never repeats;
* none is lost beyond one tick: every cron instant the wall clock passed through is
  fired exactly once, except those inside a forward-stepped span, which coalesce
  into exactly one run;
* intervals keep their monotonic beat through every step.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from cronhub.engine import Engine, StartRun
from cronhub.model import RunResult, RunStatus
from cronhub.registry import parse_registry
from cronhub.schedule import next_fire
from cronhub.testing import FakeClock
from tests.faults.conftest import Figures

pytestmark = pytest.mark.timeout(60)

START = datetime(2024, 3, 5, 9, 59, 45, tzinfo=UTC)
HOUR = 3600.0
INTERVAL_S = 7.0

REGISTRY = """
[scheduler]
socket = "/tmp/never-used.sock"
database = "sqlite:////tmp/never-used.db"
max_concurrent = 100

[jobs.every-minute]
schedule = "* * * * *"
command = "true"

[jobs.every-10-seconds]
schedule = "*/10 * * * * *"
command = "true"

[jobs.at-10-30]
schedule = "30 10 * * *"
command = "true"

[jobs.quarter-hours]
schedule = "*/15 * * * *"
command = "true"

[jobs.interval]
schedule = "every 7s"
command = "true"
"""
CRON_JOBS = ("every-minute", "every-10-seconds", "at-10-30", "quarter-hours")


@dataclass
class Simulation:
    """An engine, its fake clock, and every fire it made."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(START, mono=5_000.0))
    fires: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    fired_mono: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    most_per_tick: Counter[str] = field(default_factory=Counter)
    lived: list[tuple[datetime, datetime]] = field(default_factory=list)
    """Wall spans first shown by the clock while time passed (new wall time)."""
    stepped_over: list[tuple[datetime, datetime]] = field(default_factory=list)
    """Wall spans jumped over by a forward step into new wall time."""

    def __post_init__(self) -> None:
        registry = parse_registry(REGISTRY, "/tmp/faults-clock/jobs.toml")
        self.engine = Engine(registry, wall=self.clock.now(), mono=self.clock.monotonic())
        self.specs = registry.jobs
        self.frontier = self.clock.now()
        """The latest wall time shown so far."""

    def tick(self) -> None:
        wall, mono = self.clock.now(), self.clock.monotonic()
        fired: Counter[str] = Counter()
        for action in self.engine.tick(wall, mono):
            assert isinstance(action, StartRun), action
            request = action.request
            fired[request.job_name] += 1
            self.fires[request.job_name].append(request.scheduled_at)
            self.fired_mono[request.job_name].append(mono)
            self.engine.on_started(request.run_id)
            result = RunResult(
                run_id=request.run_id,
                job_name=request.job_name,
                status=RunStatus.SUCCESS,
                started_at=wall,
                completed_at=wall,
                duration_ms=0,
            )
            self.engine.on_finished(result, wall, mono)
        for name, count in fired.items():
            self.most_per_tick[name] = max(self.most_per_tick[name], count)

    def run_for(self, seconds: float, step: float = 1.0) -> None:
        elapsed = 0.0
        while elapsed < seconds:
            before = self.clock.now()
            self.clock.advance(step)
            elapsed += step
            self._extend(before, self.clock.now(), self.lived)
            self.tick()

    def jump(self, seconds: float) -> None:
        before = self.clock.now()
        self.clock.jump_wall(seconds)
        self._extend(before, self.clock.now(), self.stepped_over)

    def _extend(
        self, begin: datetime, end: datetime, spans: list[tuple[datetime, datetime]]
    ) -> None:
        """Record ``(begin, end]`` minus the wall time already shown."""
        begin = max(begin, self.frontier)
        if end > begin:
            spans.append((begin, end))
            self.frontier = end

    def instants(self, name: str, begin: datetime, end: datetime) -> set[datetime]:
        found: set[datetime] = set()
        at = next_fire(self.specs[name].schedule, begin)
        while at is not None and at <= end:
            found.add(at)
            at = next_fire(self.specs[name].schedule, at)
        return found


def account(sim: Simulation, tally: Figures) -> None:
    """Count, per cron job, doubled and lost fires; check the interval's beat.

    Expected: every cron instant of new wall time the clock lived through, once;
    and for each span stepped over, one coalesced run (its earliest instant).
    """
    for name in CRON_JOBS:
        fires = sim.fires[name]
        fired = set(fires)
        tally.duplicates += len(fires) - len(fired)
        tally.recorded += len(fires)
        for begin, end in sim.lived:
            expected = sim.instants(name, begin, end)
            tally.expected += len(expected)
            tally.lost += len(expected - fired)
        for begin, end in sim.stepped_over:
            span = sim.instants(name, begin, end)
            if span:
                tally.expected += 1
                tally.lost += 0 if min(span) in fired else 1
        assert fires == sorted(fires), f"{name}: scheduled_at went backwards"
        assert sim.most_per_tick[name] <= 1, f"{name}: a burst of fires in one tick"
    beats = sim.fired_mono["interval"]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert gaps and all(INTERVAL_S - 1 <= g <= INTERVAL_S + 1 for g in gaps), gaps
    interval_fires = sim.fires["interval"]
    tally.duplicates += len(interval_fires) - len(set(interval_fires))
    assert interval_fires == sorted(interval_fires), "interval scheduled_at went backwards"


def test_wall_clock_step_forward_by_an_hour(tally) -> None:
    sim = Simulation()
    sim.run_for(20 * 60)
    sim.jump(+HOUR)
    tally.faults += 1
    sim.run_for(20 * 60)
    account(sim, tally)
    assert sim.fires["at-10-30"] == [START.replace(hour=10, minute=30, second=0)]
    tally.check()


def test_wall_clock_step_backward_by_an_hour(tally) -> None:
    sim = Simulation()
    sim.run_for(45 * 60)
    sim.jump(-HOUR)
    tally.faults += 1
    sim.run_for(HOUR + 20 * 60)
    account(sim, tally)
    # The wall clock re-lived an hour: its instants were fired once, not twice.
    assert sim.fires["at-10-30"] == [START.replace(hour=10, minute=30, second=0)]
    tally.check()


def test_wall_clock_steps_back_and_forth_repeatedly(tally) -> None:
    sim = Simulation()
    for step in (+HOUR, -HOUR, -HOUR / 2, +HOUR * 1.5, -90.0, +90.0):
        sim.run_for(10 * 60)
        sim.jump(step)
        tally.faults += 1
    sim.run_for(HOUR + 10 * 60)
    account(sim, tally)
    tally.check()


def test_interval_keeps_its_beat_across_steps(tally) -> None:
    sim = Simulation()
    sim.run_for(60)
    for step in (+HOUR, -HOUR, -HOUR):
        sim.jump(step)
        tally.faults += 1
        sim.run_for(60)
    beats = sim.fired_mono["interval"]
    total = sim.clock.monotonic() - 5_000.0
    tally.expected += int(total // INTERVAL_S)
    tally.recorded += len(beats)
    tally.lost += max(0, int(total // INTERVAL_S) - len(beats))
    account(sim, tally)
    tally.check()
