"""Integration accounts' secrets (webhook sources, courier accounts, CS channels) live in SSM
SecureStrings, are read through the Parameters and Secrets extension (locally
devstack/parameters_extension.py) with no SSM client on the webhook path, keep working while
rotated, move out of the directory table with `migrate-secrets`, and show nowhere else: not in
a DynamoDB item, a log line, an alert or an API answer."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.access import accounts_store as accounts
from chalicelib.access.keys import Role
from chalicelib.admin import cli as admin
from chalicelib.core import aws, parameters
from chalicelib.core.dynamodb import to_attrs
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows import alert_dispatch, notifier
from chalicelib.tracking import couriers
from chalicelib.tracking.couriers import kuaidi100
from tests.integration.flow import alerts_received
from tests.support import canonical_order, standard_headers

# Wednesday 2 December 2026, 10:00 in Shanghai: CS is online.
IN_HOURS = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post_order(client: Client, source: str, secret: str) -> Any:
    data = canonical_order(external_id=f"SO-{uuid.uuid4().hex[:10]}")
    body = json.dumps({"type": "order.paid", "timestamp": "2026-11-23T02:01:00Z",
                       "data": data}).encode()
    return client.http.post(f"/webhooks/{source}", body=body,
                            headers=standard_headers(body, secret=secret))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The AWS clients asked for, and "extension" for each read through the extension."""
    asked: list[str] = []
    client_of, ask = aws.client, parameters._ask

    def client(service: str) -> Any:
        asked.append(service)
        return client_of(service)

    def extension(port: int, name: str) -> Any:
        asked.append("extension")
        return ask(port, name)

    monkeypatch.setattr(aws, "client", client)
    monkeypatch.setattr(parameters, "_ask", extension)
    return asked


@contextmanager
def kept_account(name: str) -> Iterator[None]:
    """Put the account back as it was (other tests use the courier accounts)."""
    before = accounts.stored(name)
    try:
        yield
    finally:
        if before is not None:
            accounts.put(name, before[0])
        else:
            boto3.client("ssm").delete_parameter(Name=accounts.parameter_name(name))
        accounts.forget()
        couriers.forget_providers()


# Reading ----------------------------------------------------------------------------------------

def test_a_webhook_reads_its_source_through_the_extension_and_builds_no_ssm_client(
        client: Client, calls: list[str]) -> None:
    name, secret = f"erp-{uuid.uuid4().hex[:8]}", whsec()
    accounts.register_sources({name: {"scheme": "standard", "secrets": [secret]}})
    aws.reset()  # a cold start: no client yet
    calls.clear()
    assert post_order(client, name, secret).status_code == 200
    assert calls.count("extension") == 1 and "ssm" not in calls
    assert set(calls) == {"extension", "dynamodb"}
    calls.clear()
    assert post_order(client, name, secret).status_code == 200
    assert "extension" not in calls  # cached for SECRETS_CACHE_SECONDS, as before


def test_an_unknown_source_is_asked_once_and_answered_404_without_an_ssm_client(
        client: Client, calls: list[str]) -> None:
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        answer = client.http.post(f"/webhooks/{name}", body=b"{}",
                                  headers={"Content-Type": "application/json"})
        assert (answer.status_code, json.loads(answer.body)["error"]) == (404, "unknown_source")
    assert calls.count("extension") == 1 and "ssm" not in calls
    calls.clear()
    answer = client.http.post("/webhooks/no%20such..name", body=b"{}",
                              headers={"Content-Type": "application/json"})
    assert answer.status_code == 404 and "extension" not in calls  # no parameter has that name


