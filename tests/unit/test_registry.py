"""Registry parsing: jobs.toml text to validated JobSpecs, and every error located."""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cronhub.errors import ConfigError, ConfigIssue
from cronhub.model import CronSchedule, IntervalSchedule, JobSpec, RebootSchedule, Registry
from cronhub.registry import (
    RegistryCache,
    RegistryDiff,
    default_registry_path,
    diff_registries,
    job_config,
    parse_registry,
)

BASE = "/srv/app"
PATH = f"{BASE}/jobs.toml"
SHOWN = PATH  # messages name the path exactly as given

DESIGN_EXAMPLE = """\
[scheduler]                        # every key optional
timezone = "UTC"                   # IANA name; default zone for cron schedules (default UTC)
max_concurrent = 10                # runs at once across all jobs
history_retention_days = 30
database = "cronhub.db"            # a path (relative to this file's folder) or an SQLAlchemy URL
socket = "cronhub.sock"            # control socket path (relative to this file's folder)
shutdown_grace = "30s"

[defaults]                         # optional: default values for every job's keys below
timeout = "10m"

[jobs.cleanup-expired-privacy-exports]      # the table key is the job's unique name
description = "Delete GDPR export files older than 7 days"
schedule = "0 2 * * *"             # cron expression, macro, "every 30s", or milliseconds
command = "find exports -name '*.json' -mtime +7 -delete"   # a shell string, or an argv list
timeout = "10m"                    # duration string or integer milliseconds
retries = 3                        # retry a failed or timed-out run up to N times
retry_delay = "30s"                # first retry delay, doubling each attempt
run_on_startup = false
singleton = true                   # a tick that finds the job still running is skipped
enabled = true
timezone = "Europe/Berlin"         # per-job override of [scheduler].timezone
env = { EXPORT_DIR = "exports" }
cwd = "."                          # relative to this file's folder

[jobs.dpop-cache-cleanup]
schedule = "every 60s"
callable = "myapp.dpop:cleanup_expired"   # a Python callable "package.module:function"
args = []
kwargs = { max_age_s = 3600 }
"""


def parse(
    text: str,
    *,
    environ: dict[str, str] | None = None,
    module_exists: object = None,
    path: str = PATH,
) -> Registry:
    return parse_registry(
        textwrap.dedent(text),
        path,
        environ=environ,
        module_exists=module_exists,  # type: ignore[arg-type]
    )


def issues(text: str, **kwargs: object) -> list[str]:
    """Every issue the registry raises, as printed."""
    with pytest.raises(ConfigError) as caught:
        parse(text, **kwargs)  # type: ignore[arg-type]
    return [str(issue) for issue in caught.value.issues]


def only_issue(text: str, **kwargs: object) -> str:
    found = issues(text, **kwargs)
    assert len(found) == 1, found
    return found[0]


def job(body: str, name: str = "x") -> str:
    """A registry with one job whose header is on line 1."""
    return f"[jobs.{name}]\n" + textwrap.dedent(body)


# --- good registries -------------------------------------------------------------


