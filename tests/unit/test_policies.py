"""Least privilege, checked against the code: each Lambda function's IAM policy allows exactly
what the function can do, no more.

What a function needs is derived, not listed: the AWS operations its code can reach
(tests/aws_reach.py: a static scan from its handler in app.py, which says why a scan and not a
recording), each on the resources its arguments name, plus what the platform does with the
function's role (its event source mappings read their queue or stream and send to the on-failure
queue, Lambda writes its logs, X-Ray its traces). The policy files (.chalice/policies/<function>
.json, named per function in .chalice/config.json) are written with the template's intrinsic
functions; here they are resolved for each stage as CloudFormation would, and evaluated the way
IAM does for the cases they use (action and resource wildcards, StringEquals/StringLike
conditions, ForAnyValue:), then:

- every operation the function can reach is allowed, on the resources it names;
- nothing else is: for every action any policy or any function uses, and every resource of the
  template, of both stages and of every SSM path any of them names, a policy allows only what
  its function needs;
- a KMS decryption is allowed only through SSM in this region and only for the parameters the
  function reads with decryption (the condition actually matches: a StringEquals with a
  wildcard never does).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from devstack.provision import _Context, load_template, references, resolve
from tests import aws_reach

ROOT = Path(__file__).resolve().parents[2]
CONFIG: dict[str, Any] = json.loads((ROOT / ".chalice" / "config.json").read_text())
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
VARIABLES: dict[str, Any] = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
STAGES = ("dev", "prod")
REGION, ACCOUNT = "eu-west-1", "123456789012"
SSM_PREFIX = "/order-backbone/${Stage}"


# --- Resources, named once for both sides ---------------------------------------------------


def _of_type(kind: str) -> dict[str, Any]:
    return {lid: r for lid, r in RESOURCES.items() if r["Type"] == kind}


@cache
def context(stage: str) -> _Context:
    """What the template's intrinsic functions resolve to in a stack of `stage`."""
    parameters = {"Stage": stage, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                  "ConsoleUrl": "https://ops.brand.cn"}
    found = _Context(parameters)
    names = ("TableName", "QueueName", "TopicName", "LogGroupName")
    for lid, resource in RESOURCES.items():
        props = {k: resolve(v, found) for k, v in resource.get("Properties", {}).items()
                 if k in names}
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{props['TableName']}"
            found.created[lid] = {"Ref": props["TableName"], "Arn": arn,
                                  "StreamArn": f"{arn}/stream/2024-01-01T00:00:00.000"}
        elif kind == "AWS::SQS::Queue":
            name = props["QueueName"]
            found.created[lid] = {"Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
                                  "QueueName": name,
                                  "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"}
        elif kind == "AWS::SNS::Topic":
            arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{props['TopicName']}"
            found.created[lid] = {"Ref": arn, "TopicArn": arn, "TopicName": props["TopicName"]}
        elif kind == "AWS::Logs::LogGroup":
            name = props["LogGroupName"]
            found.created[lid] = {"Ref": name,
                                  "Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"}
    return found


@cache
def environment(stage: str) -> dict[str, str]:
    """The functions' environment in a stack of `stage` (Globals, and Chalice's APP_STAGE)."""
    return {**resolve(VARIABLES, context(stage)), "APP_STAGE": stage}


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def logical(name: str, stage: str) -> str:
    """`table:<TableLogicalId>`, `index:<Table>/<name>`, `stream:<Table>`, `queue:<Queue>`,
    `topic:<Topic>`, `logs:<LogGroup>` or an SSM path with ${Stage}: a resource's ARN."""
    kind, _, rest = name.partition(":")
    created = context(stage).created
    if kind == "table":
        return str(created[rest]["Arn"])
    if kind == "index":
        table, _, index = rest.partition("/")
        return f"{created[table]['Arn']}/index/{index}"
    if kind == "stream":
        return str(created[rest]["StreamArn"])
    if kind in ("queue", "topic"):
        return str(created[rest]["Arn"] if kind == "queue" else created[rest]["Ref"])
    if kind == "logs":
        return str(created[rest]["Arn"])  # the group's ARN, `:*`: its streams
    assert name.startswith("/"), name
    return _arn("ssm", "parameter" + name.replace("${Stage}", stage))


# --- What each function needs -----------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    action: str
    resource: str  # an ARN; `*` where any value may come
    context: tuple[tuple[str, str], ...] = ()


