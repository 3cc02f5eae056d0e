"""The replay exchange: stored candles served over real HTTP in each venue's wire format.

`server` runs the HTTP server (clock, weights, routing), `wire` encodes each venue's rows and
errors, `faults` describes injected misbehaviour, `data` loads candle and funding files, and
`serve` is the `hedgewatch replay serve` command. May import venues (their specs), never the CLI.
"""

from hedgewatch.replay.data import load_candle_files, load_funding_files
from hedgewatch.replay.faults import Fault, RequestLog
from hedgewatch.replay.server import ReplayExchange, make_replay

__all__ = [
    "Fault",
    "ReplayExchange",
    "RequestLog",
    "load_candle_files",
    "load_funding_files",
    "make_replay",
]
