"""Protocol results to rich renderables, plain strings and ``--json`` documents.

Pure: every function takes the data and the current time (``now``, aware)
as arguments and returns something printable; nothing here reads the clock
or writes to a stream.  Text that comes from jobs (names, descriptions,
errors, commands) is always wrapped in :class:`rich.text.Text`, never
interpolated into markup, so ``"[red]x[/]"`` prints as written.

Imports rich and the standard library only (plus :mod:`cronhub.durations`,
which is dependency-free), so ``cronhub status`` stays light.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cronhub.durations import format_duration_ms

STATUS_STYLES: Mapping[str, str] = {
    "success": "green",
    "failed": "bold red",
    "timeout": "magenta",
    "running": "cyan",
    "skipped": "yellow",
    "interrupted": "yellow",
}
"""Colour of each run status; unknown statuses print unstyled."""

ERROR_WIDTH = 60
"""Characters of a run's error shown in a table cell."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_DASH = "-"


class FireLike(Protocol):
    """What :func:`render_next` needs of a fire time (``cronhub.schedule.Fire``)."""

    @property
    def at(self) -> datetime: ...
    @property
    def shifted(self) -> bool: ...
    @property
    def note(self) -> str | None: ...


# --- small pieces ------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time from the daemon as an aware datetime (None stays None)."""
    if value is None:
        return None
    return datetime.fromisoformat(value)


def relative_time(dt: datetime | None, now: datetime) -> str:
    """``dt`` relative to ``now``: ``"just now"``, ``"45s ago"``, ``"in 3m"``, ``"2h15m ago"``.

    Seconds and minutes are shown alone; hours carry their minutes and days
    their hours when those are not zero.  Less than a second either way is
    ``"just now"``.  ``None`` gives ``"-"``.
    """
    if dt is None:
        return _DASH
    seconds = (dt - now).total_seconds()
    span = _span(abs(seconds))
    if span is None:
        return "just now"
    return f"in {span}" if seconds > 0 else f"{span} ago"


def _span(seconds: float) -> str | None:
    whole = int(seconds)
    if whole < 1:
        return None
    if whole < 60:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def relative_iso(value: str | None, now: datetime) -> str:
    """:func:`relative_time` of an ISO-8601 string from the daemon."""
    return relative_time(parse_time(value), now)


def one_line(text: str | None, width: int | None = None) -> str:
    """``text`` on one line, control characters replaced, cut to ``width`` with ``…``."""
    if not text:
        return ""
    flat = _CONTROL.sub("?", " ".join(text.split()))
    if width is not None and len(flat) > width:
        return flat[: max(width - 1, 0)] + "…"
    return flat


def status_text(status: str | None) -> Text:
    """A run status, coloured (``"-"`` when there is none)."""
    if status is None:
        return Text(_DASH, style="dim")
    return Text(status, style=STATUS_STYLES.get(status, ""))


def enabled_text(job: Mapping[str, Any], *, separator: str = " ") -> Text:
    """``yes``/``no``, marked when a ``cronhub enable|disable`` override decides it."""
    enabled = bool(job.get("enabled"))
    text = Text("yes" if enabled else "no", style="" if enabled else "yellow")
    override = job.get("override")
    if override is not None:
        mark = "enabled by override" if override else "disabled by override"
        text.append(f"{separator}({mark})", style="dim")
    return text


def schedule_text(job: Mapping[str, Any]) -> Text:
    """The schedule as written, with its human reading below when it adds something."""
    written = str(job.get("schedule", ""))
    text = Text(written)
    human = job.get("schedule_human")
    if human and human != written:
        text.append("\n")
        text.append(str(human), style="dim")
    return text


def exit_text(run: Mapping[str, Any]) -> str:
    """``"0"``, ``"2"``, ``"SIGKILL"`` or ``"-"`` for a run."""
    if run.get("exit_code") is not None:
        return str(run["exit_code"])
    sig = run.get("signal")
    if sig is not None:
        return _signal_name(int(sig))
    return _DASH


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def short_id(run_id: str | None) -> str:
    """The first 8 characters of a run id (enough to tell runs apart on screen)."""
    return (run_id or _DASH)[:8]


