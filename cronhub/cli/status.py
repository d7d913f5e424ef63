"""``cronhub status [JOB]``: the jobs and their last and next runs."""

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


def status(
    job: Annotated[
        str | None, typer.Argument(help="Show this job's configuration and last runs.")
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the jobs and their last and next runs.

    One row per job: schedule, enabled, last run and status, duration, runs,
    failures, average duration, next run.

    With JOB: the job's full configuration and its last runs.  With --json: the
    daemon's status result ({"daemon": {...}, "jobs": [...], "runs": [...]}).
    """
    reply = Daemon.from_options(config, socket).send("status", job=job)
    if json_output:
        print_json(reply.result())
        return

    from cronhub import render  # loaded while the daemon prepares its answer

    console = stdout_console()
    result = reply.result()
    current = now()
    if job is None:
        # crop=False: the view is already fitted to the width; rich need not measure it again
        console.print(render.render_status(result, current, width=console.width), crop=False)
        return
    daemon = result.get("daemon", {})
    panel = render.registry_errors_panel(daemon.get("registry_errors") or [])
    if panel is not None:
        console.print(panel)
    for entry in result.get("jobs", []):
        console.print(
            render.job_detail(
                entry,
                result.get("runs") or [],
                current,
                paused=bool(daemon.get("paused")),
                width=console.width,
            ),
            crop=False,
        )
