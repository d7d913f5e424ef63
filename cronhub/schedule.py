"""Schedules: parsing, next fire times and Debian cron's DST rules.

The only module that imports croniter.  This module checks every field itself
(for messages that name the field and value) and expands the POSIX grammar
(lists, ranges, steps, names) itself, since it must follow Vixie cron where
croniter does not (``3-3``, ``7``, the day-field rule) and a parse has to cost
microseconds for a registry of 10,000 jobs.  croniter expands the day-field
extensions (``L``, ``15W``, ``5#2``, ``L5``), and the unit tests use it as the
oracle for the rest.  The search for the next matching wall-clock time and
the mapping of wall-clock times to instants live here, so the DST policy is
ours and ``next_fire`` takes tens of microseconds.

Semantics, as Vixie/Debian cron:

* 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds
  first.  ``a-a`` is the single value ``a`` (croniter alone reads ``3-3`` and
  ``MON-MON`` as the whole field).
* Day fields: when both are restricted a day matches if *either* matches; a
  day field whose text starts with ``*`` (``*``, ``*/2``) counts as
  unrestricted, so the two are ANDed.
* Times are matched on naive local wall-clock times in the schedule's zone and
  then mapped to instants.  A job is *fixed-time* when neither its minute nor
  its hour field starts with ``*`` (the seconds field of a 6-field expression
  does not count).  In a spring-forward gap a fixed-time fire runs once, at the
  first instant after the gap; a wildcard job has no fire there.  In a
  fall-back fold a fixed-time job fires on the first pass only; a wildcard job
  fires on both passes.

Everything here is pure: time is passed in, nothing is read from the clock.
"""

from __future__ import annotations

import calendar
import difflib
import heapq
import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, datetime, timedelta, tzinfo
from functools import cache, lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from cronhub.durations import format_duration_ms, parse_duration
from cronhub.errors import ConfigError, ScheduleError
from cronhub.model import CronSchedule, IntervalSchedule, RebootSchedule, Schedule

__all__ = [
    "MACROS",
    "MIN_INTERVAL_MS",
    "Fire",
    "describe",
    "is_fixed_time",
    "next_fire",
    "next_fires",
    "parse_schedule",
]