def _resolved(values: Iterable[str], stage: str) -> set[str]:
    """Patterns from the scan with ${ENV:...} replaced by the stage's values."""
    env = environment(stage)
    found = set()
    for text in values:
        for name, value in env.items():
            text = text.replace("${ENV:" + name + "}", value)
        found.add(text if "${ENV:" not in text else "*")
    return found


def _table_arns(names: Iterable[str], stage: str) -> set[str]:
    return {_arn("dynamodb", f"table/{name}") for name in _resolved(names, stage)}


def _ssm_arns(names: Iterable[str], stage: str) -> set[str]:
    return {_arn("ssm", "parameter" + name.rstrip("/")) for name in _resolved(names, stage)}


def _decrypt(parameter_arn: str) -> Need:
    return Need("kms:Decrypt", _arn("kms", "key/*"),
                (("kms:EncryptionContext:PARAMETER_ARN", parameter_arn),
                 ("kms:ViaService", f"ssm.{REGION}.amazonaws.com")))


def code_needs(operation: aws_reach.Operation, stage: str) -> set[Need]:
    """What IAM evaluates one reachable call as."""
    action = f"{operation.service}:{operation.name}"
    texts = aws_reach.texts
    if operation.service == "dynamodb":
        if operation.name in ("TransactWriteItems", "TransactGetItems"):
            return set()  # evaluated as each item's own action (Action(...) items)
        if operation.name in ("BatchGetItem", "BatchWriteItem"):
            tables = {key for value in operation.argument("RequestItems")
                      for key in (dict(value.items) if isinstance(value, aws_reach.Mapping)
                                  else {"*": None})}
            return {Need(action, arn) for arn in _table_arns(tables, stage)}
        arns = _table_arns(texts(operation.argument("TableName")), stage)
        if operation.argument("IndexName"):
            indexes = texts(operation.argument("IndexName"))
            return {Need(action, f"{arn}/index/{index}") for arn in arns for index in indexes}
        return {Need(action, arn) for arn in arns}
    if operation.service == "sns":
        return {Need(action, topic) for topic in _resolved(
            texts(operation.argument("TopicArn") or {aws_reach.UNKNOWN}), stage)}
    if operation.service == "ssm":
        names = texts(operation.argument("Name") | operation.argument("Path")) \
            if operation.name != "GetParameters" else {
                text for value in operation.argument("Names")
                for item in (value.items if isinstance(value, aws_reach.Sequence_) else [{
                    aws_reach.UNKNOWN}]) for text in texts(item)}
        arns = _ssm_arns(names, stage)
        found = {Need(action, arn) for arn in arns}
        if aws_reach.Const(True) in operation.argument("WithDecryption"):
            found |= {_decrypt(arn) for arn in arns}
        return found
    if operation.service == "dynamodbstreams":  # IAM names stream reads dynamodb:...
        if operation.name == "GetRecords":  # its iterator names the stream: one of ours, as
            # the GetShardIterator that made it (checked on its own) names it
            return {Need("dynamodb:GetRecords", str(context(stage).created[lid]["StreamArn"]))
                    for lid, table in _of_type("AWS::DynamoDB::Table").items()
                    if "StreamSpecification" in table["Properties"]}
        return {Need(f"dynamodb:{operation.name}", arn) for arn in _resolved(
            texts(operation.argument("StreamArn") or {aws_reach.UNKNOWN}), stage)}
    if operation.service == "ses":
        # The sender's identity and any configuration set are the channel's settings (data).
        return {Need(action, _arn("ses", "identity/*")),
                Need(action, _arn("ses", "configuration-set/*"))}
    return {Need(action, "*")}


def _function_resource(handler: str) -> dict[str, Any]:
    from chalice.utils import to_cfn_resource_name

    lid = "APIHandler" if handler == "api_handler" else to_cfn_resource_name(handler)
    resource: dict[str, Any] = RESOURCES.get(lid, {"Properties": {}})
    return resource


