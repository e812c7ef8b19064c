"""Mail with attachments through SES (`SendRawEmail`: an attachment needs a MIME message),
to an email channel's recipients: the returns register to sales, the reports to the manager.
The channel's settings are the ones CS's email channels keep (admin `channel email:<name>`)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from chalicelib.core import aws
from chalicelib.cs.channels.email import EmailConfig


def email_config(channel: str) -> EmailConfig:
    """An email channel's settings (LookupError when none are stored)."""
    from chalicelib.access import accounts_store as accounts

    source = accounts.channel(channel)
    if source is None:
        raise LookupError(f"no settings for the email channel {channel}")
    return EmailConfig.model_validate_json(source.secrets[0])


def send_raw(mail: EmailMessage, config: EmailConfig, kind: str) -> str:
    """Send `mail` from the channel's sender to its recipients; SES's message id. `kind`
    tags the message (SES event publishing tells a report from a register)."""
    kwargs: dict[str, Any] = {
        "Source": config.sender, "Destinations": list(config.to),
        "RawMessage": {"Data": bytes(mail)}, "Tags": [{"Name": "kind", "Value": kind}]}
    if config.configuration_set:
        kwargs["ConfigurationSetName"] = config.configuration_set
    answer = aws.client("ses").send_raw_email(**kwargs)
    return str(answer.get("MessageId", ""))
