"""Client-side pacing and retry timing. No I/O besides sleeping.

The API gateway throttles per user with an undocumented limit; pacing every call (retries
included) below a configured rate keeps a large apply near that limit with few 429s.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SLOWDOWN = 1.1
MAX_HOLD = 60.0  # a Retry-After beyond a minute is taken as a minute
RECOVERY = 0.998


class RateLimiter:
    """A thread-safe token bucket: ``acquire()`` blocks until a call may be made.

    Capacity defaults to one call so calls are spread evenly; the gateway's own bucket is
    unknown, and bursts are what earn 429s.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("rate limit must be positive")
        self.base_interval = self.interval = 60.0 / per_minute
        self._capacity = float(max(1, burst))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token, possibly going into debt; return how long the caller must wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) / self.interval)
            self._updated = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens * self.interval
            # After a slow-down, the pace creeps back to the configured rate call by call.
            self.interval = max(self.base_interval, self.interval * RECOVERY)
            return wait

    def acquire(self) -> None:
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)

    def throttled(self, retry_after: float | None) -> float:
        """The service answered 429 (its limit is tighter than ours, or its bucket smaller):
        every caller sharing this limiter holds back for ``Retry-After`` (one interval when
        absent), and the pace slows by a tenth, to at most half the configured rate. Returns
        the hold, which ``acquire`` now enforces for the retry too."""
        with self._lock:
            self.interval = min(self.base_interval * 2, self.interval * SLOWDOWN)
            hold = self.interval if retry_after is None else min(max(retry_after, self.interval), MAX_HOLD)
            self._tokens = min(self._tokens, 1.0 - hold / self.interval)
            return hold


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in attempts and in delay.

    ``Retry-After`` from the service wins over the computed delay (capped at ``max_delay``).
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number ``attempt + 1`` (attempts count from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        # Jitter keeps workers that failed together from retrying together; the lower half is
        # kept so a retry never comes back almost at once.
        return self.rng.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form); None when absent or odd."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
