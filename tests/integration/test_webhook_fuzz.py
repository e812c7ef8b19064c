"""Property (issue 12): whatever a correctly signed sender posts, on every webhook scheme,

  2xx  => the delivery becomes an order, or an `order.invalid` case is raised for it, when the
          order worker applies it (`apply_delivery` on the stored item, as the stream would);
  4xx  => nothing was stored;
  never a 5xx, and the worker never leaves the delivery pending but for a fault that may pass
  (a re-fetched answer the platform itself garbled).

Each example starts from a valid notification of the scheme, replaces one to three of its
values (a field anywhere in it, at any depth) by something hostile (JSON nested deeper than
anyone sends, text of up to 270 KB, numbers and times out of range, wrong types, odd Unicode,
ids of thousands of characters), may give the header that carries a delivery id or a shop a
hostile value too, signs the result as the platform would and posts it through the app. For
the thin notifications (Douyin, TikTok Shop, Shopee, Lazada) the platform's answer to the
re-fetch may be made hostile in the same way. Fixed seed, bounded examples: `make test` stays
quick.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib import marketplaces
from chalicelib.core.clock import utcnow
from chalicelib.core.http import Request
from chalicelib.flows.order_worker import apply_delivery, transient
from chalicelib.orders import order_store as orders_store
from tests.integration.flow import inbox_item
from tests.integration.webhook_schemes import (
    ANSWERS,
    SCHEMES,
    Recorder,
    register,
    stand_in_platforms,
)

EXAMPLES = 30  # per scheme: a webhook and, when stored, a worker run each (about 1 s)

Path = tuple[str | int, ...]


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    register()
    with Client(app, stage_name="local") as test_client:
        yield test_client


# Hostile values ---------------------------------------------------------------------------------

_DEEP = "\x00deep:{}\x00"  # replaced by real nesting after json.dumps (which would recurse)


def _text(size: int, char: str) -> str:
    return char * max(1, size // len(char.encode("utf-8")))


HOSTILE: st.SearchStrategy[Any] = st.one_of(
    st.integers(60, 3000).map(lambda depth: _DEEP.format(depth)),
    st.builds(_text, st.sampled_from([600, 60_000, 140_000, 205_000, 270_000]),
              st.sampled_from(["x", "é", "备", "😀"])),
    st.sampled_from([10**12, 10**20, -(10**12), 2**63, -1, 0, 10**40 + 1, 10**200, 1e308,
                     -0.0, 1.5, 4102444800, 946684799]),
    st.sampled_from([None, True, False, [], {}, "", "not a number", [1, 2], {"a": 1}]),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
                     "2026-11-23T10:00:00", "not a time", "2026-02-30T00:00:00Z"]),
    st.sampled_from(["\ud800", "\u0000", "\u202e", "é", "😀", "\ufeff", "\\", '"', "\n"]),
    st.text(max_size=12),
    st.sampled_from(["9" * 3000, "x" * 600, "é" * 300]),
)
HOSTILE_HEADER = st.sampled_from(["9" * 3000, "é", "😀" * 200, " ", "x" * 513])


def _paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every place in a JSON value (the value itself excluded)."""
    found: list[Path] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _replace(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict) and head in value:
        return {**value, head: _replace(value[head], rest, new)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        return [*value[:head], _replace(value[head], rest, new), *value[head + 1:]]
    return value  # an earlier change removed the place


def _encode(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    while "\\u0000deep:" in text:
        start = text.index('"\\u0000deep:')
        end = text.index('\\u0000"', start + 2)
        depth = int(text[start + len('"\\u0000deep:'):end])
        text = text[:start] + "[" * depth + "]" * depth + text[end + len('\\u0000"'):]
    return text.encode("utf-8")


@st.composite
def hostile_change(draw: st.DrawFn, value: Any) -> Any:
    """`value` with one to three of its values replaced by hostile ones."""
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(value)
        if not paths:
            break
        value = _replace(value, draw(st.sampled_from(paths)), draw(HOSTILE))
    return value


def _inner_json(scheme: str, value: Any) -> Any:
    """Douyin carries each message's fields as JSON text: open it, so they can be changed."""
    if scheme == "douyin":
        return [{**m, "data": json.loads(m["data"])} for m in value]
    return value


def _outer_json(scheme: str, value: Any, as_text: bool) -> Any:
    if scheme == "douyin" and as_text and isinstance(value, list):
        return [{**m, "data": _encode(m["data"]).decode()} if isinstance(m, dict) and isinstance(
            m.get("data"), dict) else m for m in value]
    return value


DELIVERY_HEADERS = {"shopify": "X-Shopify-Webhook-Id", "standard": "webhook-id",
                    "woocommerce": "X-WC-Webhook-Delivery-ID"}
SHOP_HEADERS = {"shopify": "X-Shopify-Shop-Domain", "woocommerce": "X-WC-Webhook-Source"}


# A change to the platform's answer to the re-fetch: (a piece of the request's path, the place
# in that answer, the hostile value).
AnswerChange = tuple[str, Path, Any]


@st.composite
def answer_changes(draw: st.DrawFn, scheme: str) -> list[AnswerChange]:
    changes = []
    for _ in range(draw(st.integers(1, 2))):
        piece = draw(st.sampled_from(sorted(ANSWERS[scheme])))
        path = draw(st.sampled_from(_paths(ANSWERS[scheme][piece])))
        changes.append((piece, path, draw(HOSTILE)))
    return changes


def _answer_changer(changes: list[AnswerChange]) -> Any:
    def change(request: Request, answer: Any) -> Any:
        for piece, path, value in changes:
            if piece in request.url and (piece != "/order/get" or "items" not in request.url):
                answer = _replace(answer, path, value)
        # Read as core.http reads an answer (json.loads: too deep is a RecursionError there).
        return json.loads(_encode(answer))

    return change


@st.composite
def hostile_posts(draw: st.DrawFn, scheme: str) -> tuple[bytes, dict[str, str], str | None,
                                                          list[AnswerChange]]:
    """(body, header overrides, delivery id to sign with, changes to the re-fetched answer)."""
    now = utcnow()
    sender = SCHEMES[scheme]
    value = _inner_json(scheme, sender.payload(now))
    value = _outer_json(scheme, draw(hostile_change(value)), draw(st.booleans()))
    delivery = draw(st.none() | HOSTILE_HEADER) if scheme in ("shopify", "standard") else None
    overrides: dict[str, str] = {}
    if scheme in SHOP_HEADERS and draw(st.booleans()):
        overrides[SHOP_HEADERS[scheme]] = draw(HOSTILE_HEADER)
    if scheme == "woocommerce" and draw(st.booleans()):
        overrides[DELIVERY_HEADERS[scheme]] = draw(HOSTILE_HEADER)
    changes = draw(answer_changes(scheme)) if sender.thin and draw(st.booleans()) else []
    return _encode(value), overrides, delivery, changes


# The property -----------------------------------------------------------------------------------


def _reason(response: Any) -> str:
    try:
        return str(json.loads(response.body).get("error", ""))
    except (ValueError, AttributeError):
        return ""


class Run:
    def __init__(self, client: Client, stack: dict[str, str], seen: Recorder,
                 scheme: str) -> None:
        self.client, self.stack, self.seen, self.scheme = client, stack, seen, scheme
        self.source = SCHEMES[scheme].source

    def post(self, body: bytes, overrides: dict[str, str], delivery: str | None) -> Any:
        headers = {**SCHEMES[self.scheme].headers(body, delivery, utcnow()), **overrides}
        return self.client.http.post(f"/webhooks/{self.source}", body=body, headers=headers)

    def finish(self, delivery_id: str, answer_changed: bool) -> None:
        """Apply the stored delivery as the stream would; it must end as an order or a case."""
        item = inbox_item(self.stack, self.source, delivery_id)
        assert item is not None and "pending" in item, delivery_id
        try:
            outcome = apply_delivery(item, utcnow())
        except Exception as exc:
            event(f"worker raised {type(exc).__name__}")
            # Only a fault that may pass may leave it pending: the platform's garbled answer.
            assert answer_changed and transient(exc), repr(exc)
            assert "pending" in (inbox_item(self.stack, self.source, delivery_id) or {})
            return
        event(f"worker: {outcome}")
        after = inbox_item(self.stack, self.source, delivery_id)
        assert after is not None and "pending" not in after, outcome
        if outcome == "split":
            refs = marketplaces.inbound_for(self.scheme).refs
            assert refs is not None
            for ref in refs(item["body"].encode(), item.get("headers", {})):
                self.finish(f"{delivery_id}#{ref.external_id}", answer_changed)
        elif outcome == "invalid":
            assert ("order.invalid", item["pk"]) in [(a.kind, a.subject) for a in
                                                     self.seen.alerts]
        else:
            assert outcome in ("created", "updated", "unchanged", "stale"), outcome
            assert orders_store.get_current(after["outcome_detail"]) is not None

    def check(self, body: bytes, overrides: dict[str, str], delivery: str | None,
              answer_changed: bool) -> None:
        self.seen.reset()
        response = self.post(body, overrides, delivery)
        status = response.status_code
        event(f"{status} {_reason(response)}")
        assert status < 500, (status, response.body[:300])
        if status >= 400:
            assert self.seen.stored == [], (status, response.body[:300])
            return
        (answer,) = self.seen.answers
        if answer["status"] == "accepted":
            self.finish(answer["delivery_id"], answer_changed)


def _property(scheme: str) -> Any:
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(post=hostile_posts(scheme))
    def test(client: Client, stack: dict[str, str],
             post: tuple[bytes, dict[str, str], str | None, list[AnswerChange]]) -> None:
        body, overrides, delivery, changes = post
        with pytest.MonkeyPatch.context() as patch, \
                stand_in_platforms(patch, _answer_changer(changes)):
            Run(client, stack, Recorder(patch), scheme).check(body, overrides, delivery,
                                                              bool(changes))

    test.__name__ = f"test_signed_hostile_{scheme}_webhooks_are_refused_or_applied"
    return test


test_signed_hostile_shopify_webhooks_are_refused_or_applied = _property("shopify")
test_signed_hostile_standard_webhooks_are_refused_or_applied = _property("standard")
test_signed_hostile_woocommerce_webhooks_are_refused_or_applied = _property("woocommerce")
test_signed_hostile_douyin_webhooks_are_refused_or_applied = _property("douyin")
test_signed_hostile_tiktok_shop_webhooks_are_refused_or_applied = _property("tiktok_shop")
test_signed_hostile_shopee_webhooks_are_refused_or_applied = _property("shopee")
test_signed_hostile_lazada_webhooks_are_refused_or_applied = _property("lazada")
