from __future__ import annotations

import pytest

from chalicelib.access import keys as auth
from chalicelib.admin import cli as admin
from chalicelib.core.errors import ApiError


def test_issue_list_and_revoke_a_partner_key(stack: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.access import directory_store as directory
    admin.main(["issue", "--partner", "factory-cli"])
    key = capsys.readouterr().out.splitlines()[1]
    principal = directory.authenticate({"authorization": f"Bearer {key}"})
    assert (principal.kind, principal.id, principal.role) == ("partner", "factory-cli", "partner")

    admin.main(["list", "--partner", "factory-cli"])
    key_id, role, status, *_ = capsys.readouterr().out.split()
    assert (key_id, role, status) == (principal.key_id, "partner", "active")

    admin.main(["revoke", "--partner", "factory-cli", "--key-id", key_id])
    directory.forget()
    with pytest.raises(ApiError) as error:
        directory.authenticate({"authorization": f"Bearer {key}"})
    assert error.value.reason == "invalid_credentials"
    with pytest.raises(SystemExit):
        admin.main(["revoke", "--partner", "factory-cli", "--key-id", "nosuchkey"])


def test_staff_key_carries_its_role(stack: dict[str, str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.access import directory_store as directory
    admin.main(["issue", "--staff", "dora", "--role", "back_office"])
    key = capsys.readouterr().out.splitlines()[1]
    principal = directory.authenticate({"x-api-key": key})
    assert auth.require_staff(principal, auth.Role.READ_ONLY) == principal
    with pytest.raises(ApiError):
        auth.require_staff(principal, auth.Role.ADMIN)


def test_source_command_registers_a_webhook_source(stack: dict[str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.access import accounts_store as accounts

    admin.main(["source", "acme-erp", "--scheme", "standard", "--secret", "whsec_b2xk",
                "--secret", "whsec_bmV3"])
    accounts.forget()
    source = accounts.source("acme-erp")
    assert source is not None
    assert (source.scheme, source.secrets) == ("standard", ("whsec_b2xk", "whsec_bmV3"))
    with pytest.raises(SystemExit):
        admin.main(["source", "acme-erp", "--scheme", "standard"])


def test_courier_and_channel_commands_store_settings_and_refuse_bad_ones(
        stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from chalicelib.access import accounts_store as accounts

    admin.main(["courier", "kuaidi100", "--secret", "SALT1", "--option", "customer=C1",
                "--option", "key=K1"])
    admin.main(["channel", "wecom:ops", "--option",
                "webhook_url=https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"])
    accounts.forget()
    courier = accounts.courier("kuaidi100")
    assert courier is not None
    assert (courier.secrets, courier.options) == (("SALT1",), {"customer": "C1", "key": "K1"})
    channel = accounts.channel("wecom:ops")
    assert channel is not None and json.loads(channel.secrets[0])["webhook_url"].endswith("abc")
    for bad in (["courier", "nobody", "--secret", "s"], ["channel", "pager:x"],
                ["channel", "wecom:cs team", "--option", "webhook_url=https://x.example/k"],
                ["source", "acme erp", "--scheme", "standard", "--secret", "whsec_b2xk"],
                ["channel", "wecom:ops", "--option", "webhook_url=ftp://x"],
                ["channel", "email:cs", "--json", '{"sender": "a@b.c", '
                 '"verified_identities": ["other.example"]}']):
        with pytest.raises(SystemExit):
            admin.main(bad)


def test_shop_command_stores_credentials_in_ssm(stack: dict[str, str],
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.marketplaces import credentials_store as shop_credentials

    monkeypatch.setenv("APP_STAGE", "test")  # the command defaults it to its --stage

    admin.main(["shop", "woocommerce", "shop.example.cn", "--option", "consumer_key=ck_9",
                "--option", "consumer_secret=cs_9"])
    shop_credentials.forget()
    assert shop_credentials.get("woocommerce", "shop.example.cn") == {
        "consumer_key": "ck_9", "consumer_secret": "cs_9"}
    with pytest.raises(SystemExit):
        admin.main(["shop", "nowhere", "x", "--option", "a=b"])
