"""CS channels: one contract and one registry for every platform a case is told on (the IM
robots of WeCom, DingTalk, Feishu and Slack, and email through SES), and a thin `send` that does
the HTTP.

The contract (`Channel`): every platform's adapter names itself, gives the model of its settings
(`config_model`: a robot's webhook URL and secret, a mailbox's sender and recipients) and
declares its `delivery`, which says what else it offers:
- `Delivery.HTTP` (`HttpChannel`): `build_request(message, config, now)` builds the exact
  `chalicelib.core.http.Request` and `parse_response(status, body, headers)` reads the answer;
  `send` below puts one on the wire through `chalicelib.core.http.send`.
- `Delivery.SES` (`SesChannel`): `send_email_kwargs(message, config, to)` builds the SES
  SendEmail arguments; the caller's boto3 sends them (only flows talk to AWS).
Adapters do no I/O, so they are tested byte for byte without a network. Callers read
`delivery` (mypy narrows on it) and never a platform's name.

Every IM platform answers some failures with HTTP 200 and an error code in the body (DingTalk,
WeCom, Feishu), so success is decided by the body, never by the status alone.

The registry (`CHANNEL_MODULES`, platform -> module) imports an adapter on first use
(`channel("wecom")`): a Lambda that only emails pays for nothing else. A channel id, as routes
and the rota name one, is `<platform>:<name>` ("wecom:cs-team"): `platform_of` reads it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeAlias, cast

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from chalicelib.core import http
from chalicelib.core.http import JSON_CONTENT_TYPE, Request
from chalicelib.cs.alerts import Severity


class Language(StrEnum):
    ZH = "zh"
    EN = "en"


# The words of a message's link to its case, the same on every platform.
OPEN_LABEL: Mapping[Language, str] = {Language.ZH: "打开处理", Language.EN: "Open"}


class Message(BaseModel):
    """What CS reads, independent of the platform. `title` and `text` are plain text, much of it
    from outside (order names, buyer notes, partners' reports): every adapter escapes both for its
    format (chalicelib/cs/channels/escaping.py) before adding its own markup, so nothing in them is
    read as markup, a link or a mention. `text` is lines: only "\n" breaks one. Mentions are
    `mentions`, from the rota, and nothing else."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    text: str
    severity: Severity
    link: str = ""
    language: Language = Language.ZH
    kind: str = ""  # the alert kind, for tags and logs
    mentions: tuple[str, ...] = ()  # mobile numbers to @ where the platform allows it (DingTalk)


class Failure(StrEnum):
    RATE_LIMITED = "rate_limited"  # slow down and retry
    SECURITY = "security"  # signature, timestamp, keyword or IP rule refused it: fix the config
    INVALID_PAYLOAD = "invalid_payload"  # our message is malformed or too long: fix the code
    GONE = "gone"  # the webhook was removed, disabled or archived
    SERVER = "server_error"
    NETWORK = "network"
    UNEXPECTED = "unexpected"  # an answer we cannot read; not retried (it may have arrived)


_RETRYABLE = frozenset({Failure.RATE_LIMITED, Failure.SERVER, Failure.NETWORK})


@dataclass(frozen=True)
class ChannelResult:
    ok: bool
    error: Failure | None = None
    platform_code: str = ""  # errcode / code / Slack's error word / HTTP status, as sent
    detail: str = ""  # the platform's message; never contains the webhook URL
    retry_after: float | None = None  # seconds, when the platform says (or documents) it

    @property
    def retryable(self) -> bool:
        return self.error in _RETRYABLE

    @classmethod
    def success(cls, code: str = "0") -> ChannelResult:
        return cls(ok=True, platform_code=code)

    @classmethod
    def failure(cls, error: Failure, code: object = "", detail: str = "",
                retry_after: float | None = None) -> ChannelResult:
        return cls(ok=False, error=error, platform_code=str(code), detail=detail[:300],
                   retry_after=retry_after)


class Delivery(StrEnum):
    """How a platform's messages travel, and so which methods its adapter offers."""

    HTTP = "http"  # one HTTP request: build_request, sent by `send`, read by parse_response
    SES = "ses"  # SES SendEmail arguments: send_email_kwargs, sent by the caller's boto3


class ChannelBase(Protocol):
    """What every adapter declares."""

    @property
    def name(self) -> str: ...  # the platform, as in CHANNEL_MODULES

    @property
    def config_model(self) -> type[BaseModel]: ...  # its settings (an account in SSM)

    @property
    def delivery(self) -> Delivery: ...


class HttpChannel(ChannelBase, Protocol):
    """A robot reached by one HTTP request per message."""

    @property
    def delivery(self) -> Literal[Delivery.HTTP]: ...

    def build_request(self, message: Message, config: Any, now: datetime) -> Request: ...

    def parse_response(self, status: int, body: bytes,
                       headers: Mapping[str, str] | None = None) -> ChannelResult: ...


class SesChannel(ChannelBase, Protocol):
    """A mailbox reached through SES SendEmail; `to` replaces the configured recipients."""

    @property
    def delivery(self) -> Literal[Delivery.SES]: ...

    def send_email_kwargs(self, message: Message, config: Any,
                          to: Sequence[str] | None = None) -> dict[str, Any]: ...


# The contract: an adapter is one of these, and `delivery` tells which.
Channel: TypeAlias = HttpChannel | SesChannel


class WebhookConfig(BaseModel):
    """A robot's webhook URL as the platform shows it (token or key included) and its signing
    secret, if signing is on. Both are secrets: they never appear in repr or logs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_url: SecretStr
    secret: SecretStr | None = None

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("webhook_url must be an http(s) URL")
        return value

    @property
    def url(self) -> str:
        return self.webhook_url.get_secret_value()

    @property
    def secret_text(self) -> str | None:
        return None if self.secret is None else self.secret.get_secret_value()


# Registry --------------------------------------------------------------------------------------

CHANNEL_MODULES: Mapping[str, str] = {
    "slack": "chalicelib.cs.channels.slack",
    "dingtalk": "chalicelib.cs.channels.dingtalk",
    "feishu": "chalicelib.cs.channels.feishu",
    "wecom": "chalicelib.cs.channels.wecom",
    "email": "chalicelib.cs.channels.email",
}


def channel(platform: str) -> Channel:
    """The adapter for a platform, imported on first use; KeyError for one we do not know."""
    try:
        module = importlib.import_module(CHANNEL_MODULES[platform])
    except KeyError:
        raise KeyError(f"unknown channel platform {platform!r}; "
                       f"known: {sorted(CHANNEL_MODULES)}") from None
    return cast(Channel, module.CHANNEL)


def platform_of(channel_id: str) -> str:
    """The platform of a channel id: "wecom:cs-team" -> "wecom"."""
    return channel_id.split(":", 1)[0]


def delivery_of(platform: str) -> Delivery | None:
    """How a platform's messages travel; None for a platform no adapter knows."""
    return channel(platform).delivery if platform in CHANNEL_MODULES else None


def parse_config(platform: str, data: Mapping[str, Any] | str) -> BaseModel:
    """The platform's settings, validated (ValueError) from JSON text or a mapping."""
    model = channel(platform).config_model
    return model.model_validate_json(data) if isinstance(data, str) else model.model_validate(data)


# Helpers shared by the adapters ----------------------------------------------------------------

def json_request(url: str, body: Mapping[str, Any]) -> Request:
    """A POST of `body` as compact UTF-8 JSON, labelled UTF-8 (DingTalk and WeCom require the
    charset; the others get the same bytes and header, as they always have)."""
    return Request(url=url, json_body=body, headers={"Content-Type": JSON_CONTENT_TYPE})


def truncate_utf8(text: str, max_bytes: int, ellipsis: str = "…") -> str:
    """At most `max_bytes` of UTF-8, cut on a character boundary (WeCom counts bytes)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    room = max(0, max_bytes - len(ellipsis.encode("utf-8")))
    return encoded[:room].decode("utf-8", errors="ignore") + ellipsis


def json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def retry_after_header(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare enough to fall back to our own backoff


def transport_failure(status: int, body: bytes,
                      headers: Mapping[str, str] | None) -> ChannelResult | None:
    """Status codes that mean the same everywhere: 429 and 5xx are retried."""
    detail = body.decode("utf-8", errors="replace")
    if status == 429:
        return ChannelResult.failure(Failure.RATE_LIMITED, status, detail,
                                     retry_after_header(headers))
    if status >= 500:
        return ChannelResult.failure(Failure.SERVER, status, detail, retry_after_header(headers))
    return None


def unexplained(status: int, body: bytes, headers: Mapping[str, str] | None,
                code: object = None, detail: str | None = None) -> ChannelResult:
    """An answer none of the platform's own codes explain: 429 and 5xx as everywhere, else
    unexpected (not retried: it may have arrived). Without a code, the status and body stand in."""
    return transport_failure(status, body, headers) or ChannelResult.failure(
        Failure.UNEXPECTED, status if code is None else code,
        body.decode("utf-8", errors="replace") if detail is None else detail)


# The thin I/O part ----------------------------------------------------------------------------

# No answer at all (chalicelib.core.http.Unreachable): a retryable NETWORK result whose code
# names what happened; the URL (the robot's token) is never in it.
_NO_ANSWER: Mapping[str, tuple[str, str]] = {
    "timeout": ("timeout", "no answer in time"),
    "connect": ("ConnectionError", ""),
    "transport": ("TransportError", ""),
}


def post(request: Request) -> http.Answer | ChannelResult:
    """Send the request as built; no answer becomes a retryable result."""
    try:
        return http.send(request)
    except http.Unreachable as error:
        code, detail = _NO_ANSWER[error.kind]
        return ChannelResult.failure(Failure.NETWORK, code, detail)


def send(adapter: HttpChannel | str, message: Message, config: Any, now: datetime, *,
         timeout: float | tuple[float, float] | None = None) -> ChannelResult:
    """One message to a robot; `timeout` (seconds, or connect and read) replaces
    chalicelib.core.http.TIMEOUT."""
    chosen = channel(adapter) if isinstance(adapter, str) else adapter
    if chosen.delivery is not Delivery.HTTP:
        raise ValueError(f"{chosen.name} is delivered by {chosen.delivery}, not HTTP")
    request = chosen.build_request(message, config, now)
    if timeout is not None:
        pair = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        request = request.model_copy(update={"timeout": pair})
    answer = post(request)
    if isinstance(answer, ChannelResult):
        return answer
    return chosen.parse_response(answer.status, answer.body, answer.headers)
