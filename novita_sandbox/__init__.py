"""A standalone imitation of the Novita v1 GPU-instance API, for demos, tests and benchmarks.

It is Novita, not novitai: a top-level package of its own that imports nothing but the standard
library, so it runs on a bare Python and could ship alone (tests/sandbox/test_bare_python.py).
`python -m novita_sandbox --help` runs it; in Python:

    from novita_sandbox import SandboxConfig, SandboxServer, TIMING_PRESETS

    server = SandboxServer(port=0, api_key="sandbox-key").start()
    server.api_base  # http://127.0.0.1:<port>/gpu-instance/openapi/v1
    server.stop()

The seed catalog, timing, faults and control endpoints are described in README.md beside this
file; control.SandboxControl is a small client for the control endpoints.
"""

from .config import TIMING_PRESETS, FailRule, Faults, SandboxConfig, Timing
from .server import SandboxServer

__all__ = ["TIMING_PRESETS", "FailRule", "Faults", "SandboxConfig", "SandboxServer", "Timing"]
