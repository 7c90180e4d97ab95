"""Reconnect delays: a `Backoff` policy, injectable into `connect(..., backoff=...)`.

The default is exponential with *full jitter* (AWS architecture blog, "Exponential
Backoff And Jitter"): attempt n waits ``uniform(0, min(maximum, initial * factor**(n-1)))``,
so a fleet of clients dropped together does not reconnect together.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol


class Backoff(Protocol):
    """How long to wait before reconnect attempt `attempt` (1, 2, 3, ... since the last
    successful connection; the count starts again at 1 after one)."""

    def delay(self, attempt: int) -> float:
        """Seconds to sleep before attempt `attempt` (>= 1); must be >= 0."""
        ...


@dataclass(frozen=True)
class ExponentialBackoff:
    """``min(maximum, initial * factor**(attempt-1))``, times ``random()`` with full jitter.

    `random` returns a float in [0, 1); inject one to make the delays reproducible.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: Literal["full", "none"] = "full"
    random: Callable[[], float] = field(default=_random.random, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.factor < 1 or self.maximum < 0:
            raise ValueError("initial and maximum must be >= 0 and factor >= 1")

    def delay(self, attempt: int) -> float:
        """See the class docstring."""
        exponent = min(max(attempt - 1, 0), 64)  # beyond that it is `maximum` anyway
        ceiling = min(self.maximum, self.initial * self.factor ** exponent)
        return ceiling * self.random() if self.jitter == "full" else ceiling