class TestGoodRegistries:
    def test_design_example_parses_to_job_specs(self) -> None:
        checked: list[tuple[str, str]] = []

        def exists(module: str, base_dir: str) -> bool:
            checked.append((module, base_dir))
            return True

        registry = parse(DESIGN_EXAMPLE, module_exists=exists)

        assert checked == [("myapp.dpop", BASE)]
        assert registry.settings.database == f"sqlite:///{BASE}/cronhub.db"
        assert registry.settings.socket == f"{BASE}/cronhub.sock"
        assert registry.settings.shutdown_grace_ms == 30_000
        assert list(registry.jobs) == ["cleanup-expired-privacy-exports", "dpop-cache-cleanup"]
        assert registry.jobs["cleanup-expired-privacy-exports"] == JobSpec(
            name="cleanup-expired-privacy-exports",
            description="Delete GDPR export files older than 7 days",
            schedule=CronSchedule(expr="0 2 * * *", text="0 2 * * *", timezone="Europe/Berlin"),
            command="find exports -name '*.json' -mtime +7 -delete",
            timeout_ms=600_000,
            retries=3,
            retry_delay_ms=30_000,
            timezone="Europe/Berlin",
            env={"EXPORT_DIR": "exports"},
            cwd=BASE,
        )
        assert registry.jobs["dpop-cache-cleanup"] == JobSpec(
            name="dpop-cache-cleanup",
            schedule=IntervalSchedule(every_ms=60_000, text="every 60s"),
            callable="myapp.dpop:cleanup_expired",
            kwargs={"max_age_s": 3600},
            timeout_ms=600_000,
            cwd=BASE,
        )
        assert registry.warnings == ()

    def test_absent_keys_take_the_documented_defaults(self) -> None:
        spec = parse(job('schedule = "@daily"\ncommand = "true"\n')).jobs["x"]
        assert spec == JobSpec(
            name="x",
            schedule=spec.schedule,
            command="true",
            timeout_ms=None,
            kill_grace_ms=5_000,
            retries=0,
            retry_delay_ms=10_000,
            run_on_startup=False,
            singleton=True,
            enabled=True,
            timezone="UTC",
            cwd=BASE,
            output_limit=64 * 1024,
        )

    def test_argv_list_command_becomes_a_tuple(self) -> None:
        spec = parse(job('schedule = "@hourly"\ncommand = ["ls", "-l", ""]\n')).jobs["x"]
        assert spec.command == ("ls", "-l", "")

    def test_kill_grace_and_output_limit_are_parsed(self) -> None:
        text = job(
            'schedule = "@hourly"\ncommand = "true"\nkill_grace = "2s"\noutput_limit = "1MiB"\n'
        )
        spec = parse(text).jobs["x"]
        assert (spec.kill_grace_ms, spec.output_limit) == (2_000, 1024 * 1024)

    def test_integer_schedule_is_milliseconds(self) -> None:
        spec = parse(job('schedule = 5000\ncommand = "true"\n')).jobs["x"]
        assert spec.schedule == IntervalSchedule(every_ms=5000, text="5000")

    def test_reboot_macro_is_a_reboot_schedule(self) -> None:
        spec = parse(job('schedule = "@reboot"\ncommand = "true"\n')).jobs["x"]
        assert isinstance(spec.schedule, RebootSchedule)

    def test_job_zone_falls_back_to_the_scheduler_zone(self) -> None:
        text = '[scheduler]\ntimezone = "Asia/Kolkata"\n' + job(
            'schedule = "0 2 * * *"\ncommand = "t"\n'
        )
        spec = parse(text).jobs["x"]
        assert spec.timezone == "Asia/Kolkata"
        assert isinstance(spec.schedule, CronSchedule)
        assert spec.schedule.timezone == "Asia/Kolkata"

    def test_cwd_is_resolved_against_the_registry_folder(self) -> None:
        text = job('schedule = "@daily"\ncommand = "t"\ncwd = "../data/./x"\n')
        assert parse(text).jobs["x"].cwd == "/srv/data/x"

    def test_absolute_cwd_is_kept(self) -> None:
        text = job('schedule = "@daily"\ncommand = "t"\ncwd = "/var/tmp"\n')
        assert parse(text).jobs["x"].cwd == "/var/tmp"

    def test_timeout_zero_means_no_timeout(self) -> None:
        text = '[defaults]\ntimeout = "1h"\n' + job(
            'schedule = "@daily"\ncommand = "t"\ntimeout = 0\nsingleton = false\n'
        )
        assert parse(text).jobs["x"].timeout_ms is None

    def test_callable_args_and_kwargs_keep_their_values(self) -> None:
        text = job(
            'schedule = "@daily"\ncallable = "pkg.mod:run"\n'
            'args = [1, "two", [3.5, true]]\nkwargs = { a = { b = [1] } }\n'
        )
        spec = parse(text).jobs["x"]
        assert spec.args == (1, "two", [3.5, True])
        assert spec.kwargs == {"a": {"b": [1]}}

    def test_jobs_keep_file_order_and_header_lines(self) -> None:
        text = """\
            [jobs.b]
            schedule = "@daily"
            command = "t"

            [jobs.a]
            schedule = "@daily"
            command = "t"
            """
        registry = parse(text)
        assert [(name, spec.line) for name, spec in registry.jobs.items()] == [("b", 1), ("a", 5)]

    def test_quoted_dotted_and_inline_jobs_parse(self) -> None:
        text = """\
            [jobs."quoted.name"]
            schedule = "@daily"
            command = "t"

            [jobs]
            dotted.schedule = "@daily"
            dotted.command = "t"
            inline = { schedule = "@daily", command = "t" }
            """
        registry = parse(text)
        assert {name: spec.line for name, spec in registry.jobs.items()} == {
            "quoted.name": 1,
            "dotted": 6,
            "inline": 8,
        }

    def test_registry_without_jobs_is_valid(self) -> None:
        assert parse("").jobs == {}

    def test_module_check_is_skipped_without_a_checker(self) -> None:
        text = job('schedule = "@daily"\ncallable = "nowhere.to.be:found"\n')
        assert parse(text).jobs["x"].callable == "nowhere.to.be:found"

    def test_path_relative_to_working_directory_resolves_against_it(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        registry = parse(job('schedule = "@daily"\ncommand = "t"\n'), path="jobs.toml")
        assert registry.jobs["x"].cwd == str(tmp_path)
        assert registry.settings.socket == str(tmp_path / "cronhub.sock")


class TestDefaults:
    def test_defaults_apply_to_every_job_and_job_values_win(self) -> None:
        text = """\
            [defaults]
            retries = 2
            timeout = "5m"

            [jobs.a]
            schedule = "@daily"
            command = "t"

            [jobs.b]
            schedule = "@daily"
            command = "t"
            retries = 0
            """
        jobs = parse(text).jobs
        assert (jobs["a"].retries, jobs["a"].timeout_ms) == (2, 300_000)
        assert (jobs["b"].retries, jobs["b"].timeout_ms) == (0, 300_000)

    def test_default_env_merges_with_job_env(self) -> None:
        text = '[defaults]\nenv = { A = "1", B = "1" }\n' + job(
            'schedule = "@daily"\ncommand = "t"\nenv = { B = "2" }\n'
        )
        assert parse(text).jobs["x"].env == {"A": "1", "B": "2"}

    def test_default_timezone_applies_to_job_schedules(self) -> None:
        text = '[defaults]\ntimezone = "America/New_York"\n' + job(
            'schedule = "0 2 * * *"\ncommand = "t"\n'
        )
        spec = parse(text).jobs["x"]
        assert spec.timezone == "America/New_York"
        assert isinstance(spec.schedule, CronSchedule)
        assert spec.schedule.timezone == "America/New_York"

    @pytest.mark.parametrize("key", ["command", "callable", "args", "kwargs", "schedule"])
    def test_keys_saying_what_a_job_runs_cannot_have_defaults(self, key: str) -> None:
        text = f'[defaults]\n{key} = "x"\n'
        assert only_issue(text) == (
            f"{SHOWN}:2: defaults.{key}: {key} cannot have a default: set it in each job"
        )

    def test_a_bad_default_is_reported_once_not_per_job(self) -> None:
        text = (
            "[defaults]\nretries = -1\n"
            + job('schedule = "@daily"\ncommand = "t"\n', "a")
            + job('schedule = "@daily"\ncommand = "t"\n', "b")
        )
        assert issues(text) == [f"{SHOWN}:2: defaults.retries: must be between 0 and 100, got -1"]


class TestSchedulerSettings:
    def test_scheduler_keys_are_read(self) -> None:
        text = """\
            [scheduler]
            timezone = "Europe/Berlin"
            max_concurrent = 3
            history_retention_days = 7
            shutdown_grace = "1m"
            control_group = "cronhub"
            enabled = false
            """
        settings = parse(text).settings
        assert (
            settings.timezone,
            settings.max_concurrent,
            settings.history_retention_days,
            settings.shutdown_grace_ms,
            settings.control_group,
            settings.enabled,
        ) == ("Europe/Berlin", 3, 7, 60_000, "cronhub", False)

    def test_database_url_is_kept_as_is(self) -> None:
        text = '[scheduler]\ndatabase = "postgresql+psycopg://u@db/cronhub"\n'
        assert parse(text).settings.database == "postgresql+psycopg://u@db/cronhub"

    def test_relative_database_path_becomes_an_absolute_sqlite_url(self) -> None:
        text = '[scheduler]\ndatabase = "state/history.db"\n'
        assert parse(text).settings.database == f"sqlite:///{BASE}/state/history.db"

    def test_relative_socket_is_made_absolute(self) -> None:
        assert parse('[scheduler]\nsocket = "run/c.sock"\n').settings.socket == f"{BASE}/run/c.sock"

    def test_systemd_directories_hold_the_default_database_and_socket(self) -> None:
        environ = {
            "STATE_DIRECTORY": "/var/lib/cronhub:/var/lib/other",
            "RUNTIME_DIRECTORY": "/run/cronhub",
        }
        settings = parse("", environ=environ).settings
        assert settings.database == "sqlite:////var/lib/cronhub/cronhub.db"
        assert settings.socket == "/run/cronhub/cronhub.sock"

    def test_registry_paths_win_over_systemd_directories(self) -> None:
        environ = {"STATE_DIRECTORY": "/var/lib/cronhub", "RUNTIME_DIRECTORY": "/run/cronhub"}
        text = '[scheduler]\ndatabase = "my.db"\nsocket = "/tmp/my.sock"\n'
        settings = parse(text, environ=environ).settings
        assert (settings.database, settings.socket) == (f"sqlite:///{BASE}/my.db", "/tmp/my.sock")

    def test_long_socket_path_is_a_warning(self) -> None:
        long_dir = "/" + "d" * 120
        registry = parse("", environ={"RUNTIME_DIRECTORY": long_dir})
        assert [issue.field for issue in registry.warnings] == ["scheduler.socket"]


class TestEnvironmentOverrides:
    def test_overrides_win_over_the_registry(self) -> None:
        text = '[scheduler]\ntimezone = "UTC"\nmax_concurrent = 10\nhistory_retention_days = 30\n'
        environ = {
            "CRONHUB_TIMEZONE": "Australia/Sydney",
            "CRONHUB_MAX_CONCURRENT": "2",
            "CRONHUB_HISTORY_RETENTION_DAYS": "90",
            "CRONHUB_ENABLED": "false",
            "CRONHUB_SOCKET": "/run/x.sock",
        }
        settings = parse(text, environ=environ).settings
        assert (
            settings.timezone,
            settings.max_concurrent,
            settings.history_retention_days,
            settings.enabled,
            settings.socket,
        ) == ("Australia/Sydney", 2, 90, False, "/run/x.sock")

    def test_timezone_override_reaches_jobs_without_their_own_zone(self) -> None:
        text = job('schedule = "0 2 * * *"\ncommand = "t"\n')
        spec = parse(text, environ={"CRONHUB_TIMEZONE": "Europe/Berlin"}).jobs["x"]
        assert spec.timezone == "Europe/Berlin"

    @pytest.mark.parametrize(
        ("word", "enabled"),
        [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
    )
    def test_enabled_override_accepts_boolean_words(self, word: str, enabled: bool) -> None:
        assert parse("", environ={"CRONHUB_ENABLED": word}).settings.enabled is enabled

    def test_empty_variable_counts_as_unset(self) -> None:
        assert parse("", environ={"CRONHUB_MAX_CONCURRENT": ""}).settings.max_concurrent == 10

    @pytest.mark.parametrize(
        ("name", "value", "message"),
        [
            ("CRONHUB_TIMEZONE", "Mars/Olympus", 'unknown time zone "Mars/Olympus"'),
            ("CRONHUB_MAX_CONCURRENT", "ten", "expected a whole number"),
            ("CRONHUB_MAX_CONCURRENT", "0", "must be between 1 and 10000, got 0"),
            ("CRONHUB_HISTORY_RETENTION_DAYS", "-3", "expected a whole number"),
            ("CRONHUB_ENABLED", "maybe", "expected true/false"),
        ],
    )
    def test_bad_override_is_an_issue_named_after_the_variable(
        self, name: str, value: str, message: str
    ) -> None:
        found = [i for i in _issues_of("", environ={name: value}) if i.field == name]
        assert len(found) == 1
        assert str(found[0]).startswith(f"{name}: {message}")


class TestWarnings:
    def test_singleton_without_timeout_warns_at_its_header(self) -> None:
        registry = parse("\n" + job('schedule = "@daily"\ncommand = "t"\n'))
        assert [str(w) for w in registry.warnings] == [
            f'{SHOWN}:2: job "x": timeout: warning: singleton job has no timeout: '
            "one hung run would block it for good"
        ]
        assert registry.warnings[0].severity == "warning"

    def test_job_with_a_timeout_does_not_warn(self) -> None:
        text = job('schedule = "@daily"\ncommand = "t"\ntimeout = "1m"\n')
        assert parse(text).warnings == ()

    def test_overlapping_job_without_timeout_does_not_warn(self) -> None:
        text = job('schedule = "@daily"\ncommand = "t"\nsingleton = false\n')
        assert parse(text).warnings == ()


# --- errors ---------------------------------------------------------------------------


def _issues_of(text: str, **kwargs: object) -> tuple[ConfigIssue, ...]:
    with pytest.raises(ConfigError) as caught:
        parse(text, **kwargs)  # type: ignore[arg-type]
    return caught.value.issues


GOOD = 'schedule = "@daily"\ncommand = "true"\n'
"""Lines 2 and 3 of a one-job registry built with :func:`job`."""

JOB_ERRORS = [
    # (id, body after the header, expected issue: "LINE: FIELD: message")
    ("unknown-key", GOOD + 'scedule = "x"\n', '4: scedule: unknown key; did you mean "schedule"?'),
    ("missing-schedule", 'command = "t"\n', "1: schedule: missing: every job needs a schedule"),
    (
        "schedule-type",
        'command = "t"\nschedule = true\n',
        "3: schedule: expected a cron expression",
    ),
    ("bad-cron", 'command = "t"\nschedule = "61 * * * *"\n', "3: schedule: "),
    ("short-interval", 'command = "t"\nschedule = "every 500ms"\n', "3: schedule: "),
    (
        "neither",
        'schedule = "@daily"\n',
        "1: command: missing: every job needs a command or a callable",
    ),
    ("both", GOOD + 'callable = "a:b"\n', "4: callable: set either command or callable, not both"),
    ("empty-command", 'schedule = "@daily"\ncommand = "  "\n', "3: command: must not be empty"),
    (
        "empty-argv",
        'schedule = "@daily"\ncommand = []\n',
        "3: command: the argv list must not be empty",
    ),
    (
        "argv-int",
        'schedule = "@daily"\ncommand = ["ls", 1]\n',
        "3: command: argv item 1 must be a string",
    ),
    ("argv-empty-program", 'schedule = "@daily"\ncommand = [""]\n', "3: command: the program"),
    ("command-type", 'schedule = "@daily"\ncommand = 5\n', "3: command: expected a shell string"),
    (
        "command-nul",
        'schedule = "@daily"\ncommand = "a\\u0000b"\n',
        "3: command: must not contain a NUL",
    ),
    (
        "callable-no-colon",
        'schedule = "@daily"\ncallable = "pkg.mod.f"\n',
        '3: callable: expected "package.module:function"',
    ),
    (
        "callable-bad-ident",
        'schedule = "@daily"\ncallable = "pkg.1mod:f"\n',
        "3: callable: expected",
    ),
    (
        "callable-keyword",
        'schedule = "@daily"\ncallable = "pkg.mod:class"\n',
        "3: callable: expected",
    ),
    ("callable-empty-fn", 'schedule = "@daily"\ncallable = "pkg.mod:"\n', "3: callable: expected"),
    ("args-on-command", GOOD + "args = [1]\n", "4: args: args applies to callable jobs only"),
    (
        "kwargs-on-command",
        GOOD + "kwargs = {a = 1}\n",
        "4: kwargs: kwargs applies to callable jobs only",
    ),
    (
        "args-type",
        'schedule = "@daily"\ncallable = "a:b"\nargs = "x"\n',
        "4: args: expected an array",
    ),
    (
        "args-date",
        'schedule = "@daily"\ncallable = "a:b"\nargs = [2024-01-01]\n',
        "4: args: dates and times",
    ),
    (
        "kwargs-type",
        'schedule = "@daily"\ncallable = "a:b"\nkwargs = [1]\n',
        "4: kwargs: expected a table",
    ),
    (
        "kwargs-key",
        'schedule = "@daily"\ncallable = "a:b"\nkwargs = {"a-b" = 1}\n',
        "4: kwargs.a-b: keyword argument names",
    ),
    ("timeout-text", GOOD + 'timeout = "ten"\n', '4: timeout: expected a duration like "500ms"'),
    ("timeout-negative", GOOD + "timeout = -1\n", "4: timeout: a duration cannot be negative"),
    ("timeout-float", GOOD + "timeout = 1.5\n", "4: timeout: expected a duration"),
    (
        "timeout-huge",
        GOOD + 'timeout = "400d"\n',
        "4: timeout: duration '400d' is longer than a year",
    ),
    ("kill-grace", GOOD + "kill_grace = true\n", "4: kill_grace: expected a duration"),
    (
        "retries-bool",
        GOOD + "retries = true\n",
        "4: retries: expected a whole number, got the boolean true",
    ),
    ("retries-negative", GOOD + "retries = -1\n", "4: retries: must be between 0 and 100, got -1"),
    ("retries-huge", GOOD + "retries = 100000\n", "4: retries: must be between 0 and 100"),
    (
        "retries-string",
        GOOD + 'retries = "3"\n',
        '4: retries: expected a whole number, got the string "3"',
    ),
    ("retry-delay", GOOD + 'retry_delay = "soon"\n', "4: retry_delay: expected a duration"),
    (
        "run-on-startup",
        GOOD + 'run_on_startup = "yes"\n',
        "4: run_on_startup: expected true or false",
    ),
    (
        "singleton",
        GOOD + "singleton = 1\n",
        "4: singleton: expected true or false, got the integer 1",
    ),
    ("enabled", GOOD + 'enabled = "false"\n', "4: enabled: expected true or false"),
    (
        "timezone",
        GOOD + 'timezone = "Europe/Berln"\n',
        '4: timezone: unknown time zone "Europe/Berln"; did you mean "Europe/Berlin"?',
    ),
    ("timezone-path", GOOD + 'timezone = "../../etc/passwd"\n', "4: timezone: unknown time zone"),
    ("timezone-dir", GOOD + 'timezone = "Europe"\n', "4: timezone: unknown time zone"),
    ("env-type", GOOD + 'env = "A=1"\n', "4: env: expected a table"),
    (
        "env-value",
        GOOD + "env = { A = 1 }\n",
        "4: env.A: expected a string value, got the integer 1",
    ),
    (
        "env-subtable-value",
        GOOD + "[jobs.x.env]\nA = 'a'\nB = false\n",
        "6: env.B: expected a string value",
    ),
    ("env-name", GOOD + 'env = { "A=B" = "1" }\n', "4: env.A=B: variable names"),
    ("cwd-type", GOOD + "cwd = 1\n", "4: cwd: expected a string"),
    ("cwd-empty", GOOD + 'cwd = ""\n', "4: cwd: must not be empty"),
    ("output-limit", GOOD + 'output_limit = "lots"\n', "4: output_limit: expected a size"),
    (
        "output-limit-huge",
        GOOD + 'output_limit = "2GiB"\n',
        "4: output_limit: must be at most 64MiB",
    ),
    ("description", GOOD + "description = 3\n", "4: description: expected a string"),
]


@pytest.mark.parametrize(
    ("body", "expected"), [c[1:] for c in JOB_ERRORS], ids=[c[0] for c in JOB_ERRORS]
)
def test_job_error_names_line_job_and_field(body: str, expected: str) -> None:
    found = issues(job(body))
    assert any(
        issue.startswith(f'{SHOWN}:{expected.split(": ", 1)[0]}: job "x": ') for issue in found
    )
    line, rest = expected.split(": ", 1)
    assert any(issue.startswith(f'{SHOWN}:{line}: job "x": {rest}') for issue in found), found


SCHEDULER_ERRORS = [
    ("unknown", 'timzone = "UTC"', 'timzone: unknown key; did you mean "timezone"?'),
    ("timezone", 'timezone = "Nowhere/City"', 'timezone: unknown time zone "Nowhere/City"'),
    ("timezone-type", "timezone = 1", "timezone: expected a string, got the integer 1"),
    (
        "max-concurrent-zero",
        "max_concurrent = 0",
        "max_concurrent: must be between 1 and 10000, got 0",
    ),
    ("max-concurrent-bool", "max_concurrent = true", "max_concurrent: expected a whole number"),
    ("max-concurrent-huge", "max_concurrent = 9999999999", "max_concurrent: must be between 1"),
    ("retention", "history_retention_days = 0", "history_retention_days: must be between 1"),
    ("database-type", "database = 1", "database: expected a string"),
    ("database-empty", 'database = ""', "database: must not be empty"),
    ("socket-type", "socket = []", "socket: expected a string, got an array"),
    ("shutdown-grace", 'shutdown_grace = "forever"', "shutdown_grace: expected a duration"),
    ("control-group", 'control_group = "two words"', "control_group: expected a group name"),
    ("enabled", 'enabled = "no"', "enabled: expected true or false"),
]


@pytest.mark.parametrize(
    ("line", "expected"), [c[1:] for c in SCHEDULER_ERRORS], ids=[c[0] for c in SCHEDULER_ERRORS]
)
def test_scheduler_error_names_line_and_field(line: str, expected: str) -> None:
    text = f"# comment\n[scheduler]\n{line}\n"
    assert only_issue(text).startswith(f"{SHOWN}:3: scheduler.{expected}")


class TestStructureErrors:
    def test_unknown_top_level_table_suggests_the_closest(self) -> None:
        text = '[job.x]\nschedule = "@daily"\n'
        assert only_issue(text) == f'{SHOWN}:1: job: unknown table or key; did you mean "jobs"?'

    def test_job_key_at_top_level_says_where_it_belongs(self) -> None:
        assert only_issue('schedule = "@daily"\n') == (
            f"{SHOWN}:1: schedule: unknown table or key; it belongs in a [jobs.NAME] table "
            "or in [defaults]"
        )

    def test_scheduler_key_at_top_level_says_where_it_belongs(self) -> None:
        assert only_issue("\nmax_concurrent = 3\n").startswith(f"{SHOWN}:2: max_concurrent:")

    def test_unknown_defaults_key_suggests_the_closest(self) -> None:
        text = '[defaults]\ntimout = "5m"\n'
        assert (
            only_issue(text) == f'{SHOWN}:2: defaults.timout: unknown key; did you mean "timeout"?'
        )

    def test_bad_default_value_is_located_in_defaults(self) -> None:
        assert only_issue('\n[defaults]\nsingleton = "no"\n').startswith(
            f"{SHOWN}:3: defaults.singleton: expected true or false"
        )

    def test_jobs_must_be_a_table(self) -> None:
        assert only_issue('jobs = "all"\n') == (
            f'{SHOWN}:1: jobs: expected a table, got the string "all"'
        )

    def test_array_of_jobs_tables_is_refused(self) -> None:
        assert only_issue('[[jobs]]\nschedule = "@daily"\n') == (
            f"{SHOWN}:1: jobs: expected a table, got an array"
        )

    def test_scheduler_must_be_a_table(self) -> None:
        assert only_issue("\nscheduler = 1\n").startswith(f"{SHOWN}:2: scheduler: expected a table")

    def test_job_must_be_a_table(self) -> None:
        assert only_issue('[jobs]\nx = "true"\n') == (
            f'{SHOWN}:2: job "x": expected a table of job keys, got the string "true"'
        )

    @pytest.mark.parametrize("name", ["Backup", "-x", "a b", "a" * 65, "caf\u00e9", ""])
    def test_bad_job_name_is_refused_at_its_header(self, name: str) -> None:
        text = "\n" + job(GOOD, name=json.dumps(name))
        found = only_issue(text)
        assert found.startswith(f'{SHOWN}:2: job "{name}": job names are 1-64 characters')

    def test_uppercase_job_name_suggests_lowercase(self) -> None:
        assert only_issue(job(GOOD, name="Backup")).endswith('; did you mean "backup"?')

    def test_missing_callable_module_is_an_error(self) -> None:
        text = job('schedule = "@daily"\ncallable = "myapp.gone:run"\n')
        assert only_issue(text, module_exists=lambda module, base: False) == (
            f'{SHOWN}:3: job "x": callable: module "myapp.gone" not found in the '
            "registry's folder or on sys.path"
        )

    def test_every_issue_is_reported_at_once(self) -> None:
        text = """\
            [scheduler]
            max_concurrent = 0

            [jobs.a]
            schedule = "nope"
            command = "t"

            [jobs.b]
            command = "t"
            retries = "3"
            """
        found = issues(text, environ={"CRONHUB_ENABLED": "perhaps"})
        assert [issue.split(": ", 1)[0] for issue in found] == [
            f"{SHOWN}:2",
            f"{SHOWN}:5",
            f"{SHOWN}:8",
            f"{SHOWN}:10",
            "CRONHUB_ENABLED",
        ]


class TestKeyLocations:
    def test_key_inside_a_multiline_string_does_not_confuse_lines(self) -> None:
        text = '''\
            [jobs.x]
            description = """
            [jobs.y]
            retries = 1
            """
            schedule = "@daily"
            command = "t"
            retries = -1
            '''
        assert only_issue(text).startswith(f'{SHOWN}:8: job "x": retries:')

    def test_dotted_key_inside_a_job_table_is_located(self) -> None:
        text = '[jobs.x]\nschedule = "@daily"\ncommand = "t"\nenv.A = "1"\nenv.B = 2\n'
        assert only_issue(text).startswith(f'{SHOWN}:5: job "x": env.B:')

    def test_key_in_a_multiline_array_is_located_after_it(self) -> None:
        text = '[jobs.x]\nschedule = "@daily"\ncommand = [\n  "ls",\n  "-l",\n]\nretries = -2\n'
        assert only_issue(text).startswith(f'{SHOWN}:7: job "x": retries:')

    def test_quoted_job_header_is_located(self) -> None:
        text = '\n\n[jobs."a b"]\nschedule = "@daily"\ncommand = "t"\n'
        assert only_issue(text).startswith(f'{SHOWN}:3: job "a b": job names')

    def test_literal_quoted_key_is_located(self) -> None:
        text = "[jobs.'x']\n'schedule' = \"@daily\"\ncommand = 't'\n'retries' = -1\n"
        assert only_issue(text).startswith(f'{SHOWN}:4: job "x": retries:')


class TestSyntaxErrors:
    def test_syntax_error_gives_line_and_column(self) -> None:
        text = '[jobs.x]\nschedule = "@daily"\ncommand = "unterminated\n'
        found = only_issue(text)
        assert found.startswith(f"{SHOWN}:3:")
        assert "TOML syntax error" in found
        assert "(at line" not in found

    def test_duplicate_table_is_a_syntax_error_on_its_line(self) -> None:
        found = _issues_of("[jobs.x]\n[jobs.x]\n")
        assert found[0].line == 2
        assert found[0].col is not None

    def test_error_at_end_of_document_points_at_the_last_line(self) -> None:
        found = _issues_of("[jobs.x]\nschedule = ")
        assert (found[0].line, found[0].col) == (2, 12)

    def test_syntax_position_attributes_win_over_the_message(self) -> None:
        error = tomllib.TOMLDecodeError("Invalid value (at line 9, column 9)")
        error.lineno, error.colno = 3, 4  # type: ignore[attr-defined]  # Python 3.14 and tomli
        from cronhub.registry import _syntax_issue

        issue = _syntax_issue(error, "", "jobs.toml")
        assert (issue.line, issue.col, issue.message) == (3, 4, "TOML syntax error: Invalid value")


# --- diff, config, default path ------------------------------------------------------


class TestDiff:
    def test_diff_sorts_jobs_into_added_removed_changed_unchanged(self) -> None:
        old = parse(job(GOOD, "keep") + job(GOOD, "edit") + job(GOOD, "drop"))
        new = parse(
            "\n\n" + job(GOOD, "add") + job(GOOD + "retries = 1\n", "edit") + job(GOOD, "keep")
        )
        assert diff_registries(old, new) == RegistryDiff(
            added=("add",), removed=("drop",), changed=("edit",), unchanged=("keep",)
        )

    def test_moving_a_job_in_the_file_is_no_change(self) -> None:
        old = parse(job(GOOD))
        new = parse("\n\n\n" + job(GOOD))
        diff = diff_registries(old, new)
        assert diff.unchanged == ("x",)
        assert diff.is_empty


class TestJobConfig:
    def test_job_config_is_json_with_milliseconds(self) -> None:
        text = job(
            'schedule = "every 1h30m"\ncallable = "pkg.mod:f"\nargs = [[1, 2]]\n'
            'timeout = "10m"\nenv = { A = "b" }\n'
        )
        config = job_config(parse(text).jobs["x"])
        assert json.loads(json.dumps(config)) == config
        assert config["schedule"] == "every 1h30m"
        assert config["schedule_kind"] == "interval"
        assert config["timeout_ms"] == 600_000
        assert config["retry_delay_ms"] == 10_000
        assert config["args"] == [[1, 2]]
        assert config["env"] == {"A": "b"}

    def test_argv_command_is_a_list(self) -> None:
        config = job_config(parse(job('schedule = "@daily"\ncommand = ["ls"]\n')).jobs["x"])
        assert config["command"] == ["ls"]
        assert config["timeout_ms"] is None


class TestDefaultRegistryPath:
    def test_cronhub_config_names_the_registry(self) -> None:
        assert default_registry_path({"CRONHUB_CONFIG": "/etc/cronhub/jobs.toml"}) == (
            "/etc/cronhub/jobs.toml"
        )

    def test_default_is_jobs_toml_in_the_working_directory(self) -> None:
        assert default_registry_path({}) == "jobs.toml"
        assert default_registry_path({"CRONHUB_CONFIG": ""}) == "jobs.toml"


# --- robustness ----------------------------------------------------------------------------

_GOOD_LINES = DESIGN_EXAMPLE.splitlines(keepends=True)
_WRONG_VALUES = [
    "true",
    "-1",
    "0",
    "1.5",
    '""',
    '"x"',
    "[]",
    "{}",
    "[1, 2]",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    '"every 0s"',
    '"* * *"',
    "99999999999999",
    '"\\u0000"',
]


@st.composite
def mutated_registries(draw: st.DrawFn) -> str:
    lines = list(_GOOD_LINES)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "bytes", "value", "key", "swap"]))
        line = lines[index]
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, line)
        elif action == "bytes":
            junk = draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=8))
            cut = draw(st.integers(0, len(line)))
            lines[index] = line[:cut] + junk + line[cut:]
        elif action == "value" and "=" in line:
            key = line.split("=", 1)[0]
            lines[index] = f"{key}= {draw(st.sampled_from(_WRONG_VALUES))}\n"
        elif action == "key" and "=" in line:
            value = line.split("=", 1)[1]
            new_key = draw(st.sampled_from(["scedule", "retries", "args", "env.X", "callable"]))
            lines[index] = f"{new_key} ={value}"
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        if not lines:
            break
    return "".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_registries())