def absolute_time(dt: datetime) -> str:
    """``"Sun 2026-03-29 03:00:00+02:00 CEST"``: the wall time, offset and zone name."""
    zone = dt.tzname() or ""
    stamp = dt.isoformat(sep=" ", timespec="seconds")
    return f"{dt:%a} {stamp} {zone}".rstrip()


def _next_run_text(job: Mapping[str, Any], now: datetime, *, daemon_paused: bool) -> Text:
    if daemon_paused or job.get("paused"):
        return Text("paused", style="yellow")
    if not job.get("enabled"):
        return Text(_DASH, style="dim")
    if job.get("next_run") is None:
        if job.get("schedule_kind") == "reboot":
            return Text("at daemon start", style="dim")
        return Text(_DASH, style="dim")
    return Text(relative_iso(job["next_run"], now))


def _last_status_text(job: Mapping[str, Any]) -> Text:
    running = int(job.get("running") or 0)
    if running:
        text = Text("running", style=STATUS_STYLES["running"])
        if running > 1:
            text.append(f" ×{running}", style=STATUS_STYLES["running"])
        return text
    return status_text(job.get("last_status"))


# --- status ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    """One column of a fitted table.

    ``hide`` orders what goes when the table is too wide for the terminal
    (highest first; 0 = always shown).  The table is measured with each cell
    on its first line; a ``wrap`` column may wrap (its later lines always),
    and counts at most ``wrap_at`` characters.
    """

    header: str
    cell: Callable[[Mapping[str, Any]], Text]
    hide: int = 0
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    wrap_at: int | None = None
    style: str = ""


def _fitted_table(
    columns: Sequence[_Column], rows: Sequence[Mapping[str, Any]], width: int | None
) -> Table:
    """A table of ``rows`` that fits ``width``, hiding columns by their ``hide`` order."""
    cells = [[column.cell(row) for column in columns] for row in rows]
    shown = list(range(len(columns)))
    hidden: list[str] = []
    while width is not None and _natural_width(columns, cells, shown) > width:
        candidates = [index for index in shown if columns[index].hide]
        if not candidates:
            break
        drop = max(candidates, key=lambda index: columns[index].hide)
        shown.remove(drop)
        hidden.append(columns[drop].header)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for index in shown:
        column = columns[index]
        table.add_column(
            column.header,
            justify=column.justify,
            style=column.style,
            min_width=len(column.header),
            no_wrap=not column.wrap,
            overflow="fold",
        )
    for row in cells:
        table.add_row(*(row[index] for index in shown))
    if hidden:
        table.caption = Text(
            "hidden to fit the terminal: " + ", ".join(hidden) + " (widen it, or use --json)",
            style="dim",
        )
        table.caption_justify = "left"
    return table


def _natural_width(
    columns: Sequence[_Column], cells: Sequence[Sequence[Text]], shown: Sequence[int]
) -> int:
    total = 2 * (len(shown) - 1)  # one space of padding either side of each gap
    for index in shown:
        column = columns[index]
        widest = len(column.header)
        for row in cells:
            first_line = row[index].plain.split("\n", 1)[0]
            size = cell_len(first_line)
            if column.wrap_at is not None:
                size = min(size, column.wrap_at)
            widest = max(widest, size)
        total += widest
    return total


def _status_columns(now: datetime, paused: bool) -> list[_Column]:
    def failures(job: Mapping[str, Any]) -> Text:
        count = int(job.get("total_failures") or 0)
        return Text(str(count), style="red" if count else "")

    return [
        _Column("NAME", lambda job: Text(str(job.get("name", "")))),
        _Column("SCHEDULE", schedule_text, hide=2, wrap=True),
        _Column("ENABLED", lambda job: enabled_text(job, separator="\n"), hide=1, wrap=True),
        _Column("LAST RUN", lambda job: Text(relative_iso(job.get("last_run"), now)), hide=3),
        _Column("STATUS", _last_status_text),
        _Column(
            "DURATION",
            lambda job: Text(format_duration_ms(job.get("last_duration_ms"))),
            hide=6,
            justify="right",
        ),
        _Column("RUNS", lambda job: Text(str(job.get("total_runs") or 0)), 4, "right"),
        _Column("FAILS", failures, hide=5, justify="right"),
        _Column(
            "AVG",
            lambda job: Text(format_duration_ms(job.get("average_duration_ms"))),
            hide=7,
            justify="right",
        ),
        _Column("NEXT RUN", lambda job: _next_run_text(job, now, daemon_paused=paused)),
    ]


def status_table(
    jobs: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    paused: bool = False,
    width: int | None = None,
) -> Table:
    """One row per job: the columns of ``cronhub status``, fitted to ``width`` if given."""
    return _fitted_table(_status_columns(now, paused), jobs, width)


def daemon_line(daemon: Mapping[str, Any], now: datetime) -> Text:
    """One dim line about the daemon: version, pid, uptime, load, registry."""
    text = Text(style="dim")
    text.append(f"cronhub {daemon.get('version', '?')} · pid {daemon.get('pid', '?')}")
    started = parse_time(daemon.get("started_at"))
    if started is not None:
        text.append(f" · up {_span((now - started).total_seconds()) or '0s'}")
    text.append(f" · {daemon.get('running', 0)}/{daemon.get('max_concurrent', '?')} running")
    if daemon.get("registry_path"):
        text.append(" · ")
        text.append(str(daemon["registry_path"]))
        loaded = daemon.get("registry_loaded_at")
        if loaded:
            text.append(f" (loaded {relative_iso(loaded, now)})")
    return text


def registry_errors_panel(errors: Sequence[str]) -> Panel | None:
    """A warning about a broken registry on disk (the daemon runs the last good one)."""
    if not errors:
        return None
    body = Text("The registry on disk has errors; the daemon keeps running the last valid one.\n")
    for line in errors:
        body.append("\n• ")
        body.append(one_line(line))
    body.append("\n\nFix the file; it is reloaded when it changes (or run ")
    body.append("cronhub validate", style="bold")
    body.append(").")
    return Panel(
        body, title="registry has errors", title_align="left", border_style="yellow", expand=False
    )


def paused_line() -> Text:
    return Text(
        "Scheduling is paused (CRONHUB_ENABLED=false): no timed runs; manual runs still work.",
        style="yellow",
    )


def render_status(
    result: Mapping[str, Any], now: datetime, *, width: int | None = None
) -> RenderableType:
    """The whole ``cronhub status`` view of a ``status`` result without ``job``."""
    daemon = result.get("daemon", {})
    jobs = result.get("jobs", [])
    parts: list[RenderableType] = []
    panel = registry_errors_panel(daemon.get("registry_errors") or [])
    if panel is not None:
        parts.append(panel)
    if daemon.get("paused"):
        parts.append(paused_line())
    if jobs:
        parts.append(status_table(jobs, now, paused=bool(daemon.get("paused")), width=width))
    else:
        parts.append(Text("No jobs in the registry.", style="dim"))
    parts.append(daemon_line(daemon, now))
    return Group(*parts)


# --- one job -----------------------------------------------------------------


_CONFIG_SHOWN_ABOVE = frozenset(
    {"name", "description", "schedule", "schedule_kind", "timezone", "enabled", "line"}
)


def config_rows(config: Mapping[str, Any]) -> list[tuple[str, Text]]:
    """A job's configuration as ``(key, value)`` rows: unset keys left out, ``*_ms`` durations."""
    rows: list[tuple[str, Text]] = []
    for key, value in config.items():
        if key in _CONFIG_SHOWN_ABOVE or value is None or value in ({}, [], ()):
            continue
        if key.endswith("_ms") and isinstance(value, int | float) and not isinstance(value, bool):
            rows.append((key.removesuffix("_ms"), Text(format_duration_ms(value))))
        else:
            rows.append((str(key), _config_value(value)))
    return rows


