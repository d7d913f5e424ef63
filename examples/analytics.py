"""Daily analytics: count the queue entries processed on one day, per task."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from examples import write_json_atomically


def generate_daily_report(
    queue_dir: str = "var/queue",
    reports_dir: str = "var/reports",
    day: str | None = None,
) -> None:
    """Write ``reports_dir/<day>.json`` for ``day`` (ISO date, UTC; default: yesterday)."""
    report_day = date.fromisoformat(day) if day else datetime.now(UTC).date() - timedelta(days=1)
    tasks: Counter[str] = Counter()
    for path in (Path(queue_dir) / "done").glob("*.json"):
        entry = json.loads(path.read_text(encoding="utf-8"))
        if _processed_on(entry, report_day):
            tasks[str(entry["task"])] += 1
    report = Path(reports_dir) / f"{report_day.isoformat()}.json"
    write_json_atomically(
        report, {"day": report_day.isoformat(), "processed": sum(tasks.values()), "tasks": tasks}
    )
    print(f"analytics: {report_day}: {sum(tasks.values())} entries processed, report in {report}")


def _processed_on(entry: object, day: date) -> bool:
    if not isinstance(entry, dict):
        return False
    processed_at = entry.get("processed_at")
    if not isinstance(processed_at, int | float) or isinstance(processed_at, bool):
        return False
    return datetime.fromtimestamp(processed_at, UTC).date() == day
