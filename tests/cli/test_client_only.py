"""The CLI is a client: its modules import the standard library, requests and each other only,
and running it never loads novitai's settings or the ORM. No database here."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from novitai.cli.main import build_parser, create_body

CLI_DIR = Path(__file__).resolve().parents[2] / "novitai" / "cli"


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh interpreter of this venv (nothing imported yet)."""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_the_cli_imports_only_the_standard_library_and_requests() -> None:
    files = sorted(CLI_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "main.py", "client.py", "progress.py"}
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or top in ("requests", "_typeshed", "__future__")
                or module.startswith("novitai.cli")
            )
            assert allowed, f"{path.name} imports {module}"


def test_running_it_loads_no_settings_and_no_orm() -> None:
    script = (
        "import sys\n"
        "from novitai.cli import main\n"
        "code = main(['--url', 'http://127.0.0.1:9', '--api-key', 'k', 'list'])\n"
        "loaded = [m for m in ('novitai.settings', 'django.db', 'rest_framework') "
        "if m in sys.modules]\n"
        "print(code, loaded)\n"
    )
    done = run_python(script)
    assert done.stdout == "5 []\n", done.stderr
    assert (
        done.stderr == "novitai: cannot reach novitai at http://127.0.0.1:9: connection refused\n"
    )


def test_python_m_novitai_cli_shows_the_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "novitai.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: novitai ")
    assert "Exit codes: 0 done" in done.stdout


def test_the_create_body_holds_exactly_what_was_given() -> None:
    parser = build_parser(sys.stdout, sys.stderr)
    args = parser.parse_args(
        ["--api-key", "k", "create", "web", "--product", "A", "--template", "7", "--env", "K=v=w"]
    )
    assert create_body(args) == {
        "name": "web",
        "template_id": "7",
        "product_name": "A",
        "envs": [{"key": "K", "value": "v=w"}],
    }
    args = parser.parse_args(
        ["create", "web", "--product", "A", "--product", "B", "--template", "7", "--gpus", "2",
         "--region", "EU-NL-01", "--rootfs", "80", "--spot", "--on-preempt", "restart",
         "--idle-timeout", "600", "--max-price", "0.50", "--webhook", "https://h.example/x"]
    )  # fmt: skip
    assert create_body(args) == {
        "name": "web",
        "template_id": "7",
        "product_names": ["A", "B"],
        "gpu_num": 2,
        "region": "EU-NL-01",
        "rootfs_size": 80,
        "billing_mode": "spot",
        "on_preempt": "restart",
        "idle_timeout_seconds": 600,
        "max_price_per_hour": "0.50",
        "webhook_url": "https://h.example/x",
    }


def test_a_reader_that_leaves_ends_it_quietly() -> None:
    """`novitai … | head`: exit 141 (as SIGPIPE would), no traceback."""
    reader, writer = os.pipe()
    os.close(reader)  # nobody reads: the first write fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "novitai.cli", "--help"],
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)
    assert done.returncode == 141
    assert done.stderr == ""


def test_importing_it_loads_neither_django_nor_celery() -> None:
    """What `import novitai.cli` loads, in a fresh interpreter: its own modules, requests and the
    standard library; `novitai/__init__.py` imports nothing."""
    script = (
        "import sys\n"
        "import novitai.cli\n"
        "tops = sorted({m.split('.')[0] for m in sys.modules})\n"
        "print([t for t in tops if t in ('django', 'celery', 'kombu', 'rest_framework')])\n"
    )
    done = run_python(script)
    assert done.stdout == "[]\n", done.stderr
