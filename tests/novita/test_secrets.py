"""The API key, the Authorization header and registry passwords never reach logs or exceptions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from novita_sandbox.control import SandboxControl
from novitai.novita.client import NovitaClient, get_client
from novitai.novita.errors import AuthFailed, NovitaError, RejectedInput, Unavailable
from tests.novita.conftest import Canned, OddNovita, create_request

CANARY = "canary-Zx81q-never-log-me"


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.__dict__))
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def everything_raised(error: BaseException) -> str:
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


CALLS: list[Callable[[NovitaClient], object]] = [
    lambda c: c.list_clusters(),
    lambda c: c.list_products(cluster_id="us-tx-2"),
    lambda c: c.list_templates(),
    lambda c: c.get_template("40117"),
    lambda c: c.list_registry_auths(),
    lambda c: c.create_instance(create_request()),
    lambda c: c.list_instances(),
    lambda c: c.get_instance("9c41e07ab25d6f13"),
    lambda c: c.start_instance("9c41e07ab25d6f13"),
    lambda c: c.stop_instance("9c41e07ab25d6f13"),
    lambda c: c.restart_instance("9c41e07ab25d6f13"),
    lambda c: c.delete_instance("9c41e07ab25d6f13"),
    lambda c: c.edit_instance("9c41e07ab25d6f13", expand_root_disk=80),
    lambda c: c.migrate_instance("9c41e07ab25d6f13"),
    lambda c: c.list_network_storages(),
    lambda c: c.create_network_storage(cluster_id="us-tx-2", name="v", size_gb=10),
    lambda c: c.update_network_storage("ns-7f3c21", size_gb=200),
    lambda c: c.delete_network_storage("ns-7f3c21"),
    lambda c: c.save_image("9c41e07ab25d6f13", image="x/y:1"),
    lambda c: c.list_jobs(),
    lambda c: c.break_job("job-1"),
    lambda c: c.list_bills(cycle_type="Hour", start_time=0, end_time=3600),
    lambda c: c.balance(),
    lambda c: c.gpu_metrics("9c41e07ab25d6f13", start_time=0, end_time=60),
]


def test_a_refused_key_is_never_repeated(
    novita_settings: SandboxControl, fast: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fast.NOVITA_API_KEY = CANARY
    caplog.set_level(logging.DEBUG)
    client = get_client()
    for call in CALLS:
        with pytest.raises(AuthFailed) as caught:
            call(client)
        assert CANARY not in everything_raised(caught.value)
    assert CANARY not in everything_logged(caplog)
    assert CANARY not in repr(client) + repr(client.config)


def test_a_key_echoed_by_novita_is_scrubbed(
    odd_novita: OddNovita, fast: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fast.NOVITA_API_KEY = CANARY
    caplog.set_level(logging.DEBUG)
    echo = f"bad request from Bearer {CANARY} (key {CANARY})"
    odd_novita.on("GET", "/clusters", Canned(500, {"message": echo}))
    odd_novita.on("GET", "/products", Canned(400, {"reason": "VALIDATOR_PARAM", "message": echo}))
    client = get_client()
    with pytest.raises(Unavailable) as unavailable:  # retried: warnings quote the error
        client.list_clusters()
    with pytest.raises(RejectedInput) as rejected:
        client.list_products()
    for error in (unavailable.value, rejected.value):
        assert CANARY not in everything_raised(error)
        assert "[redacted]" in str(error)
    assert CANARY not in everything_logged(caplog)
    assert odd_novita.seen("/clusters")[0].headers["Authorization"] == f"Bearer {CANARY}"


def test_a_key_that_cannot_be_a_header_is_not_quoted(
    odd_novita: OddNovita, fast: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fast.NOVITA_API_KEY = f"{CANARY}\nX-Injected: 1"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RejectedInput) as caught:
        get_client().list_clusters()
    assert str(caught.value) == (
        "the request to Novita could not be made (InvalidHeader) endpoint=/clusters"
    )
    assert CANARY not in everything_raised(caught.value)
    assert CANARY not in everything_logged(caplog)
    assert odd_novita.requests == []


def test_registry_passwords_stay_out_of_logs_and_errors(
    odd_novita: OddNovita, odd_client: NovitaClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = {"id": "r1", "name": "ghcr.io", "username": "bot", "password": "ghp_canary_password"}
    odd_novita.on("GET", "/repository/auths", Canned(200, {"data": [auth]}))
    (parsed,) = odd_client.list_registry_auths()
    assert parsed.password == "ghp_canary_password"
    assert "ghp_canary_password" not in repr(parsed)
    odd_novita.on(
        "GET",
        "/repository/auths",
        Canned(200, {"data": [{**auth, "password": ["ghp_canary_password"]}]}),
    )
    with pytest.raises(NovitaError) as caught:
        odd_client.list_registry_auths()
    assert "ghp_canary_password" not in everything_raised(caught.value)
    assert "ghp_canary_password" not in everything_logged(caplog)


def test_ssh_passwords_stay_out_of_logs_and_errors(
    odd_novita: OddNovita, odd_client: NovitaClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ssh = {"sshCommand": "ssh -p 1 root@h", "password": "ssh-canary-pw", "isRunning": True}
    odd_novita.on("GET", "/gpu/instance", Canned(200, {"id": "a1", "connectComponentSSH": ssh}))
    instance = odd_client.get_instance("a1")
    assert instance.ssh is not None
    assert instance.ssh.password.reveal() == "ssh-canary-pw"
    assert "ssh-canary-pw" not in repr(instance) + str(instance.ssh.password)
    odd_novita.on(
        "GET",
        "/gpu/instance",
        Canned(200, {"id": "a1", "connectComponentSSH": {**ssh, "password": ["ssh-canary-pw"]}}),
    )
    with pytest.raises(NovitaError) as caught:
        odd_client.get_instance("a1")
    assert "ssh-canary-pw" not in everything_raised(caught.value)
    assert "ssh-canary-pw" not in everything_logged(caplog)
