"""Cainiao cloud print (菜鸟电子面单) for Taobao/Tmall orders: the receiver goes as the order's
OAID and trade id, and Cainiao's print component decrypts it on the printer's side.

Protocol (TOP; bububa/opentaobao and the official TOP SDKs' CainiaoWaybillIiGet request and
response models, checked in the stored references):
- issue: `cainiao.waybill.ii.get`, business parameter `param_waybill_cloud_print_apply_new_request`
  (JSON): cp_code, sender {name, mobile, address{province, city, district, detail}}, and per
  package a trade_order_info_dtos entry: object_id (ours: the package's), order_info
  {order_channels_type (TB / TM), trade_order_list [tid]}, package_info {id, items[{name,
  count}], weight (g)}, recipient {oaid, tid, address{province, city, district}}, template_url,
  user_id. Signed like every TOP call (chalicelib/core/top.py).
- answer: cainiao_waybill_ii_get_response.modules.waybill_cloud_print_response[] with
  object_id, waybill_code, print_data (encrypted; the template URL is inside it).
- cancel: `cainiao.waybill.ii.cancel` (cp_code, waybill_code) -> cancel_result.
- reprint: the same get with the same object_id and trade: Cainiao answers the number already
  taken for that package rather than a new one.
Errors: TOP's error_response {code, msg, sub_code, sub_msg}; isp.* and code 7 (rate) are
retryable; balance and reachability are read from the sub_code/sub_msg words (guess).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chalicelib.core.http import Request
from chalicelib.core.top import top_call
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

NAME = "cainiao"
GET = "cainiao.waybill.ii.get"
CANCEL = "cainiao.waybill.ii.cancel"
REQUEST_PARAM = "param_waybill_cloud_print_apply_new_request"
# Our carrier codes -> Cainiao cp_code.
CP_CODES: dict[str, str] = {
    "STO": "STO", "SF": "SF", "YTO": "YTO", "ZTO": "ZTO", "YUNDA": "YUNDA", "JD": "JD",
    "EMS": "EMS",
}
WORDS: tuple[tuple[tuple[str, ...], Reason], ...] = (
    (("余额", "单号不足", "not_enough", "balance"), "balance_empty"),
    (("不可达", "超区", "unreachable", "not_reach"), "address_unreachable"),
    (("signature", "sign"), "bad_signature"),
    (("session", "订购", "subscription", "cp_code", "授权"), "account"),
)


def cp_code(courier: str) -> str:
    try:
        return CP_CODES[courier.upper()]
    except KeyError:
        raise WaybillError("bad_request", NAME, f"no cp_code for {courier}") from None


def _address(province: str, city: str, district: str, detail: str = "") -> dict[str, str]:
    parts = {"province": province, "city": city, "district": district, "detail": detail}
    return {k: v for k, v in parts.items() if v}


def apply_request(request: WaybillRequest, account: Mapping[str, str]) -> dict[str, Any]:
    receiver = request.receiver
    if receiver.kind != "taobao":
        raise WaybillError("bad_request", NAME, f"{receiver.kind} receiver")
    sender = request.sender
    return {
        "cp_code": cp_code(request.courier),
        "sender": {"name": sender.name, "mobile": sender.phone,
                   "address": _address(sender.province, sender.city, sender.district,
                                       sender.detail)},
        "trade_order_info_dtos": [{
            "object_id": request.object_id,
            "order_info": {"order_channels_type": account.get("order_channels_type") or "TB",
                           "trade_order_list": [receiver.tid]},
            "package_info": {"id": str(request.package_no),
                             "items": [{"name": i.name, "count": i.count}
                                       for i in request.items],
                             "weight": request.weight_grams},
            "recipient": {"oaid": receiver.oaid, "tid": receiver.tid,
                          "address": _address(receiver.province, receiver.city,
                                              receiver.district)},
            "template_url": account["template_url"],
            "user_id": int(account["user_id"]),
        }],
    }


def build_issue(request: WaybillRequest, account: Mapping[str, str], now: datetime) -> Request:
    text = json.dumps(apply_request(request, account), ensure_ascii=False, separators=(",", ":"))
    return top_call(GET, {REQUEST_PARAM: text}, account, now)


def build_cancel(courier: str, waybill_number: str, account: Mapping[str, str],
                 now: datetime) -> Request:
    return top_call(CANCEL, {"cp_code": cp_code(courier), "waybill_code": waybill_number},
                    account, now)


def error_of(body: Mapping[str, Any]) -> WaybillError | None:
    error = body.get("error_response")
    if not isinstance(error, Mapping):
        return None
    code, sub_code = str(error.get("code", "")), str(error.get("sub_code", "") or "")
    text = " ".join((sub_code, str(error.get("sub_msg", "")), str(error.get("msg", "")))).lower()
    return WaybillError(_reason(code, sub_code, text), NAME, sub_code or code)


def _reason(code: str, sub_code: str, text: str) -> Reason:
    if code == "7" or sub_code.startswith("accesscontrol.limited-by"):
        return "rate_limited"
    if code == "10" or sub_code.startswith("isp."):
        return "provider_unavailable"
    if code == "25":
        return "bad_signature"
    if code in ("26", "27"):
        return "account"  # session missing or expired
    for words, reason in WORDS:
        if any(word in text for word in words):
            return reason
    return "bad_request"


def _response(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    error = error_of(body)
    if error is not None:
        raise error
    response = body.get(key)
    if not isinstance(response, Mapping):
        raise WaybillError("malformed_answer", NAME, f"no {key}")
    return response


def parse_issue(body: Mapping[str, Any], request: WaybillRequest,
                account: Mapping[str, str]) -> WaybillResult:
    modules = _response(body, "cainiao_waybill_ii_get_response").get("modules")
    if isinstance(modules, Mapping):  # TOP wraps a list in an object named after its element
        modules = modules.get("waybill_cloud_print_response")
    mine = [m for m in modules or [] if isinstance(m, Mapping)
            and str(m.get("object_id")) == request.object_id]
    if not mine or not mine[0].get("waybill_code") or not mine[0].get("print_data"):
        raise WaybillError("malformed_answer", NAME, "no waybill for the object id")
    found = mine[0]
    return WaybillResult(
        provider=NAME, object_id=request.object_id, courier=request.courier,
        waybill_number=str(found["waybill_code"]),
        label=Label(format="cainiao", print_data=str(found["print_data"]),
                    template_url=account["template_url"]))


def parse_cancel(body: Mapping[str, Any]) -> None:
    response = _response(body, "cainiao_waybill_ii_cancel_response")
    if response.get("cancel_result") not in (True, "true"):
        raise WaybillError("not_found", NAME, "cancel_result false")


class CainiaoWaybills(AccountProvider):
    """Cainiao through the seller's TOP app: app_key, app_secret, session, sign_method,
    gateway (a stand-in's address), user_id, template_url, order_channels_type."""

    name = NAME

    def issue(self, request: WaybillRequest) -> WaybillResult:
        answer = exchange(build_issue(request, self.account, self._now()), NAME)
        return parse_issue(json_object(answer, NAME), request, self.account)

    def cancel(self, courier: str, waybill_number: str, provider_order_id: str = "") -> None:
        answer = exchange(build_cancel(courier, waybill_number, self.account, self._now()), NAME)
        parse_cancel(json_object(answer, NAME))

    def reprint(self, request: WaybillRequest, waybill_number: str) -> WaybillResult:
        result = self.issue(request)  # the same object id and trade: the same number
        if result.waybill_number != waybill_number:
            raise WaybillError("malformed_answer", NAME, "reprint gave another number")
        return result
