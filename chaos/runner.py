"""`make chaos` (`python -m chaos`): the chaos suite of issue 10, scenario by scenario, against
its own Postgres and Redis, the sandbox, gunicorn and the Celery processes of the Procfile, all on
127.0.0.1; a table of figures against targets, the results in bench/results/chaos.json, and a
non-zero exit when any check fails (unlike the benchmarks, the suite passes or fails).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import report
from bench.report import Scenario
from bench.stack import StackError, say
from chaos.harness import SUITE_SETTINGS, Harness, remove
from chaos.scenarios import SCENARIOS, Context

LETTERS = dict(zip(SCENARIOS, "abcdefg", strict=True))
RESULTS = report.RESULTS / "chaos.json"
PARTIAL = report.PARTIAL / "chaos.json"
# Shipped settings the scenarios depend on, printed with the results.
SHIPPED = (
    "MONITOR_INTERVAL_SECONDS",
    "MONITOR_LOCK_SECONDS",
    "WEBHOOK_TIMEOUT_SECONDS",
    "WEBHOOK_SWEEP_INTERVAL_SECONDS",
    "WEBHOOK_RETRY_SCHEDULE",
    "CELERY_TASK_TIME_LIMIT",
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="comma-separated names or letters, of "
        + ", ".join(f"{LETTERS[n]} {n}" for n in SCENARIOS),
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=100.0,
        help="seconds a scenario waits, once its fault is over, for every invariant to hold",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the random choices (kills)")
    parser.add_argument("--log-level", default="WARNING", help="of every novitai process")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    return parser.parse_args(argv)


def _wanted(only: str) -> list[str]:
    by_letter = {letter: name for name, letter in LETTERS.items()}
    names = [by_letter.get(x.strip(), x.strip()) for x in only.split(",") if x.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    return [n for n in SCENARIOS if n in names]  # in the suite's order


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - a run told step by step: boot, scenarios, report, teardown
    args = parse(argv)
    wanted = _wanted(args.only)
    random.seed(args.seed)
    started = time.monotonic()
    load_before = report.load_average()
    say(f"novitai chaos suite: {', '.join(wanted)}  (load average {load_before})")
    root = Path(tempfile.mkdtemp(prefix="novitai-chaos-"))
    scenarios: list[Scenario] = []
    header: dict[str, Any] = {}
    harness: Harness | None = None
    try:
        say("== own Postgres and Redis, the sandbox, gunicorn, the Procfile's Celery processes")
        harness = Harness.boot(root, log_level=args.log_level)
        from django.conf import settings

        header = {
            "machine": report.machine(harness.versions()),
            "load_average_before": load_before,
            "command": " ".join(["python -m chaos", *(sys.argv[1:] if argv is None else argv)]),
            "suite_settings": SUITE_SETTINGS,
            "shipped_settings": {name: getattr(settings, name, None) for name in SHIPPED},
            "procfile": {n: " ".join(["celery", *p.argv[1:]]) for n, p in harness.celery.items()},
        }
        say("  Celery processes (Procfile): " + ", ".join(header["procfile"]))
        ctx = Context(
            harness=harness,
            interval=float(settings.MONITOR_INTERVAL_SECONDS),
            settle_timeout=args.settle_timeout,
        )
        for number, name in enumerate(wanted):
            if number:
                harness.reset()
            scenario_started = time.monotonic()
            try:
                scenario = SCENARIOS[name](ctx)
            except StackError:
                raise
            except Exception as exc:  # a scenario that broke: report it, go on with the next
                traceback.print_exc()
                scenario = Scenario(
                    f"chaos-{LETTERS[name]}-{name}",
                    f"{LETTERS[name]}. {name} (did not complete)",
                    error=f"{type(exc).__name__}: {exc}",
                )
            scenario.details["seconds"] = round(time.monotonic() - scenario_started, 1)
            scenarios.append(scenario)
            say(f"  {_verdict(scenario)} in {scenario.details['seconds']:.0f} s")
    except KeyboardInterrupt:
        say("\ninterrupted: stopping every process")
        return 130
    except StackError as exc:
        say(f"\nthe chaos stack failed: {exc}")
        return 2
    finally:
        if harness is not None:
            say("== stopping every process, Redis and Postgres")
            harness.close()
        if args.keep:
            say(f"run folder (logs) kept: {root}")
        else:
            remove(root)
    header["load_average_after"] = report.load_average()
    header["seconds"] = round(time.monotonic() - started, 1)
    say("\n" + report.table(scenarios))
    passed = [s for s in scenarios if _passed(s)]
    complete = wanted == list(SCENARIOS)
    path = _write(scenarios, header, RESULTS if complete else PARTIAL)
    say(
        f"\n{len(passed)} of {len(scenarios)} scenarios passed "
        f"({', '.join(_verdict(s) for s in scenarios)}); {header['seconds']:.0f} s in all"
    )
    say(f"results written to {path}")
    return 0 if len(passed) == len(scenarios) else 1


def _passed(scenario: Scenario) -> bool:
    return not scenario.error and all(f.met is not False for f in scenario.figures)


def _verdict(scenario: Scenario) -> str:
    return f"{scenario.key.removeprefix('chaos-')}: {'pass' if _passed(scenario) else 'FAIL'}"


def _write(scenarios: list[Scenario], header: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        **header,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "passed": all(_passed(s) for s in scenarios),
        "scenarios": [{**s.as_json(), "passed": _passed(s)} for s in scenarios],
    }
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path
