"""bench.wrk: reading wrk's summary and the token-rotating Lua script it runs."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import wrk

# `wrk -t1 -c32 -d5s --latency` as wrk 4.1 prints it, with both error lines present.
WITH_ERRORS = """\
Running 5s test @ http://127.0.0.1:41231/v1/feed?limit=20
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    37.26ms   24.93ms   1.30s    62.75%
    Req/Sec     0.89k   601.33     2.86k    90.00%
  Latency Distribution
     50%  812.00us
     75%   50.10ms
     90%   76.22ms
     99%    1.21s
  4499 requests in 5.03s, 2.39MB read
  Socket errors: connect 0, read 3, write 1, timeout 7
  Non-2xx or 3xx responses: 12
Requests/sec:    894.45
Transfer/sec:    486.67KB
"""

CLEAN = """\
Running 2s test @ http://127.0.0.1:50067/floor
  1 threads and 32 connections
  Latency Distribution
     50%   33.99ms
     75%   50.10ms
     90%   76.22ms
     99%  112.78ms
  1799 requests in 2.03s, 238.93KB read
Requests/sec:    886.00
Transfer/sec:    117.67KB
"""


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("812.00us", 0.812),
        ("33.99ms", 33.99),
        ("1.21s", 1210.0),
        ("2.00m", 120_000.0),
        ("1h", 3_600_000.0),
    ],
)
def test_durations_in_every_unit_wrk_prints(text: str, ms: float) -> None:
    assert wrk.duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["", "12", "1.5 parsecs", "ms"])
def test_a_duration_without_a_known_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a wrk duration"):
        wrk.duration_ms(text)


def test_summary_with_errors() -> None:
    report = wrk.parse_wrk(WITH_ERRORS)
    assert report.requests == 4499
    assert report.seconds == pytest.approx(5.03)
    assert report.rps == pytest.approx(894.45)
    assert report.p50_ms == pytest.approx(0.812)
    assert report.p99_ms == pytest.approx(1210.0)
    assert report.percentiles_ms[75.0] == pytest.approx(50.10)
    assert report.socket_errors == {"connect": 0, "read": 3, "write": 1, "timeout": 7}
    assert report.non_2xx == 12
    assert report.errors == 12 + 11


def test_summary_without_error_lines_has_no_errors() -> None:
    report = wrk.parse_wrk(CLEAN)
    assert (report.requests, report.rps, report.p99_ms) == (1799, 886.0, 112.78)
    assert report.errors == 0
    assert set(report.socket_errors) == {"connect", "read", "write", "timeout"}


def test_summary_without_latency_distribution_has_nan_percentiles() -> None:
    text = "  10 requests in 1.00s, 1KB read\nRequests/sec:     10.00\n"
    report = wrk.parse_wrk(text)
    assert report.requests == 10
    assert math.isnan(report.p50_ms)
    assert math.isnan(report.p99_ms)


def test_output_without_a_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="no wrk summary"):
        wrk.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("/v1/feed?limit=20", '"/v1/feed?limit=20"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("two\nlines\r", '"two\\nlines\\r"'),
    ],
)
def test_lua_string_escapes(text: str, literal: str) -> None:
    assert wrk.lua_string(text) == literal


def test_lua_script_formats_one_request_per_token_and_cycles() -> None:
    script = wrk.rotating_tokens_lua("/v1/feed?limit=20", ["a.b.c", "d.e.f"])
    assert 'local path = "/v1/feed?limit=20"' in script
    assert '  "a.b.c",\n  "d.e.f",\n}' in script
    assert "request = function()" in script
    assert "i = i % n + 1" in script


def test_lua_script_needs_a_token() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        wrk.rotating_tokens_lua("/floor", [])


def test_command_has_latency_and_whole_seconds() -> None:
    command = wrk.wrk_command(
        "http://127.0.0.1:1/floor", Path("/tmp/x.lua"), threads=1, connections=32, seconds=5
    )
    assert command[:4] == ["wrk", "-t1", "-c32", "-d5s"]
    assert "--latency" in command
    assert command[-3:] == ["-s", "/tmp/x.lua", "http://127.0.0.1:1/floor"]


@pytest.fixture
def recording_server() -> Iterator[tuple[int, Counter[tuple[str, str]]]]:
    """A local HTTP server counting (path, Authorization) of every request it answers."""
    seen: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            with lock:
                seen[(self.path, self.headers.get("Authorization", ""))] += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(not wrk.available(), reason=f"wrk is not installed: {wrk.INSTALL_HINT}")
def test_wrk_runs_the_script_and_rotates_tokens(
    recording_server: tuple[int, Counter[tuple[str, str]]],
) -> None:
    port, seen = recording_server
    tokens = ["tok-1", "tok-2", "tok-3"]
    report = wrk.run_wrk(
        f"http://127.0.0.1:{port}",
        "/v1/feed?limit=20",
        tokens,
        threads=1,
        connections=2,
        seconds=1,
    )
    assert report.requests > 0
    assert report.errors == 0
    assert {path for path, _ in seen} == {"/v1/feed?limit=20"}
    assert {auth for _, auth in seen} == {f"Bearer {t}" for t in tokens}
    counts = [seen[("/v1/feed?limit=20", f"Bearer {t}")] for t in tokens]
    # Round robin: sent counts differ by at most 1, plus a request per connection that wrk
    # may close unanswered when the time is up.
    assert max(counts) - min(counts) <= 1 + 2
