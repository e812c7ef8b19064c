"""Which AWS operations each Lambda function can reach, read from the source (no AWS, no run).

Why a static scan rather than recording the botocore calls a handler makes in its tests: a
recording sees only the paths the tests happen to take (a retry, a fallback, an error branch
missed by the tests would be denied in production, and the gap would not show here), and it
needs the local endpoint and seconds per handler. The scan sees every path and runs in
milliseconds. What it gives up is precision where Python is dynamic; how it stays on the safe
side of that is below.

From each handler in app.py (for `api_handler`: every route of the blueprints app.py registers,
and app.py's module code, which every function runs), it follows the code it can reach:

- calls to functions and methods of app.py and chalicelib/, with the values of their arguments
  (so `_query("open-by-type", ...)` reaches `IndexName=index` as "open-by-type", and a path
  built from a parameter is built from what each caller passes);
- the module code of every module imported on the way (lazy imports included, and a
  registry's `importlib.import_module(name)`: the modules the name can be, all of them when the
  scan cannot tell), so adapter registries, and what they hold, count;
- a function that escapes (passed to code outside chalicelib, put in a container, a class
  referenced, its methods) as called with unknown arguments.

It stops at `chalicelib.core.aws.client("<service>")`: the operations called on such a client
(or its paginators) are what the function needs, with the arguments that name resources
(TableName, IndexName, QueueUrl, TopicArn, Name, Names, Path, RequestItems, WithDecryption,
...) evaluated as patterns: literals, module constants, f-strings, `+`, `"/".join`, settings
fields read from the environment (`${ENV:<VARIABLE>}`), and `*` for what only the running code
knows. A DynamoDB transaction's items (`core.dynamodb.Action(label, {"Put": {...}})`) are each
the PutItem/UpdateItem/DeleteItem/ConditionCheckItem IAM evaluates them as.

On the safe side: a value the scan cannot follow is `*` (so the function "needs" more, and a
policy narrower than that fails the test rather than being trusted), except that a variable
with some values the scan can follow and others it cannot (a DynamoDB `UnprocessedKeys`
request after the first one) is taken at the values it can follow. An AWS client made any
other way than `aws.client` is refused (`unseen_clients`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "chalicelib"
AWS_MODULE = "chalicelib.core.aws"
DYNAMODB_MODULE = "chalicelib.core.dynamodb"
MAX_ALTERNATIVES = 24

# --- Values ---------------------------------------------------------------------------------


class _Unknown:
    def __repr__(self) -> str:
        return "?"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Str:
    """Text, `*` standing for any text the scan cannot know."""

    text: str


@dataclass(frozen=True)
class Const:
    value: object


@dataclass(frozen=True)
class Mapping:
    items: tuple[tuple[str, frozenset[Any]], ...]

    def get(self, key: str) -> frozenset[Any]:
        found = [values for k, values in self.items if key == "*" or k in (key, "*")]
        return frozenset().union(*found) if found else frozenset()


@dataclass(frozen=True)
class Sequence_:
    items: tuple[frozenset[Any], ...]


@dataclass(frozen=True)
class Client:
    service: str


@dataclass(frozen=True)
class Paginator:
    service: str
    operation: str


@dataclass(frozen=True)
class BoundOperation:
    service: str
    operation: str  # the client method's name (snake case)
    paginate: bool = False


@dataclass(frozen=True)
class ModuleRef:
    name: str


@dataclass(frozen=True)
class Environ:
    pass


@dataclass(frozen=True, eq=False)
class Function:
    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
    closure: Frame | None = None
    owner: ClassRef | None = None

    def __hash__(self) -> int:
        return hash((id(self.node), id(self.closure)))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Function) and other.node is self.node
                and other.closure is self.closure)


@dataclass(frozen=True, eq=False)
class ClassRef:
    module: str
    node: ast.ClassDef

    def __hash__(self) -> int:
        return id(self.node)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassRef) and other.node is self.node


@dataclass(frozen=True)
class Instance:
    cls: ClassRef


@dataclass(frozen=True)
class BoundMethod:
    function: Function
    receiver: Instance


@dataclass(frozen=True, eq=False)
class Element:
    """What a loop target is bound to: an element of `iterable` (at `path`, when unpacked)."""

    iterable: ast.AST
    path: tuple[int, ...]


@dataclass(frozen=True)
class Operation:
    """One AWS call the code can make: service, API operation name (IAM's), its arguments."""

    service: str
    name: str
    arguments: tuple[tuple[str, frozenset[Any]], ...]

    def argument(self, key: str) -> frozenset[Any]:
        return frozenset().union(*(v for k, v in self.arguments if k == key))


def texts(values: Iterable[Any]) -> set[str]:
    """The patterns a value set can take as text (`*` for what cannot be known). None is left
    out: a parameter that is None never reaches AWS (botocore refuses the call before sending;
    the code guards it, e.g. a name SSM cannot hold), so it needs no right."""
    known = [v for v in values if v is not UNKNOWN and v != Const(None)]
    if not known:
        return {"*"}
    found = set()
    for value in known:
        if isinstance(value, Str):
            found.add(value.text)
        elif isinstance(value, Const) and isinstance(value.value, int | float):
            found.add(str(value.value))
        else:
            found.add("*")
    return found


def _squash(text: str) -> str:
    while "**" in text:
        text = text.replace("**", "*")
    return text


def _concat(parts: list[frozenset[Any]]) -> frozenset[Any]:
    results = {""}
    for part in parts:
        results = {a + b for a in results for b in texts(part)}
        if len(results) > MAX_ALTERNATIVES:
            results = {"*"}
    return frozenset(Str(_squash(text)) for text in results)


def _cap(values: set[Any]) -> frozenset[Any]:
    if len(values) > MAX_ALTERNATIVES:
        return frozenset({UNKNOWN})
    return frozenset(values)


def _followed(values: frozenset[Any]) -> frozenset[Any]:
    """A variable's values without the ones the scan could not follow, if it has others."""
    known = frozenset(v for v in values if v is not UNKNOWN)
    return known or values


# --- Modules --------------------------------------------------------------------------------


@dataclass
class ModuleInfo:
    name: str
    tree: ast.Module
    symbols: dict[str, list[ast.AST]] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    package: bool = False  # an __init__.py


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, ModuleInfo]:
    paths = [ROOT / "app.py", *sorted((ROOT / PACKAGE).rglob("*.py"))]
    found = {}
    for path in paths:
        name = _module_name(path)
        info = ModuleInfo(name, ast.parse(path.read_text(encoding="utf-8"), str(path)),
                          package=path.name == "__init__.py")
        for node in info.tree.body:
            _declare(info, node)
        found[name] = info
    return found


