"""Whether a configured secret is strong enough to sign tokens with.

A length check alone accepts `"a" * 32`. Real entropy cannot be measured from one string,
so this refuses what is evidently weak: too few estimated bits (length times the string's
own per-character Shannon entropy: a random 32-character hex or base64 secret estimates
well above the floor), a string that is one short unit repeated, or a run of neighbouring
characters (`abcdef...`, `0123...`). It is a guard against placeholders and typed
passwords, not a proof of randomness.
"""

from __future__ import annotations

import math
from collections import Counter

MIN_LENGTH = 32
MIN_ESTIMATED_BITS = 96.0
# Share of adjacent pairs one code point apart (or equal) above which a secret is a sequence;
# random hex has about 3/16 of them, random base64 about 3/64.
MAX_STEP_SHARE = 0.5


def estimated_bits(secret: str) -> float:
    """Length x the empirical Shannon entropy of the secret's characters."""
    if not secret:
        return 0.0
    counts = Counter(secret)
    n = len(secret)
    per_char = -sum(c / n * math.log2(c / n) for c in counts.values())
    return n * per_char


def shortest_period(secret: str) -> int:
    """The length of the shortest unit the secret repeats (its own length if none)."""
    n = len(secret)
    for period in range(1, n // 2 + 1):
        if all(secret[i] == secret[i % period] for i in range(n)):
            return period
    return n


def step_share(secret: str) -> float:
    """Share of adjacent character pairs whose code points differ by at most one."""
    pairs = list(zip(secret, secret[1:], strict=False))
    if not pairs:
        return 0.0
    return sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairs) / len(pairs)


def weakness(secret: str) -> str | None:
    """Why `secret` is too weak to sign with, or None when it passes."""
    if len(secret) < MIN_LENGTH:
        return f"shorter than {MIN_LENGTH} characters"
    period = shortest_period(secret)
    if period < len(secret):
        return f"a {period}-character pattern repeated"
    if step_share(secret) > MAX_STEP_SHARE:
        return "mostly a run of neighbouring characters"
    bits = estimated_bits(secret)
    if bits < MIN_ESTIMATED_BITS:
        return f"about {bits:.0f} bits of entropy (needs {MIN_ESTIMATED_BITS:.0f})"
    return None
