"""``cronhub enable JOB`` and ``cronhub disable JOB``: persisted overrides."""

from pathlib import Path
from typing import Annotated

import typer

from cronhub.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    Daemon,
    JsonOption,
    SocketOption,
    print_json,
    stdout_console,
)

JobArgument = Annotated[str, typer.Argument(help="The job's name.", show_default=False)]


def enable(
    job: JobArgument,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Enable a job, whatever jobs.toml says.

    The override is kept across restarts and reloads.
    """
    _set(job, "enable", config, socket, json_output)


def disable(
    job: JobArgument,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Disable a job, whatever jobs.toml says.

    The override is kept across restarts and reloads.
    A run in progress is not stopped; manual runs still work.
    """
    _set(job, "disable", config, socket, json_output)


def _set(job: str, op: str, config: Path, socket: str | None, json_output: bool) -> None:
    result = Daemon.from_options(config, socket).call(op, job=job)
    if json_output:
        print_json(result)
        return
    from rich.text import Text

    enabled = bool(result.get("enabled"))
    message = Text.assemble("job ", (f'"{result.get("job", job)}"', "bold"))
    message.append(" enabled" if enabled else " disabled")
    note = "override kept across restarts" + ("" if enabled else "; a run in progress goes on")
    message.append(f" ({note})", style="dim")
    stdout_console().print(message)
