"""What an instance's endpoints serve: 503 until the app boots, 200 after, proxy-like otherwise."""

from __future__ import annotations

import socket

from novita_sandbox.config import NGINX_502_PAGE
from tests.sandbox.helpers import Api, http, instant_timing, pin


def endpoint(api: Api, iid: str, index: int = 0) -> str:
    return str(api.instance(iid)["portMappings"][index]["endpoint"])


def test_app_answers_503_while_booting_then_200(api: Api) -> None:
    instant_timing(api.control, app_boot=60)
    iid = api.create()
    url = endpoint(api, iid)
    booting = http("GET", url, key=None)
    assert (booting.status, booting.body) == (503, "application is starting\n")
    assert api.control.instance(iid)["app_ready_at"] is None
    instant_timing(api.control)
    api.action("restart", iid)  # boots again with app_boot 0
    ready = http("GET", url + "v1/models?x=1", key=None)
    assert ready.status == 200
    assert ready.body == {
        "status": "ok",
        "instanceId": iid,
        "port": "8888",
        "path": f"/_app/{iid}/8888/v1/models",
    }
    view = api.control.instance(iid)
    assert view["app_ready_at"] == view["status_history"][-1]["at"]
    assert api.control.stats()["app_calls"] == {"200": 1, "503": 1}


def test_app_boot_runs_on_the_clock(api: Api) -> None:
    iid = api.create()
    view = api.control.wait_for(iid, "running", app_ready=True)
    running_at = view["status_history"][-1]["at"]
    assert round(view["app_ready_at"] - running_at, 6) == api.control.timing()["app_boot"]
    assert http("GET", endpoint(api, iid), key=None).status == 200


def test_every_http_port_is_served_and_head_works(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    assert http("GET", endpoint(api, iid, 1), key=None).status == 200  # 7860
    assert http("HEAD", endpoint(api, iid), key=None).status == 200
    assert http("POST", endpoint(api, iid), {"a": 1}, key=None).status == 200


def test_stopped_app_is_a_502_and_removed_a_404(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    url = endpoint(api, iid)
    api.action("stop", iid)
    stopped = http("GET", url, key=None)
    assert (stopped.status, stopped.body) == (502, NGINX_502_PAGE)
    api.action("delete", iid)
    gone = http("GET", url, key=None)
    assert (gone.status, gone.body) == (404, "404 page not found\n")


def test_unknown_instance_or_port_is_404(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    base = api.control.url
    assert http("GET", f"{base}/_app/0000000000000000/8888/", key=None).status == 404
    assert http("GET", f"{base}/_app/{iid}/9999/", key=None).status == 404
    assert http("GET", f"{base}/_app/{iid}/22/", key=None).status == 404  # tcp, not http
    assert http("GET", f"{base}/elsewhere", key=None).status == 404


def test_tcp_endpoint_accepts_connections(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    host, port = endpoint(api, iid, 2).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):
        pass


def test_terminal_and_logs_are_served(api: Api) -> None:
    instant_timing(api.control)
    iid = api.create()
    body = api.instance(iid)
    assert http("GET", body["connectComponentWebTerminal"]["address"], key=None).status == 200
    logs = http("GET", body["connectComponentLog"]["systemLogAddress"], key=None)
    assert logs.status == 200
    assert [line.split(" ")[1] for line in logs.body.splitlines()] == [
        "toCreate",
        "creating",
        "pulling",
        "running",
    ]


def test_unhealthy_by_name_never_answers_200(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(unhealthy_name="novitai-sick-*")
    sick, well = api.create(name="novitai-sick-1"), api.create(name="novitai-well-1")
    assert http("GET", endpoint(api, sick), key=None).status == 503
    assert http("GET", endpoint(api, well), key=None).status == 200
    assert api.control.instance(sick)["app_ready_at"] is None


def test_unhealthy_by_image(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(unhealthy_image="comfyui")
    sick = api.create(imageUrl="ghcr.io/example/comfyui:latest", imageAuthId="")
    assert http("GET", endpoint(api, sick), key=None).status == 503
    api.control.set_faults(unhealthy_image="")
    assert http("GET", endpoint(api, sick), key=None).status == 200


def test_proxy_error_page_is_a_200_until_the_app_is_ready(api: Api) -> None:
    instant_timing(api.control, app_boot=60)
    api.control.set_faults(proxy_error_name="*", proxy_error_body="no healthy upstream")
    iid = api.create()
    page = http("GET", endpoint(api, iid), key=None)
    assert (page.status, page.body) == (200, "no healthy upstream")
    assert page.headers["Content-Type"] == "text/html"
    instant_timing(api.control)
    api.action("restart", iid)
    assert http("GET", endpoint(api, iid), key=None).body["status"] == "ok"


def test_proxy_error_page_forever_with_an_unhealthy_app(api: Api) -> None:
    instant_timing(api.control)
    api.control.set_faults(proxy_error_image="pytorch", unhealthy_name="*")
    page = http("GET", endpoint(api, api.create()), key=None)
    assert (page.status, page.body) == (200, NGINX_502_PAGE)
    assert "502 Bad Gateway" in page.body


def test_endpoints_are_empty_until_running(api: Api) -> None:
    iid = pin(api, "starting")
    assert [m["endpoint"] for m in api.instance(iid)["portMappings"]] == ["", "", ""]
