"""The raw shapes (novitai/novita/raw.py) declare every key the parser reads: each `get_*(obj,
"key", …)`, `objects(obj, "key", …)` and `obj.get("key")` of parsing.py, object by object (the
items of a list field by the TypedDict the list holds). And a whole answer type-checks as one."""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Any

from novitai.novita import parsing, raw
from novitai.novita.parsing import parse_instance
from tests.novita.test_parsing import RUNNING

GETTERS = {
    "get_str",
    "required_str",
    "get_int",
    "get_bool",
    "get_str_tuple",
    "get_timestamp",
    "get_decimal",
    "get_money",
    "objects",
    "_optional_int",
}
# For each parsing function: its variables that hold a raw object, and their shapes.
SHAPES: dict[str, dict[str, Any]] = {
    "parse_cluster": {"obj": raw.RawCluster},
    "parse_product": {"obj": raw.RawProduct},
    "_template_ports": {"obj": raw.RawTemplate},
    "_envs": {"obj": raw.RawTemplate},
    "parse_template": {"obj": raw.RawTemplate},
    "parse_instance": {"obj": raw.RawInstance, "status_error": raw.RawStatusError},
    "_ssh": {"obj": raw.RawInstance, "component": raw.RawSshComponent},
    "_logs": {"obj": raw.RawInstance, "component": raw.RawLogComponent},
}


def hints(shape: Any) -> dict[str, Any]:
    return typing.get_type_hints(shape, globalns=vars(raw))


def item_shape(shape: Any, key: str) -> Any:
    """The TypedDict a list field holds (list[RawPortMapping] → RawPortMapping)."""
    (item,) = typing.get_args(hints(shape)[key])
    return item


def reads(node: ast.AST, variables: dict[str, Any]) -> list[tuple[Any, str]]:
    """(shape, key) of every key read from a raw object in `node`."""
    found: list[tuple[Any, str]] = []
    for child in ast.iter_child_nodes(node):
        scope = dict(variables)
        if isinstance(child, ast.ListComp | ast.GeneratorExp):
            for generator in child.generators:
                call, target = generator.iter, generator.target
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "objects"
                    and isinstance(call.args[0], ast.Name)
                    and call.args[0].id in scope
                    and isinstance(target, ast.Tuple)
                    and isinstance(target.elts[1], ast.Name)
                ):
                    key = ast.literal_eval(call.args[1])
                    scope[target.elts[1].id] = item_shape(scope[call.args[0].id], key)
        found += read_here(child, scope) + reads(child, scope)
    return found


def read_here(node: ast.AST, variables: dict[str, Any]) -> list[tuple[Any, str]]:
    if not isinstance(node, ast.Call) or len(node.args) < 2:
        if (  # obj.get("key")
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in variables
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            return [(variables[node.func.value.id], str(node.args[0].value))]
        return []
    func, first, key = node.func, node.args[0], node.args[1]
    if (
        isinstance(func, ast.Name)
        and func.id in GETTERS
        and isinstance(first, ast.Name)
        and first.id in variables
        and isinstance(key, ast.Constant)
    ):
        return [(variables[first.id], str(key.value))]
    return []


def functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(Path(parsing.__file__).read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_key_the_parser_reads_is_declared() -> None:
    defined = functions()
    undeclared = [
        f"{name}: {shape.__name__}.{key}"
        for name, variables in SHAPES.items()
        for shape, key in reads(defined[name], variables)
        if key not in hints(shape)
    ]
    assert undeclared == []


def test_the_walk_sees_the_reads() -> None:
    read = {
        (shape.__name__, key)
        for shape, key in reads(functions()["parse_instance"], SHAPES["parse_instance"])
    }
    assert {
        ("RawInstance", "gpuNum"),
        ("RawInstance", "portMappings"),
        ("RawPortMapping", "endpoint"),
        ("RawVolumeMount", "mountPath"),
        ("RawStatusError", "message"),
    } <= read


def test_a_whole_answer_is_a_raw_instance() -> None:
    answer: raw.RawInstance = RUNNING  # mypy checks the fixture against the declared shape
    assert parse_instance(answer).gpu_num == 1
