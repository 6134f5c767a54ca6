"""Every cache stores JSON, never pickle: a value written into the cache by someone else is
never run, and everything novitai caches round-trips through JSON."""

from __future__ import annotations

import pickle
import time
import zlib
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches

from catalog.caches import NamedCache
from catalog.selectors import OfferSelection
from catalog.services import CatalogSnapshot, TemplateConfig
from tests.stores import cache_is_redis

RAN: list[str] = []


def _run(marker: str) -> None:
    RAN.append(marker)


class Payload:
    """Unpickling it calls _run: what an attacker's pickle would do with os.system."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_run, ("unpickled",))


def plant(alias: str, key: str) -> None:
    """Writes a pickle under `key` the way the backend's own pickling would have stored it."""
    cache: Any = caches[alias]
    if cache_is_redis():
        cache.client.get_client(write=True).set(cache.make_key(key), pickle.dumps(Payload()))
        return
    path = cache._key_to_file(key)
    cache._createdir()
    with open(path, "wb") as f:
        f.write(pickle.dumps(None) + zlib.compress(pickle.dumps(Payload())))


@pytest.mark.parametrize("alias", settings.NOVITAI_CACHES)
def test_a_pickle_planted_in_the_cache_is_never_loaded(alias: str) -> None:
    RAN.clear()
    plant(alias, "planted")
    assert caches[alias].get("planted", "absent") in ("absent", None)
    plant(alias, "planted")
    assert NamedCache(alias).get("planted", "absent") == "absent"
    assert RAN == []


@pytest.mark.parametrize(
    "value", [Decimal("1.5"), {"a": object()}, CatalogSnapshot(version=1, last_success_at=None)]
)
def test_a_value_json_cannot_hold_is_refused_and_nothing_is_stored(value: Any) -> None:
    cache = caches["catalog"]
    with pytest.raises(TypeError):
        cache.set("refused", value)
    assert cache.get("refused", "absent") == "absent"


@pytest.mark.parametrize(
    "value", [0, 7, -3, 2.5, "text", "123", True, False, None, [1, "a", None], {"k": [{}]}]
)
def test_json_values_round_trip(value: Any) -> None:
    for alias in settings.NOVITAI_CACHES:
        cache = caches[alias]
        cache.set("value", value)
        # django-prometheus' file cache answers its default for a falsy value: NamedCache wraps.
        assert cache.get("value", "missing") in (value, "missing")
        NamedCache(alias).set("named", value, ttl=60)
        assert NamedCache(alias).get("named", "missing") == value


def test_a_file_cache_touch_keeps_the_value(settings: Any, tmp_path: Any) -> None:
    from novitai.cache_backends import FileBasedCache

    cache = FileBasedCache(str(tmp_path), {})
    cache.set("k", {"a": [1, 2, 3]}, timeout=5)
    assert cache.touch("k", timeout=3600)
    assert cache.get("k") == {"a": [1, 2, 3]}
    header = next(tmp_path.glob("*.djcache")).read_bytes().split(b"\n", 1)[0]
    assert 3500 < float(header) - time.time() <= 3600


def test_from_json_refuses_what_to_json_did_not_write() -> None:
    garbage: Any
    for garbage in (None, 3, "x", [], {"version": "a"}, {"offers": [{"x": 1}], "rejected": []}):
        assert CatalogSnapshot.from_json(garbage) is None
        assert TemplateConfig.from_json(garbage) is None
        assert OfferSelection.from_json(garbage) is None
