"""An open-loop HTTP load generator (scenario 3's fixed offered rate), run in its own process:

    python -m bench.loadgen --url http://127.0.0.1:8000 --key KEY --endpoint retrieve \
        --rate 200 --seconds 20 --ids ids.txt --out result.json

Requests are sent on a fixed schedule (request i at t0 + i/rate) whatever the server does, each on
a keep-alive connection from a pool (a new one when none is idle, or when the server closed it:
gunicorn's sync workers close after every response). A request's latency runs from its scheduled
time to the last byte of its answer, so a slow server cannot hide its queue by slowing the sender
(no coordinated omission, as in wrk2). Why not locust's users for this: each is a closed loop, and
50 users x 4 req/s fall into step; at the same 200 req/s they measured a p50 of ~100 ms where
this measures ~7 ms (bench/README.md). Saturation is measured with locust (closed loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.client import NO_RECEIVER, create_body

PATHS = {
    "retrieve": "/api/v1/instances/{id}/",
    "list": "/api/v1/instances/",
    "create": "/api/v1/instances/",
}


class Pool:
    """Idle keep-alive connections to one host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    def put(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.idle.append((reader, writer))


async def exchange(pool: Pool, request: bytes) -> int:
    """Sends one request and reads its whole answer; returns the status code."""
    reader, writer = await pool.get()
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)
        }
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await reader.read()
    except BaseException:
        writer.close()
        raise
    if headers.get("connection", "").lower() == "close":
        writer.close()
    else:
        pool.put(reader, writer)
    return status


class Requests:
    def __init__(self, args: argparse.Namespace, host: str) -> None:
        self.endpoint = args.endpoint
        self.ids = Path(args.ids).read_text().split() if args.ids else []
        self.common = (
            f"Host: {host}\r\nAuthorization: Bearer {args.key}\r\nUser-Agent: novitai-bench\r\n"
        )
        self.webhook_url = args.webhook_url
        self.rng = random.Random(1)

    def next(self) -> bytes:
        if self.endpoint == "create":
            body = json.dumps(create_body(f"ol-{uuid.uuid4().hex[:16]}", self.webhook_url)).encode()
            head = (
                f"POST {PATHS['create']} HTTP/1.1\r\n{self.common}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            return head.encode() + body
        path = PATHS[self.endpoint].format(id=self.rng.choice(self.ids) if self.ids else "")
        return f"GET {path} HTTP/1.1\r\n{self.common}\r\n".encode()


async def open_loop(args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pool, requests = Pool(host, port), Requests(args, f"{host}:{port}")
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    ok = (202,) if args.endpoint == "create" else (200,)

    async def one(scheduled: float, request: bytes) -> None:
        try:
            status = await asyncio.wait_for(exchange(pool, request), timeout=args.timeout)
            statuses[str(status)] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            statuses[type(exc).__name__] += 1
        except TimeoutError:
            statuses["timeout"] += 1
        latencies.append(time.perf_counter() - scheduled)

    total = int(args.rate * args.seconds)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.05
    behind = 0.0
    for i in range(total):
        scheduled = start + i / args.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            behind = max(behind, -delay)
        tasks.append(asyncio.create_task(one(scheduled, requests.next())))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)

    def q(p: float) -> float | None:
        return (
            round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1)
            if ordered
            else None
        )

    errors = sum(n for s, n in statuses.items() if not (s.isdigit() and int(s) in ok))
    return {
        "tool": "bench.loadgen (open loop)",
        "endpoint": args.endpoint,
        "offered_rps": args.rate,
        "seconds": round(elapsed, 2),
        "requests": len(ordered),
        "errors": errors,
        "statuses": dict(statuses),
        "rps": round(len(ordered) / elapsed, 1),
        "p50_ms": q(50),
        "p90_ms": q(90),
        "p99_ms": q(99),
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
        "connections_opened": pool.opened,
        "sender_behind_max_ms": round(behind * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--endpoint", choices=sorted(PATHS), required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ids", help="file of instance ids (retrieve)")
    parser.add_argument("--webhook-url", default=NO_RECEIVER)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(open_loop(args))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
