"""Expiring shop access against the simulated platforms (devstack/marketplaces/), over real HTTP:
each platform's refresh as our adapter sends it and the simulator answers it (the platform's
path and fields), the rotated refresh token kept in the shop's SSM parameter (read back with
boto3), the old refresh token refused from then on, the renewed access token working on the
platform's API (a reconciliation listing), one refresh for two callers at once, and one case
for a refusal however often the shop is used."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest

from chalicelib.core.clock import utcnow
from chalicelib.core.http import Request
from chalicelib.core.settings import settings
from chalicelib.flows import marketplace_calls, reconciliation, shop_access
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces import tokens
from devstack.marketplaces import simulator_class
from devstack.marketplaces.base import MarketplaceSimulator

# The simulators' access tokens live 10 minutes and are renewed 5 minutes before their end. The
# first one is 7 minutes old (so the parameter says): due at once and still working, so what is
# tested is a renewal before the end, and the platform's signed calls carry real time.
LIFE = timedelta(minutes=10)
AHEAD = timedelta(minutes=5)
AGE = timedelta(minutes=7)
# Platform -> (a shop of the form the platform uses, its simulator's options, access key).
PLATFORMS: dict[str, tuple[str, dict[str, Any], str]] = {
    "shopee": ("2{:08d}", {}, "access_token"),
    "tiktok_shop": ("749404964264{:07d}", {}, "access_token"),
    "lazada": ("1{:08d}", {}, "access_token"),
    "douyin": ("4{:07d}", {"encrypt_receiver": False}, "access_token"),
    "taobao": ("栖木家居{:08d}", {"refreshable": True}, "session"),
    "shopify": ("shop-{:08d}.myshopify.com", {"expiring_tokens": True}, "access_token"),
}


@pytest.fixture(autouse=True)
def ahead(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TOKEN_REFRESH_AHEAD_SECONDS", str(int(AHEAD.total_seconds())))
    settings.cache_clear()
    yield
    settings.cache_clear()


@pytest.fixture
def cases(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    raised: list[tuple[str, str]] = []
    monkeypatch.setattr(shop_access.alert_topic, "raise_case",
                        lambda kind, subject, *a, **k: raised.append((kind, subject)))
    return raised


@contextmanager
def simulated(platform: str) -> Iterator[MarketplaceSimulator]:
    form, options, _ = PLATFORMS[platform]
    shop = form.format(uuid.uuid4().int % 10**7)
    with simulator_class(platform)(shop=shop, webhook_url="http://127.0.0.1:9/unused",
                                   token_life=LIFE, **options) as simulator:
        credentials = simulator.credentials()
        ends = tokens.access_expiry(credentials)
        assert ends is not None
        credentials[tokens.ACCESS_EXPIRES] = (ends - AGE).isoformat()
        shop_credentials.put(platform, shop, credentials)
        shop_credentials.forget()  # as another function would: from SSM
        try:
            yield simulator
        finally:  # a shop whose platform is gone would fail other tests' polls and listings
            boto3.client("ssm").delete_parameter(
                Name=shop_credentials.parameter_name(platform, shop))
            shop_credentials.forget()


def stored(platform: str, shop: str) -> dict[str, str]:
    value = boto3.client("ssm").get_parameter(
        Name=shop_credentials.parameter_name(platform, shop), WithDecryption=True)
    found: dict[str, str] = json.loads(value["Parameter"]["Value"])
    return found


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_access_is_renewed_before_it_ends_and_the_rotated_refresh_token_is_kept(
        stack: dict[str, str], platform: str, cases: list[tuple[str, str]]) -> None:
    with simulated(platform) as simulator:
        book, shop, access_key = simulator.tokens, simulator.shop, PLATFORMS[platform][2]
        first_access, first_refresh = book.access_token, book.refresh_token
        assert book.check(first_access) == "ok"  # it still works: the renewal comes before

        credentials = marketplace_calls.credentials_for(platform, shop, utcnow())
        assert book.refreshes == 1 and book.refused == []
        assert credentials[access_key] == book.access_token != first_access
        kept = stored(platform, shop)  # in SSM, as every other function reads it
        assert kept["refresh_token"] == book.refresh_token != first_refresh
        assert kept[access_key] == book.access_token
        ends = tokens.access_expiry(kept)  # as the platform said it, never later than it is
        # Counted from before the call (never later than it is): early by the call's time, which
        # on a loaded machine is seconds; a life read wrongly would be minutes off.
        assert ends is not None and book.access_ends - timedelta(seconds=30) <= ends
        assert ends <= book.access_ends
        assert not book.refresh(first_refresh)  # rotated: the old one is refused from now

        # The renewed token works on the platform's API, and is not renewed again meanwhile.
        shop_credentials.forget()
        simulator.place_order()
        now = utcnow() + timedelta(seconds=1)
        listed, _ = reconciliation.reconcile(platform, shop, now - timedelta(hours=2), now, now)
        assert listed == 1
        assert book.refreshes == 1 and cases == []


def test_an_ended_access_token_is_refused_by_the_simulator_until_renewed(
        stack: dict[str, str]) -> None:
    """The simulators hold the platforms' line: past its end an access token stops working."""
    with simulated("shopee") as simulator:
        book = simulator.tokens
        ended = book.access_token
        book.clock = lambda: utcnow() + LIFE + timedelta(seconds=1)
        assert book.check(ended) == "expired"


def test_two_callers_at_once_renew_once(stack: dict[str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A second caller while the first one's refresh is on its way waits for it (the lease):
    the platform sees one refresh and no spent refresh token."""
    real_send = marketplace_calls.send_json

    def slow(request: Request) -> Any:
        time.sleep(0.5)  # a platform taking its time: both callers are inside at once
        return real_send(request)

    monkeypatch.setattr(marketplace_calls, "send_json", slow)
    with simulated("shopee") as simulator:
        # Both callers need a renewal: their token has ended (waiting is their only way).
        ended = {**simulator.credentials(),
                 tokens.ACCESS_EXPIRES: (utcnow() - timedelta(seconds=5)).isoformat()}
        shop_credentials.put("shopee", simulator.shop, ended)
        got: list[str] = []
        start = threading.Barrier(2)

        def call() -> None:
            shop_credentials.forget()
            start.wait()
            got.append(marketplace_calls.credentials_for("shopee", simulator.shop,
                                                         utcnow())["access_token"])

        callers = [threading.Thread(target=call) for _ in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(10)
        assert simulator.tokens.refreshes == 1 and simulator.tokens.refused == []
        assert got == [simulator.tokens.access_token] * 2
        assert stored("shopee", simulator.shop)["refresh_token"] == simulator.tokens.refresh_token


def test_a_refused_refresh_opens_exactly_one_case(stack: dict[str, str],
                                                  cases: list[tuple[str, str]]) -> None:
    """The stored refresh token was spent elsewhere (a second installation, a lost answer):
    the platform refuses it; CS gets one case naming the shop, the token is not sent again."""
    with simulated("lazada") as simulator:
        book, shop = simulator.tokens, simulator.shop
        assert book.refresh(book.refresh_token)  # spent outside: ours is stale now
        for _ in range(3):  # every run of every function that uses the shop
            shop_credentials.forget()
            # The access token stored still works: the functions keep working meanwhile.
            marketplace_calls.credentials_for("lazada", shop, utcnow())
        assert len(book.refused) == 1  # sent once, refused once
        assert cases == [(shop_access.REFUSED, f"shop:lazada:{shop}")]
