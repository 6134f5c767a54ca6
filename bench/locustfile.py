"""Locust users of scenario 3 (run by bench/api.py as `locust -f bench/locustfile.py --headless`).

Configured by environment variables (no Django here: this runs in the load tool's process):

    BENCH_API_KEY     a tenant key
    BENCH_ENDPOINT    retrieve | list | create
    BENCH_USER_RATE   requests per second of each user (constant_throughput); 0: no wait at all
                      (closed loop, for saturation)
    BENCH_IDS         a file of instance ids, one a line (retrieve)
    BENCH_WEBHOOK_URL the webhook_url of created instances (create)
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

from locust import FastHttpUser, constant, constant_throughput, task

ENDPOINT = os.environ.get("BENCH_ENDPOINT", "retrieve")
RATE = float(os.environ.get("BENCH_USER_RATE", "0"))
KEY = os.environ.get("BENCH_API_KEY", "")
IDS = Path(os.environ["BENCH_IDS"]).read_text().split() if os.environ.get("BENCH_IDS") else []
WEBHOOK_URL = os.environ.get("BENCH_WEBHOOK_URL", "http://127.0.0.1:9/hooks")
NAMES = {
    "retrieve": "GET /api/v1/instances/{id}/",
    "list": "GET /api/v1/instances/",
    "create": "POST /api/v1/instances/",
}


class ApiUser(FastHttpUser):
    wait_time = constant_throughput(RATE) if RATE > 0 else constant(0)
    network_timeout = 30.0
    connection_timeout = 10.0

    @task
    def call(self) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        name = NAMES[ENDPOINT]
        if ENDPOINT == "retrieve":
            self.client.get(f"/api/v1/instances/{random.choice(IDS)}/", headers=headers, name=name)
        elif ENDPOINT == "list":
            self.client.get("/api/v1/instances/", headers=headers, name=name)
        else:
            body = {
                "name": f"lc-{uuid.uuid4().hex[:16]}",
                "product_name": "RTX 4090 24GB",
                "template_id": "40117",
                "region": "US-TX-02",
                "webhook_url": WEBHOOK_URL,
            }
            self.client.post("/api/v1/instances/", json=body, headers=headers, name=name)
