"""novitai's caches store JSON, never pickle.

Django's FileBasedCache and django-redis pickle by default: whoever can write to the cache
(a Redis reachable on the network, the cache folder) could then run code in every web and worker
process that reads from it. Here both store JSON:

- `JSONSerializer`, django-redis's SERIALIZER (integers are still stored raw, so INCR works);
- `FileBasedCache`, django-prometheus' file cache (its hit and miss metrics) writing a JSON line
  (the expiry) and a JSON body instead of two pickles.

Only JSON's own types round-trip — dicts with string keys, lists, strings, numbers, booleans,
None; a tuple comes back as a list. Anything else (a dataclass, a Decimal, a datetime, a model)
is refused when stored (TypeError), so every cache user converts explicitly. An entry that is
not JSON (written by something else, an older pickle) reads as absent and is logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import IO, Any, cast

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache as DjangoFileBasedCache
from django.core.files import locks
from django_prometheus.cache.backends.filebased import FileBasedCache as PrometheusFileBasedCache
from django_redis.serializers.base import BaseSerializer

logger = logging.getLogger(__name__)


def dumps(value: Any) -> bytes:
    """JSON of `value`; TypeError for anything that is not plain JSON data."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes, default: Any = None) -> Any:
    """The value of a JSON entry; `default` (and a warning) for anything else."""
    try:
        return json.loads(data)
    except ValueError:  # UnicodeDecodeError is one too
        logger.warning("a cache entry is not JSON (%d bytes); treated as absent", len(data))
        return default


class JSONSerializer(BaseSerializer):
    """django-redis: OPTIONS["SERIALIZER"] = "novitai.cache_backends.JSONSerializer"."""

    def dumps(self, value: Any) -> bytes:
        return dumps(value)

    def loads(self, value: bytes) -> Any:
        return loads(value)


class JSONFileBasedCache(DjangoFileBasedCache):
    """Django's file cache with `<expiry as JSON>\\n<value as JSON>` files (the same names: a
    pickled file left from before is not JSON, so it is deleted when first read)."""

    def _file(self, key: str, version: int | None) -> str:
        return str(cast(Any, self)._key_to_file(key, version))  # private: not in the stubs

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        try:
            with open(self._file(key, version), "rb") as f:
                if not self._is_expired(f):
                    return loads(f.read(), default)
        except FileNotFoundError:
            pass
        return default

    def _write_content(self, file: IO[bytes], timeout: Any, value: Any) -> None:
        body = dumps(value)  # before anything is written: a refused value leaves no file
        file.write(dumps(self.get_backend_timeout(timeout)) + b"\n")
        file.write(body)

    def touch(
        self, key: str, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        try:
            with open(self._file(key, version), "r+b") as f:
                try:
                    locks.lock(f, locks.LOCK_EX)
                    if self._is_expired(f):
                        return False
                    value = loads(f.read())
                    f.seek(0)
                    f.truncate()
                    self._write_content(f, timeout, value)
                    return True
                finally:
                    locks.unlock(f)
        except FileNotFoundError:
            return False

    def _is_expired(self, f: IO[bytes]) -> bool:
        """Deletes the file if it is expired, or not one of ours."""
        header = f.readline()
        try:
            expiry = json.loads(header) if header else 0
        except ValueError:
            expiry = 0
        if not (expiry is None or isinstance(expiry, int | float)):
            expiry = 0
        if expiry is not None and expiry < time.time():
            f.close()
            cast(Any, self)._delete(f.name)
            return True
        return False


class FileBasedCache(PrometheusFileBasedCache, JSONFileBasedCache):
    """settings.CACHES BACKEND in embedded mode: django-prometheus' metrics, JSON files."""
