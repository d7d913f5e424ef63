"""Small, real jobs behind the example ``jobs.toml``.

They stand in for the services of the design's application (a DPoP replay
cache, a job queue, plugin instances, GDPR exports) and work on plain files
under a data folder, ``var/`` next to ``jobs.toml`` by default (a job's working
directory is the registry's folder).  Every function takes its paths as
arguments, creates folders on demand, prints one summary line and raises
with a clear message when something is wrong, so a failed run says why.

``python -m examples.seed`` fills ``var/`` with demo data (expired tokens,
old exports, pending queue entries …) so the first runs have work to do.
Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["read_json", "write_json_atomically"]


def read_json(path: Path) -> object:
    """Load a JSON file; a malformed one raises ``ValueError`` naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc


def write_json_atomically(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` so that readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
