"""The scenarios, by the name ``--only`` takes, in the order the full run takes them.

Each is a function ``(Settings) -> (rows, details)``; it starts and stops every
process it needs and leaves no file behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.harness import Row, Settings
from bench.scenarios.callable_start import callable_start
from bench.scenarios.history import history_scale
from bench.scenarios.idle import cli, idle
from bench.scenarios.precision import bursts, light
from bench.scenarios.registry_scale import registry_scale
from bench.scenarios.throughput import throughput

Scenario = Callable[[Settings], tuple[list[Row], dict[str, Any]]]

SCENARIOS: dict[str, Scenario] = {
    "cli": cli,
    "callable": callable_start,
    "idle": idle,
    "registry": registry_scale,
    "history": history_scale,
    "throughput": throughput,
    "bursts": bursts,
    "light": light,
}
