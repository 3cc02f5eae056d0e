"""`hedgewatch backfill`, `import` and `gaps` as users run them, against replay exchanges."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import tomli_w
from typer.testing import CliRunner

from hedgewatch.cli import app
from hedgewatch.flows.backfill import run_backfill
from hedgewatch.replay import Fault, ReplayExchange, load_candle_files, make_replay
from hedgewatch.settings import load_settings
from hedgewatch.storage.store import Store

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"  # real recorded data, vendored (tests/data/SOURCES.md)
SPOT = DATA / "candles" / "binance_spot_1h_BTCUSDT_2024-01_2026-01.csv.gz"
MAJORS = DATA / "candles" / "binance_spot_1h_BTC_ETH_2021-04_2023-12.csv.gz"
H = timedelta(hours=1)
NOW = datetime(2024, 9, 1, 0, 30, tzinfo=UTC)
FROM, TO = datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 8, 1, tzinfo=UTC)


def require(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real market data not found at {path}")


@pytest.fixture(scope="module")
def btc() -> pl.DataFrame:
    require(SPOT)
    return load_candle_files([SPOT])


@pytest.fixture
def venues(btc: pl.DataFrame) -> Iterator[dict[str, ReplayExchange]]:
    eth = btc.with_columns(pl.lit("ETHUSDT").alias("symbol"), pl.col("close") / 20)
    kraken = btc.with_columns(pl.lit("XXBTZUSD").alias("symbol"))
    with (
        make_replay("binance", pl.concat([btc, eth]), now=NOW) as binance,
        make_replay("kraken", kraken, now=NOW) as kraken_replay,
    ):
        yield {"binance": binance, "kraken": kraken_replay}


def write_config(tmp_path: Path, venues: dict[str, ReplayExchange]) -> Path:
    raw: dict[str, Any] = {
        "storage": {"database": str(tmp_path / "hw.duckdb")},
        "venues": [
            {"name": "binance", "kind": "binance", "base_urls": {"spot": venues["binance"].url}},
            {"name": "kraken", "kind": "kraken", "base_urls": {"spot": venues["kraken"].url}},
        ],
        "instruments": [
            {"id": "BTC", "venue": "binance", "symbol": "BTCUSDT"},
            {"id": "ETH", "venue": "binance", "symbol": "ETHUSDT"},
            {"id": "BTC-KRAKEN", "venue": "kraken", "symbol": "XXBTZUSD"},
        ],
    }
    path = tmp_path / "hedgewatch.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def counts(tmp_path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(venue, symbol) -> (rows, distinct open times)."""
    with Store.open(tmp_path / "hw.duckdb", read_only=True) as store:
        rows = store.con.sql(
            "SELECT venue, symbol, count(*), count(DISTINCT open_time) FROM candles GROUP BY ALL"
        ).fetchall()
    return {(v, s): (n, d) for v, s, n, d in rows}


def klines(replay: ReplayExchange) -> int:
    return len(replay.statuses("/api/v3/klines"))


def test_backfill_fetches_every_series_and_a_rerun_fetches_nothing(
    venues: dict[str, ReplayExchange], tmp_path: Path
) -> None:
    config = write_config(tmp_path, venues)
    hours = int((TO - FROM) / H)

    first = CliRunner().invoke(
        app,
        [
            "backfill",
            "--from",
            "2024-02-01",
            "--to",
            "2024-08-01",
            "-c",
            str(config),
            "--venue",
            "binance",
        ],
    )

    assert first.exit_code == 0, first.output
    assert counts(tmp_path) == {
        ("binance", "BTCUSDT"): (hours, hours),
        ("binance", "ETHUSDT"): (hours, hours),
    }
    # 4368 hours a symbol = 5 pages of 1000: no page is wasted.
    assert klines(venues["binance"]) == 2 * 5
    again = CliRunner().invoke(
        app, ["backfill", "--from", "2024-02-01", "--to", "2024-08-01", "-c", str(config)]
    )
    assert again.exit_code == 0, again.output
    assert klines(venues["binance"]) == 10  # Binance: all ranges already stored
    assert "not available" in again.output and "hedgewatch import" in again.output  # Kraken


def test_an_interrupted_backfill_resumes_where_it_stopped(
    venues: dict[str, ReplayExchange], tmp_path: Path
) -> None:
    settings = load_settings(write_config(tmp_path, venues))
    # Three chunks a symbol (16 pages of 1000 hours each), most of them before the data starts.
    start, end = datetime(2019, 3, 1, tzinfo=UTC), datetime(2024, 8, 1, tzinfo=UTC)
    seen: list[Any] = []

    def stop_after_two(chunk: Any, rows: int) -> None:
        seen.append(chunk)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_backfill(settings, start, end, venues=["binance"], on_chunk=stop_after_two)
    stopped_at = klines(venues["binance"])

    report = run_backfill(settings, start, end, venues=["binance"])

    assert report.skipped == 2 and report.ok
    # Only the chunks not stored before the interrupt were fetched again (at most the two in
    # flight when it stopped were fetched twice).
    assert report.done == 4
    assert klines(venues["binance"]) - stopped_at <= report.done * 16
    stored = counts(tmp_path)
    expected = int((end - datetime(2024, 1, 21, 7, tzinfo=UTC)) / H)  # the file starts then
    assert stored[("binance", "BTCUSDT")] == (expected, expected)
    assert stored[("binance", "ETHUSDT")] == (expected, expected)