MIN_INTERVAL_MS = 1_000
"""Shortest interval schedule accepted."""

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""Cron macros and the expressions they stand for (``@reboot`` is separate)."""

_REBOOT = "@reboot"
_SEARCH_YEARS = 400
"""The Gregorian calendar repeats every 400 years: no match within them, none ever."""
_ONE_SECOND = timedelta(seconds=1)
_MONTH_CACHE_SIZE = 256


@dataclass(frozen=True, kw_only=True, slots=True)
class Fire:
    """One planned fire of a cron schedule.

    ``at`` is aware, in the schedule's zone.  ``shifted`` is true when a DST
    transition moved the fire from the wall-clock time the expression names;
    ``note`` explains any DST effect (a shift or a repeated hour).
    """

    at: datetime
    shifted: bool = False
    note: str | None = None


# --- parsing -----------------------------------------------------------------


def parse_schedule(value: str | int, *, timezone: str) -> Schedule:
    """Parse what a user wrote as a job's ``schedule``.

    Accepts a cron expression (5 fields, or 6 with seconds first), a macro
    (``@daily`` …, ``@reboot``), ``"every <duration>"`` or an integer of
    milliseconds.  ``timezone`` is an IANA zone name and is validated here.
    Raises :class:`ScheduleError` with a message naming what is wrong.
    """
    _check_timezone(timezone)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ScheduleError(
            f'expected a cron expression, a macro, "every <duration>" or integer '
            f"milliseconds, got {value!r}"
        )
    if isinstance(value, int):
        return _interval(value, str(value))
    text = value.strip()
    if not text:
        raise ScheduleError("schedule is empty")
    if text.startswith("@"):
        return _macro(text, timezone)
    if text.lower().startswith("every"):
        return _every(text)
    return _cron(text, timezone)


def _check_timezone(name: str) -> None:
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a folder
        raise ScheduleError(f'unknown time zone "{name}"') from None


@cache
def _zone(name: str) -> tzinfo:
    if name in ("UTC", "Etc/UTC"):
        return UTC
    return ZoneInfo(name)


def _interval(ms: int, text: str) -> IntervalSchedule:
    if ms < MIN_INTERVAL_MS:
        raise ScheduleError(
            f'interval "{text}" is {format_duration_ms(ms)}; the shortest interval is 1s'
        )
    return IntervalSchedule(every_ms=ms, text=text)


def _every(text: str) -> IntervalSchedule:
    rest = text[len("every") :].strip()
    if not rest:
        raise ScheduleError(f'interval "{text}" has no duration, e.g. "every 30s"')
    try:
        ms = parse_duration(rest)
    except ConfigError as exc:
        raise ScheduleError(f'interval "{text}": {exc.issues[0].message}') from exc
    return _interval(ms, text)


def _macro(text: str, timezone: str) -> Schedule:
    key = text.lower()
    if key == _REBOOT:
        return RebootSchedule(text=text)
    expr = MACROS.get(key)
    if expr is None:
        known = [*MACROS, _REBOOT]
        close = difflib.get_close_matches(key, known, n=1)
        hint = f' — did you mean "{close[0]}"?' if close else f" (known: {' '.join(known)})"
        raise ScheduleError(f'unknown macro "{text}"{hint}')
    return CronSchedule(expr=expr, text=text, timezone=timezone, has_seconds=False)


# --- cron fields -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_MONTH_NAMES = {
    name: i
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}  # not calendar.month_abbr, which follows the locale
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 7, _DAY_NAMES)
_FIVE_FIELDS = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)

_NTH_WEEKDAY = re.compile(r"([a-z0-9]+)#([a-z0-9]+)", re.IGNORECASE)
_LAST_WEEKDAY = re.compile(r"l([a-z0-9]+)|([a-z0-9]+)l", re.IGNORECASE)
_NEAREST_WEEKDAY = re.compile(r"([0-9]+)w|w([0-9]+)", re.IGNORECASE)


def _cron(text: str, timezone: str) -> CronSchedule:
    fields = text.split()
    if len(fields) not in (5, 6):
        hint = ""
        if len(fields) == 1:
            try:
                parse_duration(fields[0])
                hint = f' — did you mean "every {fields[0]}"?'
            except ConfigError:
                pass
        raise ScheduleError(
            f'cron expression "{text}": expected 5 fields (minute hour day-of-month month '
            f"day-of-week) or 6 with seconds first, got {len(fields)}{hint}"
        )
    try:
        compiled = _compile(" ".join(fields))
    except _FieldError as exc:
        raise ScheduleError(f'cron expression "{text}": {exc}') from None
    except CroniterError as exc:
        raise ScheduleError(f'cron expression "{text}": {exc}') from exc
    if compiled.first_at_or_after(datetime(2000, 1, 1)) is None:
        raise ScheduleError(
            f'cron expression "{text}" never fires: no date matches its day and month fields'
        )
    return CronSchedule(
        expr=compiled.expr, text=text, timezone=timezone, has_seconds=len(fields) == 6
    )


class _FieldError(Exception):
    """A malformed cron field; turned into a ScheduleError with the expression."""


_Parsed = tuple[str, frozenset[int] | None]
"""A field's normalised text, and its values unless it uses ``L``, ``W`` or ``#``."""


def _parse_fields(fields: list[str]) -> list[_Parsed]:
    specs = (_SECOND, *_FIVE_FIELDS) if len(fields) == 6 else _FIVE_FIELDS
    return [_parse_field(spec, text) for spec, text in zip(specs, fields, strict=True)]