def _config_value(value: Any) -> Text:
    if value is None:
        return Text(_DASH, style="dim")
    if isinstance(value, bool):
        return Text("true" if value else "false")
    if isinstance(value, str):
        return Text(value)
    return Text(json.dumps(value, ensure_ascii=False, default=str))


def job_detail(
    job: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    paused: bool = False,
    width: int | None = None,
) -> RenderableType:
    """``cronhub status JOB``: state, full configuration and the last runs."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()

    def row(key: str, value: RenderableType) -> None:
        grid.add_row(key, value)

    row("name", Text(str(job.get("name", ""))))
    if job.get("description"):
        row("description", Text(str(job["description"])))
    row("schedule", schedule_text(job))
    if job.get("timezone") and job.get("schedule_kind") == "cron":
        row("timezone", Text(str(job["timezone"])))
    row("enabled", enabled_text(job))
    row("status", _last_status_text(job))
    row("last run", _time_with_relative(job.get("last_run"), now))
    row("last duration", Text(format_duration_ms(job.get("last_duration_ms"))))
    if job.get("last_error"):
        row("last error", Text(one_line(job["last_error"]), style="red"))
    row("runs", Text(f"{job.get('total_runs') or 0} ({job.get('total_failures') or 0} failed)"))
    row("average duration", Text(format_duration_ms(job.get("average_duration_ms"))))
    row("next run", _next_detail(job, now, paused=paused))
    for key, value in config_rows(job.get("config") or {}):
        row(key, value)

    parts: list[RenderableType] = [grid, Text("")]
    if runs:
        parts.append(Text("Last runs", style="bold"))
        parts.append(history_table(runs, now, show_job=False, width=width))
    else:
        parts.append(Text("No runs yet.", style="dim"))
    return Group(*parts)


def _time_with_relative(value: str | None, now: datetime) -> Text:
    dt = parse_time(value)
    if dt is None:
        return Text(_DASH, style="dim")
    text = Text(relative_time(dt, now))
    text.append(f"  ({absolute_time(dt.astimezone())})", style="dim")
    return text


def _next_detail(job: Mapping[str, Any], now: datetime, *, paused: bool) -> Text:
    text = _next_run_text(job, now, daemon_paused=paused)
    if job.get("next_run") and not (paused or job.get("paused")) and job.get("enabled"):
        return _time_with_relative(job["next_run"], now)
    return text


# --- history and runs ----------------------------------------------------------


def _history_columns(now: datetime, show_job: bool) -> list[_Column]:
    def started(run: Mapping[str, Any]) -> Text:
        return Text(relative_iso(run.get("started_at") or run.get("scheduled_at"), now))

    columns = [
        _Column("ID", lambda run: Text(short_id(run.get("id"))), style="dim"),
        _Column("JOB", lambda run: Text(str(run.get("job_name", "")))),
        _Column("TRIGGER", lambda run: Text(str(run.get("trigger", ""))), hide=4),
        _Column("ATTEMPT", lambda run: Text(str(run.get("attempt", ""))), 5, "right"),
        _Column("STATUS", lambda run: status_text(run.get("status"))),
        _Column("STARTED", started),
        _Column(
            "DURATION",
            lambda run: Text(format_duration_ms(run.get("duration_ms"))),
            hide=2,
            justify="right",
        ),
        _Column("EXIT", lambda run: Text(exit_text(run)), hide=3, justify="right"),
        _Column(
            "ERROR",
            lambda run: Text(one_line(run.get("error"), ERROR_WIDTH), style="red"),
            wrap=True,
            wrap_at=20,
        ),
    ]
    return [column for column in columns if show_job or column.header != "JOB"]


def history_table(
    runs: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    show_job: bool = True,
    width: int | None = None,
) -> Table:
    """Runs newest first: id, job, trigger, attempt, status, start, duration, exit, error."""
    return _fitted_table(_history_columns(now, show_job), runs, width)


def run_summary(run: Mapping[str, Any]) -> Text:
    """One line about a finished (or running) run: ``run 1a2b3c4d of job "x": failed …``."""
    text = Text()
    text.append(f"run {run.get('id', '?')} of job ")
    text.append(f'"{run.get("job_name", "?")}"')
    text.append(": ")
    text.append_text(status_text(run.get("status")))
    if run.get("duration_ms") is not None:
        text.append(f" in {format_duration_ms(run['duration_ms'])}")
    exit_shown = exit_text(run)
    if exit_shown != _DASH:
        label = "exit " if run.get("exit_code") is not None else ""
        text.append(f" ({label}{exit_shown})")
    if run.get("error"):
        text.append(" — ")
        text.append(one_line(run["error"]), style="red")
    return text


def logs_header(run: Mapping[str, Any], now: datetime, *, truncated: bool) -> Text:
    """The dim line ``cronhub logs`` prints to stderr above a run's output."""
    text = Text(style="dim")
    text.append(f"run {run.get('id', '?')} of job ")
    text.append(f'"{run.get("job_name", "?")}"')
    text.append(f" · {run.get('trigger', '?')}")
    text.append(" · ")
    text.append_text(status_text(run.get("status")))
    started = run.get("started_at") or run.get("scheduled_at")
    text.append(f" · started {relative_iso(started, now)}")
    if run.get("duration_ms") is not None:
        text.append(f" · {format_duration_ms(run['duration_ms'])}")
    exit_shown = exit_text(run)
    if exit_shown != _DASH:
        text.append(f" · exit {exit_shown}")
    if truncated:
        text.append(" · output truncated (only the end was kept)")
    return text


