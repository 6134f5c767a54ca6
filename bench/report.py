"""Figures, their targets, the table and the JSON files under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PARTIAL = RESULTS / "partial"  # runs of some scenarios, other sizes, profiled or experiments


@dataclass
class Figure:
    name: str
    value: Any
    unit: str = ""
    target: str = ""  # human-readable, e.g. "<= 4.0 s"; empty: reported only
    met: bool | None = None
    note: str = ""


def at_most(name: str, value: float | None, limit: float, unit: str = "", note: str = "") -> Figure:
    met = value is not None and value <= limit
    return Figure(name, value, unit, f"<= {limit:g} {unit}".rstrip(), met, note)


def at_least(
    name: str, value: float | None, limit: float, unit: str = "", note: str = ""
) -> Figure:
    met = value is not None and value >= limit
    return Figure(name, value, unit, f">= {limit:g} {unit}".rstrip(), met, note)


def equal(name: str, value: Any, expected: Any, unit: str = "", note: str = "") -> Figure:
    return Figure(name, value, unit, f"= {expected}", value == expected, note)


def info(name: str, value: Any, unit: str = "", note: str = "") -> Figure:
    return Figure(name, value, unit, "", None, note)


@dataclass
class Scenario:
    key: str  # file name: bench/results/<key>.json
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.key,
            "title": self.title,
            "error": self.error or None,
            "figures": [asdict(f) for f in self.figures],
            "details": self.details,
        }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# --- the machine ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=RESULTS.parent.parent,
        ).stdout.strip()
    except OSError:
        return ""


def machine(versions: dict[str, str]) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "os": platform.platform(),
        **versions,
        "commit": _git_commit(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- output ----------------------------------------------------------------------------------


def _show(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = (
            f"{value:,.2f}"
            if abs(value) < 100
            else f"{value:,.1f}"
            if abs(value) < 1000
            else f"{value:,.0f}"
        )
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip() if unit and not isinstance(value, str) else text


def table(scenarios: list[Scenario]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    for scenario in scenarios:
        rows.append((f"[{scenario.title}]", "", "", ""))
        if scenario.error:
            rows.append(("  did not complete", scenario.error[:60], "", "NO"))
        for f in scenario.figures:
            met = "-" if f.met is None else "yes" if f.met else "NO"
            rows.append((f"  {f.name}", _show(f.value, f.unit), f.target or "-", met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    widths[0] = max(widths[0], len("figure"))
    header = ("figure", "value", "target", "met")
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        if not row[1] and not row[2]:
            lines.append(row[0])
            continue
        lines.append(
            "  ".join(
                [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3]]
            )
        )
    return "\n".join(lines)


def write(scenarios: list[Scenario], header: dict[str, Any], folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios:
        (folder / f"{scenario.key}.json").write_text(
            json.dumps({**header, **scenario.as_json()}, indent=2) + "\n"
        )
    latest = folder / "latest.json"
    summary = {
        **header,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets_met": sum(1 for s in scenarios for f in s.figures if f.met is True),
        "targets_missed": sum(1 for s in scenarios for f in s.figures if f.met is False),
        "scenarios": [s.as_json() for s in scenarios],
    }
    latest.write_text(json.dumps(summary, indent=2) + "\n")
    return latest
