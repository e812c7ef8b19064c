"""Create the resources declared in infra/resources.yaml on the local AWS endpoint.

moto does not apply CloudFormation templates fully, so each table, queue and topic of the one
template is created with the matching boto3 calls, in the order its references require. The
environment the Lambda functions get from `Globals` is resolved the same way, so the local
processes see what the cloud ones would. Resource types Lambda and API Gateway handle (functions,
APIs, roles, log groups) are skipped: locally the app's own processes stand in for them; so are
CloudWatch's (alarms, dashboards: nothing watches the local stack), and any resource that needs a
parameter only a deploy gives (one without a default: the operators' alarm e-mail subscription).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import boto3
import yaml

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "resources.yaml"

Attrs = dict[str, str]
"""What a created resource answers to: "Ref" and its Fn::GetAtt attribute names."""

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


# --- Template loading ---------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's short tags; a subclass so the global loader is untouched."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _short_tag)


def load_template(path: Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """The template with short tags (!Ref, !GetAtt, !Sub...) in their long forms."""
    with path.open(encoding="utf-8") as stream:
        template = yaml.load(stream, Loader=_TemplateLoader)  # a SafeLoader: no object tags
    if not isinstance(template, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return template


# --- Intrinsic functions ------------------------------------------------------------------------


def _sub_parts(argument: Any) -> tuple[str, dict[str, Any]]:
    """Fn::Sub's text and its own variables, from either of its two forms."""
    if isinstance(argument, str):
        return argument, {}
    text, variables = argument
    return str(text), dict(variables)


def references(value: Any) -> set[str]:
    """Every logical ID or parameter that `value` refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    if isinstance(value, list):
        return set().union(*(references(item) for item in value))
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for key, argument in value.items():
        if key == "Ref":
            found.add(str(argument))
        elif key == "Fn::GetAtt":
            found.add(str(argument[0] if isinstance(argument, list) else argument.split(".")[0]))
        elif key == "Fn::Sub":
            text, variables = _sub_parts(argument)
            names = (name for name in _SUB_VARIABLE.findall(text) if not name.startswith("!"))
            found |= {name.split(".")[0] for name in names if name not in variables}
            found |= references(variables)
        else:
            found |= references(argument)
    return found


@dataclass
class _Context:
    """What references resolve against: parameters and the resources created so far."""

    parameters: dict[str, str]
    created: dict[str, Attrs] = field(default_factory=dict)

    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        return self.get_att(name, "Ref")

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.created[logical_id][attribute]
        except KeyError:
            raise ValueError(
                f"cannot resolve {logical_id}.{attribute}: not a parameter or an attribute of a "
                "resource created locally"
            ) from None


def _fn_get_att(argument: Any, context: _Context) -> str:
    logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
    return context.get_att(str(logical_id), str(resolve(attribute, context)))


def _fn_sub(argument: Any, context: _Context) -> str:
    text, variables = _sub_parts(argument)
    own = {name: str(value) for name, value in resolve(variables, context).items()}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):  # ${!Literal} stands for the text ${Literal}
            return "${" + name[1:] + "}"
        if name in own:
            return own[name]
        if "." in name:
            return context.get_att(*name.split(".", 1))
        return context.ref(name)

    return _SUB_VARIABLE.sub(substitute, text)


def _fn_join(argument: Any, context: _Context) -> str:
    delimiter, items = argument
    return str(delimiter).join(str(item) for item in resolve(items, context))


def _fn_select(argument: Any, context: _Context) -> Any:
    index, items = argument
    return resolve(items, context)[int(resolve(index, context))]


_FUNCTIONS: dict[str, Callable[[Any, _Context], Any]] = {
    "Ref": lambda argument, context: context.ref(str(argument)),
    "Fn::GetAtt": _fn_get_att,
    "Fn::Sub": _fn_sub,
    "Fn::Join": _fn_join,
    "Fn::Select": _fn_select,
}


def resolve(value: Any, context: _Context) -> Any:
    """`value` with every intrinsic function replaced by its value."""
    if isinstance(value, list):
        return [resolve(item, context) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, argument),) = value.items()
        if key in _FUNCTIONS:
            return _FUNCTIONS[key](argument, context)
    return {key: resolve(item, context) for key, item in value.items()}


# --- Resource creation --------------------------------------------------------------------------


@dataclass
class _Aws:
    """One client per service, all from the session (its endpoint comes from AWS_ENDPOINT_URL)."""

    session: boto3.session.Session
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.session.client(service)
        return self.clients[service]


def _attribute_text(value: Any) -> str:
    """SQS and SNS attributes are strings: JSON for documents, lower-case booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _attributes(properties: dict[str, Any], exclude: Iterable[str]) -> dict[str, str]:
    """CloudFormation properties that the API takes, under the same names, as attributes."""
    skipped = set(exclude)
    return {k: _attribute_text(v) for k, v in properties.items() if k not in skipped}


