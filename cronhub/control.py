"""The control socket: the daemon's asyncio server.

The wire format lives in :mod:`cronhub.protocol`; this module moves its lines
over a Unix stream socket and decides who may talk.  The CLI's blocking client
is :mod:`cronhub.client` (re-exported here as :class:`ControlClient`), kept
apart so that commands do not load the server; ``asyncio`` and ``logging``
are imported only by the server's methods.

Access: the socket file is mode 0660 (group: ``control_group`` when set), and
every connection's peer is checked with ``SO_PEERCRED``.  Root, the daemon's
own user and members of the control group are let in; anyone else gets one
``forbidden`` reply saying why, and is disconnected.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import math
import os
import pwd
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cronhub import protocol
from cronhub.client import ControlClient as ControlClient  # re-exported for existing imports
from cronhub.errors import ControlError, DaemonAlreadyRunning
from cronhub.protocol import ErrorCode, Request

if TYPE_CHECKING:
    import asyncio
    import logging

SOCKET_MODE: Final = 0o660
DEFAULT_IDLE_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_CLIENTS: Final = 256

_UCRED: Final = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
_READ_CHUNK: Final = 64 * 1024
_PROBE_TIMEOUT_S: Final = 2.0
_BACKLOG: Final = 1024
_BUSY_LOG_INTERVAL_S: Final = 60.0
# SO_PEERGROUPS (Linux >= 4.13) is missing from the socket module; 59 is its
# value in asm-generic, which these architectures use.
_SO_PEERGROUPS: Final = getattr(socket, "SO_PEERGROUPS", None) or (
    59
    if os.uname().sysname == "Linux"
    and os.uname().machine in {"x86_64", "i386", "i686", "aarch64", "armv7l", "riscv64"}
    else None
)


@dataclass(frozen=True, slots=True)
class PeerCred:
    """The credentials of a connected client, as the kernel saw them at connect()."""

    pid: int
    uid: int
    gid: int


Handler = Callable[[Request, PeerCred], Awaitable[object]]
"""Answers one request: returns the ``result`` or raises (see ``protocol.error_for_exception``)."""


# --- access ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class AccessPolicy:
    """Who may use the socket: root, ``daemon_uid``, and members of the control group.

    ``member_uids`` are the group's listed members (``/etc/group``), resolved
    when the policy is built; a process's own supplementary groups are read
    per connection.
    """

    daemon_uid: int
    group_name: str | None = None
    group_gid: int | None = None
    member_uids: frozenset[int] = frozenset()

    @classmethod
    def for_group(cls, daemon_uid: int, group: str | None) -> AccessPolicy:
        """Resolve ``group`` (a name or a numeric gid); raise ControlError if unknown."""
        if group is None:
            return cls(daemon_uid=daemon_uid)
        try:
            entry = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
        except (KeyError, ValueError, OverflowError):
            raise ControlError(f"control group {group!r} does not exist") from None
        members = set()
        for name in entry.gr_mem:
            try:
                members.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue  # a stale name in /etc/group lets no one in
        return cls(
            daemon_uid=daemon_uid,
            group_name=entry.gr_name,
            group_gid=entry.gr_gid,
            member_uids=frozenset(members),
        )

    def refusal(self, peer: PeerCred, groups: Callable[[], frozenset[int]]) -> str | None:
        """Why ``peer`` is refused, or None if it may talk.

        ``groups`` returns the peer's supplementary gids; it is called only when
        the cheaper checks did not decide.
        """
        if peer.uid in (0, self.daemon_uid):
            return None
        if self.group_gid is not None and (
            peer.gid == self.group_gid or peer.uid in self.member_uids or self.group_gid in groups()
        ):
            return None
        if self.group_name is None:
            return (
                f"uid {peer.uid} is not root and not the daemon's user (uid {self.daemon_uid}),"
                " and no control group is configured"
            )
        return (
            f"uid {peer.uid} is not root, not the daemon's user (uid {self.daemon_uid})"
            f" and not in control group {self.group_name!r}"
        )


def peer_credentials(sock: socket.socket) -> PeerCred:
    """``SO_PEERCRED`` of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid=pid, uid=uid, gid=gid)


def peer_groups(sock: socket.socket, pid: int) -> frozenset[int]:
    """The peer's supplementary groups: ``SO_PEERGROUPS``, else ``/proc/PID/status``.

    ``SO_PEERGROUPS`` is captured at connect() and cannot be raced; the
    ``/proc`` fallback reads the process as it is now (empty if it is gone).
    """
    if _SO_PEERGROUPS is not None:
        size = 4096
        while size <= 4 * 65536:
            try:
                raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, size)
            except OSError as exc:
                if exc.errno == errno.ERANGE:
                    size *= 4
                    continue
                break  # ENOPROTOOPT: an older kernel
            return frozenset(struct.unpack(f"{len(raw) // 4}I", raw))
    return _proc_groups(pid)


def _proc_groups(pid: int) -> frozenset[int]:
    if pid <= 0:
        return frozenset()
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return frozenset(int(gid) for gid in line.split()[1:])
    except OSError:
        pass  # the peer is gone: no groups to grant anything
    return frozenset()


