"""Electronic waybill providers: each request as it goes on the wire (shape and signature,
recomputed here from the documented recipes), each answer read from recorded fixtures, the
error codes mapped to retryable or not, the registry, and the I/O through `responses`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from chalicelib.core import http
from chalicelib.warehouse.waybills import cainiao, douyin_waybill, kuaidi100, registry
from chalicelib.warehouse.waybills.contract import (
    DouyinReceiver,
    Item,
    Party,
    PlainReceiver,
    TaobaoReceiver,
    WaybillError,
    WaybillRequest,
    object_id_for,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOW = datetime(2026, 12, 7, 4, 30, 15, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
SENDER = Party(name="工厂仓库", phone="02188886666", province="上海市", city="上海市",
               district="青浦区", detail="华新镇华志路 1 号")
PLAIN = PlainReceiver(name="李雷", phone="13800001234", province="浙江省", city="杭州市",
                      district="西湖区", detail="文三路 90 号")
K100_ACCOUNT = {"key": "kEy100", "secret": "s3cr3t", "partnerId": "STO-7788",
                "partnerKey": "pk-1", "net": "上海青浦", "label_url": kuaidi100.LABEL_URL}
TOP_ACCOUNT = {"app_key": "12345678", "app_secret": "topsecret", "session": "sess-1",
               "user_id": "220011", "template_url":
               "http://cloudprint.cainiao.com/template/standard/401/177"}
DY_ACCOUNT = {"app_key": "7000111", "app_secret": "dysecret", "access_token": "tok-1",
              "template_url": "https://lf3-cm.ecombdstatic.com/obj/logistics/sto76x130.xml"}


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text(encoding="utf-8"))


def package(receiver: Any, marketplace: str, job_id: str = "job_SH1001",
            package_no: int = 1, trade_id: str = "") -> WaybillRequest:
    return WaybillRequest(job_id=job_id, package_no=package_no, marketplace=marketplace,
                          trade_id=trade_id, courier="STO", sender=SENDER, receiver=receiver,
                          items=(Item(name="棉T恤", count=2), Item(name="帆布包", count=1)),
                          weight_grams=850)


TAOBAO = TaobaoReceiver(oaid="1Q2w3E4r5T6y7U8i9O0pAsDfGh", tid="3954821000001", province="浙江省",
                        city="杭州市", district="西湖区")
DOUYIN = DouyinReceiver(order_id="6920000000000001234", encrypt_name="#Ab12#Cd34==#*#1#",
                        encrypt_mobile="$$Zz99Yy88==$$*#1$", encrypt_detail="~Qq77Ww==~*#1~",
                        province="广东省", city="深圳市", district="南山区")


# The object id: the idempotency key -----------------------------------------------------------

def test_the_object_id_is_derived_from_the_job_and_package_only() -> None:
    first = package(PLAIN, "shopify", package_no=1)
    assert first.object_id == "job_SH1001_1"
    assert package(PLAIN, "shopify", package_no=1).object_id == first.object_id
    assert package(PLAIN, "shopify", package_no=2).object_id == "job_SH1001_2"
    odd = object_id_for("job-with.dots/and-more", 3)
    assert odd == object_id_for("job-with.dots/and-more", 3)
    assert odd.endswith("_3") and odd.replace("_", "").isalnum() and len(odd) <= 40
    assert odd != object_id_for("job-with.dots/and-mora", 3)


# Kuaidi100 ------------------------------------------------------------------------------------

def k100_sign(param: str, t: str) -> str:
    text = param + t + K100_ACCOUNT["key"] + K100_ACCOUNT["secret"]
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def test_kuaidi100_order_request_is_signed_over_param_t_key_secret() -> None:
    request = package(PLAIN, "shopify")
    call = kuaidi100.build_issue(request, K100_ACCOUNT, NOW_MS)
    assert call.url == "https://api.kuaidi100.com/label/order"
    assert call.params == {"method": "order"}
    form = call.form or {}
    assert set(form) == {"param", "key", "t", "sign"}
    assert form["t"] == str(NOW_MS) and form["key"] == "kEy100"
    assert form["sign"] == k100_sign(form["param"], form["t"])
    param = json.loads(form["param"])
    assert param["partnerId"] == "STO-7788" and param["partnerKey"] == "pk-1"
    assert param["kuaidicom"] == "shentong" and param["orderId"] == request.object_id
    assert param["recMan"] == {"name": PLAIN.name, "mobile": PLAIN.phone,
                               "printAddr": PLAIN.province + PLAIN.city + PLAIN.district
                               + PLAIN.detail}
    assert param["sendMan"]["printAddr"].startswith("上海市上海市青浦区")
    assert param["count"] == "3" and param["weight"] == "0.85"
    assert "partnerSecret" not in param  # absent settings are not sent empty


def test_kuaidi100_refuses_an_encrypted_receiver_before_sending() -> None:
    with pytest.raises(WaybillError) as caught:
        kuaidi100.build_issue(package(TAOBAO, "taobao"), K100_ACCOUNT, NOW_MS)
    assert caught.value.reason == "bad_request" and not caught.value.retryable


def test_kuaidi100_answer_gives_the_number_and_a_png_label() -> None:
    answer = fixture("kuaidi100/label_order_answer.json")
    result = kuaidi100.parse_issue(answer, package(PLAIN, "shopify"))
    assert result.waybill_number == answer["data"]["kuaidinum"]
    assert result.provider_order_id == answer["data"]["kdComOrderNum"]
    assert result.label.format == "png" and result.label.url == answer["data"]["label"]
    assert base64.b64decode(result.label.content_base64).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("case", fixture("kuaidi100/label_errors.json"),
                         ids=lambda case: case["reason"])
def test_kuaidi100_errors_map_to_a_reason_and_retryability(case: dict[str, Any]) -> None:
    with pytest.raises(WaybillError) as caught:
        kuaidi100.parse_issue(case["answer"], package(PLAIN, "shopify"))
    assert (caught.value.reason, caught.value.retryable) == (case["reason"], case["retryable"])
    assert caught.value.code == str(case["answer"]["code"])


def test_kuaidi100_cancel_request_names_the_number_and_its_courier_order() -> None:
    call = kuaidi100.build_cancel("STO", "773012345678901", "STO20261207000123", K100_ACCOUNT,
                                  NOW_MS)
    form = call.form or {}
    assert call.params == {"method": "cancel"}
    assert form["sign"] == k100_sign(form["param"], form["t"])
    param = json.loads(form["param"])
    assert (param["kuaidicom"], param["kuaidinum"], param["orderId"]) == (
        "shentong", "773012345678901", "STO20261207000123")
    kuaidi100.parse_cancel(fixture("kuaidi100/label_cancel_answer.json"))


@responses.activate
def test_kuaidi100_issue_over_http_and_its_failures() -> None:
    http.forget_sessions()
    seen: list[dict[str, list[str]]] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = parse_qs(str(request.body))
        seen.append(form)
        assert form["sign"][0] == k100_sign(form["param"][0], form["t"][0])
        return 200, {}, json.dumps(fixture("kuaidi100/label_order_answer.json"))

    responses.add_callback(responses.POST, kuaidi100.LABEL_URL, callback=answer)
    provider = kuaidi100.Kuaidi100Waybills(K100_ACCOUNT, clock=lambda: NOW.timestamp())
    request = package(PLAIN, "shopify")
    result = provider.issue(request)
    again = provider.reprint(request, result.waybill_number)
    assert again.waybill_number == result.waybill_number
    # The retry asks for the same order: the same orderId both times.
    assert [json.loads(f["param"][0])["orderId"] for f in seen] == [request.object_id] * 2
    assert {urlsplit(c.request.url or "").query for c in responses.calls} == {"method=order"}

    responses.replace(responses.POST, kuaidi100.LABEL_URL, status=502, body="bad gateway")
    with pytest.raises(WaybillError) as caught:
        provider.issue(request)
    assert caught.value.reason == "provider_unavailable" and caught.value.retryable
    responses.replace(responses.POST, kuaidi100.LABEL_URL,
                      body=requests.ConnectionError("refused"))
    with pytest.raises(WaybillError) as caught:
        provider.issue(request)
    assert caught.value.reason == "provider_unavailable" and caught.value.retryable


# Cainiao ---------------------------------------------------------------------------------------

def top_sign(form: dict[str, str]) -> str:
    text = "".join(k + v for k, v in sorted(form.items()) if k != "sign" and v != "")
    key = TOP_ACCOUNT["app_secret"].encode()
    return hashlib.md5(key + text.encode() + key).hexdigest().upper()


def test_cainiao_get_carries_the_oaid_and_tid_never_a_plain_receiver() -> None:
    request = package(TAOBAO, "taobao", job_id="job_TB3954821")
    call = cainiao.build_issue(request, TOP_ACCOUNT, NOW)
    form = call.form or {}
    assert form["method"] == "cainiao.waybill.ii.get" and form["session"] == "sess-1"
    assert form["timestamp"] == "2026-12-07 12:30:15"  # GMT+8
    assert form["sign"] == top_sign(form)
    body = json.loads(form["param_waybill_cloud_print_apply_new_request"])
    assert body["cp_code"] == "STO" and body["sender"]["mobile"] == SENDER.phone
    [dto] = body["trade_order_info_dtos"]
    assert dto["object_id"] == request.object_id == "job_TB3954821_1"
    assert dto["order_info"] == {"order_channels_type": "TB", "trade_order_list": [TAOBAO.tid]}
    assert dto["package_info"] == {"id": "1", "weight": 850, "items": [
        {"name": "棉T恤", "count": 2}, {"name": "帆布包", "count": 1}]}
    assert dto["recipient"]["oaid"] == TAOBAO.oaid and dto["recipient"]["tid"] == TAOBAO.tid
    assert "name" not in dto["recipient"] and "mobile" not in dto["recipient"]
    assert dto["template_url"] == TOP_ACCOUNT["template_url"] and dto["user_id"] == 220011
    with pytest.raises(WaybillError):
        cainiao.build_issue(package(PLAIN, "taobao"), TOP_ACCOUNT, NOW)


def test_cainiao_answer_gives_the_number_and_encrypted_print_data() -> None:
    answer = fixture("cainiao/waybill_ii_get.json")
    [module] = answer["cainiao_waybill_ii_get_response"]["modules"][
        "waybill_cloud_print_response"]
    result = cainiao.parse_issue(answer, package(TAOBAO, "taobao", job_id="job_TB3954821"),
                                 TOP_ACCOUNT)
    assert result.waybill_number == module["waybill_code"]
    assert result.label.format == "cainiao" and result.label.print_data == module["print_data"]
    assert result.label.template_url == TOP_ACCOUNT["template_url"]
    with pytest.raises(WaybillError) as caught:  # an answer for another package is not ours
        cainiao.parse_issue(answer, package(TAOBAO, "taobao", job_id="job_other"), TOP_ACCOUNT)
    assert caught.value.reason == "malformed_answer"


@pytest.mark.parametrize("case", fixture("cainiao/errors.json"), ids=lambda case: case["reason"])
def test_cainiao_errors_map_to_a_reason_and_retryability(case: dict[str, Any]) -> None:
    with pytest.raises(WaybillError) as caught:
        cainiao.parse_issue(case["answer"], package(TAOBAO, "taobao"), TOP_ACCOUNT)
    assert (caught.value.reason, caught.value.retryable) == (case["reason"], case["retryable"])


def test_cainiao_cancel() -> None:
    call = cainiao.build_cancel("STO", "773098765432101", TOP_ACCOUNT, NOW)
    form = call.form or {}
    assert (form["method"], form["cp_code"], form["waybill_code"]) == (
        "cainiao.waybill.ii.cancel", "STO", "773098765432101")
    assert form["sign"] == top_sign(form)
    cainiao.parse_cancel(fixture("cainiao/waybill_ii_cancel.json"))
    with pytest.raises(WaybillError):
        cainiao.parse_cancel({"cainiao_waybill_ii_cancel_response": {"cancel_result": False}})


# Douyin ----------------------------------------------------------------------------------------

def douyin_sign(method: str, body: str, timestamp: str) -> str:
    secret = DY_ACCOUNT["app_secret"]
    text = (f"{secret}app_key{DY_ACCOUNT['app_key']}method{method}param_json{body}"
            f"timestamp{timestamp}v2{secret}")
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def test_douyin_create_order_sends_the_encrypted_receiver_as_given() -> None:
    request = package(DOUYIN, "douyin", job_id="job_DY6920000000000001234")
    call = douyin_waybill.build_create(request, DY_ACCOUNT, NOW)
    assert call.url == "https://openapi-fxg.jinritemai.com/logistics/newCreateOrder"
    body = (call.raw_body or b"").decode()
    assert call.params["sign"] == douyin_sign("logistics.newCreateOrder", body,
                                              call.params["timestamp"])
    params = json.loads(body)
    assert params["logistics_code"] == "shentong"
    [info] = params["order_infos"]
    assert info["order_id"] == DOUYIN.order_id and info["pack_id"] == request.object_id
    assert info["receiver_info"]["contact"] == {"name": DOUYIN.encrypt_name,
                                                "mobile": DOUYIN.encrypt_mobile}
    assert info["receiver_info"]["address"]["detail_address"] == DOUYIN.encrypt_detail
    assert info["items"] == [{"item_name": "棉T恤", "item_count": 2},
                             {"item_name": "帆布包", "item_count": 1}]


def test_douyin_answers_read_from_fixtures() -> None:
    request = package(DOUYIN, "douyin", job_id="job_DY6920000000000001234")
    ok = fixture("douyin/waybill_create_ok.json")
    assert douyin_waybill.parse_create(ok, request) == ok["data"]["ebill_infos"][0]["track_no"]
    with pytest.raises(WaybillError) as caught:
        douyin_waybill.parse_create(fixture("douyin/waybill_create_refused.json"), request)
    assert caught.value.reason == "balance_empty" and not caught.value.retryable
    with pytest.raises(WaybillError) as caught:
        douyin_waybill.parse_create(fixture("douyin/waybill_busy.json"), request)
    assert caught.value.reason == "provider_unavailable" and caught.value.retryable
    applied = fixture("douyin/waybill_apply_ok.json")
    track = applied["data"]["waybill_infos"][0]["track_no"]
    assert douyin_waybill.parse_apply(applied, track) == applied["data"]["waybill_infos"][0][
        "print_data"]
    douyin_waybill.parse_cancel(fixture("douyin/waybill_cancel_ok.json"))


@responses.activate
def test_douyin_issue_takes_the_number_then_the_print_data() -> None:
    http.forget_sessions()
    base = "https://openapi-fxg.jinritemai.com/logistics/"
    responses.add(responses.POST, base + "newCreateOrder",
                  json=fixture("douyin/waybill_create_ok.json"))
    responses.add(responses.POST, base + "waybillApply",
                  json=fixture("douyin/waybill_apply_ok.json"))
    provider = douyin_waybill.DouyinWaybills(DY_ACCOUNT, clock=lambda: NOW.timestamp())
    result = provider.issue(package(DOUYIN, "douyin", job_id="job_DY6920000000000001234"))
    assert result.waybill_number == "773055500011122"
    assert result.label.format == "douyin" and result.label.template_url == DY_ACCOUNT[
        "template_url"]
    apply_body = json.loads(responses.calls[1].request.body or b"{}")
    assert apply_body == {"waybill_applies": [{"logistics_code": "shentong",
                                               "track_no": "773055500011122"}]}


# Registry --------------------------------------------------------------------------------------

def test_the_registry_routes_encrypted_platforms_to_their_channel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.RULES_VARIABLE, raising=False)
    rules = registry.rules()
    assert registry.provider_for("taobao", None, rules) == "cainiao"
    assert registry.provider_for("douyin", "SF", rules) == "douyin"
    assert registry.provider_for("shopify", None, rules) == "kuaidi100"
    assert registry.courier_for(None, rules) == "STO"
    monkeypatch.setenv(registry.RULES_VARIABLE, json.dumps({
        "routes": [{"marketplace": "*", "courier": "SF", "provider": "kuaidi100"},
                   {"marketplace": "taobao", "provider": "kuaidi100"}],
        "default_courier": "YTO"}))
    configured = registry.rules()
    assert registry.courier_for(None, configured) == "YTO"
    assert registry.provider_for("woocommerce", "sf", configured) == "kuaidi100"
    with pytest.raises(WaybillError) as caught:  # an encrypted receiver cannot go elsewhere
        registry.provider_for("taobao", "STO", configured)
    assert caught.value.reason == "account"
    built = registry.provider("kuaidi100", K100_ACCOUNT)
    assert built.name == "kuaidi100"
    with pytest.raises(WaybillError):
        registry.provider("ems-direct", {})


# The job's receiver, as each marketplace's order gives it --------------------------------------

def _job_of(order: Any) -> Any:
    from chalicelib.warehouse import jobs

    return jobs.new_job(order, "factory-1", NOW)


def test_a_masked_taobao_order_is_labelled_by_its_oaid_and_trade_id() -> None:
    from chalicelib.flows.waybills import receiver_of
    from chalicelib.marketplaces import taobao
    from chalicelib.marketplaces.calls import OrderRef

    answer = fixture("taobao/trade_fullinfo.json")
    trade = answer["trade_fullinfo_get_response"]["trade"]
    trade.update(receiver_name="王**", receiver_mobile="*******5678",
                 receiver_address="文一西路**********", oaid="1fd2c3b4a5968778695a4b3c2d1e0f99")
    ref = OrderRef(shop="栖木家居旗舰店", external_id=trade["tid_str"])
    order = taobao.parse_order(answer, ref, "tmall")
    assert order.shipping_address is not None
    assert order.shipping_address.oaid == trade["oaid"]
    receiver = receiver_of(_job_of(order))
    assert receiver == TaobaoReceiver(oaid=trade["oaid"], tid=trade["tid_str"],
                                      province="浙江省", city="杭州市")
    del trade["oaid"]  # no OAID: Cainiao cannot label it, and nothing else may
    with pytest.raises(WaybillError) as caught:
        receiver_of(_job_of(taobao.parse_order(answer, ref, "tmall")))
    assert caught.value.reason == "bad_request"


def test_a_douyin_order_is_labelled_by_its_ciphertexts() -> None:
    from chalicelib.flows.waybills import receiver_of
    from chalicelib.marketplaces import douyin
    from chalicelib.marketplaces.calls import OrderRef

    answer = fixture("douyin/order_detail.json")
    detail = answer["data"]["shop_order_detail"]
    order = douyin.parse_order(answer, OrderRef(shop=str(detail["shop_id"]),
                                                external_id=str(detail["order_id"])), "douyin")
    receiver = receiver_of(_job_of(order))
    assert isinstance(receiver, DouyinReceiver)
    assert (receiver.encrypt_name, receiver.encrypt_mobile, receiver.encrypt_detail) == (
        detail["encrypt_post_receiver"], detail["encrypt_post_tel"],
        detail["post_addr"]["encrypt_detail"])
    assert receiver.order_id == str(detail["order_id"])


def test_the_reference_client_writes_each_label_to_a_file(tmp_path: Path) -> None:
    from partner_client.labels import save_labels

    png = fixture("kuaidi100/label_order_answer.json")["data"]["imgBase64"][0]
    cainiao_data = fixture("cainiao/waybill_ii_get.json")["cainiao_waybill_ii_get_response"][
        "modules"]["waybill_cloud_print_response"][0]["print_data"]
    paths = save_labels([
        {"waybill_number": "773012345678901", "provider": "kuaidi100",
         "label": {"format": "png", "content_base64": png}},
        {"waybill_number": "773098765432101", "provider": "cainiao",
         "label": {"format": "cainiao", "print_data": cainiao_data,
                   "template_url": TOP_ACCOUNT["template_url"]}}], tmp_path / "labels")
    assert [p.name for p in paths] == ["773012345678901.png", "773098765432101.cainiao.json"]
    assert paths[0].read_bytes() == base64.b64decode(png)
    saved = json.loads(paths[1].read_text(encoding="utf-8"))
    assert (saved["print_data"], saved["template_url"]) == (cainiao_data,
                                                            TOP_ACCOUNT["template_url"])


# The waybill's cost on the shipment -----------------------------------------------------------

def _printed_job(numbers: tuple[str, ...], quoted: dict[str, str], grams: int) -> Any:
    from chalicelib.marketplaces import taobao
    from chalicelib.marketplaces.calls import OrderRef
    from chalicelib.warehouse import jobs

    answer = fixture("taobao/trade_fullinfo.json")
    trade = answer["trade_fullinfo_get_response"]["trade"]
    ref = OrderRef(shop="栖木家居旗舰店", external_id=trade["tid_str"])
    order = taobao.parse_order(answer, ref, "taobao")
    job = _job_of(order)
    printed = jobs.PrintRecord(carrier_code="STO", waybill_numbers=numbers, printed_at=NOW,
                               waybill_costs=quoted)
    return job.model_copy(update={"printed": printed, "weight_grams": grams})


def test_the_shipment_costs_the_providers_price_else_the_tariff() -> None:
    from decimal import Decimal

    from chalicelib.warehouse.carriers import DEFAULT_COSTS
    from chalicelib.warehouse.jobs import Package
    from chalicelib.warehouse.regions import Region
    from chalicelib.warehouse.tariffs import TariffRules
    from chalicelib.warehouse.waybills.costs import shipment_cost

    job = _printed_job(("7700001", "7700002"), {"7700001": "6.30"}, grams=3000)
    region = Region(job.carrier.region)  # 杭州: the handbook's JZH band
    assert region is Region.JZH
    band = DEFAULT_COSTS[region]
    packages = [Package(carrier_code="STO", tracking_number=n) for n in ("7700001", "7700002")]
    # 1.5 kg each: the first kilogram at the band's low end, one started kilogram more at
    # (high - low); the first package's price is the provider's.
    by_tariff = band.low + (band.high - band.low)
    assert shipment_cost(job, packages, TariffRules()) == Decimal("6.30") + by_tariff
    # Only the issued numbers count; a shipment of the factory's own numbers has no figure.
    own = [Package(carrier_code="STO", tracking_number="773000000001")]
    assert shipment_cost(job, own, TariffRules()) is None
    assert shipment_cost(job, [*own, packages[0]], TariffRules()) == Decimal("6.30")
