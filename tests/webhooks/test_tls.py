"""HTTPS deliveries connect to the pinned address and check the certificate against the name."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from standardwebhooks import Webhook

from tenants.models import Tenant
from tests.webhooks.support import Receiver, deliver, record
from webhooks import ssrf
from webhooks.models import AttemptResult, DeliveryAttempt, DeliveryStatus, WebhookDelivery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("allow_private")]


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted_ca(ca: trustme.CA, tmp_path: Path, settings) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    settings.WEBHOOK_CA_BUNDLE = str(bundle)


def _deliver_over_tls(
    tenant: Tenant, ca: trustme.CA, *, cert_name: str, url_host: str
) -> tuple[Receiver, WebhookDelivery, DeliveryAttempt]:
    """One attempt to an HTTPS receiver whose certificate names `cert_name`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_name).configure_cert(context)
    receiver = Receiver(tls_context=context)
    try:
        delivery = record(tenant, receiver.url(host=url_host))
        attempt = deliver(delivery)
    finally:
        receiver.close()
    delivery.refresh_from_db()
    return receiver, delivery, attempt


@pytest.fixture
def hooks_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """hooks.test resolves to loopback, through the guard's resolver only: a connection that
    resolved the name again would fail (this machine's resolver does not know it)."""
    real = ssrf._getaddrinfo
    monkeypatch.setattr(
        ssrf,
        "_getaddrinfo",
        lambda host, port: ["127.0.0.1"] if host == "hooks.test" else real(host, port),
    )
    return "hooks.test"


@pytest.mark.usefixtures("trusted_ca")
def test_https_delivery_pins_the_address_and_verifies_the_name(
    tenant: Tenant, ca: trustme.CA, hooks_name: str
) -> None:
    receiver, delivery, attempt = _deliver_over_tls(
        tenant, ca, cert_name=hooks_name, url_host=hooks_name
    )

    assert attempt.result == AttemptResult.SUCCESS
    assert attempt.address == "127.0.0.1"
    assert receiver.server_names == [hooks_name]  # TLS SNI carries the name, not the IP
    sent = receiver.requests[0]
    assert sent.headers["host"] == f"{hooks_name}:{receiver.port}"
    Webhook(tenant.webhook_secret).verify(sent.body, sent.headers)
    assert delivery.status == DeliveryStatus.DELIVERED


@pytest.mark.usefixtures("trusted_ca")
def test_https_certificate_for_another_name_is_refused(
    tenant: Tenant, ca: trustme.CA, hooks_name: str
) -> None:
    receiver, delivery, attempt = _deliver_over_tls(
        tenant, ca, cert_name="someone-else.test", url_host=hooks_name
    )

    assert attempt.result == AttemptResult.TLS_ERROR
    assert attempt.error.startswith("TLS error: ")
    assert receiver.requests == []
    assert delivery.status == DeliveryStatus.PENDING


def test_https_certificate_from_an_untrusted_ca_is_refused(
    tenant: Tenant, ca: trustme.CA, hooks_name: str
) -> None:
    receiver, delivery, attempt = _deliver_over_tls(
        tenant, ca, cert_name=hooks_name, url_host=hooks_name
    )

    assert attempt.result == AttemptResult.TLS_ERROR
    assert receiver.requests == []
    assert delivery.status == DeliveryStatus.PENDING
