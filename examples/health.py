"""Plugin health check: the data folder is writable, has room, and a service answers.

An ``async`` callable, to show that cronhub awaits coroutine functions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

MIB = 1024 * 1024


class HealthCheckFailed(Exception):
    """The checked system is unhealthy; the message says what failed."""


async def check(
    directory: str = "var",
    min_free_mb: float = 50,
    tcp: str | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Check ``directory`` (writable, ``min_free_mb`` free) and, if given, ``tcp`` ("host:port").

    Raises :class:`HealthCheckFailed` listing every failed check.
    """
    problems: list[str] = []
    folder = Path(directory)
    free_mb = _check_folder(folder, problems)
    if free_mb is not None and free_mb < min_free_mb:
        problems.append(f"only {free_mb:.0f} MiB free on {folder} (need {min_free_mb:g} MiB)")
    if tcp is not None:
        await _check_tcp(tcp, timeout_s, problems)
    if problems:
        raise HealthCheckFailed("unhealthy: " + "; ".join(problems))
    reached = f", {tcp} answers" if tcp else ""
    print(f"plugin-health: ok ({folder} writable, {free_mb:.0f} MiB free{reached})")


def _check_folder(folder: Path, problems: list[str]) -> float | None:
    """Create ``folder`` if needed, write and remove a probe file; return free MiB."""
    probe = folder / f".health-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
        return shutil.disk_usage(folder).free / MIB
    except OSError as exc:
        problems.append(f"{folder} is not writable: {exc.strerror or exc}")
        return None


async def _check_tcp(address: str, timeout_s: float, problems: list[str]) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        problems.append(f'tcp: expected "host:port", got {address!r}')
        return
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.close()
        await writer.wait_closed()
    except TimeoutError:
        problems.append(f"{address} did not answer within {timeout_s:g}s")
    except OSError as exc:
        problems.append(f"{address} refused the connection: {exc.strerror or exc}")
