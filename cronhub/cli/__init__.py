"""The ``cronhub`` command line: the Typer app and :func:`main`.

Errors are reported in one place, :func:`report_error`: every
:class:`~cronhub.errors.CronhubError` a command raises is printed as one
plain ``cronhub: …`` message on stderr (no traceback) and mapped to an exit
status of :class:`~cronhub.cli.common.ExitCode`.

Start-up is kept short: :func:`main` runs a command line that names a
command with that command alone (:func:`command_app`), the command modules
import typer at the top and everything heavier
inside the function that needs it (so ``cronhub status`` never loads the ORM,
croniter or pydantic), and :mod:`cronhub.cli.coerce` keeps Typer's pydantic
adapters out of argument parsing.  The command modules (and this one) do
without ``from __future__ import annotations``: Typer reads the signature of
each command it builds on every start, and would compile and evaluate every
annotation string (names imported only for type checking are quoted instead).
"""

import importlib
import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cronhub import __version__
from cronhub.cli.coerce import LightCommand, lighten
from cronhub.cli.common import ExitCode
from cronhub.errors import ConfigError, CronhubError, DaemonNotRunning, ProtocolError

__all__ = ["COMMANDS", "ExitCode", "app", "build_app", "command_app", "main", "report_error"]

_EPILOG = (
    "Exit status: 0 ok; 1 failure (failed run, unknown job, busy job, invalid registry"
    " for validate); 2 usage error or invalid registry; 3 no daemon is running;"
    " 124 timed out (run --wait)."
)


def report_error(exc: CronhubError) -> int:
    """Print ``exc`` for a person on stderr and return the exit status it maps to.

    Plain text on purpose: no markup to escape, no wrapping of long socket
    paths, and no rich import on the way out.
    """
    code, lines = _describe(exc)
    sys.stderr.write("cronhub: " + "\n".join(lines) + "\n")
    return int(code)


def _describe(exc: CronhubError) -> tuple[ExitCode, list[str]]:
    if isinstance(exc, DaemonNotRunning):
        return ExitCode.NO_DAEMON, [str(exc)]
    if isinstance(exc, ProtocolError):
        return _describe_remote(exc)
    if isinstance(exc, ConfigError):
        issues = [str(issue) for issue in exc.issues] or [str(exc)]
        if len(issues) == 1:
            return ExitCode.CONFIG, issues
        return ExitCode.CONFIG, [f"the registry has {len(issues)} problems:", *issues]
    return ExitCode.FAILURE, [str(exc)]


def _describe_remote(exc: ProtocolError) -> tuple[ExitCode, list[str]]:
    message = str(exc)
    details: Any = exc.details if isinstance(exc.details, dict) else {}
    if exc.code == "not_found":
        candidates = [str(name) for name in details.get("candidates") or []]
        if candidates and "did you mean" not in message:
            message += " — did you mean " + ", ".join(f'"{c}"' for c in candidates) + "?"
        return ExitCode.FAILURE, [message]
    if exc.code == "config_invalid":
        issues = [str(issue) for issue in details.get("issues") or []]
        return ExitCode.CONFIG, [message, *issues]
    if exc.code == "timeout":
        return ExitCode.TIMEOUT, [message]
    return ExitCode.FAILURE, [message]


class CronhubCommand(LightCommand):
    """A command that turns a ``CronhubError`` into a message and exit status.

    Doing it here rather than around ``app()`` means ``typer.testing.CliRunner``
    and ``python -m cronhub.cli`` see exactly what the console script does.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CronhubError as exc:
            raise typer.Exit(report_error(exc)) from None


class CronhubGroup(TyperGroup):
    """The root command group; its own options skip pydantic, as its commands' do."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        lighten(self.get_params(ctx))  # completion and help options are added late
        return super().parse_args(ctx, args)


COMMANDS: dict[str, tuple[str, str]] = {
    "start": ("start", "start"),
    "status": ("status", "status"),
    "run": ("run", "run"),
    "enable": ("jobs", "enable"),
    "disable": ("jobs", "disable"),
    "history": ("history", "history"),
    "logs": ("logs", "logs"),
    "reload": ("control_cmds", "reload"),
    "ping": ("control_cmds", "ping"),
    "stop": ("control_cmds", "stop"),
    "shutdown": ("control_cmds", "stop"),
    "validate": ("validate", "validate"),
    "next": ("next", "next_fires"),
}
"""Every command: its module in ``cronhub.cli`` and its function, in help order."""
_HIDDEN = frozenset({"shutdown"})  # an alias of "stop", named like the protocol op
_SETTINGS: dict[str, Any] = {
    "rich_markup_mode": None,
    "pretty_exceptions_show_locals": False,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}
"""What every Typer app here shares."""


def build_app(names: Iterable[str] = COMMANDS) -> typer.Typer:
    """The Typer app with the commands ``names`` (all of them by default)."""
    application = typer.Typer(
        name="cronhub",
        cls=CronhubGroup,
        help="cronhub: a job-scheduler daemon and its control CLI.",
        epilog=_EPILOG,
        no_args_is_help=True,
        add_completion=True,
        **_SETTINGS,
    )
    application.callback()(_root)
    for name in names:
        application.command(name, cls=CronhubCommand, hidden=name in _HIDDEN)(_function(name))
    return application


def command_app(name: str) -> typer.Typer:
    """An app of the command ``name`` alone, to run as the program ``cronhub NAME``.

    :func:`main` runs one when the command line names a command: the root
    group's options go before that name, so the group has nothing to add,
    and Typer builds one command faster than a group of commands.  Help,
    usage errors and exit statuses read as they do through the group.
    """
    application = typer.Typer(add_completion=False, **_SETTINGS)
    application.command(name, cls=CronhubCommand)(_function(name))
    return application


def _function(name: str) -> Any:
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(f"cronhub.cli.{module}"), function)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"cronhub {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """cronhub: a job-scheduler daemon and its control CLI."""


def main(argv: Sequence[str] | None = None) -> None:
    """The console script ``cronhub``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        command_app(args[0])(args=args[1:], prog_name=f"cronhub {args[0]}")
    else:
        build_app()(args=args, prog_name="cronhub")


def __getattr__(name: str) -> Any:
    # ``cronhub.cli.app``, the whole app, is built on first use (tests, completion).
    if name == "app":
        application = build_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
