"""The admin command line's target: the local stack's defaults, AWS's one-line errors, and the
resource names it derives from the stage (checked against infra/resources.yaml)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.admin import connection
from chalicelib.admin.operations import age
from devstack.provision import load_template

AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ACCOUNT_ID_ENDPOINT_MODE", "AWS_READ_TIMEOUT_SECONDS")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A machine with no AWS configuration at all (and not on EC2: no instance role to find).
    connect() writes the environment itself: all of it is put back afterwards."""
    from chalicelib.core import aws
    from chalicelib.core.settings import settings

    saved = dict(os.environ)
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("LOCAL_RUN_FILE", str(tmp_path / "run.json"))
    yield tmp_path
    monkeypatch.undo()  # first: it would put back what connect() wrote before a setenv
    os.environ.clear()
    os.environ.update(saved)
    aws.reset()
    settings.cache_clear()


@pytest.mark.parametrize(("url", "local"), [
    ("http://127.0.0.1:5000", True), ("http://localhost:5000", True), ("http://[::1]:5000", True),
    ("http://127.0.0.2:4566", True), ("https://dynamodb.us-east-1.amazonaws.com", False),
    ("http://10.0.0.5:5000", False), ("http://localhost.example.com", False),
])
def test_only_a_loopback_endpoint_is_local(url: str, local: bool) -> None:
    assert connection.is_local(url) is local


def test_stage_local_reads_the_endpoint_make_run_wrote_and_defaults_the_rest(
        fresh: Path) -> None:
    (fresh / "run.json").write_text(json.dumps({"api": "http://127.0.0.1:8000",
                                                "aws": "http://127.0.0.1:5000"}))
    target = connection.connect("local")
    assert (target.endpoint, target.local) == ("http://127.0.0.1:5000", True)
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5000"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert os.environ["AWS_ACCESS_KEY_ID"] == os.environ["AWS_SECRET_ACCESS_KEY"] == "local"


def test_a_local_endpoint_keeps_what_the_environment_sets(fresh: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:5001")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mine-too")
    assert connection.connect("test").local
    assert (os.environ["AWS_DEFAULT_REGION"], os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"]) == ("eu-west-1", "mine", "mine-too")


def test_a_profile_s_keys_are_not_sent_to_the_local_endpoint(
        fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (fresh / "credentials").write_text("[default]\naws_access_key_id = AKIAREAL\n"
                                       "aws_secret_access_key = real\n")
    (fresh / "run.json").write_text(json.dumps({"aws": "http://127.0.0.1:5000"}))
    connection.connect("local")
    assert os.environ["AWS_ACCESS_KEY_ID"] == "local"


def test_stage_local_without_a_running_stack_says_to_start_one(fresh: Path) -> None:
    with pytest.raises(connection.SetupError, match=r"no local stack: .*`make run`"):
        connection.connect("local")
    (fresh / "run.json").write_text(json.dumps({"api": "http://127.0.0.1:8000"}))
    with pytest.raises(connection.SetupError, match="names no AWS endpoint"):
        connection.connect("local")


def test_aws_is_never_defaulted_a_missing_region_or_credentials_is_one_line(
        fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(connection.SetupError) as error:
        connection.connect("dev")
    message = str(error.value)
    assert message.startswith("no AWS credentials and no region for stage dev: ")
    assert "AWS_DEFAULT_REGION" in message and "--stage local" in message
    assert "\n" not in message
    assert "AWS_DEFAULT_REGION" not in os.environ and "AWS_ACCESS_KEY_ID" not in os.environ

    monkeypatch.setenv("AWS_REGION", "ap-east-1")
    with pytest.raises(connection.SetupError, match=r"^no AWS credentials for stage dev: "):
        connection.connect("dev")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    target = connection.connect("dev")
    assert (target.local, target.endpoint) == (False, None)

    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(connection.SetupError, match="could not be found"):
        connection.connect("prod")


def test_sdk_errors_become_one_line_with_what_to_do(fresh: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (fresh / "run.json").write_text(json.dumps({"aws": "http://127.0.0.1:5999"}))
    connection.connect("local")
    unreachable = connection.explain(EndpointConnectionError(
        endpoint_url="http://127.0.0.1:5999/"))
    assert unreachable.startswith("cannot reach the local endpoint http://127.0.0.1:5999")
    assert "make run" in unreachable

    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://example.amazonaws.com")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    connection.connect("dev")
    expired = ClientError({"Error": {"Code": "ExpiredTokenException",
                                     "Message": "The security token included in the request "
                                                "is expired"}}, "Query")
    line = connection.explain(expired)
    assert line.startswith("Query refused on AWS (https://example.amazonaws.com): "
                           "ExpiredTokenException: ")
    assert "sign in again" in line and "\n" not in line


def _template_name(template: dict[str, Any], variable: str) -> str:
    """The physical name a Globals variable resolves to, with the stage left as ${Stage}."""
    value = template["Globals"]["Function"]["Environment"]["Variables"][variable]
    logical_id = value["Ref"]
    properties = template["Resources"][logical_id]["Properties"]
    for name in ("TableName", "TopicName", "QueueName"):
        if name in properties:
            return str(properties[name]["Fn::Sub"])
    raise AssertionError(variable)


def test_resource_names_follow_the_template() -> None:
    template = load_template()
    for variable, resource in connection.TABLES.items():
        assert _template_name(template, variable) == f"order-backbone-${{Stage}}-{resource}"
    assert (_template_name(template, "ALERTS_TOPIC_ARN")
            == f"order-backbone-${{Stage}}-{connection.TOPIC}")
    queues = {str(resource["Properties"]["QueueName"]["Fn::Sub"])
              for resource in template["Resources"].values()
              if resource["Type"] == "AWS::SQS::Queue"}
    for queue in connection.QUEUES:
        assert connection.queue_name("${Stage}", queue) in queues


def test_the_stage_s_own_variables_come_from_the_chalice_config() -> None:
    assert connection.chalice_variables("prod")["APP_STAGE"] == "prod"
    assert connection.chalice_variables("nosuchstage") == {}


@pytest.mark.parametrize(("span", "shown"), [
    (timedelta(seconds=-3), "0s"), (timedelta(seconds=45), "45s"), (timedelta(minutes=12), "12m"),
    (timedelta(hours=3, minutes=5), "3h05m"), (timedelta(days=2, hours=4, minutes=59), "2d04h"),
])
def test_ages_read_at_a_glance(span: timedelta, shown: str) -> None:
    assert age(span) == shown