def _physical_name(properties: dict[str, Any], key: str) -> str:
    # The IAM policy files grant by name prefix, so every resource must name itself.
    if key not in properties:
        raise ValueError(f"resource needs an explicit {key} (the IAM policies match on it)")
    return str(properties[key])


_TABLE_ARGUMENTS = (
    "AttributeDefinitions", "KeySchema", "BillingMode", "LocalSecondaryIndexes",
    "ProvisionedThroughput", "TableClass", "DeletionProtectionEnabled",
)
_INDEX_ARGUMENTS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


def _create_table_arguments(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    """CreateTable's arguments; streams and SSE are spelled differently than in the template."""
    arguments = {k: properties[k] for k in _TABLE_ARGUMENTS if k in properties}
    arguments["TableName"] = name
    if "GlobalSecondaryIndexes" in properties:
        arguments["GlobalSecondaryIndexes"] = [
            {k: index[k] for k in _INDEX_ARGUMENTS if k in index}
            for index in properties["GlobalSecondaryIndexes"]
        ]
    if "StreamSpecification" in properties:
        arguments["StreamSpecification"] = {"StreamEnabled": True,
                                            **properties["StreamSpecification"]}
    if "SSESpecification" in properties:
        sse = dict(properties["SSESpecification"])
        arguments["SSESpecification"] = {"Enabled": sse.pop("SSEEnabled", False), **sse}
    return arguments


def _ensure_ttl(dynamodb: Any, name: str, spec: dict[str, Any] | None) -> None:
    # UpdateTimeToLive fails when TTL is already on, so ask first.
    if not spec or not spec.get("Enabled"):
        return
    current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "AttributeName": spec["AttributeName"], "Enabled": True})


def _table(aws: _Aws, properties: dict[str, Any]) -> Attrs:
    dynamodb = aws.client("dynamodb")
    name = _physical_name(properties, "TableName")
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        table = dynamodb.create_table(**_create_table_arguments(name, properties))
        table = table["TableDescription"]
        dynamodb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    _ensure_ttl(dynamodb, name, properties.get("TimeToLiveSpecification"))
    if "PointInTimeRecoverySpecification" in properties:
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification=properties["PointInTimeRecoverySpecification"])
    attrs = {"Ref": name, "Arn": str(table["TableArn"])}
    if "LatestStreamArn" in table:
        attrs["StreamArn"] = str(table["LatestStreamArn"])
    return attrs


def _queue(aws: _Aws, properties: dict[str, Any]) -> Attrs:
    sqs = aws.client("sqs")
    name = _physical_name(properties, "QueueName")
    attributes = _attributes(properties, exclude=("QueueName", "Tags"))
    try:
        url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
        # Converge an existing queue; FifoQueue cannot change after creation.
        attributes.pop("FifoQueue", None)
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    except sqs.exceptions.QueueDoesNotExist:
        url = str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return {"Ref": url, "QueueUrl": url, "QueueName": name,
            "Arn": str(answer["Attributes"]["QueueArn"])}


def _topic(aws: _Aws, properties: dict[str, Any]) -> Attrs:
    sns = aws.client("sns")
    name = _physical_name(properties, "TopicName")
    if "Subscription" in properties:
        raise ValueError(f"topic {name}: declare AWS::SNS::Subscription resources instead")
    # CreateTopic returns the existing topic for a name; attributes are set apart so that a
    # second run converges instead of failing on "different attributes".
    arn = str(sns.create_topic(Name=name)["TopicArn"])
    for key, text in _attributes(properties, exclude=("TopicName", "Tags")).items():
        sns.set_topic_attributes(TopicArn=arn, AttributeName=key, AttributeValue=text)
    return {"Ref": arn, "TopicArn": arn, "TopicName": name}


def _existing_subscription(sns: Any, topic: str, protocol: str, endpoint: str) -> str | None:
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
        for subscription in page["Subscriptions"]:
            if (subscription["Protocol"], subscription["Endpoint"]) == (protocol, endpoint):
                return str(subscription["SubscriptionArn"])
    return None


