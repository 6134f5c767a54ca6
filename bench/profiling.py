"""py-spy profiles of running processes (`make bench` with --profile): where the time goes.

Each process is sampled (100 Hz, without pausing it) for the same few seconds; the stacks are
merged and written to bench/results/profiles/<name>.collapsed (a flame graph's input), and the
functions most often on the stack (inclusive) and at its top (self) to <name>.txt.
"""

from __future__ import annotations

import re
import subprocess
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


def summarise(stacks: Counter[str], *, name: str, top: int) -> dict[str, Any]:
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        for frame in set(frames):
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
    lines = [f"py-spy, {total} samples (100 Hz) of the processes named {name}", "", "inclusive %:"]
    lines += [f"  {pct:5.1f}  {frame}" for frame, pct in top_inclusive]
    lines += ["", "self %:"]
    lines += [f"  {pct:5.1f}  {frame}" for frame, pct in top_self]
    Path(PROFILES / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return summary