def _declare(info: ModuleInfo, node: ast.stmt) -> None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        info.symbols.setdefault(node.name, []).append(node)
    elif isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and node.value is not None:
                info.symbols.setdefault(target.id, []).append(node.value)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                info.imports[alias.asname] = (alias.name, None)
            else:
                top = alias.name.split(".")[0]
                info.imports[top] = (top, None)
    elif isinstance(node, ast.ImportFrom):
        for alias in node.names:
            info.imports[alias.asname or alias.name] = (node.module or "", alias.name)
    elif isinstance(node, ast.If | ast.Try):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                _declare(info, child)
            for grandchild in getattr(child, "body", []):
                if isinstance(grandchild, ast.stmt):
                    _declare(info, grandchild)


def _import_target(module: str, name: str | None) -> tuple[str, str | None]:
    """(module, attribute) an import stands for: `from a import b` is module a.b if it is one."""
    if name is None:
        return module, None
    if f"{module}.{name}" in modules():
        return f"{module}.{name}", None
    return module, name


# --- Frames ---------------------------------------------------------------------------------


class Frame:
    """A function (or module) body being scanned, with what its parameters are bound to."""

    def __init__(self, module: str, node: ast.AST, bindings: dict[str, frozenset[Any]],
                 parent: Frame | None, owner: ClassRef | None = None) -> None:
        self.module = module
        self.node = node
        self.bindings = bindings
        self.parent = parent
        self.owner = owner
        self.assigned: dict[str, list[ast.AST | Element]] = {}
        self.unknown_names: set[str] = set()
        self.returns: list[ast.AST] = []
        for child in _own_nodes(node):
            self._note(child)

    def _note(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind(target, node.value)
        elif (isinstance(node, ast.AnnAssign) and node.value is not None) or isinstance(
                node, ast.NamedExpr):
            self._bind(node.target, node.value)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            self._bind(node.target, Element(node.iter, ()))
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            self._bind(node.optional_vars, None)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            self.unknown_names.add(node.name)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            self.unknown_names.add(node.target.id)
        elif isinstance(node, ast.Return) and node.value is not None:
            self.returns.append(node.value)
        elif isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef
                        | ast.AsyncFunctionDef) and not isinstance(self.node, ast.Module):
            pass  # handled by lookup (local imports and defs)

    def _bind(self, target: ast.AST, value: ast.AST | Element | None) -> None:
        if isinstance(target, ast.Name):
            if value is None:
                self.unknown_names.add(target.id)
            else:
                self.assigned.setdefault(target.id, []).append(value)
        elif isinstance(target, ast.Tuple | ast.List):
            for index, element in enumerate(target.elts):
                self._bind(element, Element(value.iterable, (*value.path, index))
                           if isinstance(value, Element) else None)
        elif isinstance(target, ast.Starred):
            self._bind(target.value, None)


