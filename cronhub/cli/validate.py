"""``cronhub validate``: check the whole registry without a daemon."""

import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cronhub.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    ExitCode,
    JsonOption,
    now,
    print_json,
    stdout_console,
)

if TYPE_CHECKING:
    from cronhub.errors import ConfigIssue
    from cronhub.model import JobSpec, Registry

SUMMARY_LIMIT = 100
"""Jobs listed in the summary of a valid registry (``--all`` lists every one)."""


def validate(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    json_output: JsonOption = False,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help=f"List every job, not only the first {SUMMARY_LIMIT}, in the summary."
        ),
    ] = False,
) -> None:
    """Check the registry and print every problem.

    Each problem is printed as FILE:LINE: job "NAME": field: message.

    Exits 0 when the registry is valid (warnings included) and 1 when it is not.
    On success prints each job with its next fire time (the first 100 unless
    --all; --json lists them all).
    """
    from cronhub.errors import ConfigError
    from cronhub.registry_file import load_registry

    try:
        registry = load_registry(config)
    except ConfigError as exc:
        if json_output:
            print_json(validation_json(errors=exc.issues))
        else:
            _print_issues(exc.issues)
            if len(exc.issues) > 1:
                print(f"{config}: {_count(exc.issues, 'problem')}", file=sys.stderr)
        raise typer.Exit(int(ExitCode.FAILURE)) from None

    current = now()
    specs = list(registry.jobs.values())
    if json_output:
        jobs = [job_summary(spec, current) for spec in specs]
        print_json(validation_json(warnings=registry.warnings, jobs=jobs))
        return
    _print_issues(registry.warnings)
    listed = specs if show_all else specs[:SUMMARY_LIMIT]
    _print_summary(registry, [job_summary(spec, current) for spec in listed], current)


def job_summary(spec: "JobSpec", current: datetime) -> dict[str, Any]:
    """A job's line in the summary: name, enabled, schedule and its next fire."""
    from cronhub.model import CronSchedule, IntervalSchedule
    from cronhub.schedule import next_fires

    next_run: datetime | None = None
    when = "-"
    if not spec.enabled:
        when = "disabled"
    elif isinstance(spec.schedule, CronSchedule):
        fires = next_fires(spec.schedule, current, 1)
        next_run = fires[0].at if fires else None
        when = "never" if next_run is None else "-"
    elif isinstance(spec.schedule, IntervalSchedule):
        when = "one interval after the daemon starts"
    else:
        when = "once, when the daemon starts"
    return {
        "name": spec.name,
        "enabled": spec.enabled,
        "schedule": spec.schedule.text,
        "next_run": next_run,
        "when": when,
    }


def issue_json(issue: "ConfigIssue") -> dict[str, Any]:
    """One problem as ``{"path", "line", "col", "job", "field", "message"}``."""
    return {
        "path": issue.path,
        "line": issue.line,
        "col": issue.col,
        "job": issue.job,
        "field": issue.field,
        "message": issue.message,
    }


def validation_json(
    *,
    errors: Iterable["ConfigIssue"] = (),
    warnings: Iterable["ConfigIssue"] = (),
    jobs: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The ``validate --json`` document; ``valid`` is true when there are no errors."""
    error_list = [issue_json(issue) for issue in errors]
    return {
        "valid": not error_list,
        "errors": error_list,
        "warnings": [issue_json(issue) for issue in warnings],
        "jobs": [
            {
                "name": job["name"],
                "enabled": job["enabled"],
                "schedule": job["schedule"],
                "next_run": None if job["next_run"] is None else job["next_run"].isoformat(),
            }
            for job in jobs
        ],
    }


def _print_issues(issues: Iterable["ConfigIssue"]) -> None:
    # Plain lines, as compilers print them, so editors and grep can jump to them.
    for issue in issues:
        print(issue, file=sys.stderr)


def _print_summary(registry: "Registry", listed: list[dict[str, Any]], current: datetime) -> None:
    """The headline, then a table of the ``listed`` jobs and how many more there are."""
    from rich.text import Text

    from cronhub import render

    enabled = sum(1 for spec in registry.jobs.values() if spec.enabled)
    headline = Text(f"{registry.path}: valid", style="green")
    headline.append(f" — {_count(registry.jobs, 'job')}, {enabled} enabled", style="")
    if registry.warnings:
        headline.append(f", {_count(registry.warnings, 'warning')}", style="yellow")
    console = stdout_console()
    console.print(headline, soft_wrap=True)
    if listed:
        console.print(render.validate_table(listed, current, width=console.width), crop=False)
    more = len(registry.jobs) - len(listed)
    if more:
        console.print(
            Text(f"… and {_count(range(more), 'more job')} (--all lists them, --json too)"),
            style="dim",
        )


def _count(items: Iterable[object], noun: str) -> str:
    number = len(list(items))
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
