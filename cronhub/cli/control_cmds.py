"""``cronhub reload``, ``cronhub ping`` and ``cronhub stop``."""

import time
from pathlib import Path
from typing import Annotated

import typer

from cronhub.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    Daemon,
    ExitCode,
    JsonOption,
    SocketOption,
    fail,
    print_json,
    stderr_console,
    stdout_console,
)
from cronhub.errors import DaemonNotRunning, ProtocolError

_STOP_POLL_S = 0.1


def reload(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Re-read the registry now.

    The daemon also reloads it when the file changes, and on SIGHUP.
    A broken registry changes nothing: its problems are printed and the exit status is 2.
    """
    result = Daemon.from_options(config, socket).call("reload")
    if json_output:
        print_json(result)
        return
    from rich.text import Text

    from cronhub import render

    stdout_console().print(render.reload_summary(result), soft_wrap=True)
    for warning in result.get("warnings") or []:
        stderr_console().print(Text(f"warning: {warning}", style="yellow"), soft_wrap=True)


def ping(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check that the daemon answers.

    Prints its version, pid and uptime; exits 3 when no daemon answers.
    """
    result = Daemon.from_options(config, socket).call("ping")
    if json_output:
        print_json(result)
        return
    from cronhub import render

    stdout_console().print(render.ping_line(result), soft_wrap=True)


def stop(
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait until the daemon has stopped."),
    ] = True,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", "-t", min=0, help="With --wait: give up after this many seconds."
        ),
    ] = 120.0,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    socket: SocketOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stop the daemon gracefully.

    No new runs start; running ones get [scheduler].shutdown_grace to finish.
    """
    daemon = Daemon.from_options(config, socket)
    result = daemon.call("shutdown")
    if wait and not _wait_until_gone(daemon, timeout):
        raise fail(
            f"the daemon on {daemon.socket_path} is still stopping after {timeout:g}s",
            ExitCode.TIMEOUT,
        )
    if json_output:
        print_json(result)
    else:
        state = "stopped" if wait else "stopping"
        stdout_console().print(f"cronhub daemon {state}", markup=False)


def _wait_until_gone(daemon: Daemon, timeout: float) -> bool:
    """Poll ``ping`` until no daemon answers; False when ``timeout`` runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            daemon.call("ping", reply_timeout=max(deadline - time.monotonic(), 0.01))
        except DaemonNotRunning:
            return True
        except ProtocolError:
            pass  # "shutting_down", or a reply cut short: it is still tearing down
        time.sleep(_STOP_POLL_S)
    return False
