"""Reading the registry file: real files and real packages in tmp_path."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from cronhub.errors import ConfigError
from cronhub.registry_file import load_registry, module_exists

GOOD = 'schedule = "@daily"\ncommand = "true"\n'


def job(body: str, name: str = "x") -> str:
    """A registry with one job whose header is on line 1."""
    return f"[jobs.{name}]\n" + textwrap.dedent(body)


class TestLoadRegistry:
    def _package(self, root: Path) -> None:
        """``tool.jobs`` whose every module raises when executed."""
        package = root / "tool"
        package.mkdir()
        boom = "raise RuntimeError('executed during validation')\n"
        (package / "__init__.py").write_text(boom)
        (package / "jobs.py").write_text(boom)

    def test_load_reads_the_file_and_checks_modules_without_running_them(
        self, tmp_path: Path
    ) -> None:
        self._package(tmp_path)
        registry_file = tmp_path / "jobs.toml"
        registry_file.write_text(job('schedule = "@daily"\ncallable = "tool.jobs:run"\n'))
        registry = load_registry(registry_file, environ={})
        assert registry.jobs["x"].callable == "tool.jobs:run"
        assert registry.jobs["x"].cwd == str(tmp_path)
        assert "tool" not in sys.modules

    def test_missing_module_is_reported_with_its_line(self, tmp_path: Path) -> None:
        self._package(tmp_path)
        registry_file = tmp_path / "jobs.toml"
        registry_file.write_text(job('schedule = "@daily"\ncallable = "tool.missing:run"\n'))
        with pytest.raises(ConfigError) as caught:
            load_registry(registry_file, environ={})
        assert str(caught.value) == (
            f'{registry_file}:3: job "x": callable: module "tool.missing" not found in the '
            "registry's folder or on sys.path"
        )

    def test_missing_file_names_the_path(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.toml"
        with pytest.raises(ConfigError) as caught:
            load_registry(missing, environ={})
        assert str(caught.value).startswith(f"{missing}: no such file")

    def test_directory_instead_of_a_file_names_the_path(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as caught:
            load_registry(tmp_path, environ={})
        assert str(caught.value).startswith(f"{tmp_path}: cannot read the registry")

    def test_invalid_utf8_is_located(self, tmp_path: Path) -> None:
        registry_file = tmp_path / "jobs.toml"
        registry_file.write_bytes(b'[jobs.x]\ndescription = "caf\xe9"\n')
        with pytest.raises(ConfigError) as caught:
            load_registry(registry_file, environ={})
        issue = caught.value.issues[0]
        assert (issue.line, issue.col) == (2, 19)

    def test_byte_order_mark_is_accepted(self, tmp_path: Path) -> None:
        registry_file = tmp_path / "jobs.toml"
        registry_file.write_bytes(b"\xef\xbb\xbf" + job(GOOD).encode())
        assert list(load_registry(registry_file, environ={}).jobs) == ["x"]

    def test_environ_defaults_to_the_process_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CRONHUB_MAX_CONCURRENT", "4")
        registry_file = tmp_path / "jobs.toml"
        registry_file.write_text("")
        assert load_registry(registry_file).settings.max_concurrent == 4


class TestModuleExists:
    def test_builtin_and_stdlib_modules_exist(self, tmp_path: Path) -> None:
        assert module_exists("sys", str(tmp_path))
        assert module_exists("json", str(tmp_path))
        assert module_exists("email.mime.text", str(tmp_path))

    def test_module_in_the_registry_folder_exists(self, tmp_path: Path) -> None:
        (tmp_path / "local_jobs_mod.py").write_text("raise SystemExit('executed')\n")
        assert module_exists("local_jobs_mod", str(tmp_path))
        assert "local_jobs_mod" not in sys.modules

    def test_submodule_of_a_plain_module_does_not_exist(self, tmp_path: Path) -> None:
        (tmp_path / "flat_mod.py").write_text("")
        assert not module_exists("flat_mod.sub", str(tmp_path))

    def test_unknown_module_does_not_exist(self, tmp_path: Path) -> None:
        assert not module_exists("surely_not_a_module_xyz", str(tmp_path))
