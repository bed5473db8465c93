"""How many live WebSockets one user and one client address may hold open in this process.

Each connection holds a task, a Redis subscription share and memory for as long as it lives,
and the HTTP rate limiter never sees WebSockets: without a cap one token opened 100 of them.
The counts are per API process (the connections live here; a crashed process frees its own),
so the effective cap is the per-process cap times the processes behind the load balancer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class Caps:
    """Counts of open connections per key, refused past `limit` (no awaits: loop-safe)."""

    limit: int
    counts: Counter[Hashable] = field(default_factory=Counter)

    def acquire(self, key: Hashable) -> bool:
        """Take a slot for `key`; False (and nothing taken) when it has `limit` already."""
        if self.counts[key] >= self.limit:
            return False
        self.counts[key] += 1
        return True

    def release(self, key: Hashable) -> None:
        self.counts[key] -= 1
        if self.counts[key] <= 0:
            del self.counts[key]


@dataclass
class LiveCaps:
    """The per-user and per-address caps of `/v1/live`."""

    per_user: Caps
    per_address: Caps

    @classmethod
    def of(cls, per_user: int, per_address: int) -> LiveCaps:
        return cls(per_user=Caps(per_user), per_address=Caps(per_address))
