"""Run ids: UUIDs whose leading bits are the creation time (RFC 9562 version 7).

Time-ordered ids keep the history table's primary-key index append-mostly, so
inserts and retention deletes touch few pages even with millions of rows.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7(unix_ms: int | None = None) -> str:
    """A version-7 UUID string for ``unix_ms`` (default: now)."""
    if unix_ms is None:
        unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 bits rand_b
    return str(uuid.UUID(int=value))
