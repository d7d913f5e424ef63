"""Plugin instances: each running instance keeps ``<name>.json`` fresh as its heartbeat."""

from __future__ import annotations

import time
from pathlib import Path


def cleanup_stale_instances(
    directory: str = "var/plugin-instances",
    stale_after_s: float = 300,
    *,
    now: float | None = None,
) -> None:
    """Delete the registrations of instances whose heartbeat is older than ``stale_after_s``."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    instances = [path for path in folder.glob("*.json") if path.is_file()]
    stale = [path for path in instances if now - path.stat().st_mtime > stale_after_s]
    for path in stale:
        path.unlink(missing_ok=True)
    print(
        f"plugin-instances: removed {len(stale)} stale of {len(instances)} instances"
        f" (no heartbeat for {stale_after_s:g}s) in {folder}"
    )
