"""Durations and sizes as users write them: ``"1h30m"``, ``"500ms"``, ``"64KiB"``.

Pure and dependency-free, so the CLI can use it without importing the core.
"""

from __future__ import annotations

import re

from cronhub.errors import ConfigError

_DURATION_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1_000,
    "kb": 1_000,
    "kib": 1_024,
    "m": 1_000_000,
    "mb": 1_000_000,
    "mib": 1_048_576,
    "g": 1_000_000_000,
    "gb": 1_000_000_000,
    "gib": 1_073_741_824,
}
_SIZE = re.compile(r"(\d+)\s*([a-z]*)")

MAX_DURATION_MS = 366 * 86_400_000
"""Longest duration accepted anywhere (a year and a day)."""


def parse_duration(value: object) -> int:
    """Return ``value`` in whole milliseconds.

    Accepts a non-negative integer of milliseconds or a string of one or more
    ``<number><unit>`` parts with units ``ms s m h d`` (``"1h30m"``, ``"1.5s"``).
    Raises :class:`ConfigError` (without location) otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(
            f'expected a duration like "30s" or integer milliseconds, got {_show(value)}'
        )
    if isinstance(value, int):
        ms = value
    else:
        text = value.strip().lower()
        ms_float = 0.0
        position = 0
        for match in _DURATION_PART.finditer(text):
            if match.start() != position:
                break
            ms_float += float(match.group(1)) * _DURATION_UNITS_MS[match.group(2)]
            position = match.end()
        if not text or position != len(text):
            raise ConfigError(
                'expected a duration like "500ms", "30s", "5m", "1h30m" or "2d", '
                f"got {_show(value)}"
            )
        ms = round(ms_float)
    if ms < 0:
        raise ConfigError(f"a duration cannot be negative, got {_show(value)}")
    if ms > MAX_DURATION_MS:
        raise ConfigError(f"duration {_show(value)} is longer than a year")
    return ms


def parse_size(value: object) -> int:
    """Return ``value`` in bytes: an integer, or ``"64KiB"``, ``"1MB"``, ``"512"``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f'expected a size like "64KiB" or integer bytes, got {_show(value)}')
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip().lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise ConfigError(f'expected a size like "64KiB" or "1MiB", got {_show(value)}')
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < 0:
        raise ConfigError(f"a size cannot be negative, got {_show(value)}")
    return size


def format_duration_ms(ms: float | None) -> str:
    """Render milliseconds compactly: ``850ms``, ``12.3s``, ``4m05s``, ``2h10m``, ``3d4h``."""
    if ms is None:
        return "-"
    if ms < 1_000:
        return f"{ms:.0f}ms"
    seconds = ms / 1_000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
