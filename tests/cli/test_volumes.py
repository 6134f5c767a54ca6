"""`novitai volumes …` and `create --volume` against a live novitai over HTTP."""

from __future__ import annotations

from collections.abc import Callable

from instances.models import Instance
from storage.models import Volume, VolumeStatus
from tests.cli.conftest import Run, create_args, fields

Cli = Callable[..., Run]


def test_volumes_create_list_get_rename_grow_delete(cli: Cli) -> None:
    made = cli("volumes", "create", "data", "--region", "EU-NL-01", "--size", "20")
    assert made.code == 0, made.err
    volume = Volume.objects.get()
    view = fields(made.out)
    assert (view["ID"], view["NAME"], view["REGION"], view["SIZE"]) == (
        str(volume.pk),
        "data",
        "EU-NL-01",
        "20 GB",
    )
    assert (view["USD/GB/DAY"], view["USD/DAY"]) == ("0.002", "0.04")

    listing = cli("volumes", "list")
    assert listing.code == 0
    assert listing.out.splitlines()[0].split() == [
        "ID", "NAME", "STATUS", "REGION", "SIZE", "USD/GB/DAY", "USD/DAY", "CREATED",
    ]  # fmt: skip
    assert str(volume.pk) in listing.out.splitlines()[1]

    assert fields(cli("volumes", "get", "data").out)["ID"] == str(volume.pk)
    assert fields(cli("volumes", "rename", "data", "datasets").out)["NAME"] == "datasets"
    assert fields(cli("volumes", "grow", "datasets", "--size", "30").out)["SIZE"] == "30 GB"
    shrink = cli("volumes", "grow", "datasets", "--size", "10")
    assert shrink.code == 4
    assert "volume_cannot_shrink" in shrink.err

    gone = cli("volumes", "delete", "datasets")
    assert (gone.code, gone.out) == (0, "datasets deleted\n")
    assert Volume.objects.get().status == VolumeStatus.DELETED


def test_create_mounts_a_volume_by_name(cli: Cli) -> None:
    assert cli("volumes", "create", "data", "--region", "EU-NL-01", "--size", "10").code == 0
    volume = Volume.objects.get()
    created = cli(*create_args("trainer-1", "--volume", "data:/data"), "--json")
    assert created.code == 0, created.err
    assert created.json()["volumes"] == [
        {"volume_id": str(volume.pk), "name": "data", "mount_path": "/data"}
    ]
    assert Instance.objects.get().volumes[0]["mount_path"] == "/data"
    refused = cli("volumes", "delete", "data")
    assert refused.code == 4
    assert "volume_in_use" in refused.err
    assert "trainer-1" in refused.err


def test_a_bad_mount_is_a_usage_error(cli: Cli) -> None:
    run = cli(*create_args("trainer-1", "--volume", "data:"))
    assert run.code == 2
    assert "expected VOLUME or VOLUME:/PATH" in run.err
