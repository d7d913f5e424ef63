"""Bad input: broken registries (parser, CLI, live reload) and a socket barrage.

Never a traceback, always a ``FILE:LINE`` message, the running registry untouched;
every socket message gets a reply or a clean close, the daemon's memory stays
bounded and its every-second canary keeps its beat.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import re
import selectors
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cronhub.cli import app
from cronhub.errors import ConfigError, ProtocolError
from cronhub.protocol import ErrorCode
from cronhub.registry import parse_registry
from tests.faults.helpers import crashes, fault_daemon, history, log_size, rss_kb, write_jobs
from tests.faults.mutations import GOOD_JOBS, broken_registry
from tests.support import CRONHUB, DaemonProcess, registry_text, wait_until

pytestmark = pytest.mark.timeout(180)

REGISTRY_PATH = "/tmp/faults-bad-input/jobs.toml"
GOOD = registry_text("/tmp/faults-bad-input/d.sock", Path("/tmp/faults-bad-input/h.db"), GOOD_JOBS)
LOCATED = re.compile(r"^(?P<path>/[^:\n]+):(?P<line>\d+)(:\d+)?: ")
CANARY_JOBS = """
[jobs.canary]
schedule = "every 1s"
command = "echo $CRONHUB_RUN_ID >> @DIR@/canary.ids"
timeout = "10s"

