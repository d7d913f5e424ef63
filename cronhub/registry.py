"""The job registry: ``jobs.toml`` text to a validated :class:`~cronhub.model.Registry`.

:func:`parse_registry` is pure: it never opens a file, and it reports *every*
problem at once in one :class:`~cronhub.errors.ConfigError`, each issue located
as ``FILE:LINE``.  :func:`cronhub.registry_file.load_registry` is the I/O wrapper that reads
the file and checks that callables' modules exist without importing them.

Rules beyond the format described in the README:

- ``[defaults]`` may set any job key except those that say *what* a job runs
  (``command``, ``callable``, ``args``, ``kwargs``) and ``schedule``.  A job's own
  value replaces the default, except ``env``, whose variables are merged (the
  job's win).
- ``timeout = 0`` means no timeout, as ``TimeoutSec=0`` does in systemd, so a job
  can opt out of a ``[defaults]`` timeout.
- Environment overrides (``CRONHUB_TIMEZONE``, ``CRONHUB_MAX_CONCURRENT``,
  ``CRONHUB_HISTORY_RETENTION_DAYS``, ``CRONHUB_ENABLED``, ``CRONHUB_SOCKET``) win
  over ``[scheduler]``; an empty variable counts as unset.
- Without ``database``/``socket`` in the registry they default to
  ``$STATE_DIRECTORY/cronhub.db`` and ``$RUNTIME_DIRECTORY/cronhub.sock`` under
  systemd, else to ``cronhub.db`` and ``cronhub.sock`` next to the registry.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import difflib
import keyword
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronhub.durations import parse_duration, parse_size
from cronhub.errors import ConfigError, ConfigIssue, CronhubError, ScheduleError
from cronhub.model import (
    DEFAULT_KILL_GRACE_MS,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_RETRY_DELAY_MS,
    CronSchedule,
    IntervalSchedule,
    JobSpec,
    RebootSchedule,
    Registry,
    Schedule,
    SchedulerSettings,
)
from cronhub.schedule import parse_schedule

__all__ = [
    "RegistryCache",
    "RegistryDiff",
    "decode_registry",
    "default_registry_path",
    "diff_registries",
    "job_config",
    "parse_registry",
]

ModuleExists = Callable[[str, str], bool]
"""``module_exists(module_name, base_dir)``: can ``module_name`` be imported?"""

JOB_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_CONCURRENT = 10_000
MAX_RETENTION_DAYS = 36_500
MAX_RETRIES = 100
MAX_OUTPUT_LIMIT = 64 * 1024 * 1024
UNIX_SOCKET_PATH_MAX = 107
"""``sun_path`` holds 108 bytes on Linux, one of them the terminating NUL."""

DEFAULT_DATABASE_FILE = "cronhub.db"
DEFAULT_SOCKET_FILE = "cronhub.sock"

_TABLES = ("scheduler", "defaults", "jobs")
_SCHEDULER_KEYS = (
    "timezone",
    "max_concurrent",
    "history_retention_days",
    "database",
    "socket",
    "shutdown_grace",
    "control_group",
    "enabled",
)
_JOB_KEYS = (
    "description",
    "schedule",
    "command",
    "callable",
    "args",
    "kwargs",
    "timeout",
    "kill_grace",
    "retries",
    "retry_delay",
    "run_on_startup",
    "singleton",
    "enabled",
    "timezone",
    "env",
    "cwd",
    "output_limit",
)
_NOT_DEFAULTABLE = frozenset({"command", "callable", "args", "kwargs", "schedule"})
_CALLABLE_ARG_KEYS = ("args", "kwargs")
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_TOML_POSITION = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)\s*$")

KeyPath = tuple[str, ...]
Values = dict[str, Any]
"""Converted values of one table, by TOML key; each converter fixes its value's type."""


class _Invalid(CronhubError):
    """A value failed a check; the parser adds the location.  Never escapes this module."""


# --- public API --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistryDiff:
    """Job names sorted by what a reload does to them.

    ``added``, ``changed`` and ``unchanged`` follow the new registry's order,
    ``removed`` the old one's.  Jobs compare by :class:`JobSpec` equality, so a
    job that only moved in the file is unchanged.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when no job was added, removed or changed."""
        return not (self.added or self.removed or self.changed)


class RegistryCache:
    """What one parse of a registry learnt, for the next parse of it to reuse.

    Pass the same cache to successive :func:`parse_registry` (or
    :func:`~cronhub.registry_file.load_registry`) calls of one file, as the daemon's reloads do.
    A section (a ``[jobs.NAME]`` table from its header to the next) whose
    text is unchanged is not parsed again, and its job keeps its
    :class:`JobSpec` without being validated again while ``[defaults]``,
    the scheduler's time zone and the registry's folder are unchanged; a
    callable's module is still looked up each time.  Only the last parse is
    kept.  Not thread-safe: one cache per file, used by one caller at a time.
    """

    __slots__ = ("_context", "_sections")

    def __init__(self) -> None:
        self._sections: dict[str, _Cached] = {}
        self._context: tuple[object, ...] | None = None

    def __len__(self) -> int:
        """Sections remembered."""
        return len(self._sections)


