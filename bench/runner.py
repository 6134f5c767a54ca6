"""`make bench` (`python -m bench`): every scenario of issue 7 against Postgres, Redis, gunicorn,
a Celery worker, beat and the Novita sandbox on loopback; a table of figures against targets,
and JSON under bench/results/. Benchmarks report; they never fail on speed (exit 1 only when
the harness itself could not run).

Order (each scenario gets the processes it needs, and only those):

    5 sandbox throughput       its own sandbox process (bench/sandbox.py), nothing else running
    2 monitoring at scale      in-process monitor passes, the sandbox; no worker, no beat
   10 cost ledger at scale     the same (bench/money.py): ledger vs the sandbox's bills at 200
                               instances, and the money sweep's queries per pass
    1 burst provisioning, x2   gunicorn, worker, beat, sandbox, webhook receiver
    4 memory                   after each burst of scenario 1
    3 API latency              gunicorn alone (worker and beat stopped), locust from a subprocess
    6 spot reclaim at scale    from a quiet state (rows, queues, sandbox emptied): gunicorn,
                               worker, beat, sandbox, webhook receiver
    7 waiting for capacity     from a quiet state, as 6: capacity off, N waiting, capacity back
                               in steps (bench/capacity.py)
    8 Novita's ceiling         from a quiet state, the stack at NOVITA_RATE_LIMIT=100/60s: a
                               burst against its floor, then the listings with nothing in transit
    9 hung creates             from a quiet state: a burst, then one with a fifth of its creates
                               hanging 45 s, the others' create -> ready against the first's
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.report import Scenario
from bench.stack import (
    Stack,
    StackError,
    ensure_services,
    flush_redis,
    fresh_database,
    register,
    say,
)

SCENARIOS = (
    "sandbox",
    "monitoring",
    "money",
    "burst",
    "api",
    "spot",
    "capacity",
    "ceiling",
    "hung",
)
# The results file of a scenario that broke before reporting.
KEYS = {
    "sandbox": "5-sandbox",
    "start": "0-start",
    "monitoring": "2-monitoring",
    "burst": "1-burst",
    "api": "3-api",
    "spot": "6-spot",
    "capacity": "7-capacity",
    "ceiling": "8-ceiling",
    "hung": "9-hung-creates",
    "money": "10-money",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (memory runs with burst)",
    )
    parser.add_argument("--burst", type=int, default=200, help="instances per burst (scenario 1)")
    parser.add_argument(
        "--monitor-sizes", default="100,500,2000", help="instances in transit (scenario 2)"
    )
    parser.add_argument("--api-rows", type=int, default=10_000, help="rows seeded (scenario 3)")
    parser.add_argument("--api-seconds", type=float, default=20.0, help="per load run (scenario 3)")
    parser.add_argument(
        "--sandbox-seconds", type=float, default=5.0, help="per figure (scenario 5)"
    )
    parser.add_argument(
        "--hung-burst",
        type=int,
        default=50,
        help="instances created at once, a fifth of the creates hanging (scenario 9)",
    )
    parser.add_argument(
        "--ceiling-burst",
        type=int,
        default=50,
        help="instances created at once at a ceiling of 100/60s (scenario 8)",
    )
    parser.add_argument(
        "--spot", type=int, default=50, help="spot instances reclaimed at once (scenario 6)"
    )
    parser.add_argument(
        "--spot-timeout",
        type=float,
        default=180.0,
        help="seconds from the reclaims for every instance to be ready again (scenario 6)",
    )
    parser.add_argument(
        "--capacity", type=int, default=50, help="instances waiting for capacity (scenario 7)"
    )
    parser.add_argument(
        "--capacity-step",
        type=int,
        default=10,
        help="instances capacity returns for at each step (scenario 7)",
    )
    parser.add_argument(
        "--money", type=int, default=200, help="instances in the ledger's run (scenario 10)"
    )
    parser.add_argument(
        "--money-seconds", type=float, default=60.0, help="seconds they run (scenario 10)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also record py-spy profiles of the processes under load (bench/results/profiles/)",
    )
    parser.add_argument(
        "--single-worker",
        action="store_true",
        help="scenario 1 with one worker for every queue (concurrency 4) instead of compose's "
        "two (provision+default, monitor+webhooks): an experiment",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:  # noqa: C901, PLR0912, PLR0915 - one branch per command-line option
    args = parse(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        say(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        return 2
    started = time.monotonic()
    load_before = report.load_average()
    say(f"novitai benchmarks: {', '.join(wanted)}  (load average {load_before})")
    run_dir = Path(tempfile.mkdtemp(prefix="novitai-bench-"))
    scenarios: list[Scenario] = []
    header: dict[str, Any] = {}
    stack: Stack | None = None
    try:
        say("== services: PostgreSQL, Redis, a fresh novitai_bench database")
        ensure_services()
        fresh_database()
        flush_redis()
        stack = Stack.prepare(run_dir)
        register(stack)
        import django

        django.setup()
        stack.manage("migrate", "--noinput", "-v", "0")
        header = {
            "machine": report.machine(_versions()),
            "load_average_before": load_before,
            "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
            "args": vars(args),
        }
        steps: list[tuple[str, Callable[[], list[Scenario]]]] = []
        if "sandbox" in wanted:
            steps.append(("sandbox", lambda: [_sandbox(args)]))
        if {"monitoring", "money", "burst", "api", "spot", "capacity", "ceiling", "hung"} & set(
            wanted
        ):
            steps.append(("start", lambda: _start(stack)))
        if "monitoring" in wanted:
            steps.append(("monitoring", lambda: [_monitoring(stack, args)]))
        if "money" in wanted:
            steps.append(("money", lambda: [_money(stack, args)]))
        if "burst" in wanted:
            steps.append(("burst", lambda: _burst(stack, args)))
        if "api" in wanted:
            steps.append(("api", lambda: [_api(stack, args)]))
        if "spot" in wanted:
            steps.append(("spot", lambda: [_spot(stack, args)]))
        if "capacity" in wanted:
            steps.append(("capacity", lambda: [_capacity(stack, args)]))
        if "ceiling" in wanted:
            steps.append(("ceiling", lambda: [_ceiling(stack, args)]))
        if "hung" in wanted:
            steps.append(("hung", lambda: [_hung(stack, args)]))
        for name, step in steps:
            try:
                scenarios.extend(step())
            except StackError:
                raise
            except Exception as exc:  # a scenario that broke: report it, go on with the next
                traceback.print_exc()
                failed = Scenario(
                    KEYS[name], f"{name} (did not complete)", error=f"{type(exc).__name__}: {exc}"
                )
                scenarios.append(failed)
    except KeyboardInterrupt:
        say("\ninterrupted: stopping every process")
        return 130
    except StackError as exc:
        say(f"\nthe benchmark stack failed: {exc}")
        return 1
    finally:
        if stack is not None:
            say("== stopping every process")
            stack.stop_all()
        if not args.keep:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"run folder (logs) kept: {run_dir}")
    header["load_average_after"] = report.load_average()
    header["seconds"] = round(time.monotonic() - started, 1)
    say("\n" + report.table(scenarios))
    # Only a reference run (every scenario, default sizes, no profiler, no experiment) replaces
    # bench/results/; any other goes to bench/results/partial/.
    reference = all(
        getattr(args, name) == parse([]).__dict__[name] for name in vars(args) if name != "keep"
    )
    latest = report.write(scenarios, header, report.RESULTS if reference else report.PARTIAL)
    machine = header.get("machine", {})
    say(
        f"\n{machine.get('nproc')} CPUs ({machine.get('cpu_model')}), "
        f"{machine.get('ram_gib')} GiB RAM, "
        f"Python {machine.get('python')}, PostgreSQL {machine.get('postgres')}, "
        f"Redis {machine.get('redis')}; load average before {header['load_average_before']}, "
        f"after {header['load_average_after']}; {header['seconds']:.0f} s in all"
    )
    say(f"figures written to {latest.parent}/ (latest.json and one file per scenario)")
    return 0


def _versions() -> dict[str, str]:
    from bench.stack import service_versions

    return service_versions()


# --- steps ------------------------------------------------------------------------------------


def _start(stack: Stack | None) -> list[Scenario]:
    assert stack is not None
    say("== starting the Novita sandbox")
    stack.start_sandbox()
    return []


def _sandbox(args: argparse.Namespace) -> Scenario:
    """bench/sandbox.py's figures, against 10x the client's request-rate ceiling: the sandbox
    must never be what limits the other scenarios."""
    from django.conf import settings

    from bench.sandbox import measure

    say(f"== scenario 5: sandbox throughput (bench/sandbox.py, {args.sandbox_seconds:g} s each)")
    results = measure(seconds=args.sandbox_seconds)
    need = 10 * float(settings.NOVITA_RATE_LIMIT_PER_SECOND)
    scenario = Scenario("5-sandbox", "5. sandbox throughput (8 threads, keep-alive)")
    for name, row in results.items():
        scenario.add(report.at_least(f"{name}: req/s", row["requests_per_second"], need, "req/s"))
        if "p99_ms" in row:
            scenario.add(report.info(f"{name}: p50 / p99", f"{row['p50_ms']} / {row['p99_ms']} ms"))
        if "full_passes_per_second" in row:
            scenario.add(
                report.info(
                    "  = full 2,000-instance listings per second", row["full_passes_per_second"]
                )
            )
    scenario.details = {"target": "10x the client's request-rate ceiling", "results": results}
    return scenario


def _monitoring(stack: Stack | None, args: argparse.Namespace) -> Scenario:
    from bench.monitoring import run

    assert stack is not None
    sizes = [int(n) for n in args.monitor_sizes.split(",") if n.strip()]
    return run(stack, sizes=sizes, profile=args.profile)


def _money(stack: Stack | None, args: argparse.Namespace) -> Scenario:
    from bench.money import run

    assert stack is not None
    return run(stack, count=args.money, seconds=args.money_seconds)


def _burst(stack: Stack | None, args: argparse.Namespace) -> list[Scenario]:
    from bench.provisioning import run

    assert stack is not None
    return run(stack, count=args.burst, profile=args.profile, single_worker=args.single_worker)


def _api(stack: Stack | None, args: argparse.Namespace) -> Scenario:
    from bench.api import run

    assert stack is not None
    return run(stack, rows=args.api_rows, seconds=args.api_seconds, profile=args.profile)


def _spot(stack: Stack | None, args: argparse.Namespace) -> Scenario:
    from bench.spot import run

    assert stack is not None
    return run(stack, count=args.spot, timeout=args.spot_timeout)


def _ceiling(stack: Stack | None, args: argparse.Namespace) -> Scenario:
    from bench.ceiling import run

    assert stack is not None
    return run(stack, count=args.ceiling_burst)


def _hung(stack: Stack | None, args: argparse.Namespace) -> Scenario:
    from bench.hung import run

    assert stack is not None
    return run(stack, count=args.hung_burst)


if __name__ == "__main__":
    sys.exit(main())


def _capacity(stack: Stack | None, args: argparse.Namespace) -> Scenario:
    from bench.capacity import run

    assert stack is not None
    return run(stack, count=args.capacity, step=args.capacity_step)
