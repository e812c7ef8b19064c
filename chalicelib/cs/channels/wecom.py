"""WeCom (企业微信) group robot ("群机器人").

POST JSON to `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`; there is no signature
(the key in the URL is the only secret). We send `markdown`: its content may be at most 4096
bytes of UTF-8 (errcode 40058 "markdown.content exceed max length 4096"), so the text is cut to
fit and the title and link always survive. A robot may send about 20 messages a minute.

Answers are HTTP 200 with `{"errcode", "errmsg"}`: 0 ok; 45009 api freq out of limit;
93000 invalid webhook url (key removed); 40008 invalid message type; 40058 invalid parameter
(too long); 44004 empty content.

The title and text pass through `escaping.wecom_markdown` (chalicelib/cs/channels/escaping.py):
what came from outside is shown as typed; the coloured bold title and the link are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from pydantic import BaseModel, model_validator

from chalicelib.core.http import Request
from chalicelib.cs.alerts import Severity
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
    truncate_utf8,
    unexplained,
)
from chalicelib.cs.channels.escaping import one_line, wecom_markdown

MARKDOWN_MAX_BYTES = 4096
RATE_WINDOW_SECONDS = 60.0  # the limit is per minute: waiting a minute always helps

# WeCom markdown knows three font colours: info (green), comment (grey), warning (orange-red).
_COLOUR = {Severity.LOW: "comment", Severity.MEDIUM: "info", Severity.HIGH: "warning",
           Severity.CRITICAL: "warning"}
_RATE = frozenset({45009})
_GONE = frozenset({93000})
_INVALID = frozenset({40008, 40058, 44004})


class WeComConfig(WebhookConfig):
    @model_validator(mode="after")
    def _unsigned(self) -> WeComConfig:
        if self.secret is not None:
            raise ValueError("WeCom group robots are not signed: remove the secret")
        return self


def markdown(message: Message) -> str:
    # A title can never crowd out the link.
    title = truncate_utf8(wecom_markdown(one_line(message.title)), 512)
    head = f'<font color="{_COLOUR[message.severity]}">**{title}**</font>'
    tail = f"[{OPEN_LABEL[message.language]}]({message.link})" if message.link else ""
    fixed = len(f"{head}\n\n{tail}".encode())
    text = truncate_utf8(wecom_markdown(message.text), max(0, MARKDOWN_MAX_BYTES - fixed))
    return "\n".join(part for part in (head, text, tail) if part)


class WeCom:
    name = "wecom"
    config_model: type[BaseModel] = WeComConfig
    delivery: Final = Delivery.HTTP

    def build_request(self, message: Message, config: WeComConfig,
                      now: datetime) -> Request:
        del now  # unsigned
        return json_request(config.url, {"msgtype": "markdown",
                                         "markdown": {"content": markdown(message)}})

    def parse_response(self, status: int, body: bytes,
                       headers: Mapping[str, str] | None = None) -> ChannelResult:
        answer = json_object(body)
        code = answer.get("errcode") if answer else None
        if not isinstance(code, int):
            return unexplained(status, body, headers)
        # errmsg echoes our egress IP and a hint id: useful to support, harmless in logs.
        detail = str((answer or {}).get("errmsg", ""))
        if code == 0:
            return ChannelResult.success()
        if code in _RATE:
            return ChannelResult.failure(Failure.RATE_LIMITED, code, detail, RATE_WINDOW_SECONDS)
        for codes, failure in ((_GONE, Failure.GONE), (_INVALID, Failure.INVALID_PAYLOAD)):
            if code in codes:
                return ChannelResult.failure(failure, code, detail)
        return unexplained(status, body, headers, code, detail)


CHANNEL: HttpChannel = WeCom()  # typed: mypy checks the protocol