def parse_registry(
    text: str,
    path: str,
    *,
    environ: Mapping[str, str] | None = None,
    module_exists: ModuleExists | None = None,
    cache: RegistryCache | None = None,
) -> Registry:
    """Validate registry ``text`` and return the :class:`Registry` it describes.

    ``path`` names the file in messages and anchors relative paths (its folder,
    made absolute against the working directory, is the registry's folder).
    ``environ`` supplies the ``CRONHUB_*`` overrides and systemd's directories
    (``None`` means an empty environment).  ``module_exists(module, base_dir)``
    checks a callable's module; ``None`` skips the check.  ``cache`` makes a
    reparse of a large registry cost little more than its changed jobs (see
    :class:`RegistryCache`).  Never opens a file.

    Raises :class:`ConfigError` carrying every issue found.
    """
    document = _Document.split(text, {} if cache is None else cache._sections)
    if document is None:  # a layout the section splitter leaves to tomllib (or invalid TOML)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([_syntax_issue(exc, text, path)]) from exc
        document = _Document(data, _ScannedLines(text), ())
    parser = _Parser(
        document.data,
        path=path,
        lines=document.lines,
        environ={} if environ is None else environ,
        module_exists=module_exists,
    )
    if cache is None:
        return parser.parse()
    parser.reuse(cache, document.sections)
    try:
        return parser.parse()
    finally:
        parser.remember(cache, document.sections)


def diff_registries(old: Registry, new: Registry) -> RegistryDiff:
    """Compare two registries job by job (see :class:`RegistryDiff`)."""
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    for name, spec in new.jobs.items():
        if name not in old.jobs:
            added.append(name)
        elif old.jobs[name] == spec:
            unchanged.append(name)
        else:
            changed.append(name)
    removed = tuple(name for name in old.jobs if name not in new.jobs)
    return RegistryDiff(
        added=tuple(added), removed=removed, changed=tuple(changed), unchanged=tuple(unchanged)
    )


def job_config(spec: JobSpec) -> dict[str, object]:
    """The job's full configuration as JSON-able data (for ``cronhub status JOB``).

    Durations are integer milliseconds in ``*_ms`` keys (``timeout_ms`` is
    ``None`` without a timeout), ``output_limit`` is bytes, ``command`` is a
    string or a list, and ``schedule`` is the text the user wrote.
    """
    command = list(spec.command) if isinstance(spec.command, tuple) else spec.command
    return {
        "name": spec.name,
        "description": spec.description,
        "schedule": spec.schedule.text,
        "schedule_kind": _schedule_kind(spec.schedule),
        "timezone": spec.timezone,
        "command": command,
        "callable": spec.callable,
        "args": _jsonable(list(spec.args)),
        "kwargs": _jsonable(dict(spec.kwargs)),
        "timeout_ms": spec.timeout_ms,
        "kill_grace_ms": spec.kill_grace_ms,
        "retries": spec.retries,
        "retry_delay_ms": spec.retry_delay_ms,
        "run_on_startup": spec.run_on_startup,
        "singleton": spec.singleton,
        "enabled": spec.enabled,
        "env": dict(spec.env),
        "cwd": spec.cwd,
        "output_limit": spec.output_limit,
        "line": spec.line,
    }


def default_registry_path(environ: Mapping[str, str]) -> str:
    """``$CRONHUB_CONFIG`` when set and not empty, else ``jobs.toml`` in the working directory."""
    return environ.get("CRONHUB_CONFIG") or "jobs.toml"


# --- the parser --------------------------------------------------------------


