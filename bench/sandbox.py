"""How fast is the Novita sandbox? It must never be the bottleneck of the other benchmarks.

    .venv/bin/python -m bench.sandbox [--instances 500] [--seconds 10] [--threads 8]

Starts `python -m novita_sandbox` in a subprocess, seeds instances through the API, then drives
GET /gpu/instance and GET /gpu/instances (pageSize 100) from this process with several threads,
each on its own keep-alive connection, and finally walks 2,000 instances page by page. Prints
requests/s and p50/p99 latency and writes bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

API = "/gpu-instance/openapi/v1"
KEY = "bench-key"
RESULTS = Path(__file__).resolve().parent / "results" / "sandbox.json"
CREATE = {
    "productId": "4090.16c62g.sim",
    "gpuNum": 1,
    "rootfsSize": 60,
    "imageUrl": "ghcr.io/example/pytorch-lab:2.4",
    "ports": "8888/http,7860/http,22/tcp",
    "envs": [{"key": "JUPYTER_TOKEN", "value": "demo-token"}],
    "clusterId": "us-tx-2",
    "kind": "gpu",
}


class Client:
    """One keep-alive connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        self.headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        self.page = 0  # where this connection is in a page-by-page walk

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        self.connection.request(method, API + path, body=data, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.connection.close()


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "novita_sandbox",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--timing",
            "fast",
            "--removed-linger",
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("Novita sandbox listening on "):
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, line.split()[4]


def seed(url: str, count: int, threads: int, prefix: str) -> float:
    """Create `count` instances; return creates per second."""
    lock = threading.Lock()
    remaining = [count]

    def worker(_: int) -> None:
        client = Client(url)
        while True:
            with lock:
                if remaining[0] == 0:
                    break
                remaining[0] -= 1
                n = remaining[0]
            status, body = client.call(
                "POST", "/gpu/instance/create", {**CREATE, "name": f"{prefix}-{n:05d}"}
            )
            assert status == 200, body
        client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return count / (time.perf_counter() - started)


def drive(
    url: str, seconds: float, threads: int, request: Callable[[Client, random.Random], None]
) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    stop_at = time.perf_counter() + seconds

    def worker(index: int) -> None:
        client, rng, mine = Client(url), random.Random(index), latencies[index]
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                request(client, rng)
            except (AssertionError, OSError, http.client.HTTPException):
                errors[index] += 1
                client.close()
                client = Client(url)
                continue
            mine.append(time.perf_counter() - started)
        client.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    elapsed = time.perf_counter() - started
    every = sorted(x for per_thread in latencies for x in per_thread)
    return {
        "requests": len(every),
        "errors": sum(errors),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(every) / elapsed, 1),
        "p50_ms": round(every[len(every) // 2] * 1000, 2) if every else None,
        "p99_ms": round(every[int(len(every) * 0.99)] * 1000, 2) if every else None,
    }


def list_ids(url: str) -> list[str]:
    client = Client(url)
    ids: list[str] = []
    page = 1
    while True:
        status, body = client.call("GET", f"/gpu/instances?pageSize=100&pageNum={page}")
        assert status == 200, body
        ids += [i["id"] for i in body["instances"]]
        if len(ids) >= body["total"] or not body["instances"]:
            break
        page += 1
    client.close()
    return ids


def measure(
    *, instances: int = 500, scan_instances: int = 2000, seconds: float = 10.0, threads: int = 8
) -> dict[str, dict[str, Any]]:
    """Every figure of this benchmark, from a sandbox process of its own."""
    process, url = start_sandbox()
    try:
        create_rate = seed(url, instances, threads, "bench")
        ids = list_ids(url)
        assert len(ids) == instances, len(ids)
        pages = max(1, (len(ids) + 99) // 100)

        def get_one(client: Client, rng: random.Random) -> None:
            status, _ = client.call("GET", f"/gpu/instance?instanceId={rng.choice(ids)}")
            assert status == 200

        def list_page(client: Client, rng: random.Random) -> None:
            status, body = client.call(
                "GET", f"/gpu/instances?pageSize=100&pageNum={rng.randint(1, pages)}"
            )
            assert status == 200
            assert body["instances"]

        results: dict[str, dict[str, Any]] = {}
        results["POST /gpu/instance/create (seeding)"] = {
            "requests_per_second": round(create_rate, 1)
        }
        results["GET /gpu/instance"] = drive(url, seconds, threads, get_one)
        results["GET /gpu/instances pageSize=100"] = drive(url, seconds, threads, list_page)

        seed(url, scan_instances - instances, threads, "scan")
        scan_pages = (scan_instances + 99) // 100

        def next_page(client: Client, rng: random.Random) -> None:
            # each thread walks the pages in order, over and over (a monitoring pass)
            client.page = page = client.page % scan_pages + 1
            status, body = client.call("GET", f"/gpu/instances?pageSize=100&pageNum={page}")
            assert status == 200
            assert body["total"] == scan_instances

        scan = drive(url, seconds, 2, next_page)
        scan["full_passes_per_second"] = round(scan["requests_per_second"] / scan_pages, 1)
        results[f"GET /gpu/instances, {scan_instances} walked, 2 thr"] = scan
    finally:
        process.terminate()
        process.wait(timeout=15)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--scan-instances", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    results = measure(
        instances=args.instances,
        scan_instances=args.scan_instances,
        seconds=args.seconds,
        threads=args.threads,
    )

    header = f"{'scenario':<48} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    print(
        f"\nNovita sandbox, {args.instances} instances, "
        f"{args.threads} threads x keep-alive, {args.seconds:g} s each"
    )
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        p50, p99 = row.get("p50_ms") or "-", row.get("p99_ms") or "-"
        rate = row["requests_per_second"]
        print(f"{name:<48} {rate:>9.1f} {p50:>8} {p99:>8} {row.get('errors', 0):>6}")
        if "full_passes_per_second" in row:
            passes = row["full_passes_per_second"]
            print(f"{'':<4}= {passes} full passes of {args.scan_instances} instances per second")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "sandbox",
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "instances": args.instances,
                "threads": args.threads,
                "seconds_per_scenario": args.seconds,
                "target_requests_per_second": 200,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