def reload_summary(result: Mapping[str, Any]) -> Text:
    """``reloaded: 1 added, 0 removed, 2 changed, 5 unchanged`` with the names."""
    text = Text("registry reloaded: ")
    pieces = []
    for key, sign, style in (
        ("added", "+", "green"),
        ("removed", "-", "red"),
        ("changed", "~", "cyan"),
    ):
        names = list(result.get(key) or [])
        piece = Text(f"{len(names)} {key}", style=style if names else "")
        if names:
            piece.append(" (" + ", ".join(f"{sign}{name}" for name in names) + ")")
        pieces.append(piece)
    pieces.append(Text(f"{result.get('unchanged', 0)} unchanged"))
    text.append_text(Text(", ").join(pieces))
    return text


def ping_line(result: Mapping[str, Any]) -> Text:
    """``cronhub 0.1.0 (protocol 1) · pid 4242 · up 2h15m``."""
    uptime = _span(float(result.get("uptime_s") or 0)) or "0s"
    return Text(
        f"cronhub {result.get('version', '?')} (protocol {result.get('protocol', '?')})"
        f" · pid {result.get('pid', '?')} · up {uptime}"
    )


# --- next and validate ---------------------------------------------------------


def render_next(
    fires: Iterable[FireLike], now: datetime, *, title: str | Text | None = None
) -> Table:
    """Fire times in the schedule's zone with the UTC offset, DST-shifted ones marked."""
    if isinstance(title, str):
        title = Text(title)
    table = Table(box=None, header_style="bold", pad_edge=False, title=title, title_justify="left")
    table.add_column("#", justify="right", style="dim", min_width=1)
    table.add_column("FIRES AT", no_wrap=True, min_width=8)
    table.add_column("IN", no_wrap=True, min_width=2)
    table.add_column("NOTE", min_width=4)
    for number, fire in enumerate(fires, start=1):
        note = Text()
        if fire.shifted:
            note.append("⚠ " + (fire.note or "moved by a DST transition"), style="yellow")
        elif fire.note:
            note.append(fire.note, style="dim")
        table.add_row(str(number), Text(absolute_time(fire.at)), relative_time(fire.at, now), note)
    return table


def next_json(fires: Iterable[FireLike]) -> list[str]:
    """``cronhub next --json``: ISO-8601 strings with offsets."""
    return [fire.at.isoformat() for fire in fires]


def validate_table(jobs: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """The summary ``cronhub validate`` prints for a valid registry.

    Each job is ``{"name", "enabled", "schedule", "next_run" (aware datetime or
    None), "when" (str, shown when there is no next_run)}``.
    """
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("JOB", overflow="fold", min_width=3)
    table.add_column("SCHEDULE", min_width=8)
    table.add_column("ENABLED", min_width=7)
    table.add_column("NEXT FIRE", min_width=9)
    for job in jobs:
        next_run: datetime | None = job.get("next_run")
        if next_run is not None:
            when = Text(absolute_time(next_run))
            when.append(f" ({relative_time(next_run, now)})", style="dim")
        else:
            when = Text(str(job.get("when") or _DASH), style="dim")
        table.add_row(
            Text(str(job["name"])),
            Text(str(job["schedule"])),
            Text("yes") if job["enabled"] else Text("no", style="yellow"),
            when,
        )
    return table


def to_json(document: Any) -> str:
    """The one JSON document a ``--json`` command prints."""
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)
