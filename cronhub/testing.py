"""Fakes for tests of cronhub and of code built on it (like ``structlog.testing``).

Importable without asyncio.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["FakeClock"]

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to.

    ``advance`` moves the wall and monotonic clocks together, as real time does;
    ``jump_wall`` steps the wall clock alone, as an NTP step or a suspend does.
    It satisfies :class:`cronhub.clock.Clock`.
    """

    def __init__(self, wall: datetime = DEFAULT_START, mono: float = 1_000.0) -> None:
        if wall.tzinfo is None:
            raise ValueError("FakeClock needs an aware wall time")
        self.wall = wall.astimezone(UTC)
        self.mono = mono

    def now(self) -> datetime:
        """Aware UTC wall-clock time."""
        return self.wall

    def monotonic(self) -> float:
        """Monotonic seconds."""
        return self.mono

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of real time pass (both clocks move)."""
        if seconds < 0:
            raise ValueError("time does not run backwards; use jump_wall")
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)

    def advance_to(self, wall: datetime) -> None:
        """Let real time pass until the wall clock reads ``wall``."""
        self.advance((wall - self.wall).total_seconds())

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (either sign); monotonic time stays."""
        self.wall += timedelta(seconds=seconds)
