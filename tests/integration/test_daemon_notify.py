"""The daemon speaks systemd's notify protocol for real (issue 5)."""

from __future__ import annotations

import socket
import time

import pytest

from tests.support import daemon_process, wait_until

pytestmark = pytest.mark.timeout(60)


class NotifyListener:
    """A bound datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def poll(self) -> list[tuple[float, dict[str, str]]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str | None = None, *, after: int = 0, timeout=15.0):
        def seen() -> tuple[int, dict[str, str]] | None:
            for index, (_, fields) in enumerate(self.poll()[after:], start=after):
                if key in fields and (value is None or fields[key] == value):
                    return index, fields
            return None

        return wait_until(seen, timeout, interval=0.01, what=f"{key}={value} from the daemon")

    def close(self) -> None:
        self.sock.close()


def test_ready_watchdog_status_reload_and_stopping() -> None:
    jobs = '[jobs.tick]\nschedule = "every 1s"\ncommand = "true"\ntimeout = "5s"\n'
    with daemon_process(jobs, start=False) as daemon:
        listener = NotifyListener(str(daemon.folder / "notify.sock"))
        daemon.env["NOTIFY_SOCKET"] = listener.path
        daemon.env["WATCHDOG_USEC"] = "400000"  # pings expected every 200 ms
        try:
            daemon.start(wait=False)
            ready_index, _ = listener.wait_for("READY", "1")
            # READY=1 only once the control socket answers.
            assert daemon.call("ping", timeout=2)["pid"] == daemon.proc.pid

            def pings() -> list[float]:
                return [t for t, f in listener.poll() if f.get("WATCHDOG") == "1"]

            wait_until(lambda: len(pings()) >= 5, 10, what="regular WATCHDOG=1 pings")
            gaps = [b - a for a, b in zip(pings(), pings()[1:], strict=False)]
            assert max(gaps) < 1.0, gaps

            _, status = listener.wait_for("STATUS")
            assert "1 jobs" in status["STATUS"]

            mark = len(listener.poll())
            daemon.call("reload")
            reloading_index, reloading = listener.wait_for("RELOADING", "1", after=mark)
            assert int(reloading["MONOTONIC_USEC"]) > 0
            listener.wait_for("READY", "1", after=reloading_index + 1)

            mark = len(listener.poll())
            assert daemon.stop() == 0
            listener.wait_for("STOPPING", "1", after=mark, timeout=5)
            assert ready_index < mark
        finally:
            listener.close()


def test_jobs_do_not_inherit_the_notify_socket() -> None:
    jobs = (
        '[jobs.env]\nschedule = "@reboot"\n'
        'command = "echo notify=${NOTIFY_SOCKET:-unset}"\ntimeout = "5s"\n'
    )
    with daemon_process(jobs, start=False) as daemon:
        listener = NotifyListener(str(daemon.folder / "notify.sock"))
        daemon.env["NOTIFY_SOCKET"] = listener.path
        try:
            daemon.start()
            wait_until(
                lambda: (
                    daemon.call("history", job="env")["runs"][:1]
                    and daemon.call("history", job="env")["runs"][0]["status"] == "success"
                ),
                10,
            )
            assert daemon.call("logs", job="env")["output"].strip() == "notify=unset"
        finally:
            listener.close()
