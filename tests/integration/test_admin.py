from __future__ import annotations

import pytest

from chalicelib import admin, auth
from chalicelib.errors import ApiError


def test_issue_list_and_revoke_a_partner_key(stack: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    admin.main(["issue", "--partner", "factory-cli"])
    key = capsys.readouterr().out.splitlines()[1]
    principal = auth.authenticate({"authorization": f"Bearer {key}"})
    assert (principal.kind, principal.id, principal.role) == ("partner", "factory-cli", "partner")

    admin.main(["list", "--partner", "factory-cli"])
    key_id, role, status, *_ = capsys.readouterr().out.split()
    assert (key_id, role, status) == (principal.key_id, "partner", "active")

    admin.main(["revoke", "--partner", "factory-cli", "--key-id", key_id])
    auth.forget()
    with pytest.raises(ApiError) as error:
        auth.authenticate({"authorization": f"Bearer {key}"})
    assert error.value.reason == "invalid_credentials"
    with pytest.raises(SystemExit):
        admin.main(["revoke", "--partner", "factory-cli", "--key-id", "nosuchkey"])


def test_staff_key_carries_its_role(stack: dict[str, str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    admin.main(["issue", "--staff", "dora", "--role", "back_office"])
    key = capsys.readouterr().out.splitlines()[1]
    principal = auth.authenticate({"x-api-key": key})
    assert auth.require_staff(principal, auth.Role.READ_ONLY) == principal
    with pytest.raises(ApiError):
        auth.require_staff(principal, auth.Role.ADMIN)


def test_source_command_registers_a_webhook_source(stack: dict[str, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib import webhook_sources

    admin.main(["source", "acme-erp", "--scheme", "standard", "--secret", "whsec_b2xk",
                "--secret", "whsec_bmV3"])
    webhook_sources.forget()
    source = webhook_sources.get("acme-erp")
    assert source is not None
    assert (source.scheme, source.secrets) == ("standard", ("whsec_b2xk", "whsec_bmV3"))
    with pytest.raises(SystemExit):
        admin.main(["source", "acme-erp", "--scheme", "standard"])
