"""Locks that die with their holder, for work that must not run twice at once (the monitor pass).

A lock with a TTL outlives a holder that was killed by up to its TTL, and during that time nobody
does the work; a lock that only its holder frees is worse. These die with the holder's process:

- Postgres: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of its own,
  opened for the block and closed after it. When the holder dies, its socket closes, the server
  ends the session and the lock is free at once; a holder whose host vanished is noticed by the
  server's TCP keepalives, set short on that session.
- SQLite (embedded mode, one machine): an `flock` on a file in NOVITAI_VAR_DIR/locks, which the
  kernel releases when the holding process ends.

Both are tried without waiting: the block learns whether it holds the lock, and a second holder
in the same process (another thread, or a nested call) is refused too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

# Server-side keepalives of the lock's session (seconds): a holder whose machine is gone without
# closing its socket frees the lock after about idle + interval * count.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 1, 3


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for the name (advisory locks are per database)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def held_lock(name: str) -> Iterator[bool]:
    """Yields True while this block holds the lock `name`, False (at once) when another holds it."""
    if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
        with _advisory_lock(name) as held:
            yield held
    else:
        with _file_lock(name) as held:
            yield held


@contextlib.contextmanager
def _advisory_lock(name: str) -> Iterator[bool]:
    connection = connections.create_connection(DEFAULT_DB_ALIAS)  # not shared with anything
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('tcp_keepalives_idle', %s, false),"
                " set_config('tcp_keepalives_interval', %s, false),"
                " set_config('tcp_keepalives_count', %s, false),"
                " pg_try_advisory_lock(%s)",
                [
                    str(KEEPALIVE_IDLE),
                    str(KEEPALIVE_INTERVAL),
                    str(KEEPALIVE_COUNT),
                    _lock_key(name),
                ],
            )
            row = cursor.fetchone()
        yield bool(row and row[-1])
    finally:
        connection.close()  # ends the session: the lock goes with it


@contextlib.contextmanager
def _file_lock(name: str) -> Iterator[bool]:
    directory = settings.VAR_DIR / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the flock
