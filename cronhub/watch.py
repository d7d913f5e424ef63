"""Watch the registry file for edits, including editors that replace it by rename."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("cronhub.watch")


async def watch_registry(
    path: str | os.PathLike[str],
    on_change: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    debounce_ms: int = 50,
    step_ms: int = 1_000,
) -> None:
    """Call ``on_change`` after each settled change of the file at ``path``.

    The file's folder is watched rather than the file itself, so a save by
    rename (write ``jobs.toml.tmp``, rename over ``jobs.toml``) is seen too.
    ``step_ms`` bounds how often watchfiles' Rust loop wakes up while idle.
    """
    from watchfiles import awatch

    target = Path(path).resolve()
    folder = target.parent

    def only_registry(_change: object, changed: str) -> bool:
        return Path(changed).name == target.name

    async for _changes in awatch(
        folder,
        watch_filter=only_registry,
        debounce=debounce_ms,
        step=step_ms,
        stop_event=stop,
        recursive=False,
    ):
        try:
            await on_change()
        except Exception:
            log.exception("reloading %s after a change failed", target)
