from __future__ import annotations

import uuid

from cronhub.ids import uuid7


def test_uuid7_has_version_7_and_rfc_variant() -> None:
    value = uuid.UUID(uuid7())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_uuid7_orders_by_time() -> None:
    ids = [uuid7(ms) for ms in (1_000, 2_000, 3_000, 1_700_000_000_000)]
    assert ids == sorted(ids)


def test_uuid7_ids_are_unique_within_a_millisecond() -> None:
    assert len({uuid7(5) for _ in range(10_000)}) == 10_000
