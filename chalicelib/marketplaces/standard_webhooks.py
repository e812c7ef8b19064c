"""Any source that signs with the Standard Webhooks scheme and sends our canonical order.

Signature: `webhook-signature: v1,<base64>` (a space-separated list during key rotation) over
`{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256 with the base64-decoded `whsec_`
secret; timestamps more than 5 minutes off are refused (replay protection). Verification is the
`standardwebhooks` library's. Dedupe on `webhook-id`.

Body: `{"type": "order.created" | "order.updated" | "order.paid" | "order.cancelled",
"timestamp": ISO-8601, "data": <canonical order, see chalicelib.orders.order.Order, without
"marketplace", which is the source name>}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib.core.errors import ApiError
from chalicelib.core.signatures import (
    STANDARD_WEBHOOK_HEADERS,
    delivery_id,
    parse_json_object,
    standard_webhook_failure,
    validate_payload,
)
from chalicelib.marketplaces.contract import Inbound, Marketplace
from chalicelib.orders.deliveries import Accepted
from chalicelib.orders.order import InvalidOrder, Order

NAME = "standard"  # the scheme; an order's marketplace is the name of the source that sent it


class CanonicalOrder(Order):
    """The canonical order as a sender writes it: the marketplace is the source itself."""

    marketplace: str = ""


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["order.created", "order.updated", "order.paid", "order.cancelled"]
    timestamp: datetime
    data: CanonicalOrder


def accept(headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
           now: datetime) -> Accepted:
    missing = [name for name in STANDARD_WEBHOOK_HEADERS if not headers.get(name)]
    if missing:
        raise ApiError(401, "missing_signature", "Standard Webhooks headers are required",
                       missing=missing)
    reason = standard_webhook_failure(headers, raw, secrets)
    if reason:
        raise ApiError(401, reason, "webhook signature verification failed")
    webhook_id = delivery_id(headers["webhook-id"], "webhook-id")
    envelope = validate_payload(Envelope, parse_json_object(raw))
    return Accepted(delivery_id=webhook_id, topic=envelope.type,
                    shop=envelope.data.shop,
                    headers={"webhook-timestamp": headers["webhook-timestamp"]})


def normalise(raw: bytes, headers: Mapping[str, str], source: str) -> Order:
    try:
        data: Any = Envelope.model_validate_json(raw).data.model_dump()
        return Order.model_validate({**data, "marketplace": source})
    except ValidationError as exc:
        raise InvalidOrder("invalid_payload", str(exc)[:500]) from None

# The contract (chalicelib/marketplaces/contract.py) ----------------------------------------------

INBOUND = Inbound(accept=accept, normalise=normalise)
# Any sender of our canonical order: there is no API of theirs to call.
MARKETPLACE = Marketplace(name=NAME, inbound=INBOUND)
