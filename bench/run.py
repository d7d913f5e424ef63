"""Run the benchmark suite: ``python -m bench.run [--only NAME ...] [--quick] [--json PATH]``.

Every scenario starts the real daemon on a registry it writes, measures, stops
it, and compares the figure with a reference measured in the same run.  The
table (scenario, cronhub figure, reference figure, ratio, target, pass/fail)
is printed and written as JSON (default ``bench/results/latest.json``).
Exit status: 0 when every scenario measured (targets may still fail; see
``--strict``), 1 when a scenario could not measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Row, Settings, machine
from bench.scenarios import SCENARIOS

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def _compile_cronhub() -> None:
    """Byte-compile cronhub as a wheel install does, so that an editable checkout under
    PYTHONDONTWRITEBYTECODE does not pay for compiling its modules in every CLI run
    (the references' site-packages are compiled)."""
    import compileall

    import cronhub

    compileall.compile_dir(Path(cronhub.__file__).parent, quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        choices=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"run only these ({', '.join(SCENARIOS)})",
    )
    parser.add_argument("--quick", action="store_true", help="short windows: a smoke run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target fails")
    parser.add_argument(
        "--markdown", type=Path, help="also write the table as Markdown (for the README)"
    )
    args = parser.parse_args(argv)

    settings = Settings(quick=args.quick)
    names = args.only or list(SCENARIOS)
    _compile_cronhub()
    began = time.monotonic()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in names:
        print(f"== {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            scenario_rows, scenario_details = SCENARIOS[name](settings)
        except Exception as exc:  # one scenario failing must not lose the others' figures
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            continue
        finally:
            print(f"   {name}: {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
        rows.extend(scenario_rows)
        details[name] = {"seconds": time.monotonic() - t0, **scenario_details}

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "machine": machine(),
        "seconds": time.monotonic() - began,
        "rows": [row.as_dict() for row in rows],
        "errors": errors,
        "details": details,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(rows, errors)
    if args.markdown:
        args.markdown.write_text(markdown_table(rows, report["machine"]))
    print(f"{len(rows)} figures in {report['seconds']:.0f}s; JSON: {args.json}")
    if errors:
        return 1
    if args.strict and any(row.passed is False for row in rows):
        return 2
    return 0


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def markdown_table(rows: Sequence[Row], machine_info: dict[str, Any]) -> str:
    """The rows as a Markdown table: ratios first, absolute figures beside them."""
    lines = [
        f"Measured on {machine_info['cpu'] or 'an unknown CPU'}, {machine_info['cores']} cores, "
        f"Linux {machine_info['kernel']}, Python {machine_info['python']}.",
        "",
        "| scenario | metric | cronhub | reference | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reference = "-"
        if row.reference is not None:
            reference = f"{fmt(row.reference, row.unit)} ({row.reference_name})"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}×"
        verdict = {True: "pass", False: "**FAIL**", None: "-"}[row.passed]
        cells = [
            row.scenario,
            row.metric,
            fmt(row.value, row.unit),
            reference,
            ratio,
            row.target or "-",
            verdict,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def print_table(rows: Sequence[Row], errors: dict[str, str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="cronhub benchmarks")
    for column in ("scenario", "metric", "cronhub", "reference", "ratio", "target", "result"):
        table.add_column(column, overflow="fold")
    for row in rows:
        reference = "-"
        if row.reference is not None:
            reference = escape(f"{fmt(row.reference, row.unit)} ({row.reference_name})")
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "-"}[row.passed]
        table.add_row(
            row.scenario,
            escape(row.metric) + (f"\n[dim]{escape(row.note)}[/]" if row.note else ""),
            fmt(row.value, row.unit),
            reference,
            "-" if row.ratio is None else f"{row.ratio:.2f}×",
            escape(row.target) or "-",
            verdict,
        )
    for name, message in errors.items():
        lines = message.strip().splitlines()
        message = lines[0] if len(lines) < 2 else f"{lines[0]}\n… {lines[-1].strip()}"
        table.add_row(
            name,
            f"[red]could not measure[/]\n{escape(message)}",
            "-",
            "-",
            "-",
            "-",
            "[red]ERROR[/]",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    sys.exit(main())