[jobs.report]
schedule = "*/15 * * * *"
callable = "faultjobs.misbehave:record"
kwargs = { path = "report.txt" }
"""


def _module_exists(module: str, base_dir: str) -> bool:
    return module.split(".")[0] == "faultjobs" and module != "faultjobs.nope"


def _issues_are_located(exc: ConfigError, path: str) -> list[str]:
    """The issues of ``exc`` that do not start ``PATH:LINE:`` (should be none)."""
    return [
        str(issue)
        for issue in exc.issues
        if issue.path != path or issue.line is None or not LOCATED.match(str(issue))
    ]


# --- registries -----------------------------------------------------------------


@dataclass
class RegistryTally:
    tried: int = 0
    broken: int = 0
    unlocated: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)


def test_1000_broken_registries_give_located_messages_never_a_traceback(tally) -> None:
    parse_registry(GOOD, REGISTRY_PATH, module_exists=_module_exists)  # the base is good
    seen = RegistryTally()

    @settings(
        max_examples=1100,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(seed=st.integers(0, 2**32), junk=st.text(max_size=30))
    def attack(seed: int, junk: str) -> None:
        text = broken_registry(GOOD, seed, junk)
        seen.tried += 1
        try:
            parse_registry(text, REGISTRY_PATH, module_exists=_module_exists)
        except ConfigError as exc:
            seen.broken += 1
            seen.unlocated.extend(_issues_are_located(exc, REGISTRY_PATH))
        except Exception as exc:  # the finding: anything but a ConfigError
            seen.crashed.append(f"seed {seed} junk {junk!r}: {exc!r}")

    attack()
    tally.inputs += seen.tried
    tally.faults += seen.broken
    tally.crashes += len(seen.crashed)
    assert not seen.crashed, seen.crashed[:5]
    assert not seen.unlocated, seen.unlocated[:5]
    assert seen.broken >= 1000, f"only {seen.broken} of {seen.tried} mutations were broken"
    tally.check()


def test_broken_registries_through_cronhub_validate(tally, tmp_path) -> None:
    """200 in-process with typer's CliRunner, 8 through the real console script."""
    config = tmp_path / "jobs.toml"
    (tmp_path / "faultjobs").mkdir()
    (tmp_path / "faultjobs" / "__init__.py").write_text("")
    (tmp_path / "faultjobs" / "misbehave.py").write_text("def record(path): pass\n")
    good = registry_text(str(tmp_path / "d.sock"), tmp_path / "h.db", GOOD_JOBS)
    config.write_text(good)
    runner = CliRunner()
    assert runner.invoke(app, ["validate", "--config", str(config)]).exit_code == 0
    failures: list[str] = []
    for seed in range(200):
        text = broken_registry(good, 50_000 + seed)
        config.write_text(text)
        result = runner.invoke(app, ["validate", "--config", str(config)])
        tally.inputs += 1
        output = result.output + (result.stderr if result.stderr_bytes is not None else "")
        if result.exit_code == 0:
            continue  # a mutation that happened to stay valid
        tally.faults += 1
        if result.exit_code != 1 or not isinstance(result.exception, SystemExit):
            tally.crashes += 1
            failures.append(f"seed {50_000 + seed}: exit {result.exit_code} {result.exception!r}")
        elif "Traceback" in output or f"{config}:" not in output:
            failures.append(f"seed {50_000 + seed}: no FILE:LINE message: {output[-300:]!r}")
    for seed in range(8):
        config.write_text(broken_registry(good, 60_000 + seed))
        done = subprocess.run(
            [CRONHUB, "validate", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        tally.inputs += 1
        if done.returncode == 0:
            continue
        tally.faults += 1
        if done.returncode != 1 or "Traceback" in done.stderr + done.stdout:
            tally.crashes += 1
            failures.append(f"cli seed {60_000 + seed}: {done.returncode} {done.stderr[-300:]}")
        elif not re.search(rf"^{re.escape(str(config))}:\d+", done.stderr + done.stdout, re.M):
            failures.append(f"cli seed {60_000 + seed}: no FILE:LINE: {done.stderr[-300:]!r}")
    assert not failures, failures[:5]
    assert tally.faults >= 150
    tally.check()


def test_live_reload_of_broken_registries_keeps_the_running_one(tally) -> None:
    with fault_daemon(CANARY_JOBS) as daemon:
        good = daemon.config.read_text()
        before = daemon.call("status")
        jobs_before = [j["name"] for j in before["jobs"]]
        loaded_at = before["daemon"]["registry_loaded_at"]
        log_from = log_size(daemon)
        failures: list[str] = []
        for seed in range(40):
            text = broken_registry(good, 70_000 + seed)
            staging = daemon.folder / ".new"
            staging.write_text(text)
            staging.replace(daemon.config)  # an editor's rename: the watcher sees it too
            tally.inputs += 1
            try:
                daemon.call("reload")
            except ProtocolError as exc:
                if exc.code != "config_invalid":
                    failures.append(f"seed {70_000 + seed}: code {exc.code}: {exc}")
                    continue
                tally.faults += 1
                issues = (exc.details or {}).get("issues", [])
                bad = [i for i in issues if not i.startswith(f"{daemon.config}:")]
                if not issues or bad:
                    failures.append(f"seed {70_000 + seed}: unlocated issues {issues!r}")
                status = daemon.call("status")
                if not status["daemon"]["registry_errors"]:
                    failures.append(f"seed {70_000 + seed}: status shows no registry error")
                if [j["name"] for j in status["jobs"]] != jobs_before:
                    failures.append(f"seed {70_000 + seed}: the running registry changed")
                if status["daemon"]["registry_loaded_at"] != loaded_at:
                    failures.append(f"seed {70_000 + seed}: the registry was reloaded")
            else:
                write_jobs(daemon, CANARY_JOBS)  # stayed valid: put the original back
                daemon.call("reload")
                loaded_at = daemon.call("status")["daemon"]["registry_loaded_at"]
        daemon.config.write_text(good)
        result = daemon.call("reload")
        assert result["unchanged"] == 2
        status = daemon.call("status")
        assert status["daemon"]["registry_errors"] == []
        canary = wait_until(
            lambda: daemon.call("history", job="canary", limit=5)["runs"], 10, what="canary"
        )
        assert all(r["start_lag_ms"] < 1500 for r in canary), canary
        tally.crashes += crashes(daemon, log_from)
        assert not failures, failures[:5]
    assert tally.faults >= 30
    tally.check()


# --- the socket barrage -----------------------------------------------------------

# Every code the daemon may send (bad_reply is the client's own).
ERROR_CODES = {code.value for code in ErrorCode} - {"bad_reply"}


def _malformed(rng: random.Random) -> bytes:
    choices = [
        b"{",
        b'{"op":',
        b'{"op": "ping"',
        b"nul",
        b"\xff\xfe\xfd",
        b'{"op": "ping"}}',
        b"[" * 5000 + b"]" * 5000,
        b"[" * 200_000,
        b'{"op": "\xed\xa0\x80"}',
        b'{"op": "ping", "op": 1, }',
        b"\x00\x01\x02",
        b"NaN",
        b'{"op": "ping", "id": 1e999999}',
        b'"\\ud800"',
        b"{'op': 'ping'}",
        bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64))).replace(b"\n", b""),
    ]
    return rng.choice(choices)


def _wrong_types(rng: random.Random) -> bytes:
    documents: list[object] = [
        {"op": 5},
        {"op": None},
        {"op": ["ping"]},
        {},
        [1, 2, 3],
        "ping",
        None,
        True,
        12,
        {"op": "history", "limit": "x"},
        {"op": "history", "limit": -1},
        {"op": "history", "limit": 10**100},
        {"op": "history", "limit": 1.5},
        {"op": "history", "limit": True},
        {"op": "history", "status": "exploded"},
        {"op": "history", "since": "yesterday"},
        {"op": "history", "since": "2026-01-01T00:00:00"},
        {"op": "status", "job": 7},
        {"op": "status", "job": "x" * 5000},
        {"op": "status", "verbose": True},
        {"op": "logs"},
        {"op": "logs", "job": ["canary"]},
        {"op": "run", "job": "canary", "wait": "yes"},
        {"op": "run", "job": "canary", "timeout": -1},
        {"op": "disable", "job": {"name": "canary"}},
        {"op": "enable"},
        {"op": "shutdown", "now": True},
        {"op": "reload", "path": "/etc/passwd"},
        {"op": "ping", "id": {"nested": 1}},
        {"op": "ping", "id": [1]},
        {"op": "frobnicate"},
        {"op": "PING"},
        {"op": "__init__"},
        {"op": "_op_ping"},
    ]
    return json.dumps(rng.choice(documents)).encode()


