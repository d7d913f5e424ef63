"""The registry watcher: real files, real inotify (and the watchfiles fallback)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cronhub import watch

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self) -> None:
        self.calls = 0
        self.event = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.event.set()

    async def next_call(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


async def watching(path: Path, recorder: Recorder, stop: asyncio.Event) -> asyncio.Task[None]:
    task = asyncio.create_task(watch.watch_registry(path, recorder, stop))
    await asyncio.sleep(0)  # let the watcher register before the test edits
    return task


def test_in_place_write_and_rename_each_give_one_call(tmp_path: Path) -> None:
    registry = tmp_path / "jobs.toml"
    registry.write_text("a = 1\n")

    async def scenario() -> int:
        recorder, stop = Recorder(), asyncio.Event()
        task = await watching(registry, recorder, stop)
        with registry.open("w") as f:  # truncate, write in pieces, close
            f.write("a = ")
            f.flush()
            f.write("2\n")
        await recorder.next_call()
        replacement = tmp_path / ".jobs.toml.tmp"
        replacement.write_text("a = 3\n")
        os.replace(replacement, registry)
        await recorder.next_call()
        stop.set()
        await asyncio.wait_for(task, 5)
        return recorder.calls

    assert asyncio.run(scenario()) == 2


def test_other_files_in_the_folder_are_ignored(tmp_path: Path) -> None:
    registry = tmp_path / "jobs.toml"
    registry.write_text("")

    async def scenario() -> int:
        recorder, stop = Recorder(), asyncio.Event()
        task = await watching(registry, recorder, stop)
        (tmp_path / "cronhub.db").write_text("noise")
        (tmp_path / "other.toml").write_text("noise")
        registry.write_text("a = 1\n")
        await recorder.next_call()
        stop.set()
        await asyncio.wait_for(task, 5)
        return recorder.calls

    assert asyncio.run(scenario()) == 1


def test_a_failing_callback_does_not_stop_the_watch(tmp_path: Path) -> None:
    registry = tmp_path / "jobs.toml"
    registry.write_text("")
    calls = 0

    async def scenario() -> int:
        second = asyncio.Event()

        async def flaky() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            second.set()

        stop = asyncio.Event()
        task = asyncio.create_task(watch.watch_registry(registry, flaky, stop))
        await asyncio.sleep(0)
        registry.write_text("a = 1\n")
        while calls < 1:
            await asyncio.sleep(0.01)
        registry.write_text("a = 2\n")
        await asyncio.wait_for(second.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 5)
        return calls

    assert asyncio.run(scenario()) == 2


def test_watchfiles_fallback_when_inotify_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(folder: Path) -> None:
        raise OSError(38, "no inotify here")

    monkeypatch.setattr(watch, "_Inotify", unavailable)
    registry = tmp_path / "jobs.toml"
    registry.write_text("")

    async def scenario() -> int:
        recorder, stop = Recorder(), asyncio.Event()
        task = asyncio.create_task(watch.watch_registry(registry, recorder, stop))
        # watchfiles' watcher starts in a thread: edit until it reports (deadline 15 s).
        for attempt in range(15):
            registry.write_text(f"a = {attempt}\n")
            try:
                await recorder.next_call(timeout=1.0)
                break
            except TimeoutError:
                continue
        stop.set()
        await asyncio.wait_for(task, 5)
        return recorder.calls

    assert asyncio.run(scenario()) >= 1
