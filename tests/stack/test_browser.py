"""The console, the docs, the browsable API and Flower in a real browser: Debian's Chromium driven
by Playwright (the browser extra; Playwright's own browser download is not used), against `make
run` in a fresh checkout (tests/stack/conftest.py). Screenshots go to var/browser/ (CI keeps
them). Every request the browser makes is recorded: none may go to another host.

    .venv/bin/pip install -e '.[browser]' && .venv/bin/pytest -m browser
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.stack.conftest import REPO, Stack, http
from tests.stack.test_first_contact import WORKERS, flower, instances, wait_until

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SHOTS = REPO / "var" / "browser"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 30_000


def foreign(url: str) -> bool:
    """A request to another host (data: and blob: URLs are the page's own)."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return False
    return parts.hostname not in LOCAL_HOSTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> dict[str, Any]:
    """Two ready instances and the demo login."""
    demo = stack.demo()
    key = demo["api_key"]
    for name in ("web-1", "web-2"):
        status, body = http(
            f"{stack.url}/api/v1/instances/", method="POST", key=key,
            body={"name": name, "product_name": "RTX 4090 24GB", "template_id": "212"},
        )  # fmt: skip
        assert status == 202, body
    wait_until(
        "two ready", lambda: {i["status"] for i in instances(stack, key).values()} == {"ready"}
    )
    return demo


@pytest.fixture
def page(browser: Any, stack: Stack, seeded: dict[str, Any]) -> Iterator[Any]:
    """A page logged into the admin through its form; `page.foreign` lists other hosts' URLs."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    requests: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.goto(f"{stack.url}/admin/login/")
    tab.fill("#id_username", "admin")
    tab.fill("#id_password", seeded["admin_password"])
    tab.click("input[type=submit]")
    tab.wait_for_selector("#console-dashboard")
    tab.requests = requests
    yield tab
    assert [url for url in requests if foreign(url)] == []
    context.close()


def metric(page: Any, name: str) -> str:
    cell = page.locator(f'#console-dashboard [data-metric="{name}"]').first
    return str(cell.text_content()).strip()  # folded ones too (every status)


def test_the_dashboard_shows_the_apis_numbers_and_refreshes(page: Any, stack: Stack) -> None:
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    api = page.context.request.get(f"{stack.url}/api/v1/metrics/").json()  # the staff session's
    assert api["scope"] == "all"
    for status, n in api["instances"]["by_status"].items():
        assert metric(page, f"all.{status}") == str(n), status
    assert metric(page, "live") == str(api["instances"]["live"])
    assert metric(page, "gpus_held") == str(api["instances"]["gpus_held"])
    assert metric(page, "holding_a_gpu") == str(api["instances"]["holding_a_gpu"])
    assert metric(page, "usd_per_hour") == f"${api['spend']['usd_per_hour']}"
    for status, n in api["jobs"]["by_status"].items():
        assert metric(page, f"jobs.{status}") == str(n), status
    for status, n in api["webhook_deliveries"]["by_status"].items():
        assert metric(page, f"deliveries.{status}") == str(n), status
    assert metric(page, "circuit") == api["control_plane"]["novita_circuit"]

    page.click('#console-dashboard [data-metric="instances.ready"]')  # a number is a link
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == api["instances"]["by_status"]["ready"]
    page.go_back()
    first = page.get_attribute("#console-dashboard .console", "data-generated-at")
    page.wait_for_function(
        "(first) => document.querySelector('#console-dashboard .console')"
        ".getAttribute('data-generated-at') !== first",
        arg=first,
        timeout=40_000,
    )  # refreshed by itself, without a reload


def test_an_instance_page_and_an_action_that_asks_first(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.url}/admin/instances/instance/?status__exact=ready")
    page.click("#result_list tbody tr:first-child th a")
    page.wait_for_selector(".console-timeline")
    name = page.locator(".field-name .readonly").inner_text().strip()
    timeline = page.locator(".console-timeline").inner_text()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", timeline)  # to the second
    assert "tenant:demo" in timeline  # who
    assert "healthy" in timeline  # why
    assert page.locator(".field-endpoint_links a").count() == 1
    page.screenshot(path=str(SHOTS / "instance.png"), full_page=True)

    page.click('a.console-operation[data-operation="stop"]')
    page.wait_for_selector("#console-confirm")
    assert "Stop these instances?" in page.inner_text(".console-question")
    page.screenshot(path=str(SHOTS / "confirm-stop.png"))
    page.click("#console-confirm")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text(".messagelist .success") == f"Stopping: {name}."
    assert page.inner_text(".field-status_badge .readonly").strip() in ("stopping", "stopped")
    timeline = page.locator(".console-timeline").inner_text()
    assert "staff:admin" in timeline
    assert "stop_requested" in timeline


def test_the_docs_render_offline(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".swagger-ui .opblock").count() > 20
    assert "novitai API" in page.inner_text(".swagger-ui .info .title")
    page.screenshot(path=str(SHOTS / "swagger-ui.png"))
    page.goto(f"{stack.url}/api/redoc/")
    page.wait_for_selector("redoc h1")
    assert "novitai API" in page.inner_text("redoc h1")
    assert page.locator("redoc [data-section-id]").count() > 20
    page.screenshot(path=str(SHOTS / "redoc.png"))
    page.goto(f"{stack.url}/")  # the root, and the admin's "view site", lead to the docs
    page.wait_for_selector(".swagger-ui .opblock")
    docs = [url for url in page.requests if "/api/docs/" in url or "/api/redoc/" in url]
    assert docs
    assert [url for url in page.requests if foreign(url)] == []  # and the fixture again


def test_the_browsable_api_as_staff(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.url}/api/v1/instances/")
    page.wait_for_selector(".response-info")
    assert "Instance" in page.inner_text(".page-header h1")
    body = page.inner_text(".response-info")
    assert "HTTP 200 OK" in body
    assert '"name": "web-1"' in body
    page.screenshot(path=str(SHOTS / "browsable-api.png"))


def test_flower_sees_the_workers_and_their_tasks(browser: Any, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    requests: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    try:
        with flower(stack) as (port, _):
            base = f"http://127.0.0.1:{port}"
            wait_until("Flower", lambda: http(f"{base}/healthcheck", timeout=2)[0] == 200)

            def workers() -> set[str]:
                tab.goto(f"{base}/workers")
                tab.wait_for_selector("#workers-table")
                text = tab.inner_text("#workers-table")
                return {name for name in WORKERS if f"{name}@" in text}

            wait_until("the workers in Flower", lambda: workers() == WORKERS or None)
            tab.screenshot(path=str(SHOTS / "flower-workers.png"))

            def tasks() -> bool:  # the ones run since Flower started (it follows events)
                tab.goto(f"{base}/tasks")
                tab.wait_for_selector("#tasks-table")
                tab.wait_for_load_state("networkidle")
                return "instances.monitor" in tab.inner_text("#tasks-table")

            wait_until("the monitoring passes in Flower's tasks", tasks)
            tab.screenshot(path=str(SHOTS / "flower-tasks.png"))
    finally:
        context.close()
    # Flower's own pages load their assets from Flower: nothing from elsewhere either.
    assert [url for url in requests if foreign(url)] == []
