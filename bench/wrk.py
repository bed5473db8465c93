"""Driving an endpoint with `wrk` (Debian's package `wrk`) and reading what it prints.

Why an external generator: a load generator written in Python costs about as much CPU per
request as the server's floor (a minimal FastAPI endpoint), so on a 2-core machine it caps the
very figure it measures. wrk, in C, spends a few microseconds per request.

wrk sends requests closed-loop (each connection sends its next request when the previous one
is answered), so it measures saturation; it cannot pace requests at a fixed rate, which is why
`bench.serve` measures the half-load rows with its own open-loop generator (`bench.load`).

The parts that need no process (the Lua script, the parsing) are pure, for the unit tests.
"""

from __future__ import annotations

import math
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

INSTALL_HINT = "apt-get install wrk  (Debian's package; or put `wrk` on PATH)"
# wrk's time units (`format_time_us` in its units.c), in milliseconds.
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s|m|h)\s*$")
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s*([0-9.]+)", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s*([0-9.]+)%\s+([0-9.]+(?:us|ms|s|m|h))\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class WrkReport:
    """What one wrk run printed (`--latency`), plus the CPU wrk itself used."""

    requests: int
    seconds: float
    rps: float
    percentiles_ms: dict[float, float]
    socket_errors: dict[str, int]
    non_2xx: int
    client_cpu: float = 0.0

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms.get(50.0, math.nan)

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms.get(99.0, math.nan)

    @property
    def errors(self) -> int:
        """Responses with status >= 400 (wrk's "Non-2xx or 3xx") plus socket errors."""
        return self.non_2xx + sum(self.socket_errors.values())


def duration_ms(text: str) -> float:
    """`"1.23ms"`, `"512.00us"`, `"1.05s"` as wrk prints them, in milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> WrkReport:
    """Read the summary of `wrk --latency`; raises ValueError when it is not there."""
    requests = _REQUESTS.search(output)
    rps = _RPS.search(output)
    if requests is None or rps is None:
        raise ValueError(f"no wrk summary in the output:\n{output}")
    percentiles = {float(p): duration_ms(d) for p, d in _PERCENTILE.findall(output)}
    sockets = _SOCKET_ERRORS.search(output)
    names = ("connect", "read", "write", "timeout")
    socket_errors = dict.fromkeys(names, 0)
    if sockets is not None:
        socket_errors = dict(zip(names, (int(n) for n in sockets.groups()), strict=True))
    non_2xx = _NON_2XX.search(output)
    return WrkReport(
        requests=int(requests.group(1)),
        seconds=duration_ms(requests.group(2) + requests.group(3)) / 1000,
        rps=float(rps.group(1)),
        percentiles_ms=percentiles,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def lua_string(text: str) -> str:
    """`text` as a double-quoted Lua string literal."""
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def rotating_tokens_lua(path: str, tokens: Sequence[str]) -> str:
    """A wrk script sending `GET path` with the next token's `Authorization` each request.

    The requests are formatted once when the script loads (one per token), so each request
    costs wrk a table lookup, not a string build; each wrk thread cycles through them all.
    """
    if not tokens:
        raise ValueError("rotating_tokens_lua needs at least one token")
    rows = ",\n".join(f"  {lua_string(token)}" for token in tokens)
    return (
        "-- Written by bench.wrk: one pre-issued token per request, in rotation.\n"
        f"local path = {lua_string(path)}\n"
        f"local tokens = {{\n{rows},\n}}\n"
        "local requests = {}\n"
        "for i, token in ipairs(tokens) do\n"
        '  requests[i] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})\n'
        "end\n"
        "local n = #requests\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % n + 1\n"
        "  return requests[i]\n"
        "end\n"
    )


def wrk_command(
    url: str, script: Path, *, threads: int, connections: int, seconds: int
) -> list[str]:
    """`wrk` with latency percentiles; a 10 s timeout so slow answers count, not vanish."""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    """wrk's first line of `-v` (e.g. `wrk debian/4.1.0-3+b2 [epoll]`)."""
    shown = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (shown.stdout or shown.stderr).splitlines()[0].split(" Copyright")[0].strip()


def run_wrk(
    url: str,
    path: str,
    tokens: Sequence[str],
    *,
    threads: int,
    connections: int,
    seconds: float,
) -> WrkReport:
    """Run wrk once against `url` + `path`; wrk's own CPU is read from the reaped child."""
    with tempfile.TemporaryDirectory(prefix="godo-wrk-") as tmp:
        script = Path(tmp) / "tokens.lua"
        script.write_text(rotating_tokens_lua(path, tokens))
        command = wrk_command(
            url + path,
            script,
            threads=threads,
            connections=connections,
            seconds=max(1, round(seconds)),
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return replace(parse_wrk(done.stdout), client_cpu=cpu)
