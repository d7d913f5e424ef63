"""The control socket with a real ControlServer on a real Unix socket.

The server runs on its own event loop in a background thread, so the tests
talk to it the way the CLI does: with blocking sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from cronhub.control import (
    AccessPolicy,
    ControlClient,
    ControlServer,
    PeerCred,
    _proc_groups,
    peer_groups,
)
from cronhub.errors import (
    ControlError,
    DaemonAlreadyRunning,
    DaemonNotRunning,
    JobNotFound,
    ProtocolError,
)
from cronhub.protocol import MAX_REQUEST_BYTES, ErrorCode, Request

NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Handler:
    """Echoes requests; a few job names make it fail or wait."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0

    async def __call__(self, request: Request, peer: PeerCred) -> object:
        job = request.params.get("job")
        if job == "boom":
            raise RuntimeError("boom")
        if job == "missing":
            raise JobNotFound("missing", ["mising"])
        if job == "slow":
            self.waiting += 1
            await self.gate.wait()
        return {"op": request.op, "params": request.params, "peer": dataclasses.asdict(peer)}


class ServerThread:
    """A ControlServer on an event loop in a background thread."""

    def __init__(self, path: str, **options: Any) -> None:
        self.path = path
        self.handler = Handler()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = ControlServer(path, self.handler, **options)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ServerThread:
        self.run(self.server.start())
        return self

    def open_gate(self) -> None:
        self.loop.call_soon_threadsafe(self.handler.gate.set)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def sock_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(dir="/tmp", prefix="ch-")  # sun_path is only 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir: str) -> str:
    return os.path.join(sock_dir, "ctl.sock")


@pytest.fixture
def make_server(sock_path: str) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(**options: Any) -> ServerThread:
        server = ServerThread(options.pop("path", sock_path), **options)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


