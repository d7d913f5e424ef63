"""render: protocol results to tables and strings, with job text never read as markup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console, RenderableType

from cronhub import render

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def iso(delta: timedelta) -> str:
    return (NOW + delta).isoformat()


def text_of(renderable: RenderableType, width: int = 200) -> str:
    console = Console(record=True, width=width, color_system=None, file=_Sink())
    console.print(renderable)
    return console.export_text()


class _Sink:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def job(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "backup",
        "description": "",
        "schedule": "0 2 * * *",
        "schedule_kind": "cron",
        "schedule_human": "at 02:00 every day",
        "timezone": "UTC",
        "enabled": True,
        "enabled_config": True,
        "override": None,
        "paused": False,
        "last_run": iso(-timedelta(minutes=3)),
        "last_status": "success",
        "last_error": None,
        "last_duration_ms": 1500,
        "total_runs": 12,
        "total_failures": 2,
        "average_duration_ms": 1250.0,
        "next_run": iso(timedelta(hours=2)),
        "running": 0,
    }
    base.update(fields)
    return base


def run(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "0123456789abcdef0123456789abcdef",
        "job_name": "backup",
        "trigger": "schedule",
        "attempt": 1,
        "scheduled_at": iso(-timedelta(hours=1)),
        "started_at": iso(-timedelta(hours=1)),
        "completed_at": iso(-timedelta(minutes=59)),
        "status": "failed",
        "duration_ms": 61_000,
        "exit_code": 2,
        "signal": None,
        "error": "exit status 2",
    }
    base.update(fields)
    return base


class TestRelativeTime:
    @pytest.mark.parametrize(
        ("delta", "expected"),
        [
            (timedelta(0), "just now"),
            (timedelta(milliseconds=-900), "just now"),
            (timedelta(seconds=-45), "45s ago"),
            (timedelta(minutes=3), "in 3m"),
            (timedelta(minutes=3, seconds=59), "in 3m"),
            (timedelta(hours=-2), "2h ago"),
            (timedelta(hours=2, minutes=15), "in 2h15m"),
            (timedelta(days=3), "in 3d"),
            (timedelta(days=-3, hours=-4), "3d4h ago"),
        ],
    )
    def test_relative_time_reads_like_a_person(self, delta: timedelta, expected: str) -> None:
        assert render.relative_time(NOW + delta, NOW) == expected

    def test_relative_time_of_nothing_is_a_dash(self) -> None:
        assert render.relative_time(None, NOW) == "-"

    def test_relative_time_compares_instants_across_zones(self) -> None:
        berlin = (NOW + timedelta(minutes=5)).astimezone(ZoneInfo("Europe/Berlin"))
        assert render.relative_time(berlin, NOW) == "in 5m"


class TestEscaping:
    MARKUP = "[red]x[/] [link=http://evil.example]click[/link] :smile:"

    def test_job_name_and_schedule_with_markup_print_literally(self) -> None:
        table = render.status_table([job(name=self.MARKUP, schedule=self.MARKUP)], NOW)
        assert self.MARKUP in text_of(table, width=400)

    def test_run_error_with_markup_prints_literally(self) -> None:
        error = "[bold]boom[/bold]"
        assert error in text_of(render.history_table([run(error=error)], NOW))

    def test_description_and_config_values_print_literally(self) -> None:
        detail = job(description=self.MARKUP, config={"command": "echo [red]hi[/]"})
        text = text_of(render.job_detail(detail, [], NOW), width=400)
        assert self.MARKUP in text
        assert "echo [red]hi[/]" in text

    def test_registry_errors_print_literally(self) -> None:
        panel = render.registry_errors_panel(['jobs.toml:3: job "[x]": schedule: bad'])
        assert panel is not None
        assert 'job "[x]": schedule: bad' in text_of(panel)

    def test_control_characters_in_an_error_are_neutralised(self) -> None:
        assert render.one_line("red \x1b[31mtext\x1b[0m\nnext line") == (
            "red ?[31mtext?[0m next line"
        )


class TestStatus:
    def test_status_table_shows_every_column_of_a_job(self) -> None:
        text = text_of(render.status_table([job()], NOW))
        for expected in (
            "backup",
            "0 2 * * *",
            "at 02:00 every day",
            "yes",
            "3m ago",
            "success",
            "1.5s",
            "12",
            "2",
            "1.2s",
            "in 2h",
        ):
            assert expected in text

    @pytest.mark.parametrize(
        ("fields", "mark"),
        [
            ({"enabled": False, "override": False}, "(disabled by override)"),
            ({"enabled": True, "enabled_config": False, "override": True}, "(enabled by override)"),
        ],
    )
    def test_status_marks_an_override(self, fields: dict[str, Any], mark: str) -> None:
        assert mark in text_of(render.status_table([job(**fields)], NOW))

    def test_a_narrow_terminal_hides_the_least_useful_columns_first(self) -> None:
        text = text_of(render.status_table([job()], NOW, width=60), width=60)
        header = text.splitlines()[0].split()
        assert header[0] == "NAME"
        assert "STATUS" in header
        assert header[-2:] == ["NEXT", "RUN"]
        assert "AVG" not in header
        assert "hidden to fit the terminal: AVG" in text
        assert all(len(line) <= 60 for line in text.splitlines())

    def test_a_wide_terminal_hides_nothing(self) -> None:
        text = text_of(render.status_table([job()], NOW, width=200))
        assert "hidden" not in text
        assert "AVG" in text

    def test_a_running_job_shows_running(self) -> None:
        assert "running" in text_of(render.status_table([job(running=1)], NOW))

    def test_a_disabled_job_has_no_next_run(self) -> None:
        text = text_of(render.status_table([job(enabled=False, next_run=None)], NOW))
        assert "in 2h" not in text

    def test_status_view_warns_about_a_broken_registry_on_disk(self) -> None:
        result = {
            "daemon": {"pid": 1, "version": "0.1.0", "registry_errors": ["jobs.toml:4: bad"]},
            "jobs": [job()],
        }
        text = text_of(render.render_status(result, NOW))
        assert "registry has errors" in text
        assert "jobs.toml:4: bad" in text

    def test_status_view_says_when_scheduling_is_paused(self) -> None:
        result = {"daemon": {"paused": True}, "jobs": [job()]}
        text = text_of(render.render_status(result, NOW))
        assert "Scheduling is paused" in text

    def test_status_colours_failures_red(self) -> None:
        assert render.status_text("failed").style == "bold red"
        assert render.status_text("success").style == "green"
        assert render.status_text(None).plain == "-"

    def test_config_rows_skip_unset_keys_and_show_durations(self) -> None:
        config = {"command": "x", "callable": None, "env": {}, "retry_delay_ms": 30000, "line": 3}
        rows = [(key, value.plain) for key, value in render.config_rows(config)]
        assert rows == [("command", "x"), ("retry_delay", "30.0s")]

    def test_job_detail_lists_config_and_last_runs(self) -> None:
        detail = job(config={"command": "pg_dump db", "timeout_ms": 600000, "singleton": True})
        text = text_of(render.job_detail(detail, [run()], NOW))
        assert "pg_dump db" in text
        assert "10m00s" in text
        assert "exit status 2" in text
        assert "Last runs" in text


class TestHistory:
    def test_history_row_has_short_id_trigger_status_duration_and_exit(self) -> None:
        text = text_of(render.history_table([run()], NOW))
        assert "89abcdef" in text  # the random tail of the id
        assert "0123456789abcdef0123" not in text
        for expected in ("schedule", "failed", "1h ago", "1m01s", "2", "exit status 2"):
            assert expected in text

    def test_short_ids_of_time_ordered_ids_differ(self) -> None:
        first = "01a22271-762e-7164-8117-94575d54fa5a"
        second = "01a22271-7a10-7cde-87b0-8fcd4a16e1b7"
        assert render.short_id(first) != render.short_id(second)

    def test_a_killed_run_shows_its_signal(self) -> None:
        assert render.exit_text(run(exit_code=None, signal=9)) == "SIGKILL"

    def test_long_errors_are_cut_to_one_line(self) -> None:
        cell = render.one_line("x" * 500, render.ERROR_WIDTH)
        assert len(cell) == render.ERROR_WIDTH
        assert cell.endswith("…")

    def test_run_summary_names_status_duration_and_exit(self) -> None:
        summary = render.run_summary(run()).plain
        assert summary.startswith('run 0123456789abcdef0123456789abcdef of job "backup": failed')
        assert "in 1m01s (exit 2)" in summary


class TestNext:
    class Fire:
        def __init__(self, at: datetime, shifted: bool = False, note: str | None = None) -> None:
            self.at, self.shifted, self.note = at, shifted, note

    BERLIN = ZoneInfo("Europe/Berlin")

    def test_next_shows_zone_offset_and_marks_dst_shifts(self) -> None:
        fires = [
            self.Fire(datetime(2026, 3, 28, 2, 30, tzinfo=self.BERLIN)),
            self.Fire(
                datetime(2026, 3, 29, 3, 0, tzinfo=self.BERLIN), True, "02:30 does not exist"
            ),
        ]
        text = text_of(render.render_next(fires, NOW))
        assert "Sat 2026-03-28 02:30:00+01:00 CET" in text
        assert "Sun 2026-03-29 03:00:00+02:00 CEST" in text
        assert "⚠ 02:30 does not exist" in text

    def test_next_json_is_a_list_of_iso_strings_with_offsets(self) -> None:
        fires = [self.Fire(datetime(2026, 10, 25, 2, 0, tzinfo=self.BERLIN))]
        assert render.next_json(fires) == ["2026-10-25T02:00:00+02:00"]


class TestSmallViews:
    def test_reload_summary_lists_names(self) -> None:
        result = {"added": ["a"], "removed": [], "changed": ["b", "c"], "unchanged": 4}
        assert render.reload_summary(result).plain == (
            "registry reloaded: 1 added (+a), 0 removed, 2 changed (~b, ~c), 4 unchanged"
        )

    def test_ping_line_shows_version_pid_and_uptime(self) -> None:
        result = {"version": "0.1.0", "protocol": 1, "pid": 42, "uptime_s": 8100.5}
        assert render.ping_line(result).plain == "cronhub 0.1.0 (protocol 1) · pid 42 · up 2h15m"

    def test_logs_header_mentions_truncation(self) -> None:
        header = render.logs_header(run(), NOW, truncated=True).plain
        assert "output truncated" in header

    def test_to_json_is_one_parseable_document(self) -> None:
        document = {"jobs": [job()], "when": NOW}
        assert json.loads(render.to_json(document))["jobs"][0]["name"] == "backup"


class TestFittedTable:
    def test_lines_carry_no_trailing_spaces(self) -> None:
        text = text_of(render.status_table([job(), job(name="b", running=1)], NOW, width=200))
        assert all(line == line.rstrip() for line in text.splitlines())

    def test_wrapping_columns_share_the_room_left(self) -> None:
        detail = job(enabled=False, override=False, schedule_human="at 02:00 every day")
        text = text_of(render.status_table([detail], NOW, width=100), width=100)
        words = text.split()
        assert {"(disabled", "override)", "02:00", "every"} <= set(words)  # wrapped, not folded
        assert "hidden" not in text

    def test_a_cell_too_wide_for_any_layout_is_cut_with_an_ellipsis(self) -> None:
        text = text_of(render.status_table([job(name="n" * 80)], NOW, width=40), width=40)
        assert "n" * 20 + "…" in text.replace("n…", "n…")
        assert all(len(line) <= 40 for line in text.splitlines())

    def test_a_long_error_wraps_inside_its_column(self) -> None:
        error = "first second third fourth fifth sixth seventh eighth"
        text = text_of(render.history_table([run(error=error)], NOW, width=80), width=80)
        assert all(len(line) <= 80 for line in text.splitlines())
        assert "eighth" in text

    def test_many_rows_keep_their_columns_aligned(self) -> None:
        jobs = [job(name=f"job-{i}", total_runs=10**i) for i in range(6)]
        lines = text_of(render.status_table(jobs, NOW)).splitlines()
        starts = {line.index("job-") for line in lines if "job-" in line}
        assert starts == {0}
        header = lines[0]
        runs_end = header.index("RUNS") + len("RUNS")
        assert all(line[runs_end - 1].isdigit() for line in lines[1:] if line.startswith("job-"))

    def test_plain_str_cells_print_as_text_cells_do(self) -> None:
        from rich.text import Text

        columns = (render._Column("A"), render._Column("B", justify="right", style="bold"))
        values = ["[red]x[/] \x07bell", "two\nlines\n", "tab\there"]
        as_str = render.FittedTable(columns, [(v, v) for v in values], width=40)
        as_text = render.FittedTable(columns, [(Text(v), Text(v)) for v in values], width=40)
        for colour in (None, "truecolor"):
            printed = []
            for table in (as_str, as_text):
                console = Console(record=True, width=40, color_system=colour, file=_Sink())
                console.print(table)
                printed.append(console.export_text(styles=True))
            assert printed[0] == printed[1]
            assert "[red]x[/]" in printed[0]
            assert "\x07" not in printed[0]
