"""Slack incoming webhook: POST `{"text", "blocks"}` to the secret URL; no signature.

Slack answers `200 ok` (plain text, not JSON) or a status with a plain-text error word:
400 invalid_payload / no_text, 403 action_prohibited / invalid_token, 404 no_service /
channel_not_found, 410 channel_is_archived, 429 with Retry-After, 500 rollup_error. Posting is
limited to about one message a second per webhook (short bursts tolerated).

What came from outside is shown as typed (chalicelib/cs/channels/escaping.py): the header is
`plain_text` (`escaping.slack_plain`: only emoji codes would be read there), the section and the
top-level `text` are `mrkdwn` (`escaping.slack_mrkdwn`), and the section is `verbatim` so Slack
links no bare URL, #channel or @name in it. The icon and the link to the case are ours.
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
    json_request,
    transport_failure,
)
from chalicelib.cs.channels.escaping import one_line, slack_mrkdwn, slack_plain

HEADER_MAX_CHARS = 150  # Block Kit header text
SECTION_MAX_CHARS = 3000  # Block Kit section text

_ICONS = {Severity.LOW: ":information_source:", Severity.MEDIUM: ":large_yellow_circle:",
          Severity.HIGH: ":warning:", Severity.CRITICAL: ":rotating_light:"}

_INVALID = frozenset({"invalid_payload", "no_text", "invalid_blocks", "too_many_attachments"})
_SECURITY = frozenset({"action_prohibited", "invalid_token", "posting_to_general_channel_denied"})
_GONE = frozenset({"no_service", "no_team", "no_active_hooks", "channel_not_found",
                   "channel_is_archived", "user_not_found", "team_disabled"})


class SlackConfig(WebhookConfig):
    @model_validator(mode="after")
    def _unsigned(self) -> SlackConfig:
        if self.secret is not None:
            raise ValueError("Slack incoming webhooks are not signed: remove the secret")
        return self


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: str, label: str) -> str:
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{safe}|{label}>"


class Slack:
    name = "slack"
    config_model: type[BaseModel] = SlackConfig
    delivery: Final = Delivery.HTTP

    def build_request(self, message: Message, config: SlackConfig,
                      now: datetime) -> Request:
        del now  # nothing time-dependent: no signature
        title = one_line(message.title)
        header = f"{_ICONS[message.severity]} {slack_plain(title)}"
        blocks: list[dict[str, object]] = [
            {"type": "header",
             "text": {"type": "plain_text", "text": _clip(header, HEADER_MAX_CHARS),
                      "emoji": True}},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": _clip(slack_mrkdwn(message.text),
                                                       SECTION_MAX_CHARS), "verbatim": True}},
        ]
        if message.link:
            blocks.append({"type": "section", "text": {
                "type": "mrkdwn", "text": _link(message.link, OPEN_LABEL[message.language])}})
        # `text` is what notifications and screen readers show when blocks are present.
        fallback = "\n".join(part for part in (slack_mrkdwn(title), slack_mrkdwn(message.text),
                                                message.link) if part)
        return json_request(config.url, {"text": fallback, "blocks": blocks})

    def parse_response(self, status: int, body: bytes,
                       headers: Mapping[str, str] | None = None) -> ChannelResult:
        word = body.decode("utf-8", errors="replace").strip()
        if 200 <= status < 300:
            return ChannelResult.success(word or str(status))
        failed = transport_failure(status, body, headers)
        if failed is not None:
            return failed
        if word in _SECURITY or status in (401, 403):
            return ChannelResult.failure(Failure.SECURITY, word or status)
        if word in _GONE or status in (404, 410):
            return ChannelResult.failure(Failure.GONE, word or status)
        if word in _INVALID or status in (400, 413):
            return ChannelResult.failure(Failure.INVALID_PAYLOAD, word or status)
        return ChannelResult.failure(Failure.UNEXPECTED, word or status, f"HTTP {status}")


CHANNEL: HttpChannel = Slack()  # typed: mypy checks the protocol
