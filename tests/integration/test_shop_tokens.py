"""Expiring shop access, the flow (chalicelib/flows/shop_access.py through
marketplace_calls.credentials_for) on the local endpoint: the shop's SSM parameter, its lease
item in the orders table. The platform is a stand-in that rotates refresh tokens as the
platforms do (a spent one is refused) and counts what it is asked; cases are recorded where
they are raised."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.core.clock import utcnow
from chalicelib.core.http import Request
from chalicelib.flows import marketplace_calls, shop_access
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces import shopee, tokens
from chalicelib.marketplaces import token_lease_store as leases
from chalicelib.marketplaces.calls import PlatformUnavailable
from chalicelib.marketplaces.tokens import RefreshRefused


class Platform:
    """Shopee's refresh, reduced: each refresh token works once; every answer is counted."""

    def __init__(self, refresh_token: str, *, delay: float = 0.0) -> None:
        self.valid = refresh_token
        self.delay = delay
        self.calls: list[str] = []  # the refresh tokens sent
        self.refuse = False
        self.busy = False
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Any:
        assert request.url.endswith(shopee.REFRESH_PATH)
        sent = request.json_body["refresh_token"]
        time.sleep(self.delay)
        with self.lock:
            self.calls.append(sent)
            if self.busy:
                raise PlatformUnavailable("HTTP 503")
            if self.refuse or sent != self.valid:
                return {"error": "error_auth", "message": "Invalid refresh_token.",
                        "request_id": "r"}
            self.valid = f"refresh-{len(self.calls)}"
            return {"access_token": f"access-{len(self.calls)}", "refresh_token": self.valid,
                    "expire_in": 14400, "error": "", "message": "", "request_id": "r"}


