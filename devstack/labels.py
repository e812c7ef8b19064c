"""The simulated courier network's electronic waybills (Kuaidi100 `label/order`), served by the
courier simulator (devstack/courier.py) beside its tracking.

It checks the signature exactly as Kuaidi100 does (upper MD5 of param + t + key + secret, the
wire format of chalicelib.warehouse.waybills.kuaidi100), issues one number per `orderId` (a
repeated order answers the number it already has: the idempotency our print gate relies on),
returns a small valid PNG label, and takes numbers back (`method=cancel`). A `balance` (numbers
left) lets a test run the account dry; `latency` makes every call take that long (the
benchmark's provider answering in 150 ms).

Guesses: the error codes and messages (a real account's are not in the demos); 30002 for an
empty balance, 30003 for a courier the account lacks, 30005 for an unknown number on cancel.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.warehouse.waybills import kuaidi100 as wb

LABEL_PATH = "/label/order"
BAD_SIGNATURE = {"success": False, "code": 503, "message": "验证签名失败"}
BAD_PARAM = {"success": False, "code": 400, "message": "参数错误"}
EMPTY_BALANCE = {"success": False, "code": 30002, "message": "电子面单余额不足，请联系网点充值"}
UNKNOWN_COURIER = {"success": False, "code": 30003, "message": "不支持的快递公司"}
UNKNOWN_NUMBER = {"success": False, "code": 30005, "message": "单号不存在"}
OK = {"success": True, "code": 200, "message": "success"}


def png(width: int = 16, height: int = 8) -> bytes:
    """A small valid PNG (grey stripes): something a person can open."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + bytes((0x30 if (x // 2) % 2 else 0xF0) for x in range(width))
                    for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@dataclass
class Issued:
    number: str
    courier_order: str
    kuaidicom: str
    cancelled: bool = False


@dataclass
class Labels:
    """The label desk of one Kuaidi100 account (key, secret)."""

    key: str
    secret: str
    balance: int | None = None  # numbers left; None: unlimited
    latency: float = 0.0  # seconds every call takes
    orders: dict[str, Issued] = field(default_factory=dict)  # by orderId
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    def answer(self, method: str, form: Mapping[str, str]) -> dict[str, Any]:
        if self.latency:
            time.sleep(self.latency)
        param, t, sign = form.get("param", ""), form.get("t", ""), form.get("sign", "")
        if form.get("key") != self.key or sign != wb.sign(param, t, self.key, self.secret):
            return BAD_SIGNATURE
        try:
            body = json.loads(param)
        except ValueError:
            return BAD_PARAM
        if not isinstance(body, dict):
            return BAD_PARAM
        with self._lock:
            self.calls += 1
            if method == "order":
                return self._order(body)
            if method == "cancel":
                return self._cancel(body)
        return BAD_PARAM

    def numbers(self) -> list[str]:
        with self._lock:
            return [issued.number for issued in self.orders.values()]

    def describe(self) -> list[dict[str, Any]]:
        """GET /_sim/labels: every number issued, by order, and whether it was given back."""
        with self._lock:
            return [{"order_id": order_id, "number": i.number, "kuaidicom": i.kuaidicom,
                     "cancelled": i.cancelled} for order_id, i in self.orders.items()]

    def _order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        order_id, com = str(body.get("orderId") or ""), str(body.get("kuaidicom") or "")
        if not order_id or not body.get("recMan") or not body.get("sendMan"):
            return BAD_PARAM
        if com not in wb.KUAIDICOM.values():
            return UNKNOWN_COURIER
        issued = self.orders.get(order_id)
        if issued is None or issued.cancelled:
            if self.balance is not None and self.balance <= 0:
                return EMPTY_BALANCE
            self._next += 1
            if self.balance is not None:
                self.balance -= 1
            issued = self.orders[order_id] = Issued(
                number=f"77{int(time.time()) % 10**6:06d}{self._next:07d}",
                courier_order=f"SIM{self._next:09d}", kuaidicom=com)
        task = f"T{abs(hash(order_id)) % 10**12:012d}"
        return {**OK, "data": {"taskId": task, "kuaidinum": issued.number,
                               "kdComOrderNum": issued.courier_order,
                               "label": f"http://label.local/{task}.png",
                               "imgBase64": [b64encode(png()).decode()]}}

    def _cancel(self, body: Mapping[str, Any]) -> dict[str, Any]:
        number = str(body.get("kuaidinum") or "")
        issued = next((i for i in self.orders.values() if i.number == number), None)
        if issued is None:
            return UNKNOWN_NUMBER
        issued.cancelled = True
        return OK


@dataclass
class PlatformWaybills:
    """A platform channel's waybill desk (Cainiao for the Taobao shop, Douyin's e-waybill): one
    number per package key (a repeat answers the same number), numbers given back, and print
    data that only the platform's print component could read (opaque here)."""

    prefix: str  # the number's first digits, per platform
    issued: dict[str, str] = field(default_factory=dict)  # package key -> number
    cancelled: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, key: str) -> str:
        with self._lock:
            number = self.issued.get(key)
            if number is None or number in self.cancelled:
                number = self.issued[key] = f"{self.prefix}{len(self.issued) + 1:010d}"
            return number

    def known(self, number: str) -> bool:
        with self._lock:
            return number in self.issued.values() and number not in self.cancelled

    def cancel(self, number: str) -> bool:
        with self._lock:
            if number not in self.issued.values():
                return False
            self.cancelled.add(number)
            return True

    def describe(self) -> dict[str, Any]:
        """GET /_sim/waybills on the shop: the numbers issued by package key, those given back."""
        with self._lock:
            return {"issued": dict(self.issued), "cancelled": sorted(self.cancelled)}

    @staticmethod
    def print_data(number: str, template_url: str = "") -> str:
        """Encrypted-looking print data: the real one is decrypted by the print component."""
        blob = b64encode(zlib.compress(f"waybill:{number}".encode())).decode()
        document = {"encryptedData": f"AES:{blob}", "signature": f"MD:{number[-6:]}",
                    "ver": "waybill_print_secret_version_1"}
        if template_url:
            document["templateURL"] = template_url
        return json.dumps(document, separators=(",", ":"))
