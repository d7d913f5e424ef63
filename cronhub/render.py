"""Protocol results to rich renderables, plain strings and ``--json`` documents.

Pure: every function takes the data and the current time (``now``, aware)
as arguments and returns something printable; nothing here reads the clock
or writes to a stream.  Text that comes from jobs (names, descriptions,
errors, commands) is never interpolated into markup: it is wrapped in
:class:`rich.text.Text`, or given to a table as a plain ``str``, so
``"[red]x[/]"`` prints as written.

Tables are :class:`FittedTable`, not :class:`rich.table.Table`: rich measures
every cell again for each layout pass, which made a 100-job ``cronhub status``
spend a third of a second laying out; a fitted table measures each cell once
and prints each line as one styled :class:`~rich.text.Text`.  Cells without a
style are plain ``str`` (a :data:`Line`), which skips building a Text for most
of a status table's thousand cells.

Imports rich and the standard library only (plus :mod:`cronhub.durations`,
which is dependency-free), so ``cronhub status`` stays light.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from rich.cells import cell_len
from rich.console import Group
from rich.control import strip_control_codes
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text

from cronhub.durations import format_duration_ms

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.panel import Panel

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

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_DASH = "-"

Line = Text | str
"""A line of output: a ``str`` when it has no style (cheaper to lay out than a Text)."""


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
    return Text(separator).join(map(_as_text, _enabled_lines(job)))


def _enabled_lines(job: Mapping[str, Any]) -> list[Line]:
    enabled = bool(job.get("enabled"))
    lines: list[Line] = ["yes" if enabled else Text("no", style="yellow")]
    override = job.get("override")
    if override is not None:
        mark = "enabled by override" if override else "disabled by override"
        lines.append(Text(f"({mark})", style="dim"))
    return lines


def schedule_text(job: Mapping[str, Any]) -> Text:
    """The schedule as written, with its human reading below when it adds something."""
    return Text("\n").join(map(_as_text, _schedule_lines(job)))


def _schedule_lines(job: Mapping[str, Any]) -> list[Line]:
    written = str(job.get("schedule", ""))
    human = job.get("schedule_human")
    if human and human != written:
        return [written, Text(str(human), style="dim")]
    return [written]


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
    """The last 8 characters of a run id: its random tail, which tells runs apart
    on screen (the head of a time-ordered UUIDv7 is the same for a whole minute)."""
    return (run_id or _DASH)[-8:]


def absolute_time(dt: datetime) -> str:
    """``"Sun 2026-03-29 03:00:00+02:00 CEST"``: the wall time, offset and zone name."""
    zone = dt.tzname() or ""
    stamp = dt.isoformat(sep=" ", timespec="seconds")
    return f"{dt:%a} {stamp} {zone}".rstrip()


def _next_run_text(job: Mapping[str, Any], now: datetime, *, daemon_paused: bool) -> Line:
    if daemon_paused or job.get("paused"):
        return Text("paused", style="yellow")
    if not job.get("enabled"):
        return Text(_DASH, style="dim")
    if job.get("next_run") is None:
        if job.get("schedule_kind") == "reboot":
            return Text("at daemon start", style="dim")
        return Text(_DASH, style="dim")
    return relative_iso(job["next_run"], now)


def _last_status_text(job: Mapping[str, Any]) -> Text:
    running = int(job.get("running") or 0)
    if running:
        text = Text("running", style=STATUS_STYLES["running"])
        if running > 1:
            text.append(f" ×{running}", style=STATUS_STYLES["running"])
        return text
    return status_text(job.get("last_status"))


# --- tables ------------------------------------------------------------------

_GAP = 2
"""Spaces between two columns (none before the first or after the last)."""


CellValue = Line | Sequence[Line]
"""A cell: one :class:`Line` (``\\n`` separates its lines) or its lines one by one."""


class _Column(NamedTuple):
    """One column of a :class:`FittedTable`.

    ``hide`` orders what goes when the table is too wide for the terminal
    (highest first; 0 = always shown).  The table is measured with each cell
    on its first line; a ``wrap`` column may wrap (its later lines always),
    and counts at most ``wrap_at`` characters.  ``cell`` makes the column's
    cell of one row.
    """

    header: str
    cell: Callable[[Mapping[str, Any]], CellValue] = lambda _row: Text()
    hide: int = 0
    justify: Literal["left", "right"] = "left"
    wrap: bool = False
    wrap_at: int | None = None
    style: str = ""


class _Cell(NamedTuple):
    """A cell's lines and the width of each in terminal cells (measured once).

    A ``str`` line is kept as it is, without its control codes (as
    :class:`Text` drops them); a column ``style`` makes it a :class:`Text`.
    """

    lines: list[Line]
    sizes: list[int]

    @classmethod
    def of(cls, value: CellValue, style: str = "") -> _Cell:
        if isinstance(value, str) and _simple(value) and not style:  # most cells
            return cls([value], [len(value)])
        lines: list[Line]
        if isinstance(value, str):
            plain = strip_control_codes(value)
            lines = [plain] if "\n" not in plain else _split_lines(plain)
        elif isinstance(value, Text):
            lines = [value] if "\n" not in value.plain else list(value.split("\n"))
        else:
            lines = [_clean(line) for line in value]
        if style:
            lines = [_stylized(line, style) for line in lines]
        return cls(lines, [_width(line) for line in lines])


def _split_lines(text: str) -> list[Line]:
    """``text`` cut at each newline, as :meth:`Text.split` does (no blank last line)."""
    lines: list[Line] = list(text.split("\n"))
    if text.endswith("\n"):
        lines.pop()
    return lines


def _simple(text: str) -> bool:
    """Printable ASCII only: nothing to strip, one terminal cell a character."""
    return text.isascii() and text.isprintable()


def _clean(line: Line) -> Line:
    """A ``str`` line without its control codes (as :class:`Text` drops them)."""
    if isinstance(line, str) and not _simple(line):
        return strip_control_codes(line)
    return line


def _width(line: Line) -> int:
    plain = line if isinstance(line, str) else line.plain
    return len(plain) if _simple(plain) else cell_len(plain)


def _as_text(line: Line) -> Text:
    return Text(line) if isinstance(line, str) else line


def _stylized(line: Line, style: str) -> Text:
    text = _as_text(line)
    text.stylize_before(style)
    return text


class _Layout(NamedTuple):
    shown: tuple[int, ...]
    widths: tuple[int, ...]
    hidden: tuple[str, ...]


_Slot = tuple[int, int, bool, bool]
"""A shown column as :meth:`FittedTable._row` lays it out: index, width, wrap, right-justified."""


class FittedTable:
    """Rows of :class:`Text` cells in columns laid out once for the width at hand.

    Each cell is measured once, as plain text.  Columns are hidden by their
    ``hide`` order until the table fits (a dim caption names them), ``wrap``
    columns share the room left over for their later lines and wrap when even
    that is short, and other cells too wide are cut with ``…``.  Lines go
    straight to segments, without trailing spaces, so a 100-row table prints
    in a few milliseconds.
    """

    def __init__(
        self,
        columns: Sequence[_Column],
        rows: Iterable[Sequence[CellValue]],
        *,
        width: int | None = None,
        show_header: bool = True,
    ) -> None:
        self.columns = tuple(columns)
        self.width = width
        self.header = (
            [_Cell.of(Text(column.header, style="bold")) for column in self.columns]
            if show_header
            else None
        )
        self.rows = [
            [_Cell.of(text, column.style) for text, column in zip(row, self.columns, strict=True)]
            for row in rows
        ]
        self._natural, self._full = self._measure()

    def _measure(self) -> tuple[list[int], list[int]]:
        """Per column: the width that counts for fitting, and the width of its widest line."""
        natural: list[int] = []
        full: list[int] = []
        for index, column in enumerate(self.columns):
            first = widest = self.header[index].sizes[0] if self.header else 0
            for row in self.rows:
                sizes = row[index].sizes
                size = sizes[0] if column.wrap_at is None else min(sizes[0], column.wrap_at)
                first = max(first, size)
                widest = max(widest, *sizes)
            natural.append(first if column.wrap else widest)
            full.append(widest)
        return natural, full

    def _total(self, shown: Iterable[int], sizes: Sequence[int]) -> int:
        indexes = list(shown)
        return sum(sizes[index] for index in indexes) + _GAP * max(len(indexes) - 1, 0)

    def _layout(self, max_width: int) -> _Layout:
        """Which columns are shown, and how wide, in ``max_width`` cells."""
        limit = max_width if self.width is None else min(self.width, max_width)
        shown = list(range(len(self.columns)))
        hidden: list[str] = []
        while self._total(shown, self._natural) > limit:
            candidates = [index for index in shown if self.columns[index].hide]
            if not candidates:
                break
            drop = max(candidates, key=lambda index: self.columns[index].hide)
            shown.remove(drop)
            hidden.append(self.columns[drop].header)
        widths = {index: self._natural[index] for index in shown}
        wrapping = [index for index in shown if self.columns[index].wrap]
        spare = limit - self._total(shown, self._natural)
        _grow(widths, {index: self._full[index] for index in wrapping}, spare)
        if spare < 0:  # nothing left to hide: wrap columns give first, then the widest
            _shrink(widths, shown, _shrink(widths, wrapping, -spare))
        return _Layout(tuple(shown), tuple(widths[index] for index in shown), tuple(hidden))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        layout = self._layout(options.max_width)
        slots = [
            (index, width, self.columns[index].wrap, self.columns[index].justify == "right")
            for index, width in zip(layout.shown, layout.widths, strict=True)
        ]
        if self.header is not None:
            yield from self._row(console, self.header, slots)
        for row in self.rows:
            yield from self._row(console, row, slots)
        if layout.hidden:
            caption = "hidden to fit the terminal: " + ", ".join(layout.hidden)
            yield from console.render(Text(caption + " (widen it, or use --json)", style="dim"))

    @staticmethod
    def _row(console: Console, row: Sequence[_Cell], slots: Sequence[_Slot]) -> Iterator[Segment]:
        cells = [
            row[index] if max(row[index].sizes) <= width else _fit(console, row[index], width, wrap)
            for index, width, wrap, _ in slots
        ]
        for number in range(max(len(cell.lines) for cell in cells)):
            plain: list[str] = []  # unstyled text, written as one segment
            pending = 0  # spaces owed before the next text; never written at a line's end
            for (lines, sizes), (_index, width, _wrap, right) in zip(cells, slots, strict=True):
                size = sizes[number] if number < len(sizes) else 0
                if size:
                    text = lines[number]
                    pad = width - size
                    plain.append(" " * (pending + pad if right else pending))
                    if isinstance(text, str):
                        plain.append(text)
                    elif text.spans or text.style:
                        yield Segment("".join(plain))
                        plain.clear()
                        yield from _styled(console, text)
                    else:
                        plain.append(text.plain)
                    pending = 0 if right else pad
                else:
                    pending += width
                pending += _GAP
            plain.append("\n")
            yield Segment("".join(plain))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        always = [i for i, column in enumerate(self.columns) if not column.hide]
        everything = range(len(self.columns))
        return Measurement(
            self._total(always, self._natural), self._total(everything, self._full)
        ).with_maximum(options.max_width)


def _styled(console: Console, text: Text) -> Iterable[Segment]:
    if text.spans:
        return text.render(console)
    return (Segment(text.plain, console.get_style(text.style)),)


def _fit(console: Console, cell: _Cell, width: int, wrap: bool) -> _Cell:
    """``cell``, too wide for ``width``, made to fit: its long lines wrapped, or cut with ``…``."""
    lines: list[Line] = []
    for line, size in zip(cell.lines, cell.sizes, strict=True):
        if size <= width:
            lines.append(line)
        elif wrap:
            for piece in _as_text(line).wrap(console, width, overflow="fold"):
                piece.rstrip()
                lines.append(piece)
        else:
            cut = _as_text(line).copy()
            cut.truncate(width, overflow="ellipsis")
            lines.append(cut)
    return _Cell(lines, [_width(line) for line in lines])


def _grow(widths: dict[int, int], wanted: Mapping[int, int], spare: int) -> None:
    """Share ``spare`` cells among the columns in ``wanted``, the neediest first."""
    while spare > 0:
        needs = {index: wanted[index] - widths[index] for index in wanted}
        neediest = max(needs, key=needs.__getitem__, default=None)
        if neediest is None or needs[neediest] <= 0:
            return
        widths[neediest] += 1
        spare -= 1


def _shrink(widths: dict[int, int], among: Sequence[int], excess: int) -> int:
    """Take ``excess`` cells from the widest of the columns ``among``; return what is left."""
    while excess > 0:
        candidates = [index for index in among if widths[index] > 1]
        if not candidates:
            break
        widest = max(candidates, key=widths.__getitem__)
        widths[widest] -= 1
        excess -= 1
    return excess


def _fitted_table(
    columns: Sequence[_Column], rows: Sequence[Mapping[str, Any]], width: int | None
) -> FittedTable:
    """A table of ``rows``, one cell per column made by ``column.cell``."""
    cells = [[column.cell(row) for column in columns] for row in rows]
    return FittedTable(columns, cells, width=width)


# --- status ------------------------------------------------------------------


def _status_columns(now: datetime, paused: bool) -> list[_Column]:
    def failures(job: Mapping[str, Any]) -> Line:
        count = int(job.get("total_failures") or 0)
        return Text(str(count), style="red") if count else str(count)

    return [
        _Column("NAME", lambda job: str(job.get("name", ""))),
        _Column("SCHEDULE", _schedule_lines, hide=2, wrap=True),
        _Column("ENABLED", _enabled_lines, hide=1, wrap=True),
        _Column("LAST RUN", lambda job: relative_iso(job.get("last_run"), now), hide=3),
        _Column("STATUS", _last_status_text),
        _Column(
            "DURATION",
            lambda job: format_duration_ms(job.get("last_duration_ms")),
            hide=6,
            justify="right",
        ),
        _Column("RUNS", lambda job: str(job.get("total_runs") or 0), 4, "right"),
        _Column("FAILS", failures, hide=5, justify="right"),
        _Column(
            "AVG",
            lambda job: format_duration_ms(job.get("average_duration_ms")),
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
) -> FittedTable:
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
    from rich.panel import Panel  # only when there is something to warn about

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
        "Scheduling is paused (CRONHUB_ENABLED=false or [scheduler] enabled = false): "
        "no timed runs; manual runs still work.",
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
        return Text(_CONTROL.sub("?", value))
    return Text(_CONTROL.sub("?", json.dumps(value, ensure_ascii=False, default=str)))


def job_detail(
    job: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    now: datetime,
    *,
    paused: bool = False,
    width: int | None = None,
) -> RenderableType:
    """``cronhub status JOB``: state, full configuration and the last runs."""
    rows: list[tuple[Text, CellValue]] = []

    def row(key: str, value: CellValue) -> None:
        rows.append((Text(key), value))

    row("name", Text(str(job.get("name", ""))))
    if job.get("description"):
        row("description", Text(_CONTROL.sub("?", str(job["description"]))))
    row("schedule", _schedule_lines(job))
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

    grid = FittedTable(
        (_Column("", style="bold"), _Column("", wrap=True)), rows, width=width, show_header=False
    )
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


def _next_detail(job: Mapping[str, Any], now: datetime, *, paused: bool) -> Line:
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
) -> FittedTable:
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


_NEXT_COLUMNS = (
    _Column("#", justify="right", style="dim"),
    _Column("FIRES AT"),
    _Column("IN"),
    _Column("NOTE", wrap=True),
)


def render_next(
    fires: Iterable[FireLike], now: datetime, *, title: str | Text | None = None
) -> RenderableType:
    """Fire times in the schedule's zone with the UTC offset, DST-shifted ones marked."""
    rows = []
    for number, fire in enumerate(fires, start=1):
        note = Text()
        if fire.shifted:
            note.append("⚠ " + (fire.note or "moved by a DST transition"), style="yellow")
        elif fire.note:
            note.append(fire.note, style="dim")
        rows.append(
            (
                Text(str(number)),
                Text(absolute_time(fire.at)),
                Text(relative_time(fire.at, now)),
                note,
            )
        )
    table = FittedTable(_NEXT_COLUMNS, rows)
    if title is None:
        return table
    return Group(Text(title) if isinstance(title, str) else title, table)


