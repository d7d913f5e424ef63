"""Fill the example data folder with work for the example jobs.

    python -m examples.seed [DIR]      # DIR defaults to var/

Adds expired and live DPoP tokens, fresh and 10-day-old privacy exports,
pending queue entries (one malformed), fresh and stale plugin instances, and
old and recent audit logs and privacy requests.  Safe to run repeatedly.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from examples import read_json, write_json_atomically
from examples.queue import enqueue

DAY = 86_400


def seed(directory: str = "var", *, now: float | None = None) -> None:
    """Create the demo data under ``directory``."""
    root = Path(directory)
    now = time.time() if now is None else now
    _seed_dpop(root / "dpop-cache.json", now)
    _touch(root / "privacy-exports" / "export-recent.json", now - 1 * DAY, "{}\n")
    _touch(root / "privacy-exports" / "export-old.json", now - 10 * DAY, "{}\n")
    _touch(root / "privacy-exports" / "notes.txt", now - 30 * DAY, "not an export\n")
    _touch(root / "privacy-requests" / "request-recent.json", now - 5 * DAY, "{}\n")
    _touch(root / "privacy-requests" / "request-old.json", now - 120 * DAY, "{}\n")
    _touch(root / "audit" / "audit-recent.log", now - 2 * DAY, "login ok\n")
    _touch(root / "audit" / "audit-old.log", now - 45 * DAY, "login ok\n")
    _touch(root / "plugin-instances" / "search-1.json", now, '{"plugin": "search"}\n')
    _touch(root / "plugin-instances" / "search-0.json", now - 3600, '{"plugin": "search"}\n')
    enqueue(str(root / "queue"), "send-welcome-email", user=42)
    enqueue(str(root / "queue"), "rebuild-search-index")
    malformed = root / "queue" / "pending" / f"{time.time_ns():020d}-malformed.json"
    _touch(malformed, now, '{"payload": "no task field"}\n')
    print(f"seeded example data in {root}")


def _seed_dpop(path: Path, now: float) -> None:
    tokens = read_json(path) if path.exists() else {}
    if not isinstance(tokens, dict):
        tokens = {}
    tokens.update({f"jti-expired-{i}": now - 60 * (i + 1) for i in range(2)})
    tokens.update({f"jti-live-{i}": now + 3600 * (i + 1) for i in range(3)})
    write_json_atomically(path, tokens)


def _touch(path: Path, mtime: float, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))


if __name__ == "__main__":
    seed(*sys.argv[1:2])
