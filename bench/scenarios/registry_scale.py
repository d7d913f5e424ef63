"""Registry scale: 10,000 jobs.

* ``cronhub validate`` wall time (p50 of a few) ≤ 2 s.
* Start to ready — from launching ``cronhub start`` to ``ping`` answering — ≤ 3 s.
* A one-job edit (a changed description, the file rewritten in place) shows in
  ``status JOB`` over the socket ≤ 300 ms after the write returned; the worst of
  a few edits counts.
* The daemon's RSS once it has loaded and applied the edits ≤ 150 MiB.

No job is due during the measurement (daily crons at another hour, 6-hour intervals).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from bench.harness import (
    CRONHUB,
    Daemon,
    Row,
    ScenarioFailed,
    Settings,
    command_job,
    median,
    rss_mib,
    scheduler_table,
    time_command,
    vs_limit,
    workdir,
)

POLL_S = 0.002


def edited_job(count: int) -> str:
    return f"job-{count // 2:05d}"


def jobs_document(folder: Path, count: int, edit: str = "") -> dict[str, Any]:
    hour = (datetime.now(UTC).hour + 12) % 24
    jobs: dict[str, dict[str, Any]] = {}
    for i in range(count):
        name = f"job-{i:05d}"
        description = f"registry-scale job {i}"
        if edit and name == edited_job(count):
            description = edit
        if i % 2:
            jobs[name] = command_job("every 6h", description=description)
        else:
            jobs[name] = command_job(f"{i % 60} {hour} * * *", description=description)
    return {"scheduler": scheduler_table(folder, max_concurrent=100), "jobs": jobs}


def registry_scale(settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    count = settings.pick(10_000, 2_000)
    edits = settings.pick(3, 1)
    with workdir() as folder:
        config = folder / "jobs.toml"
        config.write_text(tomli_w.dumps(jobs_document(folder, count)))
        validate_s = [time_command([CRONHUB, "validate"], cwd=folder) for _ in range(3)]
        with Daemon(config) as daemon:
            daemon.start()
            ready_s = daemon.ready_after_s
            time.sleep(1.0)
            edit_ms = []
            for n in range(edits):
                text = f"edited {n} at {time.time():.3f}"
                data = tomli_w.dumps(jobs_document(folder, count, edit=text))
                with open(config, "w") as file:
                    file.write(data)
                written = time.monotonic()
                edit_ms.append(
                    wait_description(daemon, edited_job(count), text, timeout=30) - written
                )
                time.sleep(1.0)
            rss = rss_mib(daemon.pid)
    edit_ms = [e * 1000 for e in edit_ms]
    rows = [
        vs_limit(
            "registry scale",
            f"cronhub validate ({count:,} jobs) p50",
            median(validate_s),
            unit="s",
            at_most=2.0,
        ),
        vs_limit("registry scale", "start to ready", ready_s, unit="s", at_most=3.0),
        vs_limit(
            "registry scale",
            "one-job edit applied (worst)",
            max(edit_ms),
            unit="ms",
            at_most=300.0,
            note="edits: " + ", ".join(f"{e:.0f}" for e in edit_ms),
        ),
        vs_limit("registry scale", "daemon RSS", rss, unit="MiB", at_most=150.0),
    ]
    return rows, {"validate_s": validate_s, "ready_s": ready_s, "edit_ms": edit_ms, "rss": rss}


def wait_description(daemon: Daemon, job: str, text: str, timeout: float) -> float:
    """Poll ``status JOB`` until its description reads ``text``; return when (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _description(daemon.call("status", job=job)) == text:
            return time.monotonic()
        time.sleep(POLL_S)
    raise ScenarioFailed(f"the edit of {job} did not show within {timeout}s")


def _description(reply: Any) -> str | None:
    """The ``description`` of the (one) job in a ``status JOB`` reply, wherever it sits."""
    if isinstance(reply, dict):
        if isinstance(reply.get("description"), str):
            return reply["description"]
        reply = list(reply.values())
    if isinstance(reply, list):
        for value in reply:
            found = _description(value)
            if found is not None:
                return found
    return None