def next_json(fires: Iterable[FireLike]) -> list[str]:
    """``cronhub next --json``: ISO-8601 strings with offsets."""
    return [fire.at.isoformat() for fire in fires]


def _next_fire_text(job: Mapping[str, Any], now: datetime) -> Text:
    next_run: datetime | None = job.get("next_run")
    if next_run is None:
        return Text(str(job.get("when") or _DASH), style="dim")
    when = Text(absolute_time(next_run))
    when.append(f" ({relative_time(next_run, now)})", style="dim")
    return when


def validate_table(
    jobs: Sequence[Mapping[str, Any]], now: datetime, *, width: int | None = None
) -> FittedTable:
    """The summary ``cronhub validate`` prints for a valid registry.

    Each job is ``{"name", "enabled", "schedule", "next_run" (aware datetime or
    None), "when" (str, shown when there is no next_run)}``.
    """
    columns = [
        _Column("JOB", lambda job: Text(str(job["name"]))),
        _Column("SCHEDULE", lambda job: Text(str(job["schedule"])), wrap=True),
        _Column(
            "ENABLED", lambda job: Text("yes") if job["enabled"] else Text("no", style="yellow")
        ),
        _Column("NEXT FIRE", lambda job: _next_fire_text(job, now), wrap=True),
    ]
    return _fitted_table(columns, jobs, width)


def to_json(document: Any) -> str:
    """The one JSON document a ``--json`` command prints."""
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)
