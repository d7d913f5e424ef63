"""The notify protocol against real datagram sockets (filesystem path and abstract namespace)."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cronhub.sdnotify import Notifier

RECEIVE_TIMEOUT_S = 5.0


class Manager:
    """A stand-in for the service manager's end of ``$NOTIFY_SOCKET``."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self) -> list[str]:
        data = self.sock.recv(4096)
        return data.decode().split("\n")

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(RECEIVE_TIMEOUT_S)
        return False


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(RECEIVE_TIMEOUT_S)
    return sock


@pytest.fixture
def path_manager() -> Iterator[Manager]:
    # A short directory: AF_UNIX paths are limited to 108 bytes, tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sdn-") as directory, _bound_socket() as sock:
        path = str(Path(directory) / "notify")
        sock.bind(path)
        yield Manager(sock, path)


@pytest.fixture
def abstract_manager() -> Iterator[Manager]:
    with _bound_socket() as sock:
        name = f"cronhub-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name)
        yield Manager(sock, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest) -> Manager:
    return request.getfixturevalue(f"{request.param}_manager")


def _notifier(manager: Manager, **extra: str) -> Notifier:
    return Notifier.from_environ({"NOTIFY_SOCKET": manager.env_value, **extra})


def test_ready_reaches_the_manager(manager: Manager) -> None:
    notifier = _notifier(manager)
    assert notifier.enabled
    notifier.ready()
    assert manager.receive() == ["READY=1"]


def test_ready_can_carry_a_status(manager: Manager) -> None:
    _notifier(manager).ready(status="8 jobs, 0 running")
    assert manager.receive() == ["READY=1", "STATUS=8 jobs, 0 running"]


def test_status_is_folded_onto_one_line(manager: Manager) -> None:
    _notifier(manager).status("12 jobs, 2 running\nnext: backup in 3m")
    assert manager.receive() == ["STATUS=12 jobs, 2 running next: backup in 3m"]


def test_reloading_carries_monotonic_usec(manager: Manager) -> None:
    _notifier(manager).reloading(123_456_789)
    assert manager.receive() == ["RELOADING=1", "MONOTONIC_USEC=123456789"]


def test_reloading_defaults_to_the_monotonic_clock_now(manager: Manager) -> None:
    before = time.monotonic_ns() // 1_000
    _notifier(manager).reloading()
    after = time.monotonic_ns() // 1_000
    reloading, monotonic = manager.receive()
    assert reloading == "RELOADING=1"
    assert before <= int(monotonic.removeprefix("MONOTONIC_USEC=")) <= after


def test_stopping_reaches_the_manager(manager: Manager) -> None:
    _notifier(manager).stopping()
    assert manager.receive() == ["STOPPING=1"]


def test_watchdog_ping_is_sent_when_the_watchdog_is_on(manager: Manager) -> None:
    _notifier(manager, WATCHDOG_USEC="30000000").watchdog()
    assert manager.receive() == ["WATCHDOG=1"]


def test_watchdog_ping_is_not_sent_when_the_watchdog_is_off(manager: Manager) -> None:
    _notifier(manager).watchdog()
    assert manager.nothing_pending()


def test_extend_timeout_asks_for_microseconds(manager: Manager) -> None:
    _notifier(manager).extend_timeout(35.5)
    assert manager.receive() == ["EXTEND_TIMEOUT_USEC=35500000"]


def test_notifications_arrive_in_order_over_one_socket(manager: Manager) -> None:
    notifier = _notifier(manager, WATCHDOG_USEC="2000000")
    notifier.ready()
    notifier.watchdog()
    notifier.status("idle")
    notifier.stopping()
    received = [manager.receive() for _ in range(4)]
    assert received == [["READY=1"], ["WATCHDOG=1"], ["STATUS=idle"], ["STOPPING=1"]]


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval() is None
    notifier.ready()
    notifier.status("x")
    notifier.reloading(1)
    notifier.watchdog()
    notifier.stopping()


def test_a_vanished_socket_is_logged_not_raised(
    path_manager: Manager, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = _notifier(path_manager)
    os.unlink(path_manager.env_value)
    with caplog.at_level(logging.DEBUG, logger="cronhub.sdnotify"):
        notifier.ready()
        notifier.status("still alive")
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG]
    assert "READY=1" in caplog.records[0].getMessage()


def test_sending_recovers_once_the_socket_is_back(path_manager: Manager) -> None:
    notifier = _notifier(path_manager)
    path = path_manager.env_value
    os.unlink(path)
    notifier.ready()
    with _bound_socket() as again:
        again.bind(path)
        notifier.status("back")
        assert again.recv(4096) == b"STATUS=back"


def test_unsupported_address_disables_the_notifier(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cronhub.sdnotify"):
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"})
    assert not notifier.enabled
    assert "relative/path" in caplog.text


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000"}, 0.0005),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nope"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    environ: dict[str, str], expected: float | None
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@cronhub-unused", **environ})
    assert notifier.watchdog_interval() == expected


def test_watchdog_for_another_pid_sends_no_ping(manager: Manager) -> None:
    notifier = _notifier(manager, WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid() + 1))
    notifier.watchdog()
    assert manager.nothing_pending()


def test_unset_environment_removes_the_variables_for_children() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "10", "WATCHDOG_PID": "1", "PATH": "/bin"}
    notifier = Notifier.from_environ(environ, unset_environment=True)
    assert notifier.enabled
    assert environ == {"PATH": "/bin"}
