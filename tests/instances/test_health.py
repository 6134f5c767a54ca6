"""Health-check classification against a real HTTP server on loopback (and the sandbox's app)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instances.health import (
    CheckPlan,
    CheckTarget,
    check_endpoint,
    is_proxy_error_page,
    run_checks,
)

DEFAULT = ((200, 399),)

ROUTES: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "/ok": (200, b'{"status": "ok"}', {}),
    "/nginx": (200, b"<html><head><title>502 Bad Gateway</title></head></html>", {}),
    "/envoy": (200, b"upstream connect error or disconnect/reset before headers", {}),
    "/istio": (200, b"no healthy upstream", {}),
    "/booting": (503, b"not yet", {}),
    "/moved": (302, b"", {"Location": "/ok"}),
    "/teapot": (418, b"short and stout", {}),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        status, body, headers = ROUTES.get(self.path, (404, b"missing", {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def http(server: str, path: str, expected: tuple[tuple[int, int], ...] = DEFAULT) -> bool:
    result = check_endpoint(
        CheckTarget(port=8080, type="http", url=server), path=path, expected=expected, timeout=0.5
    )
    return result.healthy


@pytest.mark.parametrize(
    ("path", "healthy"),
    [
        ("/ok", True),
        ("/nginx", False),
        ("/envoy", False),
        ("/istio", False),
        ("/booting", False),
        ("/moved", True),  # 302 is within 200-399, and it is not followed
        ("/teapot", False),
        ("/missing", False),
        ("/slow", False),  # timed out
    ],
)
def test_http_classification(server: str, path: str, healthy: bool) -> None:
    assert http(server, path) is healthy


def test_expected_statuses_are_configurable(server: str) -> None:
    assert http(server, "/teapot", ((418, 418),)) is True
    assert http(server, "/moved", ((200, 200),)) is False
    assert http(server, "/nginx", ((200, 200),)) is False  # still a proxy page


def test_endpoint_without_scheme_and_trailing_slash(server: str) -> None:
    bare = server.removeprefix("http://") + "/"
    result = check_endpoint(
        CheckTarget(port=1, type="http", url=bare), path="/ok", expected=DEFAULT, timeout=0.5
    )
    assert result.healthy


def test_tcp_by_connect(server: str) -> None:
    open_port = server.removeprefix("http://")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening
    assert check_endpoint(
        CheckTarget(port=22, type="tcp", url=open_port), path="/", expected=DEFAULT, timeout=0.5
    ).healthy
    assert not check_endpoint(
        CheckTarget(port=22, type="tcp", url=closed), path="/", expected=DEFAULT, timeout=0.5
    ).healthy
    assert not check_endpoint(
        CheckTarget(port=22, type="tcp", url="garbage"), path="/", expected=DEFAULT, timeout=0.5
    ).healthy
    assert not check_endpoint(
        CheckTarget(port=22, type="http", url=""), path="/", expected=DEFAULT, timeout=0.5
    ).healthy


def test_many_plans_in_one_pool(server: str) -> None:
    plans = [
        CheckPlan(
            key=n,
            targets=(CheckTarget(port=1, type="http", url=server),),
            path="/slow",
            expected=DEFAULT,
            timeout=2.0,
        )
        for n in range(4)
    ]
    results = run_checks(plans, workers=4)
    assert sorted(results) == [0, 1, 2, 3]
    assert all(r[0].healthy is False for r in results.values())  # 404 after the sleep


def test_proxy_pages_are_recognised() -> None:
    assert is_proxy_error_page(b"<h1>502 Bad Gateway</h1><hr><center>nginx</center>")
    assert is_proxy_error_page(b"error code: 522")
    assert not is_proxy_error_page(b'{"status": "ok", "gateway": "fine"}')
