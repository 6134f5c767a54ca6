"""The local profile of a checkout where `make run` has run: `<NOVITAI_VAR_DIR>/local.env`.

`make run` writes it once with a generated SECRET_KEY and ENCRYPTION_KEYS, and records on every
run whether embedded mode runs its own Redis (EMBEDDED_REDIS). settings.py reads it after `.env`
(variables already set win), so that `manage.py tenant_create`, `make flower` and every process
of `make run` share one secret, one encryption key and one Redis, with nothing to set by hand.
It lives beside the database it encrypts: deleting var/ deletes both. The test suite never reads
it (the tests set their own environment).

`python -m novitai.localenv` (make run) writes it and prints the shell exports `make run` uses:
NOVITAI_VAR_DIR (absolute) and EMBEDDED_REDIS. It imports neither Django nor Celery.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shlex
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
FILE_NAME = "local.env"
# The built-in SECRET_KEY of DEBUG before local.env existed: a database written then has its
# secrets encrypted under a key derived from it, which stays readable (decrypt only).
LEGACY_DEBUG_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105  # public on purpose: DEBUG's

_HEADER = (
    "# Written by `make run` for this checkout (novitai/localenv.py); read by settings.py.\n"
    "# Local development only. Deleting it makes a new secret: the database beside it, whose\n"
    "# secrets it encrypts, would no longer be readable.\n"
)


def var_dir(environ: Mapping[str, str], base_dir: Path = BASE_DIR) -> Path:
    """Where embedded mode keeps its files: NOVITAI_VAR_DIR, else var/ beside manage.py."""
    return Path(environ.get("NOVITAI_VAR_DIR", "") or base_dir / "var").resolve()


def development_encryption_key(secret_key: str) -> str:
    """The Fernet key DEBUG derives from SECRET_KEY when ENCRYPTION_KEYS is not set."""
    digest = hashlib.sha256(f"novitai-development-encryption:{secret_key}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def read(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def apply(path: Path, environ: MutableMapping[str, str]) -> None:
    """Sets every variable of the file that `environ` does not have yet."""
    for key, value in read(path).items():
        environ.setdefault(key, value)


def ensure(directory: Path, *, embedded_redis: bool) -> Path:
    """Writes `directory/local.env`: its secrets the first time (kept afterwards), and
    EMBEDDED_REDIS as decided for this run. Owner-only (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    values = read(path)
    if "SECRET_KEY" not in values:
        values["SECRET_KEY"] = secrets.token_urlsafe(50)
    if "ENCRYPTION_KEYS" not in values:
        keys = [base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()]
        if (directory / "db.sqlite3").exists():
            keys.append(development_encryption_key(LEGACY_DEBUG_SECRET_KEY))
        values["ENCRYPTION_KEYS"] = ",".join(keys)
    values["EMBEDDED_REDIS"] = "true" if embedded_redis else "false"
    text = _HEADER + "".join(f"{key}={value}\n" for key, value in values.items())
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.chmod(0o600)
    temporary.replace(path)
    return path


def _dotenv(environ: MutableMapping[str, str], base_dir: Path) -> None:
    """What settings.py reads first: `.env` beside manage.py (set variables win)."""
    apply(base_dir / ".env", environ)


def main(argv: list[str] | None = None) -> int:
    from novitai import embedded_redis

    environ = dict(os.environ)
    _dotenv(environ, BASE_DIR)
    directory = var_dir(environ)
    decision = embedded_redis.decide(environ)
    sys.stderr.write(f"novitai: {decision.message}\n")
    if decision.error:
        return 1
    ensure(directory, embedded_redis=decision.enabled)
    exports = {"NOVITAI_VAR_DIR": str(directory), "EMBEDDED_REDIS": str(decision.enabled).lower()}
    sys.stdout.write(
        "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items()) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
