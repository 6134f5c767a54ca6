"""The SSRF guard for webhook targets (docs/architecture.md §8).

A webhook URL is the caller's input, and novitai's workers sit inside a network that holds the
database, the broker and the cloud metadata service. So a target must be http(s), carry no
credentials, and — unless WEBHOOK_ALLOW_PRIVATE_TARGETS — every address its host resolves to
must be publicly routable. The check runs when the URL is accepted and again before every
attempt; the attempt then connects to the very address that was checked (webhooks.transport
pins it), so a DNS answer that changes in between (rebinding) cannot move the connection.

Host spellings such as "2130706433", "0177.0.0.1", "0x7f.1" or "127.1" are resolved by the
system resolver exactly as a connection would resolve them, and the addresses it returns are
what is checked; IPv4-mapped, NAT64, 6to4 and Teredo IPv6 forms are unwrapped to their IPv4.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from novitai.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048

# Ranges refused on top of what `ipaddress` calls private, loopback, link-local, multicast,
# reserved or unspecified (several are listed there only on newer Pythons).
BLOCKED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT: reaches internal workloads on some clouds
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata at 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments (Oracle metadata 192.0.0.192)
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "168.63.129.16/32",  # Azure platform endpoint (metadata, DNS)
        "::/128",
        "::1/128",
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0/96",  # IPv4-mapped (unwrapped before the check too)
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",
        "2002::/16",  # 6to4
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",  # unique local (AWS metadata fd00:ec2::254)
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")


@dataclass(frozen=True)
class WebhookTarget:
    """A checked target: where to connect (`address`) and what to call it (`host`)."""

    scheme: str
    host: str  # the name from the URL: Host header, TLS SNI and certificate check
    port: int
    path: str  # path and query, as sent on the request line
    addresses: tuple[str, ...]  # every address the host resolved to, all checked

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _invalid(reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"The webhook URL is not allowed: {reason}.",
        code="invalid_webhook_url",
        details={"webhook_url": [reason]},
    )


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4, Teredo client), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _blocked(ip: IPAddress) -> bool:
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
        or any(ip in net for net in BLOCKED_NETWORKS if net.version == ip.version)
    )


def address_is_blocked(ip: IPAddress) -> bool:
    """True when a connection to `ip` could reach something that is not the public internet.
    An IPv4-mapped IPv6 address is its IPv4 address; the other IPv6 forms that carry an IPv4
    address (NAT64, 6to4, Teredo) are refused outright, and their IPv4 is checked as well."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _blocked(ip.ipv4_mapped)
    return _blocked(ip) or _blocked(_unwrap(ip))


def _getaddrinfo(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host` (tests substitute it to simulate rebinding)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


def _parse(url: object) -> tuple[SplitResult, str, int]:  # noqa: C901, PLR0912 - one refusal per kind of unsafe URL
    if not isinstance(url, str) or not url:
        raise _invalid("a URL is required")
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"it is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise _invalid("it contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("it is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise _invalid("the scheme must be http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _invalid("credentials in the URL are not allowed")
    host = parts.hostname or ""
    if not host:
        raise _invalid("the URL has no host")
    if "%" in host:
        raise _invalid("IPv6 zone identifiers are not allowed")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid("the host is not a valid IPv6 address") from None
    else:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _invalid("the host is not a valid name") from None
        if not _HOSTNAME.match(host):
            raise _invalid("the host is not a valid name")
    port = port if port is not None else DEFAULT_PORTS[scheme]
    if port == 0:
        raise _invalid("port 0 is not allowed")
    if (
        not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS
        and port < 1024
        and port not in DEFAULT_PORTS.values()
    ):
        raise _invalid(f"port {port} is not allowed; use 80, 443 or a port above 1023")
    return parts, host, port


def _check_addresses(host: str, addresses: list[str]) -> tuple[str, ...]:
    if not addresses:
        raise _invalid(f"the host {host!r} has no address")
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        for address in addresses:
            if address_is_blocked(ipaddress.ip_address(address)):
                raise _invalid(f"the host resolves to a non-public address ({address})")
    return tuple(addresses)


def webhook_url_validate(url: str) -> None:
    """Refuses a webhook URL that must never be called; raises ValidationFailed
    (code "invalid_webhook_url", details {"webhook_url": [reason]}).

    A name that does not resolve now is accepted (it is checked again, and pinned, before every
    delivery attempt); one that resolves to a non-public address is refused."""
    _, host, port = _parse(url)
    try:
        addresses = _getaddrinfo(host, port)
    except (OSError, UnicodeError):
        return
    _check_addresses(host, addresses)


def webhook_target_resolve(url: str) -> WebhookTarget:
    """The checked target of one attempt: resolves the host once, refuses it unless every
    address is allowed, and returns the addresses to connect to. Raises ValidationFailed when
    refused, OSError (socket.gaierror) when the name does not resolve."""
    parts, host, port = _parse(url)
    addresses = _getaddrinfo(host, port)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookTarget(
        scheme=parts.scheme.lower(),
        host=host,
        port=port,
        path=path,
        addresses=_check_addresses(host, addresses),
    )
