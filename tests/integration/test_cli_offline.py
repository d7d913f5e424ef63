"""The CLI without a daemon: --help, --version, validate, next, and status with nothing listening.

The real ``cronhub`` entry point runs in a subprocess where the exit status
or the import path matters; ``typer.testing.CliRunner`` covers the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cronhub.cli import app, command_app
from cronhub.cli.common import resolve_socket

COMMANDS = [
    "start",
    "status",
    "run",
    "enable",
    "disable",
    "history",
    "logs",
    "reload",
    "ping",
    "stop",
    "validate",
    "next",
]

GOOD = """\
[scheduler]
timezone = "Europe/Berlin"

[jobs.nightly-backup]
description = "Dump the database"
schedule = "30 2 * * *"
command = "echo backup"
timeout = "10m"

[jobs.heartbeat]
schedule = "every 30s"
command = ["true"]
timeout = "5s"

[jobs.warmup]
schedule = "@reboot"
command = "true"
timeout = "1m"
enabled = false
"""

BROKEN = """\
[jobs.backup]
schedule = "61 2 * * *"
command = "echo hi"
scedule = "0 * * * *"

[jobs.report]
schedule = "@daily"
command = "true"
timeout = "ten"
"""


def cronhub_command() -> list[str]:
    """The installed console script, or ``python -m cronhub.cli`` when it is missing."""
    script = shutil.which("cronhub", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "cronhub.cli"]


def cronhub(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CRONHUB_") and key != "RUNTIME_DIRECTORY"
    }
    environ.update(env or {})
    return subprocess.run(
        [*cronhub_command(), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(folder: Path, text: str, name: str = "jobs.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# --- help and version ------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cronhub {command} [OPTIONS]")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_run_alone_reads_as_it_does_in_the_group(runner: CliRunner, command: str) -> None:
    alone = command_app(command)  # what main() runs for "cronhub COMMAND ..."
    for args in (["--help"], ["--no-such-option"]):
        grouped = runner.invoke(app, [command, *args])
        single = runner.invoke(alone, args, prog_name=f"cronhub {command}")
        assert (single.exit_code, single.output) == (grouped.exit_code, grouped.output)


def test_root_help_lists_commands_and_exit_statuses(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    assert "Exit status" in result.output
    assert "--install-completion" in result.output


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    from cronhub import __version__

    result = cronhub("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"cronhub {__version__}"


def test_a_mistyped_command_gets_a_suggestion(tmp_path: Path) -> None:
    result = cronhub("statsu", cwd=tmp_path)
    assert result.returncode == 2
    assert "status" in result.stderr


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


# --- validate --------------------------------------------------------------------------


def test_validate_accepts_a_good_registry_and_summarises_it(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = cronhub("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid — 3 jobs, 2 enabled" in result.stdout
    assert "nightly-backup" in result.stdout
    assert "+01:00 CET" in result.stdout or "+02:00 CEST" in result.stdout
    assert "one interval after the daemon starts" in result.stdout
    assert result.stderr == ""


def test_validate_lists_the_first_jobs_of_a_large_registry_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    from cronhub.cli.validate import SUMMARY_LIMIT

    count = SUMMARY_LIMIT + 5
    write(
        tmp_path,
        "".join(
            f'[jobs.j{i:04d}]\nschedule = "@daily"\ncommand = "true"\ntimeout = "1m"\n'
            for i in range(count)
        ),
    )
    result = cronhub("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"valid — {count} jobs, {count} enabled" in result.stdout
    assert f"j{SUMMARY_LIMIT - 1:04d}" in result.stdout
    assert f"j{SUMMARY_LIMIT:04d}" not in result.stdout
    assert "… and 5 more jobs" in result.stdout
    every = cronhub("validate", "--all", cwd=tmp_path)
    assert f"j{count - 1:04d}" in every.stdout
    assert "more job" not in every.stdout


def test_validate_reports_every_problem_with_file_line_job_and_field(tmp_path: Path) -> None:
    write(tmp_path, BROKEN)
    result = cronhub("validate", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith('jobs.toml:2: job "backup": schedule: ') for line in lines)
    assert 'jobs.toml:4: job "backup": scedule: unknown key; did you mean "schedule"?' in lines
    assert any(line.startswith('jobs.toml:9: job "report": timeout: ') for line in lines)
    assert "jobs.toml: 3 problems" in lines
    assert result.stdout == ""


def test_validate_reports_a_toml_syntax_error_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, '[jobs.a]\nschedule = "@daily"\ncommand = "true\n')
    result = cronhub("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("jobs.toml:3")


def test_validate_of_a_missing_file_fails_naming_it(tmp_path: Path) -> None:
    result = cronhub("validate", "--config", "absent.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("absent.toml: ")


def test_validate_reads_the_registry_named_by_cronhub_config(tmp_path: Path) -> None:
    write(tmp_path, BROKEN, name="other.toml")
    result = cronhub("validate", cwd=tmp_path, env={"CRONHUB_CONFIG": "other.toml"})
    assert result.returncode == 1
    assert "other.toml:2:" in result.stderr


def test_validate_prints_warnings_but_succeeds(tmp_path: Path) -> None:
    write(tmp_path, '[jobs.slow]\nschedule = "@hourly"\ncommand = "true"\n')
    result = cronhub("validate", cwd=tmp_path)
    assert result.returncode == 0
    assert 'jobs.toml:1: job "slow": timeout: warning: ' in result.stderr


def test_validate_json_of_a_valid_registry(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = cronhub("validate", "--json", cwd=tmp_path)
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["errors"] == []
    jobs = {job["name"]: job for job in document["jobs"]}
    assert set(jobs) == {"nightly-backup", "heartbeat", "warmup"}
    assert jobs["nightly-backup"]["next_run"].endswith(("+01:00", "+02:00"))
    assert "T02:30:00" in jobs["nightly-backup"]["next_run"]
    assert jobs["heartbeat"]["next_run"] is None
    assert jobs["warmup"]["enabled"] is False


def test_validate_json_of_a_broken_registry(tmp_path: Path) -> None:
    write(tmp_path, BROKEN)
    result = cronhub("validate", "--json", cwd=tmp_path)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    assert document["jobs"] == []
    first = document["errors"][0]
    assert set(first) == {"path", "line", "col", "job", "field", "message"}
    assert (first["path"], first["line"], first["job"], first["field"]) == (
        "jobs.toml",
        2,
        "backup",
        "schedule",
    )


# --- next ------------------------------------------------------------------------------


def test_next_expr_json_gives_iso_times_across_the_autumn_change(tmp_path: Path) -> None:
    result = cronhub(
        "next",
        "--expr",
        "0 2 * * *",
        "--tz",
        "Europe/Berlin",
        "-n",
        "3",
        "--after",
        "2026-10-24T12:00:00+02:00",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-26T02:00:00+01:00",
        "2026-10-27T02:00:00+01:00",
    ]


def test_next_marks_a_fixed_time_fire_moved_by_the_spring_gap(runner: CliRunner) -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    args = ["next", "--expr", "30 2 * * *", "--tz", "Europe/Berlin", "-n", "3"]
    result = runner.invoke(app, [*args, "--after", "2026-03-28T12:00:00+01:00"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    moved = next(line for line in lines if "2026-03-29" in line)
    assert "03:00:00+02:00 CEST" in moved
    assert "⚠" in moved
    assert not any("⚠" in line for line in lines if "2026-03-30" in line)


def test_next_reads_a_naive_after_in_the_schedule_zone(runner: CliRunner) -> None:
    args = ["next", "--expr", "0 * * * *", "--tz", "Asia/Kolkata", "-n", "1", "--json"]
    result = runner.invoke(app, [*args, "--after", "2026-01-01T10:10:00"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["2026-01-01T11:00:00+05:30"]


def test_next_of_a_job_uses_its_zone(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = cronhub(
        "next",
        "nightly-backup",
        "-n",
        "2",
        "--after",
        "2026-07-01T00:00:00+00:00",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["2026-07-01T02:30:00+02:00", "2026-07-02T02:30:00+02:00"]


def test_next_of_an_unknown_job_names_the_closest(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = cronhub("next", "nightly-backpu", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'cronhub: no job named "nightly-backpu" — did you mean "nightly-backup"?'
    )


def test_next_of_an_interval_job_explains_it_has_no_fixed_times(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = cronhub("next", "heartbeat", cwd=tmp_path)
    assert result.returncode == 0
    assert "one interval after the daemon starts" in result.stdout


def test_next_of_a_reboot_job_says_it_runs_at_start(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    result = cronhub("next", "warmup", "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout) == []
    assert "when the daemon starts" in result.stderr


def test_next_needs_a_job_or_an_expression(runner: CliRunner) -> None:
    assert runner.invoke(app, ["next"]).exit_code == 2
    assert runner.invoke(app, ["next", "job", "--expr", "@daily"]).exit_code == 2


def test_next_refuses_a_bad_expression_as_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["next", "--expr", "61 * * * *"])
    assert result.exit_code == 2
    assert "minute" in result.output


def test_next_of_a_job_in_a_broken_registry_prints_the_problems(tmp_path: Path) -> None:
    write(tmp_path, BROKEN)
    result = cronhub("next", "backup", cwd=tmp_path)
    assert result.returncode == 2
    assert 'jobs.toml:2: job "backup": schedule:' in result.stderr


# --- no daemon -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["status"], ["ping"], ["history"], ["run", "x"]])
def test_commands_without_a_daemon_exit_3_with_a_plain_message(
    tmp_path: Path, command: list[str]
) -> None:
    socket = tmp_path / "none.sock"
    result = cronhub(*command, "--socket", str(socket), cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr == (
        f'cronhub: no daemon is listening on {socket} — start it with "cronhub start"\n'
    )
    assert result.stdout == ""


def test_status_finds_the_socket_named_in_the_registry(tmp_path: Path) -> None:
    write(tmp_path, '[scheduler]\nsocket = "run/ctl.sock"\n')
    result = cronhub("status", cwd=tmp_path)
    assert result.returncode == 3
    assert f"listening on {tmp_path / 'run' / 'ctl.sock'} —" in result.stderr


def test_status_does_not_import_the_orm_croniter_or_pydantic(tmp_path: Path) -> None:
    probe = textwrap.dedent(
        f"""
        import json, sys
        sys.argv = ["cronhub", "status", "--socket", {str(tmp_path / "none.sock")!r}]
        from cronhub.cli import main
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        heavy = ["sqlmodel", "sqlalchemy", "croniter", "pydantic", "watchfiles", "asyncio",
                 "cronhub.store", "cronhub.daemon", "cronhub.registry", "cronhub.schedule",
                 "cronhub.cli.validate", "cronhub.cli.next"]
        print(json.dumps({{"exit": code, "loaded": [m for m in heavy if m in sys.modules]}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"exit": 3, "loaded": []}


# --- socket resolution -----------------------------------------------------------------


class TestResolveSocket:
    def test_an_explicit_socket_wins(self, tmp_path: Path) -> None:
        config = write(tmp_path, '[scheduler]\nsocket = "x.sock"\n')
        environ = {"CRONHUB_SOCKET": "/env.sock"}
        assert resolve_socket(config, "/given.sock", environ) == "/given.sock"

    def test_cronhub_socket_beats_the_registry(self, tmp_path: Path) -> None:
        config = write(tmp_path, '[scheduler]\nsocket = "x.sock"\n')
        assert resolve_socket(config, None, {"CRONHUB_SOCKET": "/env.sock"}) == "/env.sock"

    def test_the_registry_socket_is_relative_to_its_folder(self, tmp_path: Path) -> None:
        config = write(tmp_path, '[scheduler]\nsocket = "run/x.sock"\n')
        assert resolve_socket(config, None, {}) == str(tmp_path / "run" / "x.sock")

    def test_runtime_directory_is_the_default_under_systemd(self, tmp_path: Path) -> None:
        config = write(tmp_path, "")
        environ = {"RUNTIME_DIRECTORY": "/run/cronhub:/run/other"}
        assert resolve_socket(config, None, environ) == "/run/cronhub/cronhub.sock"

    def test_the_default_is_next_to_the_registry(self, tmp_path: Path) -> None:
        assert resolve_socket(tmp_path / "jobs.toml", None, {}) == str(tmp_path / "cronhub.sock")

    def test_a_broken_registry_falls_back_to_the_default(self, tmp_path: Path) -> None:
        config = write(tmp_path, "[scheduler\n")
        assert resolve_socket(config, None, {}) == str(tmp_path / "cronhub.sock")

    def test_it_agrees_with_the_registry_parser(self, tmp_path: Path) -> None:
        from cronhub.registry import parse_registry

        for text, environ in [
            ('[scheduler]\nsocket = "../a/b.sock"\n', {}),
            ("", {"RUNTIME_DIRECTORY": "rt"}),
            ("", {}),
        ]:
            config = write(tmp_path, text)
            parsed = parse_registry(text, str(config), environ=environ)
            assert resolve_socket(config, None, environ) == parsed.settings.socket

    def test_a_scheduler_header_inside_a_multiline_string_is_not_the_table(
        self, tmp_path: Path
    ) -> None:
        text = (
            '[jobs.a]\nschedule = "@daily"\ncommand = """\n[scheduler]\nsocket = "fake.sock"\n"""\n'
            '[jobs.b]\nschedule = "@daily"\ncommand = "true"\n'
        )
        config = write(tmp_path, text)
        assert resolve_socket(config, None, {}) == str(tmp_path / "cronhub.sock")

    def test_the_scheduler_table_is_read_wherever_it_sits(self, tmp_path: Path) -> None:
        jobs = "".join(f'[jobs.j{i}]\nschedule = "@daily"\ncommand = "true"\n' for i in range(3))
        for text in (
            f'[scheduler]\nsocket = "first.sock"\n{jobs}',
            f'{jobs}[scheduler]\nsocket = "first.sock"\n',
            f'{jobs}[scheduler] # comment\nsocket = "first.sock"\n[defaults]\ntimeout = "1m"\n',
            f'scheduler.socket = "first.sock"\n{jobs}',
        ):
            config = write(tmp_path, text)
            assert resolve_socket(config, None, {}) == str(tmp_path / "first.sock"), text
