"""The CLI's HTTP client: one `requests` session, default timeouts, errors as two exceptions.

`ApiError` is an answer that is not 2xx (the error envelope, or what came instead of it);
`Unreachable` is no answer at all. The API key goes in the Authorization header only: it is
never part of a message, an exception or the verbose trace.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import IO, Any

import requests

VERSION = "0.1.0"
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0


@dataclass
class ApiError(Exception):
    """A 4xx or 5xx: the envelope's code, message, details and request id."""

    status: int
    code: str
    message: str
    details: Any = None
    request_id: str = ""
    body: Any = None
    retry_after: str = ""

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    @property
    def transient(self) -> bool:
        """Worth asking again later (while waiting): throttled, or the server is unwell."""
        return self.status == 429 or self.status >= 500


@dataclass
class Unreachable(Exception):
    """No HTTP answer: refused, timed out, not resolvable, TLS failure."""

    url: str
    reason: str

    def __str__(self) -> str:
        return f"cannot reach novitai at {self.url}: {self.reason}"


@dataclass
class Page:
    """One page of a list: DRF's {count, next, previous, results}."""

    count: int
    results: list[dict[str, Any]]
    has_next: bool
    body: dict[str, Any] = field(default_factory=dict)


def _reason(exc: requests.RequestException) -> str:
    """A short cause, without urllib3's nested reprs."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "No route to host",
        "Temporary failure in name resolution",
        "Connection reset",
        "nodename nor servname provided",
        "certificate verify failed",
    ):
        if marker in text:
            return marker.lower()
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return "not a valid URL"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _error(response: requests.Response) -> ApiError:
    request_id = response.headers.get("X-Request-ID", "")
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict):
        return ApiError(
            status=response.status_code,
            code=str(envelope.get("code") or f"http_{response.status_code}"),
            message=str(envelope.get("message") or response.reason),
            details=envelope.get("details"),
            request_id=str(envelope.get("request_id") or request_id),
            body=body,
            retry_after=response.headers.get("Retry-After", ""),
        )
    # Not novitai's envelope (a proxy, a wrong URL): the first line of what came.
    text = " ".join(response.text.split())[:200]
    return ApiError(
        status=response.status_code,
        code=f"http_{response.status_code}",
        message=text or response.reason or "no body",
        request_id=request_id,
        body=body,
        retry_after=response.headers.get("Retry-After", ""),
    )


class Client:
    """novitai's API at `base_url` (e.g. http://127.0.0.1:8000), as a tenant."""

    def __init__(self, base_url: str, api_key: str, *, trace: IO[str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.trace = trace
        self.session = requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"novitai-cli/{VERSION} requests/{requests.__version__}",
            }
        )

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The decoded JSON body of a 2xx (None when empty); ApiError or Unreachable."""
        url = f"{self.base_url}/api/v1/{path.lstrip('/')}"
        params = {k: v for k, v in (params or {}).items() if v is not None}
        started = time.monotonic()
        if self.trace is not None:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            print(f"> {method} {url}{'?' + query if query else ''}", file=self.trace)
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise Unreachable(self.base_url, _reason(exc)) from None
        if self.trace is not None:
            elapsed_ms = (time.monotonic() - started) * 1000
            request_id = response.headers.get("X-Request-ID", "-")
            print(
                f"< {response.status_code} {response.reason} in {elapsed_ms:.0f} ms "
                f"(request_id {request_id})",
                file=self.trace,
            )
        if not 200 <= response.status_code < 300:
            raise _error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                status=response.status_code,
                code="invalid_response",
                message="The answer is not JSON: is the URL novitai's?",
                request_id=response.headers.get("X-Request-ID", ""),
            ) from None

    def page(self, path: str, params: dict[str, Any] | None = None) -> Page:
        body = self.request("GET", path, params=params)
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise ApiError(
                status=200, code="invalid_response", message=f"Not a list page: {json.dumps(body)}"
            )
        return Page(
            count=int(body.get("count") or 0),
            results=body["results"],
            has_next=bool(body.get("next")),
            body=body,
        )

    def every(
        self, path: str, params: dict[str, Any] | None = None, *, page_size: int = 200
    ) -> tuple[int, list[dict[str, Any]]]:
        """Every item of a paginated list, following the pages: (count, items)."""
        items: list[dict[str, Any]] = []
        number = 1
        while True:
            page = self.page(path, {**(params or {}), "page": number, "page_size": page_size})
            items.extend(page.results)
            if not page.has_next:
                return page.count, items
            number += 1
