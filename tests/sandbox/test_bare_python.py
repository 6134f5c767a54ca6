"""The sandbox runs on a bare Python: a virtual environment with no package installed (not even
pip), and nothing of this repository but `novita_sandbox/` itself, copied on its own. It starts,
answers the API, and has imported nothing outside the standard library."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
import venv
from pathlib import Path

import novita_sandbox

SANDBOX_DIR = Path(novita_sandbox.__file__).resolve().parent


def bare_python(tmp_path: Path) -> tuple[Path, Path]:
    """(python of an empty venv, a folder holding only a copy of the sandbox package)."""
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, clear=True).create(env)
    alone = tmp_path / "alone"
    shutil.copytree(SANDBOX_DIR, alone / "novita_sandbox", ignore=shutil.ignore_patterns("*.pyc"))
    return env / "bin" / "python", alone


def test_the_bare_environment_holds_no_package(tmp_path: Path) -> None:
    python, alone = bare_python(tmp_path)
    script = (
        "import importlib.metadata, json, sys\n"
        "import novita_sandbox, novita_sandbox.__main__\n"
        "foreign = sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)"
        " - {'novita_sandbox', '__main__'})\n"
        "print(json.dumps([sorted(d.metadata['Name'] for d in importlib.metadata.distributions()),"
        " foreign]))\n"
    )
    done = subprocess.run(
        [str(python), "-c", script], cwd=alone, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[], []]


def test_it_starts_and_answers_on_a_bare_python(tmp_path: Path) -> None:
    python, alone = bare_python(tmp_path)
    process = subprocess.Popen(
        [str(python), "-m", "novita_sandbox", "--port", "0", "--api-key", "sk_bare"],
        cwd=alone,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Novita sandbox listening on http://127.0.0.1:"), first
        api = first.split()[4] + "/gpu-instance/openapi/v1"
        request = urllib.request.Request(
            api + "/clusters", headers={"Authorization": "Bearer sk_bare"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            clusters = json.loads(answer.read())["data"]
        process.terminate()
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert [c["id"] for c in clusters] == ["us-tx-2", "us-ca-6", "eu-nl-1", "eu-de-1", "as-jp-3"]
    assert process.returncode == 0, err
    assert out.strip().endswith("Novita sandbox stopped")
