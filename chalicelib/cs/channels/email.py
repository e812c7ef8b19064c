"""Email through SES, the channel every other one falls back to: the pure half. Builds the
keyword arguments of SES `SendEmail` (API v1: `Source`, `Destination`, `Message{Subject,
Body{Text, Html}}`); the caller (chalicelib/flows/notifier.py) passes them to
`boto3.client("ses").send_email(**kwargs)`. `CHANNEL` is its adapter in the channel registry
(`Delivery.SES`).

SES only sends from a verified identity (an address, or a whole domain), so the configuration
names the identities it has verified and the sender must be one of them: a typo fails when the
rules load, not at 3 a.m. when the first alert bounces with MessageRejected.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, model_validator

from chalicelib.cs.alerts import Severity
from chalicelib.cs.channels import OPEN_LABEL, Delivery, Language, Message, SesChannel
from chalicelib.cs.channels.escaping import email_html, inert, one_line

CHARSET = "UTF-8"
SUBJECT_MAX_CHARS = 200

_COLOUR = {Severity.LOW: "#6b7280", Severity.MEDIUM: "#2563eb", Severity.HIGH: "#d97706",
           Severity.CRITICAL: "#dc2626"}
_HTML_LANG = {Language.ZH: "zh-CN", Language.EN: "en"}
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # SES tag names and values allow only these


def _address(text: str) -> str:
    return parseaddr(text)[1].strip().lower()


class EmailConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: str  # "CS Alerts <alerts@example.com>" or a bare address
    verified_identities: tuple[str, ...]  # addresses or domains verified in SES
    to: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    configuration_set: str | None = None  # SES event publishing (bounces, deliveries)

    @model_validator(mode="after")
    def _verified_sender(self) -> EmailConfig:
        address = _address(self.sender)
        if "@" not in address:
            raise ValueError(f"sender {self.sender!r} has no email address")
        identities = {identity.strip().lower() for identity in self.verified_identities}
        if address not in identities and address.rsplit("@", 1)[1] not in identities:
            raise ValueError(f"sender {address} is not a verified SES identity "
                             f"(verified: {sorted(identities)})")
        for recipient in (*self.to, *self.reply_to):
            if "@" not in _address(recipient):
                raise ValueError(f"{recipient!r} is not an email address")
        return self


def envelope(config: EmailConfig, subject: str, what: str) -> EmailMessage:
    """A new raw message (for SES `SendRawEmail`) from the channel's sender to its
    recipients, its id naming `what` it carries (a report, a register) at the sender's domain.
    Raises ValueError when the channel has nobody to send to."""
    if not config.to:
        raise ValueError("no recipients: configure the channel's `to`")
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = config.sender
    mail["To"] = ", ".join(config.to)
    if config.reply_to:
        mail["Reply-To"] = ", ".join(config.reply_to)
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(what, domain=_address(config.sender).rpartition("@")[2]
                                    or None)
    return mail


def subject(message: Message) -> str:
    # A header: no line breaks, and short enough to read in a list.
    flat = inert(one_line(message.title))
    return flat if len(flat) <= SUBJECT_MAX_CHARS else flat[: SUBJECT_MAX_CHARS - 1] + "…"


def plain_text(message: Message) -> str:
    parts = [inert(one_line(message.title)), "", inert(message.text)]
    if message.link:
        parts += ["", f"{OPEN_LABEL[message.language]}: {message.link}"]
    return "\n".join(parts) + "\n"


def html_body(message: Message) -> str:
    lines = "<br>\n".join(email_html(line) for line in message.text.split("\n"))
    link = (f'<p><a href="{html.escape(message.link, quote=True)}">'
            f"{OPEN_LABEL[message.language]}</a></p>\n") if message.link else ""
    return (f'<!DOCTYPE html>\n<html lang="{_HTML_LANG[message.language]}"><head>'
            f'<meta charset="utf-8"><title>{email_html(subject(message))}</title></head>\n'
            f'<body style="font-family:sans-serif">\n'
            f'<h2 style="color:{_COLOUR[message.severity]}">'
            f"{email_html(one_line(message.title))}</h2>\n"
            f"<p>{lines}</p>\n{link}</body></html>\n")


def _tag(name: str, value: str) -> dict[str, str]:
    return {"Name": name, "Value": _TAG_UNSAFE.sub("_", value)[:256] or "none"}


def send_email_kwargs(message: Message, config: EmailConfig,
                      to: Sequence[str] | None = None) -> dict[str, Any]:
    """`to` overrides the configured recipients (the rota picks the on-duty person)."""
    recipients = list(to if to is not None else config.to)
    if not recipients:
        raise ValueError("no recipients: configure `to` or pass the rota's addresses")
    kwargs: dict[str, Any] = {
        "Source": config.sender,
        "Destination": {"ToAddresses": recipients},
        "Message": {
            "Subject": {"Data": subject(message), "Charset": CHARSET},
            "Body": {"Text": {"Data": plain_text(message), "Charset": CHARSET},
                     "Html": {"Data": html_body(message), "Charset": CHARSET}},
        },
        "Tags": [_tag("kind", message.kind or "none"), _tag("severity", message.severity)],
    }
    if config.reply_to:
        kwargs["ReplyToAddresses"] = list(config.reply_to)
    if config.configuration_set:
        kwargs["ConfigurationSetName"] = config.configuration_set
    return kwargs


class Email:
    name = "email"
    config_model: type[BaseModel] = EmailConfig
    delivery: Final = Delivery.SES

    def send_email_kwargs(self, message: Message, config: EmailConfig,
                          to: Sequence[str] | None = None) -> dict[str, Any]:
        return send_email_kwargs(message, config, to)


CHANNEL: SesChannel = Email()  # typed: mypy checks the protocol
