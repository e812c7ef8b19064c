from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest

from chalicelib.core.errors import ApiError
from chalicelib.marketplaces import standard_webhooks
from chalicelib.orders.order import OrderStatus
from tests.support import STANDARD_SECRET, canonical_order, dumps, standard_headers

NOW = datetime.now(UTC)


def envelope(**changes: object) -> bytes:
    return dumps({"type": "order.paid", "timestamp": "2026-11-23T02:01:00Z",
                  "data": canonical_order(**changes)})


def accept(body: bytes, headers: dict[str, str], secrets: tuple[str, ...] = (STANDARD_SECRET,)):
    return standard_webhooks.accept({k.lower(): v for k, v in headers.items()}, body, secrets, NOW)


def test_signed_delivery_is_accepted_and_deduped_on_webhook_id() -> None:
    body = envelope()
    accepted = accept(body, standard_headers(body, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"))
    assert accepted.delivery_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    assert accepted.topic == "order.paid"
    assert accepted.shop == "erp-main"


def test_known_vector_from_the_standard_webhooks_spec() -> None:
    # The specification's published example: secret, id, timestamp, body -> signature.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330"
    body = b'{"test": 2432232314}'
    key = base64.b64decode(secret.removeprefix("whsec_"))
    ours = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body,
                                     hashlib.sha256).digest()).decode()
    assert ours == "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("case", ["byte", "secret", "timestamp_old", "timestamp_new"])
def test_rejections(case: str) -> None:
    body = envelope()
    now = int(time.time())
    headers = {
        "byte": lambda: standard_headers(body),
        "secret": lambda: standard_headers(body, secret="whsec_" + base64.b64encode(
            b"another-secret-another-secret!!").decode()),
        "timestamp_old": lambda: standard_headers(body, timestamp=now - 600),
        "timestamp_new": lambda: standard_headers(body, timestamp=now + 600),
    }[case]()
    sent = body.replace(b"149.00", b"149.01", 1) if case == "byte" else body
    with pytest.raises(ApiError) as error:
        accept(sent, headers)
    assert error.value.status == 401
    expected = "stale_or_invalid_timestamp" if case.startswith("timestamp") else "invalid_signature"
    assert error.value.reason == expected


def test_a_replayed_signature_on_another_timestamp_fails() -> None:
    body = envelope()
    headers = standard_headers(body)
    headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    with pytest.raises(ApiError):
        accept(body, headers)


def test_key_rotation_signature_list_and_garbled_header() -> None:
    body = envelope()
    good = standard_headers(body)
    good["webhook-signature"] = "v1,AAAA " + good["webhook-signature"]
    assert accept(body, good).delivery_id
    garbled = standard_headers(body)
    garbled["webhook-signature"] = "nonsense"
    with pytest.raises(ApiError) as error:
        accept(body, garbled)
    assert (error.value.status, error.value.reason) == (401, "invalid_signature")


def test_missing_headers_are_named() -> None:
    body = envelope()
    with pytest.raises(ApiError) as error:
        accept(body, {"content-type": "application/json"})
    assert error.value.reason == "missing_signature"
    assert set(error.value.details["missing"]) == {"webhook-id", "webhook-timestamp",
                                                   "webhook-signature"}


def test_invalid_order_is_422() -> None:
    body = dumps({"type": "order.paid", "timestamp": "2026-11-23T02:01:00Z",
                  "data": canonical_order(lines=[{"sku": "X", "quantity": 0}])})
    with pytest.raises(ApiError) as error:
        accept(body, standard_headers(body))
    assert (error.value.status, error.value.reason) == (422, "invalid_payload")


def test_normalise_uses_the_source_as_marketplace() -> None:
    order = standard_webhooks.normalise(envelope(), {}, "erp")
    assert order.marketplace == "erp"
    assert order.status is OrderStatus.PAID
    assert order.lines[0].sku == "LS-BLK-L"
