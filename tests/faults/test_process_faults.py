"""Process faults: SIGTERM under a burst of 1,000 starting runs, and SIGKILL of the
daemon at random points, 20 times in a row with a restart after each."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.faults.helpers import (
    FINAL,
    crashes,
    duplicates,
    fault_daemon,
    history,
    integrity_check,
    pids_alive,
    read_lines,
    read_pids,
    survivors,
    tag_of,
    write_jobs,
)
from tests.support import wait_until

BURST = 1_000
KILLS = 20
SEED = int(os.environ.get("CRONHUB_FAULT_SEED", "20261128"))


def burst_registry(count: int) -> str:
    """``count`` @reboot jobs: half exit at once (a burst of child exits), half sleep."""
    tables = []
    for n in range(count):
        tail = "" if n % 2 else "; exec sleep 25"
        tables.append(
            f'[jobs.burst-{n:04d}]\nschedule = "@reboot"\ntimeout = "2m"\n'
            f'command = "echo $CRONHUB_RUN_ID >> @DIR@/started.ids{tail}"\n'
        )
    return "\n".join(tables)


@pytest.mark.timeout(180)
def test_sigterm_while_1000_runs_start_at_once_shuts_down_cleanly(tally) -> None:
    scheduler = f'max_concurrent = {BURST}\nshutdown_grace = "1s"'
    with fault_daemon(burst_registry(BURST), scheduler) as daemon:
        started_ids = daemon.folder / "started.ids"
        wait_until(lambda: len(read_lines(started_ids)) >= 10, 60, what="the burst to begin")
        daemon.signal(signal.SIGTERM)
        tally.faults += 1
        began = time.monotonic()
        code = daemon.proc.wait(90)
        stop_s = time.monotonic() - began
        rows = history(daemon)
        started = set(read_lines(started_ids))
        by_id = {r["id"]: r for r in rows}
        unfinished = [r for r in rows if r["status"] not in FINAL]
        tally.expected += BURST
        tally.recorded += len(rows) - len(unfinished)
        tally.lost += len(started - by_id.keys()) + len(unfinished)
        tally.lost += max(0, BURST - len(rows))
        tally.duplicates += duplicates(rows)
        tally.survivors += len(survivors(tag_of(daemon)))
        tally.crashes += int(code != 0) + crashes(daemon, stopped=True)
        statuses = {r["status"] for r in rows}
        assert code == 0, daemon.log_text()[-3000:]
        # shutdown_grace is 1 s: sleepers are interrupted, none runs its 25 s out.
        assert stop_s < 20, f"shutdown took {stop_s:.1f}s with shutdown_grace 1s"
        sleepers = [r for r in rows if int(r["job_name"][-4:]) % 2 == 0]
        finished_sleeping = [r["job_name"] for r in sleepers if r["status"] == "success"]
        assert not finished_sleeping, (
            f"{len(finished_sleeping)} runs started after SIGTERM and ran to completion"
        )
        assert not os.path.exists(daemon.socket), "the socket file was left behind"
        assert statuses <= {"success", "interrupted", "skipped"}, statuses
        assert all(by_id[i]["status"] in ("success", "interrupted") for i in started & by_id.keys())
        assert integrity_check(daemon.database) == "ok"
    tally.check()


KILL_JOBS = """
[jobs.beat]
schedule = "every 1s"
command = "echo $CRONHUB_RUN_ID >> @DIR@/ran.ids; sleep 0.2; @END@ended.ids"
timeout = "20s"

[jobs.long]
description = "@DESC@"
schedule = "every 1s"
command = "echo $CRONHUB_RUN_ID >> @DIR@/ran.ids; echo $$ >> @DIR@/long.pids; sleep 30"
timeout = "60s"

