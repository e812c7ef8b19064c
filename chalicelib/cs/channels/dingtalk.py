"""DingTalk custom robot ("自定义机器人").

POST JSON to the robot URL (`https://oapi.dingtalk.com/robot/send?access_token=T`); with signing
on ("加签"), append `&timestamp=MS&sign=S`, MS the current time in milliseconds (DingTalk refuses
one more than an hour off) and S = url-encode(base64(HMAC-SHA256(key=secret,
msg=f"{MS}\\n{secret}"))). The body is `markdown` so the link is clickable; `at.atMobiles` plus
"@mobile" in the text notify the on-duty person even in a muted group.

Answers are HTTP 200 with `{"errcode", "errmsg"}`: 0 ok; 310000 the security settings refused it
("sign not match", "invalid timestamp", "keywords not in content", "ip … not in whitelist");
130101 "send too fast, exceed 20 times per minute" (the robot is then throttled for 10 minutes);
300005 token is not exist; 40035 missing parameter; 400105 unsupported msgtype. Anything
else is read from the HTTP status (429, 5xx) or reported as unexpected.

The title and text pass through `escaping.dingtalk_markdown` (chalicelib/cs/channels/escaping.py):
what came from outside is shown as typed, and mentions come only from the rota
(`Message.mentions`): the heading, the link and the "@mobile" line are ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Final
from urllib.parse import quote_plus

from pydantic import BaseModel

from chalicelib.core.clock import epoch_millis
from chalicelib.core.http import Request
from chalicelib.cs.channels import (
    OPEN_LABEL,
    ChannelResult,
    Delivery,
    Failure,
    HttpChannel,
    Message,
    WebhookConfig,
    json_object,
    json_request,
    unexplained,
)
from chalicelib.cs.channels.escaping import dingtalk_markdown, one_line

THROTTLE_SECONDS = 600.0  # documented: over 20 a minute blocks the robot for 10 minutes

_RATE = frozenset({130101, 410100})
_SECURITY = frozenset({310000, 300001})  # 300001: newer "关键词不匹配" answer (3rd-party seen)
_GONE = frozenset({300005})  # token is not exist: the robot was deleted
_INVALID = frozenset({40035, 400105})


class DingTalkConfig(WebhookConfig):
    pass


def sign(timestamp_ms: int, secret: str) -> str:
    """The `sign` query value, already url-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def signed_url(url: str, secret: str | None, now: datetime) -> str:
    if secret is None:
        return url
    timestamp = epoch_millis(now)
    separator = "&" if "?" in url else "?"
    # Appended as text: `sign` is already encoded and must not be encoded twice.
    return f"{url}{separator}timestamp={timestamp}&sign={sign(timestamp, secret)}"


def _title(message: Message) -> str:
    return dingtalk_markdown(one_line(message.title))


def _markdown(message: Message) -> str:
    # DingTalk markdown needs a blank line between paragraphs to break them.
    parts = [f"#### {_title(message)}", *dingtalk_markdown(message.text).split("\n")]
    if message.link:
        parts.append(f"[{OPEN_LABEL[message.language]}]({message.link})")
    if message.mentions:
        parts.append(" ".join(f"@{mobile}" for mobile in message.mentions))
    return "\n\n".join(part for part in parts if part.strip())


class DingTalk:
    name = "dingtalk"
    config_model: type[BaseModel] = DingTalkConfig
    delivery: Final = Delivery.HTTP

    def build_request(self, message: Message, config: DingTalkConfig,
                      now: datetime) -> Request:
        body = {
            "msgtype": "markdown",
            "markdown": {"title": _title(message), "text": _markdown(message)},
            "at": {"atMobiles": list(message.mentions), "isAtAll": False},
        }
        return json_request(signed_url(config.url, config.secret_text, now), body)

    def parse_response(self, status: int, body: bytes,
                       headers: Mapping[str, str] | None = None) -> ChannelResult:
        answer = json_object(body)
        code = answer.get("errcode") if answer else None
        if isinstance(code, str) and code.lstrip("-").isdigit():
            code = int(code)
        if not isinstance(code, int):
            return unexplained(status, body, headers)
        detail = str(answer.get("errmsg", "")) if answer else ""
        if code == 0:
            return ChannelResult.success()
        if code in _RATE:
            return ChannelResult.failure(Failure.RATE_LIMITED, code, detail, THROTTLE_SECONDS)
        for codes, failure in ((_SECURITY, Failure.SECURITY), (_GONE, Failure.GONE),
                               (_INVALID, Failure.INVALID_PAYLOAD)):
            if code in codes:
                return ChannelResult.failure(failure, code, detail)
        return unexplained(status, body, headers, code, detail)


CHANNEL: HttpChannel = DingTalk()  # typed: mypy checks the protocol
