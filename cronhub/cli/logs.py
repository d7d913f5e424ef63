"""``cronhub logs JOB [--run ID]``: the captured output of a run."""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cronhub.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    Daemon,
    JsonOption,
    SocketOption,
    fail,
    now,
    print_json,
    stderr_console,
)

FULL_ID_LENGTH = 32
"""A run id shorter than this is taken as its first or last characters (``history``
shows the last 8)."""
_PREFIX_SEARCH_LIMIT = 1000


def logs(
    job: Annotated[str, typer.Argument(help="The job.", show_default=False)],
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run",
            "-r",
            help="The run id, or its last characters as `history` shows them"
            " [default: the last run].",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print the captured output of a run.

    JOB's last run, or the run given with --run (stdout and stderr as captured).

    The output goes to stdout as it was captured; a line about the run goes to stderr.
    """
    daemon = Daemon.from_options(config, socket)
    if run_id is not None and len(run_id) < FULL_ID_LENGTH:
        run_id = _expand_prefix(daemon, job, run_id)
    result = daemon.call("logs", job=job, run_id=run_id)
    if json_output:
        print_json(result)
        return
    _print_logs(result)


def _expand_prefix(daemon: Daemon, job: str, prefix: str) -> str:
    runs = daemon.call("history", job=job, limit=_PREFIX_SEARCH_LIMIT).get("runs", [])
    matches = [
        run["id"]
        for run in runs
        if str(run.get("id", "")).endswith(prefix) or str(run.get("id", "")).startswith(prefix)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        return prefix  # let the daemon say what it knows about it
    raise fail(f'run id "{prefix}" is ambiguous: ' + ", ".join(matches[:5]))


def _print_logs(result: dict[str, Any]) -> None:
    from cronhub import render

    run = result.get("run") or {}
    output = result.get("output") or ""
    stderr_console().print(
        render.logs_header(run, now(), truncated=bool(result.get("truncated"))), soft_wrap=True
    )
    if not output:
        stderr_console().print("(no output)", style="dim", markup=False)
        return
    sys.stdout.write(output)
    if not output.endswith("\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()