def test_a_failing_range_exits_1_and_a_rerun_fills_just_that(
    venues: dict[str, ReplayExchange], tmp_path: Path
) -> None:
    config = write_config(tmp_path, venues)
    venues["binance"].inject(Fault("status", path_prefix="/api/v3/klines", code=400, count=1))
    args = [
        "backfill",
        "--from",
        "2024-02-01",
        "--to",
        "2024-08-01",
        "-c",
        str(config),
        "--venue",
        "binance",
        "--no-progress",
    ]

    failed = CliRunner().invoke(app, args)

    assert failed.exit_code == 1
    assert "failed: binance spot" in failed.output and "rerun" in failed.output
    before = klines(venues["binance"])
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert klines(venues["binance"]) - before == 5  # one symbol's range: 5 pages
    hours = int((TO - FROM) / H)
    assert set(counts(tmp_path).values()) == {(hours, hours)}


def test_kraken_backfill_within_720_candles_is_fetched(
    venues: dict[str, ReplayExchange], tmp_path: Path
) -> None:
    config = write_config(tmp_path, venues)

    result = CliRunner().invoke(
        app,
        [
            "backfill",
            "--from",
            "2024-08-10",
            "--to",
            "2024-08-31",
            "-c",
            str(config),
            "--venue",
            "kraken",
        ],
    )

    assert result.exit_code == 0, result.output
    assert counts(tmp_path) == {("kraken", "XXBTZUSD"): (21 * 24, 21 * 24)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "--from: not an ISO 8601"),
        (["--from", "2024-02-01", "--to", "2024-01-01"], "--to must be after --from"),
        (["--from", "2024-02-01", "--venue", "ftx"], "--venue: 'ftx' is not in"),
        (["--from", "2024-02-01", "--symbol", "DOGEUSDT"], "--symbol: no configured"),
    ],
)
def test_bad_backfill_arguments_exit_2_with_a_message(
    venues: dict[str, ReplayExchange], tmp_path: Path, args: list[str], message: str
) -> None:
    config = write_config(tmp_path, venues)

    result = CliRunner().invoke(app, ["backfill", *args, "-c", str(config)])

    assert result.exit_code == 2
    assert message in result.output


# -- import ---------------------------------------------------------------------------


def archive_rows(start: datetime, hours: int, micros: bool = False) -> str:
    scale = 1000 if micros else 1
    lines = []
    for h in range(hours):
        ms = int((start + h * H).timestamp() * 1000)
        lines.append(
            f"{ms * scale},100.0,101.0,99.0,100.5,12.5,{(ms + 3_599_999) * scale},1250.0,42,"
            "6.0,600.0,0"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def empty_config(tmp_path: Path) -> Path:
    path = tmp_path / "hedgewatch.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "storage": {"database": str(tmp_path / "hw.duckdb")},
                "venues": [{"name": "binance", "kind": "binance"}],
                "instruments": [{"id": "BTC", "venue": "binance", "symbol": "BTCUSDT"}],
            }
        )
    )
    return path


def test_import_reads_binance_archives_normalised_csv_and_parquet(
    tmp_path: Path, empty_config: Path
) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    zipped = tmp_path / "BTCUSDT-1h-2025-01.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("BTCUSDT-1h-2025-01.csv", archive_rows(t0, 48))
    micros = tmp_path / "ETHUSDT-1h-2025-01.csv"  # spot archives since 2025 use microseconds
    micros.write_text(archive_rows(t0, 24, micros=True))
    normalised = tmp_path / "binance_usdm_perp_1h_sol.csv"
    normalised.write_text(
        "ts,symbol,open,high,low,close,volume\n"
        + "".join(
            f"{int((t0 + h * H).timestamp() * 1000)},SOLUSDT,1,2,0.5,1.5,10\n" for h in range(10)
        )
    )
    parquet = tmp_path / "bybit.parquet"
    pl.DataFrame(
        {
            "open_time": [t0 + h * H for h in range(5)],
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "volume": 3.0,
            "symbol": "BTCUSDT",
        }
    ).write_parquet(parquet)

    runner = CliRunner()
    first = runner.invoke(
        app, ["import", str(zipped), str(micros), str(normalised), "-c", str(empty_config)]
    )
    pq = runner.invoke(
        app,
        [
            "import",
            str(parquet),
            "--venue",
            "bybit",
            "--market",
            "perp",
            "--interval",
            "1h",
            "-c",
            str(empty_config),
        ],
    )
    again = runner.invoke(app, ["import", str(zipped), "-c", str(empty_config)])

    assert first.exit_code == 0, first.output
    assert pq.exit_code == 0, pq.output
    assert again.exit_code == 0
    assert "imported 82 candles from 3 file(s)" in first.output
    with Store.open(tmp_path / "hw.duckdb", read_only=True) as store:
        rows = store.con.sql(
            "SELECT venue, market, symbol, count(*), min(open_time), max(trades) "
            "FROM candles GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    assert rows == [
        ("binance", "perp", "SOLUSDT", 10, t0, None),
        ("binance", "spot", "BTCUSDT", 48, t0, 42),  # imported twice, stored once
        ("binance", "spot", "ETHUSDT", 24, t0, 42),  # µs read as µs, not the year 56000
        ("bybit", "perp", "BTCUSDT", 5, t0, None),
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("prices.csv", "a,b\n1,2\n", "unrecognised CSV header"),
        ("BTC.csv", "1735689600000,1,2,0.5,1.5,10,0,0,0,0,0,0\n", "pass --symbol and --interval"),
        ("notes.txt", "hello", "unknown format"),
    ],
)
def test_import_refuses_unreadable_files_with_exit_2(
    tmp_path: Path, empty_config: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)

    result = CliRunner().invoke(app, ["import", str(path), "-c", str(empty_config)])

    assert result.exit_code == 2
    assert message in result.output


