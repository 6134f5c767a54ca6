"""The one way webhook deliveries leave novitai: a single POST, pinned to a checked address.

Each attempt resolves the target once through the SSRF guard and connects to the address that
was checked, with the URL's name in the Host header, the TLS SNI and the certificate check — as
saleor's requests-hardened does — so that no second DNS lookup can move the connection.
Redirects are never followed, nothing is retried here (the delivery schedule retries), every
attempt has a connect timeout and an overall deadline, and at most RESPONSE_READ_LIMIT bytes of
the answer are read.

The deadline bounds the whole attempt whatever the receiver does. A socket timeout bounds each
read, not their sum: a receiver sending a byte every two seconds would hold an attempt for as long
as it likes. So the name is resolved in a thread that is not waited for past the deadline, and
every socket of the attempt is watched (`_Deadline`): at the deadline it is shut down, which ends
whatever read or write is blocked on it — the TLS handshake, the status line, the headers, the
body. A receiver whose status line and headers arrived in time has answered (its body is only an
excerpt), one that had not has timed out.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from novitai.errors import ValidationFailed
from webhooks.ssrf import WebhookTarget, webhook_target_resolve

RESPONSE_READ_LIMIT = 4096
# Addresses of one name tried in turn when connecting fails (nothing was sent yet).
MAX_ADDRESSES = 3
_READ_CHUNK = 1024


class FailureKind(StrEnum):
    BLOCKED = "blocked"  # the SSRF guard refused the target
    DNS_ERROR = "dns_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TLS_ERROR = "tls_error"


@dataclass(frozen=True)
class PostResult:
    """A receiver answered. `body` holds at most RESPONSE_READ_LIMIT bytes of its answer."""

    status: int
    retry_after: str | None
    body: bytes
    address: str
    latency_ms: int


class PostFailed(Exception):
    """No answer: refused by the guard, unresolvable, timed out, connection or TLS failure."""

    def __init__(self, kind: FailureKind, message: str, *, address: str = "", latency_ms: int = 0):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.address = address
        self.latency_ms = latency_ms


class _Deadline:
    """Shuts down every socket it watches when the attempt's deadline comes (a timer thread): a
    blocked read or write on it returns at once. shutdown() acts on the connection itself, so a
    duplicate of the socket is watched and the TLS wrapping of the original does not matter."""

    def __init__(self, deadline: float, *, seconds: float) -> None:
        self.seconds = seconds  # the whole attempt's
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            duplicate = sock.dup()
            self._sockets.append(duplicate)
            if self.expired:
                self._shutdown(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by the other end
            sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _watched(base: type[HTTPConnection], deadline: _Deadline) -> Any:
    """The pool's connection class, every new socket of it watched by `deadline`."""

    class Watched(base):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            deadline.watch(sock)
            return sock

    return Watched


def _resolve(url: str, seconds: float) -> WebhookTarget:
    """webhook_target_resolve within `seconds`: a resolver that takes longer is left behind (a
    daemon thread that ends with the lookup's own timeout). Raises as it does, or PostFailed."""
    result: list[WebhookTarget | BaseException] = []

    def lookup() -> None:
        try:
            result.append(webhook_target_resolve(url))
        except BaseException as exc:  # handed over to the caller's thread
            result.append(exc)

    worker = threading.Thread(target=lookup, name="webhook-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, seconds))
    if not result:
        raise PostFailed(
            FailureKind.DNS_ERROR, f"The host name did not resolve within {seconds:g} s."
        )
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _pool(
    target: WebhookTarget, address: str, timeout: urllib3.Timeout, deadline: _Deadline
) -> urllib3.HTTPConnectionPool:
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.WEBHOOK_CA_BUNDLE or None,
            server_hostname=target.host,  # TLS SNI
            assert_hostname=target.host,  # the certificate must name the host, not the IP
        )
        pool.ConnectionCls = _watched(HTTPSConnection, deadline)
        return pool
    pool = urllib3.HTTPConnectionPool(
        address, target.port, timeout=timeout, retries=False, maxsize=1
    )
    pool.ConnectionCls = _watched(HTTPConnection, deadline)
    return pool


