"""Billing tests use the instances fixtures (the synced catalog, `make`)."""

from tests.instances.conftest import catalog, make, novita  # noqa: F401 (fixtures)
from tests.jobs.conftest import sent_tasks  # noqa: F401 (a fixture)
