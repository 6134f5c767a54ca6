"""Embedded mode's broker, measured: its own Redis (novitai/embedded_redis.py) against kombu's
SQLAlchemy transport on SQLite, which embedded mode used before and still uses without a
redis-server binary.

    .venv/bin/python -m bench.embedded_broker [--messages 2000] [--runs 5]

Prints: redis-server's start-up (exec to the first PING answered) and its memory (RSS) idle and
after the burst; for each transport, a burst of small task-sized messages published by one
producer and then drained by one consumer (messages per second). Everything in a temporary
folder; nothing else is touched. Figures move with the machine's load: compare runs taken alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from kombu import Connection, Exchange, Queue

from novitai import embedded_redis

BODY = {"id": "0" * 36, "task": "instances.provision", "args": ["0" * 36]}  # a task's size


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], float]:
    env = {**os.environ, "NOVITAI_VAR_DIR": str(directory)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "novitai.embedded_redis", "serve"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(unix_socket_path=str(embedded_redis.socket_path(directory)))
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.001)
    elapsed = time.perf_counter() - started
    client.close()
    return process, elapsed


def burst(url: str, messages: int) -> tuple[float, float]:
    """(published per second, drained per second) for one producer, then one consumer."""
    name = "bench-burst"
    queue = Queue(name, Exchange(name), routing_key=name)
    with Connection(url) as conn:
        producer = conn.Producer()
        queue(conn.default_channel).declare()
        started = time.perf_counter()
        for _ in range(messages):
            producer.publish(BODY, exchange=queue.exchange, routing_key=name, serializer="json")
        published = messages / (time.perf_counter() - started)
        received = 0

        def count(body: object, message: object) -> None:
            nonlocal received
            received += 1
            message.ack()  # type: ignore[attr-defined]

        started = time.perf_counter()
        with conn.Consumer(queue, callbacks=[count], prefetch_count=100):
            while received < messages:
                conn.drain_events(timeout=10)
        drained = messages / (time.perf_counter() - started)
        queue(conn.default_channel).delete()
    return published, drained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    binary = embedded_redis.server_binary(os.environ)
    if binary is None:
        sys.stderr.write("no redis-server binary: nothing to measure\n")
        return 1
    sys.stdout.write(f"redis-server: {binary}\n")
    with tempfile.TemporaryDirectory() as tmp:
        startups = []
        for run in range(args.runs):
            directory = Path(tmp) / f"start-{run}"
            process, elapsed = start_redis(directory)
            startups.append(elapsed * 1000)
            process.terminate()
            process.wait()
        sys.stdout.write(
            f"start-up to first PING: median {statistics.median(startups):.1f} ms, "
            f"max {max(startups):.1f} ms ({args.runs} runs)\n"
        )
        directory = Path(tmp) / "burst"
        process, _ = start_redis(directory)
        try:
            idle = rss_kib(process.pid)
            results = {
                "embedded Redis": burst(embedded_redis.broker_url(directory, 0), args.messages),
                "SQLAlchemy on SQLite": burst(
                    f"sqla+sqlite:///{Path(tmp) / 'broker.sqlite3'}", args.messages
                ),
            }
            after = rss_kib(process.pid)
        finally:
            process.terminate()
            process.wait()
        sys.stdout.write(f"redis-server RSS: {idle / 1024:.1f} MiB idle, "
                         f"{after / 1024:.1f} MiB after the burst\n")  # fmt: skip
        for name, (published, drained) in results.items():
            sys.stdout.write(
                f"{name}: {args.messages} messages published at {published:,.0f}/s, "
                f"drained at {drained:,.0f}/s\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
