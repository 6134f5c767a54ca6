"""python -m novita_sandbox: flags, the line saying where it listens, clean stop on signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from novita_sandbox.__main__ import build_parser, config_from_args
from novita_sandbox.config import TIMING_PRESETS, FailRule, SandboxConfig


def parse(*argv: str) -> SandboxConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.api_key, args.timing) == (
        "127.0.0.1",
        8765,
        "sandbox-key",
        "fast",
    )
    config = config_from_args(args)
    assert config.timing == TIMING_PRESETS["fast"]
    assert config.faults.error_rate == 0


def test_api_key_flag_without_a_value_falls_back() -> None:
    # the Procfile passes `--api-key ${NOVITA_API_KEY}`, which may be empty
    assert build_parser().parse_args(["--api-key"]).api_key == "sandbox-key"
    assert build_parser().parse_args(["--api-key", "sk_x"]).api_key == "sk_x"


def test_timing_flags() -> None:
    config = parse(
        "--timing",
        "realistic",
        "--dwell",
        "pulling=5",
        "--dwell",
        "toCreate=0.5",
        "--app-boot",
        "2",
        "--removed-linger",
        "3",
    )
    realistic = TIMING_PRESETS["realistic"]
    assert (config.timing.pulling, config.timing.to_create, config.timing.app_boot) == (
        5.0,
        0.5,
        2.0,
    )
    assert config.timing.removed_linger == 3.0
    assert config.timing.creating == realistic.creating


def test_fault_flags() -> None:
    config = parse(
        "--error-rate", "0.1", "--latency-ms", "20", "--rate-limit", "5",
        "--capacity-error", "us-tx-2", "--capacity-error", "eu-nl-1/3090.8c31g.sim=3",
        "--not-found-status", "400", "--not-found-spelling", "not fount",
        "--lose-create-answers", "2", "--lose-create-mode", "delay",
        "--pull-fail-image", "broken", "--unhealthy-name", "sick-*", "--proxy-error-name", "*",
        "--list-lag", "1.5", "--seed", "7",
        "--faults", '{"fail_next": [{"path": "/gpu/instance/create", "count": 2, "status": 503}]}',
    )  # fmt: skip
    faults = config.faults
    assert (faults.error_rate, faults.latency_ms, faults.rate_limit_per_second) == (0.1, 20.0, 5.0)
    assert faults.capacity_errors == {"us-tx-2": -1, "eu-nl-1/3090.8c31g.sim": 3}
    assert (faults.not_found_status, faults.not_found_spelling) == (400, "not fount")
    assert (faults.lose_create_answers, faults.lose_create_mode) == (2, "delay")
    assert (faults.pull_fail_image, faults.unhealthy_name, faults.proxy_error_name) == (
        "broken",
        "sick-*",
        "*",
    )
    assert (faults.list_lag_s, config.seed) == (1.5, 7)
    assert faults.fail_next == (FailRule(path="/gpu/instance/create", count=2, status=503),)


def test_fidelity_balance_and_state_flags() -> None:
    from novita_sandbox.config import DEFAULT_BALANCE, Fidelity

    assert parse().fidelity == Fidelity()
    assert parse().balance == DEFAULT_BALANCE
    config = parse(
        "--numeric-cluster-ids", "--no-instance-timestamps", "--empty-product-regions",
        "--spot-status-list-only", "--bills-settle-hourly", "--balance", "25.5",
    )  # fmt: skip
    assert config.fidelity == Fidelity(
        cluster_ids="numeric",
        instance_timestamps=False,
        product_regions="empty",
        spot_status_on_get=False,
        bills_settle_hourly=True,
    )
    assert config.balance == 255000  # 1/10000 USD
    assert parse("--fidelity", '{"cluster_ids": "numeric"}').fidelity.cluster_ids == "numeric"
    args = build_parser().parse_args(["--state-dir", "var/sandbox", "--fresh"])
    assert (args.state_dir, args.fresh) == ("var/sandbox", True)


@pytest.mark.parametrize(
    "argv",
    [
        ["--timing", "slow"],
        ["--balance", "-1"],
        ["--fidelity", '{"cluster_ids": "uuid"}'],
        ["--dwell", "pulling"],
        ["--dwell", "boiling=1"],
        ["--error-rate", "2"],
        ["--not-found-status", "500"],
        ["--faults", '{"x": 1}'],
    ],
)
def test_bad_flags_exit_2(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "novita_sandbox", *argv],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"usage:" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_runs_alone_and_stops_cleanly_on_signals(signum: int) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "novita_sandbox",
            "--port",
            "0",
            "--api-key",
            "sk_cli",
            "--error-rate",
            "0.25",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Novita sandbox listening on http://127.0.0.1:")
        url = first.split()[4]
        assert first.strip().endswith(f"(API base {url}/gpu-instance/openapi/v1)")
        request = urllib.request.Request(
            url + "/gpu-instance/openapi/v1/templates", headers={"Authorization": "Bearer sk_cli"}
        )
        with urllib.request.urlopen(
            urllib.request.Request(url + "/_sandbox/faults"), timeout=10
        ) as r:
            assert json.loads(r.read())["error_rate"] == 0.25
        statuses = set()
        for _ in range(40):  # error_rate 0.25 applies: some 200, some 500
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    statuses.add(r.status)
            except urllib.error.HTTPError as error:
                statuses.add(error.code)
        assert statuses == {200, 500}
        process.send_signal(signum)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.strip().endswith("Novita sandbox stopped")
    assert err == ""


def test_busy_port_is_an_error() -> None:
    from novita_sandbox import SandboxServer

    with SandboxServer() as server:
        port = server.url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, "-m", "novita_sandbox", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr
