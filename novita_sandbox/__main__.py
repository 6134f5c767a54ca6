"""python -m novita_sandbox: run the Novita sandbox until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from .config import (
    DEFAULT_BALANCE,
    MONEY_PER_USD,
    STATUS_DWELL_FIELDS,
    TIMING_PRESETS,
    ConfigError,
    Faults,
    Fidelity,
    SandboxConfig,
    faults_update,
    fidelity_update,
    timing_update,
)
from .persist import PersistError
from .server import SandboxServer


def _pair(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {raw!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m novita_sandbox",
        description="A standalone imitation of the Novita v1 GPU-instance API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        nargs="?",
        default="sandbox-key",
        const="sandbox-key",
        help="the Bearer key the API accepts (default sandbox-key)",
    )
    parser.add_argument("--public-host", default="", help="host used in endpoint URLs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.add_argument(
        "--balance",
        type=float,
        default=DEFAULT_BALANCE / MONEY_PER_USD,
        metavar="USD",
        help="starting cash balance in USD (default 1000000)",
    )

    state = parser.add_argument_group("state")
    state.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep instances, volumes, jobs, prices and the bill in DIR/sandbox-state.json "
        "across restarts (written within a second of every change, and on stop)",
    )
    state.add_argument("--fresh", action="store_true", help="ignore the saved state: start clean")

    timing = parser.add_argument_group("timing")
    timing.add_argument("--timing", choices=sorted(TIMING_PRESETS), default="fast")
    timing.add_argument(
        "--dwell",
        type=_pair,
        action="append",
        default=[],
        metavar="STATUS=SECONDS",
        help=f"dwell time of one status ({', '.join(STATUS_DWELL_FIELDS)}); repeatable",
    )
    timing.add_argument("--app-boot", type=float, help="seconds from running to app ready")
    timing.add_argument("--removed-linger", type=float, help="seconds a removed instance shows")

    faults = parser.add_argument_group("faults (all settable at runtime: POST /_sandbox/faults)")
    faults.add_argument("--error-rate", type=float, help="fraction of calls answered 500")
    faults.add_argument("--latency-ms", type=float, help="added to every API call")
    faults.add_argument("--rate-limit", type=float, help="calls per second before 429")
    faults.add_argument(
        "--capacity-error",
        action="append",
        default=[],
        metavar="REGION[=N]",
        help="creates in REGION (or REGION/PRODUCT, or *) fail INSUFFICIENT_RESOURCE "
        "(N times; all by default); repeatable",
    )
    faults.add_argument("--not-found-status", type=int, choices=(400, 404))
    faults.add_argument("--not-found-spelling", choices=("not found", "not fount"))
    faults.add_argument("--lose-create-answers", type=int, metavar="N")
    faults.add_argument("--lose-create-mode", choices=("close", "delay"))
    faults.add_argument("--pull-fail-image", metavar="SUBSTRING")
    faults.add_argument("--unhealthy-name", metavar="GLOB")
    faults.add_argument("--proxy-error-name", metavar="GLOB")
    faults.add_argument("--list-lag", type=float, metavar="SECONDS")
    faults.add_argument("--faults", metavar="JSON", help="any faults as a JSON object")

    fidelity = parser.add_argument_group(
        "fidelity (readings of Novita's docs; POST /_sandbox/fidelity)"
    )
    fidelity.add_argument(
        "--numeric-cluster-ids", action="store_true", help='cluster ids like "5" named "EU-01"'
    )
    fidelity.add_argument(
        "--no-instance-timestamps",
        action="store_true",
        help="instances without createdAt, lastStartedAt, lastStoppedAt",
    )
    fidelity.add_argument(
        "--empty-product-regions",
        action="store_true",
        help="products with regions: [] (every cluster)",
    )
    fidelity.add_argument(
        "--spot-status-list-only",
        action="store_true",
        help="spotStatus and spotReclaimTime only on GET /gpu/instances",
    )
    fidelity.add_argument(
        "--bills-settle-hourly",
        action="store_true",
        help="bills and the balance count only hours that have ended",
    )
    fidelity.add_argument("--fidelity", metavar="JSON", help="any switches as a JSON object")
    return parser


def fidelity_from_args(args: argparse.Namespace) -> Fidelity:
    changes: dict[str, Any] = json.loads(args.fidelity) if args.fidelity else {}
    if args.numeric_cluster_ids:
        changes["cluster_ids"] = "numeric"
    if args.no_instance_timestamps:
        changes["instance_timestamps"] = False
    if args.empty_product_regions:
        changes["product_regions"] = "empty"
    if args.spot_status_list_only:
        changes["spot_status_on_get"] = False
    if args.bills_settle_hourly:
        changes["bills_settle_hourly"] = True
    return fidelity_update(Fidelity(), changes)


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    timing_changes: dict[str, Any] = {key: float(value) for key, value in args.dwell}
    if args.app_boot is not None:
        timing_changes["app_boot"] = args.app_boot
    if args.removed_linger is not None:
        timing_changes["removed_linger"] = args.removed_linger
    timing = timing_update(TIMING_PRESETS[args.timing], timing_changes)

    changes: dict[str, Any] = json.loads(args.faults) if args.faults else {}
    flags = {
        "error_rate": args.error_rate,
        "latency_ms": args.latency_ms,
        "rate_limit_per_second": args.rate_limit,
        "not_found_status": args.not_found_status,
        "not_found_spelling": args.not_found_spelling,
        "lose_create_answers": args.lose_create_answers,
        "lose_create_mode": args.lose_create_mode,
        "pull_fail_image": args.pull_fail_image,
        "unhealthy_name": args.unhealthy_name,
        "proxy_error_name": args.proxy_error_name,
        "list_lag_s": args.list_lag,
    }
    changes.update({key: value for key, value in flags.items() if value is not None})
    if args.capacity_error:
        capacity = dict(changes.get("capacity_errors", {}))
        for raw in args.capacity_error:
            region, _, count = raw.partition("=")
            capacity[region] = int(count) if count else -1
        changes["capacity_errors"] = capacity
    faults = faults_update(Faults(), changes)
    if args.balance < 0:
        raise ConfigError("--balance must be >= 0")
    return SandboxConfig(
        timing=timing,
        faults=faults,
        fidelity=fidelity_from_args(args),
        seed=args.seed,
        public_host=args.public_host,
        balance=round(args.balance * MONEY_PER_USD),
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except (ConfigError, ValueError) as error:
        parser.error(str(error))
    server = SandboxServer(
        args.host,
        args.port,
        args.api_key,
        config,
        verbose=args.verbose,
        state_dir=args.state_dir,
        fresh=args.fresh,
    )
    try:
        server.start()
    except PersistError as error:
        print(f"novita sandbox: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"novita sandbox: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"Novita sandbox listening on {server.url} (API base {server.api_base})", flush=True)
    print(f"  timing={args.timing}  control: {server.url}/_sandbox/stats", flush=True)
    if server.persister is not None:
        restored = "restored from" if server.restored else "new state in"
        print(f"  {restored} {server.persister.path}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    print("Novita sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
