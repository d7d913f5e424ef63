"""The control protocol: newline-delimited JSON over a Unix stream socket.

Pure: no I/O, no clock, stdlib only (this module is on the CLI's light import
path).  One request line gets one reply line::

    {"op": "status", "job": "backup", "id": 7}
    {"ok": true, "result": {...}, "id": 7}
    {"ok": false, "error": {"code": "not_found", "message": "...", "details": {...}}}

Requests are validated here, once, against :data:`OPS`; the daemon receives a
:class:`Request` whose ``params`` hold every declared parameter (defaults
filled in) and nothing else.  Replies are encoded so that encoding never
fails, whatever the daemon puts in them.  See ``docs/protocol.md``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import PurePath
from typing import Any, Final, NamedTuple

from cronhub.errors import ConfigError, CronhubError, JobBusy, JobNotFound, ProtocolError

RUN_STATUSES: Final = ("running", "success", "failed", "timeout", "skipped", "interrupted")
"""The values of :class:`cronhub.model.RunStatus`, spelled out to keep this module's
imports light (the CLI loads it); a unit test keeps the two in step."""

PROTOCOL_VERSION: Final = 1
MAX_REQUEST_BYTES: Final = 1024 * 1024
"""The longest request line accepted, newline excluded."""
MAX_REPLY_BYTES: Final = 64 * 1024 * 1024
"""The longest reply line a client accepts (history with output can be large)."""

MAX_NAME_CHARS: Final = 1024
"""Upper bound on ``job`` and ``run_id`` strings (longer ones can name nothing)."""

Scalar = str | int | float | bool | None


class ErrorCode(StrEnum):
    """The ``error.code`` of a failed reply."""

    BAD_JSON = "bad_json"
    """The line is not a JSON document (or not UTF-8, or nested too deep)."""
    BAD_REQUEST = "bad_request"
    """Not an object, or a missing, unknown or mistyped field."""
    UNKNOWN_OP = "unknown_op"
    """``op`` names no operation; ``details.ops`` lists the known ones."""
    TOO_LARGE = "too_large"
    """The request line is longer than ``MAX_REQUEST_BYTES``; the connection is closed."""
    FORBIDDEN = "forbidden"
    """The peer is not root, not the daemon's user and not in the control group."""
    NOT_FOUND = "not_found"
    """No such job (``details.candidates``: closest names) or run."""
    BUSY = "busy"
    """A singleton job is already running, or the daemon has too many connections."""
    CONFIG_INVALID = "config_invalid"
    """``reload`` found a broken registry; ``details.issues`` lists every problem."""
    SHUTTING_DOWN = "shutting_down"
    """The daemon is stopping and no longer takes this request."""
    TIMEOUT = "timeout"
    """A wait ran out (``run`` with ``wait``, an idle connection, or the client's own timeout)."""
    INTERNAL = "internal"
    """The daemon failed while handling the request; the traceback is in its log."""
    BAD_REPLY = "bad_reply"
    """Client side only: the daemon's reply was malformed, too large or missing."""


class Op(StrEnum):
    """The operations of protocol version 1."""

    PING = "ping"
    STATUS = "status"
    RUN = "run"
    ENABLE = "enable"
    DISABLE = "disable"
    HISTORY = "history"
    LOGS = "logs"
    RELOAD = "reload"
    SHUTDOWN = "shutdown"


class Kind(StrEnum):
    """The JSON type a parameter accepts (``bool`` is never an ``int`` here)."""

    STR = "string"
    BOOL = "boolean"
    INT = "integer"
    NUMBER = "number"
    TIME = "time"
    """An ISO-8601 string with a UTC offset, e.g. ``2026-11-28T12:00:00+00:00``."""


_KIND_TEXT: Final = {
    Kind.STR: "a string",
    Kind.BOOL: "a boolean",
    Kind.INT: "an integer",
    Kind.NUMBER: "a number",
    Kind.TIME: "an ISO-8601 time with a UTC offset",
}


