"""The Douyin shop (抖店) open API's signed call: one copy for every caller (the Douyin order
adapter, the Douyin electronic waybill provider).

Official Go/PHP SDKs (`core/doudian_op_api_client.go`, `utils/sign_util.go`): `POST
https://openapi-fxg.jinritemai.com/<method with "/" for ".">?app_key=&method=&access_token=&
timestamp=<unix seconds>&v=2&sign_method=hmac-sha256&sign=`, body = param_json (keys sorted
recursively, compact, non-ASCII unescaped). sign = lower-hex HMAC-SHA256(key=app_secret,
app_secret + "app_key"+app_key + "method"+method + "param_json"+param_json +
"timestamp"+timestamp + "v"+"2" + app_secret). Credentials: `app_key`, `app_secret`,
`access_token`, `api_base` (a stand-in's address).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chalicelib.core.http import Request

API_BASE = "https://openapi-fxg.jinritemai.com"
API_VERSION = "2"


def param_json(params: Mapping[str, Any]) -> str:
    """The SDKs' serialisation: keys sorted (recursively), compact, non-ASCII unescaped."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign(app_key: str, app_secret: str, method: str, params_json: str, timestamp: str) -> str:
    pattern = (f"app_key{app_key}method{method}param_json{params_json}"
               f"timestamp{timestamp}v{API_VERSION}")
    message = f"{app_secret}{pattern}{app_secret}".encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


def gateway_call(method: str, params: Mapping[str, Any], credentials: Mapping[str, str],
                 now: datetime, access_token: str | None) -> Request:
    """One signed gateway call; `access_token` None for token.refresh, which takes none."""
    body = param_json(params)
    timestamp = str(int(now.timestamp()))
    app_key, app_secret = credentials["app_key"], credentials["app_secret"]
    base = (credentials.get("api_base") or API_BASE).rstrip("/")
    return Request(
        method="POST",
        url=f"{base}/{method.replace('.', '/')}",
        params={
            "app_key": app_key,
            "method": method,
            **({} if access_token is None else {"access_token": access_token}),
            "timestamp": timestamp,
            "v": API_VERSION,
            "sign_method": "hmac-sha256",
            "sign": sign(app_key, app_secret, method, body, timestamp),
        },
        headers={"Content-Type": "application/json", "x-open-no-old-err-code": "1"},
        raw_body=body.encode(),
    )


def api_call(method: str, params: Mapping[str, Any], credentials: Mapping[str, str],
             now: datetime) -> Request:
    return gateway_call(method, params, credentials, now, credentials["access_token"])
