"""A file-backed job queue: ``pending/*.json`` entries, processed into ``done/`` or ``failed/``.

Entries are taken oldest first (by name: :func:`enqueue` names them by time)
and claimed with ``rename``, so an entry is processed at most once even when
two processors overlap.  A claim left behind by a processor that was killed
goes back to the queue once it is ``stale_claim_s`` old.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from examples import write_json_atomically

CLAIMED = ".processing"


def enqueue(directory: str = "var/queue", task: str = "noop", **payload: object) -> Path:
    """Add one entry to ``pending/`` and return its path."""
    path = Path(directory) / "pending" / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    write_json_atomically(path, {"task": task, "payload": payload})
    return path


def process_queue(
    directory: str = "var/queue", batch: int = 100, stale_claim_s: float = 60
) -> None:
    """Process up to ``batch`` pending entries: valid ones go to ``done/``, others to ``failed/``.

    An entry is valid when it is a JSON object with a string ``task``; it is
    stored in ``done/`` with ``processed_at`` (Unix seconds) added.  An invalid
    one is stored in ``failed/`` as ``{"raw": text, "error": reason}``.
    """
    root = Path(directory)
    pending, done, failed = root / "pending", root / "done", root / "failed"
    for folder in (pending, done, failed):
        folder.mkdir(parents=True, exist_ok=True)
    _requeue_stale_claims(pending, stale_claim_s)
    processed = failures = 0
    for path in sorted(p for p in pending.glob("*.json") if p.is_file())[:batch]:
        claimed = path.with_suffix(CLAIMED)
        try:
            path.rename(claimed)
        except FileNotFoundError:
            continue  # another processor took it
        text = claimed.read_text(encoding="utf-8")
        entry, error = _parse(text)
        if error is None:
            write_json_atomically(done / path.name, {**entry, "processed_at": time.time()})
        else:
            write_json_atomically(failed / path.name, {"raw": text, "error": error})
            failures += 1
        claimed.unlink()
        processed += 1
    left = sum(1 for _ in pending.glob("*.json"))
    print(f"job-queue: processed {processed} entries ({failures} failed), {left} still pending")


def _parse(text: str) -> tuple[dict[str, object], str | None]:
    """The entry and None, or an empty entry and why it is invalid."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON: {exc}"
    if not isinstance(entry, dict):
        return {}, "not a JSON object"
    if not isinstance(entry.get("task"), str):
        return {}, 'missing string field "task"'
    return entry, None


def _requeue_stale_claims(pending: Path, stale_claim_s: float) -> None:
    now = time.time()
    for claimed in pending.glob(f"*{CLAIMED}"):
        if now - claimed.stat().st_mtime > stale_claim_s:
            claimed.rename(claimed.with_suffix(".json"))
