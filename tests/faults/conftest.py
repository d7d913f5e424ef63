"""The fault suite's tally: every test records its figures; the summary prints them.

Figures per test: faults injected, runs expected, runs recorded, runs lost,
duplicates, survivors (job processes alive after their run ended), inputs tried
and crashes (daemon deaths or tracebacks nobody asked for).  Lost, duplicates,
survivors and crashes must be 0: each test asserts its own with
:meth:`Figures.check`, and the summary marks any row where they are not.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

# The suite imports ``tests.support``; make the repository root importable even
# when pytest is run without ``pythonpath = ["."]``.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

ZERO_REQUIRED = ("lost", "duplicates", "survivors", "crashes")


@dataclass
class Figures:
    """What one test did to the daemon and what came back."""

    faults: int = 0
    expected: int = 0
    recorded: int = 0
    lost: int = 0
    duplicates: int = 0
    survivors: int = 0
    inputs: int = 0
    crashes: int = 0

    def add(self, other: Figures) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def bad(self) -> dict[str, int]:
        """The must-be-zero figures that are not."""
        return {name: getattr(self, name) for name in ZERO_REQUIRED if getattr(self, name)}

    def check(self) -> None:
        """Assert that nothing was lost, duplicated, left alive or crashed."""
        assert not self.bad(), f"fault figures must be 0: {self.bad()} ({self})"


_TALLY: dict[str, dict[str, Figures]] = {}
"""Area (test module) -> test name -> figures, for the whole session."""

_HEADERS = (
    "area",
    "tests",
    "faults",
    "expected",
    "recorded",
    "lost",
    "dups",
    "survivors",
    "inputs",
    "crashes",
)


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """This test's figures, added to the session table (kept even if the test fails)."""
    area = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    figures = Figures()
    _TALLY.setdefault(area, {})[request.node.name] = figures
    yield figures


def _row(area: str, tests: int, figures: Figures) -> list[str]:
    values = [getattr(figures, f.name) for f in fields(figures)]
    return [area, str(tests), *(f"{v:,}" for v in values)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TALLY:
        return
    rows: list[list[str]] = []
    total = Figures()
    count = 0
    for area, tests in sorted(_TALLY.items()):
        figures = Figures()
        for each in tests.values():
            figures.add(each)
        total.add(figures)
        count += len(tests)
        rows.append(_row(area, len(tests), figures))
    rows.append(_row("TOTAL", count, total))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_HEADERS)]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    write = terminalreporter.write_line
    terminalreporter.section("cronhub fault suite")
    write(line(_HEADERS))
    write(line(["-" * w for w in widths]))
    for row in rows[:-1]:
        write(line(row))
    write(line(["-" * w for w in widths]))
    write(line(rows[-1]))
    offenders = [
        f"{area}::{name} {figures.bad()}"
        for area, tests in sorted(_TALLY.items())
        for name, figures in tests.items()
        if figures.bad()
    ]
    if offenders:
        write("NOT ZERO (lost, duplicates, survivors, crashes):", red=True, bold=True)
        for offender in offenders:
            write(f"  {offender}", red=True)
    else:
        write("lost = duplicates = survivors = crashes = 0", green=True, bold=True)
