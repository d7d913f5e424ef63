"""Run a callable job: ``python -m cronhub.childmain MODULE:FUNCTION [--path DIR] [--args JSON]``.

Imports ``MODULE`` (with ``DIR``, the registry's folder, first on ``sys.path``),
calls ``FUNCTION(*args, **kwargs)`` and awaits the result if it is awaitable.
Returning ends the process with status 0; ``SystemExit`` keeps its own status; any
other exception prints its traceback to stderr (its last line becomes the run's
error) and exits 1.

This is on the start path of every callable run, so it imports nothing from
cronhub and nothing beyond ``os`` and ``sys`` until it needs it.  The runner
executes this file by path (``python .../childmain.py``), which spares the child
importing ``runpy`` and the ``cronhub`` package; ``-m`` works the same.  The
pre-forked launcher (``launcher.py``) loads it once and calls :func:`run` in
each forked run, so both ways of starting a callable share one code path.
"""

from __future__ import annotations

import os
import sys

USAGE = "usage: python -m cronhub.childmain MODULE:FUNCTION [--path DIR] [--args JSON]"
EXIT_FAILED = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    """Import and call the target named on the command line; return the exit status."""
    try:
        target, path, args, kwargs = _parse(sys.argv[1:] if argv is None else argv)
    except _UsageError as exc:
        print(f"cronhub.childmain: {exc}\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    return run(target, path, args, kwargs)


def run(target: str, path: str | None, args: list[object], kwargs: dict[str, object]) -> int:
    """Call ``target`` with ``path`` first on ``sys.path``; return the exit status.

    ``SystemExit`` raised by the job propagates: its status is the run's.
    """
    _set_path(path)
    sys.argv[:] = [target]
    stdout = sys.stdout
    if stdout is not None and hasattr(stdout, "reconfigure"):
        stdout.reconfigure(line_buffering=True)  # output survives a kill, in order
    try:
        function = _resolve(target)
        result = function(*args, **kwargs)
        if hasattr(result, "__await__"):
            _run_awaitable(result)
    except Exception as exc:  # the job's boundary: report any failure as a status
        _report(exc)
        return EXIT_FAILED
    return 0


def _parse(argv: list[str]) -> tuple[str, str | None, list[object], dict[str, object]]:
    if not argv or argv[0].startswith("-"):
        raise _UsageError("missing MODULE:FUNCTION")
    target, rest = argv[0], argv[1:]
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise _UsageError(f"expected MODULE:FUNCTION, got {target!r}")
    path: str | None = None
    call: dict[str, object] = {}
    while rest:
        if len(rest) < 2 or rest[0] not in ("--path", "--args"):
            raise _UsageError(f"unexpected argument {rest[0]!r}")
        option, value, rest = rest[0], rest[1], rest[2:]
        if option == "--path":
            path = value
        else:
            call = _decode_args(value)
    args = call.get("args", [])
    kwargs = call.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise _UsageError('--args must be {"args": [...], "kwargs": {...}}')
    return target, path, args, kwargs


def _decode_args(text: str) -> dict[str, object]:
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _UsageError(f"--args is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _UsageError('--args must be {"args": [...], "kwargs": {...}}')
    return value


def _set_path(path: str | None) -> None:
    """Make ``path`` (default: the working directory) the first entry of ``sys.path``.

    ``sys.path[0]`` is this file's folder when run by path, or the working
    directory with ``-m``; neither should stay (the first would shadow top-level
    modules with cronhub's own).  With ``-P``/``PYTHONSAFEPATH`` nothing was
    prepended, so nothing is replaced.
    """
    entry = os.path.abspath(path) if path else os.getcwd()
    if sys.flags.safe_path:
        sys.path.insert(0, entry)
    else:
        sys.path[0] = entry


def _resolve(target: str) -> object:
    import importlib

    module_name, _, qualname = target.partition(":")
    found: object = importlib.import_module(module_name)
    for name in qualname.split("."):
        found = getattr(found, name)
    if not callable(found):
        raise TypeError(f"{target} is not callable")
    return found


def _run_awaitable(awaitable: object) -> object:
    import asyncio

    if asyncio.iscoroutine(awaitable):
        return asyncio.run(awaitable)

    async def wrapper() -> object:
        return await awaitable  # type: ignore[misc]

    return asyncio.run(wrapper())


def _report(exc: BaseException) -> None:
    """Print the traceback without this module's frames; flush stdout first."""
    import traceback

    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
