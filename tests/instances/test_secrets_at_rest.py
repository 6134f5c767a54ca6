"""The caller's env values and the templates' are encrypted at rest (database and cache), and an
instance's are gone once it is terminated (its record kept)."""

from __future__ import annotations

import json
from typing import Any

import requests
from django.db import connection
from rest_framework.test import APIClient

from catalog.caches import NamedCache
from catalog.models import Template
from instances.actions import instance_action_run
from instances.models import Instance, InstanceStatus
from novita_sandbox.control import SandboxControl
from novitai.crypto import decrypt
from tests.instances.helpers import monitor_until, provision, reload
from tests.stores import cache_contents

ENVS = [{"key": "HF_TOKEN", "value": "hf_at_rest_canary_0123"}, {"key": "MODE", "value": "x"}]


def stored_envs(table: str, where: str, value: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT envs FROM {table} WHERE {where} = %s", [value])  # noqa: S608
        return str(cursor.fetchone()[0])


def test_env_values_are_encrypted_in_the_database(make: Any) -> None:
    instance = make(envs=ENVS)
    assert reload(instance).envs == ENVS
    raw = stored_envs("instances_instance", "id", instance.pk.hex)
    assert "hf_at_rest_canary_0123" not in raw
    assert "HF_TOKEN" not in raw
    assert json.loads(decrypt(raw)) == ENVS


def test_the_instance_sends_its_envs_to_novita(make: Any, catalog: SandboxControl) -> None:
    instance = provision(make(envs=ENVS, template_id="40117"))
    upstream = requests.get(
        f"{catalog.api_base}/gpu/instance",
        params={"instanceId": instance.novita_instance_id},
        headers={"Authorization": f"Bearer {catalog.api_key}"},
        timeout=5,
    ).json()
    assert {e["key"]: e["value"] for e in upstream["envs"]} == {
        "JUPYTER_TOKEN": "demo-token",  # the template's, then the caller's
        "PYTHONUNBUFFERED": "1",
        "HF_TOKEN": "hf_at_rest_canary_0123",
        "MODE": "x",
    }


def test_template_env_values_are_encrypted_in_the_database_and_the_cache(
    make: Any, catalog: SandboxControl
) -> None:
    provision(make(template_id="40117"))  # jupyter: JUPYTER_TOKEN=demo-token
    template = Template.objects.get(novita_id="40117")
    assert {"key": "JUPYTER_TOKEN", "value": "demo-token"} in template.envs
    raw = stored_envs("catalog_template", "novita_id", "40117")
    assert "demo-token" not in raw
    assert json.loads(decrypt(raw)) == template.envs
    cached = NamedCache("templates").get("template:40117")
    assert "demo-token" not in json.dumps(cached)
    assert {"key": "JUPYTER_TOKEN", "value": "demo-token"} in json.loads(decrypt(cached["envs"]))
    assert not [
        key
        for key, values in cache_contents().items()
        if any(b"demo-token" in value for value in values)
    ]


def test_a_terminated_instance_keeps_its_record_not_its_envs(
    make: Any, api_client: APIClient, catalog: SandboxControl
) -> None:
    ready = monitor_until(provision(make(envs=ENVS)), InstanceStatus.READY)
    response = api_client.delete(f"/api/v1/instances/{ready.pk}/")
    instance_action_run(job_id=response.json()["job"]["id"])
    gone = monitor_until(ready, InstanceStatus.TERMINATED)
    assert gone.envs == []
    assert decrypt(stored_envs("instances_instance", "id", gone.pk.hex)) == "[]"
    assert (gone.name, gone.template_id, gone.novita_instance_id) == (
        ready.name,
        ready.template_id,
        ready.novita_instance_id,
    )
    # Terminated before any create too (a transition of its own).
    early = make(name="trainer-2", envs=ENVS)
    response = api_client.delete(f"/api/v1/instances/{early.pk}/")
    instance_action_run(job_id=response.json()["job"]["id"])
    assert Instance.objects.get(pk=early.pk).envs == []
    assert reload(early).status == InstanceStatus.TERMINATED
