"""The house rules of chalicelib/, checked on the source (every import, lazy ones included):

  core/           AWS clients, settings, errors, time, HTTP, DynamoDB helpers, Parameter Store
                  reads: imports only core
  access/ cs/ orders/ warehouse/ tracking/ marketplaces/ reports/
                  the business capabilities: rules (pure) and stores; import core and each
                  other, never in a circle, never a flow or an edge
  flows/          the I/O steps of the pipeline: import core, capabilities and other flows
  api/ admin/ console/
                  the edges (HTTP APIs, command line, the CS console's pages): import
                  anything below them

Inside a capability only a store (`*_store.py`) or the alert topic (`*_topic.py`) talks to
AWS (core/parameters.py, which reads SSM through the Lambda extension, counts as AWS), and no
rule imports a store. Outbound HTTP has one sender: only core/http.py imports `requests`; the
one local call, to the Parameters and Secrets extension, is core/parameters.py's. Nothing in
chalicelib/ imports the local stack (devstack/), the partner client, the benchmarks or the tests,
so none of it is needed in Lambda."""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "chalicelib"
CORE = "core"
CAPABILITIES = frozenset({"access", "cs", "orders", "warehouse", "tracking", "marketplaces",
                          "reports"})
FLOWS = "flows"
EDGES = frozenset({"api", "admin", "console"})
RANK = {CORE: 0, **dict.fromkeys(CAPABILITIES, 1), FLOWS: 2, **dict.fromkeys(EDGES, 3)}
AWS_MODULES = ("boto3", "botocore", "chalicelib.core.aws", "chalicelib.core.dynamodb",
               "chalicelib.core.parameters")
OUTSIDE = ("devstack", "partner_client", "bench", "tests", "app")


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_name(path): path for path in PACKAGE.rglob("*.py")}


@cache
def _imports() -> dict[str, frozenset[str]]:
    """Module -> every dotted name it imports (for `from a import b`: a, and a.b)."""
    found: dict[str, frozenset[str]] = {}
    for module, path in _modules().items():
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: relative import"
                base = node.module or ""
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)
        found[module] = frozenset(names)
    return found


def _ours(name: str) -> str | None:
    """The chalicelib module a dotted name resolves to (a name inside a module: the module)."""
    while name and name not in _modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def _graph() -> dict[str, frozenset[str]]:
    graph: dict[str, frozenset[str]] = {}
    for module, names in _imports().items():
        targets = {_ours(name) for name in names}
        graph[module] = frozenset(t for t in targets
                                  if t and t != module and not module.startswith(t + "."))
    return graph


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_top_level_holds_packages_only() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    areas = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert areas == set(RANK), "a new top-level package needs its place in the layers"


def test_no_module_imports_in_a_circle() -> None:
    assert _cycles(_graph()) == []


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = sorted(f"{module} -> {target}" for module, targets in _graph().items()
                    for target in targets
                    if _area(module) and RANK[_area(target)] > RANK[_area(module)])
    assert upward == []


def test_the_capabilities_depend_on_each_other_in_one_direction() -> None:
    between: dict[str, frozenset[str]] = defaultdict(frozenset)
    for module, targets in _graph().items():
        if _area(module) in CAPABILITIES:
            between[_area(module)] |= {_area(t) for t in targets
                                       if _area(t) in CAPABILITIES and _area(t) != _area(module)}
    assert _cycles(dict(between)) == []


def test_inside_a_capability_only_stores_talk_to_aws_and_no_rule_imports_a_store() -> None:
    wrong = []
    for module, names in _imports().items():
        if _area(module) not in CAPABILITIES:
            continue
        leaf = module.rpartition(".")[2]
        if leaf.endswith(("_store", "_topic")):
            continue
        wrong += [f"{module} -> {name}" for name in names if name.startswith(AWS_MODULES)]
        wrong += [f"{module} -> {target}" for target in _graph()[module]
                  if target.rpartition(".")[2].endswith(("_store", "_topic"))]
    assert sorted(wrong) == []


def test_one_module_sends_http() -> None:
    senders = sorted(module for module, names in _imports().items()
                     if any(name.split(".")[0] in ("requests", "urllib3") for name in names))
    assert senders == ["chalicelib.core.http"]


def test_one_module_calls_the_parameters_extension() -> None:
    callers = sorted(module for module, names in _imports().items()
                     if any(name.startswith(("http.client", "urllib.request"))
                            for name in names))
    assert callers == ["chalicelib.core.parameters"]


def test_nothing_the_lambda_package_ships_imports_the_local_stack_or_the_tools() -> None:
    wrong = sorted(f"{module} -> {name}" for module, names in _imports().items()
                   for name in names if name.split(".")[0] in OUTSIDE)
    assert wrong == []


def test_the_checks_see_what_they_check() -> None:
    """A guard against a check that passes because it reads nothing."""
    graph = _graph()
    assert len(graph) > 60
    assert "chalicelib.orders.order" in graph["chalicelib.flows.order_worker"]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset({"a"}), "c": frozenset()}) == [["a", "b"]]