def test_without_the_extension_parameter_store_answers_the_same(
        stack: dict[str, str], calls: list[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    name, secret = f"erp-{uuid.uuid4().hex[:8]}", whsec()
    accounts.register_sources({name: {"scheme": "standard", "secrets": [secret]}})
    parameter = accounts.parameter_name(name)
    assert parameter is not None
    caplog.set_level(logging.INFO)

    monkeypatch.delenv(parameters.PORT_VARIABLE)  # the admin command line, a script
    calls.clear()
    assert json.loads(parameters.get(parameter) or "")["secrets"] == [secret]
    assert calls == ["ssm"]

    for broken in ({parameters.PORT_VARIABLE: str(closed_port())},  # not listening
                   {parameters.PORT_VARIABLE: stack[parameters.PORT_VARIABLE],
                    "AWS_SESSION_TOKEN": "not-this-functions"}):  # refused: 401
        for variable, value in broken.items():
            monkeypatch.setenv(variable, value)
        calls.clear()
        assert json.loads(parameters.get(parameter) or "")["secrets"] == [secret]
        assert calls == ["extension", "ssm"]
    assert parameters.get(parameter + "-missing") is None
    warnings = [r.getMessage() for r in caplog.records if r.name == parameters.__name__]
    assert warnings and all(secret not in text for text in warnings)


def test_the_local_extension_answers_as_lambdas_does(stack: dict[str, str]) -> None:
    import http.client

    name, secret = f"erp-{uuid.uuid4().hex[:8]}", whsec()
    accounts.register_sources({name: {"scheme": "standard", "secrets": [secret]}})
    parameter = accounts.parameter_name(name)

    def get(path: str, token: str | None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(
            "127.0.0.1", int(stack[parameters.PORT_VARIABLE]), timeout=10)
        connection.request("GET", path, headers={} if token is None else {
            parameters.TOKEN_HEADER: token})
        response = connection.getresponse()
        status, body = response.status, json.loads(response.read())
        connection.close()
        return status, body

    token = stack["AWS_SESSION_TOKEN"]
    status, body = get(f"{parameters.PATH}?name={parameter}&withDecryption=true", token)
    assert status == 200 and body["Parameter"]["Name"] == parameter
    assert body["Parameter"]["Type"] == "SecureString"
    assert json.loads(body["Parameter"]["Value"])["secrets"] == [secret]
    assert get(f"{parameters.PATH}?name={parameter}&withDecryption=true", None)[0] == 401
    status, body = get(f"{parameters.PATH}/?name={parameter}-no&withDecryption=true", token)
    assert (status, body["__type"]) == (400, "ParameterNotFound")


# Rotation ---------------------------------------------------------------------------------------

def test_rotating_a_source_keeps_both_secrets_working_until_the_old_one_is_dropped(
        client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    name, old, new = f"erp-{uuid.uuid4().hex[:8]}", whsec(), whsec()
    admin.main(["source", name, "--scheme", "standard", "--secret", old])
    accounts.forget()  # what SECRETS_CACHE_SECONDS does in a running function
    assert post_order(client, name, old).status_code == 200
    assert post_order(client, name, new).status_code == 401

    admin.main(["source", name, "--scheme", "standard", "--secret", old, "--secret", new])
    accounts.forget()
    assert post_order(client, name, old).status_code == 200
    assert post_order(client, name, new).status_code == 200

    admin.main(["source", name, "--scheme", "standard", "--secret", new])
    accounts.forget()
    assert post_order(client, name, old).status_code == 401
    assert post_order(client, name, new).status_code == 200
    out = capsys.readouterr().out
    assert old not in out and new not in out


def test_a_courier_push_verifies_against_either_secret_while_rotating(
        client: Client, stack: dict[str, str]) -> None:
    old, new = f"salt-{uuid.uuid4().hex}", f"salt-{uuid.uuid4().hex}"
    name = couriers.source_name("kuaidi100")
    with kept_account(name):
        accounts.register_sources({name: {"scheme": "kuaidi100", "secrets": [old, new]}})
        for salt in (old, new, "wrong"):
            param = json.dumps({"status": "polling", "message": "", "lastResult": {
                "nu": uuid.uuid4().hex[:12], "com": "shentong", "state": "0", "data": []}})
            body = f"param={param}&sign={kuaidi100._md5_upper(param + salt)}".encode()
            answer = client.http.post("/couriers/kuaidi100/push", body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == (401 if salt == "wrong" else 200), answer.body


# Nothing secret anywhere else ---------------------------------------------------------------------

def scan_everything() -> str:
    """Every item of every table of the stack, as text."""
    ddb = boto3.client("dynamodb")
    texts = []
    for table in ddb.list_tables()["TableNames"]:
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            texts.append(json.dumps(page.get("Items", []), ensure_ascii=False, default=lambda b:
                                    b.decode("utf-8", errors="replace")))  # binary attributes
    return "\n".join(texts)


def test_nothing_the_stack_stores_logs_alerts_or_answers_holds_a_secret(
        client: Client, stack: dict[str, str], make_key: Any,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO)
    uid = uuid.uuid4().hex[:8]
    source, old, new = f"scan-{uid}", whsec(), whsec()
    salt, key = f"SALT{uid}{uuid.uuid4().hex}", f"KEY{uid}{uuid.uuid4().hex}"
    robot = f"ROBOT{uid}{uuid.uuid4().hex}"
    signing, bad_robot = f"SEC{uid}{uuid.uuid4().hex}", f"BAD{uid}{uuid.uuid4().hex}"
    secrets = [old, new, salt, key, robot, signing, bad_robot]
    unreachable = f"http://127.0.0.1:{closed_port()}/cgi-bin/webhook/send?key={robot}"
    wecom, dingtalk = f"wecom:scan-{uid}", f"dingtalk:scan-{uid}"
    monkeypatch.setenv("CS_ROUTING_JSON", json.dumps({
        "rota": {"team_channels": [wecom, dingtalk]}, "max_attempts": 2,
        "fallback_channel": f"email:none-{uid}"}))
    notifier.routing.cache_clear()
    answers: list[bytes] = []

    def keep(answer: Any) -> Any:
        answers.append(answer.body)
        return answer

    courier = couriers.source_name("kuaidi100")
    with kept_account(courier):
        # The admin command line sets them (a robot's URL it checks; a broken one by hand).
        admin.main(["source", source, "--scheme", "standard", "--secret", old, "--secret", new])
        admin.main(["courier", "kuaidi100", "--secret", salt, "--option", f"key={key}",
                    "--option", "customer=CUST"])
        admin.main(["channel", wecom, "--option", f"webhook_url={unreachable}"])
        accounts.register_sources({f"channel/{dingtalk}": {"scheme": "dingtalk", "secrets": [
            json.dumps({"webhook_url": "ftp://oapi.dingtalk.com/robot/send?access_token="
                                       f"{bad_robot}", "secret": signing, "extra": signing})]}})
        accounts.forget()

        # Webhooks, signed with either secret, with neither, and unreadable.
        assert keep(post_order(client, source, old)).status_code == 200
        assert keep(post_order(client, source, new)).status_code == 200
        assert keep(post_order(client, source, whsec())).status_code == 401
        body = json.dumps({"type": "order.paid", "timestamp": "2026-11-23T02:01:00Z",
                           "data": {"external_id": "x"}}).encode()
        assert keep(client.http.post(f"/webhooks/{source}", body=body, headers=standard_headers(
            body, secret=new))).status_code == 422
        # Courier pushes, verified and not.
        for push_salt, status in ((salt, 200), ("wrong", 401)):
            param = json.dumps({"status": "polling", "message": "", "lastResult": {
                "nu": uuid.uuid4().hex[:12], "com": "shentong", "state": "0", "data": []}})
            assert keep(client.http.post("/couriers/kuaidi100/push", body=(
                f"param={param}&sign={kuaidi100._md5_upper(param + push_salt)}").encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"}),
            ).status_code == status
        # A case told on a robot that cannot be reached and on one whose settings are broken:
        # retried, fallen back (to a mailbox that is not there) and dead-lettered.
        alert = Alert(kind="order.invalid", severity=Severity.HIGH, subject=f"order:{uid}",
                      at=IN_HOURS, summary=f"#{uid}: no shipping address",
                      facts={"order_id": f"ord_{uid}"})
        alert_dispatch.handle(alert.model_dump_json(), IN_HOURS)
        for minutes in range(0, 12, 2):
            notifier.run(IN_HOURS + timedelta(minutes=minutes, seconds=1))
    notifier.routing.cache_clear()
    cs = {"Authorization": f"Bearer {make_key('staff', 'scan', Role.ADMIN)}"}
    listed = []
    for kind in ("failed", "dead"):
        answer = keep(client.http.get(f"/cs/v1/notifications?status={kind}", headers=cs))
        listed += json.loads(answer.body)["notifications"]
    errors = {n["channel"]: n.get("last_error", "") for n in listed}
    assert "network" in errors.get(wecom, "") and "bad_config" in errors.get(dingtalk, "")

    alerts = json.dumps(alerts_received(stack), ensure_ascii=False)
    assert "webhook.invalid_payload" in alerts
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    everything = {"DynamoDB": scan_everything(), "logs": logged, "alerts": alerts,
                  "API answers": b"\n".join(answers).decode("utf-8", errors="replace")}
    # A secret cut short is still a leak: look for its first and its last 14 characters.
    needles = {part for secret in secrets for part in (secret[:14], secret[-14:])}
    leaks = {where: sorted(n for n in needles if n in text) for where, text in everything.items()}
    assert leaks == {where: [] for where in everything}


# Migration ---------------------------------------------------------------------------------------

def legacy_item(stack: dict[str, str], name: str, account: dict[str, Any],
                updated_at: str = "2026-01-01T00:00:00.000Z") -> None:
    """An account as earlier versions stored it: secrets as table attributes."""
    boto3.client("dynamodb").put_item(TableName=stack["DIRECTORY_TABLE"], Item=to_attrs({
        "pk": f"SOURCE#{name}", "sk": "SOURCE", "options": {}, **account,
        "updated_at": updated_at}))


def table_item(stack: dict[str, str], name: str) -> dict[str, Any]:
    item = boto3.client("dynamodb").get_item(TableName=stack["DIRECTORY_TABLE"], Key=to_attrs({
        "pk": f"SOURCE#{name}", "sk": "SOURCE"}), ConsistentRead=True)["Item"]
    return {k: next(iter(v.values())) for k, v in item.items()}


def test_migrate_secrets_moves_every_account_out_of_the_table_once(
        client: Client, stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    uid = uuid.uuid4().hex[:8]
    source, secret = f"mig-{uid}", whsec()
    courier, salt = f"courier/mig-{uid}", f"salt-{uuid.uuid4().hex}"
    channel, robot = f"channel/wecom:mig-{uid}", f"robot-{uuid.uuid4().hex}"
    newer, stale, fresh = f"newer-{uid}", whsec(), whsec()
    bad, broken = f"bad name {uid}", f"broken-{uid}"
    legacy_item(stack, source, {"scheme": "standard", "secrets": [secret]})
    legacy_item(stack, courier, {"scheme": "kuaidi100", "secrets": [salt],
                                 "options": {"key": f"k-{uid}"}})
    legacy_item(stack, channel, {"scheme": "wecom", "secrets": [json.dumps({
        "webhook_url": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={robot}"})]})
    legacy_item(stack, newer, {"scheme": "standard", "secrets": [stale]})
    admin.main(["source", newer, "--scheme", "standard", "--secret", fresh])  # set since
    legacy_item(stack, bad, {"scheme": "standard", "secrets": [whsec()]})
    legacy_item(stack, broken, {"scheme": "standard", "secrets": []})  # never valid
    secrets = [secret, salt, robot, stale, fresh]
    try:
        # Before the deploy: copied, the table untouched (the running version reads it).
        with pytest.raises(SystemExit) as exit_code:
            admin.main(["migrate-secrets", "--keep-table"])
        assert exit_code.value.code == 1  # the bad name and the broken item are left
        assert table_item(stack, source)["secrets"] == [{"S": secret}]
        accounts.forget()
        assert post_order(client, source, secret).status_code == 200

        # After: the secrets leave the table.
        with pytest.raises(SystemExit):
            admin.main(["migrate-secrets"])
        out = capsys.readouterr().out
        assert all(s not in out for s in secrets)
        assert f"{bad}: left" in out and f"{broken}: left: the item cannot be read" in out
        for name in (source, courier, channel, newer):
            item = table_item(stack, name)
            assert "secrets" not in item and "options" not in item, item
            assert item["moved_to"] == accounts.parameter_name(name)
        accounts.forget()
        found = {name: account or pytest.fail(f"{name} not found") for name, account in (
            (source, accounts.source(source)), (courier, accounts.courier(f"mig-{uid}")),
            (channel, accounts.channel(f"wecom:mig-{uid}")), (newer, accounts.source(newer)))}
        assert found[source].secrets == (secret,)
        assert found[courier].options == {"key": f"k-{uid}"}
        assert robot in found[channel].secrets[0]
        assert found[newer].secrets == (fresh,)  # set since: not the table's
        assert post_order(client, source, secret).status_code == 200
        assert all(s not in scan_everything() for s in (secret, salt, robot, stale))

        # Once is enough: a second run finds only what it could not move.
        with pytest.raises(SystemExit):
            admin.main(["migrate-secrets"])
        assert "2 account(s) with secrets" in capsys.readouterr().out
    finally:
        for name in (bad, broken):
            boto3.client("dynamodb").delete_item(TableName=stack["DIRECTORY_TABLE"],
                                                 Key=to_attrs({"pk": f"SOURCE#{name}",
                                                               "sk": "SOURCE"}))
    admin.main(["migrate-secrets"])  # nothing left: exit status 0
    assert "0 account(s) with secrets" in capsys.readouterr().out

