"""Failed authentication is throttled: bad API keys per client address (429 with Retry-After),
repeated admin login failures locked out (django-axes) — and neither locks out anyone else."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from tenants.throttling import ApiKeyRateThrottle
from tests.novitai.test_auth import assert_envelope

pytestmark = pytest.mark.django_db

API_ROOT = "/api/v1/"
ATTACKER = "203.0.113.7"
# The middle of a one-minute window: Retry-After is exactly the 30 s left.
NOW = 1_800_000_030.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import tenants.auth_throttle

    class FrozenTime:
        @staticmethod
        def time() -> float:
            return NOW

    monkeypatch.setattr(tenants.auth_throttle, "time", FrozenTime)


def client_from(address: str, key: str, **extra: Any) -> APIClient:
    client = APIClient(REMOTE_ADDR=address, **extra)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def attempt(address: str, key: str) -> int:
    return int(client_from(address, key).get(API_ROOT).status_code)


def bad_key(api_key: str, n: int) -> str:
    prefix = api_key.split(".")[0]
    return f"{prefix}.{n:032d}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_bad_keys_are_throttled_per_address_and_a_good_key_elsewhere_is_served(
    api_key: str, clock: None
) -> None:
    invalid = sample("novitai_api_auth_failures_total", outcome="invalid")
    throttled = sample("novitai_api_auth_failures_total", outcome="throttled")

    statuses = [attempt(ATTACKER, bad_key(api_key, n)) for n in range(60)]
    assert statuses == [401] * 20 + [429] * 40

    response = client_from(ATTACKER, bad_key(api_key, 99)).get(API_ROOT)
    error = assert_envelope(response, 429, "throttled")
    assert response["Retry-After"] == "30"
    assert error["message"] == (
        "Too many failed authentications from this address. Expected available in 30 seconds."
    )
    # The throttled address is refused whatever it sends, a correct key too …
    assert_envelope(client_from(ATTACKER, api_key).get(API_ROOT), 429, "throttled")
    # … while the same key from another address is served, and a bad one there is a 401.
    assert client_from("198.51.100.20", api_key).get(API_ROOT).status_code == 200
    assert client_from("127.0.0.1", api_key).get(API_ROOT).status_code == 200
    assert_envelope(
        client_from("198.51.100.20", bad_key(api_key, 1)).get(API_ROOT),
        401,
        "authentication_failed",
    )
    assert sample("novitai_api_auth_failures_total", outcome="invalid") - invalid == 21
    assert sample("novitai_api_auth_failures_total", outcome="throttled") - throttled == 42


def test_malformed_credentials_count_as_failures(clock: None, settings: Any) -> None:
    settings.API_AUTH_FAILURE_RATE = "2/min"
    headers = ["Bearer", "Bearer a b", "Bearer not-a-key"]
    statuses = [
        APIClient(REMOTE_ADDR=ATTACKER, HTTP_AUTHORIZATION=h).get(API_ROOT).status_code
        for h in headers
    ]
    assert statuses == [401, 401, 429]


def test_no_credentials_are_not_counted(clock: None, settings: Any) -> None:
    settings.API_AUTH_FAILURE_RATE = "2/min"
    assert [APIClient(REMOTE_ADDR=ATTACKER).get(API_ROOT).status_code for _ in range(4)] == [
        401
    ] * 4


def test_forwarded_for_counts_only_behind_trusted_proxies(
    api_key: str, clock: None, settings: Any
) -> None:
    settings.API_AUTH_FAILURE_RATE = "2/min"
    # No proxy trusted: an X-Forwarded-For the attacker writes changes nothing.
    spoofed = [
        client_from(ATTACKER, bad_key(api_key, n), HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
        .get(API_ROOT)
        .status_code
        for n in range(3)
    ]
    assert spoofed == [401, 401, 429]
    # One proxy (10.0.0.2) in front: the address it appended is the client; what the client
    # put left of it is still its own claim.
    settings.TRUSTED_PROXY_COUNT = 1

    def via_proxy(client_address: str, key: str) -> int:
        forwarded = f"192.0.2.{len(key) % 7}, {client_address}"
        return int(
            client_from("10.0.0.2", key, HTTP_X_FORWARDED_FOR=forwarded).get(API_ROOT).status_code
        )

    assert [via_proxy("198.51.100.30", bad_key(api_key, n)) for n in range(3)] == [401, 401, 429]
    assert via_proxy("198.51.100.31", api_key) == 200


def dead_redis_cache() -> dict[str, Any]:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{port}/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }


def test_redis_down_fails_open_never_a_500(
    api_key: str, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.CACHES = {**settings.CACHES, "default": dead_redis_cache()}
    # The per-key rate throttle runs after authentication on the same cache; its own failing
    # open is not this test's (the resilience work makes window_hit fail open).
    monkeypatch.setattr(ApiKeyRateThrottle, "allow_request", lambda self, request, view: True)
    checks = sample("novitai_auth_throttle_failed_open_total", operation="check")
    records = sample("novitai_auth_throttle_failed_open_total", operation="record")
    caplog.set_level(logging.WARNING)

    statuses = [attempt(ATTACKER, bad_key(api_key, n)) for n in range(25)]
    assert statuses == [401] * 25
    assert client_from(ATTACKER, api_key).get(API_ROOT).status_code == 200
    assert sample("novitai_auth_throttle_failed_open_total", operation="check") - checks == 26
    assert sample("novitai_auth_throttle_failed_open_total", operation="record") - records == 25
    # The outage is one warning (novitai/outages.py), not one per request.
    warnings = [r.getMessage() for r in caplog.records if r.name == "novitai.outages"]
    assert len(warnings) == 1
    assert warnings[0].startswith("cache unreachable (ConnectionError")


# --- admin logins (django-axes) ------------------------------------------------------------------

PASSWORD = "the-right-password-42"


@pytest.fixture
def operator(django_user_model: Any, settings: Any) -> Any:
    # What is tested is the lockout, not the hasher: a fast one keeps 30 logins quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_superuser("ops", "ops@example.com", PASSWORD)


def admin_login(address: str, password: str) -> Any:
    client = Client(REMOTE_ADDR=address)
    response = client.post("/admin/login/?next=/admin/", {"username": "ops", "password": password})
    return response, client


def test_repeated_admin_login_failures_lock_the_account_out_from_that_address(
    operator: Any,
) -> None:
    statuses = [admin_login(ATTACKER, f"guess-{n}")[0].status_code for n in range(30)]
    # 200: the form again ("Please enter the correct username and password"); the 5th failure
    # (ADMIN_LOGIN_FAILURE_LIMIT) locks out.
    assert statuses == [200] * 4 + [429] * 26
    response, client = admin_login(ATTACKER, PASSWORD)
    assert response.status_code == 429
    assert "Account locked: too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # to the login page: not logged in
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.failures_since_start) == (
        "ops",
        ATTACKER,
        31,  # the right password during the lockout counts too
    )


def test_a_locked_out_attacker_does_not_lock_out_the_operator(operator: Any) -> None:
    for n in range(10):
        admin_login(ATTACKER, f"guess-{n}")
    response, client = admin_login("198.51.100.40", PASSWORD)
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200


def test_a_success_resets_the_failures(operator: Any) -> None:
    for _ in range(2):
        assert [admin_login(ATTACKER, f"g{n}")[0].status_code for n in range(4)] == [200] * 4
        assert admin_login(ATTACKER, PASSWORD)[0].status_code == 302
    assert AccessAttempt.objects.count() == 0


def test_admin_lockouts_leave_api_keys_alone_and_keys_leave_axes_alone(
    operator: Any, api_key: str, clock: None
) -> None:
    for n in range(10):
        admin_login(ATTACKER, f"guess-{n}")
    assert client_from(ATTACKER, api_key).get(API_ROOT).status_code == 200
    for n in range(5):
        client_from("198.51.100.50", bad_key(api_key, n)).get(API_ROOT)
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [ATTACKER]


def test_sessions_made_by_the_test_suite_still_work(staff_client: APIClient) -> None:
    assert get_user_model().objects.get(username="operator").is_staff
    assert staff_client.get("/admin/").status_code == 200
    assert staff_client.get(API_ROOT).status_code == 200
