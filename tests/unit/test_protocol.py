"""The control protocol's encoding and validation (pure: bytes in, values out)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronhub.errors import ConfigError, ConfigIssue, JobBusy, JobNotFound, ProtocolError
from cronhub.model import RunStatus
from cronhub.protocol import (
    MAX_REQUEST_BYTES,
    OPS,
    PROTOCOL_VERSION,
    ErrorCode,
    Op,
    Request,
    RequestError,
    decode_reply,
    decode_request,
    encode_error,
    encode_ok,
    encode_request,
    error_for_exception,
    validate_params,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def line(document: object) -> bytes:
    return json.dumps(document).encode() + b"\n"


def refused(raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        decode_request(raw)
    return caught.value


# --- constants -----------------------------------------------------------------


def test_protocol_version_is_1_and_request_cap_is_one_mebibyte() -> None:
    assert PROTOCOL_VERSION == 1
    assert MAX_REQUEST_BYTES == 1024 * 1024


def test_error_codes_are_the_agreed_wire_strings() -> None:
    assert {code.value for code in ErrorCode} >= {
        "bad_json",
        "bad_request",
        "unknown_op",
        "too_large",
        "forbidden",
        "not_found",
        "busy",
        "config_invalid",
        "shutting_down",
        "timeout",
        "internal",
    }


def test_every_agreed_operation_has_a_schema() -> None:
    assert {op.value for op in OPS} == {
        "ping",
        "status",
        "run",
        "enable",
        "disable",
        "history",
        "logs",
        "reload",
        "shutdown",
    }


# --- decode_request: good requests -------------------------------------------------


def test_request_fills_defaults_for_every_declared_param() -> None:
    request = decode_request(line({"op": "history"}))
    assert request == Request(
        Op.HISTORY, {"job": None, "limit": 20, "status": None, "since": None}, None
    )


def test_request_op_compares_equal_to_its_wire_name() -> None:
    assert decode_request(line({"op": "ping"})).op == "ping"


def test_request_id_is_kept() -> None:
    assert decode_request(line({"op": "ping", "id": "abc"})).id == "abc"
    assert decode_request(line({"op": "ping", "id": 7})).id == 7


def test_run_request_keeps_given_values() -> None:
    request = decode_request(line({"op": "run", "job": "backup", "wait": True, "timeout": 2.5}))
    assert request.params == {"job": "backup", "wait": True, "timeout": 2.5}


def test_null_optional_param_means_not_given() -> None:
    request = decode_request(line({"op": "run", "job": "a", "wait": None, "timeout": None}))
    assert request.params == {"job": "a", "wait": False, "timeout": None}


def test_history_accepts_full_filter() -> None:
    since = "2024-01-01T00:00:00+01:00"
    request = decode_request(
        line({"op": "history", "job": "a", "limit": 1000, "status": "failed", "since": since})
    )
    assert request.params == {"job": "a", "limit": 1000, "status": "failed", "since": since}


def test_request_without_trailing_newline_and_with_crlf_decode_alike() -> None:
    assert decode_request(b'{"op":"ping"}') == decode_request(b'{"op":"ping"}\r\n')


def test_unicode_job_name_round_trips() -> None:
    assert decode_request(line({"op": "logs", "job": "sauvegarde-é✓"})).params["job"] == (
        "sauvegarde-é✓"
    )


# --- decode_request: every refusal ------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \n",
        b"{",
        b"not json",
        b'{"op": "ping"} trailing',
        b"\xff\xfe{}",
        b'{"op": "ping", "x": NaN}',
        b'{"op": "ping", "x": Infinity}',
        b'{"op": "ping", "x": -Infinity}',
        b'{"op": "ping", "op": "shutdown"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "empty",
        "blank",
        "truncated",
        "text",
        "trailing-garbage",
        "not-utf8",
        "nan",
        "infinity",
        "minus-infinity",
        "duplicate-key",
        "deep-nesting",
    ],
)
def test_malformed_json_is_bad_json(raw: bytes) -> None:
    assert refused(raw).code == ErrorCode.BAD_JSON


@pytest.mark.parametrize(
    "document",
    [[], "ping", 1, None, ["op", "ping"]],
    ids=["array", "string", "number", "null", "list"],
)
def test_non_object_is_bad_request(document: object) -> None:
    error = refused(line(document))
    assert error.code == ErrorCode.BAD_REQUEST
    assert "JSON object" in str(error)


def test_missing_op_is_bad_request() -> None:
    error = refused(line({"job": "a"}))
    assert (error.code, str(error)) == (ErrorCode.BAD_REQUEST, 'missing "op"')


@pytest.mark.parametrize("op", [1, True, ["ping"], {"name": "ping"}])
def test_op_of_wrong_type_is_bad_request(op: object) -> None:
    assert refused(line({"op": op})).code == ErrorCode.BAD_REQUEST


def test_unknown_op_lists_known_ops() -> None:
    error = refused(line({"op": "explode", "id": 3}))
    assert error.code == ErrorCode.UNKNOWN_OP
    assert error.details == {"ops": [op.value for op in OPS]}
    assert error.request_id == 3


def test_unknown_field_is_bad_request_naming_it() -> None:
    error = refused(line({"op": "ping", "verbose": True}))
    assert error.code == ErrorCode.BAD_REQUEST
    assert '"verbose"' in str(error)


def test_missing_required_param_is_bad_request() -> None:
    error = refused(line({"op": "enable"}))
    assert error.code == ErrorCode.BAD_REQUEST
    assert str(error) == 'enable: missing "job" (a string)'


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"op": "enable", "job": 3}, '"job" must be a string, got an integer'),
        ({"op": "enable", "job": ""}, '"job" must be 1 to 1024 characters'),
        ({"op": "enable", "job": "x" * 1025}, '"job" must be 1 to 1024 characters'),
        ({"op": "run", "job": "a", "wait": "yes"}, '"wait" must be a boolean, got a string'),
        ({"op": "run", "job": "a", "wait": 1}, '"wait" must be a boolean, got an integer'),
        ({"op": "run", "job": "a", "timeout": "5"}, '"timeout" must be a number > 0'),
        ({"op": "run", "job": "a", "timeout": 0}, '"timeout" must be a number > 0, got 0'),
        ({"op": "run", "job": "a", "timeout": -1.5}, '"timeout" must be a number > 0'),
        ({"op": "run", "job": "a", "timeout": True}, '"timeout" must be a number > 0'),
        ({"op": "history", "limit": 0}, '"limit" must be an integer in 1..1000, got 0'),
        ({"op": "history", "limit": 1001}, '"limit" must be an integer in 1..1000, got 1001'),
        ({"op": "history", "limit": 2.5}, '"limit" must be an integer in 1..1000, got a number'),
        ({"op": "history", "limit": True}, '"limit" must be an integer in 1..1000, got a boolean'),
        ({"op": "history", "limit": 10**30}, '"limit" must be an integer in 1..1000'),
        ({"op": "history", "status": "great"}, '"status" must be a string (one of'),
        ({"op": "history", "since": "yesterday"}, '"since" must be an ISO-8601 time'),
        ({"op": "history", "since": "2024-01-01T00:00:00"}, '"since" must be an ISO-8601'),
        ({"op": "logs", "job": "a", "run_id": ["x"]}, '"run_id" must be a string, got an array'),
        ({"op": "status", "job": {"name": "a"}}, '"job" must be a string, got an object'),
    ],
)
def test_wrong_param_is_bad_request_saying_what_was_expected(
    document: dict[str, object], fragment: str
) -> None:
    error = refused(line(document))
    assert error.code == ErrorCode.BAD_REQUEST
    assert fragment in str(error)


def test_history_status_accepts_every_run_status() -> None:
    for status in RunStatus:
        assert decode_request(line({"op": "history", "status": status.value}))


@pytest.mark.parametrize("request_id", [[1], {"a": 1}])
def test_non_scalar_id_is_bad_request(request_id: object) -> None:
    error = refused(line({"op": "ping", "id": request_id}))
    assert error.code == ErrorCode.BAD_REQUEST
    assert error.request_id is None


def test_refusal_after_a_valid_id_carries_the_id() -> None:
    assert refused(line({"op": "enable", "id": "r1"})).request_id == "r1"


def test_line_over_the_cap_is_too_large() -> None:
    raw = b'{"op":"ping","pad":"' + b"x" * MAX_REQUEST_BYTES + b'"}'
    assert refused(raw).code == ErrorCode.TOO_LARGE


def test_refusals_are_protocol_errors() -> None:
    assert isinstance(refused(b"{"), ProtocolError)


def test_echoed_client_text_is_quoted_and_shortened() -> None:
    error = refused(line({"op": "\x1b[31m" + "y" * 500}))
    assert "\x1b" not in str(error)
    assert len(str(error)) < 120


# --- encode_request ------------------------------------------------------------------------


def test_encode_request_is_one_compact_line() -> None:
    raw = encode_request("history", job="a", limit=5)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert json.loads(raw) == {"op": "history", "job": "a", "limit": 5}


def test_encode_request_drops_none_and_formats_datetimes() -> None:
    raw = encode_request("history", job=None, since=NOW)
    assert json.loads(raw) == {"op": "history", "since": "2024-01-01T00:00:00+00:00"}


def test_encoded_request_decodes_to_the_same_values() -> None:
    request = decode_request(encode_request("run", job="backup", wait=True, timeout=3))
    assert request.params == {"job": "backup", "wait": True, "timeout": 3}


def test_encode_request_refuses_what_the_daemon_would_refuse() -> None:
    with pytest.raises(RequestError) as caught:
        encode_request("history", limit=0)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    with pytest.raises(RequestError) as caught:
        encode_request("nope")
    assert caught.value.code == ErrorCode.UNKNOWN_OP


def test_validate_params_is_usable_on_its_own() -> None:
    assert validate_params(Op.LOGS, {"job": "a"}) == {"job": "a", "run_id": None}


# --- replies -----------------------------------------------------------------------------------


def test_ok_reply_round_trips_with_id() -> None:
    raw = encode_ok({"stopping": True}, id=9)
    assert json.loads(raw) == {"ok": True, "result": {"stopping": True}, "id": 9}
    assert decode_reply(raw) == {"stopping": True}


def test_ok_reply_without_id_has_no_id_field() -> None:
    assert "id" not in json.loads(encode_ok(None))


def test_error_reply_raises_remote_code_message_and_details() -> None:
    raw = encode_error("not_found", 'no job named "bakup"', {"candidates": ["backup"]}, id="x")
    assert json.loads(raw)["id"] == "x"
    with pytest.raises(ProtocolError) as caught:
        decode_reply(raw)
    assert caught.value.code == "not_found"
    assert str(caught.value) == 'no job named "bakup"'
    assert caught.value.details == {"candidates": ["backup"]}


def test_error_reply_without_details_omits_them() -> None:
    assert json.loads(encode_error(ErrorCode.BUSY, "busy"))["error"] == {
        "code": "busy",
        "message": "busy",
    }


def test_reply_with_newlines_in_output_stays_one_line() -> None:
    raw = encode_ok({"output": "line 1\nline 2\r\n\x00end\u2028"})
    assert raw.count(b"\n") == 1
    assert decode_reply(raw) == {"output": "line 1\nline 2\r\n\x00end\u2028"}


def test_reply_keeps_non_ascii_as_utf8() -> None:
    raw = encode_ok({"output": "café ✓ 🚀"})
    assert "café ✓ 🚀".encode() in raw


def test_reply_with_lone_surrogates_encodes_them_as_escapes() -> None:
    output = "bad byte \udcff and half a pair \ud83d"
    raw = encode_ok({"output": output})
    raw.decode("utf-8")  # valid UTF-8 on the wire
    assert decode_reply(raw) == {"output": output}


def test_reply_with_non_finite_floats_gets_nulls() -> None:
    result = decode_reply(encode_ok({"a": math.nan, "b": [math.inf, 1.5], "c": -math.inf}))
    assert result == {"a": None, "b": [None, 1.5], "c": None}


def test_reply_converts_common_python_values() -> None:
    @dataclass
    class Point:
        x: int

    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    result = decode_reply(
        encode_ok(
            {
                "at": NOW,
                "status": RunStatus.FAILED,
                "took": timedelta(seconds=1.5),
                "path": PurePosixPath("/etc/cronhub"),
                "raw": b"\xffok",
                "tags": {"b", "a"},
                "point": Point(3),
                "tuple": (1, 2),
                "other": Opaque(),
            }
        )
    )
    assert result == {
        "at": "2024-01-01T00:00:00+00:00",
        "status": "failed",
        "took": 1500.0,
        "path": "/etc/cronhub",
        "raw": "\ufffdok",
        "tags": ["a", "b"],
        "point": {"x": 3},
        "tuple": [1, 2],
        "other": "opaque!",
    }


def test_reply_with_non_string_keys_gets_string_keys() -> None:
    assert decode_reply(encode_ok({1: "a", (2, 3): "b", None: "c"})) == {
        "1": "a",
        "(2, 3)": "b",
        "None": "c",
    }


def test_reply_with_a_cycle_still_encodes() -> None:
    loop: list[object] = [1]
    loop.append(loop)
    assert decode_reply(encode_ok({"loop": loop})) == {"loop": [1, None]}


def test_reply_nested_very_deep_is_cut_not_failed() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(5000):
        child: list[object] = []
        node.append(child)
        node = child
    assert isinstance(decode_reply(encode_ok(deep)), list)


def test_error_reply_with_odd_details_still_encodes() -> None:
    raw = encode_error("internal", "boom \ud800", {"x": math.nan, "when": NOW})
    with pytest.raises(ProtocolError) as caught:
        decode_reply(raw)
    assert caught.value.details == {"x": None, "when": "2024-01-01T00:00:00+00:00"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'{"result": 1}',
        b'{"ok": "yes", "result": 1}',
        b'{"ok": true}',
        b'{"ok": false}',
        b'{"ok": false, "error": "boom"}',
        b'{"ok": false, "error": {"code": 1, "message": "m"}}',
        b'{"ok": false, "error": {"code": "c"}}',
    ],
)
def test_malformed_reply_is_bad_reply(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_reply(raw)
    assert caught.value.code == ErrorCode.BAD_REPLY


# --- handler exceptions to error replies ------------------------------------------------------


def test_job_not_found_maps_to_not_found_with_candidates() -> None:
    code, message, details = error_for_exception(JobNotFound("bakup", ["backup"]))
    assert (code, details) == (ErrorCode.NOT_FOUND, {"candidates": ["backup"]})
    assert "did you mean" in message


def test_job_busy_maps_to_busy() -> None:
    assert error_for_exception(JobBusy("backup"))[0] == ErrorCode.BUSY


def test_config_error_maps_to_config_invalid_with_every_issue() -> None:
    exc = ConfigError([ConfigIssue("bad", path="jobs.toml", line=3), ConfigIssue("worse")])
    code, _, details = error_for_exception(exc)
    assert code == ErrorCode.CONFIG_INVALID
    assert details == {"issues": ["jobs.toml:3: bad", "worse"]}


def test_protocol_error_keeps_its_code() -> None:
    exc = ProtocolError("shutting_down", "stopping")
    assert error_for_exception(exc) == ("shutting_down", "stopping", None)


def test_unexpected_exception_maps_to_internal() -> None:
    code, message, _ = error_for_exception(KeyError("x"))
    assert code == ErrorCode.INTERNAL
    assert message == "internal error: KeyError: 'x'"


# --- properties ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included
    | st.text(st.characters(blacklist_categories=()))  # lone surrogates included
)
python_values = st.recursive(
    json_scalars | st.datetimes(timezones=st.just(UTC)) | st.binary(),
    lambda inner: (
        st.lists(inner)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text() | st.integers(), inner)
    ),
    max_leaves=30,
)


@given(st.binary(max_size=512))
def test_any_bytes_decode_to_a_request_or_a_request_error(raw: bytes) -> None:
    try:
        decode_request(raw)
    except RequestError as exc:
        assert exc.code in {ErrorCode.BAD_JSON, ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_OP}


@given(
    st.dictionaries(
        st.sampled_from(["op", "id", "job", "wait", "timeout", "limit", "status", "since", "x"]),
        json_scalars | st.sampled_from([op.value for op in Op]) | st.lists(json_scalars),
    )
)
def test_any_json_object_decodes_to_a_valid_request_or_a_request_error(
    document: dict[str, object],
) -> None:
    raw = json.dumps(document).encode()  # NaN becomes the NaN token: refused, not crashed
    try:
        request = decode_request(raw)
    except RequestError:
        return
    assert set(request.params) == set(OPS[request.op])


@given(python_values)
def test_any_result_encodes_to_one_valid_utf8_json_line(result: object) -> None:
    raw = encode_ok(result, id=1)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    json.loads(raw.decode("utf-8"))


def test_protocol_run_statuses_match_the_model() -> None:
    from cronhub.model import RunStatus
    from cronhub.protocol import RUN_STATUSES

    assert set(RUN_STATUSES) == {str(s) for s in RunStatus}
