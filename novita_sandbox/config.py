"""Sandbox configuration: lifecycle timing, fault injection and fidelity switches.

All three are plain dataclasses that can be set at start (SandboxConfig, CLI flags) and changed
at runtime through the control endpoints (POST /_sandbox/timing, /_sandbox/faults,
/_sandbox/fidelity). The JSON form of each is its field names in snake_case; `timing_update`,
`faults_update` and `fidelity_update` validate a partial change and return a new value (the
current one is never half-changed).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

# --- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Seconds an instance dwells in each transient status, and the app's boot time.

    A change applies to transitions scheduled after it (each action plans its statuses when it is
    taken); `app_boot` is captured when an instance is scheduled to run.
    """

    to_create: float = 0.1
    creating: float = 0.15
    pulling: float = 0.2
    to_start: float = 0.1
    starting: float = 0.15
    to_stop: float = 0.1
    stopping: float = 0.15
    to_restart: float = 0.1
    restarting: float = 0.15
    to_remove: float = 0.1
    removing: float = 0.15
    migrating: float = 0.2
    removed_linger: float = 0.5  # a removed instance still answers GET and lists this long
    app_boot: float = 0.3  # seconds after `running` until the app's http ports answer 200
    reclaim_notice: float = 0.2  # spot reclaim: notified -> reclaiming
    reclaiming: float = 0.2  # spot reclaim: reclaiming -> terminated (status exited)
    save_image: float = 0.3  # a save-image job runs this long, then succeeds (or fails)
    # GPU metrics: the newest point is this much older than now (Novita's "about a minute").
    metrics_lag: float = 60.0


TIMING_PRESETS: dict[str, Timing] = {
    "fast": Timing(),
    "realistic": Timing(
        to_create=2.0,
        creating=5.0,
        pulling=20.0,
        to_start=2.0,
        starting=8.0,
        to_stop=2.0,
        stopping=5.0,
        to_restart=2.0,
        restarting=10.0,
        to_remove=2.0,
        removing=4.0,
        migrating=30.0,
        removed_linger=60.0,
        app_boot=15.0,
        reclaim_notice=120.0,
        reclaiming=30.0,
        save_image=90.0,
        metrics_lag=60.0,
    ),
}

# Novita status (camelCase) -> Timing field, so "--dwell pulling=5" and "toCreate=1" both work.
STATUS_DWELL_FIELDS: dict[str, str] = {
    "toCreate": "to_create",
    "creating": "creating",
    "pulling": "pulling",
    "toStart": "to_start",
    "starting": "starting",
    "toStop": "to_stop",
    "stopping": "stopping",
    "toRestart": "to_restart",
    "restarting": "restarting",
    "toRemove": "to_remove",
    "removing": "removing",
    "migrating": "migrating",
}


class ConfigError(ValueError):
    """A timing or fault change that does not validate; nothing was changed."""


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number")
    if value < 0:
        raise ConfigError(f"{name} must be >= 0")
    return float(value)


def timing_update(current: Timing, changes: dict[str, Any]) -> Timing:
    known = {f.name for f in dataclasses.fields(Timing)}
    values: dict[str, float] = {}
    for key, value in changes.items():
        name = STATUS_DWELL_FIELDS.get(key, key)
        if name not in known:
            raise ConfigError(f"unknown timing key: {key}")
        values[name] = _number(key, value)
    return dataclasses.replace(current, **values)


# --- faults -------------------------------------------------------------------------------------

