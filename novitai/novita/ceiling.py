"""A request-rate ceiling as Novita states one: calls per window ("100/60s") or a rate ("10/s",
"1.6667"). Standard library only: settings parse NOVITA_RATE_LIMIT with it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_CEILING = re.compile(
    r"^\s*(?P<calls>\d+(?:\.\d+)?)\s*/\s*(?P<seconds>\d+(?:\.\d+)?)?\s*"
    r"(?P<unit>s|sec|second|m|min|minute|h|hour)?\s*$"
)
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNIT_SECONDS |= {"h": 3600, "hour": 3600}


@dataclass(frozen=True)
class Ceiling:
    """`calls` per `seconds`; calls == 0 means no ceiling."""

    calls: float
    seconds: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Ceiling:
        """'100/60s', '600/min', '10/s', '10/1s', or a rate per second ('1.6667', '0' = none)."""
        text = str(text).strip().lower()
        try:
            rate: float | None = float(text)
        except ValueError:
            rate = None
        if rate is not None:
            if rate < 0 or not math.isfinite(rate):
                raise ValueError(f"a rate ceiling cannot be {text!r}")
            return cls(calls=rate, seconds=1.0)
        match = _CEILING.match(text)
        if not match:
            raise ValueError(
                f"a rate ceiling is calls per window, e.g. '100/60s' or '10/s', not {text!r}"
            )
        count = float(match["seconds"] or 1) * _UNIT_SECONDS[match["unit"] or "s"]
        if count <= 0:
            raise ValueError(f"a rate ceiling's window must be longer than 0 s: {text!r}")
        return cls(calls=float(match["calls"]), seconds=count)

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    def __str__(self) -> str:
        return f"{self.calls:g}/{self.seconds:g}s"