def _parse_field(spec: _Field, text: str) -> _Parsed:
    """Check one field; return it normalised, with the values it allows.

    Names become numbers, ``?`` becomes ``*``, ``a-a`` becomes ``a`` and
    ``5L`` becomes croniter's ``L5``.
    """
    items = text.split(",")
    if "" in items:
        raise _FieldError(f'{spec.name} field "{text}" has an empty list item')
    parsed = [_parse_item(spec, item) for item in items]
    normal = [item for item, _ in parsed]
    if len(normal) > 1 and any(item.endswith("W") for item in normal):
        raise _FieldError(f'{spec.name} "W" must stand alone, not in a list ("{text}")')
    special = [values is None for _, values in parsed]
    if spec is _DOW and any(special) and not all(special):
        raise _FieldError(
            f'day-of-week "{text}" mixes plain days with "#" or "L" days; croniter cannot '
            "combine them"
        )
    if any(special):
        return ",".join(normal), None
    return ",".join(normal), frozenset().union(*(values for _, values in parsed if values))


def _parse_item(spec: _Field, item: str) -> tuple[str, range | list[int] | None]:
    special = _dom_special(item) if spec is _DOM else _dow_special(item) if spec is _DOW else None
    if special is not None:
        return special, None
    top = 6 if spec is _DOW else spec.high  # 7 is Sunday again
    base, slash, step_text = item.partition("/")
    step = _step(spec, step_text) if slash else 1
    step_text = f"/{step}" if slash else ""
    if base in ("*", "?"):
        if base == "?" and (spec not in (_DOM, _DOW) or slash):
            raise _FieldError(f'{spec.name} "{item}": "?" is only allowed alone in a day field')
        return f"*{step_text}", range(spec.low, top + 1, step)
    first, dash, last = base.partition("-")
    written = _value(spec, first)
    low = _canonical(spec, written)
    if not dash:
        if slash:  # "a/n": from a to the end of the field
            return f"{low}{step_text}", range(low, top + 1, step)
        return str(low), [low]
    to_last_day = spec is _DOM and last.lower() == "l"
    high = 31 if to_last_day else _value(spec, last)
    if low == _canonical(spec, high) and (written, high) != (0, 7):
        return str(low), [low]  # croniter would read "3-3" as the whole field
    span = f"{written}-{'L' if to_last_day else high}{step_text}"
    if low <= high:
        values = [_canonical(spec, v) for v in range(low, high + 1, step)]
    else:  # wraps around the end of the field: "FRI-MON", "22-2"
        values = [*range(low, top + 1), *range(spec.low, high + 1)][::step]
    return span, values


def _dom_special(item: str) -> str | None:
    lower = item.lower()
    if lower == "l":
        return "L"
    if lower == "lw":
        raise _FieldError('day-of-month "LW" is not supported; use "L" or a day like "15W"')
    match = _NEAREST_WEEKDAY.fullmatch(item)
    if match is None:
        return None
    return f"{_value(_DOM, match.group(1) or match.group(2))}W"


def _dow_special(item: str) -> str | None:
    if item.lower() == "l":
        raise _FieldError('day-of-week "L" needs a day, e.g. "5L" for the last Friday')
    match = _NTH_WEEKDAY.fullmatch(item)
    if match is not None:
        day = _canonical(_DOW, _value(_DOW, match.group(1)))
        nth = match.group(2)
        if not (_is_number(nth) and 1 <= int(nth) <= 5):
            raise _FieldError(f'day-of-week "{item}": occurrence "{nth}" is not 1-5')
        return f"{day}#{int(nth)}"
    match = _LAST_WEEKDAY.fullmatch(item)
    if match is not None:
        day = _canonical(_DOW, _value(_DOW, match.group(1) or match.group(2)))
        return f"L{day}"
    return None


