"""Broken registries, made by mutating a good one (seeded, so every case replays).

Each mutation is meant to break the registry: a value the key cannot take (wrong
type, out of range, huge, unicode), a TOML syntax error, a duplicate table or key,
an unknown key or table, a missing required key, or a cut-off file.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

GOOD_JOBS = """
[defaults]
timeout = "5m"
kill_grace = "2s"

[jobs.canary]
description = "keeps the beat"
schedule = "every 1s"
command = "true"
timeout = "10s"

[jobs.nightly-backup]
schedule = "0 2 * * *"
command = ["/bin/echo", "backup"]
timeout = "1h"
retries = 2
retry_delay = "30s"
env = { TARGET = "/srv/backup" }

[jobs.report]
schedule = "*/15 * * * *"
callable = "faultjobs.misbehave:record"
kwargs = { path = "report.txt" }
singleton = false
output_limit = "128KiB"
"""

HUGE = 10**30
BAD_VALUES: dict[str, list[str]] = {
    "schedule": [
        '"every 0s"',
        '"every 500ms"',
        '"61 * * * *"',
        '"* * * *"',
        '"@never"',
        '""',
        '"every"',
        '"0 0 31 2 * * *"',
        "-5",
        "true",
        "[]",
        '"every -1s"',
        f'"every {HUGE}s"',
        '"* * * * * * * *"',
        '"ⅻ * * * *"',
        '"@reboot @daily"',
        "{}",
        '"0 0 30 2 *"',
    ],
    "command": ["3", "true", "[]", "[1, 2]", "{ a = 1 }", '""', "1.5", "[[]]"],
    "callable": ['"no.such.module:f"', '"faultjobs.misbehave"', '":"', '"a b:c"', "7", '""'],
    "timeout": [
        '"ten"',
        "-1",
        '"0s"',
        f"{HUGE}",
        '"5 parsecs"',
        "true",
        "[1]",
        "inf",
        "nan",
        '"1e9999h"',
        '"∞"',
        "1.5",
    ],
    "kill_grace": ['"soon"', "-3", "[]", f'"{HUGE}d"'],
    "retries": ['"3"', "-1", "1000000", "2.5", "true", f"{HUGE}"],
    "retry_delay": ['"later"', "-10", "{}"],
    "run_on_startup": ['"yes please"', "2", "[]"],
    "singleton": ['"maybe"', "3", "{}"],
    "enabled": ['"perhaps"', "7", "1979-05-27"],
    "timezone": ['"Mars/Olympus_Mons"', '""', "5", '"UTC+25"', '"../../etc/passwd"'],
    "env": ['"A=B"', "[1]", "{ A = 1 }", '{ "" = "x" }', "{ A = { B = 1 } }", "5"],
    "cwd": ["5", "[]", '"relative\\u0000nul"'],
    "output_limit": ['"lots"', "-1", f"{HUGE}", '"1TiB"', "0.5"],
    "description": ["5", "[]", "{}"],
    "args": ['"not a list"', "5"],
    "kwargs": ['"not a table"', "[1]"],
}
SCHEDULER_BAD: dict[str, list[str]] = {
    "max_concurrent": ["0", "-1", '"lots"', f"{HUGE}", "1.5", "[]"],
    "history_retention_days": ["-1", '"forever"', f"{HUGE}", "0.5"],
    "shutdown_grace": ['"a while"', "-1", "[]"],
    "timezone": ['"Nowhere/Land"', "1"],
    "control_group": ["5", "[]", '"no group with this name"', '""'],
    "enabled": ['"sometimes"', "2"],
    "socket": ["5", "[]", "{}"],
    "database": ["5", "[]", "true"],
}
SYNTAX_BREAKERS = [
    "[jobs.canary",
    "x = ",
    "= 1",
    'broken = "unterminated',
    "[[jobs]]",
    "[jobs.canary]",
    'schedule = "every 2s"',
    "[jobs]\nnope = 1",
    "\x00",
    "key = 1 2",
    "[ ]",
    "a.b.c = = 3",
    "'''",
    "[jobs.report.kwargs]\npath = 1",
    "}",
    "jobs = 5",
    'timeout = """unterminated',
]
NAMES_BAD = [
    "ジョブ",
    "has space",
    "-dash-first",
    "a" * 65,
    "",
    "UPPER",
    "tab\\there",
    "é",
    "😀",
    "semi;colon",
    "$(touch pwned)",
]

Mutation = Callable[[random.Random, list[str], str], list[str]]


