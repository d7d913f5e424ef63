"""The CLI's side of the control socket: a blocking client, stdlib only.

Kept apart from the daemon's server (:mod:`cronhub.control`, which re-exports
:class:`ControlClient`) so that a command loads neither the server's access
checks nor their dataclasses.  A request can be sent before its reply is
wanted (:meth:`ControlClient.send`): the CLI loads its renderer while the
daemon prepares the answer.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Final

from cronhub import protocol
from cronhub.errors import ControlError, DaemonNotRunning, ProtocolError
from cronhub.protocol import ErrorCode

__all__ = ["ControlClient", "PendingReply"]

_CHUNK: Final = 1024 * 1024


class ControlClient:
    """One daemon's control socket; one connection per request.

    One connection per request means a request is never silently re-sent on a
    connection the daemon already closed.  ``timeout`` bounds a whole call
    (connect, send, reply) in seconds; None waits forever (``run --wait``).
    """

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout

    def call(self, op: str, **params: object) -> object:
        """Send one request and return its ``result``.

        Raises :class:`DaemonNotRunning` if nothing listens on the socket, and
        :class:`ProtocolError` with the daemon's error code (``timeout`` if the
        reply does not come in time, ``bad_reply`` if it is malformed).
        """
        return self.send(op, **params).result()

    def send(self, op: str, **params: object) -> PendingReply:
        """Connect and send one request; :meth:`PendingReply.result` reads the reply.

        Raises as :meth:`call` does for what happens before the reply.
        """
        request = protocol.encode_request(op, **params)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        sock = self._connect(deadline)
        try:
            sent = _send(sock, request, deadline)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise _no_reply(self.timeout) from None
            raise
        return PendingReply(sock, deadline, self.timeout, sent=sent)

    def _connect(self, deadline: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            raise DaemonNotRunning(self.path, exc.strerror) from None
        except PermissionError as exc:
            sock.close()
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"permission denied on {self.path}: {exc.strerror}"
            ) from None
        except TimeoutError:
            sock.close()
            raise ProtocolError(
                ErrorCode.TIMEOUT, f"the daemon did not accept within {self.timeout} s"
            ) from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        return sock


class PendingReply:
    """A sent request whose reply has not been read yet (see :meth:`ControlClient.send`)."""

    def __init__(
        self, sock: socket.socket, deadline: float | None, timeout: float | None, *, sent: bool
    ) -> None:
        self._sock = sock
        self._deadline = deadline
        self._timeout = timeout
        self._sent = sent

    def result(self) -> Any:
        """Wait for the reply and return its ``result``, as decoded JSON.

        The connection is then closed.  Raises :class:`ProtocolError` as
        :meth:`ControlClient.call` does.
        """
        with self._sock:
            try:
                line = _receive(self._sock, self._deadline)
            except TimeoutError:
                raise _no_reply(self._timeout) from None
        if line is None:
            why = "closed the connection" if self._sent else "refused the request"
            raise ProtocolError(ErrorCode.BAD_REPLY, f"the daemon {why} without a reply")
        return protocol.decode_reply(line)


def _no_reply(timeout: float | None) -> ProtocolError:
    return ProtocolError(ErrorCode.TIMEOUT, f"no reply from the daemon within {timeout} s")


def _send(sock: socket.socket, data: bytes, deadline: float | None) -> bool:
    """Send the request; False if the daemon hung up first (its reply may be waiting)."""
    sock.settimeout(_remaining(deadline))
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _receive(sock: socket.socket, deadline: float | None) -> bytes | None:
    """The reply line, or None if the connection ended first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        sock.settimeout(_remaining(deadline))
        try:
            chunk = sock.recv(_CHUNK)
        except ConnectionResetError:
            chunk = b""
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            return b"".join(chunks)
        if not chunk:
            if size:
                raise ProtocolError(ErrorCode.BAD_REPLY, "the daemon closed mid-reply")
            return None
        size += len(chunk)
        if size > protocol.MAX_REPLY_BYTES:
            raise ProtocolError(
                ErrorCode.BAD_REPLY, f"reply is longer than {protocol.MAX_REPLY_BYTES} bytes"
            )
        chunks.append(chunk)


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left
