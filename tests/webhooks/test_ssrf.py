"""The SSRF guard: refused at validation, re-checked and pinned at every attempt."""

from __future__ import annotations

import ipaddress

import pytest

from novitai.errors import ValidationFailed
from tenants.models import Tenant
from tests.webhooks.support import Receiver, deliver, record
from webhooks import ssrf
from webhooks.models import AttemptResult, DeliveryStatus
from webhooks.ssrf import address_is_blocked, webhook_target_resolve, webhook_url_validate

PUBLIC = "93.184.215.14"


def _reason(url: str) -> str:
    with pytest.raises(ValidationFailed) as caught:
        webhook_url_validate(url)
    error = caught.value
    assert error.code == "invalid_webhook_url"
    assert error.status_code == 400
    assert list(error.details) == ["webhook_url"]
    assert len(error.details["webhook_url"]) == 1
    return str(error.details["webhook_url"][0])


@pytest.mark.usefixtures("guard_on")
@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1/hook", "127.0.0.1"),
        ("http://localhost:8080/hook", "127.0.0.1"),
        ("http://[::1]/hook", "::1"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:127.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.1/hook", "10.0.0.1"),
        ("http://100.64.0.1/hook", "100.64.0.1"),
        ("http://2130706433/hook", "127.0.0.1"),  # decimal
        ("http://0177.0.0.1/hook", "127.0.0.1"),  # octal
        ("http://0x7f.0.0.1/hook", "127.0.0.1"),  # hex
        ("http://127.1/hook", "127.0.0.1"),  # short form
        ("https://172.16.5.4/hook", "172.16.5.4"),
        ("https://192.168.1.1/hook", "192.168.1.1"),
        ("http://0.0.0.0:8080/hook", "0.0.0.0"),
        ("http://[::]/hook", "::"),
        ("http://224.0.0.1/hook", "224.0.0.1"),
        ("http://240.0.0.1/hook", "240.0.0.1"),
        ("http://[fd00:ec2::254]/hook", "fd00:ec2::254"),
        ("http://[fe80::1]/hook", "fe80::1"),
        ("http://[64:ff9b::7f00:1]/hook", "64:ff9b::7f00:1"),  # NAT64 of 127.0.0.1
        ("http://[2002:a00:1::]/hook", "2002:a00:1::"),  # 6to4 of 10.0.0.1
        ("http://[::ffff:169.254.169.254]/hook", "::ffff:169.254.169.254"),
    ],
)
def test_private_targets_are_refused(url: str, address: str) -> None:
    assert _reason(url) == f"the host resolves to a non-public address ({address})"


@pytest.mark.usefixtures("guard_on")
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "the scheme must be http or https"),
        ("file:///etc/passwd", "the scheme must be http or https"),
        ("gopher://example.com:70/", "the scheme must be http or https"),
        ("example.com/hook", "the scheme must be http or https"),
        ("https:///hook", "the URL has no host"),
        ("https://user:pw@example.com/hook", "credentials in the URL are not allowed"),
        ("https://token@example.com/hook", "credentials in the URL are not allowed"),
        ("https://example.com:99999/hook", "it is not a valid URL"),
        ("https://example.com:22/hook", "port 22 is not allowed; use 80, 443 or a port above 1023"),
        ("https://exa mple.com/hook", "it contains whitespace or control characters"),
        ("https://example.com/\nhook", "it contains whitespace or control characters"),
        ("https://[fe80::1%25eth0]/hook", "IPv6 zone identifiers are not allowed"),
        ("https://exa$mple.com/hook", "the host is not a valid name"),
        ("", "a URL is required"),
        ("https://example.com/" + "a" * 2048, "it is longer than 2048 characters"),
    ],
)
def test_malformed_urls_are_refused(url: str, reason: str) -> None:
    assert _reason(url) == reason


@pytest.mark.usefixtures("guard_on")
@pytest.mark.parametrize(
    "url",
    [
        f"https://{PUBLIC}/hook",
        f"http://{PUBLIC}:8080/hook?token=abc",
        "https://[2606:4700:4700::1111]/hook",
        "https://hooks.receiver.invalid/hook",  # does not resolve now: checked at delivery
        "HTTPS://Hooks.Example.COM./hook",
    ],
)
def test_public_or_unresolved_targets_are_accepted(url: str) -> None:
    webhook_url_validate(url)  # no exception


