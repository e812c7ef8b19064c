"""The marketplace contract (chalicelib/marketplaces/contract.py) and its registry: every
platform declares one consistent object, the webhook path loads only inbound halves, and the
flows skip what a platform does not declare."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest

from chalicelib import marketplaces
from chalicelib.core.http import Request
from chalicelib.marketplaces import standard_webhooks
from chalicelib.marketplaces.calls import Credentials, OrderRef, Shipped, WritebackResult
from chalicelib.marketplaces.contract import Fetch, Inbound, Listing, Marketplace, ShipmentWrite
from chalicelib.orders.order import Order
from tests.unit.test_jobs import NOW, PKG, packed

SCHEMES = sorted(marketplaces.known_schemes())

# What each platform's API offers us: a change here is a change of behaviour, not a refactor.
# (writeback, fetch, listing, token); writeback "prepare": read before every write, "existing":
# asked before a retry, "plain": neither.
CAPABILITIES: dict[str, tuple[str | None, bool, bool, bool]] = {
    "shopify": ("prepare", True, True, False),
    "standard": (None, False, False, False),
    "woocommerce": ("existing", True, True, False),
    "douyin": ("existing", True, True, False),
    "tiktok_shop": ("existing", True, True, False),
    "shopee": ("existing", True, True, False),
    "lazada": ("existing", True, True, False),
    "amazon": ("plain", True, True, True),
    "taobao": ("existing", True, True, False),
}


def _writeback_kind(marketplace: Marketplace) -> str | None:
    writer = marketplace.writeback
    if writer is None:
        return None
    assert writer.prepare is None or writer.existing is None, "one way of asking, not two"
    return "prepare" if writer.prepare else "existing" if writer.existing else "plain"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_platform_declares_one_consistent_object(scheme: str) -> None:
    marketplace = marketplaces.adapter_for(scheme)
    assert marketplace.name == scheme
    assert marketplace.inbound is marketplaces.inbound_for(scheme)  # one inbound half, shared
    assert (_writeback_kind(marketplace), marketplace.fetch is not None,
            marketplace.listing is not None, marketplace.token is not None) \
        == CAPABILITIES[scheme]


def test_the_table_names_every_registered_platform() -> None:
    assert set(CAPABILITIES) == set(SCHEMES)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_notification_is_read_whole_or_as_a_reference(scheme: str) -> None:
    inbound = marketplaces.inbound_for(scheme)
    whole = scheme in ("shopify", "standard", "woocommerce")
    assert (inbound.normalise is not None, inbound.ref is not None) == (whole, not whole)
    assert (inbound.refs is not None) == (scheme == "douyin")  # Douyin batches its pushes


def test_a_webhook_loads_only_the_inbound_half() -> None:
    """In a fresh interpreter: a Shopify webhook's adapter compiles neither the Admin API half
    nor the HTTP client (both cost a cold start and are not needed to accept a webhook)."""
    script = ("import sys\nfrom chalicelib import marketplaces\n"
              "marketplaces.inbound_for('shopify').reply\n"
              "print(sorted(m for m in ('chalicelib.marketplaces.shopify_admin', "
              "'chalicelib.core.http', 'requests') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_the_registry_refuses_an_unknown_scheme_and_a_module_off_the_contract(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LookupError):
        marketplaces.adapter_for("ebay")
    with pytest.raises(LookupError):
        marketplaces.inbound_for("ebay")
    monkeypatch.setattr(standard_webhooks, "INBOUND", standard_webhooks.accept)
    with pytest.raises(TypeError, match="the contract's Inbound"):
        marketplaces.inbound_for("standard")


def _accept(*_: Any) -> Any:
    raise AssertionError("not called")


def _ref(raw: bytes, headers: Any) -> OrderRef:
    return OrderRef(shop="s", external_id=raw.decode())


def test_the_contract_refuses_an_inconsistent_declaration() -> None:
    with pytest.raises(TypeError, match="either whole"):
        Inbound(accept=_accept)
    with pytest.raises(TypeError, match="either whole"):
        Inbound(accept=_accept, normalise=lambda *_: _never(), ref=_ref)
    with pytest.raises(TypeError, match="refs"):
        Inbound(accept=_accept, normalise=lambda *_: _never(), refs=lambda *_: [])
    thin = Inbound(accept=_accept, ref=_ref)
    with pytest.raises(TypeError, match="thin notification needs fetch"):
        Marketplace(name="x", inbound=thin)
    whole = Inbound(accept=_accept, normalise=lambda *_: _never())
    with pytest.raises(TypeError, match="listed order needs fetch"):
        Marketplace(name="x", inbound=whole, listing=Listing(
            call=lambda *_: Request(url="https://x"), parse=lambda *_: ([], None)))


def _never() -> Order:
    raise AssertionError("not called")


class _Parsed(Exception):
    pass


def test_fetch_sends_each_call_through_send_json_in_turn() -> None:
    sent: list[str] = []

    def send_json(request: Request) -> Any:
        sent.append(request.url)
        return {"url": request.url}

    def calls(ref: OrderRef, credentials: Credentials, now: datetime) -> list[Request]:
        return [Request(url=f"https://p/{ref.external_id}/{part}") for part in ("order", "items")]

    read_answers: list[Any] = []

    def parse(answers: Any, ref: OrderRef, source: str) -> Order:
        read_answers.append(answers)
        raise _Parsed  # the order itself is beside the point

    ref = OrderRef(shop="s", external_id="7")
    for fetch in (Fetch.several_calls(calls, parse),
                  Fetch.one_call(lambda r, c, n: calls(r, c, n)[0], parse)):
        with pytest.raises(_Parsed):
            fetch.read(ref, {}, NOW, send_json, "src")
    assert sent == ["https://p/7/order", "https://p/7/items", "https://p/7/order"]
    assert read_answers == [[{"url": "https://p/7/order"}, {"url": "https://p/7/items"}],
                            {"url": "https://p/7/order"}]


def test_a_direct_write_needs_nothing_prepared() -> None:
    def call(shipped: Shipped, credentials: Credentials, now: datetime) -> Request:
        return Request(url=f"https://p/{shipped.external_id}")

    writer = ShipmentWrite.direct(call, parse=lambda *_: WritebackResult(ok=True))
    package = Shipped(external_id="9", carrier_code="SF", tracking_number="SF1",
                      shipped_at=NOW, package_id="s1-1")
    assert writer.call(package, {}, NOW, None).url == "https://p/9"
    assert writer.prepare is None and writer.existing is None


def test_a_platform_without_writeback_is_skipped_by_the_writeback_flow() -> None:
    from chalicelib.flows import writeback
    from chalicelib.warehouse import jobs

    job = jobs.ship(packed(), "s1", (PKG,), True, NOW).job
    assert job.marketplace == "shopify"
    assert len(writeback.writeback_actions(job, job.shipments[0], NOW)) == 1
    for name in ("standard", "erp"):  # a Standard Webhooks source's orders carry its name
        other = job.model_copy(update={"marketplace": name})
        assert writeback.writeback_actions(other, other.shipments[0], NOW) == []


def test_a_platform_without_a_listing_is_not_reconciled() -> None:
    """Nothing is asked of the platform or of SSM (no credentials are read)."""
    from chalicelib.flows import reconciliation

    assert reconciliation.reconcile("standard", "shop", NOW, NOW, NOW) == (0, 0)
    assert reconciliation.reconcile("erp", "shop", NOW, NOW, NOW) == (0, 0)