def _own_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node of a body, not descending into nested functions, lambdas or classes."""
    if isinstance(node, ast.Lambda):
        roots: list[ast.AST] = [node.body]
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module | ast.ClassDef):
        roots = list(node.body)
    else:
        roots = [node]
    stack = roots
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stack.extend(current.decorator_list)  # the definition runs these, not its body
            if isinstance(current, ast.ClassDef):
                stack.extend(current.bases)
            else:
                stack.extend(_defaults(current.args))
        elif isinstance(current, ast.Lambda):
            stack.extend(_defaults(current.args))
        else:
            stack.extend(ast.iter_child_nodes(current))


def _defaults(arguments: ast.arguments) -> list[ast.AST]:
    return [*arguments.defaults, *(d for d in arguments.kw_defaults if d is not None)]


# --- The scan -------------------------------------------------------------------------------


class Scan:
    """Everything one Lambda function can reach from its roots."""

    def __init__(self) -> None:
        self.operations: set[Operation] = set()
        self.imported: set[str] = set()
        self.done: dict[tuple[int, int, frozenset[tuple[str, frozenset[Any]]]],
                        frozenset[Any]] = {}
        self.running: set[tuple[int, int, frozenset[tuple[str, frozenset[Any]]]]] = set()
        self.escaped: set[Function] = set()
        self.classes: set[ClassRef] = set()
        self._values: dict[tuple[int, int], frozenset[Any]] = {}
        self._module_frames: dict[str, Frame] = {}
        self._caller = ""  # the module of the call being evaluated

    # Roots ---------------------------------------------------------------------------------

    def import_module(self, name: str) -> None:
        if name in self.imported or name not in modules():
            return
        self.imported.add(name)
        parent = name.rpartition(".")[0]
        if parent:
            self.import_module(parent)
        frame = self.module_frame(name)
        self.scan_body(frame)

    def module_frame(self, name: str) -> Frame:
        if name not in self._module_frames:
            self._module_frames[name] = Frame(name, modules()[name].tree, {}, None)
        return self._module_frames[name]

    def call_function(self, function: Function, positional: list[frozenset[Any]],
                      keywords: dict[str, frozenset[Any]],
                      receiver: Instance | None = None) -> frozenset[Any]:
        node = function.node
        arguments = node.args
        names = [a.arg for a in [*arguments.posonlyargs, *arguments.args]]
        bindings: dict[str, frozenset[Any]] = {}
        if receiver is not None and names and not _is_static(node):
            bindings[names[0]] = frozenset({receiver})
            names = names[1:]
        for name, values in zip(names, positional, strict=False):
            bindings[name] = values
        for name, values in keywords.items():
            bindings[name] = values
        all_names = [*names, *(a.arg for a in arguments.kwonlyargs)]
        defaults = dict(zip(names[len(names) - len(arguments.defaults):], arguments.defaults,
                            strict=False))
        defaults.update({a.arg: d for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults,
                                                  strict=False) if d is not None})
        definition = self.definition_frame(function)
        for name in all_names:
            if name not in bindings:
                bindings[name] = (self.value(defaults[name], definition) if name in defaults
                                  else frozenset({UNKNOWN}))
        if arguments.vararg is not None:
            extras = tuple(positional[len(names):])
            bindings[arguments.vararg.arg] = frozenset({Sequence_(extras)})
        if arguments.kwarg is not None:
            bindings[arguments.kwarg.arg] = frozenset({UNKNOWN})
        key = (id(node), id(function.closure),
               frozenset((k, v) for k, v in bindings.items()))
        if key in self.done:
            return self.done[key]
        if key in self.running:
            return frozenset({UNKNOWN})
        self.running.add(key)
        frame = Frame(function.module, node, bindings, function.closure, function.owner)
        self.scan_body(frame)
        returns: set[Any] = set()
        if isinstance(node, ast.Lambda):
            returns |= self.value(node.body, frame)
        for expression in frame.returns:
            returns |= self.value(expression, frame)
        self.running.discard(key)
        result = _cap(returns) if returns else frozenset({Const(None)})
        self.done[key] = result
        return result

    def definition_frame(self, function: Function) -> Frame:
        return function.closure or self.module_frame(function.module)

    def escape(self, values: Iterable[Any]) -> None:
        for value in values:
            if isinstance(value, Function) and value not in self.escaped:
                self.escaped.add(value)
                receiver = Instance(value.owner) if value.owner else None
                self.call_function(value, [], {}, receiver)
            elif isinstance(value, BoundMethod):
                self.escape([value.function])
            elif isinstance(value, ClassRef):
                self.reference_class(value)
            elif isinstance(value, Mapping):
                for _, item in value.items:
                    self.escape(item)
            elif isinstance(value, Sequence_):
                for item in value.items:
                    self.escape(item)

    def reference_class(self, cls: ClassRef) -> None:
        """A class in use: each of its methods may be called, with what we cannot know."""
        if cls in self.classes:
            return
        self.classes.add(cls)
        frame = Frame(cls.module, cls.node, {}, None, cls)
        self.scan_body(frame)
        for base in cls.node.bases:
            self.escape(self.value(base, self.module_frame(cls.module)))
        for node in cls.node.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.escape([Function(cls.module, node, None, cls)])

    # Bodies --------------------------------------------------------------------------------

    def scan_body(self, frame: Frame) -> None:
        for node in _own_nodes(frame.node):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom):
                target, _ = _import_target(node.module or "", None)
                self.import_module(target)
                for alias in node.names:
                    self.import_module(_import_target(node.module or "", alias.name)[0])
            elif isinstance(node, ast.Call):
                self.value(node, frame)
            elif isinstance(node, ast.Dict | ast.List | ast.Tuple | ast.Set):
                self.escape(self.value(node, frame))
            elif isinstance(node, ast.Return) and node.value is not None:
                self.escape(v for v in self.value(node.value, frame)
                            if not isinstance(v, Function))
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Attribute | ast.Subscript) for t in node.targets):
                self.escape(self.value(node.value, frame))

    # Expressions ---------------------------------------------------------------------------

    def value(self, node: ast.AST, frame: Frame) -> frozenset[Any]:
        key = (id(node), id(frame))
        if key in self._values:
            return self._values[key]
        self._values[key] = frozenset({UNKNOWN})  # a value defined through itself
        result = self._evaluate(node, frame)
        self._values[key] = result
        return result

    def _evaluate(self, node: ast.AST, frame: Frame) -> frozenset[Any]:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return frozenset({Str(node.value.replace("*", "\\*"))})
            return frozenset({Const(node.value)})
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                if isinstance(part, ast.FormattedValue):
                    parts.append(self.value(part.value, frame))
                else:
                    parts.append(self.value(part, frame))
            return _concat(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.value(node.left, frame), self.value(node.right, frame)
            if all(isinstance(v, Str) for v in left | right):
                return _concat([left, right])
            return frozenset({UNKNOWN})
        if isinstance(node, ast.BoolOp):
            return _cap(set().union(*(self.value(v, frame) for v in node.values)))
        if isinstance(node, ast.IfExp):
            self.value(node.test, frame)
            return _cap(set(self.value(node.body, frame)) | self.value(node.orelse, frame))
        if isinstance(node, ast.Name):
            return self.lookup(node.id, frame)
        if isinstance(node, ast.Attribute):
            return _cap({r for base in self.value(node.value, frame)
                         for r in self.attribute(base, node.attr)})
        if isinstance(node, ast.Subscript):
            base = self.value(node.value, frame)
            index = self.value(node.slice, frame)
            found: set[Any] = set()
            for value in base:
                if isinstance(value, Environ):
                    found |= {Str("${ENV:" + t + "}") for t in texts(index)}
                elif isinstance(value, Mapping):
                    found |= {v for t in texts(index) for v in value.get(t)} or {UNKNOWN}
                else:
                    found.add(UNKNOWN)
            return _cap(found)
        if isinstance(node, ast.Dict):
            items = []
            for key, item in zip(node.keys, node.values, strict=True):
                values = self.value(item, frame)
                if key is None:  # {**other}
                    for other in values:
                        if isinstance(other, Mapping):
                            items.extend(other.items)
                    continue
                for text in texts(self.value(key, frame)):
                    items.append((text, values))
            return frozenset({Mapping(tuple(items))})
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items: list[frozenset[Any]] = []
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    spliced = self.value(element.value, frame)
                    (only,) = spliced if len(spliced) == 1 else (UNKNOWN,)
                    items.extend(only.items if isinstance(only, Sequence_)
                                 else [frozenset({UNKNOWN})])
                else:
                    items.append(self.value(element, frame))
            return frozenset({Sequence_(tuple(items))})
        if isinstance(node, ast.Lambda):
            return frozenset({Function(frame.module, node, frame)})
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            for generator in node.generators:
                self.value(generator.iter, frame)
            return frozenset({Sequence_((self.value(node.elt, frame),))})
        if isinstance(node, ast.Call):
            return self.call(node, frame)
        if isinstance(node, ast.Await):
            return self.value(node.value, frame)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.value(child, frame)
        return frozenset({UNKNOWN})

    def lookup(self, name: str, frame: Frame) -> frozenset[Any]:
        current: Frame | None = frame
        while current is not None:
            if name in current.bindings:
                return current.bindings[name]
            if name in current.assigned or name in current.unknown_names:
                values: set[Any] = set()
                for expression in current.assigned.get(name, []):
                    if isinstance(expression, Element):
                        values |= _elements(self.value(expression.iterable, current),
                                            expression.path)
                    else:
                        values |= self.value(expression, current)
                if name in current.unknown_names:
                    values.add(UNKNOWN)
                return _followed(_cap(values))
            local = self._local_definition(name, current)
            if local is not None:
                return local
            if isinstance(current.node, ast.Module):
                break
            current = current.parent
        return self.global_value(frame.module, name)

    def _local_definition(self, name: str, frame: Frame) -> frozenset[Any] | None:
        """A function, class or import made inside a function body."""
        if isinstance(frame.node, ast.Module | ast.ClassDef):
            return None
        for node in _own_nodes(frame.node):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
                return frozenset({Function(frame.module, node, frame)})
            if isinstance(node, ast.ClassDef) and node.name == name:
                return frozenset({ClassRef(frame.module, node)})
            if isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    bound = alias.asname or (alias.name if isinstance(node, ast.ImportFrom)
                                             else alias.name.split(".")[0])
                    if bound != name:
                        continue
                    if isinstance(node, ast.Import):
                        module = alias.name if alias.asname else bound
                        return frozenset({ModuleRef(module)})
                    return self._imported(node.module or "", alias.name)
        return None

    def _imported(self, module: str, name: str | None) -> frozenset[Any]:
        target, attribute = _import_target(module, name)
        if attribute is None:
            return frozenset({ModuleRef(target)})
        self.import_module(target)
        return self.global_value(target, attribute)

    def global_value(self, module: str, name: str) -> frozenset[Any]:
        info = modules().get(module)
        if info is None:
            return frozenset({UNKNOWN})
        if name in info.imports:
            source, attribute = info.imports[name]
            return self._imported(source, attribute)
        definitions = info.symbols.get(name)
        if not definitions:
            if f"{module}.{name}" in modules():
                return frozenset({ModuleRef(f"{module}.{name}")})
            return frozenset({UNKNOWN})
        values: set[Any] = set()
        frame = self.module_frame(module)
        for node in definitions:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                values.add(Function(module, node))
            elif isinstance(node, ast.ClassDef):
                values.add(ClassRef(module, node))
            else:
                values |= self.value(node, frame)
        return _cap(values)

    def attribute(self, base: Any, name: str) -> frozenset[Any]:
        if isinstance(base, ModuleRef):
            if base.name == "os" and name == "environ":
                return frozenset({Environ()})
            if base.name == AWS_MODULE and name == "client":
                return frozenset({BoundOperation(AWS_MODULE, "client")})
            if base.name == "importlib" and name == "import_module":
                return frozenset({BoundOperation("importlib", "import_module")})
            if base.name in modules():
                self.import_module(base.name)
                return self.global_value(base.name, name)
            return frozenset({UNKNOWN})
        if isinstance(base, Client):
            if name == "exceptions":
                return frozenset({UNKNOWN})
            if name == "get_paginator":
                return frozenset({BoundOperation(base.service, "get_paginator")})
            return frozenset({BoundOperation(base.service, name)})
        if isinstance(base, Paginator) and name == "paginate":
            return frozenset({BoundOperation(base.service, base.operation, paginate=True)})
        if isinstance(base, Environ) and name == "get":
            return frozenset({BoundOperation("os", "environ.get")})
        if isinstance(base, Str) and name == "join":
            return frozenset({BoundOperation("str", "join:" + base.text)})
        if isinstance(base, Str) and name == "value":  # an Enum member's value is its text
            return frozenset({base})
        if isinstance(base, ClassRef | Instance):
            cls = base if isinstance(base, ClassRef) else base.cls
            return self.class_attribute(cls, name, base if isinstance(base, Instance) else None)
        return frozenset({UNKNOWN})

    def class_attribute(self, cls: ClassRef, name: str,
                        instance: Instance | None) -> frozenset[Any]:
        self.reference_class(cls)
        for node in cls.node.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
                function = Function(cls.module, node, None, cls)
                if instance is not None:
                    return frozenset({BoundMethod(function, instance)})
                return frozenset({function})
            if isinstance(node, ast.AnnAssign | ast.Assign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    if node.value is None:
                        return frozenset({UNKNOWN})
                    return self._field_value(node.value, cls)
        for base in cls.node.bases:
            for parent in self.value(base, self.module_frame(cls.module)):
                if isinstance(parent, ClassRef):
                    found = self.class_attribute(parent, name, instance)
                    if found != frozenset({UNKNOWN}):
                        return found
        return frozenset({UNKNOWN})

    def _field_value(self, node: ast.expr, cls: ClassRef) -> frozenset[Any]:
        """A class attribute's value; a dataclass `field(default_factory=...)`'s product."""
        frame = self.module_frame(cls.module)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("field", "Field"):
            for keyword in node.keywords:
                if keyword.arg == "default":
                    return self.value(keyword.value, frame)
                if keyword.arg == "default_factory":
                    return self.invoke(self.value(keyword.value, frame), [], {}, node)
            return frozenset({UNKNOWN})
        return self.value(node, frame)

    # Calls ---------------------------------------------------------------------------------

    def call(self, node: ast.Call, frame: Frame) -> frozenset[Any]:
        self._caller = frame.module
        callees = self.value(node.func, frame)
        positional: list[frozenset[Any]] = []
        for argument in node.args:
            values = self.value(argument, frame)
            positional.append(frozenset({UNKNOWN}) if isinstance(argument, ast.Starred)
                              else values)
        keywords: dict[str, frozenset[Any]] = {}
        spread: list[frozenset[Any]] = []
        for keyword in node.keywords:
            values = self.value(keyword.value, frame)
            if keyword.arg is None:
                spread.append(values)
            else:
                keywords[keyword.arg] = values
        for values in spread:
            for value in values:
                if isinstance(value, Mapping):
                    for key, item in value.items:
                        keywords[key] = frozenset(keywords.get(key, frozenset()) | item)
        return self.invoke(callees, positional, keywords, node)

    def invoke(self, callees: frozenset[Any], positional: list[frozenset[Any]],
               keywords: dict[str, frozenset[Any]], node: ast.AST) -> frozenset[Any]:
        results: set[Any] = set()
        arguments = [*positional, *keywords.values()]
        for callee in callees:
            if isinstance(callee, Function):
                results |= self.call_function(callee, positional, keywords)
            elif isinstance(callee, BoundMethod):
                results |= self.call_function(callee.function, positional, keywords,
                                              callee.receiver)
            elif isinstance(callee, ClassRef):
                results |= self.construct(callee, positional, keywords)
            elif isinstance(callee, BoundOperation):
                results |= self.operation(callee, positional, keywords)
            else:
                for values in arguments:
                    self.escape(values)
                results.add(UNKNOWN)
        return _cap(results) if results else frozenset({UNKNOWN})

    def construct(self, cls: ClassRef, positional: list[frozenset[Any]],
                  keywords: dict[str, frozenset[Any]]) -> frozenset[Any]:
        self.reference_class(cls)
        if cls.module == DYNAMODB_MODULE and cls.node.name == "Action":
            items = positional[1:2] or [keywords.get("item", frozenset())]
            self.transaction_item(items[0])
        for node in cls.node.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                self.call_function(Function(cls.module, node, None, cls), positional, keywords,
                                   Instance(cls))
        for values in [*positional, *keywords.values()]:
            self.escape(values)
        return frozenset({Instance(cls)})

    def operation(self, bound: BoundOperation, positional: list[frozenset[Any]],
                  keywords: dict[str, frozenset[Any]]) -> frozenset[Any]:
        first = positional[0] if positional else frozenset()
        if bound.service == AWS_MODULE:  # aws.client("<service>")
            return frozenset({Client(t) for t in texts(first)})
        if bound.service == "os":
            return frozenset({Str("${ENV:" + t + "}") for t in texts(first)})
        if bound.service == "importlib":  # a registry loading its adapters by name
            # A name the scan cannot tell: any module of the registry's own package.
            caller = modules().get(self._caller)
            package = (self._caller if caller and caller.package
                       else self._caller.rpartition(".")[0]) + "."
            names = {m for t in texts(first) for m in modules()
                     if fnmatchcase(m, t) and (t != "*" or m.startswith(package))}
            for name in names:
                self.import_module(name)
            return frozenset({ModuleRef(n) for n in names}) or frozenset({UNKNOWN})
        if bound.service == "str":
            separator = bound.operation.partition(":")[2]
            joined: set[Any] = set()
            for value in first:
                if isinstance(value, Sequence_):
                    parts: list[frozenset[Any]] = []
                    for index, item in enumerate(value.items):
                        if index:
                            parts.append(frozenset({Str(separator)}))
                        parts.append(item)
                    joined |= _concat(parts)
                else:
                    joined.add(Str("*"))
            return frozenset(joined)
        if bound.operation == "get_paginator":
            return frozenset({Paginator(bound.service, t) for t in texts(first)})
        self.record(bound.service, bound.operation, keywords)
        return frozenset({UNKNOWN})

    def record(self, service: str, method: str, keywords: dict[str, frozenset[Any]]) -> None:
        name = api_operation(service, method)
        arguments = tuple(sorted((k, _followed(v)) for k, v in keywords.items()))
        self.operations.add(Operation(service, name, arguments))

    def transaction_item(self, values: frozenset[Any]) -> None:
        kinds = {"Put": "put_item", "Update": "update_item", "Delete": "delete_item",
                 "ConditionCheck": "condition_check_item"}
        for value in values:
            if not isinstance(value, Mapping):
                continue
            for kind, method in kinds.items():
                for inner in value.get(kind):
                    if isinstance(inner, Mapping):
                        self.record("dynamodb", method, {k: v for k, v in inner.items})
                    else:
                        self.record("dynamodb", method, {"TableName": frozenset({UNKNOWN})})


def _elements(values: frozenset[Any], path: tuple[int, ...]) -> frozenset[Any]:
    """The values an element of a sequence (a dict's keys) takes, unpacked along `path`."""
    found: set[Any] = set()
    for value in values:
        if isinstance(value, Sequence_):
            items: set[Any] = set().union(*value.items) if value.items else set()
        elif isinstance(value, Mapping):
            items = {Str(key) for key, _ in value.items}
        else:
            found.add(UNKNOWN)
            continue
        for item in items:
            if not path:
                found.add(item)
            elif isinstance(item, Sequence_) and path[0] < len(item.items):
                found |= _elements(frozenset({Sequence_((item.items[path[0]],))}), path[1:])
            else:
                found.add(UNKNOWN)
    return _cap(found)


def _is_static(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef) and any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)