class _Parser:
    """One validation pass over the TOML data; collects issues instead of stopping."""

    def __init__(
        self,
        data: dict[str, object],
        *,
        path: str,
        lines: _LineIndex,
        environ: Mapping[str, str],
        module_exists: ModuleExists | None,
    ) -> None:
        self._data = data
        self._path = path
        self._lines = lines
        self._environ = environ
        self._module_exists = module_exists
        self._base_dir = os.path.dirname(os.path.abspath(path))
        self._errors: list[ConfigIssue] = []
        self._warnings: list[ConfigIssue] = []
        self._specs: dict[str, JobSpec] = {}
        self._reusable: Mapping[str, JobSpec] = {}
        self._schedules: dict[tuple[object, str], Schedule] = {}
        self._context: tuple[object, ...] = ()
        self._cached_context: tuple[object, ...] | None = None

    # -- issues

    def _line(self, keys: KeyPath) -> int | None:
        """The line that defines ``keys``, or else its nearest enclosing table."""
        return self._lines.line(keys)

    # -- the cache

    def reuse(self, cache: RegistryCache, sections: Sequence[_Section]) -> None:
        """Take from ``cache`` the specs of jobs whose section text is unchanged.

        They are used only if the context they were built in is still the
        same, which :meth:`parse` checks once the settings are known.
        """
        reusable: dict[str, JobSpec] = {}
        for section in sections:
            cached = cache._sections.get(section.text)
            if section.job is not None and cached is not None and cached.spec is not None:
                reusable[section.job] = cached.spec
        self._reusable = reusable
        self._cached_context = cache._context

    def remember(self, cache: RegistryCache, sections: Sequence[_Section]) -> None:
        """Keep this parse's sections (and the specs built from them) in ``cache``."""
        cache._sections = {
            section.text: _Cached(
                section.data, self._specs.get(section.job) if section.job is not None else None
            )
            for section in sections
        }
        cache._context = self._context

    def _error(
        self,
        message: str,
        keys: KeyPath,
        *,
        job: str | None = None,
        field: str | None = None,
    ) -> None:
        self._errors.append(
            ConfigIssue(message, path=self._path, line=self._line(keys), job=job, field=field)
        )

    def _warn(self, message: str, keys: KeyPath, *, job: str | None = None, field: str) -> None:
        self._warnings.append(
            ConfigIssue(
                message,
                path=self._path,
                line=self._line(keys),
                job=job,
                field=field,
                severity="warning",
            )
        )

    def _env_error(self, name: str, value: str, message: str) -> None:
        self._errors.append(
            ConfigIssue(f"{message} (environment variable, value {value!r})", field=name)
        )

    # -- top level

    def parse(self) -> Registry:
        for key in self._data:
            if key not in _TABLES:
                self._unknown_top_level(key)
        scheduler = self._table("scheduler")
        defaults = self._table("defaults")
        jobs_table = self._table("jobs")
        settings = self._settings(scheduler)
        default_values = self._defaults(defaults)
        self._context = (self._base_dir, settings.timezone, defaults)
        if self._cached_context != self._context:
            self._reusable = {}
        jobs = self._specs
        for name, body in jobs_table.items():
            reused = self._reusable.get(name)
            spec = self._job(name, body, default_values, settings, reused)
            if spec is not None:
                jobs[name] = spec
        if self._errors:
            raise ConfigError(sorted(self._errors, key=_issue_order))
        return Registry(
            path=self._path,
            settings=settings,
            jobs=jobs,
            warnings=tuple(sorted(self._warnings, key=_issue_order)),
        )

    def _unknown_top_level(self, key: str) -> None:
        if key in _SCHEDULER_KEYS:
            hint = "; it belongs in [scheduler]"
        elif key in _JOB_KEYS:
            hint = "; it belongs in a [jobs.NAME] table or in [defaults]"
        else:
            hint = _did_you_mean(key, _TABLES)
        self._error(f"unknown table or key{hint}", (key,), field=key)

    def _table(self, key: str) -> dict[str, object]:
        value = self._data.get(key, {})
        if isinstance(value, dict):
            return value
        self._error(f"expected a table, got {_describe(value)}", (key,), field=key)
        return {}

    # -- [scheduler]

    def _settings(self, table: dict[str, object]) -> SchedulerSettings:
        values = self._convert_table(
            table, ("scheduler",), _SCHEDULER_CONVERTERS, field_prefix="scheduler."
        )
        values.update(self._env_overrides())
        explicit_database = values.pop("database", None)
        explicit_socket = values.pop("socket", None)
        if "shutdown_grace" in values:
            values["shutdown_grace_ms"] = values.pop("shutdown_grace")
        settings = SchedulerSettings(
            database=self._database_url(explicit_database),
            socket=self._socket_path(explicit_socket),
            **values,
        )
        if len(os.fsencode(settings.socket)) > UNIX_SOCKET_PATH_MAX:
            self._warn(
                f"socket path is longer than the {UNIX_SOCKET_PATH_MAX} bytes a Unix socket "
                f"allows: {settings.socket}",
                ("scheduler", "socket"),
                field="scheduler.socket",
            )
        return settings

    def _database_url(self, explicit: object) -> str:
        if isinstance(explicit, str):
            if "://" in explicit:
                return explicit
            return "sqlite:///" + self._resolve(explicit)
        state = self._environ.get("STATE_DIRECTORY", "").split(":")[0]
        folder = self._resolve(state) if state else self._base_dir
        return "sqlite:///" + os.path.join(folder, DEFAULT_DATABASE_FILE)

    def _socket_path(self, explicit: object) -> str:
        if isinstance(explicit, str):
            return self._resolve(explicit)
        runtime = self._environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        folder = self._resolve(runtime) if runtime else self._base_dir
        return os.path.join(folder, DEFAULT_SOCKET_FILE)

    def _resolve(self, path: str) -> str:
        return os.path.normpath(os.path.join(self._base_dir, path))

    def _env_overrides(self) -> Values:
        overrides: Values = {}
        for name, field, convert in _ENV_OVERRIDES:
            raw = self._environ.get(name, "")
            if not raw:
                continue
            try:
                overrides[field] = convert(raw)
            except _Invalid as exc:
                self._env_error(name, raw, str(exc))
        socket = self._environ.get("CRONHUB_SOCKET", "")
        if socket:
            overrides["socket"] = os.path.abspath(socket)
        return overrides

    # -- [defaults]

    def _defaults(self, table: dict[str, object]) -> Values:
        for key in table:
            if key in _NOT_DEFAULTABLE:
                self._error(
                    f"{key} cannot have a default: set it in each job",
                    ("defaults", key),
                    field=f"defaults.{key}",
                )
        allowed = {k: v for k, v in _JOB_CONVERTERS.items() if k not in _NOT_DEFAULTABLE}
        defaultable = {k: v for k, v in table.items() if k not in _NOT_DEFAULTABLE}
        return self._convert_table(defaultable, ("defaults",), allowed, field_prefix="defaults.")

    # -- [jobs.NAME]

    def _job(
        self,
        name: str,
        body: object,
        defaults: Values,
        settings: SchedulerSettings,
        reused: JobSpec | None = None,
    ) -> JobSpec | None:
        keys = ("jobs", name)
        if reused is not None:
            return self._reused_job(reused)
        valid_name = self._check_job_name(name)
        if not isinstance(body, dict):
            self._error(f"expected a table of job keys, got {_describe(body)}", keys, job=name)
            return None
        errors_before = len(self._errors)
        own = self._convert_table(body, keys, _JOB_CONVERTERS, job=name)
        self._check_job_shape(name, body, own)
        values = {**defaults, **own}
        if "env" in defaults and "env" in own:
            values["env"] = {**defaults["env"], **own["env"]}
        timezone: str = values.get("timezone", settings.timezone)
        schedule = self._job_schedule(name, body, timezone, settings)
        if not valid_name or schedule is None or len(self._errors) > errors_before:
            return None
        spec = self._build_spec(name, values, schedule, timezone)
        self._check_timeout(spec)
        return spec

    def _reused_job(self, spec: JobSpec) -> JobSpec | None:
        """A job from the cache: moved to its current line, its callable looked up again."""
        if spec.callable is not None:
            errors_before = len(self._errors)
            self._check_module(spec.name, spec.callable)
            if len(self._errors) > errors_before:
                return None
        line = self._line(("jobs", spec.name))
        if line != spec.line:
            spec = dataclasses.replace(spec, line=line)
        self._check_timeout(spec)
        return spec

    def _check_timeout(self, spec: JobSpec) -> None:
        if spec.singleton and spec.timeout_ms is None:
            self._warn(
                "singleton job has no timeout: one hung run would block it for good",
                ("jobs", spec.name),
                job=spec.name,
                field="timeout",
            )

    def _check_job_name(self, name: str) -> bool:
        if JOB_NAME.fullmatch(name):
            return True
        hint = f'; did you mean "{name.lower()}"?' if JOB_NAME.fullmatch(name.lower()) else ""
        self._error(
            "job names are 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit"
            + hint,
            ("jobs", name),
            job=name,
        )
        return False

    def _check_job_shape(self, name: str, body: dict[str, object], own: Values) -> None:
        """Cross-key rules: exactly one of command/callable; args only for callables."""
        keys = ("jobs", name)
        if "command" in body and "callable" in body:
            second = max(("command", "callable"), key=lambda k: self._line((*keys, k)) or 0)
            self._error(
                "set either command or callable, not both", (*keys, second), job=name, field=second
            )
        elif "command" not in body and "callable" not in body:
            self._error(
                "missing: every job needs a command or a callable", keys, job=name, field="command"
            )
        if "command" in body:
            for key in _CALLABLE_ARG_KEYS:
                if key in body:
                    self._error(
                        f"{key} applies to callable jobs only; put arguments in the command",
                        (*keys, key),
                        job=name,
                        field=key,
                    )
        reference = own.get("callable")
        if isinstance(reference, str):
            self._check_module(name, reference)

    def _check_module(self, name: str, reference: str) -> None:
        if self._module_exists is None:
            return
        module = reference.partition(":")[0]
        if not self._module_exists(module, self._base_dir):
            self._error(
                f'module "{module}" not found in the registry\'s folder or on sys.path',
                ("jobs", name, "callable"),
                job=name,
                field="callable",
            )

    def _job_schedule(
        self, name: str, body: dict[str, object], timezone: str, settings: SchedulerSettings
    ) -> Schedule | None:
        keys = ("jobs", name, "schedule")
        if "schedule" not in body:
            self._error(
                'missing: every job needs a schedule (cron, macro, "every 30s" or milliseconds)',
                keys,
                job=name,
                field="schedule",
            )
            return None
        value = body["schedule"]
        if not _is_int(value) and not isinstance(value, str):
            return None  # the converter reported the type
        if not _zone_exists(timezone):
            return None  # the bad zone is reported where it was written
        known = self._schedules.get((value, timezone))
        if known is not None:
            return known  # schedules are immutable values: one per value and zone
        try:
            schedule = parse_schedule(value, timezone=timezone)
        except ScheduleError as exc:
            reason = exc.reason
        except ConfigError as exc:  # any other message-only error from the schedule parser
            reason = "; ".join(issue.message for issue in exc.issues)
        else:
            self._schedules[(value, timezone)] = schedule
            return schedule
        self._error(reason, keys, job=name, field="schedule")
        return None

    def _build_spec(self, name: str, values: Values, schedule: Schedule, timezone: str) -> JobSpec:
        timeout = values.get("timeout", 0)
        return JobSpec(
            name=name,
            schedule=schedule,
            description=values.get("description", ""),
            command=values.get("command"),
            callable=values.get("callable"),
            args=values.get("args", ()),
            kwargs=values.get("kwargs", {}),
            timeout_ms=timeout or None,
            kill_grace_ms=values.get("kill_grace", DEFAULT_KILL_GRACE_MS),
            retries=values.get("retries", 0),
            retry_delay_ms=values.get("retry_delay", DEFAULT_RETRY_DELAY_MS),
            run_on_startup=values.get("run_on_startup", False),
            singleton=values.get("singleton", True),
            enabled=values.get("enabled", True),
            timezone=timezone,
            env=values.get("env", {}),
            cwd=values.get("cwd", self._base_dir),
            output_limit=values.get("output_limit", DEFAULT_OUTPUT_LIMIT),
            line=self._line(("jobs", name)),
        )

    # -- key by key

    def _convert_table(
        self,
        table: Mapping[str, object],
        keys: KeyPath,
        converters: Mapping[str, _Converter],
        *,
        job: str | None = None,
        field_prefix: str = "",
    ) -> Values:
        """Convert every known key of ``table``; report unknown keys and bad values."""
        values: Values = {}
        for key, raw in table.items():
            field = field_prefix + key
            converter = converters.get(key)
            if converter is None:
                hint = _did_you_mean(key, converters)
                self._error(f"unknown key{hint}", (*keys, key), job=job, field=field)
                continue
            try:
                values[key] = converter(raw, self._base_dir)
            except _Invalid as exc:
                self._error(str(exc), (*keys, key), job=job, field=field)
            except _InvalidItem as exc:
                self._error(str(exc), (*keys, key, exc.key), job=job, field=f"{field}.{exc.key}")
        return values


