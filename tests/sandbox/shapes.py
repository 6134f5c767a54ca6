"""Compare JSON by shape: the same keys at every level and the same value types.

    assert_same_shape(actual, expected)

Dicts must have exactly the same keys; every item of a list must have the shape of the
expected list's first item (an empty expected list accepts any list); str, int, float, bool
and null are distinct types (a numeric string is not an int).
"""

from __future__ import annotations

from typing import Any


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def shape_differences(actual: Any, expected: Any, path: str = "$") -> list[str]:
    if _kind(actual) != _kind(expected):
        return [f"{path}: {_kind(actual)} ({actual!r}), expected {_kind(expected)}"]
    if isinstance(expected, dict):
        out = []
        missing, extra = set(expected) - set(actual), set(actual) - set(expected)
        if missing:
            out.append(f"{path}: missing keys {sorted(missing)}")
        if extra:
            out.append(f"{path}: extra keys {sorted(extra)}")
        for key in set(expected) & set(actual):
            out += shape_differences(actual[key], expected[key], f"{path}.{key}")
        return out
    if isinstance(expected, list) and expected:
        out = []
        for index, item in enumerate(actual):
            out += shape_differences(item, expected[0], f"{path}[{index}]")
        return out
    return []


def assert_same_shape(actual: Any, expected: Any) -> None:
    differences = shape_differences(actual, expected)
    assert not differences, "\n".join(differences)
