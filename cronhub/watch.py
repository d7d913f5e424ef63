"""Watch the registry file for edits, including editors that replace it by rename.

On Linux the file's folder is watched with inotify, read on the event loop: an
idle daemon spends no wakeups on it, and an edit is seen within milliseconds.
Elsewhere (or if inotify is unavailable) watchfiles does the watching; its Rust
loop wakes every ``step`` to look for changes, so there it costs about one
wakeup a second.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("cronhub.watch")

# From <sys/inotify.h>.
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_EVENT = struct.Struct("iIII")
_FOLDER_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED

OnChange = Callable[[], Awaitable[None]]


async def watch_registry(
    path: str | os.PathLike[str],
    on_change: OnChange,
    stop: asyncio.Event,
    *,
    debounce_ms: int = 30,
) -> None:
    """Call ``on_change`` after each settled change of the file at ``path``, until ``stop``.

    The folder is watched rather than the file, so saving by rename (write
    ``jobs.toml.tmp``, rename it over ``jobs.toml``) is seen too, and so is a
    symlink swap of the folder's entries.  Changes closer together than
    ``debounce_ms`` make one call.
    """
    target = Path(path).absolute()
    try:
        watcher = _Inotify(target.parent)
    except OSError as exc:
        log.info("inotify unavailable (%s); watching %s with watchfiles", exc, target)
        await _watch_with_watchfiles(target, on_change, stop, debounce_ms)
        return
    try:
        await watcher.run(target.name, on_change, stop, debounce_ms / 1000)
    finally:
        watcher.close()


class _Inotify:
    """An inotify instance watching one folder, read on the running event loop."""

    def __init__(self, folder: Path) -> None:
        libc_name = ctypes.util.find_library("c")
        if libc_name is None:
            raise OSError(errno.ENOSYS, "no C library found")
        libc = ctypes.CDLL(libc_name, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            raise OSError(errno.ENOSYS, "the C library has no inotify")
        self._libc = libc
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self.folder = folder
        self._add_watch()

    def _add_watch(self) -> None:
        wd = self._libc.inotify_add_watch(
            self.fd, os.fsencode(self.folder), _FOLDER_MASK | IN_ONLYDIR
        )
        if wd < 0:
            code = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(code, f"cannot watch {self.folder}: {os.strerror(code)}")

    async def run(
        self, name: str, on_change: OnChange, stop: asyncio.Event, debounce_s: float
    ) -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        folder_gone = False

        def readable() -> None:
            nonlocal folder_gone
            for event_name, mask in self._read_events():
                if mask & _GONE:
                    folder_gone = True
                    changed.set()
                elif event_name == name:
                    changed.set()

        loop.add_reader(self.fd, readable)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waiting = asyncio.ensure_future(changed.wait())
                await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if stop.is_set():
                    break
                # Let a burst of events (truncate, write, close; rename) settle.
                while True:
                    changed.clear()
                    try:
                        await asyncio.wait_for(changed.wait(), debounce_s)
                    except TimeoutError:
                        break
                if folder_gone:
                    log.warning(
                        "the folder %s was removed or moved: edits are no longer watched "
                        "(use `cronhub reload` or SIGHUP)",
                        self.folder,
                    )
                    return
                try:
                    await on_change()
                except Exception:
                    log.exception("reloading after a change of %s failed", name)
        finally:
            stopping.cancel()
            loop.remove_reader(self.fd)

    def _read_events(self) -> list[tuple[str, int]]:
        events: list[tuple[str, int]] = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                raw = data[offset : offset + length].rstrip(b"\0")
                offset += length
                events.append((os.fsdecode(raw), mask))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def _watch_with_watchfiles(
    target: Path, on_change: OnChange, stop: asyncio.Event, debounce_ms: int
) -> None:
    from watchfiles import awatch

    def only_registry(_change: object, changed: str) -> bool:
        return Path(changed).name == target.name

    async for _changes in awatch(
        target.parent,
        watch_filter=only_registry,
        debounce=max(debounce_ms, 50),
        step=1_000,
        stop_event=stop,
        recursive=False,
    ):
        try:
            await on_change()
        except Exception:
            log.exception("reloading %s after a change failed", target)