def test_mutated_registry_parses_or_raises_located_config_error(text: str) -> None:
    try:
        registry = parse_registry(text, PATH, environ={}, module_exists=lambda m, b: True)
    except ConfigError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.path == PATH, issue
            assert issue.line is not None, issue
    else:
        assert isinstance(registry, Registry)


# --- sections and the cache -------------------------------------------------------------


def outcome(text: str, **kwargs: object) -> object:
    """Everything a parse tells: jobs with their lines, settings and warnings, or the issues."""
    try:
        registry = parse_registry(text, PATH, environ={}, **kwargs)  # type: ignore[arg-type]
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    return (
        registry.jobs,
        {name: spec.line for name, spec in registry.jobs.items()},
        registry.settings,
        [str(warning) for warning in registry.warnings],
    )


TRICKY = (
    # Header-looking lines in strings and arrays, every way to declare jobs, clashes.
    DESIGN_EXAMPLE,
    '[jobs.a]\nschedule = "@daily"\ncommand = """\n[jobs.b]\nx = 1\n"""\ntimeout = "1m"\n',
    '[jobs.a]\nschedule = "@daily"\ncommand = [\n  "ls",\n]\nargs = [\n[1]\n]\n',
    '[jobs]\na = { schedule = "@daily", command = "t", timeout = "1m" }\n'
    '[jobs.b]\nschedule = "@daily"\ncommand = "t"\n',
    '[jobs.b]\nschedule = "@daily"\ncommand = "t"\n[jobs]\n[jobs.c]\nschedule = "@hourly"\n',
    '[jobs.a]\nschedule = "@daily"\ncommand = "t"\n[jobs.a]\nschedule = "@daily"\n',
    '[jobs]\n[jobs]\n[jobs.a]\nschedule = "@daily"\ncommand = "t"\n',
    'jobs.a.schedule = "@daily"\n[jobs.a]\ncommand = "t"\n',
    '[jobs.a]\nschedule = "@daily"\ncommand = "t"\n[jobs.a.env]\nX = "1"\n',
    '[jobs.a]\nschedule = "@daily"\ncommand = "t"\nenv.X = "1"\n[jobs.b]\nretries = "x"\n',
    '[jobs."a.b"]\nschedule = "@daily"\ncommand = "t"\n  [ jobs . \'c\' ]  # c\nretries = -1\n',
    '[scheduler]\ntimezone = "Mars/Base"\n[defaults]\ntimeout = "ten"\n[jobs.a]\nx = 1\n',
    '[jobs.a]\r\nschedule = "@daily"\r\ncommand = "t"\r\ntimeout = "1m"\r\n',
    "[[jobs]]\nschedule = 1\n",
    'scheduler.timezone = "UTC"\n[scheduler]\nmax_concurrent = 2\n',
)


