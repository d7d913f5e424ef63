"""Storage faults: the database locked by another writer, read-only, and the disk
full.  Scheduling goes on, a warning is logged, and once storage recovers every
held result is written (the run ids the jobs wrote themselves against the rows)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.conftest import Figures
from tests.faults.helpers import (
    FINAL,
    crashes,
    duplicates,
    fault_daemon,
    history,
    log_size,
    read_lines,
    survivors,
    tag_of,
    wait_recorded,
    write_jobs,
)
from tests.support import DaemonProcess, short_tmpdir, wait_until

STORE_JOBS = """
[jobs.beat]
schedule = "every 1s"
command = "echo $CRONHUB_RUN_ID >> @DIR@/ran.ids; head -c 3000 /dev/zero | tr '\\\\0' y"
timeout = "10s"

[jobs.slow]
schedule = "every 2s"
command = "echo $CRONHUB_RUN_ID >> @DIR@/ran.ids; sleep 0.5"
timeout = "10s"
"""
OUTAGE_S = 8.0
OUTAGE_WARNING = "history database unavailable"


def ride_out(
    daemon: DaemonProcess,
    tally: Figures,
    outage_s: float,
    inject: Callable[[], None],
    repair: Callable[[], None],
) -> None:
    """Inject a storage fault for ``outage_s``; check that runs go on and all get written."""
    ran = daemon.folder / "ran.ids"
    wait_until(lambda: len(read_lines(ran)) >= 2, 15, what="the first runs")
    log_from = log_size(daemon)
    inject()
    tally.faults += 1
    try:
        before = len(read_lines(ran))
        time.sleep(outage_s)  # the outage itself lasts this long; nothing is asserted yet
        during = len(read_lines(ran)) - before
    finally:
        repair()
    outage_log = daemon.log_text()[log_from:]
    ids = set(read_lines(ran))
    rows = wait_recorded(daemon, ids, timeout=30)
    assert daemon.stop() == 0
    all_rows = history(daemon)
    tally.expected += len(ids)
    tally.recorded += len(rows)
    tally.lost += len(ids - rows.keys()) + sum(r["status"] not in FINAL for r in all_rows)
    tally.duplicates += duplicates(all_rows)
    tally.survivors += len(survivors(tag_of(daemon)))
    tally.crashes += crashes(daemon, log_from, stopped=True)
    assert during >= outage_s * 0.6, f"only {during} runs started in a {outage_s}s outage"
    assert OUTAGE_WARNING in outage_log, outage_log[-2000:]
    assert ids <= rows.keys(), f"{len(ids - rows.keys())} runs never recorded"
    assert {r["status"] for r in rows.values()} == {"success"}, {r["status"] for r in rows.values()}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "lock_s", [OUTAGE_S, pytest.param(30.0, marks=pytest.mark.slow)], ids=["8s", "30s"]
)
def test_database_locked_by_another_writer(tally, lock_s: float) -> None:
    with fault_daemon(STORE_JOBS) as daemon:
        holder = sqlite3.connect(daemon.database, timeout=30, isolation_level=None)

        def lock() -> None:
            holder.execute("BEGIN EXCLUSIVE")

        def unlock() -> None:
            holder.execute("ROLLBACK")
            holder.close()

        ride_out(daemon, tally, lock_s, lock, unlock)
    tally.check()


def _chattr(flag: str, *paths: Path) -> None:
    existing = [str(p) for p in paths if p.exists()]
    subprocess.run(["chattr", flag, *existing], check=True, capture_output=True)


@pytest.mark.timeout(120)
def test_database_file_made_read_only(tally) -> None:
    """The immutable attribute: unlike a chmod, it stops root, even on open files."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    with fault_daemon(STORE_JOBS) as daemon:
        files = [
            daemon.database,
            Path(f"{daemon.database}-wal"),
            Path(f"{daemon.database}-journal"),
        ]
        probe = daemon.folder / "probe"
        probe.write_text("x")
        try:
            _chattr("+i", probe)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"this filesystem has no immutable attribute: {exc.stderr!r}")
        _chattr("-i", probe)
        ride_out(
            daemon,
            tally,
            OUTAGE_S,
            lambda: _chattr("+i", *files),
            lambda: _chattr("-i", *files),
        )
    tally.check()


@contextmanager
def small_tmpfs(size: str) -> Iterator[Path]:
    folder = short_tmpdir()
    mount = folder / "db"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(120)
def test_disk_full(tally) -> None:
    with small_tmpfs("3m") as folder, fault_daemon(STORE_JOBS, start=False, folder=folder) as d:
        d.database = folder / "db" / "history.db"
        write_jobs(d, STORE_JOBS)
        d.start()
        filler = folder / "db" / "filler"

        def fill() -> None:
            with filler.open("wb") as file:
                try:
                    while True:
                        file.write(b"\0" * 65536)
                        file.flush()
                except OSError:
                    pass  # ENOSPC: the disk is full

        ride_out(d, tally, OUTAGE_S, fill, lambda: filler.unlink())
    tally.check()
