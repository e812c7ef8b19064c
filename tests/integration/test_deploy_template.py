"""What `make package` hands to CloudFormation, for each deployed stage: pinned to its stage,
accepted by the real SAM transform, and clean under cfn-lint once transformed (all offline).

The transform is AWS's own (aws-sam-translator, pinned in requirements-dev.txt), run as
CloudFormation runs it after `aws cloudformation package` has replaced each CodeUri with the
uploaded zip's S3 address; cfn-lint then reads the plain CloudFormation it produced, so the
checks cover what Chalice and infra/resources.yaml make together (roles, the API's stage, the
event source mappings), not only resources.yaml. The package is built as tests/packaging.py
says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.packaging import ROOT, Project

STAGES = ("dev", "prod")
REGION = "eu-west-1"
INLINE_TEMPLATE_LIMIT = 51_200  # bytes CloudFormation takes without an S3 upload


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module")
def packaged(project: Project) -> dict[str, Path]:
    """build/<stage>/sam.yaml for each stage, as `make package STAGE=<stage>` wrote it."""
    return {stage: project.package(stage) / "sam.yaml" for stage in STAGES}


def sam(packaged: dict[str, Path], stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(packaged[stage].read_text())
    return loaded


def transform(template: dict[str, Any]) -> dict[str, Any]:
    """The SAM transform as CloudFormation applies it to the uploaded template."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/order-backbone/deployment.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(
        region_name=REGION, aws_access_key_id="offline", aws_secret_access_key="offline"))
    out: dict[str, Any] = translator.translate(template, parameter_values={},
                                               get_managed_policy_map=dict)
    return out


@pytest.fixture(scope="module")
def transformed(packaged: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                ) -> dict[str, Path]:
    """Each stage's template after the SAM transform, as JSON files cfn-lint can read."""
    out = tmp_path_factory.mktemp("transformed")
    files = {}
    for stage in STAGES:
        files[stage] = out / f"{stage}.json"
        files[stage].write_text(json.dumps(transform(sam(packaged, stage)), indent=1))
    return files


def cloudformation(transformed: dict[str, Path], stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(transformed[stage].read_text())
    return loaded


def resources_of(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


# --- The stage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_the_template_is_pinned_to_the_stage_it_was_packaged_for(
        packaged: dict[str, Path], stage: str) -> None:
    template = sam(packaged, stage)
    parameter = template["Parameters"]["Stage"]
    assert parameter["Default"] == stage
    assert parameter["AllowedValues"] == [stage]  # `Stage=dev` on the prod package: refused
    functions = resources_of(template, "AWS::Serverless::Function")
    assert len(functions) == 16
    assert {f["Properties"]["Environment"]["Variables"]["APP_STAGE"]
            for f in functions.values()} == {stage}


def test_the_local_stage_is_not_packaged(project: Project) -> None:
    done = project.make("package", "STAGE=local")
    assert done.returncode != 0
    assert "'local' is not deployed" in done.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_the_template_needs_the_artifacts_bucket_to_deploy(
        packaged: dict[str, Path], stage: str) -> None:
    """Over CloudFormation's inline limit: `deploy` must upload it (README's --s3-bucket)."""
    assert packaged[stage].stat().st_size > INLINE_TEMPLATE_LIMIT


# --- The SAM transform and cfn-lint -------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_the_transformed_template_is_clean_under_cfn_lint(
        transformed: dict[str, Path], stage: str) -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--regions", REGION,
                           "--", str(transformed[stage])],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_every_table_is_protected_from_deletion(transformed: dict[str, Path], stage: str) -> None:
    tables = resources_of(cloudformation(transformed, stage), "AWS::DynamoDB::Table")
    assert len(tables) == 7  # with the couriers' bills (issue 16)
    for lid, table in tables.items():
        assert table["Properties"]["DeletionProtectionEnabled"] is True, lid
        assert table["DeletionPolicy"] == "Retain", lid