@pytest.mark.usefixtures("allow_private")
def test_private_targets_are_accepted_when_allowed() -> None:
    webhook_url_validate("http://127.0.0.1:8080/hook")
    webhook_url_validate("http://localhost:22/hook")
    assert _reason("ftp://127.0.0.1/") == "the scheme must be http or https"


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("1.1.1.1", False),
        (PUBLIC, False),
        ("2606:4700:4700::1111", False),
        ("::ffff:1.1.1.1", False),  # a mapped public IPv4 is that IPv4
        ("::ffff:10.1.2.3", True),
        ("100.127.255.254", True),
        ("198.18.0.1", True),
        ("192.0.0.192", True),
        ("168.63.129.16", True),
        ("2001::1", True),  # Teredo
        ("ff02::1", True),
    ],
)
def test_address_classification(address: str, blocked: bool) -> None:
    assert address_is_blocked(ipaddress.ip_address(address)) is blocked


@pytest.mark.usefixtures("guard_on")
def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssrf, "_getaddrinfo", lambda host, port: [PUBLIC, "10.0.0.7"])

    assert _reason("https://mixed.example/hook") == (
        "the host resolves to a non-public address (10.0.0.7)"
    )


@pytest.mark.usefixtures("guard_on")
def test_target_is_resolved_once_and_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssrf, "_getaddrinfo", lambda host, port: [PUBLIC])

    target = webhook_target_resolve("https://hooks.example.com/in?x=1")

    assert target.address == PUBLIC
    assert target.host == "hooks.example.com"
    assert target.host_header == "hooks.example.com"
    assert target.path == "/in?x=1"
    assert target.port == 443


@pytest.mark.django_db
@pytest.mark.usefixtures("guard_on")
def test_dns_rebinding_to_a_private_address_gets_no_connection(
    tenant: Tenant, sink: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    monkeypatch.setattr(ssrf, "_getaddrinfo", lambda host, port: next(answers))
    url = f"http://rebind.example:{sink.port}/hook"
    webhook_url_validate(url)  # public when the instance was created …
    delivery = record(tenant, url)

    attempt = deliver(delivery)  # … loopback at delivery time

    assert attempt.result == AttemptResult.BLOCKED
    assert attempt.error == (
        "The webhook URL is not allowed: the host resolves to a non-public address (127.0.0.1)."
    )
    assert attempt.address == ""
    assert attempt.status_code is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error == attempt.error
    assert sink.connections == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("guard_on")
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "127.1"])
def test_private_target_recorded_without_validation_gets_no_connection(
    tenant: Tenant, sink: Receiver, host: str
) -> None:
    delivery = record(tenant, f"http://{host}:{sink.port}/hook")

    attempt = deliver(delivery)

    assert attempt.result == AttemptResult.BLOCKED
    assert sink.connections == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("guard_on")
def test_redirect_to_a_private_address_gets_no_connection(
    tenant: Tenant, sink: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver reached by a public name answers with a redirect to a private address.
    This machine has no public receiver, so one on 127.0.0.2 stands for it: its name resolves
    there and that one address counts as public; every other address is classified as usual."""
    public_receiver = Receiver(bind="127.0.0.2")
    real_resolve, real_blocked = ssrf._getaddrinfo, ssrf.address_is_blocked

    def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.2"] if host == "hooks.example.com" else real_resolve(host, port)

    monkeypatch.setattr(ssrf, "_getaddrinfo", resolve)
    monkeypatch.setattr(
        ssrf, "address_is_blocked", lambda ip: str(ip) != "127.0.0.2" and real_blocked(ip)
    )
    public_receiver.default.status = 302
    public_receiver.default.headers = {"Location": sink.url("/latest/meta-data/")}
    try:
        delivery = record(tenant, public_receiver.url(host="hooks.example.com"))

        attempt = deliver(delivery)
    finally:
        public_receiver.close()

    assert attempt.result == AttemptResult.HTTP_ERROR
    assert attempt.status_code == 302
    assert attempt.address == "127.0.0.2"
    assert len(public_receiver.requests) == 1
    assert (
        public_receiver.requests[0].headers["host"] == f"hooks.example.com:{public_receiver.port}"
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert sink.connections == 0
    assert sink.requests == []
