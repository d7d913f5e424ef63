"""The references every cronhub figure is compared with, each run as its own process.

``python -m bench.references floor|apscheduler|spawn-ceiling ...``

* ``floor`` — the least a scheduler can do: one asyncio loop, a heap of due
  instants, ``asyncio.sleep`` until the first, then spawn every due job with
  ``asyncio.create_subprocess_exec`` one after the other.  No history, no
  socket, no output capture, asyncio's default child watcher.
* ``apscheduler`` — APScheduler 3.x ``AsyncIOScheduler`` with one
  ``CronTrigger`` per job; each job is a coroutine that spawns the same command
  through an asyncio subprocess and waits for it (``max_instances=1``, like a
  cronhub singleton).  Misfires are not dropped (``misfire_grace_time`` is
  long) so every fire is counted, as cronhub counts every fire.
* ``spawn-ceiling`` — raw ``os.posix_spawn`` + ``waitpid`` of ``/bin/true`` in
  T threads (two by default: two spawns in flight): the machine's ceiling.

Jobs are given as ``[name, period_s, offset_s]``: the job is due at every epoch
second ``t`` with ``t % period == offset`` (``* * * * * *`` is ``[n, 1, 0]``,
``*/2 * * * * *`` is ``[n, 2, 0]``, ``S * * * * *`` is ``[n, 60, S]``).  The
floor and APScheduler print one JSON document: ``{"starts": [[job,
scheduled, started], ...], "cpu_s": CPU}`` with epoch seconds, ``started`` read
just before the spawn call, and the CPU time of the process (user + system, all
threads) over ``[start, end)`` — the instant cronhub's runner records as a run's ``started_at``
(it reads the clock right before ``Popen``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import heapq
import json
import os
import sys
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any

JobList = list[tuple[str, int, int]]
StartList = list[tuple[str, float, float]]


def _first_fire(at_or_after: float, period: int, offset: int) -> int:
    k = -(-(at_or_after - offset) // period)  # ceil
    return int(k * period + offset)


# --- the floor ----------------------------------------------------------------------


async def floor(jobs: JobList, start: float, end: float, argv: Sequence[str]) -> StartList:
    """Run ``jobs`` from now to ``end`` (epoch s) with a heap and one sleep.

    Fires before ``start`` are the warm-up; only those in ``[start, end)`` are returned.
    """
    now = time.time()
    heap = [(_first_fire(now, period, offset), name, period) for name, period, offset in jobs]
    heapq.heapify(heap)
    starts: StartList = []
    waits: set[asyncio.Task[int]] = set()
    while heap and heap[0][0] < end:
        delay = heap[0][0] - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while heap and heap[0][0] <= time.time():
            due, name, period = heapq.heappop(heap)
            began = time.time()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            starts.append((name, float(due), began))
            task = asyncio.create_task(proc.wait())
            waits.add(task)
            task.add_done_callback(waits.discard)
            if due + period < end:
                heapq.heappush(heap, (due + period, name, period))
    if waits:
        await asyncio.wait(waits)
    return [s for s in starts if start <= s[1] < end]


# --- APScheduler 3.x -----------------------------------------------------------------


async def apscheduler(jobs: JobList, start: float, end: float, argv: Sequence[str]) -> StartList:
    """The same jobs under APScheduler 3.x ``AsyncIOScheduler`` until ``end``."""
    from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    starts: StartList = []
    due: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
    count = {"submitted": 0, "finished": 0}

    def submitted(event: JobSubmissionEvent) -> None:
        # Dispatched right after the job's task is created and before it runs.
        due[event.job_id].extend(t.timestamp() for t in event.scheduled_run_times)
        count["submitted"] += 1

    async def spawn(name: str) -> None:
        try:
            started = time.time()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            scheduled = due[name].popleft()
            starts.append((name, scheduled, started))
            await proc.wait()
        finally:
            count["finished"] += 1

    scheduler = AsyncIOScheduler(
        timezone="UTC",
        job_defaults={"misfire_grace_time": 3600, "coalesce": False, "max_instances": 1},
    )
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    for name, period, offset in jobs:
        second = "*" if period == 1 else f"*/{period}" if period < 60 else str(offset)
        scheduler.add_job(
            spawn, CronTrigger(second=second, timezone="UTC"), args=[name], id=name, name=name
        )
    scheduler.start()
    # Stop submitting just before the window closes; then let every submitted run finish.
    await asyncio.sleep(max(0.0, end - 0.5 - time.time()))
    scheduler.shutdown(wait=False)
    deadline = time.monotonic() + 60
    while count["finished"] < count["submitted"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return [s for s in starts if start <= s[1] < end]


# --- the spawn ceiling ---------------------------------------------------------------


def spawn_ceiling(seconds: float, threads: int, argv: Sequence[str]) -> dict[str, float]:
    """Runs per second of ``posix_spawn`` + ``waitpid`` with ``threads`` in flight."""
    counts = [0] * threads
    env = dict(os.environ)
    barrier = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        barrier.wait()
        n = 0
        while time.monotonic() < stop_at[0]:
            pid = os.posix_spawn(argv[0], list(argv), env)
            os.waitpid(pid, 0)
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    began = time.monotonic()
    stop_at[0] = began + seconds
    barrier.wait()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - began
    total = sum(counts)
    return {"runs": total, "seconds": elapsed, "per_second": total / elapsed}


# --- command line ---------------------------------------------------------------------


async def _measured(
    running: Coroutine[Any, Any, StartList], args: argparse.Namespace
) -> dict[str, object]:
    """The starts, and the CPU this process used in ``[start, end)`` (all threads)."""

    async def sample() -> float:
        await asyncio.sleep(max(0.0, args.start - time.time()))
        began = time.process_time()
        await asyncio.sleep(max(0.0, args.end - time.time()))
        return time.process_time() - began

    cpu = asyncio.create_task(sample())
    starts = await running
    return {"starts": starts, "cpu_s": await cpu}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.references")
    sub = parser.add_subparsers(dest="which", required=True)
    for name in ("floor", "apscheduler"):
        p = sub.add_parser(name)
        p.add_argument("--jobs", required=True, help="JSON file: [[name, period_s, offset_s]...]")
        p.add_argument("--start", type=float, required=True, help="first instant measured")
        p.add_argument("--end", type=float, required=True, help="end of the window (excluded)")
        p.add_argument("--command", default="/bin/true")
    p = sub.add_parser("spawn-ceiling")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--command", default="/bin/true")
    args = parser.parse_args(argv)

    command = [args.command]
    if args.which == "spawn-ceiling":
        result: object = spawn_ceiling(args.seconds, args.threads, command)
    else:
        with open(args.jobs) as file:
            jobs = [(str(n), int(p), int(o)) for n, p, o in json.load(file)]
        run = floor if args.which == "floor" else apscheduler
        result = asyncio.run(_measured(run(jobs, args.start, args.end, command), args))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
