"""The client's configuration, read from settings (novitai/settings.py, "Novita" section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from novitai.novita.breaker import CircuitBreaker
from novitai.novita.ceiling import Ceiling
from novitai.novita.ratelimit import RateLimiter

# A Retry-After longer than this is not slept inside a task: RateLimited is raised instead, and
# the caller reschedules (next_attempt_at).
MAX_RETRY_AFTER_SECONDS = 30.0
# How long a call waits for a slot under the shared request-rate ceiling before RateLimited.
RATE_LIMIT_MAX_WAIT_SECONDS = 10.0


GPU_INSTANCE_PATH = "/gpu-instance/openapi/v1"
CORE_PATH = "/openapi/v1"


def core_base_url_from(base_url: str) -> str:
    """Novita's core surface (billing, metrics) beside the GPU-instance one:
    https://api.novita.ai/gpu-instance/openapi/v1 -> https://api.novita.ai/openapi/v1. A base URL
    of another shape keeps its scheme and host, with /openapi/v1."""
    base = base_url.rstrip("/")
    if base.endswith(GPU_INSTANCE_PATH):
        return base[: -len(GPU_INSTANCE_PATH)] + CORE_PATH
    scheme, sep, rest = base.partition("://")
    host = rest.split("/", 1)[0] if sep else base.split("/", 1)[0]
    return f"{scheme}{sep}{host}{CORE_PATH}"


@dataclass(frozen=True)
class NovitaConfig:
    base_url: str
    api_key: str = field(repr=False)
    core_base_url: str = ""  # "" = core_base_url_from(base_url)
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    create_timeout: float = 30.0
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    rate_limit_per_second: float = 10.0
    # The ceiling as configured ("100/60s"); None: rate_limit_per_second calls a second.
    rate_limit: Ceiling | None = None
    rate_limit_burst: int = 1
    # Per process, while the shared cache is unreachable (ratelimit.py); None: a quarter.
    rate_limit_local_per_second: float | None = None
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 30.0
    list_page_size: int = 100
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS
    rate_limit_max_wait: float = RATE_LIMIT_MAX_WAIT_SECONDS

    def __post_init__(self) -> None:
        if not self.core_base_url:
            object.__setattr__(self, "core_base_url", core_base_url_from(self.base_url))

    @classmethod
    def from_settings(cls) -> NovitaConfig:
        base_url = settings.NOVITA_API_BASE_URL.rstrip("/")
        return cls(
            base_url=base_url,
            core_base_url=settings.NOVITA_CORE_API_BASE_URL.rstrip("/"),
            api_key=settings.NOVITA_API_KEY,
            connect_timeout=settings.NOVITA_CONNECT_TIMEOUT,
            read_timeout=settings.NOVITA_READ_TIMEOUT,
            create_timeout=settings.NOVITA_CREATE_TIMEOUT,
            max_retries=settings.NOVITA_MAX_RETRIES,
            backoff_base=settings.NOVITA_BACKOFF_BASE,
            backoff_cap=settings.NOVITA_BACKOFF_CAP,
            rate_limit_per_second=settings.NOVITA_RATE_LIMIT_PER_SECOND,
            rate_limit=_configured_ceiling(),
            rate_limit_burst=settings.NOVITA_RATE_LIMIT_BURST,
            rate_limit_local_per_second=settings.NOVITA_RATE_LIMIT_LOCAL_PER_SECOND,
            breaker_failure_threshold=settings.NOVITA_BREAKER_FAILURE_THRESHOLD,
            breaker_reset_seconds=settings.NOVITA_BREAKER_RESET_SECONDS,
            list_page_size=settings.NOVITA_LIST_PAGE_SIZE,
        )

    def breaker(self) -> CircuitBreaker:
        return CircuitBreaker(
            failure_threshold=self.breaker_failure_threshold,
            reset_seconds=self.breaker_reset_seconds,
            # A probe that died frees the lock once the longest call it could make is over.
            probe_ttl=self.connect_timeout + max(self.read_timeout, self.create_timeout) + 5,
        )

    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(
            ceiling=self.rate_limit or Ceiling(calls=self.rate_limit_per_second),
            burst=self.rate_limit_burst,
            max_wait=self.rate_limit_max_wait,
            local_per_second=self.rate_limit_local_per_second,
        )


def _configured_ceiling() -> Ceiling | None:
    """NOVITA_RATE_LIMIT as parsed, unless NOVITA_RATE_LIMIT_PER_SECOND was set to another rate
    after it (tests and benchmarks set the rate alone)."""
    ceiling: Ceiling | None = getattr(settings, "NOVITA_RATE_LIMIT", None)
    if ceiling is None or ceiling.per_second != settings.NOVITA_RATE_LIMIT_PER_SECOND:
        return None
    return ceiling
