"""``cronhub history [JOB]``: runs, newest first."""

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cronhub.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    Daemon,
    JsonOption,
    SocketOption,
    now,
    print_json,
    stdout_console,
)
from cronhub.model import RunStatus


def history(
    job: Annotated[str | None, typer.Argument(help="Only this job's runs.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="How many runs to show.")
    ] = 20,
    status: Annotated[
        RunStatus | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Only runs with this status."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help='Only runs scheduled since: a duration back from now ("1d", "2h30m")'
            " or an ISO-8601 time.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """List runs, newest first.

    Each with trigger, attempt, status, start, duration, exit code and error.

    With --json: a list of runs.
    """
    current = now()
    since_iso = None if since is None else parse_since(since, current).isoformat()
    reply = Daemon.from_options(config, socket).send(
        "history",
        job=job,
        limit=limit,
        status=None if status is None else status.value,
        since=since_iso,
    )
    if json_output:
        print_json(reply.result().get("runs", []))
        return
    from rich.text import Text

    from cronhub import render  # loaded while the daemon prepares its answer

    console = stdout_console()
    runs = reply.result().get("runs", [])
    if not runs:
        console.print(Text("No runs match.", style="dim"))
        return
    table = render.history_table(runs, current, show_job=job is None, width=console.width)
    console.print(table, crop=False)


def parse_since(value: str, current: datetime) -> datetime:
    """``--since``: a duration back from ``current``, or an ISO-8601 time.

    A time without an offset is read in the local zone.  Raises
    ``typer.BadParameter`` for anything else.
    """
    from cronhub.durations import parse_duration
    from cronhub.errors import ConfigError

    try:
        return current - timedelta(milliseconds=parse_duration(value))
    except ConfigError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f'expected a duration like "1d" or "2h", or an ISO-8601 time, got "{value}"',
            param_hint="--since",
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()