def _subscription(aws: _Aws, properties: dict[str, Any]) -> Attrs:
    sns = aws.client("sns")
    topic, protocol = str(properties["TopicArn"]), str(properties["Protocol"])
    endpoint = str(properties.get("Endpoint", ""))
    attributes = _attributes(properties, exclude=("TopicArn", "Protocol", "Endpoint", "Region"))
    arn = _existing_subscription(sns, topic, protocol, endpoint)
    if arn is None:
        arn = str(sns.subscribe(TopicArn=topic, Protocol=protocol, Endpoint=endpoint,
                                Attributes=attributes, ReturnSubscriptionArn=True)
                  ["SubscriptionArn"])
    else:
        for key, text in attributes.items():
            sns.set_subscription_attributes(
                SubscriptionArn=arn, AttributeName=key, AttributeValue=text)
    return {"Ref": arn}


def _queue_policy(aws: _Aws, properties: dict[str, Any]) -> Attrs:
    # moto does not enforce queue policies (SNS delivers regardless); set anyway for parity.
    sqs = aws.client("sqs")
    policy = json.dumps(properties["PolicyDocument"])
    for url in properties["Queues"]:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
    return {"Ref": ",".join(properties["Queues"])}


_CREATORS: dict[str, Callable[[_Aws, dict[str, Any]], Attrs]] = {
    "AWS::DynamoDB::Table": _table,
    "AWS::SQS::Queue": _queue,
    "AWS::SNS::Topic": _topic,
    "AWS::SNS::Subscription": _subscription,
    "AWS::SQS::QueuePolicy": _queue_policy,
}


# --- Provisioning -------------------------------------------------------------------------------


def _creation_order(resources: dict[str, Any]) -> list[str]:
    """Logical IDs such that each resource comes after those it refers to (a DLQ before its
    source queue, a topic and queue before the subscription)."""
    graph: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        depends_on = resource.get("DependsOn", [])
        depends_on = [depends_on] if isinstance(depends_on, str) else depends_on
        graph[logical_id] = (references(resource.get("Properties", {})) | set(depends_on)) & set(
            resources)
    return list(TopologicalSorter(graph).static_order())


def _parameters(aws: _Aws, stage: str, template: dict[str, Any]) -> dict[str, str]:
    """Template parameter defaults, the stage, and the pseudo parameters of this endpoint."""
    region = aws.session.region_name
    if not region:
        raise ValueError("the session has no region (set AWS_DEFAULT_REGION)")
    defaults = {name: str(spec["Default"])
                for name, spec in template.get("Parameters", {}).items() if "Default" in spec}
    account = str(aws.client("sts").get_caller_identity()["Account"])
    return {**defaults, "Stage": stage, "AWS::Region": str(region), "AWS::AccountId": account,
            "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def _environment(template: dict[str, Any], context: _Context) -> dict[str, str]:
    variables = (template.get("Globals", {}).get("Function", {}).get("Environment", {})
                 .get("Variables", {}))
    environment = resolve(variables, context)
    unresolved = [name for name, value in environment.items() if not isinstance(value, str)]
    if unresolved:
        raise ValueError(f"Globals variables did not resolve to text: {unresolved}")
    return {str(name): value for name, value in environment.items()}


def created_locally(template: dict[str, Any]) -> dict[str, Any]:
    """The resources provision() creates: those of a type it creates, unless they need a
    parameter with no default (a value only a deploy gives)."""
    undefined = {name for name, spec in template.get("Parameters", {}).items()
                 if "Default" not in spec}
    return {logical_id: resource for logical_id, resource in template["Resources"].items()
            if resource.get("Type") in _CREATORS
            and not references(resource.get("Properties", {})) & undefined}


def provision(
    session: boto3.session.Session, stage: str = "local", template: dict[str, Any] | None = None,
    parameters: dict[str, str] | None = None,
) -> dict[str, str]:
    """Create (or converge) the template's tables, queues and topics on the session's endpoint
    and return the functions' environment from Globals. Safe to run again. `parameters`
    overrides template parameters as a deploy's --parameter-overrides does (ConsoleUrl)."""
    template = load_template() if template is None else template
    aws = _Aws(session)
    context = _Context({**_parameters(aws, stage, template), **(parameters or {})})
    resources = created_locally(template)
    for logical_id in _creation_order(resources):
        resource = resources[logical_id]
        properties = resolve(resource.get("Properties", {}), context)
        context.created[logical_id] = _CREATORS[resource["Type"]](aws, properties)
    return _environment(template, context)
