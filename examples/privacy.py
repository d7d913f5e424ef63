"""GDPR data exports: ``*.json`` files that must not outlive their retention."""

from __future__ import annotations

import time
from pathlib import Path

SECONDS_PER_DAY = 86_400


def cleanup_expired_exports(
    directory: str = "var/privacy-exports",
    max_age_days: float = 7,
    *,
    now: float | None = None,
) -> None:
    """Delete the ``*.json`` exports last modified more than ``max_age_days`` ago.

    Only regular files directly in ``directory`` are considered; anything else
    there is left alone.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    cutoff = now - max_age_days * SECONDS_PER_DAY
    exports = [path for path in folder.glob("*.json") if path.is_file()]
    expired = [path for path in exports if path.stat().st_mtime < cutoff]
    for path in expired:
        path.unlink(missing_ok=True)
    print(
        f"privacy-exports: deleted {len(expired)} of {len(exports)} exports"
        f" older than {max_age_days:g} days in {folder}"
    )
