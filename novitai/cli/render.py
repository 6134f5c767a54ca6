"""Readable output: tables, key-value views, errors. Nothing here talks to the server."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from novitai.cli.client import ApiError

NONE = "-"


def dumps(body: Any) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; the last one is not padded."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max((len(key) for key, _ in pairs), default=0)
    lines = []
    for key, value in pairs:
        text = _cell(value).split("\n")
        lines.append(f"{key.ljust(width)}  {text[0]}")
        lines.extend(f"{' ' * width}  {more}" for more in text[1:])
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def when(timestamp: str | None) -> str | None:
    """2026-11-26T12:00:00.123456Z → 2026-11-26 12:00:00Z (to the second)."""
    if not timestamp:
        return None
    text = timestamp.replace("T", " ")
    if "." in text:
        text = text.split(".", 1)[0] + ("Z" if text.endswith("Z") else "")
    return text


def usd(amount: str | None, suffix: str = "/h") -> str | None:
    """ "0.34000" → "$0.34/h"; the places that matter are kept ("0.00125" → "$0.00125/h")."""
    if amount is None:
        return None
    try:
        value = Decimal(amount)
    except InvalidOperation:
        return f"${amount}{suffix}"
    places = max(2, -int(value.normalize().as_tuple().exponent))
    return f"${value:.{places}f}{suffix}"


def _nonzero(counts: dict[str, int]) -> str:
    shown = [f"{name} {n}" for name, n in counts.items() if n]
    return ", ".join(shown) if shown else "none"


def costs_view(report: dict[str, Any]) -> str:
    """GET /api/v1/costs/: a row per group, then the total (the rows' exact sum)."""
    rows = [[row["key"], f"${row['cost_usd']}"] for row in report["rows"]]
    rows.append(["total", f"${report['total_usd']}"])
    header = f"from {report['from']} to {report['to']}"
    return header + "\n" + table([report["group_by"], "cost"], rows)


def budget_view(budget: dict[str, Any]) -> str:
    limit = budget["monthly_limit_usd"]
    pairs: list[tuple[str, Any]] = [
        ("month", budget["month"]),
        ("limit", f"${limit}" if limit is not None else "no budget"),
        ("spent", f"${budget['spent_this_month_usd']}"),
        ("projected", f"${budget['projected_month_usd']}"),
        ("remaining", f"${budget['remaining_usd']}" if budget["remaining_usd"] else None),
        ("thresholds", ", ".join(f"{p}%" for p in budget["alert_thresholds"])),
        ("when exhausted", budget["on_exhausted"]),
        ("webhook", budget["webhook_url"]),
    ]
    return key_values(pairs)


def summary_view(summary: dict[str, Any]) -> str:
    """GET /api/v1/metrics/ as key-value lines (only the statuses that have any)."""
    instances = summary["instances"]
    pairs: list[tuple[str, Any]] = [
        ("scope", summary.get("tenant") or "every tenant"),
        ("instances", _nonzero(instances["by_status"])),
        ("holding a GPU", f"{instances['holding_a_gpu']} ({instances['gpus_held']} GPUs)"),
        ("spend", usd(summary["spend"]["usd_per_hour"])),
        ("this month", f"${summary['spend'].get('this_month_usd', '0')}"),
        ("spot recoveries", summary["spot_recoveries"]),
        ("jobs", _nonzero(summary["jobs"]["by_status"])),
        ("webhook deliveries", _nonzero(summary["webhook_deliveries"]["by_status"])),
    ]
    quota = summary.get("quota")
    if quota:
        limits = [
            f"{used}/{limit if limit is not None else 'no limit'} {what}"
            for what, used, limit in (
                ("instances", quota["instances"], quota["max_instances"]),
                ("GPUs", quota["gpus"], quota["max_gpus"]),
            )
        ]
        pairs.append(("quota", ", ".join(limits)))
    plane = summary.get("control_plane")
    if plane:
        pairs.append(("Novita circuit", plane["novita_circuit"]))
        pairs.append(("monitoring passes", plane["monitor_passes"]))
        pairs.append(("catalog synced", when(plane["catalog_last_sync_at"]) or NONE))
    return key_values(pairs)


# --- instances ---------------------------------------------------------------------------------


def endpoint_line(endpoint: dict[str, Any]) -> str:
    healthy = endpoint.get("healthy")
    health = {True: "healthy", False: "unhealthy", None: "not checked"}.get(healthy, str(healthy))
    return f"{endpoint.get('port')}/{endpoint.get('type')}  {endpoint.get('url') or NONE}  {health}"


def access_pairs(instance: dict[str, Any]) -> list[tuple[str, Any]]:
    """Its volumes, where to ssh and its logs, when it has them."""
    pairs: list[tuple[str, Any]] = []
    if instance.get("volumes"):
        mounts = [f"{v.get('name')} on {v.get('mount_path')}" for v in instance["volumes"]]
        pairs.append(("volumes", "\n".join(mounts)))
    if instance.get("ssh"):
        pairs.append(("ssh", instance["ssh"].get("command")))
    if instance.get("logs_url"):
        pairs.append(("logs", instance["logs_url"]))
    return pairs


def instance_view(instance: dict[str, Any]) -> str:
    product = instance.get("product") or {}
    pairs: list[tuple[str, Any]] = [
        ("id", instance.get("id")),
        ("name", instance.get("name")),
        ("status", instance.get("status")),
    ]
    if instance.get("failure_reason") or instance.get("failure_message"):
        pairs.append(
            ("failure", f"{instance.get('failure_reason')}: {instance.get('failure_message')}")
        )
    pairs += [
        ("product", product.get("name")),
        ("region", instance.get("region")),
        ("gpus", instance.get("gpu_num")),
        ("billing", instance.get("billing_mode")),
        ("price", usd(instance.get("price_per_hour"))),
        ("template", instance.get("template_id")),
        ("rootfs", f"{instance.get('rootfs_size')} GB"),
        ("novita id", instance.get("novita_instance_id")),
        ("endpoints", "\n".join(endpoint_line(e) for e in instance.get("endpoints") or [])),
    ]
    pairs += access_pairs(instance)
    if instance.get("billing_mode") == "spot":
        pairs += [
            ("on preempt", instance.get("on_preempt")),
            ("recoveries", instance.get("recoveries")),
        ]
    if instance.get("idle_timeout_seconds") is not None:
        pairs += [
            (
                "idle timeout",
                f"{instance['idle_timeout_seconds']} s, then {instance.get('on_idle') or 'stop'}",
            ),
            ("last active", when(instance.get("last_active_at"))),
            ("idle stop at", when(instance.get("idle_stop_at"))),
        ]
    if instance.get("webhook_url"):
        pairs.append(("webhook", instance["webhook_url"]))
    for key in ("created_at", "provisioned_at", "ready_at", "stopped_at", "terminated_at"):
        if instance.get(key) or key == "created_at":
            pairs.append((key.removesuffix("_at"), when(instance.get(key))))
    job = instance.get("job")
    if job:
        attempts = job.get("attempts")
        text = f"{job.get('kind')} {job.get('status')} ({attempts} attempt{'s' * (attempts != 1)})"
        if job.get("last_error"):
            text += f": {job['last_error']}"
        pairs.append(("job", text))
    return key_values(pairs)


INSTANCE_COLUMNS = ("ID", "NAME", "STATUS", "PRODUCT", "GPUS", "REGION", "PRICE", "CREATED")
VOLUME_COLUMNS = ("ID", "NAME", "STATUS", "REGION", "SIZE", "USD/GB/DAY", "USD/DAY", "CREATED")


def volume_row(volume: dict[str, Any]) -> list[Any]:
    return [
        volume.get("id"),
        volume.get("name"),
        volume.get("status"),
        volume.get("region"),
        f"{volume.get('size_gb')} GB",
        volume.get("price_per_gb_day"),
        volume.get("cost_per_day"),
        when(volume.get("created_at")),
    ]


def volume_view(volume: dict[str, Any]) -> str:
    return key_values(list(zip(VOLUME_COLUMNS, volume_row(volume), strict=True)))


def instance_row(instance: dict[str, Any]) -> list[Any]:
    return [
        instance.get("id"),
        instance.get("name"),
        instance.get("status"),
        (instance.get("product") or {}).get("name"),
        instance.get("gpu_num"),
        instance.get("region"),
        usd(instance.get("price_per_hour")),
        when(instance.get("created_at")),
    ]


def transition(event: dict[str, Any]) -> str:
    """pending → provisioning, or just `provisioning` for a step inside one status."""
    before, after = event.get("from_status"), event.get("to_status")
    if before == after:
        return str(after)
    return f"{before or ''} → {after}".strip()


def event_rows(events: Iterable[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            when(e.get("at")),
            transition(e),
            e.get("reason"),
            e.get("actor"),
            e.get("message"),
        ]
        for e in events
    ]


EVENT_COLUMNS = ("AT", "STATUS", "REASON", "ACTOR", "MESSAGE")


# --- catalog -----------------------------------------------------------------------------------

PRODUCT_COLUMNS = ("NAME", "REGION", "PRICE", "SPOT", "AVAILABLE", "GPUS FREE", "ROOTFS GB")


def product_row(product: dict[str, Any]) -> list[Any]:
    return [
        product.get("name"),
        product.get("region"),
        usd(product.get("price_per_hour")),
        usd(product.get("spot_price_per_gpu_hour")),
        product.get("available"),
        product.get("available_gpu_number"),
        f"{product.get('min_rootfs')}-{product.get('max_rootfs')}",
    ]


OFFER_COLUMNS = ("#", "PRODUCT", "REGION", "BILLING", "GPUS", "PRICE", "INVENTORY")


def offer_row(rank: int, offer: dict[str, Any]) -> list[Any]:
    return [
        rank,
        offer.get("product_name"),
        offer.get("region_code"),
        offer.get("billing_mode"),
        offer.get("gpu_num"),
        usd(offer.get("price_per_hour")),
        offer.get("inventory_state"),
    ]


# --- errors ------------------------------------------------------------------------------------


def _flatten(details: Any, prefix: str = "") -> list[str]:
    """{"envs": [{"key": ["bad"]}], "gpu_num": ["too big"]} → envs.0.key: bad, gpu_num: …"""
    if isinstance(details, dict):
        lines: list[str] = []
        for key, value in details.items():
            lines += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return lines
    if isinstance(details, list):
        if all(not isinstance(item, dict | list) for item in details):
            text = " ".join(str(item) for item in details)
            return [f"{prefix}: {text}" if prefix else text] if text else []
        lines = []
        for index, item in enumerate(details):
            lines += _flatten(item, f"{prefix}.{index}" if prefix else str(index))
        return lines
    if details in (None, ""):
        return []
    return [f"{prefix}: {details}" if prefix else str(details)]


def api_error(error: ApiError) -> str:
    lines = [f"error: {error.status} {error.code}: {error.message}"]
    lines += [f"  {line}" for line in _flatten(error.details)]
    if error.retry_after:
        lines.append(f"  retry after: {error.retry_after} s")
    if error.request_id:
        lines.append(f"  request_id: {error.request_id}")
    return "\n".join(lines)
