"""``cronhub next``: the coming fire times of a job or of a cron expression."""

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cronhub.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    now,
    print_json,
    scheduler_table,
    stdout_console,
)

if TYPE_CHECKING:
    from rich.text import Text

    from cronhub.model import Schedule


def next_fires(
    job: Annotated[
        str | None, typer.Argument(help="The job (or give --expr).", show_default=False)
    ] = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="How many fire times.")
    ] = 5,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            help="Start from this ISO-8601 time (without an offset: in the schedule's zone)"
            " [default: now].",
            show_default=False,
        ),
    ] = None,
    expr: Annotated[
        str | None,
        typer.Option(
            "--expr",
            "-e",
            help='A schedule to try instead of a job: "0 2 * * *", "@daily", "every 5m".',
            show_default=False,
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            help="With --expr: the IANA time zone [default: $CRONHUB_TIMEZONE, else the"
            " registry's [scheduler].timezone, else UTC].",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    json_output: JsonOption = False,
) -> None:
    """Show the next fire times of a job or an expression.

    Times strictly after --after (default: now), in the schedule's zone.

    Fires that a DST transition moved are marked.  With --json: a list of
    ISO-8601 times with their UTC offsets.
    """
    from cronhub.errors import ScheduleError
    from cronhub.model import CronSchedule
    from cronhub.schedule import describe, parse_schedule
    from cronhub.schedule import next_fires as plan

    if (job is None) == (expr is None):
        raise typer.BadParameter("give either a JOB or --expr", param_hint="JOB / --expr")
    if expr is not None:
        zone = _expr_zone(tz, config)
        try:
            schedule: Schedule = parse_schedule(expr, timezone=zone)
        except ScheduleError as exc:
            raise typer.BadParameter(exc.reason, param_hint="--expr") from None
        title = _title(None, expr, describe(schedule), zone)
    else:
        if tz is not None:
            raise typer.BadParameter(
                "--tz goes with --expr; a job's zone comes from jobs.toml", param_hint="--tz"
            )
        schedule, title = _job_schedule(job or "", config)

    if not isinstance(schedule, CronSchedule):
        _explain_untimed(schedule, json_output)
        return
    start = now() if after is None else parse_after(after, schedule.timezone)
    fires = plan(schedule, start, count)
    if json_output:
        print_json([fire.at.isoformat() for fire in fires])
        return
    from cronhub import render

    console = stdout_console()
    console.print(title, soft_wrap=True)
    if not fires:
        print("no fire times: this schedule never fires again", file=sys.stderr)
        return
    console.print(render.render_next(fires, now()))


def parse_after(value: str, zone: str) -> datetime:
    """``--after``: ISO-8601; a time without an offset is read in ``zone``."""
    from zoneinfo import ZoneInfo

    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f'expected an ISO-8601 time like "2026-10-24T12:00:00+02:00", got "{value}"',
            param_hint="--after",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment


def _expr_zone(tz: str | None, config: Path) -> str:
    if tz:
        return tz
    if os.environ.get("CRONHUB_TIMEZONE"):
        return os.environ["CRONHUB_TIMEZONE"]
    configured = scheduler_table(config).get("timezone")
    return configured if isinstance(configured, str) and configured else "UTC"


def _job_schedule(name: str, config: Path) -> tuple["Schedule", "Text"]:
    from cronhub.errors import JobNotFound
    from cronhub.registry_file import load_registry
    from cronhub.schedule import describe

    registry = load_registry(config)
    spec = registry.jobs.get(name)
    if spec is None:
        raise JobNotFound.among(name, registry.jobs)
    if not spec.enabled:
        print(
            f'note: job "{name}" is disabled in {config}; these are the times it would fire',
            file=sys.stderr,
        )
    title = _title(name, spec.schedule.text, describe(spec.schedule), spec.timezone)
    return spec.schedule, title


def _title(job: str | None, written: str, human: str, zone: str) -> "Text":
    from rich.text import Text

    text = Text()
    if job is not None:
        text.append(f'job "{job}": ', style="bold")
    text.append(written)
    if human and human != written:
        text.append(f" ({human})", style="dim")
    text.append(f" in {zone}", style="dim")
    return text


def _explain_untimed(schedule: "Schedule", json_output: bool) -> None:
    from cronhub.model import IntervalSchedule

    if isinstance(schedule, IntervalSchedule):
        message = (
            f'"{schedule.text}" has no fixed fire times: the first fire is one interval'
            " after the daemon starts, then one every interval"
        )
    else:
        message = '"@reboot" has no fire times: it runs once, when the daemon starts'
    if json_output:
        print_json([])
    print(message, file=sys.stderr if json_output else sys.stdout)