def _valid(rng: random.Random) -> bytes:
    documents: list[dict[str, object]] = [
        {"op": "ping"},
        {"op": "status"},
        {"op": "status", "job": "canary"},
        {"op": "status", "job": "no-such-job"},
        {"op": "history", "limit": rng.randrange(1, 1001)},
        {"op": "history", "job": "canary", "status": "success", "limit": 5},
        {"op": "logs", "job": "canary"},
        {"op": "enable", "job": "nope"},
    ]
    return json.dumps(rng.choice(documents)).encode()


@dataclass
class BarrageTally:
    sent: int = 0
    replies: int = 0
    clean_closes: int = 0
    unanswered: list[str] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, line: bytes, request_id: object = None) -> None:
        try:
            reply = json.loads(line)
            ok = reply["ok"]
            code = "ok" if ok else reply["error"]["code"]
            if not ok:
                assert code in ERROR_CODES, code
            if request_id is not None:
                assert reply.get("id") == request_id, (reply.get("id"), request_id)
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            with self.lock:
                self.unanswered.append(f"bad reply {line[:200]!r}: {exc!r}")
            return
        with self.lock:
            self.replies += 1
            self.codes[code] += 1


class LineClient:
    """A persistent connection: one line out, one line back; reconnects after a close."""

    def __init__(self, path: str, counts: BarrageTally) -> None:
        self.path = path
        self.counts = counts
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(self.path)
            self.buffer = b""
        return self.sock

    def exchange(self, line: bytes, request_id: object = None) -> None:
        sock = self._connect()
        with self.counts.lock:
            self.counts.sent += 1
        # Closed on us: the reply (if any) is still readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(line + b"\n")
        while b"\n" not in self.buffer:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                with self.counts.lock:
                    self.counts.unanswered.append(f"no reply in 30s to {line[:100]!r}")
                self.close()
                return
            if not chunk:
                with self.counts.lock:
                    self.counts.clean_closes += 1
                self.close()
                return
            self.buffer += chunk
        reply, _, self.buffer = self.buffer.partition(b"\n")
        self.counts.reply(reply, request_id)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _pound(path: str, seed: int, count: int, counts: BarrageTally) -> None:
    rng = random.Random(seed)
    client = LineClient(path, counts)
    try:
        for n in range(count):
            kind = rng.random()
            if kind < 0.35:
                client.exchange(_malformed(rng))
            elif kind < 0.7:
                client.exchange(_wrong_types(rng))
            else:
                document = json.loads(_valid(rng))
                request_id = rng.choice([None, n, f"req-{seed}-{n}", 1.5, True])
                if request_id is not None:
                    document["id"] = request_id
                client.exchange(json.dumps(document).encode(), request_id)
    finally:
        client.close()


def _huge_lines(path: str, counts: BarrageTally, n: int = 5) -> None:
    """10 MB lines: refused with too_large and the connection closed."""
    client = LineClient(path, counts)
    for i in range(n):
        body = b'{"op": "ping", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
        client.exchange(body if i % 2 else body.replace(b"{", b"[", 1))
        client.close()


def _half_lines(path: str, counts: BarrageTally, n: int = 40) -> None:
    """Half-written lines: some hang up at once, some wait for the daemon's timeout."""
    waiting: list[socket.socket] = []
    for i in range(n):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        with counts.lock:
            counts.sent += 1
        if i % 4 == 3:
            waiting.append(sock)  # connects and never writes
            continue
        sock.sendall(b'{"op": "status", "jo')
        if i % 2:
            sock.close()  # abrupt: mid-line
            with counts.lock:
                counts.clean_closes += 1
        else:
            waiting.append(sock)
    for sock in waiting:
        sock.settimeout(30)
        data = b""
        try:
            while b"\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        if b"\n" in data:
            counts.reply(data.partition(b"\n")[0])
        elif data == b"":
            with counts.lock:
                counts.clean_closes += 1
        else:
            with counts.lock:
                counts.unanswered.append(f"half a reply: {data[:100]!r}")
        sock.close()


