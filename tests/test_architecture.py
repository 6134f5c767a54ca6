"""The layout's rules, checked on every module's imports (its AST, nothing run). The rules and
why: docs/architecture.md, "Layout and dependencies".

1. Models stay home: outside its own app, `<app>.models` is imported by no module (migrations,
   tests and bench aside). Other apps go through `<app>.selectors` (reads; they re-export the
   model classes and choices other apps need as types and values) and `<app>.services` (writes).
2. Queries stay home: a model class another app exports is a type, never queried outside its
   app (no `.objects` on it).
3. Apps depend one way (APP_DEPENDENCIES): instances → catalog → novitai.novita, instances →
   jobs, instances → webhooks, instances → storage → catalog, everything → tenants and
   novitai's own modules; overview reads every app and nothing reads overview; the Novita
   client imports no app; the sandbox imports nothing outside the standard library and the CLI
   nothing but requests besides.
4. An app's `api/` is imported only by its own `api/` (and the project's URLs, by name).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("tenants", "catalog", "jobs", "webhooks", "storage", "billing", "instances", "overview")
# Where each part of the code may import from (besides itself and third-party packages).
NOVITAI_CORE = "novitai"  # the project package's own modules: errors, logging, outages, …
APP_DEPENDENCIES: dict[str, set[str]] = {
    "novita_sandbox": set(),
    "novitai.cli": set(),
    "novitai.novita": {NOVITAI_CORE},
    NOVITAI_CORE: {"novitai.novita"},
    "tenants": {NOVITAI_CORE},
    "catalog": {NOVITAI_CORE, "novitai.novita", "tenants"},
    "jobs": {NOVITAI_CORE, "tenants"},
    "webhooks": {NOVITAI_CORE, "tenants"},
    # storage knows nothing of instances: instances registers its mount finder with it.
    "storage": {NOVITAI_CORE, "novitai.novita", "tenants", "catalog", "webhooks"},
    # The cost ledger, budgets and reconciliation: below instances (an instance is an id here;
    # instances tells billing what it observed and acts on what billing finds due).
    "billing": {NOVITAI_CORE, "novitai.novita", "tenants", "webhooks"},
    "instances": {
        NOVITAI_CORE,
        "novitai.novita",
        "tenants",
        "catalog",
        "jobs",
        "webhooks",
        "storage",
        "billing",
    },
    "overview": {
        NOVITAI_CORE,
        "novitai.novita",
        "tenants",
        "catalog",
        "jobs",
        "webhooks",
        "storage",
        "billing",
        "instances",
    },
}
# The project's wiring: the modules of novitai that put the apps together (URLs, the health
# checks of every queue, the API root, the demo bootstrap). They reach apps through selectors,
# services and authentication, never models.
WIRING = {
    "novitai.urls": {"overview", "tenants"},
    "novitai.health": {"jobs", "webhooks", "instances"},
    "novitai.views": {"tenants"},
    "novitai.management.commands.bootstrap_demo": {"tenants"},
}
# Deliberate exceptions to rule 1: (module, the models module it imports) -> the reason. None
# today: add one only with its reason, and the test below keeps the list honest.
EXCEPTIONS: dict[tuple[str, str], str] = {}
# Third-party packages the CLI may import (rule 3).
CLI_THIRD_PARTY = {"requests"}


@dataclass(frozen=True)
class Import:
    """One import (those under `if TYPE_CHECKING:` count like any other)."""

    module: str  # the importing module, dotted
    target: str  # the imported module (or module.name for `from x import name`)
    line: int


def part_of(module: str) -> str | None:
    """The part of the code a dotted module belongs to (a key of APP_DEPENDENCIES)."""
    top = module.split(".")[0]
    if top == "novitai":
        second = module.split(".")[1] if "." in module else ""
        return f"novitai.{second}" if second in ("novita", "cli") else NOVITAI_CORE
    if top in APPS or top == "novita_sandbox":
        return top
    return None


def source_modules() -> Iterator[tuple[str, Path]]:
    for top in (*APPS, "novitai", "novita_sandbox"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def imports_of(module: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                target = f"{base}.{alias.name}"
                yield Import(module, target, node.lineno)


ALL_IMPORTS = [i for module, path in source_modules() for i in imports_of(module, path)]


def where(i: Import) -> str:
    return f"{i.module}:{i.line} imports {i.target}"


def test_the_walk_finds_the_code() -> None:
    modules = {i.module for i in ALL_IMPORTS}
    assert {"instances.monitoring.passes", "overview.summary", "novita_sandbox.server"} <= modules
    assert len(modules) > 120


def test_no_app_imports_another_apps_models() -> None:
    found = [
        where(i)
        for i in ALL_IMPORTS
        if ".models" in i.target
        and (app := i.target.split(".")[0]) in APPS
        and part_of(i.module) != app
        and (i.module, i.target.rpartition(".models")[0] + ".models") not in EXCEPTIONS
    ]
    assert found == []
    used = {(i.module, i.target.rpartition(".models")[0] + ".models") for i in ALL_IMPORTS}
    assert set(EXCEPTIONS) <= used  # an exception no longer needed goes


def model_classes(app: str) -> set[str]:
    path = ROOT / app / "models.py"
    if not path.exists():
        return set()
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def test_no_module_queries_another_apps_models() -> None:
    found: list[str] = []
    for module, path in source_modules():
        owner = part_of(module)
        foreign: dict[str, str] = {}  # local name -> its app, for another app's model classes
        for i in imports_of(module, path):
            app = i.target.split(".")[0]
            name = i.target.rpartition(".")[2]
            if app in APPS and app != owner and name in model_classes(app):
                foreign[name] = app
        if not foreign:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("objects", "_default_manager", "_base_manager")
                and isinstance(node.value, ast.Name)
                and node.value.id in foreign
            ):
                found.append(
                    f"{module}:{node.lineno} queries {foreign[node.value.id]}'s {node.value.id}"
                )
    assert found == []


def test_apps_depend_one_way() -> None:
    found = []
    for i in ALL_IMPORTS:
        source, target = part_of(i.module), part_of(i.target)
        if source is None or target is None or source == target:
            continue
        allowed = APP_DEPENDENCIES[source] | WIRING.get(i.module, set())
        if target not in allowed:
            found.append(where(i))
    assert found == []


def test_the_dependencies_have_no_cycle() -> None:
    graph = {part: set(deps) for part, deps in APP_DEPENDENCIES.items()}
    # novitai's own modules and the Novita client are one layer: the client uses logging and
    # outages, and novitai's health and metrics use the client; neither imports an app.
    graph[NOVITAI_CORE].discard("novitai.novita")

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            dep == goal or (dep not in seen and reaches(dep, goal, seen | {dep}))
            for dep in graph.get(start, set())
        )

    assert [part for part in graph if reaches(part, part, set())] == []


def test_the_sandbox_imports_only_the_standard_library() -> None:
    found = [
        where(i)
        for i in ALL_IMPORTS
        if part_of(i.module) == "novita_sandbox"
        and part_of(i.target) != "novita_sandbox"
        and i.target.split(".")[0] not in (*sys.stdlib_module_names, "__future__")
    ]
    assert found == []


def test_the_cli_imports_only_requests_besides_the_standard_library() -> None:
    found = [
        where(i)
        for i in ALL_IMPORTS
        if part_of(i.module) == "novitai.cli"
        and part_of(i.target) != "novitai.cli"
        and i.target.split(".")[0]
        not in (*sys.stdlib_module_names, "__future__", "_typeshed", *CLI_THIRD_PARTY)
    ]
    assert found == []


def test_an_apps_api_is_imported_only_by_its_api() -> None:
    found = [
        where(i)
        for i in ALL_IMPORTS
        if (app := i.target.split(".")[0]) in APPS
        and i.target.startswith(f"{app}.api")
        and not i.module.startswith(f"{app}.api")
    ]
    assert found == []