# --- value converters ----------------------------------------------------------
# Each takes the TOML value and the registry's folder and returns the converted
# value or raises _Invalid (or _InvalidItem for one entry of a table).

_Converter = Callable[[object, str], object]


class _InvalidItem(CronhubError):
    """One entry of a table value (``env``, ``kwargs``) is invalid."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def _string(value: object, _base: str = "") -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _nonempty_string(value: object, _base: str = "") -> str:
    text = _string(value)
    if not text.strip():
        raise _Invalid("must not be empty")
    if "\0" in text:
        raise _Invalid("must not contain a NUL character")
    return text


def _boolean(value: object, _base: str = "") -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _integer(low: int, high: int) -> _Converter:
    def convert(value: object, _base: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected a whole number, got {_describe(value)}")
        if not low <= value <= high:
            raise _Invalid(f"must be between {low} and {high}, got {value}")
        return value

    return convert


def _duration(value: object, _base: str = "") -> int:
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise _Invalid("; ".join(issue.message for issue in exc.issues)) from exc


def _size(value: object, _base: str = "") -> int:
    try:
        size = parse_size(value)
    except ConfigError as exc:
        raise _Invalid("; ".join(issue.message for issue in exc.issues)) from exc
    if size > MAX_OUTPUT_LIMIT:
        raise _Invalid(f"must be at most {MAX_OUTPUT_LIMIT // (1024 * 1024)}MiB, got {value!r}")
    return size


def _timezone(value: object, _base: str = "") -> str:
    name = _string(value)
    if not _zone_exists(name):
        raise _Invalid(f'unknown time zone "{name}"{_zone_hint(name)}')
    return name


def _command(value: object, _base: str = "") -> str | tuple[str, ...]:
    if isinstance(value, str):
        return _nonempty_string(value)
    if not isinstance(value, list):
        raise _Invalid(f"expected a shell string or a list of strings, got {_describe(value)}")
    if not value:
        raise _Invalid("the argv list must not be empty")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(f"argv item {index} must be a string, got {_describe(item)}")
        if "\0" in item:
            raise _Invalid(f"argv item {index} must not contain a NUL character")
    if not value[0].strip():
        raise _Invalid("the program (argv item 0) must not be empty")
    return tuple(value)


def _callable_reference(value: object, _base: str = "") -> str:
    text = _string(value)
    module, colon, function = text.partition(":")
    if not colon or not _is_dotted_name(module) or not _is_identifier(function):
        raise _Invalid(f'expected "package.module:function", got {text!r}')
    return text


def _args(value: object, _base: str = "") -> tuple[object, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of arguments, got {_describe(value)}")
    _check_plain_data(value)
    return tuple(value)


def _kwargs(value: object, _base: str = "") -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table of keyword arguments, got {_describe(value)}")
    for key, item in value.items():
        if not key.isidentifier():
            raise _InvalidItem(key, "keyword argument names must be Python identifiers")
        try:
            _check_plain_data(item)
        except _Invalid as exc:
            raise _InvalidItem(key, str(exc)) from exc
    return dict(value)


def _env(value: object, _base: str = "") -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table of environment variables, got {_describe(value)}")
    for key, item in value.items():
        if not key or "=" in key or "\0" in key:
            raise _InvalidItem(key, "variable names must be non-empty, without = or NUL")
        if not isinstance(item, str):
            raise _InvalidItem(key, f"expected a string value, got {_describe(item)}")
        if "\0" in item:
            raise _InvalidItem(key, "must not contain a NUL character")
    return dict(value)


def _path(value: object, base: str) -> str:
    text = _nonempty_string(value)
    return os.path.normpath(os.path.join(base, text))


def _location(value: object, _base: str = "") -> str:
    """``database``/``socket``: kept as written; resolved once the defaults are known."""
    return _nonempty_string(value)


def _group(value: object, _base: str = "") -> str:
    name = _string(value)
    if not _GROUP_NAME.fullmatch(name):
        raise _Invalid(f"expected a group name or numeric gid, got {name!r}")
    return name


_SCHEDULER_CONVERTERS: dict[str, _Converter] = {
    "timezone": _timezone,
    "max_concurrent": _integer(1, MAX_CONCURRENT),
    "history_retention_days": _integer(1, MAX_RETENTION_DAYS),
    "database": _location,
    "socket": _location,
    "shutdown_grace": _duration,
    "control_group": _group,
    "enabled": _boolean,
}

_JOB_CONVERTERS: dict[str, _Converter] = {
    "description": _string,
    "schedule": lambda value, _base: _schedule_type(value),
    "command": _command,
    "callable": _callable_reference,
    "args": _args,
    "kwargs": _kwargs,
    "timeout": _duration,  # 0 = no timeout
    "kill_grace": _duration,
    "retries": _integer(0, MAX_RETRIES),
    "retry_delay": _duration,
    "run_on_startup": _boolean,
    "singleton": _boolean,
    "enabled": _boolean,
    "timezone": _timezone,
    "env": _env,
    "cwd": _path,
    "output_limit": _size,
}
assert set(_JOB_CONVERTERS) == set(_JOB_KEYS)
assert set(_SCHEDULER_CONVERTERS) == set(_SCHEDULER_KEYS)


def _schedule_type(value: object) -> object:
    """Only the type; the schedule itself is parsed once the job's zone is known."""
    if not _is_int(value) and not isinstance(value, str):
        expected = 'a cron expression, macro, "every 30s" or milliseconds'
        raise _Invalid(f"expected {expected}, got {_describe(value)}")
    return value