class _NotConnected(Exception):
    """The connection to one address failed before anything was sent: another may do."""

    def __init__(self, failure: PostFailed) -> None:
        super().__init__(failure.message)
        self.failure = failure


def webhook_post(
    *, url: str, body: bytes, headers: dict[str, str], timeout_seconds: float
) -> PostResult:
    """POSTs `body` to `url` once. Returns the answer whatever its status; raises PostFailed
    when there is none. The checked addresses are tried in the resolver's order while
    connecting fails (nothing was sent yet), all within the one deadline."""
    started = time.monotonic()
    deadline = started + timeout_seconds
    try:
        target = _resolve(url, timeout_seconds)
    except PostFailed as unresolved:
        unresolved.latency_ms = _ms(started)
        raise
    except ValidationFailed as exc:
        raise PostFailed(FailureKind.BLOCKED, exc.message, latency_ms=_ms(started)) from None
    except (OSError, UnicodeError):
        raise PostFailed(
            FailureKind.DNS_ERROR, "The host name does not resolve.", latency_ms=_ms(started)
        ) from None

    failure: PostFailed | None = None
    for address in list(dict.fromkeys(target.addresses))[:MAX_ADDRESSES]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        watchdog = _Deadline(deadline, seconds=timeout_seconds)
        try:
            return _post_to(target, address, body, headers, started, watchdog, remaining)
        except _NotConnected as exc:
            failure = exc.failure
        finally:
            watchdog.close()
    if failure is None:
        failure = PostFailed(
            FailureKind.TIMEOUT, f"No answer within {timeout_seconds:g} s.", latency_ms=_ms(started)
        )
    raise failure


def _post_to(  # noqa: C901 - each stage of an attempt and its failure
    target: WebhookTarget,
    address: str,
    body: bytes,
    headers: dict[str, str],
    started: float,
    deadline: _Deadline,
    remaining: float,
) -> PostResult:
    timeout = urllib3.Timeout(
        total=remaining, connect=min(settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, remaining)
    )
    pool = _pool(target, address, timeout, deadline)

    def failed(kind: FailureKind, message: str) -> PostFailed:
        if deadline.expired:  # whatever broke, the deadline cut it
            kind, message = FailureKind.TIMEOUT, f"No answer within {deadline.seconds:g} s."
        return PostFailed(kind, message, address=address, latency_ms=_ms(started))

    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
        )
        received = bytearray()
        try:
            while len(received) < RESPONSE_READ_LIMIT and not deadline.expired:
                chunk = response.read(min(_READ_CHUNK, RESPONSE_READ_LIMIT - len(received)))
                if not chunk:
                    break
                received += chunk
        except (HTTPError, OSError):
            pass  # the status line and headers arrived: that is the answer; the body is cut
        finally:
            response.close()
        return PostResult(
            status=response.status,
            retry_after=response.headers.get("Retry-After"),
            body=bytes(received),
            address=address,
            latency_ms=_ms(started),
        )
    except SSLError as exc:
        raise failed(FailureKind.TLS_ERROR, f"TLS error: {_reason(exc)}") from None
    except NewConnectionError as exc:
        raise _NotConnected(
            failed(FailureKind.CONNECTION_ERROR, f"Connection failed: {_reason(exc)}")
        ) from None
    except ConnectTimeoutError:
        raise _NotConnected(
            failed(FailureKind.TIMEOUT, f"Could not connect within {timeout.connect_timeout:g} s.")
        ) from None
    except ReadTimeoutError:
        raise failed(FailureKind.TIMEOUT, f"No answer within {deadline.seconds:g} s.") from None
    except (HTTPError, OSError) as exc:
        raise failed(FailureKind.CONNECTION_ERROR, f"Connection failed: {_reason(exc)}") from None
    finally:
        pool.close()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _reason(exc: BaseException) -> str:
    """A short description of a low-level error, without the URL."""
    inner = getattr(exc, "reason", None) or exc.__context__ or exc
    text = type(inner).__name__
    detail = getattr(inner, "strerror", None) or getattr(inner, "reason", None)
    return f"{text} ({detail})" if isinstance(detail, str) and detail else text
