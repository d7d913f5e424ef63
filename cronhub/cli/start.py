"""``cronhub start``: run the daemon in the foreground."""

from pathlib import Path
from typing import Annotated

import typer

from cronhub.cli.common import DEFAULT_CONFIG, ConfigOption, SocketOption


def start(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            "-l",
            help="debug, info, warning or error [default: $CRONHUB_LOG_LEVEL, else info].",
            show_default=False,
        ),
    ] = None,
    socket: SocketOption = None,
) -> None:
    """Run the daemon in the foreground.

    It runs until SIGTERM or Ctrl-C.

    SIGHUP reloads jobs.toml; so does editing it.  Under systemd, use Type=notify.
    """
    from cronhub.daemon import run_daemon

    raise typer.Exit(run_daemon(str(config), log_level=log_level, socket=socket))
