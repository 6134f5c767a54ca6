"""Job outcomes by type: a counter incremented when a job finishes."""

from __future__ import annotations

from prometheus_client import Counter

JOB_OUTCOMES = Counter(
    "novitai_jobs_finished_total",
    "Jobs that finished, by kind (provision, stop, …) and outcome (succeeded, failed, cancelled).",
    ["kind", "outcome"],
)


def job_outcome_count(*, kind: str, outcome: str) -> None:
    JOB_OUTCOMES.labels(kind=kind, outcome=outcome).inc()
