"""What every command shares: options, socket resolution, the daemon client, output.

Kept light on purpose: this module imports typer and the standard library
only; rich consoles, the control client, the protocol and tomllib are
imported when first used, so each command pays only for what it uses.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from cronhub.client import PendingReply

DEFAULT_CONFIG = "jobs.toml"
SOCKET_NAME = "cronhub.sock"
DEFAULT_TIMEOUT_S = 10.0
"""How long a command waits for the daemon's reply (``run --wait`` extends it)."""


class ExitCode(IntEnum):
    """Exit statuses of the ``cronhub`` command (listed in ``cronhub --help``)."""

    OK = 0
    FAILURE = 1
    """A run failed, an unknown job, a busy singleton, ``validate`` found problems,
    or any other error."""
    CONFIG = 2
    """Bad command-line usage, or an invalid registry for a command other than ``validate``."""
    NO_DAEMON = 3
    """No daemon answers on the control socket."""
    TIMEOUT = 124
    """``run --wait``: the run timed out, or the wait did (as timeout(1) does)."""


# --- options -------------------------------------------------------------------

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="CRONHUB_CONFIG",
        help="The registry file.",
        dir_okay=False,
    ),
]
SocketOption = Annotated[
    str | None,
    typer.Option(
        "--socket",
        envvar="CRONHUB_SOCKET",
        help="The daemon's control socket [default: from the registry's [scheduler].socket].",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document (times in ISO-8601) instead of tables."),
]


# --- socket resolution ---------------------------------------------------------


def scheduler_table(config: Path) -> Mapping[str, Any]:
    """The ``[scheduler]`` table of the registry, read with tomllib only.

    Cheap on purpose (no validation, no croniter): an unreadable or broken
    file gives ``{}`` and the defaults apply, as they would for the daemon.
    Only the text up to the end of the ``[scheduler]`` table is parsed when
    that is enough (see :func:`_scheduler_prefix`), so a registry of ten
    thousand jobs costs no more than one of ten.
    """
    try:
        with open(config, "rb") as file:
            text = file.read().decode("utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError):
        return {}
    prefix = _scheduler_prefix(text)
    if prefix is not None:
        table = _parsed_scheduler(prefix)
        if table is not None:
            return table
    return _parsed_scheduler(text) or {}


def _parsed_scheduler(text: str) -> dict[str, Any] | None:
    import tomllib  # here: --socket and $CRONHUB_SOCKET need no registry

    try:
        table = tomllib.loads(text).get("scheduler")
    except tomllib.TOMLDecodeError:
        return None
    return table if isinstance(table, dict) else None


_SCHEDULER_HEADER = re.compile(r"^[ \t]*\[[ \t]*scheduler[ \t]*\][ \t]*(?:#.*)?$", re.MULTILINE)
_ANY_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)


def _scheduler_prefix(text: str) -> str | None:
    """The text up to the line after the ``[scheduler]`` table, if there is such a header.

    When this prefix parses and holds a ``scheduler`` table, it is the
    document's: the prefix then ends at a real table header (a line opening
    with ``[`` inside a multi-line string or array would leave the prefix
    unterminated, so it would not parse), and nothing after a table header
    can add to ``[scheduler]``.  Otherwise the caller parses the whole text.
    """
    header = _SCHEDULER_HEADER.search(text)
    following = None if header is None else _ANY_HEADER.search(text, header.end())
    return None if following is None else text[: following.start()]


def resolve_socket(
    config: Path, socket: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The control socket path, as the daemon started on ``config`` chooses it.

    In order: ``socket`` (``--socket``), ``$CRONHUB_SOCKET``, the registry's
    ``[scheduler].socket`` (relative to its folder), ``cronhub.sock`` in the
    first ``$RUNTIME_DIRECTORY`` (systemd), else ``cronhub.sock`` next to the
    registry.  Mirrors :mod:`cronhub.registry` without importing it (it would
    pull croniter into every command).
    """
    environ = os.environ if environ is None else environ
    explicit = socket or environ.get("CRONHUB_SOCKET")
    if explicit:
        return os.path.abspath(explicit)
    base = os.path.dirname(os.path.abspath(config))
    configured = scheduler_table(config).get("socket")
    if isinstance(configured, str) and configured:
        return os.path.normpath(os.path.join(base, configured))
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    folder = os.path.normpath(os.path.join(base, runtime)) if runtime else base
    return os.path.join(folder, SOCKET_NAME)


# --- the daemon ------------------------------------------------------------------


class Daemon(NamedTuple):
    """The daemon a command talks to, found from ``--config`` and ``--socket``."""

    socket_path: str

    @classmethod
    def from_options(cls, config: Path, socket: str | None) -> Daemon:
        return cls(resolve_socket(config, socket))

    def call(
        self, op: str, /, *, reply_timeout: float | None = DEFAULT_TIMEOUT_S, **params: Any
    ) -> Any:
        """Send one request and return its ``result``; ``None`` params are left out.

        ``reply_timeout`` is how long to wait for the reply (None: no limit).
        Raises ``DaemonNotRunning`` or ``ProtocolError`` (the daemon's error
        reply); :func:`cronhub.cli.report_error` turns them into exit codes.
        """
        return self.send(op, reply_timeout=reply_timeout, **params).result()

    def send(
        self, op: str, /, *, reply_timeout: float | None = DEFAULT_TIMEOUT_S, **params: Any
    ) -> PendingReply:
        """Send one request now and read its reply later, as :meth:`call` would.

        A command that has work to do before it can use the reply (loading its
        renderer) does it while the daemon prepares the answer.
        """
        from cronhub.client import ControlClient

        client = ControlClient(self.socket_path, timeout=reply_timeout)
        return client.send(op, **{key: value for key, value in params.items() if value is not None})


# --- output ----------------------------------------------------------------------


PIPE_WIDTH = 250
"""Table width when stdout is not a terminal (and $COLUMNS is unset): no column is hidden."""


def stdout_console() -> Console:
    """A console for tables on stdout (no auto-highlighting, no emoji codes).

    On a terminal tables fit its width; into a pipe or a file they keep every
    column, as ``grep`` and ``less -S`` prefer.
    """
    from rich.console import Console

    console = Console(highlight=False, emoji=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def stderr_console() -> Console:
    """A console for messages on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False)


def print_json(document: object) -> None:
    """Print ``document`` as one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


def now() -> datetime:
    """The current time, aware UTC (the CLI is the shell: it may read the clock)."""
    return datetime.now(UTC)


def fail(message: str, code: int = ExitCode.FAILURE) -> typer.Exit:
    """Print ``cronhub: message`` on stderr and return the ``Exit`` to raise."""
    sys.stderr.write(f"cronhub: {message}\n")
    return typer.Exit(int(code))
