"""Rate limiting (a token bucket on the simulator clock) and fault decisions.

No I/O. Both take the time and the random generator from the caller, so a fake clock and the
fleet's seed make them deterministic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from reconciler.simulator.spec import Behaviour


@dataclass(frozen=True)
class Faults:
    """What happens to one /v2 call, drawn before it is processed."""

    drop_before: bool = False
    error: bool = False
    throttle: bool = False
    drop_after: bool = False


def draw_faults(rng: random.Random, behaviour: Behaviour) -> Faults:
    """One draw per enabled fault, in a fixed order; disabled faults use no randomness."""

    def draw(rate: float) -> bool:
        return rate > 0 and rng.random() < rate

    return Faults(
        drop_before=draw(behaviour.drop_before_rate),
        error=draw(behaviour.error_rate),
        throttle=draw(behaviour.throttle_rate),
        drop_after=draw(behaviour.drop_after_rate),
    )


class TokenBucket:
    """Capacity ``burst`` tokens, refilled at ``per_minute / 60`` tokens a second; one per call."""

    def __init__(self, per_minute: float | None, burst: int | None, now: float) -> None:
        self.per_minute = per_minute
        self.burst = burst
        self.tokens = float(burst) if burst is not None else 0.0
        self.updated = now

    def take(self, now: float) -> int | None:
        """Take a token; None when allowed, else the whole seconds to wait (>= 1) for Retry-After."""
        if self.per_minute is None or self.burst is None:
            return None
        rate = self.per_minute / 60.0
        # A clock that goes backwards (a restored state, a test) must not mint tokens.
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self.tokens) / rate))

    def to_dict(self) -> dict[str, Any]:
        return {"per_minute": self.per_minute, "burst": self.burst, "tokens": self.tokens, "updated": self.updated}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenBucket:
        bucket = cls(data["per_minute"], data["burst"], data["updated"])
        bucket.tokens = data["tokens"]
        return bucket
