"""Kuaidi100 electronic waybill (电子面单 V2): plain receivers, most couriers (STO the default).

Protocol (Kuaidi100's own demo repositories, kuaidi100-api/php-demo `ele_order.php`,
`ele_cancel.php`, the Java/C# SDKs' LabelOrderResponse; checked in the stored references):
- issue: POST https://api.kuaidi100.com/label/order?method=order, form fields `param` (JSON),
  `key`, `t` (ms timestamp), `sign` = upper-case hex MD5(param + t + key + secret). `param`:
  printType (IMAGE: a label image), partnerId/partnerKey/partnerSecret/partnerName/net/code
  (the courier account, as the courier's outlet gave it), kuaidicom, recMan and sendMan
  {name, mobile, printAddr}, cargo, count, weight (kg), payType SHIPPER, expType, orderId (our
  unique id: the package's object id, so a retry is the same order), remark.
- answer: {"success", "code": 200, "message", "data": {taskId, kuaidinum, kdComOrderNum,
  label (a short link to the image), imgBase64 (the image, when asked), bulkpen, ...}}.
- cancel: POST .../label/order?method=cancel, the same form; `param` {partner fields,
  kuaidicom, kuaidinum, orderId (the kdComOrderNum when the order gave one), reason}.
- reprint: the issue call again with the same orderId: Kuaidi100 answers the number it
  already gave for that order (the same idempotency the issue relies on).
Error codes beyond 200 are not documented in the demos: they are mapped from the code where it
is one we know and else from the message's words (tests/fixtures/kuaidi100/README.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from chalicelib.core.http import Pace, Request
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

NAME = "kuaidi100"
LABEL_URL = "https://api.kuaidi100.com/label/order"
# Our guard against a runaway loop (Kuaidi100 documents no rate for labels): a whole wave (49
# packages) goes at once, then 50 a second.
PACE = Pace(key="kuaidi100.label", rate=50.0, burst=50)
# Our carrier codes (warehouse.carriers.Carrier) -> Kuaidi100 `kuaidicom` (the official SDK's
# CompanyConstant; the same codes its tracking uses).
KUAIDICOM: dict[str, str] = {
    "STO": "shentong", "SF": "shunfeng", "YTO": "yuantong", "ZTO": "zhongtong",
    "YUNDA": "yunda", "JD": "jd", "EMS": "ems",
}
PARTNER_FIELDS = ("partnerId", "partnerKey", "partnerSecret", "partnerName", "net", "code")
# Codes seen in Kuaidi100's answers (the tracking API shares 503 and 601).
CODES: dict[str, Reason] = {
    "400": "bad_request", "503": "bad_signature", "601": "balance_empty",
    "500": "provider_unavailable", "502": "provider_unavailable",
}
# Words of its messages, first match wins: the label API's codes are not all documented.
WORDS: tuple[tuple[tuple[str, ...], Reason], ...] = (
    (("余额", "单号不足", "面单不足", "余量"), "balance_empty"),
    (("超区", "不可达", "不派送", "不在服务范围", "无法派送"), "address_unreachable"),
    (("签名", "sign"), "bad_signature"),
    (("账号", "月结", "partner", "授权"), "account"),
    (("繁忙", "超时", "稍后", "系统异常"), "provider_unavailable"),
    (("频率", "限流"), "rate_limited"),
)


def sign(param: str, t: str, key: str, secret: str) -> str:
    """Upper-case hex MD5 of param + t + key + secret (no separators)."""
    return hashlib.md5((param + t + key + secret).encode("utf-8")).hexdigest().upper()


def kuaidicom(courier: str) -> str:
    try:
        return KUAIDICOM[courier.upper()]
    except KeyError:
        raise WaybillError("bad_request", NAME, f"no kuaidicom for {courier}") from None


def _partner(account: Mapping[str, str]) -> dict[str, str]:
    return {name: account[name] for name in PARTNER_FIELDS if account.get(name)}


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _form(method: str, param: Mapping[str, Any], account: Mapping[str, str],
          now_ms: int) -> Request:
    text, t = _dumps(param), str(now_ms)
    return Request(url=account.get("label_url") or LABEL_URL, params={"method": method},
                   form={"param": text, "key": account["key"], "t": t,
                         "sign": sign(text, t, account["key"], account["secret"])},
                   pace=PACE)


def order_param(request: WaybillRequest, account: Mapping[str, str]) -> dict[str, Any]:
    receiver = request.receiver
    if receiver.kind != "plain":
        # An encrypted receiver can only be labelled through its platform's channel.
        raise WaybillError("bad_request", NAME, f"{receiver.kind} receiver")
    sender = request.sender
    return {
        "printType": "IMAGE",
        **_partner(account),
        "kuaidicom": kuaidicom(request.courier),
        "recMan": {"name": receiver.name, "mobile": receiver.phone,
                   "printAddr": receiver.one_line()},
        "sendMan": {"name": sender.name, "mobile": sender.phone, "printAddr": sender.one_line()},
        "cargo": request.cargo(),
        "count": str(request.item_count),
        "weight": f"{request.weight_grams / 1000:.3f}".rstrip("0").rstrip("."),
        "payType": "SHIPPER",
        "expType": "标准快递",
        "orderId": request.object_id,
        "remark": request.job_id,
    }


def build_issue(request: WaybillRequest, account: Mapping[str, str], now_ms: int) -> Request:
    return _form("order", order_param(request, account), account, now_ms)


def build_cancel(courier: str, waybill_number: str, provider_order_id: str,
                 account: Mapping[str, str], now_ms: int) -> Request:
    param: dict[str, Any] = {**_partner(account), "kuaidicom": kuaidicom(courier),
                             "kuaidinum": waybill_number, "reason": "订单取消"}
    if provider_order_id:
        param["orderId"] = provider_order_id
    return _form("cancel", param, account, now_ms)


def error_of(body: Mapping[str, Any]) -> WaybillError | None:
    """None when the answer is a success; else the reason its code or message gives."""
    code = str(body.get("code", "")).strip()
    if code == "200" and body.get("success", True) is not False:
        return None
    return WaybillError(_reason(code, str(body.get("message", "")).lower()), NAME,
                        code or "no_code")


def _reason(code: str, message: str) -> Reason:
    known = CODES.get(code)
    if known is not None:
        return known
    for words, reason in WORDS:
        if any(word in message for word in words):
            return reason
    return "bad_request"


def parse_issue(body: Mapping[str, Any], request: WaybillRequest) -> WaybillResult:
    error = error_of(body)
    if error is not None:
        raise error
    data = body.get("data")
    if not isinstance(data, Mapping) or not str(data.get("kuaidinum") or ""):
        raise WaybillError("malformed_answer", NAME, "no kuaidinum")
    image = data.get("imgBase64")
    if isinstance(image, list):  # one image per label part; the first is the main label
        image = image[0] if image else ""
    label = Label(format="png", content_base64=str(image or ""), url=str(data.get("label") or ""))
    if not label.content_base64 and not label.url:
        raise WaybillError("malformed_answer", NAME, "no label")
    return WaybillResult(provider=NAME, object_id=request.object_id, courier=request.courier,
                         waybill_number=str(data["kuaidinum"]), label=label,
                         provider_order_id=str(data.get("kdComOrderNum") or ""))


def parse_cancel(body: Mapping[str, Any]) -> None:
    error = error_of(body)
    if error is not None and not any(w in str(body.get("message", "")) for w in ("已取消",)):
        raise error


class Kuaidi100Waybills(AccountProvider):
    """Kuaidi100 with one account: key, secret, the partner fields, optionally label_url."""

    name = NAME

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def issue(self, request: WaybillRequest) -> WaybillResult:
        answer = exchange(build_issue(request, self.account, self._now_ms()), NAME)
        return parse_issue(json_object(answer, NAME), request)

    def cancel(self, courier: str, waybill_number: str, provider_order_id: str = "") -> None:
        call = build_cancel(courier, waybill_number, provider_order_id, self.account,
                            self._now_ms())
        parse_cancel(json_object(exchange(call, NAME), NAME))

    def reprint(self, request: WaybillRequest, waybill_number: str) -> WaybillResult:
        result = self.issue(request)  # the same orderId: Kuaidi100 answers the same number
        if result.waybill_number != waybill_number:
            raise WaybillError("malformed_answer", NAME, "reprint gave another number")
        return result
