"""The systemd notify protocol, without libsystemd.

A service started with ``Type=notify`` finds a datagram socket in
``$NOTIFY_SOCKET`` and reports its state to the service manager by sending
newline-separated ``KEY=value`` assignments to it (see ``sd_notify(3)``):
``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=…`` and ``WATCHDOG=1``.

:class:`Notifier` is that client.  Without ``$NOTIFY_SOCKET`` every method does
nothing, so the daemon calls it unconditionally.  Sending never raises into the
caller: a lost notification must not take the scheduler down.  The first
failure is logged as a warning (under systemd it usually means the service is
about to be timed out), later ones at debug level, so a broken socket does not
flood the log with one line per watchdog ping.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

__all__ = ["NOTIFY_ENV_VARS", "Notifier"]

log = logging.getLogger(__name__)

NOTIFY_ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
"""The variables systemd sets for the main process only; children should not inherit them."""

MAX_STATUS_CHARS = 1024
"""STATUS= is shown by ``systemctl status``; longer text is cut (systemd reads at most 4 KiB)."""

SEND_TIMEOUT_S = 1.0
"""How long a send may block when the manager's socket queue is full."""


def _monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds, the clock ``MONOTONIC_USEC=`` is read against."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000


class Notifier:
    """Sends state notifications to the service manager.

    Build it with :meth:`from_environ`; construct it directly (``address=None``
    for a disabled notifier) in tests.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._socket: socket.socket | None = None
        self._failed_before = False

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        unset_environment: bool = False,
    ) -> Notifier:
        """Read ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``.

        The watchdog is enabled only when ``WATCHDOG_USEC`` is a positive integer
        and ``WATCHDOG_PID`` is unset or names this process (the variables leak to
        children that are not the watched process).  With ``unset_environment``
        the three variables are removed from ``environ`` afterwards, as
        ``sd_notify(unset_environment=1)`` does, so that child processes do not
        inherit them.
        """
        address = environ.get("NOTIFY_SOCKET") or None
        watchdog_usec = _watchdog_usec(environ)
        if unset_environment and isinstance(environ, MutableMapping):
            for name in NOTIFY_ENV_VARS:
                environ.pop(name, None)
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self._address is not None

    def ready(self, status: str | None = None) -> None:
        """``READY=1``: startup (or a reload) is complete."""
        self._send_state(["READY=1"], status)

    def reloading(self, monotonic_usec: int | None = None, status: str | None = None) -> None:
        """``RELOADING=1`` + ``MONOTONIC_USEC=`` (default: now); follow it with :meth:`ready`."""
        usec = monotonic_usec if monotonic_usec is not None else _monotonic_usec()
        self._send_state(["RELOADING=1", f"MONOTONIC_USEC={usec}"], status)

    def stopping(self, status: str | None = None) -> None:
        """``STOPPING=1``: a graceful shutdown has begun."""
        self._send_state(["STOPPING=1"], status)

    def status(self, text: str) -> None:
        """``STATUS=``: a one-line description shown by ``systemctl status``."""
        self._send_state([], text)

    def watchdog(self) -> None:
        """``WATCHDOG=1``: the keep-alive ping; a no-op when the watchdog is off."""
        if self._watchdog_usec is not None:
            self._send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """``EXTEND_TIMEOUT_USEC=``: ask for more time to finish starting or stopping.

        The manager then allows ``seconds`` from now (measured afresh on each call)
        beyond ``TimeoutStartSec``/``TimeoutStopSec``.
        """
        self._send(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def watchdog_interval(self) -> float | None:
        """Seconds between :meth:`watchdog` pings (half of ``WATCHDOG_USEC``), or None when off."""
        if self._watchdog_usec is None or not self.enabled:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def notify(self, *assignments: str) -> None:
        """Send raw ``KEY=value`` assignments (no newlines inside) in one datagram."""
        self._send("\n".join(assignments))

    def close(self) -> None:
        """Close the socket; a later notification opens a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __repr__(self) -> str:
        address = self._address
        shown = address.replace("\0", "@", 1) if isinstance(address, str) else address
        return f"Notifier(address={shown!r}, watchdog_usec={self._watchdog_usec})"

    # --- internals -------------------------------------------------------------

    def _send_state(self, assignments: list[str], status: str | None) -> None:
        if status is not None:
            assignments.append(_status_field(status))
        self._send("\n".join(assignments))

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.settimeout(SEND_TIMEOUT_S)
            self._socket.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError as exc:
            self.close()
            level = logging.DEBUG if self._failed_before else logging.WARNING
            self._failed_before = True
            first_line = message.split("\n", 1)[0]
            log.log(level, "sd_notify %s to %r failed: %s", first_line, self, exc)


def _socket_address(address: str) -> str | None:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address: ``@name`` is the abstract namespace."""
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    log.warning(
        "ignoring NOTIFY_SOCKET=%r: only absolute paths and @abstract names are supported", address
    )
    return None


def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.debug("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                log.debug("WATCHDOG_PID=%s is not this process (%d)", pid, os.getpid())
                return None
        except ValueError:
            log.debug("ignoring WATCHDOG_PID=%r: not an integer", pid)
            return None
    return usec if usec > 0 else None


def _status_field(text: str) -> str:
    """One ``STATUS=`` line: newlines would start new assignments, so fold them."""
    line = " ".join(text.split())
    if len(line) > MAX_STATUS_CHARS:
        line = line[: MAX_STATUS_CHARS - 1] + "…"
    return f"STATUS={line}"
