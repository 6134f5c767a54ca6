"""The Celery processes as the Procfile ships them: read, not hard-coded, so that a change of the
Procfile (another worker, other queues, other concurrency) is what the chaos suite runs.

    processes = celery_processes(read(ROOT / "Procfile"), env)
    processes["events"].argv   # [".venv/bin/celery", "-A", "novitai", "worker", ...]

Variables are expanded as a shell (and honcho) would: `${NAME:-default}`, `${NAME}`, `$NAME`.
"""

from __future__ import annotations

import re
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def read(path: Path) -> dict[str, str]:
    """Process name -> command, in the file's order ("name: command" lines; # comments)."""
    processes: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if sep and re.fullmatch(r"[\w-]+", name.strip()):
            processes[name.strip()] = command.strip()
    return processes


def expand(command: str, env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2)
        found = env.get(name, "")
        return found if found or default is None else default

    return _VARIABLE.sub(value, command)


@dataclass(frozen=True)
class CeleryProcess:
    name: str  # the Procfile's name: worker, events, beat, ...
    argv: list[str]

    @property
    def subcommand(self) -> str:
        """worker, beat, …: the first argument that is neither an option nor the app."""
        args = iter(self.argv[1:])
        for arg in args:
            if arg in ("-A", "--app"):
                next(args, None)
            elif not arg.startswith("-"):
                return arg
        return ""

    def option(self, long: str, short: str = "") -> str:
        """The value of `--long=VALUE`, `--long VALUE` or `-s VALUE`; "" when absent."""
        for index, arg in enumerate(self.argv):
            if arg.startswith(long + "="):
                return arg.split("=", 1)[1]
            if arg == long or (short and arg == short):
                return self.argv[index + 1] if index + 1 < len(self.argv) else ""
        return ""

    @property
    def queues(self) -> list[str]:
        return [q for q in self.option("--queues", "-Q").split(",") if q]

    @property
    def hostname(self) -> str:
        """The node name it answers pings with (%h, %n, %d as Celery expands them)."""
        raw = self.option("--hostname", "-n")
        host = socket.gethostname()
        if not raw:
            return f"celery@{host}"
        short, _, domain = host.partition(".")
        return raw.replace("%h", host).replace("%n", short).replace("%d", domain)


def celery_processes(
    procfile: dict[str, str], env: dict[str, str], *, celery: str, python: str
) -> dict[str, CeleryProcess]:
    """Every Procfile process that runs `celery` (the workers and beat), its argv with the
    variables expanded and `celery` / `python` resolved to the given executables."""
    found: dict[str, CeleryProcess] = {}
    for name, command in procfile.items():
        argv = shlex.split(expand(command, env))
        if not argv or argv[0] != "celery":
            continue
        argv[0] = celery
        found[name] = CeleryProcess(name, [python if a == "python" else a for a in argv])
    return found
