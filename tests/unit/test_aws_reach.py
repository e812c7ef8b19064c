"""The scan behind tests/unit/test_policies.py, on code written the ways a store may name its
resources: the SSM paths a secrets store builds from what its callers pass, caching wrappers,
constants, enums, joins, DynamoDB transactions and paginators."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator

import pytest

from tests import aws_reach

SECRETS_STORE = '''
from enum import StrEnum

from chalicelib.core import aws
from chalicelib.core.settings import settings

_cache = {}
COURIERS = "couriers"


class Kind(StrEnum):
    SOURCES = "sources"
    CHANNELS = "channels"


def _path(kind: str, *names: str) -> str:
    return "/".join(["", "order-backbone", settings().stage, "secrets", kind, *names])


def _cached(name, load):
    if name not in _cache:
        _cache[name] = load()
    return _cache[name]


def _read(name: str) -> str:
    client = aws.client("ssm")
    return _cached(name, lambda: client.get_parameter(Name=name, WithDecryption=True))


def source(name: str) -> str:
    return _read(_path(Kind.SOURCES.value, name))


def courier(provider: str) -> str:
    return _read(f"/order-backbone/{settings().stage}/secrets/{COURIERS}/{provider}")


def channel(platform: str, name: str) -> str:
    return _read(_path(Kind.CHANNELS, platform, name))
'''

CALLERS = '''
from chalicelib.access import secrets_probe
from chalicelib.core import aws
from chalicelib.core.dynamodb import Action, transact
from chalicelib.core.settings import settings

INDEX = "by-order"


def webhook(name):
    return secrets_probe.source(name)


def notifier(platform, name):
    return secrets_probe.channel(platform, name)


def tracker(provider):
    return secrets_probe.courier(provider)


def ledger(case_id):
    put = {"TableName": settings().cases_table, "Item": {}}
    transact([Action("case", {"Put": put}),
              Action("marker", {"Delete": {"TableName": settings().cases_table, "Key": {}}})])
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=settings().cases_table, IndexName=INDEX)
    return list(pages)
'''


@pytest.fixture
def probe_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = aws_reach.modules()
    extra = {}
    for name, source in (("chalicelib.access.secrets_probe", SECRETS_STORE),
                         ("chalicelib.flows.probe_callers", CALLERS)):
        info = aws_reach.ModuleInfo(name, ast.parse(textwrap.dedent(source)))
        for node in info.tree.body:
            aws_reach._declare(info, node)
        extra[name] = info
    monkeypatch.setattr(aws_reach, "modules", lambda: {**real, **extra})
    yield


def described(operations: frozenset[aws_reach.Operation]) -> set[tuple[str, str, str]]:
    return {(o.service, o.name, "|".join(sorted(aws_reach.texts(
        o.argument("Name") or o.argument("TableName"))))) for o in operations}


@pytest.mark.usefixtures("probe_modules")
def test_a_path_is_built_from_what_each_caller_passes() -> None:
    stage = "${ENV:APP_STAGE}"
    assert described(aws_reach.reach("chalicelib.flows.probe_callers", "webhook")) == {
        ("ssm", "GetParameter", f"/order-backbone/{stage}/secrets/sources/*")}
    assert described(aws_reach.reach("chalicelib.flows.probe_callers", "notifier")) == {
        ("ssm", "GetParameter", f"/order-backbone/{stage}/secrets/channels/*/*")}
    assert described(aws_reach.reach("chalicelib.flows.probe_callers", "tracker")) == {
        ("ssm", "GetParameter", f"/order-backbone/{stage}/secrets/couriers/*")}
    (read,) = aws_reach.reach("chalicelib.flows.probe_callers", "webhook")
    assert aws_reach.Const(True) in read.argument("WithDecryption")


@pytest.mark.usefixtures("probe_modules")
def test_transaction_items_and_paginated_queries_name_their_table_and_index() -> None:
    found = aws_reach.reach("chalicelib.flows.probe_callers", "ledger")
    table = "${ENV:CASES_TABLE}"
    assert described(found) == {("dynamodb", "PutItem", table), ("dynamodb", "DeleteItem", table),
                                ("dynamodb", "Query", table),
                                ("dynamodb", "TransactWriteItems", "*")}
    (query,) = [o for o in found if o.name == "Query"]
    assert aws_reach.texts(query.argument("IndexName")) == {"by-order"}
