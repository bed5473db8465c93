"""`docs/asyncapi.yaml`, the `/v1/live` protocol for client developers, held against the code.

The document cannot drift: it is valid AsyncAPI 3.0 (the official JSON Schema, `tests/data`);
it documents exactly the message types the server can send (`store.live_events.MESSAGE_TYPES`,
which `_fan_out` enforces, plus every `type` the router writes itself), with the code's enums,
the router's close codes and query parameters; and payloads the code builds validate against
the documented schemas. The integration tests validate every message they receive, too
(`assert_documented_live_message`).
"""

from __future__ import annotations

import ast
import inspect
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest

from serving.routers import live
from serving.routers.devices import DeviceIn
from store import live_events
from store.calendar import VISIBLE_TO, Attendance, AttendanceStatus
from store.keys import RedisKeys
from store.live_events import (
    DEVICE_MOVED,
    EVENT_TYPES,
    FEED_REFRESHED,
    FRIEND_RSVP,
    FRIEND_RSVP_REMOVED,
    MESSAGE_TYPES,
    Cursor,
    LiveEvent,
    parse_cursor,
    rsvp_event,
)
from tests.conftest import (
    assert_documented_live_message,
    asyncapi_document,
    live_message_schemas,
    resolve_ref,
)

SPEC_SCHEMA = Path(__file__).resolve().parents[2] / "data" / "asyncapi-3.0.0.schema.json"
DOCUMENT = asyncapi_document()
CHANNEL = DOCUMENT["channels"]["live"]
POSITION = Cursor(user="1767225601000-0", broadcast="1767225590000-3").encode()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _data_schema(message_type: str) -> dict[str, Any]:
    data: dict[str, Any] = live_message_schemas()[message_type]["properties"]["data"]
    return data


def _syntax(module: object) -> ast.Module:
    return ast.parse(inspect.getsource(module))  # type: ignore[arg-type]


def test_the_document_is_valid_asyncapi_3() -> None:
    assert DOCUMENT["asyncapi"] == "3.0.0"
    jsonschema.Draft7Validator(json.loads(SPEC_SCHEMA.read_text())).validate(DOCUMENT)
    for reference in _refs(DOCUMENT):  # the spec's schema does not check where refs point
        assert resolve_ref({"$ref": reference}) is not None, reference


def test_it_documents_exactly_the_types_the_server_sends() -> None:
    assert set(live_message_schemas()) == MESSAGE_TYPES
    for reference in DOCUMENT["operations"]["sendLiveEvents"]["messages"]:
        message = resolve_ref(reference)
        assert message["name"] == message["payload"]["properties"]["type"]["const"]


def test_only_documented_types_can_be_fanned_out() -> None:
    with pytest.raises(ValueError, match="not a live event type"):
        # Refused before Redis is touched, so no client is needed.
        live_events._fan_out(None, RedisKeys(), [1], "surprise", {})  # type: ignore[arg-type]


def test_every_type_written_in_code_is_registered() -> None:
    """The router's own messages (`{"type": HELLO, ...}`) and every `_fan_out` call."""
    written = [
        getattr(live, value.id)
        for node in ast.walk(_syntax(live))
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and key.value == "type" and isinstance(value, ast.Name)
    ]
    assert set(written) == {"hello", "resync"}
    fanned = [
        getattr(live_events, node.args[3].id)
        for node in ast.walk(_syntax(live_events))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "_fan_out"
        and len(node.args) > 3
        and isinstance(node.args[3], ast.Name)
    ]
    assert set(fanned) == {DEVICE_MOVED, FEED_REFRESHED}  # rsvp_event's types: next test
    assert set(written) | set(fanned) | {FRIEND_RSVP, FRIEND_RSVP_REMOVED} == MESSAGE_TYPES
    assert EVENT_TYPES == MESSAGE_TYPES - {"hello", "resync"}


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, Attendance("812345678901", "going", "friends", "a note", datetime.now(UTC))),
        ("private", Attendance("812345678901", "went", "public", None, datetime.now(UTC))),
        ("friends", None),
        ("public", Attendance("812345678901", "interested", "private", None, datetime.now(UTC))),
    ],
    ids=["answered", "made-public", "deleted", "made-private"],
)
def test_rsvp_payloads_match_their_schemas(before: str | None, after: Attendance | None) -> None:
    event = rsvp_event(actor_id=7, event_id="812345678901", before=before, after=after)
    assert event is not None
    message = LiveEvent(id=POSITION, type=event[0], data=event[1]).message()
    assert_documented_live_message(message)  # notes, for one, would be refused


@pytest.mark.parametrize(
    "message",
    [
        {"id": POSITION, "type": "hello", "data": {"user_id": 42}},
        {"id": POSITION, "type": "resync", "data": {}},
        {"id": POSITION, "type": "feed_refreshed", "data": {"run_id": "r-1"}},
        {"id": POSITION, "type": "device_moved", "data": {"platform": "android"}},
    ],
    ids=lambda message: message["type"],
)
def test_the_schemas_accept_what_the_code_sends(message: dict[str, Any]) -> None:
    assert_documented_live_message(message)


@pytest.mark.parametrize(
    "message",
    [
        {"id": POSITION, "type": "party", "data": {}},
        {"id": "not-a-position", "type": "hello", "data": {"user_id": 42}},
        {"id": POSITION, "type": "hello", "data": {}},
        {"id": POSITION, "type": "feed_refreshed", "data": {"run_id": "r", "extra": 1}},
        {"id": POSITION, "type": "device_moved", "data": {"platform": "windows"}},
    ],
    ids=["unknown-type", "bad-id", "missing-field", "extra-field", "bad-enum"],
)
def test_the_schemas_refuse_what_the_code_never_sends(message: dict[str, Any]) -> None:
    with pytest.raises((AssertionError, jsonschema.ValidationError)):
        assert_documented_live_message(message)


def test_enums_are_the_codes() -> None:
    rsvp = _data_schema(FRIEND_RSVP)["properties"]
    assert set(rsvp["status"]["enum"]) == set(get_args(AttendanceStatus))
    # Only answers friends may see are pushed (`rsvp_event`).
    assert set(rsvp["visibility"]["enum"]) == set(VISIBLE_TO["friend"])
    platform = _data_schema(DEVICE_MOVED)["properties"]["platform"]["enum"]
    assert set(platform) == set(get_args(DeviceIn.model_fields["platform"].annotation))


def test_close_codes_are_the_routers() -> None:
    codes = {value for name, value in vars(live).items() if name.startswith("CLOSE_")}
    assert {entry["code"] for entry in CHANNEL["x-close-codes"]} == codes


def test_query_parameters_are_the_ones_the_router_reads() -> None:
    read = {
        node.args[0].value
        for node in ast.walk(_syntax(live))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "query_params"
        and isinstance(node.args[0], ast.Constant)
    }
    assert set(CHANNEL["bindings"]["ws"]["query"]["properties"]) == read


def test_documented_positions_are_ones_the_server_accepts() -> None:
    position = DOCUMENT["components"]["schemas"]["position"]
    for example in position["examples"]:
        assert parse_cursor(example).encode() == example
    for reference in DOCUMENT["operations"]["sendLiveEvents"]["messages"]:
        for example in resolve_ref(reference)["examples"]:
            assert_documented_live_message(example["payload"])
            parse_cursor(example["payload"]["id"])