def test_gaps_lists_real_downtime_and_never_fills_it(tmp_path: Path, empty_config: Path) -> None:
    require(MAJORS)
    runner = CliRunner()
    imported = runner.invoke(app, ["import", str(MAJORS), "-c", str(empty_config)])
    assert imported.exit_code == 0, imported.output
    with Store.open(tmp_path / "hw.duckdb", read_only=True) as store:
        before = store.con.sql("SELECT count(*) FROM candles").fetchall()

    table = runner.invoke(app, ["gaps", "--symbol", "BTCUSDT", "-c", str(empty_config)])
    listed = runner.invoke(
        app, ["gaps", "--symbol", "BTCUSDT", "--format", "json", "-c", str(empty_config)]
    )

    assert table.exit_code == 0 and listed.exit_code == 0
    gaps = json.loads(listed.output)
    assert gaps and all(g["symbol"] == "BTCUSDT" and g["missing_hours"] >= 1 for g in gaps)
    assert "missing candles in" in table.output
    with Store.open(tmp_path / "hw.duckdb", read_only=True) as store:
        assert store.con.sql("SELECT count(*) FROM candles").fetchall() == before


def test_gaps_on_a_missing_database_exits_2(tmp_path: Path, empty_config: Path) -> None:
    result = CliRunner().invoke(app, ["gaps", "-c", str(empty_config)])
    assert result.exit_code == 2
    assert "database not found" in result.output


def test_replay_serve_refuses_an_unknown_venue_with_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "candles_1h_.csv"
    data.write_text("ts,symbol,open,high,low,close,volume\n1704067200000,BTCUSDT,1,1,1,1,1\n")

    result = CliRunner().invoke(app, ["replay", "serve", "--data", str(data), "--venue", "ftx"])

    assert result.exit_code == 2
    assert "--venue: expected one of binance, bybit, coinbase, kraken, okx" in result.output


def test_import_rejects_impossible_rows_counts_them_and_keeps_the_watermark(
    tmp_path: Path,
) -> None:
    hour = 1_709_251_200_000  # 2024-03-01 00:00 UTC, in ms
    rows = [
        (hour, 10, 11, 9, 10.5, 1),  # kept
        (hour + 3_600_000, -1, 11, 9, 10.5, 1),  # negative open
        (hour + 7_200_000, 10, 9, 11, 10.5, 1),  # high < low
        (hour + 10_800_000, "NaN", 11, 9, 10.5, 1),  # NaN
        (hour + 14_400_000, 10, 11, 9, 10.5, -3),  # negative volume
        (hour + 18_000_000 + 60_000, 10, 11, 9, 10.5, 1),  # off the hour
        (4_102_444_800_000, 10, 11, 9, 10.5, 1),  # 2100-01-01: in the future
        ((hour + 21_600_000) // 1000, 10, 11, 9, 10.5, 1),  # seconds: detected, kept
    ]
    data = tmp_path / "binance_spot_1h_test.csv"
    data.write_text(
        "ts,symbol,open,high,low,close,volume\n"
        + "".join(f"{t},BTCUSDT,{o},{h},{lo},{c},{v}\n" for t, o, h, lo, c, v in rows)
    )
    config = tmp_path / "hedgewatch.toml"
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "hw.duckdb"}"\n'
        '[[venues]]\nname = "binance"\nkind = "binance"\n'
        '[[instruments]]\nid = "BTC"\nvenue = "binance"\nsymbol = "BTCUSDT"\n'
    )
    result = CliRunner().invoke(app, ["import", str(data), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "2 candles" in result.output
    for reason in (
        "1 rejected: not closed yet or in the future",
        "1 rejected: off the interval grid",
        "1 rejected: outside low..high",
        "2 rejected: prices not finite and positive",
        "1 rejected: volume negative or not finite",
    ):
        assert reason in result.output
    with Store.open(tmp_path / "hw.duckdb", read_only=True) as store:
        newest = store.con.sql("select max(open_time) from candles").fetchall()[0][0]
    assert newest == datetime(2024, 3, 1, 6, tzinfo=UTC)
