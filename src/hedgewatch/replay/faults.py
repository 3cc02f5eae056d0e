"""Fault injection for the replay exchange: what a misbehaving venue does to the next requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

FaultKind = Literal[
    "status", "timeout", "truncate", "reset", "drop_candles", "duplicate", "shuffle"
]


@dataclass
class Fault:
    """A misbehaviour applied to the next `count` requests whose path starts with `path_prefix`.

    kinds: "status" answers `code` with `body` (a default Binance body per code) and Retry-After;
    "timeout" waits `delay_s` before answering; "truncate" sends half the JSON with a matching
    Content-Length; "reset" announces the full body, sends half and closes the connection;
    "drop_candles" hides the candles at `open_times` (like a real gap: pages stay full);
    "duplicate" repeats the row before startTime and the last row of each klines page;
    "shuffle" sends a candle page in a scrambled order. A "status" fault with `code=200` and a
    venue error envelope as `body` is the HTTP-200-with-an-error case.
    `count=None` applies to every matching request.
    """

    kind: FaultKind
    path_prefix: str = "/"
    count: int | None = 1
    code: int = 500
    body: Any = None
    retry_after: float | None = None
    delay_s: float = 0.0
    open_times: tuple[datetime, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "drop_candles" and not self.open_times:
            raise ValueError("a drop_candles fault needs the open_times to hide")


@dataclass(frozen=True)
class RequestLog:
    path: str
    params: dict[str, str]
    status: int
    fault: str | None


def apply_row_faults(picked: list[int], fault: Fault | None) -> list[int]:
    """Duplicate or scramble the rows of one page (indices into the stored series)."""
    if fault is not None and fault.kind == "duplicate" and picked:
        before = [picked[0] - 1] if picked[0] > 0 else []
        return [*before, *picked, picked[-1]]
    if fault is not None and fault.kind == "shuffle" and len(picked) > 2:
        # A fixed scramble: odd positions first, then even ones reversed.
        return picked[1::2] + picked[0::2][::-1]
    return picked
