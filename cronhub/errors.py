"""The single exception hierarchy of cronhub.

Every exception cronhub raises derives from :class:`CronhubError`.  Messages are
built in ``__init__`` from structured fields, so callers can both print an
exception and inspect it.  This module imports nothing from cronhub.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple


class CronhubError(Exception):
    """Root of every cronhub exception."""


class ConfigIssue(NamedTuple):
    """One problem found in a registry, located as precisely as the source allows.

    Printed as ``FILE:LINE[:COL]: job "NAME": field: message``; parts that are
    unknown are left out.  (A named tuple: every CLI command imports this module,
    and a dataclass costs more to define than the rest of it.)
    """

    message: str
    path: str | None = None
    line: int | None = None
    col: int | None = None
    job: str | None = None
    field: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        parts: list[str] = []
        if self.path is not None:
            location = self.path
            if self.line is not None:
                location += f":{self.line}"
                if self.col is not None:
                    location += f":{self.col}"
            parts.append(location)
        if self.job is not None:
            parts.append(f'job "{self.job}"')
        if self.field is not None:
            parts.append(self.field)
        if self.severity == "warning":
            parts.append("warning")
        parts.append(self.message)
        return ": ".join(parts)


class ConfigError(CronhubError):
    """A registry (or a value in it) is invalid; carries every issue found."""

    def __init__(self, issues: Iterable[ConfigIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [ConfigIssue(issues)]
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ScheduleError(ConfigError):
    """A schedule string (cron expression, macro or interval) is invalid."""

    def __init__(self, message: str) -> None:
        self.reason = message
        super().__init__([ConfigIssue(message, field="schedule")])


class ControlError(CronhubError):
    """Talking to the daemon over its control socket failed."""


class DaemonNotRunning(ControlError):
    """No daemon answers on the control socket."""

    def __init__(self, socket_path: str, reason: str | None = None) -> None:
        self.socket_path = socket_path
        self.reason = reason
        super().__init__(f'no daemon is listening on {socket_path} — start it with "cronhub start"')


class ProtocolError(ControlError):
    """A request or reply broke the control protocol, or the daemon refused it.

    ``code`` is one of the error codes in :mod:`cronhub.protocol`.
    """

    def __init__(self, code: str, message: str, *, details: object = None) -> None:
        self.code = code
        self.details = details
        super().__init__(message)


class JobNotFound(CronhubError, LookupError):
    """No job of that name exists; ``candidates`` holds the closest names."""

    @classmethod
    def among(cls, name: str, names: Iterable[str], n: int = 3) -> JobNotFound:
        """The error for ``name``, suggesting the ``n`` names most like it."""
        import difflib

        pool = list(names)
        close = difflib.get_close_matches(name, pool, n=n)
        if not close:

            def likeness(candidate: str) -> float:
                return difflib.SequenceMatcher(None, name, candidate).ratio()

            close = sorted(pool, key=likeness, reverse=True)[:n]
        return cls(name, close)

    def __init__(self, name: str, candidates: Sequence[str] = ()) -> None:
        self.name = name
        self.candidates = tuple(candidates)
        message = f'no job named "{name}"'
        if self.candidates:
            message += " — did you mean " + ", ".join(f'"{c}"' for c in self.candidates) + "?"
        super().__init__(message)


class JobBusy(CronhubError):
    """A singleton job already has a run in progress."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f'job "{name}" is already running (singleton)')


class StoreError(CronhubError):
    """The history database cannot be opened or used."""


class DaemonAlreadyRunning(CronhubError):
    """Another daemon already owns this registry's database."""

    def __init__(self, pid: int | None, lock_path: str) -> None:
        self.pid = pid
        self.lock_path = lock_path
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"cronhub is already running ({who}, lock {lock_path})")


class ShuttingDown(CronhubError):
    """The daemon is shutting down and starts no more runs."""

    def __init__(self) -> None:
        super().__init__("the daemon is shutting down")


class StoreUnavailable(StoreError):
    """The database is locked, read-only, full or failing; the write can be retried."""