def _abrupt(path: str, counts: BarrageTally, n: int = 300) -> None:
    """Ask, then hang up before the reply."""
    for i in range(n):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.sendall(b'{"op": "status"}\n' if i % 2 else b'{"op": "history", "limit": 1000}\n')
        sock.close()
        with counts.lock:
            counts.sent += 1
            counts.clean_closes += 1


def _crowd(path: str, counts: BarrageTally, n: int = 500) -> None:
    """500 clients at once, each sends a ping; each gets ok or busy."""
    selector = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        socks.append(sock)
    for i, sock in enumerate(socks):
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(json.dumps({"op": "ping", "id": i}).encode() + b"\n")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, [i, b""])
        with counts.lock:
            counts.sent += 1
    deadline = time.monotonic() + 60
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            state = key.data
            try:
                chunk = key.fileobj.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                chunk = b""
            state[1] += chunk
            if b"\n" in state[1] or not chunk:
                selector.unregister(key.fileobj)
                if b"\n" in state[1]:
                    line = state[1].partition(b"\n")[0]
                    busy = b'"busy"' in line
                    counts.reply(line, None if busy else state[0])
                else:
                    with counts.lock:
                        counts.clean_closes += 1
    for key in list(selector.get_map().values()):
        with counts.lock:
            counts.unanswered.append(f"crowd client {key.data[0]} got nothing in 60s")
    for sock in socks:
        sock.close()


@pytest.fixture
def canary_daemon() -> Iterator[DaemonProcess]:
    with fault_daemon(CANARY_JOBS) as daemon:
        yield daemon


def test_10000_socket_messages_all_answered_and_the_canary_keeps_time(canary_daemon, tally) -> None:
    daemon = canary_daemon
    pid = daemon.proc.pid
    wait_until(lambda: len(history(daemon, "WHERE job_name = 'canary'")) >= 2, 15, what="canary")
    log_from = log_size(daemon)
    baseline = rss_kb(pid)
    peak = baseline
    counts = BarrageTally()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kb(pid))
            stop.wait(0.05)

    begun = datetime.now().astimezone()
    started = time.monotonic()
    workers = [
        threading.Thread(target=_pound, args=(daemon.socket, seed, 2_300, counts))
        for seed in range(4)
    ]
    workers += [
        threading.Thread(target=_huge_lines, args=(daemon.socket, counts)),
        threading.Thread(target=_half_lines, args=(daemon.socket, counts)),
        threading.Thread(target=_abrupt, args=(daemon.socket, counts)),
        threading.Thread(target=_crowd, args=(daemon.socket, counts)),
        threading.Thread(target=sample, daemon=True),
    ]
    for worker in workers:
        worker.start()
    for worker in workers[:-1]:
        worker.join(150)
    stop.set()
    elapsed = time.monotonic() - started
    assert daemon.call("ping")["pid"] == pid
    after = rss_kb(pid)

    tally.inputs += counts.sent
    tally.faults += counts.sent - counts.codes["ok"]
    tally.crashes += crashes(daemon, log_from) + len(counts.unanswered)

    # The canary: one run a second through the barrage, each on time.
    runs = [
        r
        for r in daemon.call("history", job="canary", limit=1000)["runs"]
        if datetime.fromisoformat(r["scheduled_at"]) >= begun
    ]
    scheduled = sorted(datetime.fromisoformat(r["scheduled_at"]) for r in runs)
    expected = int(elapsed) - 1
    tally.expected += expected
    tally.recorded += len(runs)
    tally.lost += max(0, expected - len(runs))
    tally.duplicates += len(scheduled) - len(set(scheduled))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(scheduled)]
    lags = [r["start_lag_ms"] for r in runs]

    assert counts.sent >= 10_000
    assert not counts.unanswered, counts.unanswered[:5]
    assert counts.replies + counts.clean_closes >= counts.sent
    assert counts.codes["bad_json"] > 1000 and counts.codes["bad_request"] > 1000
    # A 10 MB line gets `too_large` and a close; the client may still be writing when
    # the daemon closes, and then sees the close first (a clean close, which the
    # issue allows). At least one reply must prove the refusal path.
    assert counts.codes["too_large"] >= 1
    assert not gaps or max(gaps) < 2.5, f"canary gap of {max(gaps)} s"
    assert max(lags, default=0) < 1000, f"canary started {max(lags)} ms late"
    assert peak - baseline < 100 * 1024, f"RSS {baseline} -> peak {peak} KiB"
    assert after - baseline < 50 * 1024, f"RSS {baseline} -> {after} KiB after the barrage"
    print(
        f"\nbarrage: {counts.sent} messages in {elapsed:.1f}s, {dict(counts.codes)}, "
        f"RSS {baseline} -> peak {peak} -> {after} KiB"
    )
    tally.check()
