"""The shipped unit files: `systemd-analyze verify` passes, and what the daemon relies on."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cronhub.model import DEFAULT_KILL_GRACE_MS, DEFAULT_SHUTDOWN_GRACE_MS

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_UNIT = ROOT / "systemd" / "cronhub.service"
USER_UNIT = ROOT / "systemd" / "cronhub-user.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if os.access("/usr/bin/systemd-analyze", os.X_OK) else None
)
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package 'systemd')",
)
UNITS = pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])


def _settings(unit: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values, in file order (keys such as Environment= repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def _one(unit: Path, key: str) -> str:
    values = _settings(unit)[key]
    assert len(values) == 1, f"{key} set {len(values)} times"
    return values[0]


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|min|m|h)?", value)
    assert match is not None, f"unsupported time span {value!r}"
    return int(match[1]) * units[match[2] or "s"]


def _verify(unit: Path, *, user: bool, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    argv = [SYSTEMD_ANALYZE, *(["--user"] if user else []), "verify", str(unit)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@needs_systemd_analyze
def test_system_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists; /usr/local/bin/cronhub is where
    # `pip install` puts it on a real host.  Check the very same text with only that
    # path pointed at a stand-in.
    stand_in = _executable(tmp_path / "bin" / "cronhub")
    text = SYSTEM_UNIT.read_text()
    exec_start = "\nExecStart=/usr/local/bin/cronhub "
    assert text.count(exec_start) == 1
    copy = tmp_path / "cronhub.service"
    copy.write_text(text.replace(exec_start, f"\nExecStart={stand_in} "))
    result = _verify(copy, user=False, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
def test_user_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The file itself, unchanged: %h is $HOME, and ~/.local/bin/cronhub exists there.
    home = tmp_path / "home"
    _executable(home / ".local" / "bin" / "cronhub")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    result = _verify(USER_UNIT, user=True, env=env)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
def test_verify_rejects_a_broken_unit(tmp_path: Path) -> None:
    # Guards the two tests above against a verify that passes everything.
    broken = tmp_path / "cronhub.service"
    broken.write_text("[Service]\nType=notify\nExecStart=/bin/true\nKillMode=sometimes\n")
    result = _verify(broken, user=False, env={"PATH": "/usr/bin:/bin"})
    assert "cronhub.service:4:" in result.stdout + result.stderr


@UNITS
def test_unit_is_a_notify_service_only_the_daemon_may_notify(unit: Path) -> None:
    assert _one(unit, "Service.Type") == "notify"
    assert _one(unit, "Service.NotifyAccess") == "main"


@UNITS
def test_unit_starts_the_daemon_on_a_named_registry(unit: Path) -> None:
    argv = _one(unit, "Service.ExecStart").split()
    assert argv[0].endswith("/cronhub")
    assert argv[1:3] == ["start", "--config"]
    assert argv[3].endswith("/jobs.toml")


@UNITS
def test_reload_sends_sighup_to_the_daemon(unit: Path) -> None:
    assert _one(unit, "Service.ExecReload") == "/bin/kill -HUP $MAINPID"


@UNITS
def test_stop_lets_the_daemon_end_its_job_trees_first(unit: Path) -> None:
    assert _one(unit, "Service.KillMode") == "mixed"
    budget_s = (DEFAULT_SHUTDOWN_GRACE_MS + DEFAULT_KILL_GRACE_MS) / 1000
    assert _seconds(_one(unit, "Service.TimeoutStopSec")) > budget_s


@UNITS
def test_watchdog_and_restart_on_failure_are_on(unit: Path) -> None:
    assert _seconds(_one(unit, "Service.WatchdogSec")) >= 10
    assert _one(unit, "Service.Restart") == "on-failure"
    assert _seconds(_one(unit, "Service.RestartSec")) > 0


@UNITS
def test_state_and_runtime_directories_are_provided(unit: Path) -> None:
    assert _one(unit, "Service.StateDirectory") == "cronhub"
    assert _one(unit, "Service.RuntimeDirectory") == "cronhub"


def test_system_unit_keeps_job_writable_paths_writable() -> None:
    settings = _settings(SYSTEM_UNIT)
    assert settings["Service.ProtectSystem"] == ["full"]
    assert "Service.ProtectHome" not in settings
    assert "Service.MemoryDenyWriteExecute" not in settings
    assert settings["Service.NoNewPrivileges"] == ["yes"]
    assert settings["Service.PrivateTmp"] == ["yes"]


def test_system_unit_runs_as_a_dedicated_user() -> None:
    assert _one(SYSTEM_UNIT, "Service.User") == "cronhub"
    assert _one(SYSTEM_UNIT, "Service.Group") == "cronhub"


def test_user_unit_has_no_user_switch_and_starts_with_the_session() -> None:
    settings = _settings(USER_UNIT)
    assert "Service.User" not in settings
    assert settings["Install.WantedBy"] == ["default.target"]
    assert _one(USER_UNIT, "Service.ExecStart").startswith("%h/.local/bin/cronhub ")
