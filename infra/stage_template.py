"""Finish the template `chalice package` wrote for a stage (run by `make package`).

    python infra/stage_template.py build/<stage>/sam.yaml <stage>

1. Pin the template to its Chalice stage: the `Stage` parameter's default becomes the stage and
   it allows no other value. The Chalice stage decides the functions' APP_STAGE; the parameter
   decides every physical name (tables, queues, SSM paths in the policies). A prod package
   deployed with a forgotten or wrong `Stage` override would otherwise run prod code on dev
   names; pinned, CloudFormation refuses any other value before it changes anything.
2. Let the app answer a wrong method: API Gateway answers a method no route declares itself,
   before Lambda, as it does an unknown path (403 "Missing Authentication Token"). Each path
   gets an ANY method on the same Lambda integration, so the app answers 405
   `method_not_allowed` with `Allow`, as it does locally (chalicelib.api.chalice_errors);
   only a path no route serves is the gateway's (404 `route_not_found`, a gateway response in
   infra/resources.yaml).

The local stage is not packaged: it runs only on this machine (make run).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

ANY_METHOD = "x-amazon-apigateway-any-method"
INTEGRATION = "x-amazon-apigateway-integration"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
DEPLOYABLE = ("dev", "prod")


def pin_stage(template: dict[str, Any], stage: str) -> None:
    parameter = template["Parameters"]["Stage"]
    if stage not in parameter.get("AllowedValues", [stage]):
        raise ValueError(f"infra/resources.yaml does not allow the stage {stage!r}")
    parameter["Default"] = stage
    parameter["AllowedValues"] = [stage]
    parameter["Description"] = (f"Pinned to the Chalice stage this template was packaged for "
                                f"({stage}); it prefixes every physical name.")


def answer_every_method(template: dict[str, Any]) -> None:
    """An ANY method, on the path's own Lambda integration, beside each path's routes."""
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    for path, item in body["paths"].items():
        declared = [item[m] for m in HTTP_METHODS if m in item]
        if not declared or ANY_METHOD in item:
            continue
        integration = copy.deepcopy(declared[0][INTEGRATION])
        if integration.get("type") != "aws_proxy":
            raise ValueError(f"{path}: not a Lambda proxy integration")
        item[ANY_METHOD] = {
            "produces": ["application/json"],
            "responses": {"405": {"description": "405 response"}},
            INTEGRATION: integration,
        }


def finish(path: Path, stage: str) -> None:
    if stage not in DEPLOYABLE:
        raise SystemExit(f"stage {stage!r} is not deployed (deployable: {', '.join(DEPLOYABLE)})")
    template = yaml.safe_load(path.read_text(encoding="utf-8"))
    variables = {f["Properties"].get("Environment", {}).get("Variables", {}).get("APP_STAGE")
                 for f in template["Resources"].values()
                 if f["Type"] == "AWS::Serverless::Function"}
    if variables != {stage}:
        raise SystemExit(f"{path}: functions packaged for {sorted(map(str, variables))}, "
                         f"not {stage}")
    pin_stage(template, stage)
    answer_every_method(template)
    path.write_text(yaml.safe_dump(template, sort_keys=False, width=100), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    finish(Path(sys.argv[1]), sys.argv[2])