@cache
def _operation_names(service: str) -> dict[str, str]:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    names = {xform_name(name): name for name in model.operation_names}
    names["condition_check_item"] = "ConditionCheckItem"  # IAM's name for a transaction item
    return names


def api_operation(service: str, method: str) -> str:
    """The API operation a client method calls (`put_item` -> `PutItem`)."""
    names = _operation_names(service)
    if method not in names:
        raise ValueError(f"{service} client has no operation {method!r}")
    return names[method]


# --- Handlers -------------------------------------------------------------------------------


def _decorator_attribute(decorator: ast.expr) -> str | None:
    call = decorator.func if isinstance(decorator, ast.Call) else decorator
    return call.attr if isinstance(call, ast.Attribute) else None


@cache
def event_handlers() -> dict[str, ast.FunctionDef]:
    """app.py's event handlers by name (Chalice names their functions so)."""
    tree = modules()["app"].tree
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
            and any(_decorator_attribute(d) for d in node.decorator_list)}


def handler_names() -> list[str]:
    """Every Lambda function of the app: the API's (`api_handler`) and the event handlers."""
    return ["api_handler", *event_handlers()]


def routes(scan: Scan) -> list[Function]:
    """Every view function of the blueprints app.py's module code imported."""
    found = []
    for name in sorted(scan.imported):
        for node in modules()[name].tree.body:
            if isinstance(node, ast.FunctionDef) and any(
                    _decorator_attribute(d) == "route" for d in node.decorator_list):
                found.append(Function(name, node))
    return found


