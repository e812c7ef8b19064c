"""Attribute values (chalicelib.core.dynamodb.to_attrs / from_attrs) are boto3's TypeSerializer
and TypeDeserializer conversions, though the common types are done without loading boto3 (a
webhook's cold start loads none of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.core import dynamodb
from chalicelib.core.dynamodb import from_attrs, to_attrs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

numbers = st.integers(-(10**40), 10**40) | st.decimals(allow_nan=False, places=None) \
    | st.sampled_from([Decimal("1E+126"), Decimal("1E+127"), Decimal("1E-130"),
                       Decimal("-Infinity"), Decimal("Infinity"), Decimal("NaN")])
scalars = st.none() | st.booleans() | numbers | st.text(max_size=8) \
    | st.binary(max_size=4) | st.builds(Binary, st.binary(max_size=4)) \
    | st.frozensets(st.text(max_size=3), max_size=3) \
    | st.frozensets(st.integers(-99, 99), max_size=3) \
    | st.frozensets(st.binary(max_size=3), max_size=3) \
    | st.sets(st.text(max_size=3) | st.integers(-9, 9), max_size=3) \
    | st.floats(allow_nan=False) | st.just(object())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10)


def _outcome(convert: Any, value: Any) -> tuple[str, Any]:
    try:
        return "value", convert(value)
    except Exception as exc:  # the same failure, of the same type and words, counts as the same
        return type(exc).__name__, str(exc)


@given(values)
def test_a_value_is_serialised_as_boto3_serialises_it(value: Any) -> None:
    assert _outcome(dynamodb._attr, value) == _outcome(TypeSerializer().serialize, value)


@given(values)
def test_an_attribute_is_read_as_boto3_reads_it(value: Any) -> None:
    try:
        attr = TypeSerializer().serialize(value)
    except (TypeError, ArithmeticError):
        return
    assert _outcome(dynamodb._value, attr) == _outcome(TypeDeserializer().deserialize, attr)


@pytest.mark.parametrize("attr", [{}, {"X": 1}, {"s": "lower case"}, {"bool": True},
                                  {"B": b"\x00"}, {"SS": ["a"]}, {"NS": ["1"]},
                                  {"S": "first", "N": "1"}])
def test_the_unusual_attribute_is_read_as_boto3_reads_it(attr: dict[str, Any]) -> None:
    assert _outcome(dynamodb._value, attr) == _outcome(TypeDeserializer().deserialize, attr)


def test_items_round_trip_with_whole_numbers_as_int() -> None:
    item = {"pk": "a#b", "n": 3, "d": Decimal("1.5"), "f": 0.1, "m": {"l": [1, "x", None, True]},
            "tags": {"x", "y"}}
    assert from_attrs(to_attrs(item)) == {**item, "f": Decimal("0.1")}
    assert to_attrs({"f": 0.1}) == {"f": {"N": "0.1"}}


def test_a_webhook_path_loads_no_boto3() -> None:
    """In a fresh interpreter: the app, a webhook's adapter, its clients and its item, and no
    boto3 (botocore's clients are the same clients; boto3 adds only imports to a cold start)."""
    script = ("import sys\nimport app\nfrom chalicelib import marketplaces\n"
              "from chalicelib.core import aws, dynamodb\n"
              "marketplaces.inbound_for('shopify')\n"
              "aws.client('dynamodb'), aws.client('ssm')\n"
              "dynamodb.from_attrs(dynamodb.to_attrs({'pk': 'x', 'n': 1, 'm': {'l': [None]}}))\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('boto3', 's3transfer')))")
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd=ROOT, env=env).stdout.strip().splitlines()[-1]
    assert loaded == "[]"