class Param(NamedTuple):
    """One request parameter: its type, whether it is required, its range.

    ``null`` is accepted for an optional parameter and means "not given".
    ``minimum``/``maximum`` bound numbers (``exclusive_minimum`` makes the lower
    bound strict); ``choices`` restricts strings; ``max_chars`` bounds strings.
    A named tuple, as :class:`Request` is, rather than a frozen dataclass:
    this module is on the CLI's import path, and each dataclass cost a
    millisecond to create there.
    """

    kind: Kind
    required: bool = False
    default: Scalar = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    max_chars: int = MAX_NAME_CHARS

    def describe(self) -> str:
        """A short human reading, e.g. ``integer in 1..1000``."""
        text = _KIND_TEXT[self.kind]
        if self.choices:
            text += " (one of " + ", ".join(self.choices) + ")"
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            text += f" in {low:g}..{high:g}"
        elif low is not None:
            text += f" > {low:g}" if self.exclusive_minimum else f" >= {low:g}"
        elif high is not None:
            text += f" <= {high:g}"
        return text


_JOB = Param(kind=Kind.STR, required=True)
_JOB_OPTIONAL = Param(kind=Kind.STR)

OPS: Final[Mapping[Op, Mapping[str, Param]]] = {
    Op.PING: {},
    Op.STATUS: {"job": _JOB_OPTIONAL},
    Op.RUN: {
        "job": _JOB,
        "wait": Param(kind=Kind.BOOL, default=False),
        "timeout": Param(kind=Kind.NUMBER, minimum=0, exclusive_minimum=True),
    },
    Op.ENABLE: {"job": _JOB},
    Op.DISABLE: {"job": _JOB},
    Op.HISTORY: {
        "job": _JOB_OPTIONAL,
        "limit": Param(kind=Kind.INT, default=20, minimum=1, maximum=1000),
        "status": Param(kind=Kind.STR, choices=RUN_STATUSES),
        "since": Param(kind=Kind.TIME),
    },
    Op.LOGS: {"job": _JOB, "run_id": Param(kind=Kind.STR)},
    Op.RELOAD: {},
    Op.SHUTDOWN: {},
}
"""Every operation and its parameters (the ``id`` field is allowed on all)."""