class TestSections:
    @pytest.mark.parametrize("text", TRICKY)
    def test_a_split_parse_tells_what_a_whole_text_parse_tells(
        self, text: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        split = outcome(text, module_exists=lambda m, b: True)
        import cronhub.registry as registry_module

        monkeypatch.setattr(registry_module._Document, "split", classmethod(lambda *_args: None))
        assert split == outcome(text, module_exists=lambda m, b: True)

    def test_a_header_inside_a_multiline_string_stays_in_the_string(self) -> None:
        registry = parse(TRICKY[1])
        assert list(registry.jobs) == ["a"]
        assert registry.jobs["a"].command == "[jobs.b]\nx = 1\n"


class TestCache:
    REGISTRY = "".join(
        f'[jobs.j{i}]\nschedule = "{i} * * * *"\ncommand = "t{i}"\ntimeout = "1m"\n\n'
        for i in range(6)
    )

    def test_an_unchanged_job_keeps_its_spec_and_an_edited_one_is_rebuilt(self) -> None:
        cache = RegistryCache()
        first = parse_registry(self.REGISTRY, PATH, cache=cache)
        edited = self.REGISTRY.replace('command = "t3"', 'command = "changed"')
        second = parse_registry(edited, PATH, cache=cache)
        assert second.jobs["j3"].command == "changed"
        assert all(second.jobs[f"j{i}"] is first.jobs[f"j{i}"] for i in (0, 1, 2, 4, 5))
        assert diff_registries(first, second).changed == ("j3",)

    def test_a_job_moved_down_keeps_its_spec_at_its_new_line(self) -> None:
        cache = RegistryCache()
        first = parse_registry(self.REGISTRY, PATH, cache=cache)
        second = parse_registry("# a comment\n\n" + self.REGISTRY, PATH, cache=cache)
        assert second.jobs["j5"] == first.jobs["j5"]
        assert second.jobs["j5"].line == first.jobs["j5"].line + 2

    def test_changed_defaults_rebuild_every_job(self) -> None:
        cache = RegistryCache()
        parse_registry(self.REGISTRY, PATH, cache=cache)
        second = parse_registry("[defaults]\nretries = 2\n" + self.REGISTRY, PATH, cache=cache)
        assert {spec.retries for spec in second.jobs.values()} == {2}

    def test_a_changed_scheduler_zone_rebuilds_cron_schedules(self) -> None:
        cache = RegistryCache()
        parse_registry(self.REGISTRY, PATH, cache=cache)
        zoned = '[scheduler]\ntimezone = "Asia/Tokyo"\n' + self.REGISTRY
        second = parse_registry(zoned, PATH, cache=cache)
        assert {spec.timezone for spec in second.jobs.values()} == {"Asia/Tokyo"}

    def test_a_callable_module_is_looked_up_again_for_a_cached_job(self) -> None:
        text = '[jobs.c]\nschedule = "@daily"\ncallable = "app.jobs:run"\ntimeout = "1m"\n'
        cache = RegistryCache()
        parse_registry(text, PATH, module_exists=lambda m, b: True, cache=cache)
        with pytest.raises(ConfigError) as caught:
            parse_registry(text, PATH, module_exists=lambda m, b: False, cache=cache)
        assert caught.value.issues[0].line == 3

    def test_warnings_of_cached_jobs_are_repeated(self) -> None:
        text = '[jobs.slow]\nschedule = "@hourly"\ncommand = "true"\n'
        cache = RegistryCache()
        first = parse_registry(text, PATH, cache=cache)
        assert parse_registry(text, PATH, cache=cache).warnings == first.warnings != ()

    def test_valid_jobs_of_a_broken_registry_are_reused_once_it_is_fixed(self) -> None:
        cache = RegistryCache()
        first = parse_registry(self.REGISTRY, PATH, cache=cache)
        broken = self.REGISTRY + '[jobs.bad]\nschedule = "nope"\ncommand = "t"\n'
        with pytest.raises(ConfigError):
            parse_registry(broken, PATH, cache=cache)
        fixed = parse_registry(self.REGISTRY, PATH, cache=cache)
        assert fixed.jobs["j0"] is first.jobs["j0"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_registries(), mutated_registries())
def test_a_cached_reparse_tells_what_a_fresh_parse_tells(before: str, after: str) -> None:
    cache = RegistryCache()
    outcome(before, module_exists=lambda m, b: True, cache=cache)
    assert outcome(after, module_exists=lambda m, b: True, cache=cache) == outcome(
        after, module_exists=lambda m, b: True
    )
