"""`hedgewatch replay serve`: serve candle files until stopped, with a clock that can be moved."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

import polars as pl

from hedgewatch.replay.data import load_candle_files, load_funding_files
from hedgewatch.replay.server import CLOCK_PATH, ReplayExchange, make_replay
from hedgewatch.venues.base import interval_ms


def open_files(
    paths: Sequence[Path],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    now: datetime | None = None,
    venue: str = "binance",
) -> ReplayExchange:
    """A replay exchange (not yet started) over the given candle and funding files.

    Funding files are recognised by their funding_rate column. `now` defaults to just after the
    last stored candle, so every stored candle is closed.
    """
    candle_paths: list[Path] = []
    funding_paths: list[Path] = []
    for path in map(Path, paths):
        is_funding = "funding_rate" in pl.read_csv(path, n_rows=1).columns
        (funding_paths if is_funding else candle_paths).append(path)
    if not candle_paths:
        raise ValueError("no candle files given (funding files alone cannot be served)")
    candles = load_candle_files(candle_paths)
    funding = load_funding_files(funding_paths) if funding_paths else None
    if now is None:
        last = candles.group_by("interval").agg(pl.col("open_time").max()).rows()
        now = max(t + timedelta(milliseconds=interval_ms(iv)) for iv, t in last)
    if venue != "binance" and funding is not None:
        funding = funding.with_columns(pl.lit(venue).alias("exchange"))
    return make_replay(venue, candles, funding, now=now, host=host, port=port)


def serve(
    paths: Sequence[Path],
    host: str = "127.0.0.1",
    port: int = 0,
    now: datetime | None = None,
    venue: str = "binance",
    speed: float = 0.0,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the given files until SIGINT or SIGTERM, printing the URL and the clock's endpoint.

    With `speed` > 0 the clock runs at that many replay seconds per real second; at any speed it can
    be moved with `hedgewatch replay advance` (POST /_replay/clock).
    """
    replay = open_files(paths, host=host, port=port, now=now, venue=venue)
    replay.set_speed(speed)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with replay:
            where = "spot /api/v3, perp /fapi/v1" if venue == "binance" else f"{venue} wire format"
            rows = replay.candle_count
            echo(
                f"Replay exchange at {replay.url} ({where}), now={replay.now().isoformat()}"
                + (f" running at {speed:g}x" if speed else "")
                + f", {rows} candles; clock at {replay.url}{CLOCK_PATH}; Ctrl-C to stop"
            )
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("stopped")
