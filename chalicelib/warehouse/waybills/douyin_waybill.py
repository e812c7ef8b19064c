"""Douyin electronic waybill (抖音电子面单) for Douyin orders: the receiver goes as the order's
encrypted fields, and Douyin's print component decrypts them on the printer's side.

Protocol (the Douyin open-API SDKs' generated models, westng/doudian-sdk
`logistics_newCreateOrder/param/*`, checked in the stored references); signed like every
Douyin open-API call (chalicelib/core/doudian.py):
- issue, step 1: `logistics.newCreateOrder` {sender_info {address{province_name, city_name,
  district_name, detail_address}, contact{name, mobile}}, logistics_code (the courier),
  order_infos[{order_id, pack_id (ours: the package's object id, so a retry is the same
  package), receiver_info {address{..., detail_address: the ciphertext}, contact{name,
  mobile: the ciphertexts}}, items[{item_name, item_count}], total_weight (g)}]} ->
  data.ebill_infos[{order_id, pack_id, track_no, sort_code}] and data.err_infos[{order_id,
  pack_id, err_code, err_msg}].
- issue, step 2 (and reprint): `logistics.waybillApply` {waybill_applies[{logistics_code,
  track_no}]} -> data.waybill_infos[{track_no, print_data, sign}]: the encrypted print data.
- cancel: `logistics.cancelOrder` {logistics_code, track_no}.
Answers: {"code": 10000 (success), "msg", "sub_code", "sub_msg", "data"}. The retryable codes
are the order adapter's (system busy); balance and reachability are read from the words.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chalicelib.core.doudian import api_call
from chalicelib.core.http import Request
from chalicelib.warehouse.waybills.contract import (
    AccountProvider,
    Label,
    Reason,
    WaybillError,
    WaybillRequest,
    WaybillResult,
    exchange,
    json_object,
)

NAME = "douyin"
CREATE = "logistics.newCreateOrder"
APPLY = "logistics.waybillApply"
CANCEL = "logistics.cancelOrder"
SUCCESS = 10000
RETRYABLE_CODES = frozenset({20000, 20001, 30001, 30002, 90000})
# Our carrier codes -> Douyin logistics_code (the company codes of order.logisticsCompanyList).
LOGISTICS_CODES: dict[str, str] = {
    "STO": "shentong", "SF": "shunfeng", "YTO": "yuantong", "ZTO": "zhongtong",
    "YUNDA": "yunda", "JD": "jd", "EMS": "ems",
}
WORDS: tuple[tuple[tuple[str, ...], Reason], ...] = (
    (("余额", "单号不足", "余量"), "balance_empty"),
    (("不可达", "超区", "不支持派送", "不在服务范围"), "address_unreachable"),
    (("签名", "sign"), "bad_signature"),
    (("access_token", "授权", "订购", "未开通"), "account"),
    (("频率", "限流"), "rate_limited"),
)


def logistics_code(courier: str) -> str:
    try:
        return LOGISTICS_CODES[courier.upper()]
    except KeyError:
        raise WaybillError("bad_request", NAME, f"no logistics_code for {courier}") from None


def pack_id(request: WaybillRequest) -> str:
    return request.object_id  # letters, digits and "_": what pack_id allows


def create_params(request: WaybillRequest) -> dict[str, Any]:
    receiver = request.receiver
    if receiver.kind != "douyin":
        raise WaybillError("bad_request", NAME, f"{receiver.kind} receiver")
    sender = request.sender
    return {
        "sender_info": {
            "address": {"province_name": sender.province, "city_name": sender.city,
                        "district_name": sender.district, "detail_address": sender.detail},
            "contact": {"name": sender.name, "mobile": sender.phone},
        },
        "logistics_code": logistics_code(request.courier),
        "order_infos": [{
            "order_id": receiver.order_id,
            "pack_id": pack_id(request),
            "receiver_info": {
                "address": {"province_name": receiver.province, "city_name": receiver.city,
                            "district_name": receiver.district,
                            "detail_address": receiver.encrypt_detail},
                "contact": {"name": receiver.encrypt_name, "mobile": receiver.encrypt_mobile},
            },
            "items": [{"item_name": i.name, "item_count": i.count} for i in request.items],
            "total_weight": str(request.weight_grams),
        }],
    }


def build_create(request: WaybillRequest, account: Mapping[str, str], now: datetime) -> Request:
    return api_call(CREATE, create_params(request), account, now)


def build_apply(courier: str, track_no: str, account: Mapping[str, str],
                now: datetime) -> Request:
    return api_call(APPLY, {"waybill_applies": [{"logistics_code": logistics_code(courier),
                                                 "track_no": track_no}]}, account, now)


def build_cancel(courier: str, track_no: str, account: Mapping[str, str],
                 now: datetime) -> Request:
    return api_call(CANCEL, {"logistics_code": logistics_code(courier), "track_no": track_no},
                    account, now)


def _reason(code: int, text: str) -> Reason:
    for words, reason in WORDS:
        if any(word in text for word in words):
            return reason
    return "provider_unavailable" if code in RETRYABLE_CODES else "bad_request"


def _data(body: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        code = int(str(body.get("code", "")))
    except ValueError:
        raise WaybillError("malformed_answer", NAME, "no code") from None
    if code != SUCCESS:
        text = " ".join(str(body.get(k, "")) for k in ("sub_code", "sub_msg", "msg")).lower()
        raise WaybillError(_reason(code, text), NAME, str(body.get("sub_code") or code))
    data = body.get("data")
    return data if isinstance(data, Mapping) else {}


def parse_create(body: Mapping[str, Any], request: WaybillRequest) -> str:
    """The track number Douyin gave the package, or its per-package error."""
    data = _data(body)
    mine = pack_id(request)
    for error in data.get("err_infos") or []:
        if isinstance(error, Mapping) and str(error.get("pack_id", mine)) == mine:
            text = f"{error.get('err_code', '')} {error.get('err_msg', '')}".lower()
            raise WaybillError(_reason(0, text), NAME, str(error.get("err_code") or "err_info"))
    for info in data.get("ebill_infos") or []:
        if isinstance(info, Mapping) and str(info.get("pack_id")) == mine and info.get(
                "track_no"):
            return str(info["track_no"])
    raise WaybillError("malformed_answer", NAME, "no ebill_info for the package")


def parse_apply(body: Mapping[str, Any], track_no: str) -> str:
    for info in _data(body).get("waybill_infos") or []:
        if isinstance(info, Mapping) and str(info.get("track_no")) == track_no and info.get(
                "print_data"):
            return str(info["print_data"])
    raise WaybillError("malformed_answer", NAME, "no print data for the number")


def parse_cancel(body: Mapping[str, Any]) -> None:
    _data(body)


class DouyinWaybills(AccountProvider):
    """Douyin's e-waybill through the shop's app: app_key, app_secret, access_token, api_base
    (a stand-in's address), template_url (the standard template the print component uses)."""

    name = NAME

    def issue(self, request: WaybillRequest) -> WaybillResult:
        answer = exchange(build_create(request, self.account, self._now()), NAME)
        track_no = parse_create(json_object(answer, NAME), request)
        return self.reprint(request, track_no)

    def cancel(self, courier: str, waybill_number: str, provider_order_id: str = "") -> None:
        answer = exchange(build_cancel(courier, waybill_number, self.account, self._now()), NAME)
        parse_cancel(json_object(answer, NAME))

    def reprint(self, request: WaybillRequest, waybill_number: str) -> WaybillResult:
        call = build_apply(request.courier, waybill_number, self.account, self._now())
        print_data = parse_apply(json_object(exchange(call, NAME), NAME), waybill_number)
        return WaybillResult(
            provider=NAME, object_id=request.object_id, courier=request.courier,
            waybill_number=waybill_number,
            label=Label(format="douyin", print_data=print_data,
                        template_url=self.account.get("template_url", "")))
