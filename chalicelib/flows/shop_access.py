"""Shop access that expires, kept current: the I/O around each platform's pure token refresh
(the adapter's `refresh`, chalicelib/marketplaces/contract.py; the rules in
chalicelib/marketplaces/tokens.py). Called by chalicelib/flows/marketplace_calls.py
`credentials_for`, so every re-fetch, writeback, reconciliation and TMC poll of a shop gets an
access token that works.

- Before expiry: a shop's access token is renewed once it ends within
  TOKEN_REFRESH_AHEAD_SECONDS (15 minutes; more than a function's cached copy of the
  credentials lives, SECRETS_CACHE_SECONDS, so a copy read before a renewal still works until
  it is read again), or when when it ends is not known.
- One refresher per shop: the shop's lease (chalicelib/marketplaces/token_lease_store.py, a
  conditional item). Its holder re-reads the parameter (another function may have renewed it
  since this one's copy was read), sends the stored refresh token, and writes the rotated
  refresh token, the new access token and their ends back to the shop's parameter at once:
  the refresh token sent is spent. A function that does not get the lease uses the token it
  has while it still works, else waits a few seconds for the holder's result, else tries
  again later (PlatformUnavailable).
- A refusal for good (tokens.RefreshRefused: the refresh token expired, spent, revoked, the
  shop's authorisation ended) opens one CS case per shop (`marketplace.reauthorisation_needed`:
  which shop, and where its seller authorises us again); that refresh token is not sent again,
  and the case resolves itself when a refresh works (the seller authorised again and the new
  credentials were put with `admin shop`). A refresh token that ends within 7 days (the
  platform no longer extends it: the authorisation itself ends), as a renewal's answer or the
  stored end says on any use of the shop, opens one case per shop
  (`marketplace.authorisation_ending`), resolved when a renewal reaches past that.
- A passing fault (no answer, 429, 5xx, a retryable error) leaves the stored tokens as they are:
  a token that still works is used, else the caller tries again later.

What cannot be helped: if the platform renews the tokens and its answer is lost (a read timeout
after it was sent), the refresh token sent is spent and the new one unknown; the next refresh is
refused and CS is told (Shopify keeps the old refresh token until the new one is used; the others
do not say).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from chalicelib.core.clock import iso, utcnow
from chalicelib.core.http import Request
from chalicelib.core.settings import settings
from chalicelib.cs import alert_topic, alerts
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces import token_lease_store as leases
from chalicelib.marketplaces import tokens
from chalicelib.marketplaces.calls import PlatformUnavailable
from chalicelib.marketplaces.contract import TokenRefresh
from chalicelib.marketplaces.tokens import RefreshRefused, Tokens

log = logging.getLogger(__name__)

# Longer than a refresh can take: the call's own timeouts (3 s to connect, 10 s to read) and
# the parameter's write. A holder that dies blocks the shop's renewal this long at most.
LEASE_SECONDS = 60.0
WAIT_SECONDS = 3.0  # a caller whose token ended waits this long for another one's renewal
POLL_SECONDS = 0.25
REFUSED = "marketplace.reauthorisation_needed"
ENDING = "marketplace.authorisation_ending"

SendJson = Callable[[Request], Any]


def current(scheme: str, shop: str, credentials: dict[str, str], refresh: TokenRefresh,
            now: datetime, send_json: SendJson) -> dict[str, str]:
    """The shop's credentials with an access token that works: as they are, or renewed first
    when due. Raises RefreshRefused (a person must act), PlatformUnavailable (try later), or
    ValueError for credentials the platform's refresh cannot be built from."""
    if not tokens.renewable(credentials):
        return credentials
    _warn_if_ending(scheme, shop, refresh, credentials, now)
    if not tokens.due(credentials, now, _ahead()):
        return credentials
    holder = uuid.uuid4().hex
    lease = leases.acquire(scheme, shop, holder, utcnow(), LEASE_SECONDS)
    if lease is None:
        return _renewed_by_another(scheme, shop, credentials, now)
    try:
        return _renew(scheme, shop, refresh, lease, now, send_json)
    finally:
        leases.release(scheme, shop, holder)


def _ahead() -> timedelta:
    return timedelta(seconds=settings().token_refresh_ahead_seconds)


def _renewed_by_another(scheme: str, shop: str, credentials: dict[str, str],
                        now: datetime) -> dict[str, str]:
    """Another function holds the shop's lease: its renewal is on the way."""
    if tokens.usable(credentials, now):
        return credentials
    waited = 0.0
    while waited < WAIT_SECONDS:
        time.sleep(POLL_SECONDS)
        waited += POLL_SECONDS
        fresh = shop_credentials.reread(scheme, shop)
        if tokens.usable(fresh, now) and not tokens.due(fresh, now, _ahead()):
            return fresh
    raise PlatformUnavailable(f"{scheme} shop {shop}: its access token is being renewed")


