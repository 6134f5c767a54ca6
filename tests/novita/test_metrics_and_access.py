"""GPU metrics, SSH and log addresses through the client, against the sandbox."""

from __future__ import annotations

import dataclasses
import json
import pickle

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita import client as client_module
from novitai.novita.client import NovitaClient
from novitai.novita.errors import MalformedResponse, NotFound
from novitai.novita.parsing import parse_gpu_metrics, ssh_target
from novitai.novita.types import GpuCardMetrics, GpuMetrics, LogAddresses, MetricPoint, Secret
from tests.novita.conftest import CORE, Canned, OddNovita, api_calls, create_request
from tests.sandbox.helpers import frozen_at, instant_timing


def test_gpu_metrics_of_one_instance(client: NovitaClient, sandbox: SandboxControl) -> None:
    instant_timing(sandbox, metrics_lag=60)
    start = int(frozen_at(sandbox, 3600))
    instance_id = client.create_instance(create_request(gpu_num=2))
    sandbox.advance_clock(60)
    sandbox.set_load(instance_id, gpu=[90, 10], gpu_memory=50)
    sandbox.advance_clock(120)  # the newest point: a minute ago
    metrics = client.gpu_metrics(instance_id, start_time=start, end_time=start + 600)
    at = [start, start + 60, start + 120]
    assert metrics == GpuMetrics(
        instance_id=instance_id,
        interval=60,
        cpu=tuple(MetricPoint(t, 5.0) for t in at),
        memory=tuple(MetricPoint(t, 10.0) for t in at),
        root_disk=tuple(MetricPoint(t, 1.0) for t in at),
        gpus=(
            GpuCardMetrics(
                0,
                (MetricPoint(at[0], 0.0), MetricPoint(at[1], 90.0), MetricPoint(at[2], 90.0)),
                (MetricPoint(at[0], 0.0), MetricPoint(at[1], 50.0), MetricPoint(at[2], 50.0)),
            ),
            GpuCardMetrics(
                1,
                (MetricPoint(at[0], 0.0), MetricPoint(at[1], 10.0), MetricPoint(at[2], 10.0)),
                (MetricPoint(at[0], 0.0), MetricPoint(at[1], 50.0), MetricPoint(at[2], 50.0)),
            ),
        ),
    )
    assert (metrics.peak_gpu_utilization(), metrics.peak_gpu_utilization(since=at[2] + 1)) == (
        90.0,
        None,  # no data is not idle
    )
    # where the official CLI calls it: the core surface, one instance a call
    [call] = api_calls(sandbox, "/openapi/v1/metrics/gpu/instance")
    assert call["status"] == 200


