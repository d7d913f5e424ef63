"""Access: another user is refused every operation; the socket's mode and owner;
job output, error text and names never reach a shell or a format string."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import crashes, fault_daemon, history, survivors, tag_of
from tests.support import DaemonProcess, wait_until

pytestmark = pytest.mark.timeout(90)

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
OPS = [
    {"op": "ping"},
    {"op": "status"},
    {"op": "status", "job": "canary"},
    {"op": "run", "job": "canary"},
    {"op": "enable", "job": "canary"},
    {"op": "disable", "job": "canary"},
    {"op": "history"},
    {"op": "logs", "job": "canary"},
    {"op": "reload"},
    {"op": "shutdown"},
    {"op": "no-such-op"},
]
CLIENT = """
import json, socket, sys
path, requests = sys.argv[1], json.loads(sys.argv[2])
for request in requests:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
    except PermissionError as exc:
        print(json.dumps({"refused_at_connect": exc.strerror}))
        continue
    try:
        sock.sendall((json.dumps(request) + "\\n").encode())
    except OSError:
        pass
    data = b""
    while b"\\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    print(data.partition(b"\\n")[0].decode() or json.dumps({"closed": True}))
    sock.close()
"""
CANARY = """
[jobs.canary]
schedule = "every 1s"
command = "true"
timeout = "5s"
"""


def as_nobody(socket_path: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", CLIENT, socket_path, json.dumps(OPS)],
        capture_output=True,
        text=True,
        timeout=60,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is needed to run a client as another user")


def test_socket_file_is_0660_and_owned_by_the_daemon_user(tally) -> None:
    with fault_daemon(CANARY) as daemon:
        info = os.lstat(daemon.socket)
        tally.inputs += 1
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660, oct(info.st_mode)
        assert info.st_uid == os.geteuid()
        assert info.st_gid == os.getegid()
    assert not os.path.exists(daemon.socket), "the socket outlived the daemon"
    tally.check()


def test_another_user_is_refused_every_operation(tally, skip_unless_root) -> None:
    with fault_daemon(CANARY) as daemon:
        os.chmod(daemon.folder, 0o711)  # let uid 65534 reach the socket by name
        # The file mode stops another user at connect() ...
        replies = as_nobody(daemon.socket)
        tally.inputs += len(replies)
        tally.faults += len(replies)
        assert [set(r) for r in replies] == [{"refused_at_connect"}] * len(OPS), replies
        # ... and with the mode opened up, SO_PEERCRED refuses every operation.
        os.chmod(daemon.socket, 0o666)
        replies = as_nobody(daemon.socket)
        tally.inputs += len(replies)
        tally.faults += len(replies)
        codes = [r.get("error", {}).get("code") for r in replies]
        assert codes == ["forbidden"] * len(OPS), replies
        assert all(r["ok"] is False for r in replies)
        # Nothing the refused client asked for happened.
        status = daemon.call("status")
        assert status["jobs"][0]["enabled"] is True
        assert daemon.proc.poll() is None
        manual = [r for r in history(daemon) if r["trigger"] == "manual"]
        assert not manual, manual
        tally.crashes += crashes(daemon)
    tally.check()


def test_registry_description_escapes_never_reach_the_terminal(evil_daemon, tally) -> None:
    """``status JOB`` prints the description: its control characters must be escaped
    as the error's are (an escape sequence can retitle, hide or rewrite a terminal)."""
    done = evil_daemon.cli("status", LONGEST_NAME)
    tally.inputs += 1
    tally.faults += 1
    description = [line for line in done.stdout.splitlines() if line.startswith("description")]
    assert description and "[red]markup[/red]" in description[0]
    assert "\x1b" not in description[0] and "\x07" not in description[0], description[0]
    tally.check()