# --- server --------------------------------------------------------------------------


class _LineTooLong(Exception):
    pass


class ControlServer:
    """The daemon's side: an asyncio Unix stream server answering protocol lines.

    Each connection runs in its own task, so a slow handler (``run`` with
    ``wait``) holds up only its own client.  Per connection: a peer check, a
    ``MAX_REQUEST_BYTES`` line cap, an idle timeout for each request line, and
    requests answered in order.  Over ``max_clients`` connections, a new one
    gets ``busy`` and is closed.
    """

    def __init__(
        self,
        path: str,
        handler: Handler,
        *,
        control_group: str | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self.path = os.fspath(path)
        self.handler = handler
        self.control_group = control_group
        self.idle_timeout_s = idle_timeout_s
        self.max_clients = max_clients
        self._policy: AccessPolicy | None = None
        self._server: asyncio.Server | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        self._connections: set[asyncio.Task[None]] = set()
        self._admitted = 0  # connections past the limit check, still open
        self._busy_refusals = 0
        self._busy_logged_at = -math.inf
        self._closing = False

    @property
    def connection_count(self) -> int:
        """Connections being served right now (refused ones not counted)."""
        return self._admitted

    @property
    def serving(self) -> bool:
        """Started and not closing."""
        return self._server is not None and not self._closing

    async def start(self) -> None:
        """Create the socket and start accepting.

        A stale socket file (nothing accepts on it) is replaced.  Raises
        :class:`DaemonAlreadyRunning` if a live server answers on ``path``, and
        :class:`ControlError` if the path is unusable.
        """
        import asyncio

        if self._server is not None:
            raise ControlError("control server already started")
        _check_path(self.path)
        self._policy = AccessPolicy.for_group(os.geteuid(), self.control_group)
        await self._clear_stale()
        sock = self._bind()
        try:
            self._server = await asyncio.start_unix_server(
                self._on_connect, sock=sock, limit=_READ_CHUNK, backlog=_BACKLOG
            )
        except BaseException:
            sock.close()
            self._remove_socket_file()
            raise
        self._closing = False
        _log().info("control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, end every connection, and remove the socket file if still ours.

        A handler cut short here answers its client ``shutting_down``.  Safe to
        call from inside a handler (that request still gets its reply).
        """
        import asyncio

        if self._server is None:
            return
        self._closing = True
        self._server.close()
        current = asyncio.current_task()
        others = [task for task in self._connections if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        # Python >= 3.12 waits here for every transport to close; bounded, since
        # a refused client's reply may still be flushing.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._server.wait_closed()
        self._remove_socket_file()
        self._server = None

    # -- lifecycle helpers

    async def _clear_stale(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            parent = os.path.dirname(self.path) or "."
            os.makedirs(parent, mode=0o755, exist_ok=True)
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; not replacing it")
        alive, pid = await _probe(self.path)
        if alive:
            raise DaemonAlreadyRunning(pid, self.path)
        _log().warning("replacing stale control socket %s", self.path)
        with contextlib.suppress(FileNotFoundError):  # someone cleaned it up first
            os.unlink(self.path)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The umask makes the socket 0660 from its first instant (no window
            # with a wider mode, and no chmod that could follow a swapped-in
            # symlink); chmod is only a fallback for filesystems that differ.
            previous = os.umask(0o117)
            try:
                sock.bind(self.path)
            finally:
                os.umask(previous)
            info = os.lstat(self.path)
            self._identity = (info.st_dev, info.st_ino)
            if stat.S_IMODE(info.st_mode) != SOCKET_MODE and stat.S_ISSOCK(info.st_mode):
                os.chmod(self.path, SOCKET_MODE)
            if self._policy is not None and self._policy.group_gid is not None:
                os.chown(self.path, -1, self._policy.group_gid, follow_symlinks=False)
        except OSError as exc:
            sock.close()
            self._remove_socket_file()
            raise ControlError(
                f"cannot create control socket {self.path}: {exc.strerror or exc}"
            ) from exc
        sock.setblocking(False)
        return sock

    def _remove_socket_file(self) -> None:
        """Unlink ``path`` only if it is still the socket we bound (a successor may own it)."""
        if self._identity is None:
            return
        try:
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self._identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass  # already gone: nothing of ours to remove
        except OSError as exc:
            _log().warning("cannot remove control socket %s: %s", self.path, exc)
        self._identity = None

    # -- connections

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, so that the limit is applied at accept time and
        # the server owns each connection's task (asyncio's own wrapper task
        # mishandles cancellation on Python 3.11).
        import asyncio

        if self._admitted >= self.max_clients:
            self._refuse_busy(writer)
            return
        self._admitted += 1
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connection_done)

    def _connection_done(self, task: asyncio.Task[None]) -> None:
        self._connections.discard(task)
        self._admitted -= 1

    def _refuse_busy(self, writer: asyncio.StreamWriter) -> None:
        """Answer ``busy`` and hang up, without a task: cheap under a flood."""
        self._busy_refusals += 1
        now = time.monotonic()
        if now - self._busy_logged_at >= _BUSY_LOG_INTERVAL_S:
            _log().warning(
                "control: %d connections open (the limit); refused %d since the last warning",
                self.max_clients,
                self._busy_refusals,
            )
            self._busy_logged_at = now
            self._busy_refusals = 0
        message = f"too many connections (limit {self.max_clients}); try again later"
        writer.write(protocol.encode_error(ErrorCode.BUSY, message))
        writer.close()  # the transport sends the buffered reply, then closes

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except ConnectionError:
            pass  # the client went away: nothing to answer
        except Exception:  # loop boundary: one connection never takes the server down
            _log().exception("control connection failed")
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        sock = writer.get_extra_info("socket")
        peer = peer_credentials(sock)
        if self._closing:
            await self._send(writer, protocol.encode_error(ErrorCode.SHUTTING_DOWN, "stopping"))
            return
        assert self._policy is not None
        why = self._policy.refusal(peer, lambda: peer_groups(sock, peer.pid))
        if why is not None:
            _log().warning("control: refused pid %d uid %d: %s", peer.pid, peer.uid, why)
            await self._send(writer, protocol.encode_error(ErrorCode.FORBIDDEN, why))
            return
        buffer = bytearray()
        while True:
            try:
                line = await self._read_line(reader, buffer)
            except _LineTooLong:
                message = f"request line is longer than {protocol.MAX_REQUEST_BYTES} bytes"
                await self._send(writer, protocol.encode_error(ErrorCode.TOO_LARGE, message))
                return
            except TimeoutError:
                message = f"no complete request within {self.idle_timeout_s:g} s; closing"
                await self._send(writer, protocol.encode_error(ErrorCode.TIMEOUT, message))
                return
            if line is None:
                return
            try:
                reply = await self._answer(line, peer)
            except asyncio.CancelledError:
                if self._closing and not writer.transport.is_closing():
                    message = "the daemon is shutting down"
                    writer.write(protocol.encode_error(ErrorCode.SHUTTING_DOWN, message))
                raise
            if not await self._send(writer, reply):
                return

    async def _read_line(self, reader: asyncio.StreamReader, buffer: bytearray) -> bytes | None:
        """The next line (without newline), or None at end of input.

        The whole line must arrive within ``idle_timeout_s``.  Never holds more
        than ``MAX_REQUEST_BYTES`` plus one chunk.  A last line without a
        newline before EOF still counts (``printf ... | socat``).
        """
        import asyncio

        deadline = asyncio.get_running_loop().time() + self.idle_timeout_s
        scanned = 0
        while True:
            newline = buffer.find(b"\n", scanned)
            if newline >= 0:
                if newline > protocol.MAX_REQUEST_BYTES:
                    raise _LineTooLong
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                return line
            if len(buffer) > protocol.MAX_REQUEST_BYTES:
                raise _LineTooLong
            scanned = len(buffer)
            async with asyncio.timeout_at(deadline):
                chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                if buffer.strip():
                    line = bytes(buffer)
                    buffer.clear()
                    return line
                return None
            buffer += chunk

    async def _answer(self, line: bytes, peer: PeerCred) -> bytes:
        try:
            request = protocol.decode_request(line)
        except protocol.RequestError as exc:
            _log().debug("control: bad request from pid %d: %s", peer.pid, exc)
            return protocol.encode_error(exc.code, str(exc), exc.details, id=exc.request_id)
        try:
            result = await self.handler(request, peer)
        except Exception as exc:  # loop boundary: a failed request is answered, not fatal
            code, message, details = protocol.error_for_exception(exc)
            if code == ErrorCode.INTERNAL:
                _log().exception("control: %s failed", request.op)
            return protocol.encode_error(code, message, details, id=request.id)
        return protocol.encode_ok(result, id=request.id)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Write one reply; False if the client is gone or stopped reading."""
        import asyncio

        if writer.transport.is_closing():
            return False
        writer.write(data)
        try:
            async with asyncio.timeout(self.idle_timeout_s):
                await writer.drain()
        except TimeoutError:
            _log().warning("control: client stopped reading; dropping it")
            writer.transport.abort()
            return False
        except ConnectionError:
            return False
        return True


async def _probe(path: str) -> tuple[bool, int | None]:
    """Is a server accepting on ``path``?  ``(alive, its pid if known)``."""
    import asyncio

    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                await loop.sock_connect(sock, path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False, None
        except TimeoutError:
            return True, None  # a full backlog: someone is there, just slow
        except OSError as exc:
            raise ControlError(f"cannot check {path}: {exc.strerror or exc}") from exc
        return True, peer_credentials(sock).pid or None


def _check_path(path: str) -> None:
    # sun_path is 108 bytes including the terminating NUL.
    if not path or len(os.fsencode(path)) > 107:
        raise ControlError(
            f"control socket path must be 1 to 107 bytes, got {len(os.fsencode(path))}: {path}"
        )


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("cronhub.control")
