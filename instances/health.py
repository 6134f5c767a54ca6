"""Health checks of an instance's application: http ports by GET, tcp ports by connect.

An http check passes when the status is accepted (default 200-399; redirects are not followed)
and the body is not a proxy's error page: Novita's edge answers for a container that is not
listening yet, sometimes with a 200 whose body says "502 Bad Gateway". urllib3 directly (the
Novita client owns `requests`); every check has a timeout.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3

logger = logging.getLogger(__name__)

USER_AGENT = "novitai-health-check/1"
# Bytes of the body read to recognise a proxy's error page.
BODY_SNIFF_BYTES = 4096
# Phrases of the error pages of nginx, Envoy, Cloudflare, Traefik and friends.
PROXY_ERROR_MARKERS = (
    "502 bad gateway",
    "503 service temporarily unavailable",
    "503 service unavailable",
    "504 gateway time-out",
    "504 gateway timeout",
    "no healthy upstream",
    "upstream connect error",
    "upstream request timeout",
    "error code: 502",
    "error code: 521",
    "error code: 522",
)


@dataclass(frozen=True)
class CheckTarget:
    port: int
    type: str  # "http" | "tcp"
    url: str  # the endpoint Novita gives: "http(s)://host[:port]/…" or "host:port"


@dataclass(frozen=True)
class CheckResult:
    port: int
    healthy: bool
    detail: str


def is_proxy_error_page(body: bytes) -> bool:
    text = body[:BODY_SNIFF_BYTES].decode("utf-8", errors="replace").casefold()
    return any(marker in text for marker in PROXY_ERROR_MARKERS)


def status_accepted(status: int, expected: Sequence[Sequence[int]]) -> bool:
    return any(low <= status <= high for low, high in expected)


_pool = urllib3.PoolManager(num_pools=64, maxsize=16, retries=False, block=False)


def http_url(endpoint: str, path: str) -> str:
    base = endpoint if "://" in endpoint else f"http://{endpoint}"
    return base.rstrip("/") + (path if path.startswith("/") else f"/{path}")


def check_http(
    *, port: int, endpoint: str, path: str, expected: Sequence[Sequence[int]], timeout: float
) -> CheckResult:
    url = http_url(endpoint, path)
    try:
        response = _pool.request(
            "GET",
            url,
            headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
            redirect=False,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            preload_content=False,
        )
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        return CheckResult(port, False, f"GET failed: {type(exc).__name__}")
    try:
        body = response.read(BODY_SNIFF_BYTES, decode_content=True) or b""
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return CheckResult(port, False, f"reading the answer failed: {type(exc).__name__}")
    finally:
        response.release_conn()
    status = response.status
    if not status_accepted(status, expected):
        return CheckResult(port, False, f"HTTP {status}")
    if is_proxy_error_page(body):
        return CheckResult(port, False, f"HTTP {status} with a proxy error page")
    return CheckResult(port, True, f"HTTP {status}")


def _host_port(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint if "://" in endpoint else f"tcp://{endpoint}")
    if not parts.hostname or parts.port is None:
        raise ValueError(f"not host:port: {endpoint!r}")
    return parts.hostname, parts.port


def check_tcp(*, port: int, endpoint: str, timeout: float) -> CheckResult:
    try:
        host, target_port = _host_port(endpoint)
        with socket.create_connection((host, target_port), timeout=timeout):
            return CheckResult(port, True, "connected")
    except (OSError, ValueError) as exc:
        return CheckResult(port, False, f"connect failed: {type(exc).__name__}")


def check_endpoint(
    target: CheckTarget, *, path: str, expected: Sequence[Sequence[int]], timeout: float
) -> CheckResult:
    if not target.url:
        return CheckResult(target.port, False, "no endpoint yet")
    if target.type == "tcp":
        return check_tcp(port=target.port, endpoint=target.url, timeout=timeout)
    return check_http(
        port=target.port, endpoint=target.url, path=path, expected=expected, timeout=timeout
    )


@dataclass(frozen=True)
class CheckPlan:
    """One instance's checks: what to check, and how."""

    key: Any  # the caller's handle (an instance id)
    targets: tuple[CheckTarget, ...]
    path: str
    expected: tuple[tuple[int, int], ...]
    timeout: float


def run_checks(plans: Sequence[CheckPlan], *, workers: int) -> dict[Any, list[CheckResult]]:
    """Every target of every plan, concurrently in a small thread pool."""
    jobs = [(plan, target) for plan in plans for target in plan.targets]
    results: dict[Any, list[CheckResult]] = {plan.key: [] for plan in plans}
    if not jobs:
        return results
    with ThreadPoolExecutor(
        max_workers=max(1, min(workers, len(jobs))), thread_name_prefix="health-check"
    ) as pool:
        futures = [
            (
                plan.key,
                pool.submit(
                    check_endpoint,
                    target,
                    path=plan.path,
                    expected=plan.expected,
                    timeout=plan.timeout,
                ),
            )
            for plan, target in jobs
        ]
        for key, future in futures:
            results[key].append(future.result())
    return results
