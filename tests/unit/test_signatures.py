"""The one total helper per check (chalicelib/core/signatures.py): whatever a caller sends, each
answers or refuses with ValueError (ApiError for a delivery id), never anything else."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from chalicelib.core.dynamodb import is_validation_error, item_size, to_attrs
from chalicelib.core.errors import ApiError
from chalicelib.core.signatures import (
    MAX_ID_BYTES,
    MAX_JSON_DEPTH,
    BoundedId,
    EpochSeconds,
    bounded_id,
    delivery_id,
    epoch_moment,
    loads_json,
    matches_base64_hmac,
    matches_hex,
    parse_json_object,
    same_signature,
    sane_moment,
)


@given(st.text(), st.text())
def test_same_signature_takes_any_text_and_never_raises(expected: str, given_: str) -> None:
    assert same_signature(expected, given_) == (expected == given_)


@pytest.mark.parametrize("odd", ["é", "\u202e", "😀", "\ud800", "ÿ" * 64, ""])
def test_a_header_with_any_character_compares_false(odd: str) -> None:
    assert not same_signature("0a1b", odd)
    assert not matches_hex(odd, b"{}", ["k:s"], lambda secret, raw: "0a1b")
    assert not matches_base64_hmac(odd, b"{}", ["secret"])


@settings(max_examples=200)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_loads_json_refuses_with_value_error_only(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # and nothing else
        loads_json(data)


@pytest.mark.parametrize("text", [
    "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    "[" * 10_000 + "]" * 10_000,
    "NaN", "[Infinity]", '{"a": -Infinity}', "1e400",
    '{"a": "\\ud800"}', '{"\\udfff": 1}',
    "1" * 5000,
])
def test_loads_json_refuses_what_is_not_json_or_too_deep(text: str) -> None:
    with pytest.raises(ValueError):
        loads_json(text)
    with pytest.raises(ApiError) as refused:
        parse_json_object(text.encode())
    assert (refused.value.status, refused.value.reason) == (400, "malformed_json")


def test_loads_json_takes_what_platforms_send() -> None:
    assert loads_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    assert loads_json(json.dumps({"emoji": "😀", "n": 1.5})) == {"emoji": "😀", "n": 1.5}
    assert loads_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "😀"}  # a pair is one character
    with pytest.raises(ValueError, match="UTF-8"):
        loads_json('{"a": "é"}'.encode("utf-16"))


def test_ids_are_bounded_in_bytes_as_dynamodb_counts_them() -> None:
    assert bounded_id("a" * MAX_ID_BYTES) == "a" * MAX_ID_BYTES
    with pytest.raises(ValueError):
        bounded_id("é" * (MAX_ID_BYTES // 2 + 1))  # 2 bytes each
    with pytest.raises(ValueError):
        bounded_id("")
    with pytest.raises(ApiError) as refused:
        delivery_id("9" * 3000)
    assert (refused.value.status, refused.value.reason) == (400, "invalid_delivery_id")

    class Named(BaseModel):
        id: BoundedId

    with pytest.raises(ValidationError):
        Named(id="x" * 3000)


@pytest.mark.parametrize("value", [10**12, 10**20, -(10**12), -1, 2**63, float("nan"),
                                   float("inf"), 1e308, True, "1795401000", None])
def test_epoch_times_outside_the_window_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        epoch_moment(value)  # type: ignore[arg-type]


def test_epoch_seconds_take_zero_as_not_set_and_times_in_the_window() -> None:
    class Stamped(BaseModel):
        at: EpochSeconds | None = None

    assert Stamped(at=0).at == 0
    assert Stamped(at=1795401000).at == 1795401000
    assert epoch_moment(1795401000) == datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
    for value in (10**12, 10**20, -(10**12)):
        with pytest.raises(ValidationError):
            Stamped(at=value)


def test_a_sane_moment_has_its_zone_and_a_sane_year() -> None:
    china = timezone(timedelta(hours=8))
    assert sane_moment(datetime(2026, 11, 23, tzinfo=china))
    for bad in (datetime(2026, 11, 23), datetime(1, 1, 1, tzinfo=china),
                datetime(9999, 12, 31, tzinfo=UTC)):
        with pytest.raises(ValueError):
            sane_moment(bad)


def test_a_validation_error_is_told_from_what_may_pass() -> None:
    def error(code: str, *reasons: str) -> ClientError:
        response: dict[str, Any] = {"Error": {"Code": code, "Message": code}}
        if reasons:
            response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
        return ClientError(response, "TransactWriteItems")

    assert is_validation_error(error("ValidationException"))
    assert is_validation_error(error("TransactionCanceledException", "None", "ValidationError"))
    assert not is_validation_error(error("TransactionCanceledException", "TransactionConflict"))
    assert not is_validation_error(error("ProvisionedThroughputExceededException"))
    assert not is_validation_error(ValueError("not a store error"))


def test_item_size_counts_as_dynamodb_does() -> None:
    assert item_size(to_attrs({"pk": "abc"})) == 2 + 3
    assert item_size(to_attrs({"s": "é"})) == 1 + 2
    assert item_size(to_attrs({"m": {"a": "b"}, "l": ["x"]})) == (1 + 3 + 1 + 1 + 1) + \
        (1 + 3 + 1 + 1)
    assert item_size(to_attrs({"b": True, "n": None})) == 2 + 2
    assert item_size(to_attrs({"n": 12345})) >= 1 + 3
