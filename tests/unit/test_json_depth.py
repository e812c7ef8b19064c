"""chalicelib.core.signatures.loads_json: JSON nested deeper than any payload of ours is a
ValueError (400 malformed_json at the edge), never a RecursionError (issue 12, defect 5)."""

from __future__ import annotations

import json

import pytest

from chalicelib.core.signatures import MAX_JSON_DEPTH, loads_json, parse_json_object


def test_loads_json_takes_what_json_loads_takes() -> None:
    value = {"a": [1, {"b": "x[{\"]}"}], "c": None, "d": "\\"}
    text = json.dumps(value)
    assert loads_json(text) == value
    assert loads_json(text.encode()) == value
    nested: object = 1
    for _ in range(MAX_JSON_DEPTH):
        nested = [nested]
    assert loads_json(json.dumps(nested)) == nested


@pytest.mark.parametrize("text", [
    "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    "[" * 10_000 + "]" * 10_000,
    "[" * 100_000,  # not even closed: refused before the parser recurses
    '{"a": ' * 10_000 + "1" + "}" * 10_000,
])
def test_loads_json_refuses_nesting_deeper_than_the_limit_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        loads_json(text)


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = json.dumps({"note": "[" * 10_000, "escaped": '\\"[[[' * 1000})
    assert loads_json(text)["note"] == "[" * 10_000


@pytest.mark.parametrize("data", [b"\xff\xfe{}", b'{"a": ', b"", '"unterminated' * 1000,
                                  '"\\"' * 50_000])
def test_loads_json_answers_value_error_for_what_is_not_json(data: bytes | str) -> None:
    with pytest.raises(ValueError):
        loads_json(data)


def test_parse_json_object_answers_malformed_json_for_deep_bodies() -> None:
    from chalicelib.core.errors import ApiError

    with pytest.raises(ApiError) as raised:
        parse_json_object(b"[" * 10_000 + b"]" * 10_000)
    assert (raised.value.status, raised.value.reason) == (400, "malformed_json")