def platform_needs(handler: str, stage: str) -> set[Need]:
    """What Lambda does with the function's role: logs, traces, its event source mappings."""
    created = context(stage).created
    log_group = references(TEMPLATE["Globals"]["Function"]["LoggingConfig"])
    found = {Need(f"logs:{action}", logical(f"logs:{group}", stage))
             for group in log_group for action in ("CreateLogStream", "PutLogEvents")}
    if CONFIG.get("xray"):
        found |= {Need("xray:PutTraceSegments", "*"), Need("xray:PutTelemetryRecords", "*")}
    for event in _function_resource(handler)["Properties"].get("Events", {}).values():
        props = event["Properties"]
        if event["Type"] == "SQS":
            (queue,) = references(props["Queue"])
            found |= {Need(f"sqs:{a}", str(created[queue]["Arn"]))
                      for a in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")}
        elif event["Type"] == "DynamoDB":
            (table,) = references(props["Stream"])
            found |= {Need(f"dynamodb:{a}", str(created[table]["StreamArn"]))
                      for a in ("DescribeStream", "GetRecords", "GetShardIterator",
                                "ListStreams")}
        failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if failure is not None:
            (queue,) = references(failure)
            found.add(Need("sqs:SendMessage", str(created[queue]["Arn"])))
    return found


@cache
def required(handler: str, stage: str) -> frozenset[Need]:
    found = platform_needs(handler, stage)
    for operation in aws_reach.operations(handler):
        found |= code_needs(operation, stage)
    return frozenset(found)


def permitted(handler: str, stage: str) -> frozenset[Need]:
    return required(handler, stage)


# --- The policies, evaluated --------------------------------------------------------------------


def handlers() -> list[str]:
    return aws_reach.handler_names()


def policy_file(handler: str) -> Path:
    return ROOT / ".chalice" / CONFIG["lambda_functions"][handler]["iam_policy_file"]


@cache
def statements(handler: str, stage: str) -> tuple[dict[str, Any], ...]:
    document = json.loads(policy_file(handler).read_text())
    return tuple(resolve(document, context(stage))["Statement"])


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def _condition_holds(condition: dict[str, Any], request: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        quantifier, _, base = operator.rpartition(":")
        if quantifier not in ("", "ForAnyValue") or base not in ("StringEquals", "StringLike"):
            return False  # an operator this check does not know counts as never matching
        for key, expected in tests.items():
            if key not in request:
                return False
            value = request[key]
            if base == "StringEquals" and value not in _as_list(expected):
                return False
            if base == "StringLike" and not any(fnmatchcase(value, p)
                                                for p in _as_list(expected)):
                return False
    return True


def allows_by(policy: Iterable[dict[str, Any]], need: Need) -> bool:
    """IAM's answer for a role with these statements (a wildcard in `need` only matches a
    wildcard)."""
    request = dict(need.context)
    return any(
        s["Effect"] == "Allow"
        and any(fnmatchcase(need.action.lower(), a.lower()) for a in _as_list(s["Action"]))
        and any(fnmatchcase(need.resource, r) for r in _as_list(s["Resource"]))
        and _condition_holds(s.get("Condition", {}), request)
        for s in policy)


def allows(handler: str, stage: str, need: Need) -> bool:
    return allows_by(statements(handler, stage), need)


def covered(needs: Iterable[Need], probe: Need) -> bool:
    return any(n.action == probe.action and fnmatchcase(probe.resource, n.resource)
               and len(n.context) == len(probe.context)
               and all(k == pk and fnmatchcase(pv, v)
                       for (k, v), (pk, pv) in zip(n.context, probe.context, strict=True))
               for n in needs)


def _instance(pattern: str) -> str:
    return pattern.replace("*", "x")


@cache
def probes() -> frozenset[Need]:
    """Every action any function needs or any policy grants, on every resource of the template,
    of both stages, and every SSM parameter and path any of them names (wildcards filled in),
    decrypted or not."""
    actions: set[str] = set()
    resources: set[str] = set()
    contexts: set[tuple[tuple[str, str], ...]] = {()}
    for stage in STAGES:
        created = context(stage).created
        for attrs in created.values():
            resources |= {v for k, v in attrs.items() if v.startswith("arn:")}
        for lid, table in _of_type("AWS::DynamoDB::Table").items():
            resources |= {f"{created[lid]['Arn']}/index/{index['IndexName']}"
                          for index in table["Properties"].get("GlobalSecondaryIndexes", [])}
        for handler in handlers():
            for need in permitted(handler, stage):
                actions.add(need.action)
                resources.add(_instance(need.resource))
                if need.context:
                    contexts.add(tuple((k, _instance(v)) for k, v in need.context))
            for statement in statements(handler, stage):
                actions |= {a for a in _as_list(statement["Action"]) if "*" not in a}
                resources |= {_instance(r) for r in _as_list(statement["Resource"])}
    for parameter in [r for r in resources if ":ssm:" in r]:
        contexts.add((("kms:EncryptionContext:PARAMETER_ARN", parameter),
                       ("kms:ViaService", f"ssm.{REGION}.amazonaws.com")))
    found = set()
    for action in actions:
        if action == "kms:Decrypt":
            found |= {Need(action, _arn("kms", "key/x"), c) for c in contexts if c}
        else:
            found |= {Need(action, r) for r in resources | {"x"}}
    return frozenset(found)


# --- Tests --------------------------------------------------------------------------------------


def test_every_function_has_its_own_policy_file() -> None:
    assert len(handlers()) == 16
    assert set(CONFIG["lambda_functions"]) == set(handlers())
    files = [policy_file(h) for h in handlers()]
    assert len(set(files)) == len(files)
    assert all(f.exists() for f in files)
    # No stage names a policy of its own: it would win over the functions' (Chalice's lookup).
    for stage in CONFIG["stages"].values():
        assert "iam_policy_file" not in stage
        assert stage.get("autogen_policy") is False
        assert "lambda_functions" not in stage or all(
            "iam_policy_file" not in f for f in stage["lambda_functions"].values())


def test_the_scan_sees_every_aws_client() -> None:
    assert aws_reach.unseen_clients() == []


def test_the_scan_sees_what_it_checks() -> None:
    """A guard against a derivation that passes because it finds nothing."""
    api = {f"{o.service}:{o.name}" for o in aws_reach.operations("api_handler")}
    assert {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query", "sns:Publish"} <= api
    assert not any(a.startswith("ses:") for a in api)  # the internet-facing one sends no mail
    # ... and reads only the secrets of webhook sources and courier pushes, no shop's.
    api_reads = {n.resource for n in required("api_handler", "dev")
                 if n.action == "ssm:GetParameter"}
    assert api_reads == {_arn("ssm", "parameter/order-backbone/dev/secrets/sources/*"),
                         _arn("ssm", "parameter/order-backbone/dev/secrets/couriers/*")}
    worker = required("order_worker", "dev")
    assert Need("ssm:GetParameter",
                _arn("ssm", "parameter/order-backbone/dev/shops/*/*")) in worker
    notifier = {n.action for n in required("notify_cs", "dev")}
    assert "ses:SendEmail" in notifier
    register = {n.action for n in required("send_returns_register", "dev")}
    assert {"ses:SendRawEmail", "dynamodb:Query"} <= register  # the attachment needs raw MIME
    reports = {n.action for n in required("send_reports", "dev")}
    assert {"ses:SendRawEmail", "dynamodb:PutItem", "dynamodb:DeleteItem"} <= reports
    # Adapters loaded by name through their registries are scanned too.
    assert "chalicelib.marketplaces.shopify_admin" in aws_reach.scan_of("write_back").imported
    assert "chalicelib.cs.channels.email" in aws_reach.scan_of("notify_cs").imported
    assert "chalicelib.tracking.couriers.kuaidi100" in aws_reach.scan_of("track_parcels").imported
    assert not any(m.startswith("chalicelib.admin") for h in handlers()
                   for m in aws_reach.scan_of(h).imported)


def denied(policy: Iterable[dict[str, Any]], needs: Iterable[Need]) -> list[str]:
    """What the function can do and the policy does not allow."""
    policy = list(policy)
    return sorted(f"{n.action} {n.resource} {dict(n.context) or ''}" for n in needs
                  if not allows_by(policy, n))


def excess(policy: Iterable[dict[str, Any]], needs: frozenset[Need]) -> list[str]:
    """What the policy allows and the function does not do: an action nothing calls, or an
    action on a resource (or a decryption for a parameter) the function does not use."""
    policy = list(policy)
    granted = {a for s in policy for a in _as_list(s["Action"])}
    found = [f"{a} (nothing calls it)" for a in sorted(granted - {n.action for n in needs})]
    found += sorted(f"{p.action} {p.resource} {dict(p.context) or ''}" for p in probes()
                    if allows_by(policy, p) and not covered(needs, p))
    return found


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("handler", aws_reach.handler_names())
def test_the_policy_allows_everything_the_function_can_do(handler: str, stage: str) -> None:
    assert denied(statements(handler, stage), required(handler, stage)) == []


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("handler", aws_reach.handler_names())
def test_the_policy_allows_nothing_the_function_does_not_do(handler: str, stage: str) -> None:
    assert excess(statements(handler, stage), permitted(handler, stage)) == []


def test_secrets_are_read_only_by_their_readers() -> None:
    """The SSM paths and their readers, as the policies grant them (the brief of issue 13)."""
    readers: dict[str, set[str]] = {}
    for handler in handlers():
        for statement in statements(handler, "prod"):
            if "ssm:GetParameter" in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    path = resource.split(":parameter", 1)[1]
                    readers.setdefault(path, set()).add(handler)
    assert readers == {
        "/order-backbone/prod/shops/*/*": {"order_worker", "write_back", "reconcile_shops",
                                           "poll_taobao"},
        "/order-backbone/prod/secrets/sources/*": {"api_handler"},
        "/order-backbone/prod/secrets/couriers/*": {"api_handler", "track_parcels"},
        # <platform>/<name>: CS's channels, and the returns register's email channel
        "/order-backbone/prod/secrets/channels/*/*": {"notify_cs", "send_returns_register",
                                                      "send_reports"},
    }


def test_shop_tokens_are_written_only_by_the_functions_that_renew_them() -> None:
    """Renewed shop tokens go back to that shop's parameter (chalicelib/flows/shop_access.py):
    ssm:PutParameter on the shop parameters only, by the functions that call the shops, and the
    scan derives it (a policy that kept it without the code's need would fail the excess test)."""
    writers: dict[str, set[str]] = {}
    for handler in handlers():
        for statement in statements(handler, "prod"):
            if "ssm:PutParameter" in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    path = resource.split(":parameter", 1)[1]
                    writers.setdefault(path, set()).add(handler)
    assert writers == {
        "/order-backbone/prod/shops/*/*": {"order_worker", "write_back", "reconcile_shops"},
        "/order-backbone/prod/shops/taobao/*": {"poll_taobao"},  # it calls Taobao only
    }
    shops = _arn("ssm", "parameter/order-backbone/dev/shops/*/*")
    assert Need("ssm:PutParameter", shops) in required("write_back", "dev")
    assert not any(n.action == "ssm:PutParameter" for n in required("api_handler", "dev"))


def test_decryption_is_only_through_ssm_for_the_functions_own_parameters() -> None:
    shop = _arn("ssm", "parameter/order-backbone/prod/shops/amazon/shop-1")
    channel = _arn("ssm", "parameter/order-backbone/prod/secrets/channels/wecom/cs-team")
    assert allows("order_worker", "prod", _decrypt(shop))
    assert not allows("order_worker", "prod", _decrypt(channel))
    assert not allows("api_handler", "prod", _decrypt(shop))
    other_stage = _decrypt(_arn("ssm", "parameter/order-backbone/dev/shops/amazon/shop-1"))
    assert not allows("order_worker", "prod", other_stage)
    not_through_ssm = Need("kms:Decrypt", _arn("kms", "key/x"),
                           (("kms:EncryptionContext:PARAMETER_ARN", shop),
                            ("kms:ViaService", f"secretsmanager.{REGION}.amazonaws.com")))
    assert not allows("order_worker", "prod", not_through_ssm)


def test_the_check_bites() -> None:
    """The evaluation itself: a needed action taken away, or one more granted, is seen (the
    same was done to the policy files by hand: see the commit that added them)."""
    handler, stage = "inbox_dead_letters", "dev"
    policy = statements(handler, stage)
    needs = permitted(handler, stage)
    assert denied(policy, required(handler, stage)) == excess(policy, needs) == []
    without = [{**s, "Action": [a for a in _as_list(s["Action"]) if a != "sns:Publish"]}
               for s in policy]
    assert denied([s for s in without if s["Action"]], required(handler, stage)) == [
        f"sns:Publish {context(stage).created['AlertsTopic']['Ref']} "]
    queue = str(context(stage).created["AlertsQueue"]["Arn"])
    extra = {"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": queue}
    assert excess([*policy, extra], needs) == [f"sqs:ReceiveMessage {queue} "]
    unused = {"Effect": "Allow", "Action": "sqs:PurgeQueue", "Resource": queue}
    assert excess([*policy, unused], needs)[0] == "sqs:PurgeQueue (nothing calls it)"