def read_reply(sock: socket.socket) -> dict[str, Any] | None:
    """One reply line as a dict, or None at end of stream."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None if not data else json.loads(data)
        data += chunk
    return json.loads(data)


def exchange(sock: socket.socket, line: bytes) -> dict[str, Any] | None:
    sock.sendall(line)
    return read_reply(sock)


# --- round trips ---------------------------------------------------------------------


def test_client_call_returns_the_handlers_result(server: ServerThread) -> None:
    result = ControlClient(server.path).call("history", job="a", limit=5)
    assert result == {
        "op": "history",
        "params": {"job": "a", "limit": 5, "status": None, "since": None},
        "peer": {"pid": os.getpid(), "uid": os.geteuid(), "gid": os.getegid()},
    }


def test_a_sent_request_is_answered_when_its_reply_is_read(server: ServerThread) -> None:
    pending = ControlClient(server.path).send("history", job="a")
    assert pending.result()["params"]["job"] == "a"  # type: ignore[index]


def test_request_id_is_echoed(server: ServerThread) -> None:
    with connect(server.path) as sock:
        reply = exchange(sock, b'{"op": "ping", "id": "r-1"}\n')
    assert reply is not None
    assert (reply["ok"], reply["id"]) == (True, "r-1")


def test_pipelined_requests_are_answered_in_order(server: ServerThread) -> None:
    with connect(server.path) as sock:
        sock.sendall(b"".join(f'{{"op": "ping", "id": {i}}}\n'.encode() for i in range(20)))
        with sock.makefile("rb") as replies:
            ids = [json.loads(replies.readline())["id"] for _ in range(20)]
    assert ids == list(range(20))


def test_malformed_json_gets_an_error_and_the_connection_goes_on(server: ServerThread) -> None:
    with connect(server.path) as sock:
        bad = exchange(sock, b'{"op": "ping"\n')
        good = exchange(sock, b'{"op": "ping"}\n')
    assert bad is not None and bad["error"]["code"] == "bad_json"
    assert good is not None and good["ok"] is True


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"[1, 2]\n", "bad_request"),
        (b'{"op": "fly"}\n', "unknown_op"),
        (b'{"op": "history", "limit": "ten"}\n', "bad_request"),
        (b'{"op": "ping", "extra": 1}\n', "bad_request"),
        (b"\xff\xff\n", "bad_json"),
        (b"\n", "bad_json"),
    ],
)
def test_bad_request_gets_its_error_code_and_the_connection_goes_on(
    server: ServerThread, line: bytes, code: str
) -> None:
    with connect(server.path) as sock:
        bad = exchange(sock, line)
        good = exchange(sock, b'{"op": "ping"}\n')
    assert bad is not None and bad["error"]["code"] == code
    assert good is not None and good["ok"] is True


def test_last_line_without_newline_is_answered_after_half_close(server: ServerThread) -> None:
    with connect(server.path) as sock:
        sock.sendall(b'{"op": "ping", "id": 1}')
        sock.shutdown(socket.SHUT_WR)
        reply = read_reply(sock)
        assert read_reply(sock) is None
    assert reply is not None and reply["id"] == 1


def test_handler_exception_is_an_internal_error_and_logged(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    client = ControlClient(server.path)
    with (
        caplog.at_level(logging.ERROR, logger="cronhub.control"),
        pytest.raises(ProtocolError) as caught,
    ):
        client.call("enable", job="boom")
    assert caught.value.code == ErrorCode.INTERNAL
    assert "RuntimeError: boom" in str(caught.value)
    assert any(record.exc_info for record in caplog.records)
    assert client.call("ping")["op"] == "ping"  # type: ignore[index]


def test_handler_job_not_found_is_not_found_with_candidates(server: ServerThread) -> None:
    with pytest.raises(ProtocolError) as caught:
        ControlClient(server.path).call("logs", job="missing")
    assert caught.value.code == ErrorCode.NOT_FOUND
    assert caught.value.details == {"candidates": ["mising"]}


def test_slow_handler_does_not_block_other_clients(server: ServerThread) -> None:
    results: list[object] = []
    waiter = threading.Thread(
        target=lambda: results.append(ControlClient(server.path).call("run", job="slow", wait=True))
    )
    waiter.start()
    wait_until(lambda: server.handler.waiting == 1)
    assert ControlClient(server.path, timeout=2).call("ping")["op"] == "ping"  # type: ignore[index]
    server.open_gate()
    waiter.join(10)
    assert results and results[0]["params"]["job"] == "slow"  # type: ignore[index]


def test_close_during_a_slow_handler_answers_shutting_down(server: ServerThread) -> None:
    errors: list[ProtocolError] = []

    def call() -> None:
        try:
            ControlClient(server.path).call("run", job="slow", wait=True)
        except ProtocolError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=call)
    waiter.start()
    wait_until(lambda: server.handler.waiting == 1)
    server.run(server.server.close())
    waiter.join(10)
    assert [e.code for e in errors] == [ErrorCode.SHUTTING_DOWN]


def test_client_times_out_on_a_handler_that_does_not_answer(server: ServerThread) -> None:
    started = time.monotonic()
    with pytest.raises(ProtocolError) as caught:
        ControlClient(server.path, timeout=0.3).call("run", job="slow")
    assert caught.value.code == ErrorCode.TIMEOUT
    assert time.monotonic() - started < 3


# --- socket file lifecycle ---------------------------------------------------------------


def test_socket_file_is_mode_0660(server: ServerThread) -> None:
    info = os.stat(server.path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_uid == os.geteuid()


@pytest.mark.skipif(not IS_ROOT, reason="chown to another group needs root")
def test_socket_file_belongs_to_the_control_group(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(control_group="users")
    assert os.stat(server.path).st_gid == grp.getgrnam("users").gr_gid


def test_unknown_control_group_is_refused_at_start(sock_path: str) -> None:
    server = ServerThread(sock_path, control_group="no-such-group-xyz")
    try:
        with pytest.raises(ControlError, match="no-such-group-xyz"):
            server.start()
        assert not os.path.exists(sock_path)
    finally:
        server.stop()


def test_close_disconnects_idle_clients(server: ServerThread) -> None:
    with connect(server.path) as sock:
        wait_until(lambda: server.server.connection_count == 1)
        server.run(server.server.close())
        assert read_reply(sock) is None


def test_close_removes_the_socket_file(server: ServerThread) -> None:
    server.run(server.server.close())
    assert not os.path.exists(server.path)


def test_close_leaves_a_successors_socket_alone(server: ServerThread) -> None:
    os.unlink(server.path)
    successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    successor.bind(server.path)
    try:
        server.run(server.server.close())
        assert os.path.exists(server.path)
    finally:
        successor.close()


def test_stale_socket_file_is_replaced(
    make_server: Callable[..., ServerThread], sock_path: str
) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()  # the file stays, nothing listens: a crashed daemon's leftover
    server = make_server()
    assert ControlClient(server.path).call("ping")["op"] == "ping"  # type: ignore[index]


def test_live_server_on_the_path_is_not_replaced(server: ServerThread) -> None:
    second = ServerThread(server.path)
    try:
        with pytest.raises(DaemonAlreadyRunning) as caught:
            second.start()
        assert caught.value.pid == os.getpid()
    finally:
        second.stop()
    assert ControlClient(server.path).call("ping")["op"] == "ping"  # type: ignore[index]


def test_regular_file_on_the_path_is_not_replaced(sock_path: str) -> None:
    Path(sock_path).write_text("precious")
    server = ServerThread(sock_path)
    try:
        with pytest.raises(ControlError, match="not a socket"):
            server.start()
    finally:
        server.stop()
    assert Path(sock_path).read_text() == "precious"


def test_missing_parent_directory_is_created(
    make_server: Callable[..., ServerThread], sock_dir: str
) -> None:
    server = make_server(path=os.path.join(sock_dir, "run", "ctl.sock"))
    assert ControlClient(server.path).call("ping")["op"] == "ping"  # type: ignore[index]


def test_path_too_long_for_a_unix_socket_is_a_clear_error(sock_dir: str) -> None:
    server = ServerThread(os.path.join(sock_dir, "x" * 120))
    try:
        with pytest.raises(ControlError, match="1 to 107 bytes"):
            server.start()
    finally:
        server.stop()


# --- client without a daemon -------------------------------------------------------------


def test_client_reports_no_daemon_when_the_socket_is_missing(sock_path: str) -> None:
    with pytest.raises(DaemonNotRunning) as caught:
        ControlClient(sock_path).call("ping")
    assert caught.value.socket_path == sock_path
    assert "cronhub start" in str(caught.value)


def test_send_reports_no_daemon_before_a_reply_is_awaited(sock_path: str) -> None:
    with pytest.raises(DaemonNotRunning):
        ControlClient(sock_path).send("ping")


def test_client_reports_no_daemon_when_the_directory_is_missing(sock_dir: str) -> None:
    with pytest.raises(DaemonNotRunning):
        ControlClient(os.path.join(sock_dir, "nope", "ctl.sock")).call("ping")


def test_client_reports_no_daemon_on_a_stale_socket(sock_path: str) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()
    with pytest.raises(DaemonNotRunning):
        ControlClient(sock_path).call("ping")


# --- abuse ------------------------------------------------------------------------------------


def test_too_large_line_is_refused_without_reading_it_all(server: ServerThread) -> None:
    sock = connect(server.path)
    payload = b'{"op": "ping", "pad": "' + b"x" * (10 * 1024 * 1024)
    sent = 0

    def flood() -> None:
        nonlocal sent
        with contextlib.suppress(OSError):
            for start in range(0, len(payload), 65536):
                sent += sock.send(payload[start : start + 65536])

    flooder = threading.Thread(target=flood)
    flooder.start()
    reply = read_reply(sock)
    flooder.join(10)
    sock.close()
    assert reply is not None and reply["error"]["code"] == "too_large"
    assert sent < 4 * MAX_REQUEST_BYTES  # the server hung up long before 10 MB
    assert ControlClient(server.path).call("ping")["op"] == "ping"  # type: ignore[index]


def test_line_just_under_the_cap_is_read(server: ServerThread) -> None:
    job = "j" * 1000
    line = json.dumps({"op": "status", "job": job, "id": "x" * (MAX_REQUEST_BYTES - 1100)})
    with connect(server.path) as sock:
        reply = exchange(sock, line.encode() + b"\n")
    assert reply is not None and reply["ok"] is True


def test_idle_client_is_told_and_closed(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(idle_timeout_s=0.3)
    started = time.monotonic()
    with connect(server.path) as sock:
        reply = read_reply(sock)
        assert read_reply(sock) is None
    assert reply is not None and reply["error"]["code"] == "timeout"
    assert time.monotonic() - started < 5


def test_trickling_client_is_closed_after_the_idle_timeout(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(idle_timeout_s=0.5)
    started = time.monotonic()
    with connect(server.path) as sock:
        with contextlib.suppress(OSError):
            for byte in b'{"op": "ping", "pad": "' + b"x" * 200:
                sock.send(bytes([byte]))
                time.sleep(0.05)
        reply = read_reply(sock)
    assert reply is not None and reply["error"]["code"] == "timeout"
    assert time.monotonic() - started < 5


def test_abrupt_disconnects_mid_line_leave_the_server_serving(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cronhub.control"):
        for reset in (False, True):
            sock = connect(server.path)
            sock.sendall(b'{"op": "status", "jo')
            if reset:  # close with SO_LINGER 0: the peer sees a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
            sock.close()
        # A client that vanishes before its reply is written.
        sock = connect(server.path)
        sock.sendall(b'{"op": "ping"}\n')
        sock.close()
        assert ControlClient(server.path).call("ping")["op"] == "ping"  # type: ignore[index]
        wait_until(lambda: server.server.connection_count == 0)
    assert caplog.records == []


def test_client_that_never_reads_its_replies_is_dropped(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(idle_timeout_s=0.5)
    line = json.dumps({"op": "status", "job": "x" * 900}).encode() + b"\n"
    flood = line * 20_000
    with connect(server.path) as sock:
        sock.settimeout(10)
        with contextlib.suppress(OSError):  # dropped mid-send: broken pipe or reset
            sock.sendall(flood)
        wait_until(lambda: server.server.connection_count == 0, timeout=10)
    assert ControlClient(server.path).call("ping")["op"] == "ping"  # type: ignore[index]


def test_300_concurrent_clients_are_all_answered(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_clients=512)
    sockets = [connect(server.path) for _ in range(300)]
    try:
        for index, sock in enumerate(sockets):
            sock.sendall(f'{{"op": "ping", "id": {index}}}\n'.encode())
        replies = [read_reply(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert [reply["id"] for reply in replies if reply and reply["ok"]] == list(range(300))


def test_clients_over_the_limit_get_busy(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()  # default limit: 256
    sockets = [connect(server.path) for _ in range(300)]
    try:
        wait_until(lambda: server.server.connection_count >= 256)
        for sock in sockets:
            with contextlib.suppress(OSError):  # a busy client may be gone already
                sock.sendall(b'{"op": "ping"}\n')
        replies = [read_reply(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    codes = [reply["error"]["code"] if reply and not reply["ok"] else "ok" for reply in replies]
    assert codes.count("ok") == 256
    assert codes.count("busy") == 44
    assert ControlClient(server.path).call("ping")["op"] == "ping"  # type: ignore[index]


def test_busy_reply_reaches_the_blocking_client(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_clients=1)
    with connect(server.path):
        wait_until(lambda: server.server.connection_count == 1)
        with pytest.raises(ProtocolError) as caught:
            ControlClient(server.path).call("ping")
    assert caught.value.code == ErrorCode.BUSY


# --- access ------------------------------------------------------------------------------------


def run_client_as(
    path: str, *, uid: int, gid: int, extra_groups: tuple[int, ...] = ()
) -> dict[str, Any]:
    """One ``status`` call from a forked child that dropped to ``uid``/``gid``.

    Fork without exec: the interpreter may live where other users cannot run it.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, call, report, and leave without cleanup
        exit_code = 1
        try:
            os.close(read_fd)
            os.setgroups(list(extra_groups))
            os.setgid(gid)
            os.setuid(uid)
            try:
                result = ControlClient(path, timeout=10).call("status")
                report = {"ok": True, "uid": result["peer"]["uid"]}  # type: ignore[index]
            except ProtocolError as exc:
                report = {"ok": False, "code": exc.code, "message": str(exc)}
            os.write(write_fd, json.dumps(report).encode())
            exit_code = 0
        finally:
            os._exit(exit_code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the client child failed"
    return json.loads(data)


@pytest.fixture
def open_dir(sock_dir: str) -> str:
    """Let other users reach the socket (mkdtemp makes the directory 0700)."""
    os.chmod(sock_dir, 0o755)
    return sock_dir


@pytest.fixture
def can_switch_user() -> None:
    if not IS_ROOT:
        pytest.skip("needs root to run a client as another user")


@pytest.mark.usefixtures("can_switch_user", "open_dir")
def test_other_user_is_refused_even_through_a_lax_socket_mode(server: ServerThread) -> None:
    os.chmod(server.path, 0o666)  # only the peer check stands in the way now
    reply = run_client_as(server.path, uid=NOBODY, gid=NOBODY)
    assert reply["code"] == "forbidden"
    assert reply["message"] == (
        f"uid {NOBODY} is not root and not the daemon's user (uid {os.geteuid()}),"
        " and no control group is configured"
    )


@pytest.mark.usefixtures("can_switch_user", "open_dir")
def test_other_user_is_refused_naming_the_control_group(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(control_group="users")
    os.chmod(server.path, 0o666)
    reply = run_client_as(server.path, uid=NOBODY, gid=NOBODY)
    assert reply["code"] == "forbidden"
    assert "and not in control group 'users'" in reply["message"]


@pytest.mark.usefixtures("can_switch_user", "open_dir")
def test_other_user_is_refused_by_the_socket_mode(server: ServerThread) -> None:
    reply = run_client_as(server.path, uid=NOBODY, gid=NOBODY)
    assert reply["code"] == "forbidden"
    assert "permission denied" in reply["message"]


@pytest.mark.usefixtures("can_switch_user", "open_dir")
def test_control_group_as_primary_group_is_let_in(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(control_group="users")
    reply = run_client_as(server.path, uid=NOBODY, gid=grp.getgrnam("users").gr_gid)
    assert reply == {"ok": True, "uid": NOBODY}


@pytest.mark.usefixtures("can_switch_user", "open_dir")
def test_control_group_as_supplementary_group_is_let_in(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(control_group="users")
    users = grp.getgrnam("users").gr_gid
    reply = run_client_as(server.path, uid=NOBODY, gid=NOBODY, extra_groups=(users,))
    assert reply == {"ok": True, "uid": NOBODY}


# AccessPolicy is pure: the decisions below need no other users.

POLICY = AccessPolicy(
    daemon_uid=1000, group_name="cronhub", group_gid=900, member_uids=frozenset({1002})
)


def no_groups() -> frozenset[int]:
    return frozenset()


@pytest.mark.parametrize(
    "peer",
    [
        PeerCred(pid=1, uid=0, gid=0),
        PeerCred(pid=1, uid=1000, gid=1000),
        PeerCred(pid=1, uid=1005, gid=900),
        PeerCred(pid=1, uid=1002, gid=1002),
    ],
    ids=["root", "daemon-user", "primary-group", "listed-member"],
)
def test_access_policy_lets_in(peer: PeerCred) -> None:
    assert POLICY.refusal(peer, no_groups) is None


def test_access_policy_lets_in_a_supplementary_group_member() -> None:
    assert POLICY.refusal(PeerCred(pid=1, uid=1001, gid=1001), lambda: frozenset({5, 900})) is None


def test_access_policy_refusal_names_why() -> None:
    assert POLICY.refusal(PeerCred(pid=1, uid=1001, gid=1001), no_groups) == (
        "uid 1001 is not root, not the daemon's user (uid 1000) and not in control group 'cronhub'"
    )


def test_access_policy_reads_groups_only_when_needed() -> None:
    def fail() -> frozenset[int]:
        raise AssertionError("groups read for an obvious decision")

    assert POLICY.refusal(PeerCred(pid=1, uid=0, gid=0), fail) is None


def test_access_policy_without_group_ignores_supplementary_groups() -> None:
    policy = AccessPolicy(daemon_uid=1000)
    assert policy.refusal(PeerCred(pid=1, uid=1001, gid=0), lambda: frozenset({0})) is not None


def test_access_policy_resolves_a_numeric_group() -> None:
    policy = AccessPolicy.for_group(0, str(grp.getgrnam("users").gr_gid))
    assert policy.group_name == "users"


def test_peer_groups_are_the_connecting_process_groups() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        groups = peer_groups(left, os.getpid())
    assert groups == frozenset(os.getgroups())


def test_peer_groups_fall_back_to_proc_status() -> None:
    assert _proc_groups(os.getpid()) == frozenset(os.getgroups())
    assert _proc_groups(0) == frozenset()