@cache
def operations(handler: str) -> frozenset[Operation]:
    """The AWS operations the Lambda function `handler` can reach."""
    return frozenset(scan_of(handler).operations)


@cache
def scan_of(handler: str) -> Scan:
    scan = Scan()
    scan.import_module("app")
    if handler == "api_handler":
        roots = routes(scan)
        assert roots, "no routes found"
    else:
        roots = [Function("app", event_handlers()[handler])]
    for root in roots:
        scan.call_function(root, [], {})
    return scan


def reach(module: str, function: str) -> frozenset[Operation]:
    """The operations one function of one module can reach (the scan's own tests)."""
    scan = Scan()
    scan.import_module(module)
    (node,) = [n for n in modules()[module].tree.body
               if isinstance(n, ast.FunctionDef) and n.name == function]
    scan.call_function(Function(module, node), [], {})
    return frozenset(scan.operations)


def unseen_clients() -> list[str]:
    """Places in the code a Lambda function loads that make an AWS client other than through
    `aws.client` (the scan's one door). The administrators' command line is not such code."""
    loaded = set().union(*(scan_of(handler).imported for handler in handler_names()))
    found = []
    for name, info in modules().items():
        if name == AWS_MODULE or name not in loaded:
            continue
        for node in ast.walk(info.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("client", "resource") and not (
                        isinstance(node.func.value, ast.Name) and node.func.value.id == "aws"):
                found.append(f"{name}:{node.lineno}")
    return found