[jobs.chatty]
schedule = "every 1s"
command = "echo $CRONHUB_RUN_ID >> @DIR@/ran.ids; yes x | head -c 60000; @END@chatty.ids"
timeout = "20s"
""".replace("@END@", "echo $CRONHUB_RUN_ID >> @DIR@/")
KILL_SCHEDULER = 'shutdown_grace = "1s"'
POINTS = ("idle", "run_start", "run_end", "reload", "history_write")


def _grows(path, before: int):
    return lambda: len(read_lines(path)) > before


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kills", [KILLS, pytest.param(100, marks=pytest.mark.slow)])
def test_sigkill_at_random_points_20_times_loses_and_doubles_nothing(tally, kills: int) -> None:
    rng = random.Random(SEED + kills)
    points = [POINTS[i % len(POINTS)] for i in range(kills)]
    rng.shuffle(points)
    with fault_daemon(KILL_JOBS.replace("@DESC@", "v0"), KILL_SCHEDULER) as daemon:
        ran, ended, chatty = (daemon.folder / n for n in ("ran.ids", "ended.ids", "chatty.ids"))
        tag = tag_of(daemon)
        orphans_found: list[str] = []
        for cycle, point in enumerate(points):
            if cycle:
                daemon.start()
                # Crash recovery must have ended the runs the killed daemon left.
                previous = set(read_lines(ran))
                left = [p for p in survivors(run_ids=previous, grace=5.0)]
                orphans_found += [
                    f"killed at {points[cycle - 1]} (cycle {cycle - 1}): {p}" for p in left
                ]
            jitter = rng.uniform(0, 0.03)
            if point == "idle":
                time.sleep(rng.uniform(0.05, 1.0))  # the point itself is random
            elif point == "run_start":
                wait_until(_grows(ran, len(read_lines(ran))), 10, what="a run to start")
            elif point == "run_end":
                wait_until(_grows(ended, len(read_lines(ended))), 10, what="a run to end")
                time.sleep(jitter)
            elif point == "history_write":
                wait_until(_grows(chatty, len(read_lines(chatty))), 10, what="a chatty end")
                time.sleep(jitter / 3)
            elif point == "reload":
                write_jobs(daemon, KILL_JOBS.replace("@DESC@", f"v{cycle}"), KILL_SCHEDULER)
                daemon.signal(signal.SIGHUP)
                time.sleep(jitter)
            daemon.kill()
            tally.faults += 1
        daemon.start()
        previous = set(read_lines(ran))
        orphans_found += [str(p) for p in survivors(run_ids=previous, grace=5.0)]
        wait_until(_grows(ended, len(read_lines(ended))), 10, what="scheduling after restarts")
        assert daemon.stop() == 0
        rows = history(daemon)
        by_id = {r["id"]: r for r in rows}
        ran_ids = read_lines(ran)
        unfinished = [r for r in rows if r["status"] not in FINAL]
        long_rows = [r for r in rows if r["job_name"] == "long"]
        tally.expected += len(set(ran_ids))
        tally.recorded += len(set(ran_ids) & by_id.keys())
        tally.lost += len(set(ran_ids) - by_id.keys()) + len(unfinished)
        tally.duplicates += duplicates(rows) + len(ran_ids) - len(set(ran_ids))
        tally.survivors += len(orphans_found) + len(survivors(tag))
        tally.survivors += len(pids_alive(read_pids(daemon.folder / "long.pids")))
        tally.crashes += crashes(daemon, stopped=True)
        assert integrity_check(daemon.database) == "ok"
        orphan_ids = {o.split("run_id='")[1][:36] for o in orphans_found if "run_id='" in o}
        assert not orphans_found, (orphans_found[:3], [by_id.get(i) for i in orphan_ids])
        not_interrupted = [r for r in long_rows if r["status"] != "interrupted"]
        assert long_rows and not not_interrupted, (
            not_interrupted,
            [
                line
                for line in daemon.log_text().splitlines()
                if any(r["id"] in line for r in not_interrupted)
            ],
        )
        assert not unfinished, unfinished[:3]
        assert set(ran_ids) <= by_id.keys(), sorted(set(ran_ids) - by_id.keys())[:5]
    tally.check()
