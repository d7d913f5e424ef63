"""Logging set-up for the ``cronhub`` logger tree: journald-aware, or timestamped for people.

Under systemd, stderr is a stream to journald (``$JOURNAL_STREAM`` names it as
``DEVICE:INODE``).  journald stamps every line itself and reads an optional
``<N>`` syslog priority at the start of each line (``SyslogLevelPrefix=yes``,
the default), so there each line is written as ``<6>cronhub.daemon: message``.

journald splits a stream on newlines and every line becomes its own entry, so a
multi-line record (a traceback, a job's error text) cannot stay one entry on a
stream.  Every line of it therefore carries the record's priority prefix: the
traceback of an error stays at priority 3 and ``journalctl -p err`` shows all
of it.  This also keeps text inside a message, which is data (job output,
error strings), from choosing its own priority with a line that starts ``<0>``:
journald strips only the first prefix of a line, ours.

Elsewhere the format is ``2026-11-28 12:00:00,123 INFO cronhub.daemon: message``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from cronhub.errors import ConfigError

__all__ = [
    "JournalFormatter",
    "configure_logging",
    "reset_logging",
    "resolve_level",
    "skip_unused_record_fields",
]

LOGGER_NAME = "cronhub"
LEVEL_ENV = "CRONHUB_LOG_LEVEL"
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"
_HANDLER_NAME = "cronhub.logs"

_LEVEL_NAMES = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class JournalFormatter(logging.Formatter):
    """Formats records for journald: no timestamp, a ``<N>`` priority on every line."""

    def __init__(self, fmt: str = JOURNAL_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.split("\n"))


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a logging level: 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def resolve_level(
    level: str | int | None = None, *, environ: Mapping[str, str] = os.environ
) -> int:
    """The level to log at: ``level``, else ``$CRONHUB_LOG_LEVEL``, else INFO.

    Names are case-insensitive (``debug info warning error critical``); integers
    are logging levels.  Raises :class:`ConfigError` for anything else.
    """
    source = "--log-level"
    if level is None or level == "":
        level = environ.get(LEVEL_ENV) or None
        source = LEVEL_ENV
    if level is None:
        return logging.INFO
    if isinstance(level, bool):
        raise ConfigError(f"{source}: expected a level name, got {level!r}")
    if isinstance(level, int):
        if level < 0:
            raise ConfigError(f"{source}: a log level cannot be negative, got {level}")
        return level
    text = level.strip().lower()
    if text.isdigit():
        return int(text)
    if text in _LEVEL_NAMES:
        return _LEVEL_NAMES[text]
    names = ", ".join(name for name in _LEVEL_NAMES if name != "warn")
    raise ConfigError(f"{source}: unknown log level {level!r}; expected one of {names}")


def use_journal_format(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``stream`` is the journald stream named by ``$JOURNAL_STREAM``.

    As systemd.exec(5) advises, the variable is trusted only when its
    ``DEVICE:INODE`` matches the stream's file descriptor: the variable is
    inherited by every child, whose stderr may long since be a file or a
    terminal.  A stream without a descriptor (an in-memory stream) cannot be
    checked, so there the variable alone decides.
    """
    value = environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    device, _, inode = value.partition(":")
    try:
        stat = os.fstat(fd)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def configure_logging(
    level: str | int | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    stream: TextIO | None = None,
) -> None:
    """Send the ``cronhub`` logger tree to ``stream`` (default: stderr) at ``level``.

    Calling it again replaces the handler it installed before.  The tree stops
    propagating to the root logger, so a root handler installed by some library
    cannot print every line a second time (and, under journald, without a
    priority).  Raises :class:`ConfigError` for an unknown level name.
    """
    resolved = resolve_level(level, environ=environ)
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    if use_journal_format(stream, environ):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT))
    handler.set_name(_HANDLER_NAME)
    logger = logging.getLogger(LOGGER_NAME)
    _remove_our_handlers(logger)
    logger.addHandler(handler)
    logger.setLevel(resolved)
    logger.propagate = False


def skip_unused_record_fields() -> None:
    """Stop ``logging`` filling in what our formats never show: caller, thread, process.

    Process-wide, for the daemon (the ``logging`` HOWTO's "Optimization" switches;
    :func:`reset_logging` leaves them): a busy daemon logs two lines a run, and
    ``findCaller`` alone walks the stack for each.  ``stack_info=True`` is off too.
    """
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if hasattr(logging, "logAsyncioTasks"):  # Python 3.12 and later
        logging.logAsyncioTasks = False


def reset_logging() -> None:
    """Undo :func:`configure_logging`: remove its handler, restore level and propagation."""
    logger = logging.getLogger(LOGGER_NAME)
    _remove_our_handlers(logger)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def _remove_our_handlers(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
            handler.close()