def _job_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(header index, end index) of each ``[jobs.*]`` table."""
    heads = [i for i, line in enumerate(lines) if re.match(r"\[jobs\.", line)]
    bounds = []
    for n, head in enumerate(heads):
        end = heads[n + 1] if n + 1 < len(heads) else len(lines)
        bounds.append((head, end))
    return bounds


def _scheduler_block(lines: list[str]) -> tuple[int, int]:
    head = lines.index("[scheduler]")
    end = next((i for i in range(head + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    return head, end


def set_bad_value(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, end = rng.choice(_job_blocks(lines))
    key = rng.choice(sorted(BAD_VALUES))
    value = rng.choice(BAD_VALUES[key])
    body = [line for line in lines[head + 1 : end] if not line.startswith(f"{key} =")]
    if key in ("command", "callable"):
        body = [line for line in body if not re.match(r"(command|callable|args|kwargs) =", line)]
    return [*lines[: head + 1], f"{key} = {value}", *body, *lines[end:]]


def set_bad_scheduler_value(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, end = _scheduler_block(lines)
    key = rng.choice(sorted(SCHEDULER_BAD))
    body = [line for line in lines[head + 1 : end] if not line.startswith(f"{key} =")]
    line = f"{key} = {rng.choice(SCHEDULER_BAD[key])}"
    return [*lines[: head + 1], line, *body, *lines[end:]]


def break_syntax(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    at = rng.randrange(len(lines) + 1)
    return [*lines[:at], *rng.choice(SYNTAX_BREAKERS).split("\n"), *lines[at:]]


def duplicate_table(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, end = rng.choice(_job_blocks(lines))
    return [*lines, "", *lines[head:end]]


def duplicate_key(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, end = rng.choice(_job_blocks(lines))
    keyed = [i for i in range(head + 1, end) if " = " in lines[i]]
    at = rng.choice(keyed)
    return [*lines[: at + 1], lines[at], *lines[at + 1 :]]


def unknown_key(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, _ = rng.choice([*_job_blocks(lines), _scheduler_block(lines)])
    name = rng.choice(["schedul", "timeout_s", "retry", "user", "nice", "x" * 300, "ключ"])
    value = rng.choice(['"x"', "1", "[]", f"{HUGE}", '"' + junk.replace('"', "") + '"'])
    return [*lines[: head + 1], f'"{name}" = {value}', *lines[head + 1 :]]


def unknown_table(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    name = rng.choice(["job", "schedulers", "default", "hooks", "jobs2"])
    return [*lines, f"[{name}]", "a = 1"]


def drop_required(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, end = rng.choice(_job_blocks(lines))
    key = rng.choice(["schedule", "command|callable"])
    return [
        line
        for i, line in enumerate(lines)
        if not (head < i < end and re.match(rf"({key}) =", line))
    ]


def bad_job_name(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, _ = rng.choice(_job_blocks(lines))
    name = rng.choice([*NAMES_BAD, junk or "x y"])
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return [*lines[:head], f'[jobs."{quoted}"]', *lines[head + 1 :]]


def truncate(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    text = "\n".join(lines)
    # Cut inside a quoted value or a table header: always a syntax error.
    spots = [m.start() + 1 for m in re.finditer(r'"[^"\n]{2,}"|\[[^\]\n]+\]', text)]
    return text[: rng.choice(spots)].split("\n")


def wrong_top_level(rng: random.Random, lines: list[str], junk: str) -> list[str]:
    head, end = _scheduler_block(lines)
    replacement = rng.choice(
        ["scheduler = 5", 'defaults = "x"', "jobs = []", 'jobs = { canary = "every 1s" }']
    )
    if replacement.startswith("scheduler"):
        return [replacement, *lines[:head], *lines[end:]]
    return [replacement, *lines]


MUTATIONS: tuple[Mutation, ...] = (
    set_bad_value,
    set_bad_value,
    set_bad_value,
    set_bad_scheduler_value,
    break_syntax,
    duplicate_table,
    duplicate_key,
    unknown_key,
    unknown_table,
    drop_required,
    bad_job_name,
    truncate,
    wrong_top_level,
)


def broken_registry(good: str, seed: int, junk: str = "") -> str:
    """One to three mutations of ``good`` (a whole registry text), chosen by ``seed``."""
    rng = random.Random(seed)
    lines = good.split("\n")
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        mutation = rng.choice(MUTATIONS)
        try:
            lines = mutation(rng, lines, junk)
        except (ValueError, IndexError):  # an earlier mutation removed what it needs
            lines = break_syntax(rng, lines, junk)
    return "\n".join(lines)