def _value(spec: _Field, token: str) -> int:
    if _is_number(token):
        value = int(token)
    elif spec.names is not None and token.lower() in spec.names:
        value = spec.names[token.lower()]
    elif not token:
        raise _FieldError(f"{spec.name} is missing a value")
    elif spec.names is not None:
        raise _FieldError(f'{spec.name} "{token}" is neither a number nor a {spec.name} name')
    else:
        raise _FieldError(f'{spec.name} "{token}" is not a number')
    if not spec.low <= value <= spec.high:
        raise _FieldError(f"{spec.name} {value} out of range {spec.low}-{spec.high}")
    return value


def _step(spec: _Field, text: str) -> int:
    if not _is_number(text):
        raise _FieldError(f'{spec.name} step "{text}" is not a number')
    step = int(text)
    if not 1 <= step <= spec.high:
        raise _FieldError(f"{spec.name} step {step} out of range 1-{spec.high}")
    return step


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _canonical(spec: _Field, value: int) -> int:
    return 0 if spec is _DOW and value == 7 else value


# --- evaluation --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DayRule:
    """Which days of a month match: the day-of-month and day-of-week fields."""

    dom_days: frozenset[int]
    dow_days: frozenset[int]  # 0 = Sunday
    union: bool
    """Vixie cron: OR the two fields unless either starts with ``*``."""
    dom_last: bool = False
    dom_nearest: int | None = None
    dow_nth: Mapping[int, frozenset[int | str]] = field(default_factory=dict)
    """Weekday to the occurrences wanted: 1-5, or ``"l"`` for the last."""

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first_weekday, last = calendar.monthrange(year, month)
        first_sunday_based = (first_weekday + 1) % 7
        if self.dom_nearest is not None:
            nearest = _nearest_weekday(year, month, self.dom_nearest, last)
            dom = set() if nearest is None else {nearest}
        else:
            dom = {day for day in self.dom_days if day <= last}
            if self.dom_last:
                dom.add(last)
        dow = set()
        for weekday in self.dow_days:
            dow.update(range((weekday - first_sunday_based) % 7 + 1, last + 1, 7))
        for weekday, wanted in self.dow_nth.items():
            same_weekday = range((weekday - first_sunday_based) % 7 + 1, last + 1, 7)
            dow.update(day for n, day in enumerate(same_weekday, 1) if n in wanted)
            if "l" in wanted:
                dow.add(same_weekday[-1])
        return tuple(sorted(dom | dow if self.union else dom & dow))


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int | None:
    """Quartz ``W``: the weekday nearest ``day`` without leaving the month."""
    if day > last:
        return None
    weekday = calendar.weekday(year, month, day)  # Monday = 0
    if weekday == 5:  # Saturday: Friday before, or Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, or Friday before on the last day
        return day + 1 if day < last else day - 2
    return day


