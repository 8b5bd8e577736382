"""Time-to-full forecasts: a least-squares line through (time, free) samples.

Why least squares over a window and not the last two samples: free space moves in steps
(a queue flushed, a WAL segment recycled, a log rotated), so the rate between two samples
swings wildly; a line through the last hours says how fast the disk really fills. Why the
current reading and not the fitted line's end for "free now": the person reading "full in
~3h" looks at `df`, which shows the current value.

Pure: samples in, a `Forecast` out. No clock (the caller passes `now`), no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from watchdog.units import format_duration

Sample = Tuple[float, float]  # (Unix time, free amount: bytes or inodes)


@dataclass(frozen=True)
class Forecast:
    """What the samples say. `seconds` is the time until free reaches 0 at `rate`
    (None: not filling, or too little history; `why` then says which). `rate` is the
    change of free per second (negative: filling). `span` is the time the samples used
    cover, `count` how many there were."""

    seconds: Optional[float]
    rate: Optional[float]
    span: float
    count: int
    why: str = ""

    @property
    def filling(self) -> bool:
        return self.seconds is not None


def slope(samples: Sequence[Sample]) -> Optional[float]:
    """The least-squares slope of free over time; None when the times do not spread."""
    n = len(samples)
    if n < 2:
        return None
    mean_t = math.fsum(t for t, _ in samples) / n
    mean_v = math.fsum(v for _, v in samples) / n
    var = math.fsum((t - mean_t) ** 2 for t, _ in samples)
    if var <= 0.0:
        return None
    cov = math.fsum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var


def time_to_full(samples: Sequence[Sample], now: float, free_now: float, window: float,
                 min_span: float, min_count: int = 3) -> Forecast:
    """When `free_now` reaches 0 at the rate of the samples of the last `window` seconds.

    Samples older than `now - window` or in the future (a clock set back) are left out.
    Fewer than `min_count` samples, or samples spanning less than `min_span`, give no
    forecast ("not enough history"): a minute of samples is mostly noise.
    """
    used = sorted((t, v) for t, v in samples
                  if now - window <= t <= now and math.isfinite(t) and math.isfinite(v))
    span = used[-1][0] - used[0][0] if used else 0.0
    if len(used) < min_count or span < min_span:
        count = f"{len(used)} sample{'' if len(used) == 1 else 's'}"
        return Forecast(None, None, span, len(used),
                        f"not enough history yet ({count} over {format_duration(span)}; "
                        f"the forecast needs {format_duration(min_span)})")
    rate = slope(used)
    if rate is None:
        return Forecast(None, None, span, len(used), "samples at one instant")
    if rate >= 0.0:
        return Forecast(None, rate, span, len(used), "not filling")
    if free_now <= 0:
        return Forecast(0.0, rate, span, len(used))
    return Forecast(free_now / -rate, rate, span, len(used))
