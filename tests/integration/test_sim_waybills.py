"""The waybill providers against the local stack's simulators over real HTTP on 127.0.0.1: the
courier network's Kuaidi100 label desk, the Taobao shop's Cainiao channel and the Douyin shop's
e-waybill. A repeated issue of one package never takes a second number; refusals come back as
reasons a factory can act on."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterator

import pytest

from chalicelib.core import http
from chalicelib.warehouse.waybills.cainiao import CainiaoWaybills
from chalicelib.warehouse.waybills.contract import (
    DouyinReceiver,
    Item,
    Party,
    PlainReceiver,
    TaobaoReceiver,
    WaybillError,
    WaybillRequest,
)
from chalicelib.warehouse.waybills.douyin_waybill import DouyinWaybills
from chalicelib.warehouse.waybills.kuaidi100 import Kuaidi100Waybills
from devstack.courier import CourierSimulator
from devstack.marketplaces.base import Faults
from devstack.marketplaces.douyin import DouyinSimulator
from devstack.marketplaces.taobao import TaobaoSimulator

SENDER = Party(name="工厂仓库", phone="02188886666", province="上海市", city="上海市",
               district="青浦区", detail="华新镇华志路 1 号")
PLAIN = PlainReceiver(name="韩梅梅", phone="13900004321", province="江苏省", city="南京市",
                      district="鼓楼区", detail="中山路 8 号")
TEMPLATE = "http://cloudprint.cainiao.com/template/standard/401/177"
CALM = Faults(seed=3)


def package(receiver: object, marketplace: str, job: str, no: int = 1) -> WaybillRequest:
    return WaybillRequest.model_validate({
        "job_id": job, "package_no": no, "marketplace": marketplace, "courier": "STO",
        "sender": SENDER, "receiver": receiver, "items": (Item(name="棉T恤", count=1),)})


@pytest.fixture(autouse=True)
def fresh_sessions() -> Iterator[None]:
    http.forget_sessions()
    yield
    http.forget_sessions()


@pytest.fixture
def courier() -> Iterator[CourierSimulator]:
    with CourierSimulator(customer="CUST", key="LABELKEY", label_secret="LABELSECRET",
                          label_balance=3) as simulator:
        yield simulator


def k100(courier: CourierSimulator, secret: str = "LABELSECRET") -> Kuaidi100Waybills:
    return Kuaidi100Waybills({"key": "LABELKEY", "secret": secret, "partnerId": "STO-1",
                              "label_url": courier.label_url})


def test_kuaidi100_issues_once_per_package_and_gives_a_png(courier: CourierSimulator) -> None:
    provider = k100(courier)
    first = provider.issue(package(PLAIN, "shopify", "job_A"))
    again = provider.issue(package(PLAIN, "shopify", "job_A"))  # a retried print
    other = provider.issue(package(PLAIN, "shopify", "job_A", no=2))
    assert again.waybill_number == first.waybill_number != other.waybill_number
    assert sorted(courier.labels.numbers()) == sorted({first.waybill_number,
                                                       other.waybill_number})
    image = base64.b64decode(first.label.content_base64)
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and image.endswith(b"IEND\xaeB`\x82")
    assert provider.reprint(package(PLAIN, "shopify", "job_A"),
                            first.waybill_number).waybill_number == first.waybill_number


def test_kuaidi100_refusals_carry_their_reason(courier: CourierSimulator) -> None:
    with pytest.raises(WaybillError) as caught:
        k100(courier, secret="wrong").issue(package(PLAIN, "shopify", "job_B"))
    assert caught.value.reason == "bad_signature" and not caught.value.retryable
    provider = k100(courier)
    numbers = {provider.issue(package(PLAIN, "shopify", f"job_C{n}")).waybill_number
               for n in range(3)}
    assert len(numbers) == 3
    with pytest.raises(WaybillError) as caught:  # the balance was 3
        provider.issue(package(PLAIN, "shopify", "job_C3"))
    assert caught.value.reason == "balance_empty" and not caught.value.retryable


def test_kuaidi100_cancel_gives_the_number_back(courier: CourierSimulator) -> None:
    provider = k100(courier)
    issued = provider.issue(package(PLAIN, "shopify", "job_D"))
    provider.cancel("STO", issued.waybill_number, issued.provider_order_id)
    assert courier.labels.orders[issued.object_id].cancelled
    with pytest.raises(WaybillError):
        provider.cancel("STO", "000000000000", "")


@pytest.fixture
def taobao_shop() -> Iterator[TaobaoSimulator]:
    sim = TaobaoSimulator(shop="栖木家居旗舰店", faults=CALM, mask_receiver=True)
    sim.start()
    yield sim
    sim.stop()


def test_cainiao_labels_a_masked_taobao_order_through_its_oaid(
        taobao_shop: TaobaoSimulator) -> None:
    order = taobao_shop.place_order(paid=True)
    trade = taobao_shop.render(order)
    assert trade["receiver_mobile"].startswith("***")  # we never hold the plain phone
    receiver = TaobaoReceiver(oaid=trade["oaid"], tid=order.external_id,
                              province=trade["receiver_state"], city=trade["receiver_city"])
    provider = CainiaoWaybills({**taobao_shop.credentials(), "user_id": str(
        taobao_shop.user_id), "template_url": TEMPLATE})
    request = package(receiver, "taobao", "job_TB1")
    issued = provider.issue(request)
    assert provider.issue(request).waybill_number == issued.waybill_number
    assert provider.reprint(request, issued.waybill_number).waybill_number == \
        issued.waybill_number
    assert issued.label.format == "cainiao" and issued.label.template_url == TEMPLATE
    document = json.loads(issued.label.print_data)
    assert document["templateURL"] == TEMPLATE
    assert order.phone not in issued.label.print_data and order.street not in \
        issued.label.print_data
    provider.cancel("STO", issued.waybill_number)
    assert issued.waybill_number in taobao_shop.waybills.cancelled
    wrong = receiver.model_copy(update={"oaid": "0" * 32})
    with pytest.raises(WaybillError) as caught:
        provider.issue(package(wrong, "taobao", "job_TB2"))
    assert caught.value.code == "isv.OAID_INVALID" and not caught.value.retryable


@pytest.fixture
def douyin_shop() -> Iterator[DouyinSimulator]:
    sim = DouyinSimulator(shop="4463798", webhook_url="http://127.0.0.1:9/", faults=CALM)
    sim.start()
    yield sim
    sim.stop()


def test_douyin_labels_an_encrypted_order_with_its_ciphertexts(
        douyin_shop: DouyinSimulator) -> None:
    order = douyin_shop.place_order(paid=True, drop=True)
    detail = douyin_shop.render(order)
    receiver = DouyinReceiver(order_id=order.external_id,
                              encrypt_name=detail["encrypt_post_receiver"],
                              encrypt_mobile=detail["encrypt_post_tel"],
                              encrypt_detail=detail["post_addr"]["encrypt_detail"],
                              province=order.province, city=order.city)
    provider = DouyinWaybills({**douyin_shop.credentials(), "template_url": "std-76x130"})
    request = package(receiver, "douyin", "job_DY1")
    issued = provider.issue(request)
    assert provider.issue(request).waybill_number == issued.waybill_number
    assert issued.label.format == "douyin" and issued.label.template_url == "std-76x130"
    blob = json.loads(issued.label.print_data)["encryptedData"].removeprefix("AES:")
    assert zlib.decompress(base64.b64decode(blob)).decode().endswith(issued.waybill_number)
    provider.cancel("STO", issued.waybill_number)
    assert issued.waybill_number in douyin_shop.waybills.cancelled
    forged = receiver.model_copy(update={"encrypt_name": douyin_shop.encrypt("某人")})
    with pytest.raises(WaybillError) as caught:
        provider.issue(package(forged, "douyin", "job_DY2"))
    assert caught.value.code == "100001" and not caught.value.retryable
