"""Edits of jobs.toml reach a running daemon: in place, by rename, broken and mended."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest

from tests.support import daemon_process, wait_until

pytestmark = pytest.mark.timeout(60)

BASE = """
[jobs.steady]
schedule = "every 1h"
command = "true"
timeout = "5s"

[jobs.busy]
schedule = "@reboot"
command = "touch busy-started; sleep 3; echo finished"
timeout = "30s"
"""


def next_run(daemon, job: str) -> datetime:
    return datetime.fromisoformat(daemon.call("status", job=job)["jobs"][0]["next_run"])


def job_names(daemon) -> set[str]:
    return {job["name"] for job in daemon.call("status")["jobs"]}


def test_in_place_edit_adds_a_job_and_keeps_unchanged_timers() -> None:
    with daemon_process(BASE) as daemon:
        before = next_run(daemon, "steady")
        with daemon.config.open("a") as f:
            f.write('\n[jobs.added]\nschedule = "every 1h"\ncommand = "true"\ntimeout = "5s"\n')
        wait_until(lambda: "added" in job_names(daemon), 10, what="the added job")
        # A rescheduled timer would have moved by at least the watcher's 30 ms debounce.
        assert abs((next_run(daemon, "steady") - before).total_seconds()) < 0.02


def test_edit_by_rename_is_seen() -> None:
    with daemon_process(BASE) as daemon:
        text = daemon.config.read_text().replace('"every 1h"', '"every 2h"', 1)
        tmp = daemon.config.with_name(".jobs.toml.swp")
        tmp.write_text(text)
        os.replace(tmp, daemon.config)
        wait_until(
            lambda: daemon.call("status", job="steady")["jobs"][0]["schedule"] == "every 2h",
            10,
            what="the renamed file to be applied",
        )


def test_removing_a_running_job_lets_its_run_finish_and_be_recorded() -> None:
    with daemon_process(BASE) as daemon:
        wait_until((daemon.folder / "busy-started").exists, 10)
        daemon.config.write_text(daemon.config.read_text().split("[jobs.busy]")[0])
        wait_until(lambda: job_names(daemon) == {"steady"}, 10, what="busy to be removed")
        runs = wait_until(
            lambda: [
                r for r in daemon.call("history", job="busy")["runs"] if r["status"] == "success"
            ],
            15,
            what="the removed job's run to finish",
        )
        assert len(runs) == 1


def test_broken_edit_keeps_last_good_registry_and_mend_clears_the_error() -> None:
    with daemon_process(BASE) as daemon:
        good = daemon.config.read_text()
        daemon.config.write_text(good + '\n[jobs.broken]\nschedule = "every 1h"\ncomand = "x"\n')
        status = wait_until(
            lambda: (s := daemon.call("status"))["daemon"]["registry_errors"] and s,
            10,
            what="the broken registry to be reported",
        )
        errors = status["daemon"]["registry_errors"]
        assert any("jobs.toml:" in e and "comand" in e for e in errors), errors
        assert job_names(daemon) == {"steady", "busy"}
        cli = daemon.cli("status")
        assert "comand" in cli.stdout + cli.stderr
        daemon.config.write_text(good)
        wait_until(lambda: not daemon.call("status")["daemon"]["registry_errors"], 10, what="mend")


def test_cli_reload_reports_the_difference_and_refuses_a_broken_file() -> None:
    with daemon_process(BASE) as daemon:
        good = daemon.config.read_text()
        daemon.config.write_text(good.replace("sleep 3", "sleep 1"))
        result = daemon.cli("reload", "--json")
        assert result.returncode == 0, result.stderr
        reply = json.loads(result.stdout)
        # The watcher may have applied the edit first; either way the daemon agrees.
        assert reply["changed"] in (["busy"], [])
        daemon.config.write_text(good + "\n[jobs.x]\nschedule = 5\n")
        broken = daemon.cli("reload")
        assert broken.returncode != 0
        assert "jobs.toml:" in broken.stderr