class _Compiled:
    """An expanded cron expression that finds matching naive wall-clock times."""

    __slots__ = (
        "_month_days",
        "day_rule",
        "expr",
        "fixed",
        "hours",
        "minutes",
        "months",
        "seconds",
    )

    def __init__(self, text: str) -> None:
        parsed = _parse_fields(text.split())
        self.expr = expr = " ".join(normal for normal, _ in parsed)
        self.fixed = is_fixed_time(expr)
        fields = expr.split()
        if len(fields) == 5:
            parsed.insert(0, ("0", frozenset({0})))
        seconds, minutes, hours, dom, months, dow = (values for _, values in parsed)
        if seconds is None or minutes is None or hours is None or months is None:
            raise AssertionError(f"L, W and # only occur in day fields: {expr!r}")
        self.seconds = tuple(sorted(seconds))
        self.minutes = tuple(sorted(minutes))
        self.hours = tuple(sorted(hours))
        self.months = months
        union = not (fields[-3].startswith("*") or fields[-1].startswith("*"))
        if dom is None or dow is None:
            self.day_rule = _croniter_day_rule(expr, union)
        else:
            self.day_rule = _DayRule(dom_days=dom, dow_days=dow, union=union)
        self._month_days: dict[tuple[int, int], tuple[int, ...]] = {}

    def days(self, year: int, month: int) -> tuple[int, ...]:
        key = (year, month)
        days = self._month_days.get(key)
        if days is None:
            if len(self._month_days) >= _MONTH_CACHE_SIZE:
                self._month_days.clear()
            days = self._month_days[key] = self.day_rule.days(year, month)
        return days

    def first_at_or_after(self, start: datetime) -> datetime | None:
        """The first matching naive time at or after ``start`` (whole seconds)."""
        year, month, day = start.year, start.month, start.day
        clock: tuple[int, int, int] | None = (start.hour, start.minute, start.second)
        limit = min(year + _SEARCH_YEARS, MAXYEAR)
        while year <= limit:
            if month in self.months:
                days = self.days(year, month)
                for index in range(bisect_left(days, day), len(days)):
                    match_day = days[index]
                    found = self._time_at_or_after(clock if match_day == day else None)
                    if found is not None:
                        return datetime(year, month, match_day, *found)
            month, day, clock = month + 1, 1, None
            if month == 13:
                year, month = year + 1, 1
        return None

    def _time_at_or_after(self, clock: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        if clock is None:
            return hours[0], minutes[0], seconds[0]
        hour, minute, second = clock
        h = bisect_left(hours, hour)
        if h < len(hours) and hours[h] == hour:
            m = bisect_left(minutes, minute)
            if m < len(minutes) and minutes[m] == minute:
                s = bisect_left(seconds, second)
                if s < len(seconds):
                    return hour, minute, seconds[s]
                m += 1
            if m < len(minutes):
                return hour, minutes[m], seconds[0]
            h += 1
        if h < len(hours):
            return hours[h], minutes[0], seconds[0]
        return None


def _croniter_day_rule(expr: str, union: bool) -> _DayRule:
    """Day fields with croniter's extensions: ``L``, ``15W``, ``5#2``, ``L5``."""
    cron = croniter(expr, datetime(2000, 1, 1), second_at_beginning=len(expr.split()) == 6)
    dom, dow = cron.expanded[2], cron.expanded[4]
    nth = {day: frozenset(which) for day, which in cron.nth_weekday_of_month.items()}
    return _DayRule(
        dom_days=frozenset(range(1, 32) if dom == ["*"] else (d for d in dom if d != "l")),
        dow_days=frozenset(range(7) if dow == ["*"] else (d for d in dow if d not in nth)),
        union=union,
        dom_last="l" in dom,
        dom_nearest=next(iter(cron.nearest_weekday), None),
        dow_nth=nth,
    )


@lru_cache(maxsize=16_384)
def _compile(text: str) -> _Compiled:
    """The compiled form of a cron expression, normalised or as written."""
    return _Compiled(text)


def is_fixed_time(expr: str) -> bool:
    """True when neither the minute nor the hour field starts with ``*``.

    Fixed-time jobs get Debian cron's DST treatment: one run for a time in a
    spring-forward gap, first pass only in a fall-back fold.  ``expr`` may be
    5 fields, 6 with seconds first (the seconds field does not count) or a macro.
    """
    fields = MACROS.get(expr.strip().lower(), expr).split()
    if len(fields) not in (5, 6):
        raise ValueError(f"not a 5- or 6-field cron expression: {expr!r}")
    minute, hour = fields[-5], fields[-4]
    return not (minute.startswith("*") or hour.startswith("*"))


# --- wall-clock times to instants ----------------------------------------------


@dataclass(frozen=True, order=True, slots=True)
class _Candidate:
    instant: datetime  # aware UTC
    shifted: bool  # unshifted sorts first, so it wins a tie with a shifted gap fire
    note: str | None = field(default=None, compare=False)


def next_fire(schedule: CronSchedule, after: datetime) -> datetime | None:
    """The first fire strictly after ``after`` (aware), as an aware UTC datetime.

    ``None`` when the schedule never fires again (only near year 9999).
    """
    for candidate in _candidates(schedule, after):
        return candidate.instant
    return None


def next_fires(schedule: CronSchedule, after: datetime, n: int) -> list[Fire]:
    """The next ``n`` fires strictly after ``after``, in the schedule's zone."""
    zone = _zone(schedule.timezone)
    fires: list[Fire] = []
    if n <= 0:
        return fires
    for candidate in _candidates(schedule, after):
        fires.append(
            Fire(
                at=candidate.instant.astimezone(zone),
                shifted=candidate.shifted,
                note=candidate.note,
            )
        )
        if len(fires) == n:
            break
    return fires


def _candidates(schedule: CronSchedule, after: datetime) -> Iterator[_Candidate]:
    """Fires strictly after ``after`` in time order, with Debian cron's DST rules.

    Matching wall-clock times come in wall-clock order; each maps to zero,
    one or two instants.  The earliest instant of a wall-clock time never
    decreases as the wall-clock time grows, so a pending instant is final
    once a later wall-clock time's earliest instant passes it.
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be a timezone-aware datetime")
    compiled = _compile(schedule.expr)
    zone = _zone(schedule.timezone)
    fixed = compiled.fixed
    after_utc = after.astimezone(UTC)
    try:
        wall = _search_start(after_utc, zone)
    except OverflowError:
        return
    pending: list[_Candidate] = []
    last: datetime | None = None
    while True:
        try:
            match = compiled.first_at_or_after(wall.replace(microsecond=0) + _ONE_SECOND)
            mapped = None if match is None else _instants(match, zone, fixed, schedule.has_seconds)
        except OverflowError:
            match = mapped = None
        if mapped is not None:
            for candidate in mapped.candidates:
                if candidate.instant > after_utc:
                    heapq.heappush(pending, candidate)
        while pending and (mapped is None or mapped.settles(pending[0].instant)):
            candidate = heapq.heappop(pending)
            if candidate.instant != last:  # several gap times map to one instant
                last = candidate.instant
                yield candidate
        if match is None:
            return
        wall = match


class _Mapped(NamedTuple):
    """The fire instants of one matching wall-clock time."""

    floor: datetime
    """The earliest instant at which this wall-clock time occurs (or its gap ends)."""
    candidates: list[_Candidate]
    in_gap: bool

    def settles(self, instant: datetime) -> bool:
        """Whether no later wall-clock time can fire at or before ``instant``.

        A gap's end is also the instant of the first real time after the gap, which
        may itself match; hold it back so that the unshifted fire wins the tie.
        """
        return instant < self.floor or (instant == self.floor and not self.in_gap)


def _search_start(after_utc: datetime, zone: tzinfo) -> datetime:
    """The naive wall-clock time after which matching times can fire after ``after_utc``.

    Normally the wall-clock time of ``after_utc``.  On the first pass of a
    fall-back fold, the repeated span's second pass is still ahead, so the
    search starts a full shift earlier (instants already past are dropped).
    """
    local = after_utc.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if local.fold == 0:
        first = zone.utcoffset(wall)
        second = zone.utcoffset(wall.replace(fold=1))
        if first is not None and second is not None and first > second:
            return wall - (first - second)
    return wall


def _instants(wall: datetime, zone: tzinfo, fixed: bool, has_seconds: bool) -> _Mapped:
    """Map a matching wall-clock time to its fire instants and its earliest instant."""
    before = zone.utcoffset(wall)
    after = zone.utcoffset(wall.replace(fold=1))
    assert before is not None and after is not None
    if before == after:
        instant = (wall - before).replace(tzinfo=UTC)
        return _Mapped(instant, [_Candidate(instant, False)], in_gap=False)
    label = _clock(wall, has_seconds)
    if before < after:  # spring forward: the wall-clock time does not exist
        end = _transition(wall - after, wall - before, zone)
        if not fixed:
            return _Mapped(end, [], in_gap=True)
        shown = _clock(end.astimezone(zone), has_seconds)
        note = f"DST gap: {label} does not exist, fired at {shown}"
        return _Mapped(end, [_Candidate(end, True, note)], in_gap=True)
    first = (wall - before).replace(tzinfo=UTC)
    if fixed:
        note = f"DST fold: {label} occurs twice, fired on the first pass only"
        return _Mapped(first, [_Candidate(first, False, note)], in_gap=False)
    second = (wall - after).replace(tzinfo=UTC)
    return _Mapped(
        first,
        [
            _Candidate(first, False, f"DST fold: {label} occurs twice, first pass"),
            _Candidate(second, False, f"DST fold: {label} occurs twice, second pass"),
        ],
        in_gap=False,
    )


@lru_cache(maxsize=1024)
def _transition(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The instant in ``(low, high]`` (naive UTC) where the zone's offset changes."""
    start = low.replace(tzinfo=UTC).astimezone(zone).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        middle = (lo + hi) // 2
        probe = (low + timedelta(seconds=middle)).replace(tzinfo=UTC)
        if probe.astimezone(zone).utcoffset() == start:
            lo = middle
        else:
            hi = middle
    return (low + timedelta(seconds=hi)).replace(tzinfo=UTC)


def _clock(moment: datetime, has_seconds: bool) -> str:
    return moment.strftime("%H:%M:%S" if has_seconds or moment.second else "%H:%M")


# --- description -----------------------------------------------------------------

_DAY_LONG = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def describe(schedule: Schedule) -> str:
    """A short human reading of a schedule, for status tables.

    Common shapes read as English ("at 02:00 every day", "every 5 minutes");
    anything more complex falls back to the expression itself.
    """
    if isinstance(schedule, RebootSchedule):
        return "at startup"
    if isinstance(schedule, IntervalSchedule):
        text = schedule.text.strip()
        if text.lower().startswith("every"):
            return "every " + text[len("every") :].strip()
        return "every " + _compact_ms(schedule.every_ms)
    return _describe_cron(schedule.expr) or schedule.text


def _describe_cron(expr: str) -> str | None:
    fields = expr.split()
    if len(fields) == 6:
        second, *fields = fields
        if second != "0":
            if fields == ["*"] * 5:
                return "every second" if second == "*" else _every_n(second, "second")
            return None
    minute, hour, dom, month, dow = fields
    if (dom, month) != ("*", "*"):
        if month == "*" and dow == "*" and dom.isdigit() and minute.isdigit() and hour.isdigit():
            return f"at {int(hour):02d}:{int(minute):02d} on day {dom} of every month"
        return None
    days = _describe_days(dow)
    if days is None:
        return None
    if hour == "*":
        if minute == "*":
            return "every minute" + days
        if minute == "0":
            return "every hour" + days
        if minute.isdigit():
            return f"every hour at :{int(minute):02d}" + days
        return _every_n(minute, "minute", days)
    if minute.isdigit() and hour.isdigit():
        when = f"at {int(hour):02d}:{int(minute):02d}"
        return when + (days or " every day")
    if minute == "0":
        return _every_n(hour, "hour", days)
    return None


def _every_n(field: str, unit: str, suffix: str = "") -> str | None:
    if field.startswith("*/") and field[2:].isdigit():
        return f"every {field[2:]} {unit}s{suffix}"
    return None


def _describe_days(dow: str) -> str | None:
    if dow == "*":
        return ""
    if dow.isdigit():
        return f" on {_DAY_LONG[int(dow) % 7]}"
    first, dash, last = dow.partition("-")
    if dash and first.isdigit() and last.isdigit():
        return f" on {_DAY_LONG[int(first) % 7]} to {_DAY_LONG[int(last) % 7]}"
    return None


def _compact_ms(ms: int) -> str:
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)