def _renew(scheme: str, shop: str, refresh: TokenRefresh, lease: leases.Lease, now: datetime,
           send_json: SendJson) -> dict[str, str]:
    fresh = shop_credentials.reread(scheme, shop)
    if not tokens.renewable(fresh) or not tokens.due(fresh, now, _ahead()):
        return fresh  # renewed since our copy was read (or no longer renewable)
    spent = tokens.fingerprint(fresh[tokens.REFRESH_TOKEN])
    if lease.refused == spent:  # refused before: sending it again would only be refused again
        if tokens.usable(fresh, now):
            return fresh
        raise RefreshRefused("reauthorisation_needed",
                             f"{scheme} shop {shop}: {refresh.reauthorise}")
    request = refresh.call(fresh, now)
    if request is None:
        return fresh
    try:
        renewed = refresh.parse(send_json(request), now)
    except RefreshRefused as exc:
        _refused(scheme, shop, refresh, spent, exc, now)
        if tokens.usable(fresh, now):
            return fresh
        raise
    except Exception as exc:
        if getattr(exc, "retryable", False) is not True:
            raise
        if tokens.usable(fresh, now):
            log.warning("token refresh of %s shop %s failed (%s); its token still works",
                        scheme, shop, type(exc).__name__)
            return fresh
        raise PlatformUnavailable(f"{scheme} shop {shop}: token refresh: {exc}") from exc
    updated = tokens.stored(fresh, renewed, refresh.access_key, now)
    shop_credentials.put(scheme, shop, updated)  # at once: the refresh token sent is spent
    # What `make run` shows of a renewal; never a token, only when the new ones end.
    log.info("token refreshed for %s shop %s, next expiry %s (refresh token until %s)", scheme,
             shop, iso(renewed.access_expires_at),
             iso(renewed.refresh_expires_at) if renewed.refresh_expires_at else "not said")
    if lease.refused and leases.clear(scheme, shop, "refused"):
        _resolve(REFUSED, scheme, shop, now, "a token refresh works again")
    _ending(scheme, shop, refresh, renewed, lease, now)
    return updated


def _subject(scheme: str, shop: str) -> str:
    return f"shop:{scheme}:{shop}"


def _refused(scheme: str, shop: str, refresh: TokenRefresh, spent: str, exc: RefreshRefused,
             now: datetime) -> None:
    """One case per shop and refused refresh token. Raised before it is recorded: a case that
    could not be raised is raised by the next call (refused again), never lost."""
    log.warning("token refresh of %s shop %s refused (%s): the seller must authorise us again",
                scheme, shop, exc.code)
    alert_topic.raise_case(
        REFUSED, _subject(scheme, shop), alerts.Severity.HIGH,
        f"{scheme} shop {shop}: the platform refused to renew our access ({exc.code}). Until "
        f"{refresh.reauthorise}, and the new credentials are stored (admin shop {scheme} "
        f"{shop}), no order of this shop can be re-fetched, written back or reconciled.",
        now, {"marketplace": scheme, "shop": shop, "code": exc.code,
              "what_to_do": refresh.reauthorise})
    leases.note(scheme, shop, "refused", spent)


# The ends of refresh tokens this process knows CS was told of: the stored end is checked on
# every use of a shop (a renewal may come too late: TikTok Shop's access token lives 7 days,
# as long as the warning ahead), and this keeps that check to one conditional write per
# process and shop.
_warned: set[tuple[str, str, str]] = set()


def _warn_if_ending(scheme: str, shop: str, refresh: TokenRefresh,
                    credentials: dict[str, str], now: datetime) -> None:
    ends = tokens.ending(credentials, now)
    if ends is not None and (scheme, shop, iso(ends)) not in _warned:
        _tell_ending(scheme, shop, refresh, ends, now)


def _ending(scheme: str, shop: str, refresh: TokenRefresh, renewed: Tokens, lease: leases.Lease,
            now: datetime) -> None:
    """One case while the shop's refresh tokens end within REAUTHORISE_WITHIN (the platform no
    longer extends them: the authorisation itself ends); resolved once a renewal reaches past."""
    ends = renewed.refresh_expires_at
    if ends is not None and ends - tokens.REAUTHORISE_WITHIN <= now:
        if not lease.ending:
            _tell_ending(scheme, shop, refresh, ends, now)
    elif lease.ending and leases.clear(scheme, shop, "ending"):
        _resolve(ENDING, scheme, shop, now, "the authorisation was renewed")


def _tell_ending(scheme: str, shop: str, refresh: TokenRefresh, ends: datetime,
                 now: datetime) -> None:
    """The case, raised by the one call whose write records the problem first (one per shop
    until it is resolved); if raising fails the record is cleared, so a later call raises it."""
    _warned.add((scheme, shop, iso(ends)))
    if not leases.note(scheme, shop, "ending", iso(ends)):
        return  # CS knows
    try:
        alert_topic.raise_case(
            ENDING, _subject(scheme, shop), alerts.Severity.MEDIUM,
            f"{scheme} shop {shop}: our authorisation ends {ends:%Y-%m-%d %H:%M} UTC and cannot "
            f"be renewed without the seller. Before then {refresh.reauthorise}, and store the "
            f"new credentials (admin shop {scheme} {shop}).",
            now, {"marketplace": scheme, "shop": shop, "ends_at": iso(ends),
                  "what_to_do": refresh.reauthorise})
    except Exception:
        _warned.discard((scheme, shop, iso(ends)))
        leases.clear(scheme, shop, "ending")
        raise


def _resolve(kind: str, scheme: str, shop: str, now: datetime, why: str) -> None:
    alert_topic.raise_case(kind, _subject(scheme, shop), alerts.Severity.LOW,
                           f"{scheme} shop {shop}: {why}", now,
                           {"marketplace": scheme, "shop": shop}, resolves=True)