NGINX_502_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class FailRule:
    """Answer the next `count` matching API calls with `status` (deterministic failures).

    path: API path below /gpu-instance/openapi/v1 (e.g. "/gpu/instance/create"); "" = any.
    method: "GET" / "POST"; "" = any. count: -1 = every matching call (until `until`).
    for_seconds: the rule expires that many seconds after it is set (`until` is then absolute).
    after_effect: the call takes effect first, then its answer is replaced by the failure
    (a create that happened although the caller saw a 5xx). drop: close the connection without
    any answer instead. retry_after: Retry-After header in seconds (429 gets 1 by default).
    hang_s: the call hangs this many seconds before its answer (or the drop) leaves: a Novita
    that stops answering, the caller's read timeout going off first (with after_effect, the
    call took effect meanwhile; without it, nothing happened).
    """

    status: int = 500
    path: str = ""
    method: str = ""
    count: int = 1
    for_seconds: float | None = None
    until: float | None = None
    reason: str = ""
    message: str = ""
    retry_after: int | None = None
    after_effect: bool = False
    drop: bool = False
    hang_s: float = 0.0

    def matches(self, method: str, path: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.count == 0:
            return False
        return (not self.path or self.path == path) and (not self.method or self.method == method)


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Every field is settable at runtime."""

    error_rate: float = 0.0  # fraction of API calls answered 500 UNKNOWN (no effect)
    latency_ms: float = 0.0  # added before every API call is handled
    fail_next: tuple[FailRule, ...] = ()
    rate_limit_per_second: float = 0.0  # 0 = off; above it 429 with Retry-After
    rate_limit_window_s: float = 1.0  # the limit is rate * window calls per sliding window
    # create -> 400 INSUFFICIENT_RESOURCE; key "<clusterId>", "<clusterId>/<productId>" or "*",
    # value: how many next creates there fail (-1: all of them).
    capacity_errors: dict[str, int] = field(default_factory=dict)
    start_capacity_errors: dict[str, int] = field(default_factory=dict)  # same, for start
    lose_create_answers: int = 0  # next N successful creates lose their answer
    lose_create_mode: str = "close"  # close: connection closed; delay: answered late
    lose_create_delay_s: float = 30.0
    # image pull fails (creating -> pulling -> exited, statusError) for matching instances:
    pull_fail_name: str = ""  # fnmatch pattern on the instance name
    pull_fail_image: str = ""  # substring of imageUrl
    pull_fail_next: int = 0  # the next N creates, whatever their name or image
    # the app on matching instances never answers 200 (503, or the proxy page below):
    unhealthy_name: str = ""
    unhealthy_image: str = ""
    # while not ready, matching instances answer 200 with a proxy error page instead of 503:
    proxy_error_name: str = ""
    proxy_error_image: str = ""
    proxy_error_body: str = NGINX_502_PAGE
    save_image_fail_image: str = ""  # a save-image job whose target contains this fails
    not_found_status: int = 404  # 404 or 400 for an unknown instance
    not_found_spelling: str = "not found"  # or "not fount", as the live API sometimes says
    list_lag_s: float = 0.0  # a new instance shows up in GET /gpu/instances this much later
    # GET /gpu/instances items carry portMappings without "endpoint", as Novita's docs show
    # them; GET /gpu/instance always has the endpoints.
    list_omits_endpoints: bool = False

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fail_next"] = [dataclasses.asdict(rule) for rule in self.fail_next]
        return data


def _fail_rule(raw: Any, now: float) -> FailRule:  # noqa: C901 - one check per field of a fail rule
    if not isinstance(raw, dict):
        raise ConfigError("fail_next entries must be objects")
    known = {f.name for f in dataclasses.fields(FailRule)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown fail_next keys: {sorted(unknown)}")
    values = dict(raw)
    status = values.get("status", 500)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise ConfigError("fail_next status must be an HTTP error status (400-599)")
    for key in ("path", "method", "reason", "message"):
        if not isinstance(values.get(key, ""), str):
            raise ConfigError(f"fail_next {key} must be a string")
    path = values.get("path", "")
    if path.startswith(API_PREFIX):
        values["path"] = path[len(API_PREFIX) :]
    values["method"] = values.get("method", "").upper()
    for_seconds = values.get("for_seconds")
    if for_seconds is not None:
        values["for_seconds"] = _number("for_seconds", for_seconds)
        values["until"] = now + values["for_seconds"]
        values.setdefault("count", -1)
    count = values.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < -1:
        raise ConfigError("fail_next count must be an integer >= -1")
    retry_after = values.get("retry_after")
    if retry_after is not None and (
        not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0
    ):
        raise ConfigError("fail_next retry_after must be an integer >= 0")
    for key in ("after_effect", "drop"):
        if not isinstance(values.get(key, False), bool):
            raise ConfigError(f"fail_next {key} must be a boolean")
    if "hang_s" in values:
        values["hang_s"] = _number("fail_next hang_s", values["hang_s"])
    return FailRule(**values)


def _counts(name: str, raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name} must be an object")
    out: dict[str, int] = {}
    for key, value in raw.items():
        if value is True:
            value = -1
        if not isinstance(value, int) or isinstance(value, bool) or value < -1:
            raise ConfigError(f"{name} values must be integers >= -1 (or true)")
        if value != 0:
            out[str(key)] = value
    return out


_CHOICES: dict[str, tuple[Any, ...]] = {
    "lose_create_mode": ("close", "delay"),
    "not_found_status": (400, 404),
    "not_found_spelling": ("not found", "not fount"),
}


def faults_update(current: Faults, changes: dict[str, Any], *, now: float | None = None) -> Faults:  # noqa: C901, PLR0912 - one check per fault switch
    """Validate a partial change (JSON-like values) and return the new Faults."""
    now = time.time() if now is None else now
    defaults = Faults()
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if not hasattr(defaults, key):
            raise ConfigError(f"unknown fault: {key}")
        default = getattr(defaults, key)
        if key == "fail_next":
            if not isinstance(value, list):
                raise ConfigError("fail_next must be a list of rules")
            values[key] = tuple(_fail_rule(rule, now) for rule in value)
        elif key in ("capacity_errors", "start_capacity_errors"):
            values[key] = _counts(key, value)
        elif key in _CHOICES:
            if value not in _CHOICES[key] or isinstance(value, bool):
                raise ConfigError(f"{key} must be one of {list(_CHOICES[key])}")
            values[key] = value
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false")
            values[key] = value
        elif isinstance(default, float):
            values[key] = _number(key, value)
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{key} must be an integer >= 0")
            values[key] = value
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string")
            values[key] = value
    if values.get("error_rate", 0.0) > 1.0:
        raise ConfigError("error_rate must be in [0, 1]")
    if values.get("rate_limit_window_s", 1.0) <= 0:
        raise ConfigError("rate_limit_window_s must be > 0")
    return dataclasses.replace(current, **values)


def faults_activate(faults: Faults, now: float) -> Faults:
    """Restart the clocks of time-limited rules (for a start config applied at `now`)."""
    rules = tuple(
        dataclasses.replace(rule, until=now + rule.for_seconds)
        if rule.for_seconds is not None
        else rule
        for rule in faults.fail_next
    )
    return dataclasses.replace(faults, fail_next=rules)


# --- fidelity: where Novita's documentation leaves room, the answer it may really give -----------


@dataclass(frozen=True)
class Fidelity:
    """Switches between equally plausible readings of Novita's docs (novita-api.md §7.5).

    The defaults are the sandbox's usual answers; each switch turns on the other reading, so that
    a client can be tested against both.
    """

    # "slug": cluster ids like "us-tx-2" named "US-TX-02 (Dallas)"; "numeric": ids like "5" named
    # "EU-01" (what the current docs show). Only the wire changes: the control API keeps slugs.
    cluster_ids: str = "slug"
    # False: get/list instance omit createdAt, lastStartedAt, lastStoppedAt (the current docs).
    instance_timestamps: bool = True
    # "names": products list the names of their clusters; "empty": `regions: []`, which Novita
    # documents as "available in every cluster".
    product_regions: str = "names"
    # False: spotStatus and spotReclaimTime only on GET /gpu/instances (where they are documented),
    # not on GET /gpu/instance.
    spot_status_on_get: bool = True
    # True: bill/list and the balance only count hours that have ended ("settled hourly").
    bills_settle_hourly: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIDELITY_CHOICES: dict[str, tuple[str, ...]] = {
    "cluster_ids": ("slug", "numeric"),
    "product_regions": ("names", "empty"),
}


def fidelity_update(current: Fidelity, changes: dict[str, Any]) -> Fidelity:
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in {f.name for f in dataclasses.fields(Fidelity)}:
            raise ConfigError(f"unknown fidelity switch: {key}")
        choices = _FIDELITY_CHOICES.get(key)
        if choices is not None:
            if value not in choices:
                raise ConfigError(f"{key} must be one of {list(choices)}")
        elif not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false")
        values[key] = value
    return dataclasses.replace(current, **values)


# --- the whole configuration ---------------------------------------------------------------------

API_PREFIX = "/gpu-instance/openapi/v1"
# Novita's "core" surface (billing, GPU metrics): https://api.novita.ai/openapi/v1, same host.
CORE_PREFIX = "/openapi/v1"
MONEY_PER_USD = 10_000  # billing money (bills, balance) is in 1/10000 USD
DEFAULT_BALANCE = 1_000_000 * MONEY_PER_USD  # a million dollars: demos and benchmarks never run dry


@dataclass(frozen=True)
class SandboxConfig:
    timing: Timing = field(default_factory=Timing)
    faults: Faults = field(default_factory=Faults)
    fidelity: Fidelity = field(default_factory=Fidelity)
    seed: int = 0  # ids, passwords, random cluster choice and error_rate draws
    public_host: str = ""  # host in endpoint URLs; "" = the host the server listens on
    balance: int = DEFAULT_BALANCE  # starting cash balance, 1/10000 USD
