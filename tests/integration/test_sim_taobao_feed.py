"""The real TMC poller (`marketplace_feeds.poll_taobao`) against the local Taobao shop over real
HTTP: consume, store in the inbox, confirm; then the order worker re-fetches the trade from the
same shop and the order and its fulfilment job exist."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import pytest
from chalice.test import Client

from chalicelib.flows import feeds as marketplace_feeds
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import order_id_for
from chalicelib.warehouse import job_store as jobs_store
from devstack.marketplaces.base import Faults
from devstack.marketplaces.taobao import TaobaoSimulator
from tests.integration.flow import inbox_item, process


@pytest.fixture
def sim() -> Iterator[TaobaoSimulator]:
    # A fresh nick: the inbox and the orders outlive one test. Every message sent twice.
    simulator = TaobaoSimulator(shop=f"栖木家居旗舰店{uuid.uuid4().hex[:8]}",
                                faults=Faults(duplicate=1.0))
    simulator.start()
    try:
        yield simulator
    finally:  # a shop whose simulator is gone would fail other tests' polls and listings
        simulator.stop()
        try:
            boto3.client("ssm").delete_parameter(
                Name=shop_credentials.parameter_name("taobao", simulator.shop))
        except boto3.client("ssm").exceptions.ParameterNotFound:
            pass  # the test failed before it stored the shop
        shop_credentials.forget()


def test_a_taobao_trade_on_tmc_is_stored_confirmed_and_becomes_an_order_with_its_job(
        client: Client, stack: dict[str, str], sim: TaobaoSimulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shop_credentials.put("taobao", sim.shop, sim.credentials())
    # Only this shop: others stored by other tests point at the real gateway.
    monkeypatch.setattr(shop_credentials, "shops", lambda: [("taobao", sim.shop)])
    order = sim.place_order()
    sim.drain()
    (message_id,) = {q["id"] for q in sim.queued()}

    counts = marketplace_feeds.poll_taobao(datetime.now(UTC))
    assert counts == {"apps": 1, "messages": 2, "stored": 1, "errors": 0}  # stored once
    assert sim.queued() == []  # both copies confirmed
    stored = inbox_item(stack, "taobao", str(message_id))
    assert stored is not None and stored["shop"] == sim.shop
    assert marketplace_feeds.poll_taobao(datetime.now(UTC))["messages"] == 0

    assert process(client, stack, "taobao", str(message_id)) == {"batchItemFailures": []}
    current = orders_store.get_current(order_id_for("taobao", sim.shop, order.external_id))
    assert current is not None, str(inbox_item(stack, "taobao", str(message_id)))[-600:]
    assert current.order.status == "paid"
    address = current.order.shipping_address
    assert address is not None
    assert (address.name, address.phone, address.city) == (order.buyer_name, order.phone,
                                                           order.city)
    assert [line.line_id for line in current.order.lines] == [line.line_id
                                                              for line in order.lines]
    assert current.job is not None
    job = jobs_store.get(current.job.partner_id, current.job.job_id)
    assert job is not None
    assert [line.line_id for line in job.lines] == [line.line_id for line in order.lines]


def test_already_shipped_is_believed_only_when_the_platform_shows_our_waybill(
        stack: dict[str, str], sim: TaobaoSimulator) -> None:
    """Taobao answers B04 ("already shipped or closed") both to a retry after a lost answer and
    to a trade closed meanwhile: the first is done, the second must reach CS."""
    from chalicelib.flows import writeback
    from chalicelib.marketplaces import taobao
    from chalicelib.marketplaces.calls import Shipped
    from chalicelib.marketplaces.writeback import Writeback

    shop_credentials.put("taobao", sim.shop, sim.credentials())
    now = datetime.now(UTC)

    def writeback_of(external_id: str, number: str) -> Writeback:
        package = Shipped(external_id=external_id, carrier_code="STO", tracking_number=number,
                          shipped_at=now, package_id="s1-1")
        return Writeback(job_id="job_x", partner_id="factory-1", order_id="ord_x",
                         order_name=external_id, marketplace="taobao", shop=sim.shop,
                         shipment_id="s1", packages=(package,), due_at=now, created_at=now)

    writer = taobao.MARKETPLACE.writeback
    assert writer is not None
    shipped = sim.place_order()
    first = writeback._attempt(writeback_of(shipped.external_id, "773000111222"), writer, now)
    assert first.status == "done"
    # Our answer was lost; the retry is refused as shipped, and the trade shows our waybill.
    again = writeback._attempt(writeback_of(shipped.external_id, "773000111222"), writer, now)
    assert again.status == "done"

    closed = sim.place_order()
    sim.cancel(closed.external_id)
    refused = writeback._attempt(writeback_of(closed.external_id, "773000333444"), writer, now)
    assert refused.status == "failed" and "no shipment 773000333444" in refused.last_error
