"""The one client of the Novita API (docs/novita-api.md). Nothing else imports `requests`.

Two surfaces on one host: the GPU-instance API (NOVITA_API_BASE_URL, …/gpu-instance/openapi/v1)
and the core one (NOVITA_CORE_API_BASE_URL, …/openapi/v1: bills, the balance, GPU metrics).

Every call: the shared circuit breaker (breaker.py), a slot under the shared request-rate ceiling
(ratelimit.py), one HTTP attempt with (connect, read) timeouts, metrics and a debug line, and the
answer turned into dataclasses (parsing.py) or a NovitaError (responses.py).

Retries. Reads and the repeat-safe mutations (start, stop, restart, delete, edit: a repeat
answers "invalid state change" or not-found, which callers already treat as "re-read") are
retried on Unavailable and RateLimited, with capped exponential backoff and full jitter (the
project's one retry policy, novitai/retry.py), and never before a Retry-After has run out. A
create (and a migrate, which may create an instance) is retried only when nothing was sent
(ConnectFailed) or on a 429 (refused, not created); when the request may have reached Novita
(read timeout, a connection broken after sending, a 5xx, an unreadable 2xx) it raises
UnknownOutcome, and the caller looks the instance up by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

from novitai.logging import REDACTED, redact
from novitai.novita import parsing
from novitai.novita.breaker import BreakerSnapshot, Ticket
from novitai.novita.config import NovitaConfig
from novitai.novita.errors import (
    CircuitOpen,
    ConnectFailed,
    MalformedResponse,
    NotFound,
    NovitaError,
    RateLimited,
    RejectedInput,
    Unavailable,
    UnknownOutcome,
)
from novitai.novita.metrics import DURATION, REQUESTS, RETRIES, outcome_label
from novitai.novita.ratelimit import Priority
from novitai.novita.responses import (
    error_body,
    error_for_status,
    read_json,
    transport_error,
)
from novitai.novita.types import (
    Balance,
    Bill,
    Cluster,
    CreateInstanceRequest,
    GpuMetrics,
    Job,
    NetworkStorage,
    NovitaInstance,
    PortSpec,
    Product,
    RegistryAuth,
    Template,
)
from novitai.retry import backoff_delay, parse_retry_after

logger = logging.getLogger("novitai.novita")

USER_AGENT = "novitai/0.1 (+https://github.com/novitai)"
# A listing that has not ended after this many pages is a server that never ends.
MAX_PAGES = 1000

# GPU metrics: where Novita's official CLI calls them (the core surface, `instanceId`); one SDK
# uses the GPU-instance surface with `instance_id` instead (novita-api.md §7.4). This is the one
# place that knows: change it here if the live API proves the other. One instance a call.
GPU_METRICS_SURFACE = "core"  # "core" | "gpu-instance"
GPU_METRICS_PATH = "/metrics/gpu/instance"
GPU_METRICS_ID_PARAM = "instanceId"


class Repeat(Enum):
    SAFE = "safe"  # a repeat cannot do the thing twice: retry transient failures
    UNSAFE = "unsafe"  # create, migrate: retry only what was surely not done


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_HasId)


class NovitaClient:
    max_pages = MAX_PAGES

    def __init__(self, config: NovitaConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.pid = os.getpid()
        self._breaker = config.breaker()
        self._limiter = config.rate_limiter()
        self._sleep = sleep
        # Novita's pageNum is 0-based by every live observation, but some readers of the docs
        # take it as 1-based with 0 meaning 1; a listing finds out and remembers (see _pages).
        self._first_page = 0
        self._session = requests.Session()
        # Connections kept for the threads of a worker (the provision worker runs 16): beyond
        # this many at once, a connection is opened for the call and closed after it.
        adapter = HTTPAdapter(max_retries=0, pool_connections=1, pool_maxsize=32)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {config.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
        )

    def __repr__(self) -> str:
        return f"NovitaClient({self.config.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def breaker_snapshot(self) -> BreakerSnapshot:
        return self._breaker.snapshot()

    # --- catalog ------------------------------------------------------------------------------

    def list_clusters(self) -> list[Cluster]:
        return self._data_list("/clusters", parsing.parse_cluster)

    def list_products(
        self,
        *,
        cluster_id: str | None = None,
        gpu_num: int | None = None,
        product_name: str | None = None,
        min_cpu_per_gpu: int | None = None,
        min_memory_per_gpu: int | None = None,
        min_rootfs_size: int | None = None,
        billing_method: str | None = None,
    ) -> list[Product]:
        params = _params(
            clusterId=cluster_id,
            gpuNum=gpu_num,
            productName=product_name,
            minCpuPerGpu=min_cpu_per_gpu,
            minMemoryPerGpu=min_memory_per_gpu,
            minRootFSSize=min_rootfs_size,
            billingMethod=billing_method,
        )
        return self._data_list("/products", parsing.parse_product, params=params)

    def list_templates(
        self, *, name: str | None = None, channel: str | Sequence[str] | None = None
    ) -> list[Template]:
        if channel is not None and not isinstance(channel, str):
            channel = ",".join(channel)
        return self._pages(
            "/templates", "template", _params(name=name, channel=channel), parsing.parse_template
        )

    def get_template(self, template_id: str) -> Template:
        endpoint = "/template"
        payload = self._get_object(endpoint, params={"templateId": template_id})
        with self._parsing(endpoint):
            return parsing.parse_template(payload.get("template"), "template")

    def list_registry_auths(self) -> list[RegistryAuth]:
        return self._data_list("/repository/auths", parsing.parse_registry_auth)

    # --- instances ----------------------------------------------------------------------------

    def create_instance(self, request: CreateInstanceRequest) -> str:
        """Create an instance and return its id. Never retried once it may have been sent:
        UnknownOutcome means "look it up by name before trying again"."""
        endpoint = "/gpu/instance/create"
        body: dict[str, Any] = {
            "name": request.name,
            "productId": request.product_id,
            "gpuNum": request.gpu_num,
            "rootfsSize": request.rootfs_size,
            "imageUrl": request.image_url,
            "clusterId": request.cluster_id,
            "kind": request.kind,
            "billingMode": request.billing_mode,
            "envs": [{"key": env.key, "value": env.value} for env in request.envs],
            "command": request.command,
        }
        if request.ports:
            body["ports"] = ",".join(f"{port.port}/{port.type}" for port in request.ports)
        if request.image_auth_id:
            body["imageAuthId"] = request.image_auth_id
        if request.entrypoint:
            body["entrypoint"] = request.entrypoint
        if request.min_cuda_version:
            body["minCudaVersion"] = request.min_cuda_version
        if request.network_storages:
            body["networkStorages"] = [
                {"Id": mount.id, "mountPoint": mount.mount_point}
                for mount in request.network_storages
            ]
        payload = self._call(
            "POST",
            endpoint,
            body=body,
            repeat=Repeat.UNSAFE,
            read_timeout=self.config.create_timeout,
        )
        instance_id = _answer_id(payload, "id")
        if instance_id is None:
            # 2xx, so Novita probably created it; without its id only the name can find it.
            raise UnknownOutcome(
                "Novita accepted the create but its answer has no instance id",
                endpoint=endpoint,
            )
        return instance_id

    def list_instances(
        self,
        *,
        name: str | None = None,
        product_name: str | None = None,
        status: str | None = None,
    ) -> list[NovitaInstance]:
        """Every instance on every page (Novita's `name` and `productName` filters are fuzzy)."""
        return self._pages(
            "/gpu/instances",
            "instances",
            _params(name=name, productName=product_name, status=status),
            parsing.parse_instance,
        )

    def find_instances_by_name(self, name: str) -> list[NovitaInstance]:
        """The instances named exactly `name`, in `oldest_first` order."""
        return oldest_first(i for i in self.list_instances(name=name) if i.name == name)

    def get_instance(self, instance_id: str, *, priority: Priority | None = None) -> NovitaInstance:
        """One instance's page. priority: LOW for a read that only fills in details (it then
        waits at the rate ceiling behind creates and checks); by default an instance's GET goes
        first."""
        endpoint = "/gpu/instance"
        payload = self._get_object(endpoint, params={"instanceId": instance_id}, priority=priority)
        with self._parsing(endpoint):
            return parsing.parse_instance(payload)

    def start_instance(self, instance_id: str) -> None:
        self._mutate("/gpu/instance/start", {"instanceId": instance_id})

    def stop_instance(self, instance_id: str) -> None:
        self._mutate("/gpu/instance/stop", {"instanceId": instance_id})

    def restart_instance(self, instance_id: str) -> None:
        self._mutate("/gpu/instance/restart", {"instanceId": instance_id})

    def delete_instance(self, instance_id: str) -> None:
        self._mutate("/gpu/instance/delete", {"instanceId": instance_id})

    def edit_instance(
        self,
        instance_id: str,
        *,
        ports: Sequence[PortSpec] | None = None,
        expand_root_disk: int | None = None,
    ) -> None:
        body: dict[str, Any] = {"instanceId": instance_id}
        if ports is not None:
            body["ports"] = [{"port": port.port, "type": port.type} for port in ports]
        if expand_root_disk is not None:
            body["expandRootDisk"] = expand_root_disk
        self._mutate("/gpu/instance/edit", body)

    def migrate_instance(self, instance_id: str) -> str | None:
        """Migrate (a reclaimed spot instance); the new instance's id when Novita gives one.

        A migrate may create an instance, so it is retried like a create: UnknownOutcome when
        its answer was lost."""
        payload = self._call(
            "POST", "/gpu/instance/migrate", body={"instanceId": instance_id}, repeat=Repeat.UNSAFE
        )
        return _answer_id(payload, "newInstanceId")

    # --- network storage ------------------------------------------------------------------------

    def list_network_storages(
        self, *, name: str | None = None, storage_id: str | None = None
    ) -> list[NetworkStorage]:
        """Every volume on every page (`pageNo`, not `pageNum`, and 1-based). `name` is Novita's
        storageName filter; `storage_id` one volume."""
        return self._pages(
            "/networkstorages/list",
            "data",
            _params(storageName=name, storageId=storage_id),
            parsing.parse_network_storage,
            page_param="pageNo",
            first_page=1,
        )

    def create_network_storage(self, *, cluster_id: str, name: str, size_gb: int) -> str:
        """Create a volume (≥ 10 GB, in a cluster with network storage); its id. Never retried
        once it may have been sent: UnknownOutcome means "look for it by name first"."""
        endpoint = "/networkstorage/create"
        payload = self._call(
            "POST",
            endpoint,
            body={"clusterId": cluster_id, "storageName": name, "storageSize": size_gb},
            repeat=Repeat.UNSAFE,
        )
        # Novita answers a bare JSON string; an object carrying the id is read too.
        storage_id = _answer_id(payload, "storageId", "id", "data", bare=True)
        if storage_id is None:
            raise UnknownOutcome(
                "Novita accepted the volume but its answer has no id", endpoint=endpoint
            )
        return storage_id

    def update_network_storage(
        self, storage_id: str, *, name: str | None = None, size_gb: int | None = None
    ) -> None:
        """Rename and/or grow a volume (it cannot shrink: RejectedInput). NotFound if gone."""
        body = {"storageId": storage_id, **_params(storageName=name, storageSize=size_gb)}
        with _storage_target():
            self._mutate("/networkstorage/update", body)

    def delete_network_storage(self, storage_id: str) -> None:
        """InUse while an instance holds it; NotFound once gone."""
        with _storage_target():
            self._mutate("/networkstorage/delete", {"storageId": storage_id})

    # --- jobs: save image ----------------------------------------------------------------------

    def save_image(
        self, instance_id: str, *, image: str, registry_auth_id: str | None = None
    ) -> str:
        """Start saving a running or stopped instance as `image`; the job id. Not retried once it
        may have been sent (a second job, or OPERATION_LIMIT): UnknownOutcome means "look at the
        instance's jobs first"."""
        endpoint = "/job/save/image"
        body = {"instanceId": instance_id, "image": image}
        body.update(_params(registryAuthId=registry_auth_id))
        payload = self._call("POST", endpoint, body=body, repeat=Repeat.UNSAFE)
        job_id = _answer_id(payload, "jobId")
        if job_id is None:
            raise UnknownOutcome(
                "Novita accepted the save-image job but its answer has no job id",
                endpoint=endpoint,
            )
        return job_id

    def list_jobs(
        self,
        *,
        job_id: str | None = None,
        state: str | None = None,
        type: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> list[Job]:
        """Every job on every page, newest first (state: see JobState; start_time and end_time
        bound its createdAt, unix seconds)."""
        params = _params(
            jobId=job_id, state=state, type=type, startTime=start_time, endTime=end_time
        )
        return self._pages("/jobs", "jobs", params, parsing.parse_job)

    def break_job(self, job_id: str) -> None:
        """Cancel a running job (InvalidStateChange once it is over; NotFound if unknown)."""
        self._mutate("/job/break", {"jobId": job_id})

    # --- the core surface: money and metrics ---------------------------------------------------

    def list_bills(
        self,
        *,
        cycle_type: str,
        start_time: int,
        end_time: int,
        product_category: str | None = None,
        product_name: str | None = None,
        owner_id: str | None = None,
    ) -> list[Bill]:
        """Usage bills, one row per cycle period (Hour, Day, Week, Month), owner, product and
        price, over [start_time, end_time) (unix seconds, at most 31 days: Novita refuses more).
        `owner_id` is an instance or storage id. No pagination."""
        endpoint = "/billing/bill/list"
        params = _params(
            cycleType=cycle_type,
            startTime=start_time,
            endTime=end_time,
            productCategory=product_category,
            productName=product_name,
            ownerId=owner_id,
        )
        payload = self._call("GET", endpoint, params=params, base_url=self.config.core_base_url)
        with self._parsing(endpoint):
            if isinstance(payload, list):  # a bare list is read too
                payload = {"data": payload}
            rows = parsing.as_list(parsing.as_object(payload, "answer").get("data"), "data")
            return [parsing.parse_bill(row, f"data[{i}]") for i, row in enumerate(rows)]

    def balance(self) -> Balance:
        endpoint = "/billing/balance/detail"
        payload = self._call("GET", endpoint, base_url=self.config.core_base_url)
        with self._parsing(endpoint):
            obj = parsing.as_object(payload, "answer")
            inner = obj.get("data")  # an envelope is read too
            return parsing.parse_balance(inner if isinstance(inner, Mapping) else obj)

    def gpu_metrics(
        self, instance_id: str, *, start_time: int, end_time: int, interval: int = 60
    ) -> GpuMetrics:
        """One instance's cpu, memory, root disk, GPU and GPU-memory utilization series over
        [start_time, end_time] (unix seconds) every `interval` seconds (> 15). Per instance:
        Novita has no batch read. The newest point lags about a minute."""
        base = self.config.core_base_url if GPU_METRICS_SURFACE == "core" else None
        params = {
            GPU_METRICS_ID_PARAM: instance_id,
            "startTime": start_time,
            "endTime": end_time,
            "interval": interval,
        }
        payload = self._call("GET", GPU_METRICS_PATH, params=params, base_url=base)
        with self._parsing(GPU_METRICS_PATH):
            obj = parsing.as_object(payload, "answer")
            inner = obj.get("data")
            return parsing.parse_gpu_metrics(inner if isinstance(inner, Mapping) else obj)

    def ping(self) -> float:
        """One cheap call (GET /clusters), short timeouts, no retry: seconds it took."""
        started = time.perf_counter()
        self._call(
            "GET",
            "/clusters",
            retries=0,
            connect_timeout=min(self.config.connect_timeout, 2.0),
            read_timeout=min(self.config.read_timeout, 3.0),
            max_wait=1.0,
        )
        return time.perf_counter() - started

    # --- plumbing -----------------------------------------------------------------------------

    def _mutate(self, endpoint: str, body: dict[str, Any]) -> None:
        # The answer's body is not needed ({} or {instanceId, state}; some answer nothing).
        self._call("POST", endpoint, body=body, expect_body=False)

    def _get_object(
        self,
        endpoint: str,
        *,
        params: dict[str, Any] | None = None,
        priority: Priority | None = None,
    ) -> Mapping[str, Any]:
        payload = self._call("GET", endpoint, params=params, priority=priority)
        with self._parsing(endpoint):
            return parsing.as_object(payload, "answer")

    def _data_list(
        self,
        endpoint: str,
        parse: Callable[[object, str], ItemT],
        *,
        params: dict[str, Any] | None = None,
    ) -> list[ItemT]:
        """The items of an unpaged `{"data": [...]}` answer."""
        payload = self._get_object(endpoint, params=params)
        with self._parsing(endpoint):
            return self._items(payload, "data", parse)

    @staticmethod
    def _items(
        payload: Mapping[str, Any], key: str, parse: Callable[[object, str], ItemT]
    ) -> list[ItemT]:
        raw = parsing.as_list(payload.get(key), key)
        return [parse(item, f"{key}[{i}]") for i, item in enumerate(raw)]

    @contextlib.contextmanager
    def _parsing(self, endpoint: str) -> Iterator[None]:
        try:
            yield
        except parsing.ShapeError as exc:
            logger.warning("novita %s: unreadable answer: %s", endpoint, exc)
            raise MalformedResponse(
                f"Novita's answer has the wrong shape: {exc}", endpoint=endpoint
            ) from None

    def _pages(  # noqa: C901 - every way a listing can end (docs/novita-api.md)
        self,
        endpoint: str,
        key: str,
        params: dict[str, Any],
        parse: Callable[[object, str], ItemT],
        *,
        page_param: str = "pageNum",
        first_page: int | None = None,
    ) -> list[ItemT]:
        """Every item of a page-numbered listing, deduplicated by id.

        Stops once `total` items were seen (or at an empty page: some went away meanwhile);
        without a total, at a short page. A short page does not end a listing that has a total:
        the server may cap the page size below ours. Items shift while we page (an instance
        created meanwhile), hence the deduplication. A server that repeats itself or never ends
        raises MalformedResponse rather than return a partial list, which a caller could take
        for "those instances are gone".
        """
        size = max(1, self.config.list_page_size)
        seen: dict[str, ItemT] = {}
        first_ids: list[str] = []
        page = self._first_page if first_page is None else first_page
        for _ in range(self.max_pages):
            payload = self._get_object(
                endpoint, params={**params, "pageSize": size, page_param: page}
            )
            with self._parsing(endpoint):
                items = self._items(payload, key, parse)
                total = payload.get("total")
                total = None if total is None else parsing.to_int(total, "total")
            ids = [item.id for item in items]
            if page == 0:
                first_ids = ids
            elif page == 1 and first_page is None and ids and ids == first_ids:
                # 1-based pages, with 0 read as 1: page 1 was page 0 again. Go on from 2.
                self._first_page = 1
                page = 2
                continue
            new = 0
            for item in items:
                if item.id not in seen:
                    seen[item.id] = item
                    new += 1
            if total is None:
                if len(items) < size:
                    return list(seen.values())
            elif len(seen) >= total or not items:
                return list(seen.values())
            if new == 0:
                if total is not None:
                    raise MalformedResponse(
                        f"Novita's pages repeat themselves: {len(seen)} of {total} items "
                        f"seen by page {page}",
                        endpoint=endpoint,
                    )
                return list(seen.values())
            page += 1
        raise MalformedResponse(
            f"Novita's listing did not end after {self.max_pages} pages", endpoint=endpoint
        )

    def _call(  # noqa: PLR0913 - a request's parts, the options keyword-only
        self,
        method: str,
        endpoint: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        repeat: Repeat = Repeat.SAFE,
        expect_body: bool = True,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retries: int | None = None,
        max_wait: float | None = None,
        base_url: str | None = None,
        priority: Priority | None = None,
    ) -> Any:
        """One call, retried as its `repeat` allows. base_url: the core surface's for bills and
        metrics (the GPU-instance one by default)."""
        timeout = (
            self.config.connect_timeout if connect_timeout is None else connect_timeout,
            self.config.read_timeout if read_timeout is None else read_timeout,
        )
        max_retries = self.config.max_retries if retries is None else retries
        attempt = 0
        while True:
            ticket = self._admit(
                method, endpoint, max_wait, priority or _priority(method, endpoint, params)
            )
            try:
                return self._attempt(
                    method,
                    endpoint,
                    params=params,
                    body=body,
                    base_url=base_url or self.config.base_url,
                    timeout=timeout,
                    repeat=repeat,
                    expect_body=expect_body,
                    ticket=ticket,
                    attempt=attempt,
                )
            except NovitaError as exc:
                delay = self._retry_delay(exc, attempt, max_retries, repeat)
                if delay is None:
                    raise
                RETRIES.labels(endpoint).inc()
                logger.warning(
                    "novita %s %s failed (%s); retry %d of %d in %.2fs",
                    method,
                    endpoint,
                    exc,
                    attempt + 1,
                    max_retries,
                    delay,
                )
                self._sleep(delay)
                attempt += 1

    def _admit(
        self, method: str, endpoint: str, max_wait: float | None, priority: Priority
    ) -> Ticket:
        """The breaker, then a slot under the rate ceiling. Neither failure is retried here."""
        try:
            ticket = self._breaker.before_call(endpoint)
        except CircuitOpen as exc:
            REQUESTS.labels(endpoint, method, outcome_label(exc)).inc()
            raise
        try:
            self._limiter.acquire(max_wait=max_wait, endpoint=endpoint, priority=priority)
        except RateLimited as exc:
            self._breaker.release(ticket)
            REQUESTS.labels(endpoint, method, "throttled").inc()
            logger.warning("novita %s %s not sent: %s", method, endpoint, exc)
            raise
        return ticket

    def _retry_delay(
        self, exc: NovitaError, attempt: int, max_retries: int, repeat: Repeat
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when `exc` must be raised."""
        if attempt >= max_retries:
            return None
        if isinstance(exc, RateLimited):  # refused, not done: safe even for a create
            return exc.retry_after if exc.retry_after <= self.config.max_retry_after else None
        if isinstance(exc, CircuitOpen):
            return None
        if isinstance(exc, ConnectFailed) or (
            isinstance(exc, Unavailable) and repeat is Repeat.SAFE
        ):
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, base=self.config.backoff_base, cap=self.config.backoff_cap)

    def _attempt(  # noqa: PLR0913 - a request's parts, the options keyword-only
        self,
        method: str,
        endpoint: str,
        *,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        base_url: str,
        timeout: tuple[float, float],
        repeat: Repeat,
        expect_body: bool,
        ticket: Ticket,
        attempt: int,
    ) -> Any:
        started = time.perf_counter()
        status: int | None = None
        try:
            response = self._send(
                method, base_url + endpoint, endpoint, params=params, body=body, timeout=timeout
            )
            status = response.status_code
            if not 200 <= status < 300:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if status == 429:
                    if retry_after is not None:
                        self._limiter.pause(min(retry_after, self.config.max_retry_after))
                    else:
                        retry_after = self._backoff(attempt)
                raise error_for_status(
                    status,
                    error_body(response),
                    endpoint=endpoint,
                    retry_after=retry_after or 0.0,
                    scrub=self._scrub,
                )
            result = read_json(response, endpoint=endpoint) if expect_body else None
        except NovitaError as exc:
            # 5xx, timeouts, broken connections and garbage count against Novita's health;
            # 4xx and 429 are Novita answering.
            failed = isinstance(exc, Unavailable)
            if failed and repeat is Repeat.UNSAFE and not isinstance(exc, ConnectFailed):
                unknown = UnknownOutcome(
                    f"the request may have reached Novita and its answer was lost: {exc.message}",
                    status=exc.status,
                    endpoint=endpoint,
                )
                self._finish(method, endpoint, started, status, attempt, unknown, ticket, failed)
                raise unknown from exc
            self._finish(method, endpoint, started, status, attempt, exc, ticket, failed)
            raise
        self._finish(method, endpoint, started, status, attempt, None, ticket, False)
        return result

    def _send(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        timeout: tuple[float, float],
    ) -> requests.Response:
        try:
            return self._session.request(
                method,
                url,
                params=params,
                json=body,
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = transport_error(exc, endpoint=endpoint, timeout=timeout, scrub=self._scrub)
        # Raised outside the except block, so that the requests exception is neither its cause
        # nor its context: it holds the prepared request, headers (the API key) included.
        raise error

    def _finish(  # noqa: PLR0913 - what one attempt ended with, for its metrics and log
        self,
        method: str,
        endpoint: str,
        started: float,
        status: int | None,
        attempt: int,
        error: NovitaError | None,
        ticket: Ticket,
        failed: bool,
    ) -> None:
        elapsed = time.perf_counter() - started
        outcome = outcome_label(error)
        if failed:
            self._breaker.record_failure(ticket, cause=str(error))
        else:
            self._breaker.record_success(ticket)
        REQUESTS.labels(endpoint, method, outcome).inc()
        DURATION.labels(endpoint).observe(elapsed)
        logger.debug(
            "novita %s %s -> %s in %.1f ms (attempt %d)",
            method,
            endpoint,
            status if status is not None else outcome,
            elapsed * 1000,
            attempt + 1,
            extra={
                "novita_endpoint": endpoint,
                "novita_status": status,
                "novita_outcome": outcome,
                "novita_latency_ms": round(elapsed * 1000, 1),
                "novita_attempt": attempt + 1,
            },
        )

    def _scrub(self, text: str) -> str:
        key = self.config.api_key
        if key:
            text = text.replace(key, REDACTED)
        return redact(text)


# Reads that only watch: they wait at the rate ceiling while a create, a change or an instance's
# own GET is queued (ratelimit.py). The instance listing by name (finding what an ambiguous
# create made) is not among them.
WATCHING_READS = frozenset(
    {
        "/gpu/instances",
        "/clusters",
        "/products",
        "/templates",
        "/networkstorages/list",
        "/jobs",
        "/billing/bill/list",
        "/billing/balance/detail",
        GPU_METRICS_PATH,
    }
)


def _priority(method: str, endpoint: str, params: dict[str, Any] | None) -> Priority:
    if method != "GET" or endpoint not in WATCHING_READS:
        return Priority.HIGH
    if endpoint == "/gpu/instances" and (params or {}).get("name"):
        return Priority.HIGH
    return Priority.LOW


def oldest_first(instances: Iterable[NovitaInstance]) -> list[NovitaInstance]:
    """Oldest first when every one carries createdAt; else by id. Novita's current docs promise
    no instance timestamps (docs/novita-api.md §7.5), so nothing may depend on them: the order
    is the same every time for the same instances, with or without them."""
    found = list(instances)
    if all(i.created_at for i in found):
        return sorted(found, key=lambda i: (i.created_at or 0, i.id))
    return sorted(found, key=lambda i: i.id)


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _answer_id(payload: Any, *keys: str, bare: bool = False) -> str | None:
    """The id an answer carries: the first non-empty string under `keys` of an object, or (with
    bare) the answer itself when it is a string; None when there is none."""
    if isinstance(payload, Mapping):
        payload = next((payload[key] for key in keys if payload.get(key)), None)
    elif not bare:
        return None
    return payload if isinstance(payload, str) and payload else None


@contextlib.contextmanager
def _storage_target() -> Iterator[None]:
    """On the storage's own endpoints NETWORK_STORAGE_NOT_FOUND means the target is gone (on a
    create-instance it means the request names a volume that does not exist)."""
    try:
        yield
    except RejectedInput as exc:
        if exc.reason != "NETWORK_STORAGE_NOT_FOUND":
            raise
        raise NotFound(
            exc.message, status=exc.status, reason=exc.reason, endpoint=exc.endpoint
        ) from None


# --- the process-wide client --------------------------------------------------------------------

_lock = threading.Lock()
_client: NovitaClient | None = None


def get_client() -> NovitaClient:
    """The process's client, rebuilt when the Novita settings change (tests switch the base URL
    and key) and after a fork (a Celery prefork child must not share its parent's sockets)."""
    global _client
    config = NovitaConfig.from_settings()
    client = _client
    if client is not None and client.config == config and client.pid == os.getpid():
        return client
    with _lock:
        if _client is None or _client.config != config or _client.pid != os.getpid():
            _client = NovitaClient(config)
        return _client
