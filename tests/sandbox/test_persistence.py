"""A sandbox with a state dir keeps Novita's world across restarts (persist.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from novita_sandbox import SandboxServer
from novita_sandbox.control import SandboxControl
from novita_sandbox.persist import STATE_FILE, PersistError
from tests.sandbox.helpers import VALID_CREATE, Api, frozen_at, http, instant_timing


class Restarts:
    """Sandbox servers, one after the other, on the same state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.servers: list[SandboxServer] = []

    def start(self, *, fresh: bool = False) -> Api:
        server = SandboxServer(state_dir=self.state_dir, fresh=fresh).start()
        self.servers.append(server)
        return Api(SandboxControl(server.url, server.api_key))

    def stop(self) -> None:
        self.servers[-1].stop()


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[Restarts]:
    restarts = Restarts(tmp_path)
    yield restarts
    for server in restarts.servers:
        server.stop()


def test_a_restart_keeps_instances_volumes_jobs_and_the_bill(
    sandboxes: Restarts, tmp_path: Path
) -> None:
    api = sandboxes.start()
    instant_timing(api.control, save_image=600)
    frozen_at(api.control, 3600)
    sid = api.post(
        "/networkstorage/create", {"clusterId": "us-tx-2", "storageName": "ds", "storageSize": 20}
    ).body
    iid = api.create(networkStorages=[{"Id": sid}], gpuNum=2)
    stopped = api.create(name="novitai-stopped")
    api.action("stop", stopped)
    job_id = api.post("/job/save/image", {"instanceId": iid, "image": "x/y:1"}).body["jobId"]
    api.control.set_prices("4090.16c62g.sim", price=40000)
    api.control.set_balance(cash=500000)
    api.control.set_capacity("3090.8c31g.sim", False, billing_mode="spot")
    api.control.advance_clock(600)
    before = {
        "instance": api.instance(iid),
        "list": api.get("/gpu/instances").body,
        "storages": api.get("/networkstorages/list").body,
        "jobs": api.get("/jobs").body,
        "balance": api.core_get("/billing/balance/detail").body,
        "prices": api.control.prices(),
        "capacity": api.control.capacity(),
        "ledger": api.control.instances(),
    }
    sandboxes.stop()
    assert (tmp_path / STATE_FILE).exists()

    again = sandboxes.start()
    assert again.instance(iid)["status"] == "running"
    after_instance = again.instance(iid)
    # endpoints name the new server; the rest is what it was
    for body in (before["instance"], after_instance):
        body.pop("portMappings"), body.pop("connectComponentSSH"), body.pop("connectComponentLog")
        body.pop("connectComponentWebTerminal"), body.pop("connectComponentJupyter")
    assert after_instance == before["instance"]
    assert again.instance(stopped)["status"] == "exited"
    assert again.get("/networkstorages/list").body == before["storages"]
    assert again.get("/jobs").body["jobs"][0]["Id"] == job_id
    assert again.get("/jobs").body["jobs"][0]["state"] == before["jobs"]["jobs"][0]["state"]
    assert again.core_get("/billing/balance/detail").body == before["balance"]
    assert again.control.prices() == before["prices"]
    assert again.control.capacity() == before["capacity"]
    assert again.control.instances() == before["ledger"]
    assert again.control.clock()["frozen"] is True
    # a volume still mounted is still in use
    assert again.post("/networkstorage/delete", {"storageId": sid}).body["reason"] == (
        "NETWORK_STORAGE_IN_USE"
    )


def test_dwell_times_go_on_across_a_restart(sandboxes: Restarts) -> None:
    api = sandboxes.start()
    instant_timing(api.control, pulling=60)
    frozen_at(api.control, 60)
    iid = api.create()
    api.control.advance_clock(20)
    sandboxes.stop()
    again = sandboxes.start()
    assert again.instance(iid)["status"] == "pulling"  # 40 s of pulling left
    again.control.advance_clock(40)
    assert again.instance(iid)["status"] == "running"


def test_ids_go_on_where_they_were(sandboxes: Restarts) -> None:
    api = sandboxes.start()
    first = api.create()
    sandboxes.stop()
    again = sandboxes.start()
    second = again.create()
    # the same as an uninterrupted sandbox with the same seed
    with SandboxServer() as plain:
        control = Api(SandboxControl(plain.url, plain.api_key))
        assert [control.create(), control.create()] == [first, second]


def test_fresh_starts_clean(sandboxes: Restarts) -> None:
    api = sandboxes.start()
    api.create()
    sandboxes.stop()
    fresh = sandboxes.start(fresh=True)
    assert fresh.control.instances() == []
    assert fresh.get("/gpu/instances").body == {"instances": [], "total": 0}


def test_a_change_is_written_within_a_second(sandboxes: Restarts, tmp_path: Path) -> None:
    api = sandboxes.start()
    iid = api.create()
    path = tmp_path / STATE_FILE
    deadline = time.monotonic() + 10
    while iid not in path.read_text():
        assert time.monotonic() < deadline, "the change was never written"
        time.sleep(0.05)
    assert [i["id"] for i in json.loads(path.read_text())["instances"]] == [iid]


def test_an_unreadable_state_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"version": 1, "instances": [{"id": 3}]}')
    server = SandboxServer(state_dir=tmp_path)
    with pytest.raises(PersistError) as caught:
        server.start()
    assert str(caught.value).startswith(f"cannot read the sandbox state {tmp_path / STATE_FILE}: ")
    assert str(caught.value).endswith("(--fresh starts clean)")
    assert (tmp_path / STATE_FILE).read_text().startswith('{"version": 1, "instances"')


def test_the_cli_keeps_a_running_instance_across_a_restart(tmp_path: Path) -> None:
    def run() -> tuple[subprocess.Popen[str], str, str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "novita_sandbox", "--port", "0", "--state-dir", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        # the first three lines: where it listens, the timing, the state file
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("Novita sandbox listening on "), lines
        return process, lines[0].split()[4], lines[2].strip()

    def stop(process: subprocess.Popen[str]) -> None:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0, err

    process, url, state = run()
    try:
        assert state == f"new state in {tmp_path / STATE_FILE}"
        api_base = url + "/gpu-instance/openapi/v1"
        created = http("POST", api_base + "/gpu/instance/create", VALID_CREATE)
        iid = created.body["id"]
        control = SandboxControl(url)
        control.wait_for(iid, "running")
        stop(process)
        process, url, state = run()
        assert state == f"restored from {tmp_path / STATE_FILE}"
        answer = http("GET", url + f"/gpu-instance/openapi/v1/gpu/instance?instanceId={iid}")
        assert (answer.status, answer.body["status"]) == (200, "running")
        stop(process)
    finally:
        process.kill()

    (tmp_path / STATE_FILE).write_text("not json")
    broken = subprocess.run(
        [sys.executable, "-m", "novita_sandbox", "--port", "0", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert broken.returncode == 1
    assert "cannot read the sandbox state" in broken.stderr
