"""The DPoP replay cache: a JSON object of token id (``jti``) to expiry (Unix seconds)."""

from __future__ import annotations

import time
from pathlib import Path

from examples import read_json, write_json_atomically


def cleanup_expired(cache_file: str = "var/dpop-cache.json", *, now: float | None = None) -> None:
    """Remove the tokens whose expiry has passed; a missing cache is an empty one."""
    path = Path(cache_file)
    now = time.time() if now is None else now
    if not path.exists():
        print(f"dpop-cache: no cache at {path}, nothing to clean")
        return
    tokens = read_json(path)
    if not isinstance(tokens, dict) or not all(
        isinstance(expiry, int | float) and not isinstance(expiry, bool)
        for expiry in tokens.values()
    ):
        raise ValueError(f"{path}: expected an object of token id to expiry in Unix seconds")
    live = {jti: expiry for jti, expiry in tokens.items() if expiry > now}
    removed = len(tokens) - len(live)
    if removed:
        write_json_atomically(path, live)
    print(f"dpop-cache: removed {removed} expired of {len(tokens)} tokens ({len(live)} left)")
