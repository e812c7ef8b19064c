"""The Taobao Open Platform (TOP) gateway's signed call: one copy for every TOP caller (the
Taobao/Tmall order adapter, the Cainiao waybill provider).

Signing: all parameters but `sign` (common and business, empty ones left out) sorted by name,
concatenated as name+value; sign_method "md5": upper-hex MD5(secret + s + secret); "hmac":
upper-hex HMAC-MD5(key=secret, s); "hmac-sha256": upper-hex HMAC-SHA256(key=secret, s). Common
parameters: method, app_key, session (the seller's access token), timestamp "YYYY-MM-DD
HH:MM:SS" in GMT+8, format=json, v=2.0, sign_method. Sent as a form POST to the gateway.
Credentials: `app_key`, `app_secret`, `session`, `sign_method` (md5 when absent), `gateway`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from chalicelib.core.clock import aware
from chalicelib.core.http import Request

GATEWAY = "https://eco.taobao.com/router/rest"
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SIGN_METHODS = ("md5", "hmac", "hmac-sha256")


def top_time(now: datetime) -> str:
    return aware(now).astimezone(CHINA).strftime(TIME_FORMAT)


def sign(params: Mapping[str, str], secret: str, sign_method: str) -> str:
    text = "".join(f"{name}{value}" for name, value in sorted(params.items())
                   if name != "sign" and value != "").encode("utf-8")
    key = secret.encode("utf-8")
    if sign_method == "md5":
        digest = hashlib.md5(key + text + key).hexdigest()
    elif sign_method == "hmac":
        digest = hmac.new(key, text, hashlib.md5).hexdigest()
    elif sign_method == "hmac-sha256":
        digest = hmac.new(key, text, hashlib.sha256).hexdigest()
    else:
        raise ValueError(f"unknown sign_method {sign_method!r}; expected one of {SIGN_METHODS}")
    return digest.upper()


def top_call(method: str, params: Mapping[str, str], credentials: Mapping[str, str],
             now: datetime) -> Request:
    """One signed TOP request: the business `params` plus the common ones, form-encoded."""
    sign_method = credentials.get("sign_method") or "md5"
    common = {
        "method": method,
        "app_key": credentials["app_key"],
        "session": credentials.get("session", ""),
        "timestamp": top_time(now),
        "format": "json",
        "v": "2.0",
        "sign_method": sign_method,
    }
    clash = set(params) & (set(common) | {"sign"})
    if clash:
        raise ValueError(f"business parameters may not set {sorted(clash)}")
    merged = {name: value for name, value in {**params, **common}.items() if value != ""}
    form = dict(sorted(merged.items()))
    form["sign"] = sign(form, credentials["app_secret"], sign_method)
    return Request(method="POST", url=credentials.get("gateway") or GATEWAY, form=form)