class RequestError(ProtocolError):
    """A request line was refused; ``request_id`` is its ``id`` when it had a valid one."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: object = None,
        request_id: Scalar = None,
    ) -> None:
        super().__init__(code, message, details=details)
        self.request_id = request_id


class Request(NamedTuple):
    """A validated request.

    ``params`` holds every parameter :data:`OPS` declares for ``op``: given
    values as sent (``since`` stays an ISO string), absent ones as their
    default (``None`` unless the table says otherwise).
    """

    op: Op
    params: dict[str, Any]
    id: Scalar = None


# --- requests ------------------------------------------------------------------


def decode_request(line: bytes) -> Request:
    """Parse and validate one request line (with or without its newline).

    Raises :class:`RequestError` (a :class:`~cronhub.errors.ProtocolError`) with
    code ``too_large``, ``bad_json``, ``bad_request`` or ``unknown_op``.
    """
    if len(line.rstrip(b"\r\n")) > MAX_REQUEST_BYTES:
        raise RequestError(ErrorCode.TOO_LARGE, f"request is longer than {MAX_REQUEST_BYTES} bytes")
    document = _loads(line, ErrorCode.BAD_JSON)
    if not isinstance(document, dict):
        raise RequestError(
            ErrorCode.BAD_REQUEST,
            f"a request must be a JSON object, got {_json_type(document)}",
        )
    request_id = document.pop("id", None)
    if not _is_scalar(request_id):
        raise RequestError(
            ErrorCode.BAD_REQUEST,
            f'"id" must be a string, number, boolean or null, got {_json_type(request_id)}',
        )
    op_name = document.pop("op", None)
    if op_name is None:
        raise RequestError(ErrorCode.BAD_REQUEST, 'missing "op"', request_id=request_id)
    if not isinstance(op_name, str):
        raise RequestError(
            ErrorCode.BAD_REQUEST,
            f'"op" must be a string, got {_json_type(op_name)}',
            request_id=request_id,
        )
    try:
        op = Op(op_name)
    except ValueError:
        raise RequestError(
            ErrorCode.UNKNOWN_OP,
            f"unknown operation {_quote(op_name)}",
            details={"ops": [op.value for op in OPS]},
            request_id=request_id,
        ) from None
    try:
        params = validate_params(op, document)
    except RequestError as exc:
        exc.request_id = request_id
        raise
    return Request(op, params, request_id)


def validate_params(op: Op, given: Mapping[str, object]) -> dict[str, Any]:
    """Check ``given`` against ``OPS[op]``; return every declared parameter.

    Raises :class:`RequestError` ``bad_request`` naming the first problem.
    """
    schema = OPS[op]
    unknown = sorted(set(given) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise RequestError(
            ErrorCode.BAD_REQUEST,
            f"unknown field {_quote(unknown[0])} for {op} (allowed: {allowed})",
        )
    params: dict[str, Any] = {}
    for name, param in schema.items():
        value = given.get(name)
        if value is None:
            if param.required:
                raise RequestError(
                    ErrorCode.BAD_REQUEST, f'{op}: missing "{name}" ({param.describe()})'
                )
            params[name] = param.default
            continue
        problem = _check(param, value)
        if problem is not None:
            raise RequestError(ErrorCode.BAD_REQUEST, f'{op}: "{name}" {problem}')
        params[name] = value
    return params


def encode_request(op: str, **params: object) -> bytes:
    """One request line.  ``None`` params are left out; datetimes become ISO strings.

    The request is validated as the daemon would, so a bad call fails here
    with :class:`RequestError` instead of a round trip.
    """
    try:
        checked_op = Op(op)
    except ValueError:
        raise RequestError(ErrorCode.UNKNOWN_OP, f"unknown operation {_quote(op)}") from None
    fields = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in params.items()
        if value is not None
    }
    validate_params(checked_op, fields)
    return _dump({"op": checked_op.value, **fields})


# --- replies -------------------------------------------------------------------


def encode_ok(result: object, id: Scalar = None) -> bytes:
    """A success reply line.  Never fails: odd values are converted, not refused."""
    payload: dict[str, object] = {"ok": True, "result": result}
    if id is not None:
        payload["id"] = id
    return _dump(payload)


def encode_error(
    code: str,
    message: str,
    details: object = None,
    id: Scalar = None,
) -> bytes:
    """A failure reply line.  Never fails."""
    error: dict[str, object] = {"code": str(code), "message": str(message)}
    if details is not None:
        error["details"] = details
    payload: dict[str, object] = {"ok": False, "error": error}
    if id is not None:
        payload["id"] = id
    return _dump(payload)


def error_for_exception(exc: BaseException) -> tuple[ErrorCode | str, str, object]:
    """``(code, message, details)`` for an exception a request handler raised.

    Known cronhub errors keep their meaning (``JobNotFound`` is ``not_found``
    with candidates, ``ConfigError`` is ``config_invalid`` with every issue);
    anything else is ``internal``.
    """
    if isinstance(exc, ProtocolError):
        return exc.code, str(exc), exc.details
    if isinstance(exc, JobNotFound):
        return ErrorCode.NOT_FOUND, str(exc), {"candidates": list(exc.candidates)}
    if isinstance(exc, JobBusy):
        return ErrorCode.BUSY, str(exc), None
    if isinstance(exc, ConfigError):
        return ErrorCode.CONFIG_INVALID, str(exc), {"issues": [str(i) for i in exc.issues]}
    if isinstance(exc, CronhubError):
        return ErrorCode.INTERNAL, str(exc), None
    return ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}", None


def decode_reply(line: bytes) -> object:
    """The ``result`` of a reply line, or raise :class:`ProtocolError`.

    A failed reply raises with the daemon's ``code``, ``message`` and
    ``details``; a malformed one raises with code ``bad_reply``.
    """
    document = _loads(line, ErrorCode.BAD_REPLY)
    if not isinstance(document, dict) or not isinstance(document.get("ok"), bool):
        raise ProtocolError(ErrorCode.BAD_REPLY, 'malformed reply: no "ok" field')
    if document["ok"]:
        if "result" not in document:
            raise ProtocolError(ErrorCode.BAD_REPLY, 'malformed reply: no "result" field')
        return document["result"]
    error = document.get("error")
    if (
        not isinstance(error, dict)
        or not isinstance(error.get("code"), str)
        or not isinstance(error.get("message"), str)
    ):
        raise ProtocolError(ErrorCode.BAD_REPLY, 'malformed reply: bad "error" field')
    raise ProtocolError(error["code"], error["message"], details=error.get("details"))


# --- JSON --------------------------------------------------------------------------

_MAX_DEPTH: Final = 64
"""Replies deeper than this are cut (requests are flat anyway)."""


def _loads(line: bytes, code: ErrorCode) -> object:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, bounded nesting."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(code, f"not valid UTF-8 at byte {exc.start}") from None
    if not text.strip():
        raise RequestError(code, "empty line")
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise RequestError(code, f"invalid JSON: {exc}") from None
    except _JSONRefused as exc:
        raise RequestError(code, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(code, "invalid JSON: nested too deep") from None


class _JSONRefused(ValueError):
    pass


def _refuse_constant(name: str) -> object:
    raise _JSONRefused(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _JSONRefused(f"duplicate key {_quote(key)}")
            seen.add(key)
    return result


def _dump(payload: Mapping[str, object]) -> bytes:
    """Compact one-line JSON, UTF-8; lone surrogates become ``\\uXXXX`` escapes.

    Tries the fast path first; on anything JSON refuses (NaN, odd keys,
    cycles, deep nesting) encodes a sanitised copy instead.
    """
    try:
        text = _dumps(payload)
    except (TypeError, ValueError, RecursionError):
        try:
            text = _dumps(_sanitise(payload, depth=0, path=set()))
        except (TypeError, ValueError, RecursionError) as exc:  # not reachable by design
            text = _dumps(
                {
                    "ok": False,
                    "error": {"code": ErrorCode.INTERNAL.value, "message": f"unencodable: {exc}"},
                }
            )
    return text.encode("utf-8", "backslashreplace") + b"\n"


def _dumps(value: object) -> str:
    return json.dumps(
        value,
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
        default=_to_json,
    )


def _to_json(value: object) -> object:
    """``default=`` hook: convert the non-JSON types the daemon may hand over."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, timedelta):
        return value.total_seconds() * 1000
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return str(value)