@pytest.mark.parametrize("stage", STAGES)
def test_each_function_runs_with_its_own_role_and_policy_file(
        transformed: dict[str, Path], stage: str) -> None:
    """.chalice/config.json names one policy file per function; the role of each function in
    the deployed template holds exactly that document (tests/unit/test_policies.py checks the
    documents against the code)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    template = cloudformation(transformed, stage)
    functions = resources_of(template, "AWS::Lambda::Function")
    by_handler = {f["Properties"]["Handler"]: f for f in functions.values()}
    roles = set()
    for handler, function in by_handler.items():
        name = "api_handler" if handler == "app.app" else handler.removeprefix("app.")
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        roles.add(role)
        (policy,) = template["Resources"][role]["Properties"]["Policies"]
        policy_file = config["lambda_functions"][name]["iam_policy_file"]
        expected = json.loads((ROOT / ".chalice" / policy_file).read_text())
        assert policy["PolicyDocument"] == expected, name
    assert len(roles) == len(by_handler) == 16


# --- The API's gateway ------------------------------------------------------------------------

# API Gateway's own answers, before Lambda: (status, reason) in the app's error contract.
GATEWAY_ANSWERS = {
    "MISSING_AUTHENTICATION_TOKEN": (404, "route_not_found"),  # a path no route serves
    "RESOURCE_NOT_FOUND": (404, "route_not_found"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "unsupported_media_type"),
    "REQUEST_TOO_LARGE": (413, "payload_too_large"),
    "THROTTLED": (429, "rate_limited"),
    "ACCESS_DENIED": (403, "forbidden"),
    "INTEGRATION_TIMEOUT": (504, "gateway_timeout"),
    "DEFAULT_4XX": (None, "bad_request"),  # the status API Gateway chose
    "DEFAULT_5XX": (None, "internal_error"),
}


def _one(template: dict[str, Any], kind: str) -> dict[str, Any]:
    (resource,) = resources_of(template, kind).values()
    return resource


@pytest.mark.parametrize("stage", STAGES)
def test_the_gateway_answers_in_the_error_contract(transformed: dict[str, Path],
                                                   stage: str) -> None:
    api = _one(cloudformation(transformed, stage), "AWS::ApiGateway::RestApi")
    responses = api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == set(GATEWAY_ANSWERS)
    for kind, (status, reason) in GATEWAY_ANSWERS.items():
        response = responses[kind]
        assert response.get("statusCode") == (str(status) if status else None), kind
        # $context.error.messageString is a quoted JSON string when API Gateway fills it in.
        text = response["responseTemplates"]["application/json"]
        body = json.loads(text.replace("$context.error.messageString", '"Forbidden"'))
        assert body["error"] == reason and body["message"], kind
    assert responses["THROTTLED"]["responseParameters"] == {
        "gatewayresponse.header.Retry-After": "'1'"}


@pytest.mark.parametrize("stage", STAGES)
def test_a_wrong_method_on_a_route_reaches_the_app(transformed: dict[str, Path],
                                                   stage: str) -> None:
    """The app answers 405 with Allow (chalicelib.api.chalice_errors); the gateway would answer
    a method no route declares as it does an unknown path."""
    api = _one(cloudformation(transformed, stage), "AWS::ApiGateway::RestApi")
    paths = api["Properties"]["Body"]["paths"]
    assert len(paths) > 20
    for path, item in paths.items():
        declared = [m for m in item if m in ("get", "put", "post", "delete", "patch")]
        assert declared, path
        assert item["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"] == \
            item[declared[0]]["x-amazon-apigateway-integration"], path


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_is_throttled_traced_and_access_logged_in_json(
        transformed: dict[str, Path], stage: str) -> None:
    template = cloudformation(transformed, stage)
    api = _one(template, "AWS::ApiGateway::RestApi")
    assert api["Properties"]["Name"] == {"Fn::Sub": "order-backbone-${Stage}"}
    props = _one(template, "AWS::ApiGateway::Stage")["Properties"]
    assert props["StageName"] == "api" and props["TracingEnabled"] is True
    every_method = [s for s in props["MethodSettings"]
                    if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*")]
    assert every_method and every_method[0]["ThrottlingRateLimit"] == {"Ref": "ApiRateLimit"}
    assert all("ThrottlingBurstLimit" in s for s in props["MethodSettings"])
    access = props["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(access["Format"])
    assert {"requestId", "status", "resource", "latency", "errorType"} <= set(fields)
    group = template["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] > 0


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_logs_to_a_retained_group_and_is_traced(
        transformed: dict[str, Path], stage: str) -> None:
    template = cloudformation(transformed, stage)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for function in resources_of(template, "AWS::Lambda::Function").values():
        props = function["Properties"]
        assert props["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogGroup"}
        assert props["TracingConfig"] == {"Mode": "Active"}
        handler = props["Handler"]
        name = "api_handler" if handler == "app.app" else handler.removeprefix("app.")
        settings = config["lambda_functions"][name]
        assert props["Timeout"] == settings.get("lambda_timeout", config["lambda_timeout"])
        assert props["MemorySize"] == settings.get("lambda_memory_size",
                                                   config["lambda_memory_size"])
    assert template["Resources"]["FunctionLogGroup"]["Properties"]["RetentionInDays"] > 0


@pytest.mark.parametrize("stage", STAGES)
def test_each_queue_hides_a_message_longer_than_its_consumer_may_run(
        transformed: dict[str, Path], stage: str) -> None:
    """Lambda refuses an SQS mapping whose queue's visibility timeout is below the function's
    timeout (a message would come back while still being handled)."""
    template = cloudformation(transformed, stage)
    mappings = resources_of(template, "AWS::Lambda::EventSourceMapping").values()
    sqs = [m["Properties"] for m in mappings if "Fn::Sub" in m["Properties"]["EventSourceArn"]]
    assert len(sqs) == 5  # the queues' ARNs are `!Sub "${Queue.Arn}"` (resources.yaml says why)
    for mapping in sqs:
        queue_id = mapping["EventSourceArn"]["Fn::Sub"].removeprefix("${").split(".")[0]
        queue = template["Resources"][queue_id]
        assert queue["Type"] == "AWS::SQS::Queue"
        function = template["Resources"][mapping["FunctionName"]["Ref"]]
        assert queue["Properties"].get("VisibilityTimeout", 30) >= \
            function["Properties"]["Timeout"], mapping


@pytest.mark.parametrize("stage", STAGES)
def test_scheduled_functions_are_never_retried_and_set_their_own_timeout_and_memory(
        transformed: dict[str, Path], stage: str) -> None:
    """A scheduled run that failed or timed out has left its work for the next tick (due, or a
    cursor where it stopped): Lambda's two async retries would only overlap that tick. Each
    scheduled function's timeout and memory are its own (a run works to the time it has)."""
    template = cloudformation(transformed, stage)
    targets = [target for rule in resources_of(template, "AWS::Events::Rule").values()
               for target in rule["Properties"]["Targets"]]
    scheduled = {target["Arn"]["Fn::GetAtt"][0] for target in targets}
    assert len(scheduled) == 9, scheduled
    invoke = {c["Properties"]["FunctionName"]["Ref"]: c["Properties"] for c in
              resources_of(template, "AWS::Lambda::EventInvokeConfig").values()}
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["lambda_functions"]
    for function in scheduled:
        assert invoke[function]["MaximumRetryAttempts"] == 0, function
        handler = template["Resources"][function]["Properties"]["Handler"].removeprefix("app.")
        assert {"lambda_timeout", "lambda_memory_size"} <= set(config[handler]), handler