def _env_integer(low: int, high: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        if not _DIGITS.fullmatch(raw.strip()):
            raise _Invalid("expected a whole number")
        return _integer(low, high)(int(raw.strip()))

    return convert


def _env_boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise _Invalid("expected true/false, yes/no, on/off or 1/0")


_ENV_OVERRIDES: tuple[tuple[str, str, Callable[[str], object]], ...] = (
    ("CRONHUB_TIMEZONE", "timezone", _timezone),
    ("CRONHUB_MAX_CONCURRENT", "max_concurrent", _env_integer(1, MAX_CONCURRENT)),
    (
        "CRONHUB_HISTORY_RETENTION_DAYS",
        "history_retention_days",
        _env_integer(1, MAX_RETENTION_DAYS),
    ),
    ("CRONHUB_ENABLED", "enabled", _env_boolean),
)


# --- helpers -------------------------------------------------------------------


def _is_int(value: object) -> bool:
    """TOML integers only: ``true`` is a boolean, not 1."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _is_dotted_name(name: str) -> bool:
    return all(_is_identifier(part) for part in name.split("."))


def _check_plain_data(value: object) -> None:
    """Callable arguments travel to the child as JSON: no dates or times."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        raise _Invalid("dates and times cannot be passed to a callable; use a string")
    if isinstance(value, list):
        for item in value:
            _check_plain_data(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_plain_data(item)


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _zone_hint(name: str) -> str:
    return _did_you_mean(name, available_timezones())


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _describe(value: object) -> str:
    """A TOML-flavoured description of ``value`` for messages."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the float {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'the string "{shown}"'
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return f"the date/time {value.isoformat()}"
    return type(value).__name__


def _issue_order(issue: ConfigIssue) -> tuple[bool, int]:
    """File order; issues from the environment (no line) last."""
    return (issue.line is None, issue.line or 0)


def _schedule_kind(schedule: Schedule) -> Literal["cron", "interval", "reboot"]:
    if isinstance(schedule, CronSchedule):
        return "cron"
    if isinstance(schedule, IntervalSchedule):
        return "interval"
    assert isinstance(schedule, RebootSchedule)
    return "reboot"


def _jsonable(value: object) -> object:
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return value


def decode_registry(raw: bytes, path: str) -> str:
    """UTF-8 text of the registry (a leading byte-order mark is dropped)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        issue = ConfigIssue("the registry is not valid UTF-8", path=path, line=line, col=col)
        raise ConfigError([issue]) from exc
    return text.removeprefix("\ufeff")


def _syntax_issue(exc: tomllib.TOMLDecodeError, text: str, path: str) -> ConfigIssue:
    """Locate a TOML syntax error: ``lineno``/``colno`` where tomllib has them (3.14+),
    else the "(at line L, column C)" suffix of the message."""
    message = str(exc.args[0]) if exc.args else str(exc)
    line: int | None = getattr(exc, "lineno", None)
    col: int | None = getattr(exc, "colno", None)
    match = _TOML_POSITION.search(message)
    if match is not None:
        message = message[: match.start()]
        if line is None and match.group(1) is not None:
            line, col = int(match.group(1)), int(match.group(2))
    if line is None:  # "at end of document"
        lines = text.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    return ConfigIssue(f"TOML syntax error: {message}", path=path, line=line, col=col)


# --- sections ------------------------------------------------------------------------
# A registry is split at the lines that open with "[" into sections, each parsed
# by tomllib on its own (and remembered by its text in a RegistryCache).  The
# split is checked, not trusted: a "[" line inside a multi-line string or array
# leaves the section before it unterminated, which tomllib refuses, and anything
# but [NAME] and [jobs.NAME] headers, each once, is left to a whole-text parse.

_SECTION_START = re.compile(r"^[ \t]*\[", re.MULTILINE)
_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_HEADER = re.compile(
    rf"[ \t]*\[[ \t]*{_KEY}(?P<dotted>[ \t]*\.[ \t]*{_KEY})?[ \t]*\][ \t]*(?:#[^\n]*)?(?:\r?\n|$)"
)


class _Cached(NamedTuple):
    data: dict[str, Any]
    spec: JobSpec | None


class _Section(NamedTuple):
    """One section: its text, what tomllib made of it, where it starts."""

    text: str
    data: dict[str, Any]
    line: int
    table: str | None  # [table]
    job: str | None  # [jobs.NAME]


class _Document(NamedTuple):
    data: dict[str, Any]
    lines: _LineIndex
    sections: tuple[_Section, ...]

    @classmethod
    def split(cls, text: str, known: Mapping[str, _Cached]) -> _Document | None:
        """The document parsed section by section, or None to parse it whole.

        ``known`` maps section texts already parsed to their data.
        """
        starts = [match.start() for match in _SECTION_START.finditer(text)]
        sections: list[_Section] = []
        line = 1
        for start, end in zip([0, *starts], [*starts, len(text)], strict=True):
            chunk = text[start:end]
            section = _parse_section(chunk, line, known)
            if section is None:
                return None
            sections.append(section)
            line += chunk.count("\n")
        data = _merge(sections)
        if data is None:
            return None
        return cls(data, _SectionLines(sections), tuple(sections))


def _parse_section(chunk: str, line: int, known: Mapping[str, _Cached]) -> _Section | None:
    cached = known.get(chunk)
    if cached is not None:
        data = cached.data
    else:
        try:
            data = tomllib.loads(chunk)
        except tomllib.TOMLDecodeError:
            return None
    if not chunk.lstrip(" \t").startswith("["):
        return _Section(chunk, data, line, None, None)
    header = _HEADER.match(chunk)
    if header is None or len(data) != 1:
        return None
    ((table, body),) = data.items()
    if not isinstance(body, dict):
        return None
    if header.group("dotted") is None:
        return _Section(chunk, data, line, table, None)
    if table != "jobs" or len(body) != 1:
        return None
    ((job, job_body),) = body.items()
    if not isinstance(job_body, dict):
        return None
    return _Section(chunk, data, line, None, job)


def _merge(sections: Sequence[_Section]) -> dict[str, Any] | None:
    """The whole document from its sections; None where TOML's rules need tomllib.

    Each table is declared once and each key defined once: a clash is an error
    (or a subtlety) tomllib reports or resolves on the whole text.
    """
    data: dict[str, Any] = {}
    jobs: dict[str, Any] = {}
    jobs_declared = False
    for section in sections:
        if section.job is None and section.table != "jobs":
            if "jobs" in section.data or not data.keys().isdisjoint(section.data):
                return None
            data.update(section.data)
            continue
        if section.table == "jobs":
            if jobs_declared:
                return None
            jobs_declared = True
        added = section.data["jobs"]
        if not jobs.keys().isdisjoint(added):
            return None
        data.setdefault("jobs", jobs)
        jobs.update(added)
    return data


# --- where keys are written --------------------------------------------------------


class _LineIndex(Protocol):
    """Where keys are written: ``line(keys)`` is the line that defines ``keys``,
    or else that of its nearest enclosing table (None when unknown)."""

    def line(self, keys: KeyPath) -> int | None: ...


class _ScannedLines:
    """Lines of a whole text, scanned on first use."""

    def __init__(self, text: str, first_line: int = 1) -> None:
        self._text = text
        self._offset = first_line - 1
        self._found: dict[KeyPath, int] | None = None

    def line(self, keys: KeyPath) -> int | None:
        if self._found is None:
            self._found = _KeyLines(self._text).scan()
        for end in range(len(keys), 0, -1):
            line = self._found.get(keys[:end])
            if line is not None:
                return line + self._offset
        return None


class _SectionLines:
    """Lines of a split document: headers known, a section scanned when asked about."""

    def __init__(self, sections: Sequence[_Section]) -> None:
        self._owners: dict[KeyPath, _ScannedLines] = {}
        self._headers: dict[KeyPath, int] = {}
        root: _ScannedLines | None = None
        for section in sections:
            scanned = _ScannedLines(section.text, section.line)
            if section.job is not None:
                path: KeyPath = ("jobs", section.job)
            elif section.table is not None:
                path = (section.table,)
            else:
                root = scanned
                continue
            self._owners[path] = scanned
            self._headers.setdefault(path[:1], section.line)
            self._headers.setdefault(path, section.line)
        self._root = root

    def line(self, keys: KeyPath) -> int | None:
        header = self._headers.get(keys)
        if header is not None:
            return header  # the common question (a job's own line), answered without a scan
        for end in range(len(keys), 0, -1):
            owner = self._owners.get(keys[:end])
            found = None if owner is None else owner.line(keys)
            if found is None:
                found = self._headers.get(keys[:end])
            if found is not None:
                return found
        return None if self._root is None else self._root.line(keys)


class _ScanStopped(CronhubError):
    """The scanner met something it does not understand; it keeps what it found."""


class _KeyLines:
    """Map every key path of a *valid* TOML document to the line that first defines it.

    tomllib keeps no positions, so this walks the text once: table headers,
    dotted keys, quoted keys, inline tables and multi-line strings and arrays.
    A path seen more than once (array-of-tables entries) keeps its first line.
    """

    _BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
    _SCALAR = re.compile(r"[^,\]}#\r\n]+")

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line_starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self._found: dict[KeyPath, int] = {}

    def scan(self) -> dict[KeyPath, int]:
        try:
            self._document()
        except _ScanStopped:
            # Only reachable on text tomllib accepted but this scanner does not;
            # lookups then fall back to the nearest enclosing table found so far.
            return self._found
        return self._found

    def _document(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip(newlines=True)
            if self._pos >= len(self._text):
                return
            start = self._pos
            if self._text.startswith("[[", start):
                self._pos += 2
                table = self._header("]]", start)
            elif self._text[start] == "[":
                self._pos += 1
                table = self._header("]", start)
            else:
                self._keyval(table)

    def _header(self, closing: str, start: int) -> KeyPath:
        self._skip()
        path = self._key()
        self._skip()
        self._expect(closing)
        self._record(path, start)
        return path

    def _keyval(self, table: KeyPath) -> None:
        start = self._pos
        key = self._key()
        self._skip()
        self._expect("=")
        self._skip()
        self._record(table + key, start)
        self._value(table + key)

    def _record(self, path: KeyPath, pos: int) -> None:
        line = bisect.bisect_right(self._line_starts, pos)
        for end in range(1, len(path) + 1):
            self._found.setdefault(path[:end], line)

    def _key(self) -> KeyPath:
        parts = [self._simple_key()]
        while True:
            mark = self._pos
            self._skip()
            if self._peek() != ".":
                self._pos = mark
                return tuple(parts)
            self._pos += 1
            self._skip()
            parts.append(self._simple_key())

    def _simple_key(self) -> str:
        char = self._peek()
        if char == '"':
            raw = self._basic_string()
            return str(tomllib.loads(f"k = {raw}")["k"])
        if char == "'":
            return self._literal_string()[1:-1]
        match = self._BARE_KEY.match(self._text, self._pos)
        if match is None:
            raise _ScanStopped(self._pos)
        self._pos = match.end()
        return match.group()

    def _value(self, path: KeyPath) -> None:
        text, pos = self._text, self._pos
        if text.startswith('"""', pos) or text.startswith("'''", pos):
            self._multiline_string(text[pos : pos + 3])
        elif text.startswith('"', pos):
            self._basic_string()
        elif text.startswith("'", pos):
            self._literal_string()
        elif text.startswith("[", pos):
            self._sequence(path, "]", self._value)
        elif text.startswith("{", pos):
            self._sequence(path, "}", self._keyval)
        else:
            match = self._SCALAR.match(text, pos)
            if match is None:
                raise _ScanStopped(pos)
            self._pos = match.end()

    def _sequence(self, path: KeyPath, closing: str, item: Callable[[KeyPath], None]) -> None:
        """An array (items are values) or an inline table (items are key/values)."""
        self._pos += 1
        while True:
            self._skip(newlines=True)
            if self._peek() == closing:
                self._pos += 1
                return
            item(path)
            self._skip(newlines=True)
            if self._peek() == ",":
                self._pos += 1
            elif self._peek() != closing:
                raise _ScanStopped(self._pos)

    def _basic_string(self) -> str:
        start = index = self._pos
        index += 1
        while index < len(self._text):
            char = self._text[index]
            if char == "\\":
                index += 2
            elif char == '"':
                self._pos = index + 1
                return self._text[start : self._pos]
            elif char == "\n":
                break
            else:
                index += 1
        raise _ScanStopped(start)

    def _literal_string(self) -> str:
        start = self._pos
        end = self._text.find("'", start + 1)
        if end < 0:
            raise _ScanStopped(start)
        self._pos = end + 1
        return self._text[start : self._pos]

    def _multiline_string(self, delimiter: str) -> None:
        index = self._pos + 3
        while index < len(self._text):
            if delimiter == '"""' and self._text[index] == "\\":
                index += 2
            elif self._text.startswith(delimiter, index):
                index += 3
                # Up to two quotes right before the closing delimiter belong to the string.
                extra = 0
                while extra < 2 and self._text.startswith(delimiter[0], index):
                    index += 1
                    extra += 1
                self._pos = index
                return
            else:
                index += 1
        raise _ScanStopped(self._pos)

    def _skip(self, *, newlines: bool = False) -> None:
        """Skip spaces and comments (and line breaks when ``newlines``)."""
        text = self._text
        while self._pos < len(text):
            char = text[self._pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self._pos += 1
            elif char == "#":
                end = text.find("\n", self._pos)
                self._pos = len(text) if end < 0 else end
            else:
                return

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _expect(self, token: str) -> None:
        if not self._text.startswith(token, self._pos):
            raise _ScanStopped(self._pos)
        self._pos += len(token)