LONGEST_NAME = "z" + "0123456789" * 6 + "._-"  # 64 characters, the limit
PAYLOAD = (
    "$(touch @DIR@/pwned) `touch @DIR@/pwned2` ; touch @DIR@/pwned3 "
    "[red]markup[/red] [link=file:///etc/passwd]link[/link] "
    "%s%n%(job)s{0}{job!r} \\u001b[31mANSI\\u001b[0m\\u001b]0;title\\u0007 end"
)
EVIL_JOBS = f"""
[jobs."{LONGEST_NAME}"]
description = "{PAYLOAD}"
schedule = "@reboot"
command = ["@PY@", "-c", "import os, sys; print(os.environ['PAYLOAD']); sys.exit(1)"]
env = {{ PAYLOAD = "{PAYLOAD}" }}
timeout = "10s"

[jobs.a]
schedule = "@reboot"
command = ["@PY@", "-c", "import os; print(os.environ['PAYLOAD'])"]
env = {{ PAYLOAD = "{PAYLOAD}" }}
timeout = "10s"
"""


@pytest.fixture(scope="module")
def evil_daemon() -> Iterator[DaemonProcess]:
    with fault_daemon(EVIL_JOBS, env={"COLUMNS": "400", "NO_COLOR": "1"}) as daemon:
        yield daemon


def _without_description(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("description"))


def test_job_output_errors_and_names_are_shown_never_evaluated(
    evil_daemon, tally, tmp_path
) -> None:
    daemon = evil_daemon
    payload = PAYLOAD.replace("@DIR@", str(daemon.folder))
    payload = payload.encode().decode("unicode_escape")
    rows = wait_until(
        lambda: (r := history(daemon)) and len(r) == 2 and all(x["completed_at"] for x in r) and r,
        20,
        what="both runs",
    )
    evil = next(r for r in rows if r["job_name"] == LONGEST_NAME)
    assert evil["status"] == "failed"
    assert evil["error"] == payload.strip()
    commands = [
        ("status",),
        ("status", LONGEST_NAME),
        ("history",),
        ("history", LONGEST_NAME),
        ("logs", LONGEST_NAME),
        ("logs", "a"),
        ("status", "$(touch pwned)"),
        ("logs", "%s%n{0}"),
    ]
    outputs: dict[str, str] = {}
    for args in commands:
        for json_flag in ((), ("--json",)):
            done = daemon.cli(*args, *json_flag)
            tally.inputs += 1
            key = " ".join((*args, *json_flag))
            outputs[key] = done.stdout + done.stderr
            if "Traceback" in done.stderr:
                tally.crashes += 1
            expected_code = 1 if args[-1] in ("$(touch pwned)", "%s%n{0}") else 0
            assert done.returncode == expected_code, (key, done.returncode, done.stderr)
            if json_flag and expected_code == 0:
                json.loads(done.stdout)  # well-formed, whatever the text inside
    pwned = [p for p in (daemon.folder, Path.cwd(), tmp_path) for p in p.glob("pwned*")]
    assert not pwned, f"job text was run by a shell: {pwned}"
    history_json = json.loads(daemon.cli("history", LONGEST_NAME, "--json").stdout)
    assert history_json[0]["error"] == payload.strip()
    status_json = json.loads(daemon.cli("status", LONGEST_NAME, "--json").stdout)
    assert LONGEST_NAME in json.dumps(status_json)
    for key, text in outputs.items():
        if "--json" in key:
            continue
        shown = _without_description(text)  # see the test below
        assert "\x1b" not in shown or key.startswith("logs"), f"{key}: raw escape {text!r}"
        if "markup" in text:
            assert "[red]markup[/red]" in text, f"{key}: markup was interpreted: {text!r}"
        if key.startswith("logs %s"):
            assert 'no job named "%s%n{0}"' in text, text
        elif "%n" in text or "{0}" in text:
            assert "%s%n%(job)s{0}{job!r}" in text, f"{key}: format applied: {text!r}"
    for key in ("logs a", f"logs {LONGEST_NAME}"):
        assert "[red]markup[/red]" in outputs[key], outputs[key]
        assert "$(touch" in outputs[key], outputs[key]
    tally.faults += len(commands) * 2
    tally.survivors += len(survivors(tag_of(daemon), grace=0.5))
    tally.crashes += crashes(daemon)
    tally.check()
