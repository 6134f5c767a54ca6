"""py-spy profiles of running processes (`make bench` with --profile): where the time goes.

Each process is sampled (100 Hz, without pausing it) for the same few seconds; the stacks are
merged and written to bench/results/profiles/<name>.collapsed (a flame graph's input), and the
functions most often on the stack (inclusive) and at its top (self) to <name>.txt.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.report import RESULTS
from bench.stack import BIN, ROOT

PROFILES = RESULTS / "profiles"
_PATH = re.compile(r"\((?:.*/site-packages/|" + re.escape(str(ROOT)) + r"/)?([^()]*)\)")


def _short(frame: str) -> str:
    return _PATH.sub(lambda m: f"({m.group(1)})", frame)


def py_spy_top(pids: list[int], *, seconds: float, name: str, top: int = 25) -> dict[str, Any]:
    PROFILES.mkdir(parents=True, exist_ok=True)
    outputs = [PROFILES / f".{name}-{pid}.raw" for pid in pids]
    processes = [
        subprocess.Popen(
            [
                str(BIN / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                f"{seconds:.0f}",
                "--rate",
                "100",
                "--format",
                "raw",
                "--function",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, out in zip(pids, outputs, strict=True)
    ]
    for process in processes:
        try:
            process.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            process.kill()
    stacks: Counter[str] = Counter()
    for out in outputs:
        if out.exists():
            for line in out.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if stack and count.isdigit():
                    stacks[";".join(_short(f) for f in stack.split(";"))] += int(count)
            out.unlink()
    return summarise(stacks, name=name, top=top)


OURS = ("instances/", "jobs/", "webhooks/", "catalog/", "tenants/", "novitai/")


def ours(frame: str) -> bool:
    """A frame of novitai's own code (not a library's)."""
    return frame.rpartition("(")[2].startswith(OURS)


def summarise(stacks: Counter[str], *, name: str, top: int) -> dict[str, Any]:
    """Inclusive shares of novitai's own functions, and self shares of every function."""
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        for frame in {f for f in frames if ours(f)}:
            inclusive[frame] += count
        own[frames[-1]] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return (
            [(f, round(100 * c / total, 1)) for f, c in counter.most_common(top)] if total else []
        )

    top_inclusive, top_self = share(inclusive), share(own)
    summary = {"samples": total, "inclusive_percent": top_inclusive, "self_percent": top_self}
    (PROFILES / f"{name}.collapsed").write_text(
        "".join(f"{stack} {count}\n" for stack, count in stacks.most_common())
    )
    lines = [
        f"py-spy record, {total} samples (100 Hz) of {name}",
        "",
        "inclusive % (novitai's own functions):",
    ]
    lines += [f"  {pct:5.1f}  {frame}" for frame, pct in top_inclusive]
    lines += ["", "self % (any function):"]
    lines += [f"  {pct:5.1f}  {frame}" for frame, pct in top_self]
    Path(PROFILES / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return summary


# --- what processes are doing, waits included --------------------------------------------------


def py_spy_census(
    pids: list[int], *, seconds: float, name: str, interval: float = 0.2
) -> dict[str, Any]:
    """Snapshots (`py-spy dump`) of each process every `interval` for `seconds`: the share of
    snapshots in which a process was at each (innermost frame <- innermost novitai frame). Unlike
    sampling CPU, this shows where processes wait: a sleep, a socket, a lock."""
    states: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid in pids:
            out = subprocess.run(
                [str(BIN / "py-spy"), "dump", "--pid", str(pid), "--nonblocking"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            lines = [_short(line.strip()) for line in out.splitlines() if line.startswith("    ")]
            frames = [line.split(" (")[0] for line in lines]
            mine = [line.split(" (")[0] for line in lines if ours(line)]
            states[f"{frames[0] if frames else '?'} <- {mine[0] if mine else '-'}"] += 1
        time.sleep(interval)
    total = sum(states.values())
    shares = [(state, round(100 * n / total, 1)) for state, n in states.most_common(20)]
    PROFILES.mkdir(parents=True, exist_ok=True)
    lines = [f"py-spy dump census, {total} snapshots of {name} (innermost frame <- novitai's)", ""]
    lines += [f"  {pct:5.1f}  {state}" for state, pct in shares]
    (PROFILES / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return {"snapshots": total, "percent": shares}


# --- where the CPU went during a load run -------------------------------------------------------


def cpu_sample(web_pids: list[int]) -> dict[str, Any]:
    """CPU seconds used so far: the whole machine (busy), per process of the web workers, Postgres
    and Redis, and this process's finished children (the load tool, once it has exited)."""
    import resource

    import psutil

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0.0
        return float(times.user + times.system)

    machine = psutil.cpu_times()
    processes: dict[str, dict[int, float]] = {"web": {}, "postgres": {}, "redis": {}}
    for process in psutil.process_iter(["name"]):
        name = {"postgres": "postgres", "redis-server": "redis"}.get(process.info["name"] or "")
        if process.pid in web_pids:
            name = "web"
        if name is not None:
            processes[name][process.pid] = used(process)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "at": time.monotonic(),
        "machine_busy": float(sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)),
        "load_tool": children.ru_utime + children.ru_stime,
        **processes,
    }


def cpu_between(before: dict[str, Any], after: dict[str, Any], requests: int) -> dict[str, Any]:
    """Cores used on average over the run by each, and CPU milliseconds per request. A process
    that ended meanwhile (a closed Postgres connection) is not counted: an underestimate."""
    seconds = after["at"] - before["at"]
    delta: dict[str, float] = {
        "machine_busy": after["machine_busy"] - before["machine_busy"],
        "load_tool": after["load_tool"] - before["load_tool"],
    }
    for name in ("web", "postgres", "redis"):
        delta[name] = sum(cpu - before[name].get(pid, 0.0) for pid, cpu in after[name].items())
    ours = delta["web"] + delta["postgres"] + delta["redis"] + delta["load_tool"]
    delta["other"] = max(0.0, delta["machine_busy"] - ours)
    cores = {k: round(v / seconds, 2) for k, v in delta.items()}
    per_request = {
        k: round(1000 * delta[k] / requests, 2) if requests else None
        for k in ("web", "postgres", "redis")
    }
    return {"cores": cores, "cpu_ms_per_request": per_request, "seconds": round(seconds, 1)}
