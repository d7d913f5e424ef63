"""Callable start: a callable job in a stdlib-only module, against a fresh ``python -c``.

cronhub runs ``benchjob:stamp`` every second (``* * * * * *``).  Its figure is
the latency from the instant the run was due to the instant it was done
(``completed_at - scheduled_at`` from the history table): everything cronhub
does for a callable, start lag included.  The time from spawn to done
(``completed_at - started_at``) is reported beside it.  The reference is the
wall time of ``python -c "import benchjob; benchjob.stamp(PATH)"`` with the
same interpreter in the same folder, spawn to exit.
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import (
    PYTHON,
    Daemon,
    Row,
    Settings,
    first_fire,
    median,
    read_history,
    sleep_until,
    time_command,
    vs_reference,
    wait_history_settled,
    workdir,
    write_registry,
)

JOB_MODULE = '''\
"""A stdlib-only job for the callable-start benchmark."""

import json
import time
from pathlib import Path


def stamp(path):
    Path(path).write_text(json.dumps({"at": time.time()}))
'''


def callable_start(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    duration = settings.pick(15, 4)
    with workdir() as folder:
        (folder / "benchjob.py").write_text(JOB_MODULE)
        target = str(folder / "stamp.json")
        job = {
            "schedule": "* * * * * *",
            "callable": "benchjob:stamp",
            "kwargs": {"path": target},
            "timeout": "10s",
            "singleton": True,
        }
        config = write_registry(folder, {"callable": job})
        with Daemon(config) as daemon:
            daemon.start()
            start = first_fire(time.time() + 2.0, 1)
            end = start + duration
            sleep_until(end + 1.0)
            wait_history_settled(daemon.database, start, end, timeout=30)
        window = read_history(daemon.database, since=start, until=end)
        runs = [
            r
            for r in window
            if r.completed is not None and r.started is not None and r.status == "success"
        ]
        due_to_done = [(r.completed - r.scheduled) * 1000 for r in runs]  # type: ignore[operator]
        spawn_to_done = [(r.completed - r.started) * 1000 for r in runs]  # type: ignore[operator]
        code = f"import benchjob; benchjob.stamp({target!r})"
        for _ in range(2):
            time_command([PYTHON, "-c", code], cwd=folder)
        fresh = [
            time_command([PYTHON, "-c", code], cwd=folder) * 1000
            for _ in range(settings.pick(15, 4))
        ]
    ref = median(fresh)
    note = f"{len(runs)}/{duration} runs succeeded"
    rows = [
        vs_reference(
            "callable start",
            "due → done p50",
            median(due_to_done),
            ref,
            "fresh python -c",
            unit="ms",
            at_most=0.4,
            note=note,
        ),
        vs_reference(
            "callable start",
            "spawn → done p50",
            median(spawn_to_done),
            ref,
            "fresh python -c",
            unit="ms",
            note=note,
        ),
    ]
    details = {
        "due_to_done_ms": due_to_done,
        "spawn_to_done_ms": spawn_to_done,
        "python_c_ms": fresh,
        "statuses": [r.status for r in window],
        "errors": sorted({r.error for r in window if r.error}),
    }
    return rows, details