@pytest.fixture
def cases(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    raised: list[dict[str, Any]] = []

    def record(kind: str, subject: str, severity: Any, summary: str, at: datetime,
               facts: dict[str, Any] | None = None, *, case: str | None = None,
               resolves: bool = False) -> None:
        raised.append({"kind": kind, "subject": subject, "severity": str(severity),
                       "summary": summary, "facts": facts or {}, "resolves": resolves})

    monkeypatch.setattr(shop_access.alert_topic, "raise_case", record)
    return raised


def shop_of(stack: dict[str, str], ends: datetime, refresh_token: str = "refresh-0",
            **more: str) -> str:
    shop = str(uuid.uuid4().int % 10**9)
    shop_credentials.put("shopee", shop, {
        "partner_id": "2001887", "partner_key": "6a57414d766c79786863726c58624f46",
        "shop_id": shop, "access_token": "access-0", "refresh_token": refresh_token,
        tokens.ACCESS_EXPIRES: ends.isoformat(), **more})
    shop_credentials.forget()
    return shop


def stored(shop: str) -> dict[str, str]:
    value = boto3.client("ssm").get_parameter(
        Name=shop_credentials.parameter_name("shopee", shop), WithDecryption=True)
    found: dict[str, str] = json.loads(value["Parameter"]["Value"])
    return found


def test_an_expired_token_is_refreshed_once_and_written_back(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        cases: list[dict[str, Any]]) -> None:
    now = utcnow()
    shop = shop_of(stack, now - timedelta(minutes=1))
    platform = Platform("refresh-0")
    monkeypatch.setattr(marketplace_calls, "send_json", platform)

    credentials = marketplace_calls.credentials_for("shopee", shop, now)
    assert credentials["access_token"] == "access-1"
    assert platform.calls == ["refresh-0"]
    kept = stored(shop)  # the rotated refresh token and the new access token, in SSM
    assert (kept["access_token"], kept["refresh_token"]) == ("access-1", "refresh-1")
    assert tokens.access_expiry(kept) == (now + timedelta(hours=4)).replace(microsecond=0)
    assert kept["partner_key"] == "6a57414d766c79786863726c58624f46"  # the rest kept

    # Later calls, in this process or another (its own cache), use it: no second refresh.
    assert marketplace_calls.credentials_for("shopee", shop, now)["access_token"] == "access-1"
    shop_credentials.forget()
    later = now + timedelta(hours=3)
    assert marketplace_calls.credentials_for("shopee", shop, later)["access_token"] == "access-1"
    assert platform.calls == ["refresh-0"]
    # Within 15 minutes of its end it is renewed again, with the rotated refresh token.
    due = now + timedelta(hours=4) - timedelta(minutes=10)
    assert marketplace_calls.credentials_for("shopee", shop, due)["access_token"] == "access-2"
    assert platform.calls == ["refresh-0", "refresh-1"]
    assert cases == []


def test_a_shop_without_a_refresh_token_is_used_as_it_is(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    shop = str(uuid.uuid4().int % 10**9)
    plain = {"partner_id": "1", "partner_key": "k", "shop_id": shop, "access_token": "set-by-hand"}
    shop_credentials.put("shopee", shop, plain)
    monkeypatch.setattr(marketplace_calls, "send_json", lambda request: pytest.fail("no call"))
    assert marketplace_calls.credentials_for("shopee", shop, utcnow()) == plain


def test_two_refreshers_at_once_rotate_once(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        cases: list[dict[str, Any]]) -> None:
    now = utcnow()
    shop = shop_of(stack, now - timedelta(seconds=1))
    platform = Platform("refresh-0", delay=0.5)
    monkeypatch.setattr(marketplace_calls, "send_json", platform)
    got: list[str] = []
    failed: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        try:
            got.append(marketplace_calls.credentials_for("shopee", shop, now)["access_token"])
        except BaseException as exc:  # reported below
            failed.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failed == []
    assert platform.calls == ["refresh-0"]  # one refresher; the others waited for its result
    assert got == ["access-1"] * 4
    assert stored(shop)["refresh_token"] == "refresh-1"
    assert cases == []


def test_the_lease_admits_one_holder_until_released_or_run_out(stack: dict[str, str]) -> None:
    shop, now = str(uuid.uuid4()), utcnow()
    first = leases.acquire("shopee", shop, "a", now, 60)
    assert first is not None and first.holder == "a"
    assert leases.acquire("shopee", shop, "b", now, 60) is None
    leases.release("shopee", shop, "b")  # not b's: nothing happens
    assert leases.acquire("shopee", shop, "b", now + timedelta(seconds=30), 60) is None
    leases.release("shopee", shop, "a")
    assert leases.acquire("shopee", shop, "b", now, 60) is not None
    # b dies holding it: it runs out.
    assert leases.acquire("shopee", shop, "c", now + timedelta(seconds=61), 60) is not None


def test_a_refresher_that_lost_the_race_uses_a_token_that_still_works(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    shop = shop_of(stack, now + timedelta(minutes=5))  # due, still working
    held = leases.acquire("shopee", shop, "someone-else", utcnow(), 60)
    assert held is not None
    monkeypatch.setattr(marketplace_calls, "send_json", lambda request: pytest.fail("no call"))
    assert marketplace_calls.credentials_for("shopee", shop, now)["access_token"] == "access-0"


def test_a_refresher_that_lost_the_race_with_an_ended_token_tries_again_later(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    shop = shop_of(stack, now - timedelta(minutes=5))
    assert leases.acquire("shopee", shop, "someone-else", utcnow(), 60) is not None
    monkeypatch.setattr(shop_access, "WAIT_SECONDS", 0.5)
    monkeypatch.setattr(marketplace_calls, "send_json", lambda request: pytest.fail("no call"))
    with pytest.raises(PlatformUnavailable, match="being renewed"):
        marketplace_calls.credentials_for("shopee", shop, now)


def test_a_refused_refresh_raises_one_case_and_is_not_sent_again(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        cases: list[dict[str, Any]]) -> None:
    now = utcnow()
    shop = shop_of(stack, now - timedelta(minutes=1))
    platform = Platform("refresh-0")
    platform.refuse = True
    monkeypatch.setattr(marketplace_calls, "send_json", platform)
    for _ in range(3):
        with pytest.raises(RefreshRefused) as refused:
            marketplace_calls.credentials_for("shopee", shop, now)
        assert refused.value.retryable is False
        shop_credentials.forget()  # other processes too
    assert platform.calls == ["refresh-0"]  # a refused token is not sent again
    (case,) = cases
    assert case["kind"] == "marketplace.reauthorisation_needed"
    assert case["subject"] == f"shop:shopee:{shop}"
    assert case["severity"] == "high"
    assert shop in case["summary"] and "authorises our app for the shop again" in case["summary"]
    assert case["facts"] == {"marketplace": "shopee", "shop": shop, "code": "error_auth",
                             "what_to_do": shopee.REAUTHORISE}
    assert stored(shop)["refresh_token"] == "refresh-0"  # nothing written

    # The seller authorises us again; the new credentials are put (admin shop): the refresh
    # works, and the case resolves itself.
    platform.refuse, platform.valid = False, "reauthorised"
    shop_credentials.put("shopee", shop, {**stored(shop), "refresh_token": "reauthorised"})
    assert marketplace_calls.credentials_for("shopee", shop, now)["access_token"] == "access-2"
    assert [c["resolves"] for c in cases] == [False, True]
    assert cases[1]["kind"] == "marketplace.reauthorisation_needed"


def test_a_refusal_while_the_token_still_works_warns_and_keeps_working(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        cases: list[dict[str, Any]]) -> None:
    now = utcnow()
    shop = shop_of(stack, now + timedelta(minutes=5))
    platform = Platform("refresh-0")
    platform.refuse = True
    monkeypatch.setattr(marketplace_calls, "send_json", platform)
    assert marketplace_calls.credentials_for("shopee", shop, now)["access_token"] == "access-0"
    assert marketplace_calls.credentials_for("shopee", shop, now)["access_token"] == "access-0"
    assert len(cases) == 1 and len(platform.calls) == 1


def test_a_passing_fault_keeps_a_working_token_and_otherwise_tries_again_later(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        cases: list[dict[str, Any]]) -> None:
    now = utcnow()
    platform = Platform("refresh-0")
    platform.busy = True
    monkeypatch.setattr(marketplace_calls, "send_json", platform)
    working = shop_of(stack, now + timedelta(minutes=5))
    assert marketplace_calls.credentials_for("shopee", working, now)["access_token"] == "access-0"
    ended = shop_of(stack, now - timedelta(minutes=5))
    with pytest.raises(PlatformUnavailable):
        marketplace_calls.credentials_for("shopee", ended, now)
    assert stored(ended)["refresh_token"] == "refresh-0"
    assert cases == []
    platform.busy = False  # the platform is back: the same refresh token works
    assert marketplace_calls.credentials_for("shopee", ended, now)["access_token"] == "access-3"


def test_a_refresh_token_near_its_end_raises_one_case(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        cases: list[dict[str, Any]]) -> None:
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    shop = shop_of(stack, now - timedelta(minutes=1))
    platform = Platform("refresh-0")
    monkeypatch.setattr(marketplace_calls, "send_json", platform)
    # Shopee's refresh tokens live 30 days: pretend they live 5 (an authorisation ending).
    monkeypatch.setattr(shopee, "REFRESH_TOKEN_LIFETIME", timedelta(days=5))
    marketplace_calls.credentials_for("shopee", shop, now)
    marketplace_calls.credentials_for("shopee", shop, now + timedelta(hours=4))  # renewed again
    assert len(platform.calls) == 2
    (case,) = cases  # one case, however many renewals see the end coming
    assert (case["kind"], case["severity"], case["resolves"]) == (
        "marketplace.authorisation_ending", "medium", False)
    assert "2026-11-28 03:00 UTC" in case["summary"] and shop in case["summary"]
    # A renewal that reaches past the window (the seller authorised again) resolves it.
    monkeypatch.setattr(shopee, "REFRESH_TOKEN_LIFETIME", timedelta(days=30))
    marketplace_calls.credentials_for("shopee", shop, now + timedelta(hours=8))
    assert len(cases) == 2 and cases[1]["kind"] == "marketplace.authorisation_ending"
    assert cases[1]["resolves"]


def test_a_stored_refresh_token_near_its_end_raises_one_case_without_a_renewal(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        cases: list[dict[str, Any]]) -> None:
    """The access token still works for days (TikTok Shop's lives 7), so no renewal would see
    the end coming before the refresh token is refused: every use of the shop checks it."""
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    ends = now + timedelta(days=3)
    shop = shop_of(stack, now + timedelta(days=2),
                   **{tokens.REFRESH_EXPIRES: ends.isoformat()})
    platform = Platform("refresh-0")
    monkeypatch.setattr(marketplace_calls, "send_json", platform)
    for hours in range(3):  # every run of every function, in this process and another
        shop_access._warned.clear()
        shop_credentials.forget()
        marketplace_calls.credentials_for("shopee", shop, now + timedelta(hours=hours))
    assert platform.calls == []  # nothing was due
    (case,) = cases
    assert (case["kind"], case["resolves"]) == ("marketplace.authorisation_ending", False)
    assert shop in case["summary"] and "2026-11-26 03:00 UTC" in case["summary"]
    assert case["facts"]["what_to_do"] == shopee.REAUTHORISE


def test_an_ending_case_that_could_not_be_raised_is_raised_by_a_later_call(
        stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    shop = shop_of(stack, now + timedelta(days=2),
                   **{tokens.REFRESH_EXPIRES: (now + timedelta(days=1)).isoformat()})
    raised: list[str] = []

    def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("SNS down")

    monkeypatch.setattr(shop_access.alert_topic, "raise_case", failing)
    with pytest.raises(RuntimeError):
        marketplace_calls.credentials_for("shopee", shop, now)
    monkeypatch.setattr(shop_access.alert_topic, "raise_case",
                        lambda kind, *a, **k: raised.append(kind))
    marketplace_calls.credentials_for("shopee", shop, now)
    marketplace_calls.credentials_for("shopee", shop, now)
    assert raised == ["marketplace.authorisation_ending"]
