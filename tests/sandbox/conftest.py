"""Fixtures of the sandbox's own tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from novita_sandbox.control import SandboxControl
from tests.sandbox.helpers import Api


@pytest.fixture
def api(sandbox: SandboxControl) -> Api:
    """The sandbox's v1 API with the right key, on a freshly reset sandbox."""
    return Api(sandbox)
