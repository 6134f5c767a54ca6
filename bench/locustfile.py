"""Locust users of scenario 3's saturation runs (bench/api.py runs `locust -f bench/locustfile.py
--headless`): each user sends its next request as soon as the previous one is answered.

Configured by environment variables (no Django here: this runs in the load tool's process):

    BENCH_API_KEY     a tenant key
    BENCH_ENDPOINT    retrieve | list | create
    BENCH_IDS         a file of instance ids, one a line (retrieve)
    BENCH_WEBHOOK_URL the webhook_url of created instances (create)
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path

from locust import FastHttpUser, constant, task

from bench.client import NO_RECEIVER, create_body

ENDPOINT = os.environ.get("BENCH_ENDPOINT", "retrieve")
KEY = os.environ.get("BENCH_API_KEY", "")
IDS = Path(os.environ["BENCH_IDS"]).read_text().split() if os.environ.get("BENCH_IDS") else []
WEBHOOK_URL = os.environ.get("BENCH_WEBHOOK_URL", NO_RECEIVER)
NAMES = {
    "retrieve": "GET /api/v1/instances/{id}/",
    "list": "GET /api/v1/instances/",
    "create": "POST /api/v1/instances/",
}


class ApiUser(FastHttpUser):
    wait_time = constant(0)
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
            body = create_body(f"lc-{uuid.uuid4().hex[:16]}", WEBHOOK_URL)
            self.client.post("/api/v1/instances/", json=body, headers=headers, name=name)
