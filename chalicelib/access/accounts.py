"""Integration accounts: who sends us signed traffic, and the settings we need to call out.

One model for three kinds, each kept as one SecureString in SSM Parameter Store (see
accounts_store.py) and managed with `python -m chalicelib.admin`:
- a webhook source: the name in `/webhooks/{source}`, its signature scheme and its secrets;
- a courier provider's account, named `courier/<provider>`: the push secret and the client's
  settings (customer, key, endpoint and callback URLs);
- a CS channel, named `channel/<channel id>`: the robot's URL and signing secret, or the email
  sender and recipients.
Several secrets per account allow rotation without downtime. The secrets and the settings
never show in a repr (so in no log line or error text). Pure.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebhookSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    scheme: str
    secrets: tuple[str, ...] = Field(min_length=1, repr=False)
    # Account settings a provider's client needs (courier providers: customer, key, endpoint
    # and callback URLs); the secrets above are only for verifying what the source sends us.
    options: dict[str, str] = Field(default_factory=dict, repr=False)