def test_metrics_of_a_gone_instance_are_not_found(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    with pytest.raises(NotFound):
        client.gpu_metrics("00000000deadbeef", start_time=0, end_time=60)


def test_the_metrics_endpoint_is_one_setting(
    odd_novita: OddNovita, odd_client: NovitaClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd_novita.on("GET", "/metrics/gpu/instance", Canned(200, {"instanceId": "a1"}), surface=CORE)
    odd_client.gpu_metrics("a1", start_time=1, end_time=2, interval=30)
    [seen] = odd_novita.seen("/metrics/gpu/instance", surface=CORE)
    assert seen.query == {
        "instanceId": ["a1"],
        "startTime": ["1"],
        "endTime": ["2"],
        "interval": ["30"],
    }
    monkeypatch.setattr(client_module, "GPU_METRICS_SURFACE", "gpu-instance")
    monkeypatch.setattr(client_module, "GPU_METRICS_ID_PARAM", "instance_id")
    odd_novita.on("GET", "/metrics/gpu/instance", Canned(200, {"data": {"interval": "60"}}))
    assert odd_client.gpu_metrics("a1", start_time=1, end_time=2).interval == 60
    assert odd_novita.seen("/metrics/gpu/instance")[0].query["instance_id"] == ["a1"]


def test_odd_metric_points_parse() -> None:
    metrics = parse_gpu_metrics(
        {
            "instanceId": "a1",
            "interval": "60",
            "cpuUtilization": [[1754035200, "12.5"], {"timestamp": "1754035260", "value": 3}],
            "gpus": [{"gpuUtilization": [{"time": 1754035200, "value": None}, [1754035260, 7]]}],
        }
    )
    assert metrics.cpu == (MetricPoint(1754035200, 12.5), MetricPoint(1754035260, 3.0))
    assert metrics.gpus == (GpuCardMetrics(0, (MetricPoint(1754035260, 7.0),)),)  # a gap skipped


def test_unreadable_metrics_are_malformed(odd_novita: OddNovita, odd_client: NovitaClient) -> None:
    odd_novita.on(
        "GET", "/metrics/gpu/instance", Canned(200, {"gpus": [{"gpuUtilization": "busy"}]}),
        surface=CORE,
    )  # fmt: skip
    with pytest.raises(MalformedResponse):
        odd_client.gpu_metrics("a1", start_time=1, end_time=2)


# --- ssh and logs -------------------------------------------------------------------------------


def test_a_running_instance_has_ssh_and_log_addresses(
    client: NovitaClient, sandbox: SandboxControl
) -> None:
    instant_timing(sandbox)
    instance_id = client.create_instance(create_request())
    got = client.get_instance(instance_id)
    assert got.ssh is not None
    host, port = sandbox.url.removeprefix("http://").split(":")
    assert (got.ssh.host, got.ssh.port, got.ssh.user, got.ssh.running) == (
        host,
        int(port),
        "root",
        True,
    )
    assert got.ssh.command == f"ssh -p {port} root@{host}"
    view_password = sandbox_password(sandbox, instance_id)
    assert got.ssh.password == Secret(view_password)
    assert got.ssh.password.reveal() == view_password
    assert got.logs == LogAddresses(
        system=f"{sandbox.url}/_app/{instance_id}/logs/system",
        instance=f"{sandbox.url}/_app/{instance_id}/logs/instance",
    )
    [listed] = client.list_instances()
    assert (listed.ssh, listed.logs) == (None, None)  # only get-instance carries them


def sandbox_password(sandbox: SandboxControl, instance_id: str) -> str:
    from tests.sandbox.helpers import Api

    return str(Api(sandbox).instance(instance_id)["connectComponentSSH"]["password"])


def test_the_ssh_password_stays_secret(client: NovitaClient, sandbox: SandboxControl) -> None:
    instant_timing(sandbox)
    instance_id = client.create_instance(create_request())
    got = client.get_instance(instance_id)
    password = sandbox_password(sandbox, instance_id)
    assert got.ssh is not None
    for text in (repr(got), str(got), repr(got.ssh), str(got.ssh.password)):
        assert password not in text
    dumped = dataclasses.asdict(got)
    assert password not in repr(dumped)
    with pytest.raises(TypeError):
        json.dumps(dumped)
    with pytest.raises(TypeError):
        pickle.dumps(got)
    assert got == client.get_instance(instance_id)  # equal passwords compare equal
    assert Secret("a") != Secret("b")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ssh -p 31622 root@proxy.us-tx-2.novita.ai", ("proxy.us-tx-2.novita.ai", 31622, "root")),
        ("ssh root@host -p 2200", ("host", 2200, "root")),
        ("ssh -o StrictHostKeyChecking=no -p2201 ubuntu@10.0.0.1", ("10.0.0.1", 2201, "ubuntu")),
        ("ssh -l admin host", ("host", 22, "admin")),
        ("ssh host", ("host", 22, "")),
        ("", ("", 0, "")),
        ("telnet host", ("", 0, "")),
        ("ssh 'unclosed", ("", 0, "")),
    ],
)  # fmt: skip
def test_ssh_commands_are_read(command: str, expected: tuple[str, int, str]) -> None:
    assert ssh_target(command) == expected


def test_explicit_ssh_fields_and_old_flat_ones(
    odd_novita: OddNovita, odd_client: NovitaClient
) -> None:
    odd_novita.on(
        "GET",
        "/gpu/instance",
        Canned(
            200,
            {
                "id": "a1",
                "connectComponentSSH": {
                    "host": "ssh.example",
                    "port": "2222",
                    "username": "me",
                    "password": "pw-canary",
                },
            },
        ),
    )
    ssh = odd_client.get_instance("a1").ssh
    assert ssh is not None
    assert (ssh.host, ssh.port, ssh.user, ssh.password.reveal()) == (
        "ssh.example",
        2222,
        "me",
        "pw-canary",
    )
    odd_novita.on(
        "GET",
        "/gpu/instance",
        Canned(200, {"id": "a1", "sshCommand": "ssh -p 9 root@h", "sshPassword": "old-pw"}),
    )
    ssh = odd_client.get_instance("a1").ssh
    assert ssh is not None
    assert (ssh.host, ssh.port, ssh.user, ssh.password.reveal()) == ("h", 9, "root", "old-pw")
