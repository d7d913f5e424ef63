"""Logging set-up: journald priority prefixes, the human format, level resolution."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator

import pytest

from cronhub.errors import ConfigError
from cronhub.logs import (
    configure_logging,
    reset_logging,
    resolve_level,
    skip_unused_record_fields,
    use_journal_format,
)

JOURNAL = {"JOURNAL_STREAM": "8:12345"}
HUMAN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<rest>.*)$")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def _configured(environ: dict[str, str], level: str | int | None = "debug") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, environ=environ, stream=stream)
    return stream


def test_journal_lines_carry_syslog_priority_and_no_timestamp() -> None:
    stream = _configured(JOURNAL)
    log = logging.getLogger("cronhub.daemon")
    log.debug("tick")
    log.info("started")
    log.warning("slow")
    log.error("broken")
    log.critical("dead")
    assert stream.getvalue().splitlines() == [
        "<7>cronhub.daemon: tick",
        "<6>cronhub.daemon: started",
        "<4>cronhub.daemon: slow",
        "<3>cronhub.daemon: broken",
        "<3>cronhub.daemon: dead",
    ]


def test_journal_traceback_keeps_error_priority_on_every_line() -> None:
    stream = _configured(JOURNAL)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("cronhub.runner").exception("run failed")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<3>cronhub.runner: run failed"
    assert lines[-1] == "<3>RuntimeError: boom"
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)


def test_journal_message_text_cannot_forge_a_priority() -> None:
    stream = _configured(JOURNAL)
    logging.getLogger("cronhub.runner").info("job said: %s", "line one\n<0>PANIC")
    assert stream.getvalue().splitlines() == [
        "<6>cronhub.runner: job said: line one",
        "<6><0>PANIC",
    ]


def test_human_format_has_timestamp_level_and_logger_name() -> None:
    stream = _configured({})
    logging.getLogger("cronhub.daemon").warning("registry has %d jobs", 8)
    match = HUMAN_LINE.match(stream.getvalue().rstrip("\n"))
    assert match is not None, stream.getvalue()
    assert match["level"] == "WARNING"
    assert match["rest"] == "cronhub.daemon: registry has 8 jobs"


def test_percent_signs_in_arguments_are_printed_verbatim() -> None:
    stream = _configured({})
    logging.getLogger("cronhub.runner").info("output: %s", "100%s done %d")
    assert stream.getvalue().rstrip("\n").endswith("cronhub.runner: output: 100%s done %d")


def test_level_argument_filters_lower_records() -> None:
    stream = _configured(JOURNAL, level="warning")
    logging.getLogger("cronhub.engine").info("hidden")
    logging.getLogger("cronhub.engine").warning("shown")
    assert stream.getvalue() == "<4>cronhub.engine: shown\n"


def test_default_level_is_info() -> None:
    stream = _configured(JOURNAL, level=None)
    logging.getLogger("cronhub").debug("hidden")
    logging.getLogger("cronhub").info("shown")
    assert stream.getvalue() == "<6>cronhub: shown\n"


def test_environment_level_applies_when_no_argument_is_given() -> None:
    assert resolve_level(None, environ={"CRONHUB_LOG_LEVEL": "DEBUG"}) == logging.DEBUG


def test_level_argument_wins_over_environment() -> None:
    assert resolve_level("error", environ={"CRONHUB_LOG_LEVEL": "debug"}) == logging.ERROR


@pytest.mark.parametrize(
    ("given", "expected"),
    [("Warn", logging.WARNING), ("critical", logging.CRITICAL), ("15", 15), (5, 5)],
)
def test_level_names_are_case_insensitive_and_numbers_are_accepted(
    given: str | int, expected: int
) -> None:
    assert resolve_level(given, environ={}) == expected


def test_unknown_level_name_is_a_config_error_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"--log-level: unknown log level 'loud'.*debug, info"):
        configure_logging("loud", environ={}, stream=io.StringIO())


def test_unknown_level_in_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CRONHUB_LOG_LEVEL: unknown log level 'verbose'"):
        resolve_level(None, environ={"CRONHUB_LOG_LEVEL": "verbose"})


def test_configuring_twice_replaces_the_handler() -> None:
    first = _configured({})
    second = _configured(JOURNAL)
    logging.getLogger("cronhub").info("once")
    assert first.getvalue() == ""
    assert second.getvalue() == "<6>cronhub: once\n"


def test_records_do_not_propagate_to_root_handlers() -> None:
    root_stream = io.StringIO()
    root_handler = logging.StreamHandler(root_stream)
    logging.getLogger().addHandler(root_handler)
    try:
        _configured(JOURNAL)
        logging.getLogger("cronhub.daemon").warning("only once")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert root_stream.getvalue() == ""


def test_journal_stream_is_trusted_only_for_the_matching_descriptor() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd) as reader, os.fdopen(write_fd, "w") as writer:
        stat = os.fstat(writer.fileno())
        own = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        inherited = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"}
        assert use_journal_format(writer, own)
        assert not use_journal_format(writer, inherited)
        assert not use_journal_format(writer, {"JOURNAL_STREAM": "garbage"})
        assert not use_journal_format(reader, {})


def test_records_without_caller_thread_or_process_still_format_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))  # restored afterwards
    skip_unused_record_fields()
    stream = _configured({})
    records: list[logging.LogRecord] = []
    log = logging.getLogger("cronhub.daemon")
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        log.info("run finished job=%s", "backup")
    finally:
        log.removeHandler(handler)
    (record,) = records
    assert record.funcName == "(unknown function)"  # no stack walk
    assert record.thread is None and record.process is None
    line = HUMAN_LINE.match(stream.getvalue().strip())
    assert line and line["level"] == "INFO"
    assert line["rest"] == "cronhub.daemon: run finished job=backup"