def _sanitise(value: object, *, depth: int, path: set[int]) -> object:
    """A JSON-safe copy: non-finite floats and cycles become null, keys become strings."""
    if isinstance(value, str | bool | int | None):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH or id(value) in path:
        return None
    if not isinstance(value, dict | list | tuple):
        converted = _to_json(value)
        if isinstance(converted, str):
            return converted
        return _sanitise(converted, depth=depth + 1, path=path)
    path.add(id(value))
    try:
        if isinstance(value, dict):
            return {
                _key(key): _sanitise(item, depth=depth + 1, path=path)
                for key, item in value.items()
            }
        return [_sanitise(item, depth=depth + 1, path=path) for item in value]
    finally:
        path.discard(id(value))


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    converted = _to_json(key)
    return converted if isinstance(converted, str) else str(key)


# --- validation helpers --------------------------------------------------------------


def _check(param: Param, value: object) -> str | None:
    """Why ``value`` does not fit ``param``, or None."""
    expected = f"must be {param.describe()}, got "
    match param.kind:
        case Kind.STR | Kind.TIME:
            if not isinstance(value, str):
                return expected + _json_type(value)
            if not value or len(value) > param.max_chars:
                return f"must be 1 to {param.max_chars} characters"
            if param.choices and value not in param.choices:
                return expected + _quote(value)
            if param.kind is Kind.TIME and not _is_aware_iso(value):
                return expected + _quote(value)
        case Kind.BOOL:
            if not isinstance(value, bool):
                return expected + _json_type(value)
        case Kind.INT:
            if isinstance(value, bool) or not isinstance(value, int):
                return expected + _json_type(value)
            if not _in_range(param, value):
                return expected + str(value)
        case Kind.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return expected + _json_type(value)
            if not math.isfinite(value) or not _in_range(param, value):
                return expected + repr(value)
    return None


def _in_range(param: Param, value: float) -> bool:
    if param.minimum is not None and (
        value <= param.minimum if param.exclusive_minimum else value < param.minimum
    ):
        return False
    return param.maximum is None or value <= param.maximum


def _is_aware_iso(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    return parsed.tzinfo is not None and parsed.utcoffset() is not None


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _quote(text: str, limit: int = 60) -> str:
    """A JSON-quoted, shortened echo of client text (safe to print anywhere)."""
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return json.dumps(shown, ensure_ascii=True)
