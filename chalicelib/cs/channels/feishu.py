"""Feishu / Lark custom bot ("自定义机器人").

POST JSON to `https://open.feishu.cn/open-apis/bot/v2/hook/<id>` (Lark:
open.larksuite.com). With signature verification on, the body carries `timestamp` (seconds, as
a string, within an hour of Feishu's clock) and `sign` = base64(HMAC-SHA256(
key=f"{timestamp}\\n{secret}", msg=b"")): unlike DingTalk the secret is in the key and the
message is empty. We send `post` (rich text) so the link is a real link.

Answers are JSON `{"code", "msg", "data"}` (older answers: `StatusCode`/`StatusMessage`): 0 ok;
19021 sign match fail or timestamp not within one hour; 19022 IP not allowed; 19024 keyword not
found; 9499 bad request (malformed body); 11232 frequency limited (100 a minute, 5 a second
per bot). The body may not exceed 20 KB.

A post's title and `text` elements are shown as typed; they still pass through
`escaping.feishu_text` (chalicelib/cs/channels/escaping.py) for what every client acts on (a
bare URL, invisible and line-breaking characters). Links and mentions are elements of their own:
the only `a` is our link to the case, and we write no `at`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from chalicelib.core.clock import epoch_millis
from chalicelib.core.http import Request
from chalicelib.cs.channels import (
    OPEN_LABEL,
    ChannelResult,
    Delivery,
    Failure,
    HttpChannel,
    Language,
    Message,
    WebhookConfig,
    json_object,
    json_request,
    truncate_utf8,
    unexplained,
)
from chalicelib.cs.channels.escaping import feishu_text, one_line

MAX_TEXT_BYTES = 16 * 1024  # leaves room for the rest of the 20 KB body

_LOCALE = {Language.ZH: "zh_cn", Language.EN: "en_us"}
_SECURITY = frozenset({19021, 19022, 19024})
_RATE = frozenset({11232})
_INVALID = frozenset({9499, 19002})
_GONE = frozenset({19001})  # incoming webhook access token invalid


class FeishuConfig(WebhookConfig):
    pass


def sign(timestamp_s: int, secret: str) -> str:
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def _post(message: Message) -> dict[str, Any]:
    text = truncate_utf8(feishu_text(message.text), MAX_TEXT_BYTES)
    paragraphs: list[list[dict[str, str]]] = [
        [{"tag": "text", "text": line}] for line in text.split("\n") if line.strip()]
    if message.link:
        paragraphs.append([{"tag": "a", "text": OPEN_LABEL[message.language],
                            "href": message.link}])
    title = feishu_text(one_line(message.title))
    return {"post": {_LOCALE[message.language]: {"title": title, "content": paragraphs}}}


def _code(answer: dict[str, Any] | None) -> int | None:
    if answer is None:
        return None
    code = answer.get("code", answer.get("StatusCode"))
    return code if isinstance(code, int) else None


class Feishu:
    name = "feishu"
    config_model: type[BaseModel] = FeishuConfig
    delivery: Final = Delivery.HTTP

    def build_request(self, message: Message, config: FeishuConfig,
                      now: datetime) -> Request:
        body: dict[str, Any] = {}
        secret = config.secret_text
        if secret is not None:
            seconds = epoch_millis(now) // 1000
            body |= {"timestamp": str(seconds), "sign": sign(seconds, secret)}
        body |= {"msg_type": "post", "content": _post(message)}
        return json_request(config.url, body)

    def parse_response(self, status: int, body: bytes,
                       headers: Mapping[str, str] | None = None) -> ChannelResult:
        answer = json_object(body)
        code = _code(answer)
        if code is None:
            return unexplained(status, body, headers)
        detail = str((answer or {}).get("msg", (answer or {}).get("StatusMessage", "")))
        if code == 0:
            return ChannelResult.success()
        for codes, failure in ((_SECURITY, Failure.SECURITY), (_RATE, Failure.RATE_LIMITED),
                               (_INVALID, Failure.INVALID_PAYLOAD), (_GONE, Failure.GONE)):
            if code in codes:
                return ChannelResult.failure(failure, code, detail)
        return unexplained(status, body, headers, code, detail)


CHANNEL: HttpChannel = Feishu()  # typed: mypy checks the protocol
