"""A venue on loopback that speaks Binance's wire format and misbehaves on purpose.

`mode` picks the misbehaviour of its klines and funding answers; "healthy" answers correctly.
Every hostile answer is bounded on the server side too (it stops once the client hangs up).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOUR_MS = 3_600_000
MODES = (
    "healthy",
    "nested",  # a body `[` nested 200,000 deep
    "huge_ts",  # a kline open_time of 10^20
    "endless",  # a chunked 200 body that never ends
    "drip",  # a body sent a byte at a time
    "stuck_pages",  # full funding pages whose rows all sit at startTime
    "impossible",  # negative and zero prices, high < low, seconds taken for ms
    "skew",  # the venue's clock two hours ahead, the open candle sent as if closed
    "junk",  # a JSON object where rows belong
)


class HostileVenue:
    def __init__(self, mode: str, now_ms: int, *, drip_interval_s: float = 0.02) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.now_ms = now_ms
        self.drip_interval_s = drip_interval_s
        self.requests = 0
        self.revised: dict[int, float] = {}  # open time (ms) -> a corrected close
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def server_time(self) -> int:
        return self.now_ms + (2 * HOUR_MS if self.mode == "skew" else 0)

    def klines(self, params: dict[str, str]) -> Any:
        start = int(params.get("startTime", self.now_ms - 48 * HOUR_MS))
        end = int(params.get("endTime", self.now_ms))
        limit = int(params.get("limit", 500))
        first = -(-start // HOUR_MS) * HOUR_MS
        last = min(end, self.server_time() - (0 if self.mode == "skew" else HOUR_MS))
        rows = []
        for t in range(first, last + 1, HOUR_MS):
            price = 100.0 + (t // HOUR_MS) % 7
            close = self.revised.get(t, price + 0.5)
            high, low = max(price + 1, close), min(price - 1, close)
            rows.append(_kline(t, price, high, low, close, 10.0))
            if len(rows) == limit:
                break
        if self.mode == "huge_ts" and rows:
            rows[0][0] = 10**20
        if self.mode == "junk":
            return {"rows": rows}
        if self.mode == "impossible" and len(rows) >= 4:
            rows[0][1:5] = ["-5", "1", "2", "3"]  # a negative open
            rows[1][1:5] = ["0", "0", "0", "0"]  # zero prices
            rows[2][2], rows[2][3] = "1", "500"  # high < low
            rows[3][0] = rows[3][0] // 1000  # seconds, read as 1970
        return rows

    def funding(self, params: dict[str, str]) -> Any:
        start = int(params.get("startTime", self.now_ms - 48 * HOUR_MS))
        limit = int(params.get("limit", 100))
        if self.mode == "stuck_pages":
            row = {"symbol": params.get("symbol"), "fundingTime": start, "fundingRate": "0.0001"}
            return [row] * limit
        first = -(-start // (8 * HOUR_MS)) * 8 * HOUR_MS
        return [
            {"symbol": params.get("symbol"), "fundingTime": t, "fundingRate": "0.0001"}
            for t in range(first, self.now_ms, 8 * HOUR_MS)
        ][:limit]


def _kline(t: int, o: float, h: float, low: float, c: float, v: float) -> list[Any]:
    return [t, str(o), str(h), str(low), str(c), str(v), t + HOUR_MS - 1, "0", 1, "0", "0", "0"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        venue = self.server.venue
        venue.count()
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path.endswith("/time"):
            return self._json({"serverTime": venue.server_time()})
        if path.endswith("/exchangeInfo"):
            return self._json({"symbols": []})
        mode = venue.mode
        if mode == "nested":
            depth = 200_000
            return self._raw(b"[" * depth + b"]" * depth)
        if mode == "endless":
            return self._endless()
        if path.endswith("/klines"):
            body = json.dumps(venue.klines(params)).encode()
        elif path.endswith("/fundingRate"):
            body = json.dumps(venue.funding(params)).encode()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if mode == "drip":
            return self._drip(body)
        return self._raw(body)

    def _json(self, payload: Any) -> None:
        self._raw(json.dumps(payload).encode())

    def _raw(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with suppress(OSError):
            self.wfile.write(body)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"[" + b"1," * 32_000
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            while True:  # until the client hangs up
                self.wfile.write(framed)
        except OSError:
            self.close_connection = True

    def _drip(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(self.server.venue.drip_interval_s)
        except OSError:
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, venue: HostileVenue) -> None:
        self.venue = venue
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextmanager
def serve(venue: HostileVenue) -> Iterator[str]:
    """The venue on loopback; yields its base URL."""
    server = _Server(venue)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
