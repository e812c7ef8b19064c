"""Expiring shop access, the pure part: when a token is due, what the shop's parameter keeps
(chalicelib/marketplaces/tokens.py), and per platform the refresh request (exact, signatures
recomputed here from each platform's recipe) and the reading of its answer (fixtures after the
platforms' documented samples)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import marketplaces
from chalicelib.marketplaces import (
    douyin,
    lazada,
    shopee,
    shopify_admin,
    taobao,
    tiktok_shop,
    tokens,
)
from chalicelib.marketplaces.tokens import RefreshRefused, Tokens
from tests.support import FIXTURES

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
AHEAD = timedelta(minutes=15)


def load(platform: str, name: str) -> Any:
    return json.loads((FIXTURES / platform / name).read_text())


# The rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (14400, NOW + timedelta(hours=4)),  # a lifetime in seconds (Shopee, Lazada, Shopify)
    ("604800", NOW + timedelta(days=7)),  # ... sent as text
    (1722342011, datetime(2024, 7, 30, 12, 20, 11, tzinfo=UTC)),  # a moment (TikTok Shop)
    (1795489200000, datetime(2026, 11, 24, 3, 0, tzinfo=UTC)),  # a moment in ms (Taobao)
    (0, NOW),
])
def test_an_end_is_a_lifetime_or_a_moment(value: Any, expected: datetime) -> None:
    assert tokens.expires_at(value, NOW) == expected


@pytest.mark.parametrize("value", [None, "", "soon", -1, True, 3.5])
def test_an_unreadable_end_is_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        tokens.expires_at(value, NOW)


def at(moment: datetime) -> str:
    return moment.isoformat()


@pytest.mark.parametrize(("ends", "due", "usable"), [
    (None, True, False),  # not known: renewed at first use
    (NOW + timedelta(hours=1), False, True),
    (NOW + AHEAD + timedelta(seconds=1), False, True),
    (NOW + AHEAD, True, True),  # within the margin: renewed while it still works
    (NOW + timedelta(seconds=1), True, True),
    (NOW, True, False),
    (NOW - timedelta(hours=1), True, False),
])
def test_a_token_is_due_before_it_ends(ends: datetime | None, due: bool, usable: bool) -> None:
    credentials = {"access_token": "a", "refresh_token": "r"}
    if ends is not None:
        credentials[tokens.ACCESS_EXPIRES] = at(ends)
    assert tokens.due(credentials, NOW, AHEAD) is due
    assert tokens.usable(credentials, NOW) is usable


def test_only_credentials_with_a_refresh_token_are_renewed() -> None:
    assert tokens.renewable({"refresh_token": "r"})
    assert not tokens.renewable({"access_token": "a"})
    assert not tokens.renewable({"access_token": "a", "refresh_token": " "})


def test_renewed_tokens_replace_the_old_ones_and_keep_everything_else() -> None:
    old = {"app_key": "k", "session": "old", "refresh_token": "r1",
           tokens.ACCESS_EXPIRES: at(NOW), tokens.REFRESH_EXPIRES: at(NOW + timedelta(days=1))}
    new = Tokens(access_token="new", access_expires_at=NOW + timedelta(hours=4),
                 refresh_token="r2")
    stored = tokens.stored(old, new, "session", NOW)
    assert stored == {"app_key": "k", "session": "new", "refresh_token": "r2",
                      tokens.ACCESS_EXPIRES: "2026-11-23T07:00:00+00:00",
                      "tokens_refreshed_at": "2026-11-23T03:00:00+00:00"}
    assert tokens.access_expiry(stored) == NOW + timedelta(hours=4)
    assert tokens.refresh_expiry(stored) is None  # the old end does not outlive its token
    ending = new.model_copy(update={"refresh_expires_at": NOW + timedelta(days=3)})
    assert tokens.refresh_expiry(tokens.stored(old, ending, "session", NOW)) == \
        NOW + timedelta(days=3)


def test_a_refresh_token_ending_within_a_week_is_named() -> None:
    soon = {tokens.REFRESH_EXPIRES: at(NOW + timedelta(days=6))}
    later = {tokens.REFRESH_EXPIRES: at(NOW + timedelta(days=8))}
    assert tokens.ending(soon, NOW) == NOW + timedelta(days=6)
    assert tokens.ending(later, NOW) is None
    assert tokens.ending({}, NOW) is None


def test_tokens_never_show_in_a_repr_and_a_fingerprint_is_no_token() -> None:
    new = Tokens(access_token="secret-access", access_expires_at=NOW,
                 refresh_token="secret-refresh")
    assert "secret" not in repr(new)
    assert tokens.fingerprint("secret-refresh") == tokens.fingerprint("secret-refresh")
    assert "secret" not in tokens.fingerprint("secret-refresh")
    assert tokens.fingerprint("a") != tokens.fingerprint("b")


def test_every_platform_with_expiring_access_declares_its_refresh() -> None:
    declared = {scheme for scheme in marketplaces.known_schemes()
                if marketplaces.adapter_for(scheme).refresh is not None}
    assert declared == {"shopee", "tiktok_shop", "lazada", "douyin", "taobao", "shopify"}
    # Amazon's LWA token is exchanged afresh each hour (its refresh token does not rotate).
    assert marketplaces.adapter_for("amazon").token is not None
    assert marketplaces.adapter_for("taobao").refresh.access_key == "session"  # type: ignore[union-attr]


@pytest.mark.parametrize("module", [shopee, tiktok_shop, lazada, douyin, taobao, shopify_admin])
def test_no_refresh_token_no_refresh(module: Any) -> None:
    assert module.refresh_call({"access_token": "a", "app_key": "k", "app_secret": "s",
                                "partner_id": "1", "partner_key": "k", "shop_id": "2",
                                "shop_domain": "x.myshopify.com"}, NOW) is None


# Shopee --------------------------------------------------------------------------------------

SHOPEE = {"partner_id": "2001887", "partner_key": "6a57414d766c79786863726c58624f46",
          "access_token": "old", "shop_id": "322300222",
          "refresh_token": "4c7259534969484e71734d695a6e6d55"}


def test_shopee_refresh_call_is_a_signed_public_call() -> None:
    call = shopee.refresh_call(SHOPEE, NOW)
    assert call is not None
    timestamp = str(int(NOW.timestamp()))
    expected = hmac.new(SHOPEE["partner_key"].encode(),
                        f"2001887/api/v2/auth/access_token/get{timestamp}".encode(),
                        hashlib.sha256).hexdigest()
    assert (call.method, call.url) == (
        "POST", "https://partner.shopeemobile.com/api/v2/auth/access_token/get")
    assert call.params == {"partner_id": "2001887", "timestamp": timestamp, "sign": expected}
    assert call.json_body == {"refresh_token": "4c7259534969484e71734d695a6e6d55",
                              "partner_id": 2001887, "shop_id": 322300222}
    local = shopee.refresh_call({**SHOPEE, "api_base": "http://127.0.0.1:9/"}, NOW)
    assert local is not None and local.url == "http://127.0.0.1:9/api/v2/auth/access_token/get"


def test_shopee_refresh_answer() -> None:
    new = shopee.parse_refresh(load("shopee", "refresh_access_token.json"), NOW)
    assert new == Tokens(access_token="71594a4c54537649697341796363674a",
                         access_expires_at=NOW + timedelta(hours=4),
                         refresh_token="516c6b577753554375764a63704d7245",
                         refresh_expires_at=NOW + timedelta(days=30))


@pytest.mark.parametrize("name", ["refresh_invalid.json", "refresh_expired.json"])
def test_shopee_refused_refresh(name: str) -> None:
    with pytest.raises(RefreshRefused) as refused:
        shopee.parse_refresh(load("shopee", name), NOW)
    assert refused.value.retryable is False


def test_shopee_passing_fault_and_empty_answer_are_retryable() -> None:
    with pytest.raises(shopee.ShopeeError) as busy:
        shopee.parse_refresh(load("shopee", "refresh_busy.json"), NOW)
    assert busy.value.retryable is True
    with pytest.raises(shopee.ShopeeError) as empty:
        shopee.parse_refresh({"error": "", "message": "", "request_id": "x"}, NOW)
    assert empty.value.retryable is True


# TikTok Shop ---------------------------------------------------------------------------------

TIKTOK = {"app_key": "6a1b2c3d4e5f", "app_secret": "e59af819cc", "access_token": "old",
          "shop_cipher": "ROW_x", "refresh_token": "ROW_RBHCjwAAAACgH1O"}


def test_tiktok_refresh_call() -> None:
    call = tiktok_shop.refresh_call(TIKTOK, NOW)
    assert call is not None
    assert (call.method, call.url) == ("GET", "https://auth.tiktok-shops.com/api/v2/token/refresh")
    assert call.params == {"app_key": "6a1b2c3d4e5f", "app_secret": "e59af819cc",
                           "refresh_token": "ROW_RBHCjwAAAACgH1O", "grant_type": "refresh_token"}
    assert "x-tts-access-token" not in call.headers
    local = tiktok_shop.refresh_call({**TIKTOK, "auth_base": "http://127.0.0.1:9"}, NOW)
    assert local is not None and local.url == "http://127.0.0.1:9/api/v2/token/refresh"


def test_tiktok_refresh_answer_carries_moments() -> None:
    new = tiktok_shop.parse_refresh(load("tiktok_shop", "token_refresh.json"), NOW)
    assert new.access_token.startswith("GCP_3nRW") and new.refresh_token.startswith("GCP_hAPX")
    assert new.access_expires_at == datetime.fromtimestamp(1722342011, UTC)
    assert new.refresh_expires_at == datetime.fromtimestamp(4841467787, UTC)


def test_tiktok_refused_and_passing_faults() -> None:
    with pytest.raises(RefreshRefused):
        tiktok_shop.parse_refresh(load("tiktok_shop", "token_refresh_expired.json"), NOW)
    with pytest.raises(tiktok_shop.TikTokShopError) as limited:
        tiktok_shop.parse_refresh(load("tiktok_shop", "error_rate_limit.json"), NOW)
    assert limited.value.retryable is True


# Lazada --------------------------------------------------------------------------------------

LAZADA = {"app_key": "120871", "app_secret": "Kx9tqbdYwq1bS2z6dm8Lc0PGBz3Yq5cD",
          "access_token": "old", "site": "sg", "refresh_token": "50001600212wcwiOoOBsJ5ASh"}


def test_lazada_refresh_call_is_signed_without_an_access_token() -> None:
    call = lazada.refresh_call(LAZADA, NOW)
    assert call is not None
    millis = str(int(NOW.timestamp() * 1000))
    text = (f"/auth/token/refreshapp_key120871refresh_token50001600212wcwiOoOBsJ5ASh"
            f"sign_methodsha256timestamp{millis}")
    expected = hmac.new(LAZADA["app_secret"].encode(), text.encode(),
                        hashlib.sha256).hexdigest().upper()
    assert (call.method, call.url) == ("POST", "https://auth.lazada.com/rest/auth/token/refresh")
    assert call.params == {"app_key": "120871", "timestamp": millis, "sign_method": "sha256",
                           "sign": expected}
    assert call.form == {"refresh_token": "50001600212wcwiOoOBsJ5ASh"}


def test_lazada_refresh_answer() -> None:
    new = lazada.parse_refresh(load("lazada", "token_refresh.json"), NOW)
    assert new.access_expires_at == NOW + timedelta(days=30)
    assert new.refresh_expires_at == NOW + timedelta(days=180)
    assert new.refresh_token.startswith("500016000300bwa2")


def test_lazada_refused_and_passing_faults() -> None:
    with pytest.raises(RefreshRefused) as refused:
        lazada.parse_refresh(load("lazada", "token_refresh_refused.json"), NOW)
    assert refused.value.code == "IllegalRefreshToken"
    with pytest.raises(lazada.LazadaError) as limited:
        lazada.parse_refresh(load("lazada", "error_limit.json"), NOW)
    assert limited.value.retryable is True


# Douyin --------------------------------------------------------------------------------------

DOUYIN = {"app_key": "7152331588175513101", "app_secret": "9b2c4e6f-1a3b-5c7d-9e0f-2a4b6c8d0e1f",
          "access_token": "old", "shop_id": "4463798", "refresh_token": "b5a1e8f0-77c3-4d3c"}


def test_douyin_refresh_call_is_signed_without_an_access_token() -> None:
    call = douyin.refresh_call(DOUYIN, NOW)
    assert call is not None
    body = '{"grant_type":"refresh_token","refresh_token":"b5a1e8f0-77c3-4d3c"}'
    timestamp = str(int(NOW.timestamp()))
    secret = DOUYIN["app_secret"]
    text = (f"{secret}app_key{DOUYIN['app_key']}methodtoken.refreshparam_json{body}"
            f"timestamp{timestamp}v2{secret}")
    expected = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert (call.method, call.url) == ("POST", "https://openapi-fxg.jinritemai.com/token/refresh")
    assert call.params == {"app_key": DOUYIN["app_key"], "method": "token.refresh",
                           "timestamp": timestamp, "v": "2", "sign_method": "hmac-sha256",
                           "sign": expected}
    assert call.raw_body == body.encode()


def test_douyin_refresh_answer() -> None:
    new = douyin.parse_refresh(load("douyin", "token_refresh.json"), NOW)
    assert new.access_token == "4d6f8e0a-2b7c-4e1d-9a3f-5c8b7e6d4a21"
    assert new.access_expires_at == NOW + timedelta(days=7)
    assert new.refresh_expires_at == NOW + timedelta(days=14)


def test_douyin_refused_and_passing_faults() -> None:
    with pytest.raises(RefreshRefused):
        douyin.parse_refresh(load("douyin", "token_refresh_refused.json"), NOW)
    with pytest.raises(douyin.DouyinError) as busy:
        douyin.parse_refresh(load("douyin", "order_detail_busy.json"), NOW)
    assert busy.value.retryable is True


# Taobao --------------------------------------------------------------------------------------

TAOBAO = {"app_key": "12345678", "app_secret": "4e8b1c2d3f4a5b6c7d8e9f0a1b2c3d4e",
          "session": "old-session", "sign_method": "md5",
          "refresh_token": "62022142256fba186bbb0bdf30463037"}


def test_taobao_refresh_call_is_a_top_call_without_a_session() -> None:
    call = taobao.refresh_call(TAOBAO, NOW)
    assert call is not None and call.form is not None
    form = dict(call.form)
    assert "session" not in form
    signature = form.pop("sign")
    assert form == {"app_key": "12345678", "format": "json",
                    "method": "taobao.top.auth.token.refresh",
                    "refresh_token": "62022142256fba186bbb0bdf30463037", "sign_method": "md5",
                    "timestamp": "2026-11-23 11:00:00", "v": "2.0"}
    text = "".join(f"{k}{v}" for k, v in sorted(form.items()))
    secret = TAOBAO["app_secret"]
    assert signature == hashlib.md5(f"{secret}{text}{secret}".encode()).hexdigest().upper()
    assert call.url == "https://eco.taobao.com/router/rest"


def test_taobao_refresh_answer_reads_the_token_result_text() -> None:
    new = taobao.parse_refresh(load("taobao", "token_refresh.json"), NOW)
    assert new.access_token == "6202b145dbdead2fbf6c3dfhde257f5215fec00d68b5d36525671323"
    assert new.refresh_token == "62022142256fba186bbb0bdf30463037218905f210646d6525671323"
    assert new.access_expires_at == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # expire_time
    assert new.refresh_expires_at == datetime.fromtimestamp(1798000000, UTC)
    # Lifetimes only, where the moments are not given.
    result = json.loads(load("taobao", "token_refresh.json")[
        "top_auth_token_refresh_response"]["token_result"])
    for moment in ("expire_time", "refresh_token_valid_time"):
        del result[moment]
    answer = {"top_auth_token_refresh_response": {"token_result": json.dumps(result)}}
    new = taobao.parse_refresh(answer, NOW)
    assert new.access_expires_at == NOW + timedelta(days=1)
    assert new.refresh_expires_at == NOW + timedelta(days=30)


def test_taobao_refused_and_passing_faults() -> None:
    with pytest.raises(RefreshRefused) as refused:
        taobao.parse_refresh(load("taobao", "token_refresh_refused.json"), NOW)
    assert refused.value.code == "isv.refresh-token-expired"
    with pytest.raises(taobao.TaobaoError) as limited:
        taobao.parse_refresh(load("taobao", "error_limit.json"), NOW)
    assert limited.value.retryable is True


# Shopify (expiring offline tokens) -----------------------------------------------------------

SHOPIFY = {"shop_domain": "demo-brand.myshopify.com", "access_token": "shpat_old",
           "client_id": "a1b2c3", "client_secret": "shpss_s3cr3t",
           "refresh_token": "shprt_4a2c0e8b"}


def test_shopify_refresh_call() -> None:
    call = shopify_admin.refresh_call(SHOPIFY, NOW)
    assert call is not None
    assert (call.method, call.url) == (
        "POST", "https://demo-brand.myshopify.com/admin/oauth/access_token")
    assert call.json_body == {"client_id": "a1b2c3", "client_secret": "shpss_s3cr3t",
                              "grant_type": "refresh_token", "refresh_token": "shprt_4a2c0e8b"}
    with pytest.raises(ValueError, match="client_id and client_secret"):
        shopify_admin.refresh_call({**SHOPIFY, "client_secret": ""}, NOW)


def test_shopify_refresh_answer_and_refusal() -> None:
    new = shopify_admin.parse_refresh(load("shopify", "token_refresh.json"), NOW)
    assert new.access_expires_at == NOW + timedelta(hours=1)
    assert new.refresh_expires_at == NOW + timedelta(days=90)
    with pytest.raises(RefreshRefused) as refused:
        shopify_admin.parse_refresh(load("shopify", "token_refresh_invalid_grant.json"), NOW)
    assert refused.value.code == "invalid_grant"
    with pytest.raises(shopify_admin.ShopifyError) as passing:
        shopify_admin.parse_refresh({"error": "temporarily_unavailable"}, NOW)
    assert passing.value.retryable is True
