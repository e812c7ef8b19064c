"""Where each integration account's secrets live: the SSM parameter names agreed with the IAM
policies (one path per kind, so each function is granted only its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from chalicelib.access import accounts_store as accounts
from chalicelib.access.accounts import WebhookSource
from chalicelib.core.settings import settings


@pytest.fixture(autouse=True)
def stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_STAGE", "prod")
    settings.cache_clear()


@pytest.mark.parametrize(("account", "parameter"), [
    ("shopify", "/order-backbone/prod/secrets/sources/shopify"),
    ("acme-erp_2.v1", "/order-backbone/prod/secrets/sources/acme-erp_2.v1"),
    ("courier/kuaidi100", "/order-backbone/prod/secrets/couriers/kuaidi100"),
    ("courier/17track", "/order-backbone/prod/secrets/couriers/17track"),
    ("channel/wecom:cs-team", "/order-backbone/prod/secrets/channels/wecom/cs-team"),
    ("channel/email:cs-team", "/order-backbone/prod/secrets/channels/email/cs-team"),
])
def test_each_kind_of_account_has_its_own_path(account: str, parameter: str) -> None:
    assert accounts.parameter_name(account) == parameter


@pytest.mark.parametrize("account", [
    "", "no such", "a/b", "../shopify", ".hidden", "-dash", "x" * 129, "emoji🙂", "semi;colon",
    "channel/wecom", "channel/wecom:", "channel/:team", "channel/wecom:a:b", "courier/",
    "courier/a/b", "webhooks%2Fshopify",
])
def test_a_name_no_parameter_can_have_names_no_account(account: str) -> None:
    assert accounts.parameter_name(account) is None


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The parameters read; each holds a courier's account."""
    from chalicelib.core import parameters

    names: list[str] = []

    def fetch(parameter: str) -> Callable[[], str]:
        names.append(parameter)
        return lambda: '{"scheme": "kuaidi100", "secrets": ["salt"]}'

    monkeypatch.setattr(parameters, "fetch", fetch)
    accounts.forget()
    yield names
    accounts.forget()


@pytest.mark.parametrize("name", ["courier/kuaidi100", "channel/wecom:cs-team", "a/b"])
def test_a_webhook_url_can_name_only_a_webhook_source(name: str, asked: list[str]) -> None:
    assert accounts.source(name) is None  # never asked for: no source's parameter has it
    assert asked == []


def test_what_a_webhook_url_cached_stands_for_no_other_account(asked: list[str]) -> None:
    assert accounts.source("courier/kuaidi100") is None
    assert accounts.source("channel/wecom:cs-team") is None
    assert accounts.courier("kuaidi100") is not None
    assert accounts.channel("wecom:cs-team") is not None
    assert asked == ["/order-backbone/prod/secrets/couriers/kuaidi100",
                     "/order-backbone/prod/secrets/channels/wecom/cs-team"]


def test_an_account_is_never_shown_with_its_secrets() -> None:
    account = WebhookSource(scheme="standard", secrets=("whsec_secret",),
                            options={"key": "k-secret"})
    assert "secret" not in repr(account) and "secret" not in str(account)
