"""Fixtures of the Novita client's tests.

`client` talks to the session sandbox over loopback with small backoff settings. `odd_novita` is a
tiny real HTTP server answering whatever a test tells it to: payloads the sandbox does not produce
(odd types, garbage, a key echoed back) still travel over real HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import REGISTRY

from novita_sandbox.control import SandboxControl
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.config import NovitaConfig
from novitai.novita.types import CreateInstanceRequest, EnvVar, PortSpec


@pytest.fixture
def fast(settings: Any) -> Any:
    """Small backoff and short timeouts so that retries cost milliseconds."""
    settings.NOVITA_CONNECT_TIMEOUT = 1.0
    settings.NOVITA_READ_TIMEOUT = 2.0
    settings.NOVITA_CREATE_TIMEOUT = 2.0
    settings.NOVITA_MAX_RETRIES = 3
    settings.NOVITA_BACKOFF_BASE = 0.01
    settings.NOVITA_BACKOFF_CAP = 0.02
    settings.NOVITA_RATE_LIMIT_PER_SECOND = 1000.0
    settings.NOVITA_BREAKER_FAILURE_THRESHOLD = 5
    settings.NOVITA_BREAKER_RESET_SECONDS = 30.0
    settings.NOVITA_LIST_PAGE_SIZE = 100
    return settings


@pytest.fixture
def client(novita_settings: SandboxControl, fast: Any) -> NovitaClient:
    return get_client()


def another_client() -> NovitaClient:
    """A second client from the same settings: another process, as far as shared state goes."""
    return NovitaClient(NovitaConfig.from_settings())


def create_request(name: str = "novitai-test-1", **changes: Any) -> CreateInstanceRequest:
    values: dict[str, Any] = {
        "name": name,
        "product_id": "4090.16c62g.sim",
        "gpu_num": 1,
        "rootfs_size": 60,
        "image_url": "ghcr.io/example/pytorch-lab:2.4",
        "cluster_id": "us-tx-2",
        "ports": (PortSpec(8888, "http"), PortSpec(22, "tcp")),
        "envs": (EnvVar("JUPYTER_TOKEN", "demo-token"),),
        "image_auth_id": "k2m8q0z3w5r7t9y1a4c6e8g0i2l4n6p8",
    }
    values.update(changes)
    return CreateInstanceRequest(**values)


def api_calls(sandbox: SandboxControl, path: str, method: str = "") -> list[dict[str, Any]]:
    """The sandbox's log of calls to one API path (below /gpu-instance/openapi/v1; the core
    surface's under their full path, /openapi/v1/…)."""
    return [
        call
        for call in sandbox.calls()
        if call["path"] == path and (not method or call["method"] == method)
    ]


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- a tiny real HTTP server with canned answers -------------------------------------------------


@dataclass
class Canned:
    status: int = 200
    body: Any = field(default_factory=dict)  # bytes/str sent as is, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


GPU = "/gpu-instance/openapi/v1"
CORE = "/openapi/v1"


class OddNovita:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Canned]] = {}
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.requests.append(
                        Seen(
                            self.command,
                            parts.path,
                            parse_qs(parts.query),
                            dict(self.headers),
                            json.loads(raw) if raw else None,
                        )
                    )
                    queue = outer.routes.get((self.command, parts.path))
                    if not queue:
                        answer = Canned(599, {"message": f"no canned answer for {parts.path}"})
                    else:
                        answer = queue.pop(0) if len(queue) > 1 else queue[0]
                body = answer.body
                if not isinstance(body, bytes | str):
                    body = json.dumps(body)
                data = body.encode() if isinstance(body, str) else body
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/gpu-instance/openapi/v1"

    def on(self, method: str, path: str, *answers: Canned, surface: str = GPU) -> None:
        """Answer `method path` with these, in order; the last one repeats. surface=CORE: below
        /openapi/v1 (bills, balance, metrics) instead of /gpu-instance/openapi/v1."""
        with self.lock:
            self.routes[(method, surface + path)] = list(answers)

    def seen(self, path: str, surface: str = GPU) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if r.path == surface + path]


@pytest.fixture
def odd_novita(settings: Any, fast: Any) -> Iterator[OddNovita]:
    server = OddNovita()
    server.thread.start()
    settings.NOVITA_API_BASE_URL = server.base_url
    settings.NOVITA_CORE_API_BASE_URL = ""  # derived: the same server's /openapi/v1
    settings.NOVITA_API_KEY = "odd-novita-key"
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def odd_client(odd_novita: OddNovita) -> NovitaClient:
    return get_client()
