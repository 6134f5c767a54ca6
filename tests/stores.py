"""What novitai keeps outside the database, raw as stored: every key and value of its caches and
of the broker (Redis, or the file cache and the SQLite broker file in embedded mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core.cache import caches


def _redis_contents(client: Any) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for raw_key in client.scan_iter("*"):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        kind = str(client.type(raw_key), "ascii")
        values: list[Any]
        if kind == "string":
            values = [client.get(raw_key)]
        elif kind == "hash":
            values = [b for pair in client.hgetall(raw_key).items() for b in pair]
        elif kind == "list":
            values = list(client.lrange(raw_key, 0, -1))
        elif kind == "set":
            values = list(client.smembers(raw_key))
        elif kind == "zset":
            values = list(client.zrange(raw_key, 0, -1))
        else:
            values = []
        found[key] = [v for v in values if v is not None]
    return found


def cache_is_redis() -> bool:
    return hasattr(caches["default"], "delete_pattern")


def cache_contents() -> dict[str, list[bytes]]:
    """Every entry of novitai's caches: key (or file) → its stored bytes."""
    if cache_is_redis():
        locations = {str(settings.CACHES[alias]["LOCATION"]) for alias in settings.NOVITAI_CACHES}
        found: dict[str, list[bytes]] = {}
        for location in sorted(locations):
            found.update(_redis_contents(redis.Redis.from_url(location)))
        return found
    return {
        str(path): [path.read_bytes()]
        for alias in settings.NOVITAI_CACHES
        for path in Path(str(settings.CACHES[alias]["LOCATION"])).glob("*")
        if path.is_file()
    }


def broker_contents() -> dict[str, list[bytes]]:
    """Every key of the Redis broker database, or the embedded broker's SQLite files."""
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith("redis"):
        return _redis_contents(redis.Redis.from_url(url))
    database = Path(urlsplit(url.removeprefix("sqla+")).path.removeprefix("/"))
    files = [database, database.with_name(database.name + "-wal")]
    return {str(f): [f.read_bytes()] for f in files if f.exists()}
