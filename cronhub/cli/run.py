"""``cronhub run JOB [--wait]``: start a manual run."""

from pathlib import Path
from typing import Annotated, Any

import typer

from cronhub.cli.common import (
    DEFAULT_CONFIG,
    DEFAULT_TIMEOUT_S,
    ConfigOption,
    Daemon,
    ExitCode,
    JsonOption,
    SocketOption,
    print_json,
    stderr_console,
    stdout_console,
)

_REPLY_MARGIN_S = DEFAULT_TIMEOUT_S
"""Extra time the client gives the daemon beyond ``--timeout`` to send its reply."""


def run(
    job: Annotated[str, typer.Argument(help="The job to run.", show_default=False)],
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the run to end and print its result.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            "-t",
            min=0,
            help="With --wait: give up waiting after this many seconds (the run goes on).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Start a manual run of a job.

    A singleton job that is already running is refused.

    Prints the run id.  With --wait: waits for the end, prints the result and
    exits 0 on success, 1 on failure, 124 when the run (or the wait) timed out.
    """
    if timeout is not None and not wait:
        raise typer.BadParameter("--timeout only applies with --wait", param_hint="--timeout")
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be more than 0 seconds", param_hint="--timeout")
    daemon = Daemon.from_options(config, socket)
    if wait:
        reply_timeout = None if timeout is None else timeout + _REPLY_MARGIN_S
        result = daemon.call(
            "run", job=job, wait=True, timeout=timeout, reply_timeout=reply_timeout
        )
    else:
        result = daemon.call("run", job=job)
    if json_output:
        print_json(result)
    elif not wait:
        typer.echo(result.get("run_id"))
    else:
        _print_result(result, timeout)
    if wait:
        raise typer.Exit(int(exit_code_for(result)))


def exit_code_for(result: dict[str, Any]) -> ExitCode:
    """0 success, 124 timeout (of the run or of the wait), 1 anything else."""
    status = result.get("status")
    if status == "success":
        return ExitCode.OK
    if status in ("timeout", "running"):
        return ExitCode.TIMEOUT
    return ExitCode.FAILURE


def _print_result(result: dict[str, Any], timeout: float | None) -> None:
    from cronhub import render

    if result.get("status") == "running":
        waited = "" if timeout is None else f" after {timeout:g}s"
        stderr_console().print(
            f"cronhub: run {result.get('run_id')} is still running{waited};"
            f" see `cronhub logs {result.get('job_name')} --run {result.get('run_id')}` later",
            soft_wrap=True,
            markup=False,
        )
        return
    run_record = result.get("run") or {
        "id": result.get("run_id"),
        "job_name": result.get("job_name"),
        "status": result.get("status"),
    }
    stdout_console().print(render.run_summary(run_record), soft_wrap=True)
