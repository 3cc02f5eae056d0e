from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgewatch.transforms.hedgelab import (
    CostModel,
    FeeSchedule,
    HedgeBook,
    LegCosts,
    LegSeries,
    Policy,
    Position,
    Scenario,
    Shock,
    book_variance,
    impact_fraction,
    max_drawdown,
    min_var_ratio,
    moments,
    policy_metrics,
    rebalance_advice,
    replay,
    run_policies,
    shock_returns,
    simple_returns,
)
from hedgewatch.transforms.hedgelab.reference import reference_run
from hedgewatch.transforms.hedgelab.scenarios import shocked_correlation


def costs(taker_bps: float = 10.0, impact: float = 0.0, perp: bool = False, vol_hours: int = 24):
    return CostModel(
        hedge=LegCosts(FeeSchedule(maker_bps=2.0, taker_bps=taker_bps), perp=perp),
        base=LegCosts(FeeSchedule(maker_bps=2.0, taker_bps=taker_bps)),
        impact_coefficient=impact,
        vol_hours=vol_hours,
    )


def leg(close, volume=None, funding=None) -> LegSeries:
    close = np.asarray(close, dtype=float)
    volume = np.full(len(close), 1e6) if volume is None else np.asarray(volume, dtype=float)
    return LegSeries(close, volume, None if funding is None else np.asarray(funding, dtype=float))


# ---------------------------------------------------------------- hand-computed cases


def test_static_hedge_pnl_fees_and_ratio_by_hand() -> None:
    # Long 1 unit of base at 100, short the hedge at half the notional: 1 unit at 50.
    book = HedgeBook("h", base_side=1, hedge_side=-1, base_units=1.0, held_ratio=0.5)
    base, hedge = leg([100, 110, 99, 99]), leg([50, 52, 49, 50])
    (sim,) = run_policies(book, base, hedge, costs(taker_bps=10), [Policy("static")])
    assert sim.trades.hour.tolist() == [0]
    assert sim.trades.units.tolist() == pytest.approx([1.0])
    assert sim.trades.fee.tolist() == pytest.approx([0.05])  # 1 unit * 50 * 10 bps
    assert sim.hedged_pnl.tolist() == pytest.approx([-0.05, 10 - 2, -11 + 3, 0 - 1])
    assert sim.unhedged_pnl.tolist() == pytest.approx([0, 10, -11, 0])
    assert sim.ratio.tolist() == pytest.approx([0.5, 52 / 110, 49 / 99, 50 / 99])
    m = policy_metrics(sim)
    assert m.trades == 1 and m.fees == pytest.approx(0.05) and m.cost == pytest.approx(0.05)
    assert m.pnl_hedged == pytest.approx(-1.05) and m.pnl_unhedged == pytest.approx(-1.0)
    assert m.turnover == pytest.approx(50 / 100)
    assert m.max_drawdown == pytest.approx(9.0)  # peak 7.95 after hour 1, trough -1.05
    expected = 1 - np.var([8, -8, -1], ddof=1) / np.var([10, -11, 0], ddof=1)
    assert m.effectiveness == pytest.approx(expected)
    assert m.eff_per_cost_bp == pytest.approx(expected / (0.05 / 100 * 1e4))


def test_funding_on_a_short_perp_hedge_is_received_when_the_rate_is_positive() -> None:
    book = HedgeBook("h", base_side=1, hedge_side=-1, base_units=1.0, held_ratio=0.5)
    funding = [0, 0, 0.001, 0]
    (sim,) = run_policies(
        book,
        leg([100, 110, 99, 99]),
        leg([50, 52, 49, 50], funding=funding),
        costs(taker_bps=0, perp=True),
        [Policy("static")],
    )
    # Short 1 unit at 49 receives 0.1 % of 49 at hour 2's settlement.
    assert sim.funding.tolist() == pytest.approx([0, 0, -0.049, 0])
    assert sim.hedged_pnl[2] == pytest.approx(-8 + 0.049)
    assert policy_metrics(sim).funding == pytest.approx(-0.049)


def test_square_root_impact_by_hand() -> None:
    # 2 % hourly vol, a trade of 1 % of the hour's volume: Y * 0.02 * 0.1 of the notional.
    assert float(impact_fraction(1_000.0, 100_000.0, 0.02, 1.0)) == pytest.approx(0.002)
    assert float(impact_fraction(1_000.0, 100_000.0, 0.02, 0.5)) == pytest.approx(0.001)
    # No volume (halted market): the share is capped at 1.
    assert float(impact_fraction(1_000.0, 0.0, 0.02, 1.0)) == pytest.approx(0.02)
    assert float(impact_fraction(0.0, 0.0, 0.02, 1.0)) == 0.0


def test_cadence_trades_to_the_min_variance_ratio_and_charges_impact() -> None:
    rng = np.random.default_rng(3)
    rh = rng.normal(0, 0.01, 60)
    rb = 1.5 * rh + rng.normal(0, 0.002, 60)  # base moves 1.5x the hedge
    base = leg(100 * np.cumprod(1 + rb), volume=np.full(60, 5_000.0))
    hedge = leg(50 * np.cumprod(1 + rh), volume=np.full(60, 5_000.0))
    book = HedgeBook("h", 1, -1, base_units=10.0, held_ratio=1.0)
    policy = Policy("cadence", window_hours=24, cadence_hours=12, min_coverage=0.5)
    (sim,) = run_policies(book, base, hedge, costs(taker_bps=5, impact=1.0, vol_hours=12), [policy])
    assert sim.trades.hour.tolist() == [0, 12, 24, 36, 48]
    # After the opening trade each trade sets the ratio to the target known at that close.
    for t in sim.trades.hour[1:]:
        assert sim.ratio[t] == pytest.approx(sim.target[t])
        assert sim.target[t] == pytest.approx(1.5, abs=0.1)
    t = int(sim.trades.hour[1])
    notional = float(sim.trades.notional[1])
    window = simple_returns(hedge.close)[t - 11 : t + 1]
    expected = notional * np.std(window, ddof=1) * math.sqrt(notional / 5_000.0)
    assert sim.trades.slippage[1] == pytest.approx(expected)
    assert sim.trades.fee[1] == pytest.approx(notional * 5e-4)


def test_band_trades_only_when_the_ratio_leaves_the_band() -> None:
    # The hedge leg doubles while the base stays: the held ratio doubles too.
    n = 40
    hedge_close = np.full(n, 10.0)
    hedge_close[30:] = 20.0
    rng = np.random.default_rng(0)
    wiggle = rng.normal(0, 1e-3, n)
    base_close = 100 * np.cumprod(1 - wiggle)
    hedge_close = hedge_close * np.cumprod(1 + wiggle)
    book = HedgeBook("h", 1, 1, base_units=1.0, held_ratio=1.0)
    policy = Policy("band", window_hours=20, band=0.25, min_gap_hours=3, min_coverage=0.5)
    (sim,) = run_policies(book, leg(base_close), leg(hedge_close), costs(), [policy])
    assert sim.trades.hour[0] == 0
    later = sim.trades.hour[1:].tolist()
    assert 30 in later  # the jump doubles the held ratio: out of any 25 % band
    # Each later trade lands on the target, from a held ratio that had left the band.
    for t in later:
        assert sim.ratio[t] == pytest.approx(sim.target[t])
        held = (
            sim.ratio[t - 1]
            * (hedge_close[t] / hedge_close[t - 1])
            / (base_close[t] / base_close[t - 1])
        )
        assert abs(held - sim.target[t]) > 0.25 * sim.target[t]
    assert np.all(np.diff(sim.trades.hour) >= policy.min_gap_hours)
    # Between trades (out of each trade's gap) the held ratio stayed within the band.
    after_gap = np.concatenate(
        [np.arange(t + policy.min_gap_hours, n) for t in sim.trades.hour[-1:]]
    )
    quiet = np.setdiff1d(after_gap, sim.trades.hour)
    checked = quiet[np.isfinite(sim.target[quiet])]
    gap = np.abs(sim.ratio[checked] - sim.target[checked])
    assert np.all(gap <= 0.25 * sim.target[checked] + 1e-12)


def test_min_var_ratio_matches_least_squares() -> None:
    rng = np.random.default_rng(7)
    rh = rng.normal(0, 0.01, 500)
    rb = 0.7 * rh + rng.normal(0, 0.005, 500)
    rb[rng.random(500) < 0.05] = np.nan
    rh[rng.random(500) < 0.05] = np.nan
    k = min_var_ratio(rb, rh, sign=-1, window_hours=100, min_obs=60)
    for t in (99, 250, 499):
        x, y = rh[t - 99 : t + 1], rb[t - 99 : t + 1]
        ok = np.isfinite(x) & np.isfinite(y)
        design = np.column_stack((np.ones(ok.sum()), x[ok]))
        slope = np.linalg.lstsq(design, y[ok], rcond=None)[0][1]
        assert k[t] == pytest.approx(slope, rel=1e-9)
    # A hedge held long (same sign as the base) on a positive beta would have to flip: 0.
    assert np.nanmax(min_var_ratio(rb, rh, sign=1, window_hours=100, min_obs=60)) == 0.0
    assert np.isnan(k[:59]).all()


def test_max_drawdown_by_hand() -> None:
    assert max_drawdown(np.array([1.0, 2.0, -4.0, 1.0, -3.0])) == pytest.approx(6.0)
    assert max_drawdown(np.array([-1.0, 0.5])) == pytest.approx(1.0)
    assert max_drawdown(np.array([1.0, 1.0])) == 0.0


# ---------------------------------------------------------------- the slow reference loop


@st.composite
def markets(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(min_value=5, max_value=120))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    beta = draw(st.floats(-3.0, 3.0))
    rh = rng.normal(0, 0.02, n)
    rb = beta * rh + rng.normal(0, 0.01, n)
    base = 100 * np.cumprod(1 + rb)
    hedge = 20 * np.cumprod(1 + rh)
    gap = draw(st.floats(0.0, 0.3))
    base[rng.random(n) < gap] = np.nan
    hedge[rng.random(n) < gap] = np.nan
    base[0] = hedge[0] = np.nan  # a leading hour without both legs
    base[1], hedge[1] = 100.0, 20.0
    if not (np.isfinite(base[-1]) and np.isfinite(hedge[-1])):
        base[-1], hedge[-1] = 100.0, 20.0  # so a late start still has an hour to open on
    volume = rng.uniform(0, 5_000, n)
    volume[rng.random(n) < 0.1] = 0.0
    funding = np.where(rng.random(n) < 0.2, rng.normal(0, 1e-3, n), np.nan)
    return leg(base, volume), leg(hedge, volume[::-1].copy(), funding)


@settings(max_examples=60, deadline=None)
@given(
    markets(),
    st.sampled_from(["static", "cadence", "band"]),
    st.integers(2, 30),
    st.integers(1, 12),
    st.floats(0.0, 0.5),
    st.integers(1, 10),
    st.sampled_from([1, -1]),
    st.floats(0.0, 2.0),
    st.integers(0, 40),
)
def test_simulator_matches_the_reference_loop(
    legs, kind, window, cadence, band, gap, hedge_side, held, start
) -> None:  # type: ignore[no-untyped-def]
    base, hedge = legs
    book = HedgeBook("h", 1, hedge_side, base_units=3.0, held_ratio=held)
    policy = Policy(
        kind,
        window_hours=window,
        cadence_hours=cadence,
        band=band,
        min_gap_hours=gap,
        min_coverage=0.6,
    )
    model = costs(taker_bps=7.5, impact=0.8, perp=True, vol_hours=6)
    start = min(start, len(base.close) - 4)
    (sim,) = run_policies(book, base, hedge, model, [policy], start_at=start)
    ref = reference_run(book, base, hedge, model, policy, start_at=start)
    assert sim.trades.hour.tolist() == ref["trade_hours"]
    # A trade's size is the change of the target ratio, so its fee and slippage carry the
    # target's rounding (a 2-hour beta is ill-conditioned: 3e-8 relative was seen on a fee).
    np.testing.assert_allclose(sim.trades.fee, ref["fees"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(sim.trades.slippage, ref["slippage"], rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(sim.hedged_pnl, ref["hedged"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sim.unhedged_pnl, ref["unhedged"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sim.ratio, ref["ratio"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sim.target, ref["target"], rtol=1e-6, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(markets(), st.sampled_from(["static", "cadence", "band"]))
def test_pnl_adds_up_to_the_legs_minus_costs(legs, kind) -> None:  # type: ignore[no-untyped-def]
    base, hedge = legs
    book = HedgeBook("h", 1, -1, base_units=2.0, held_ratio=0.8)
    (sim,) = run_policies(book, base, hedge, costs(impact=1.0, perp=True), [Policy(kind)])
    m = policy_metrics(sim)
    assert m.fees >= 0 and m.slippage >= 0
    leg_pnl = m.pnl_hedged - m.pnl_unhedged
    hedge_moves = float(
        np.sum(sim.hedged_pnl - sim.unhedged_pnl + sim.trade_cost + sim.hedge_funding)
    )
    assert leg_pnl == pytest.approx(
        hedge_moves - m.fees - m.slippage - float(sim.hedge_funding.sum()), abs=1e-9
    )
    assert m.trades == len(sim.trades.hour)


@settings(max_examples=30, deadline=None)
@given(markets())
def test_a_zero_hedge_is_the_unhedged_book(legs) -> None:  # type: ignore[no-untyped-def]
    base, hedge = legs
    book = HedgeBook("h", 1, -1, base_units=1.0, held_ratio=0.0)
    (sim,) = run_policies(book, base, hedge, costs(impact=1.0, perp=True), [Policy("static")])
    assert len(sim.trades.hour) == 0
    np.testing.assert_array_equal(sim.hedged_pnl, sim.unhedged_pnl)


def test_policies_validate_their_parameters() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        Policy("weekly")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="band"):
        Policy("band", band=-0.1)
    with pytest.raises(ValueError, match="base_units"):
        HedgeBook("h", 1, -1, base_units=0.0, held_ratio=1.0)
    with pytest.raises(ValueError, match="no hour"):
        run_policies(
            HedgeBook("h", 1, -1, 1.0, 1.0),
            leg([1.0, np.nan]),
            leg([np.nan, 1.0]),
            costs(),
            [Policy("static")],
        )


# ---------------------------------------------------------------- stress scenarios


def test_replay_holds_the_units_through_the_window_by_hand() -> None:
    pos = Position("h", 1, -1, base_units=2.0, hedge_units=1.0, base_price=100, hedge_price=100)
    res = replay(pos, np.array([0.10, -0.20]), np.array([0.05, -0.10]), "w")
    # base notional 200 -> 220 -> 176; hedge (short) 100 -> 105 -> 94.5
    assert res.path.tolist() == pytest.approx([20 - 5, (20 - 5) + (-44 + 10.5)])
    assert res.unhedged_path.tolist() == pytest.approx([20, -24])
    assert res.loss == pytest.approx(18.5) and res.unhedged_loss == pytest.approx(24)
    assert res.ratio_start == pytest.approx(0.5)
    assert res.ratio_end == pytest.approx(94.5 / 176)
    assert res.effectiveness == pytest.approx(
        1 - np.var([15, -33.5], ddof=1) / np.var([20, -44], ddof=1)
    )


def test_shock_without_change_returns_the_window() -> None:
    rng = np.random.default_rng(1)
    rb, rh = rng.normal(0, 0.01, 50), rng.normal(0, 0.02, 50)
    sb, sh = shock_returns(rb, rh, Shock())
    np.testing.assert_allclose(sb, rb, atol=1e-14)
    np.testing.assert_allclose(sh, rh, atol=1e-14)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(-3, 3), st.floats(0.2, 5.0), st.floats(-0.9, 0.9))
def test_shock_sets_the_fisher_z_correlation_and_scales_the_vols(seed, shift, k, rho) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    z = rng.standard_t(4, size=(80, 2))
    rb = 0.01 * z[:, 0]
    rh = 0.02 * (rho * z[:, 0] + math.sqrt(1 - rho * rho) * z[:, 1])
    sb, sh = shock_returns(rb, rh, Shock(corr_shift=shift, vol_mult=k))
    before = np.corrcoef(rb, rh)[0, 1]
    after = np.corrcoef(sb, sh)[0, 1]
    assert after == pytest.approx(math.tanh(math.atanh(before) + shift), abs=1e-7)
    assert np.std(sb, ddof=1) == pytest.approx(k * np.std(rb, ddof=1), rel=1e-9)
    assert np.std(sh, ddof=1) == pytest.approx(k * np.std(rh, ddof=1), rel=1e-9)
    assert np.mean(sb) == pytest.approx(np.mean(rb), abs=1e-12)
    if shift > 0:
        assert after >= before - 1e-12


def test_shocked_correlation_moves_toward_one_on_the_z_scale() -> None:
    assert shocked_correlation(0.0, math.atanh(0.5)) == pytest.approx(0.5)
    assert shocked_correlation(-0.9, 0.0) == pytest.approx(-0.9)
    assert shocked_correlation(0.99, 10.0) < 1.0


def test_scenario_needs_aware_ordered_times() -> None:
    with pytest.raises(ValueError, match="after start"):
        Scenario("x", datetime(2022, 5, 9, tzinfo=UTC), datetime(2022, 5, 8, tzinfo=UTC))
    with pytest.raises(ValueError, match="time-zone"):
        Scenario("x", datetime(2022, 5, 7), datetime(2022, 5, 8, tzinfo=UTC))


# ---------------------------------------------------------------- rebalance advice


def test_rebalance_advice_by_hand() -> None:
    # Long 1 BTC at 100, short 0.5 of a perp at 100: ratio 0.5; the min-variance ratio is 0.8.
    pos = Position("h", 1, -1, base_units=1.0, hedge_units=0.5, base_price=100, hedge_price=100)
    m = moments(np.array([0.01, -0.02, 0.03, 0.0]), np.array([0.012, -0.024, 0.03, 0.002]))
    leg_costs = LegCosts(FeeSchedule(maker_bps=2, taker_bps=5), perp=True)
    advice = rebalance_advice(
        pos,
        0.8,
        m,
        leg_costs,
        impact_coefficient=1.0,
        quote_volume=3_000.0,
        sigma=0.01,
        next_funding_rate=0.0001,
    )
    assert advice is not None
    assert advice.side == "sell"  # grow a short hedge
    assert advice.units == pytest.approx(0.3) and advice.notional == pytest.approx(30)
    assert advice.fee == pytest.approx(30 * 5e-4)
    assert advice.slippage == pytest.approx(30 * 0.01 * math.sqrt(30 / 3_000))
    assert advice.funding == pytest.approx(-0.3 * 100 * 0.0001)  # a short receives
    assert advice.cost == pytest.approx(advice.fee + advice.slippage + advice.funding)
    hourly = lambda nh: 100**2 * m.var_base + nh**2 * m.var_hedge - 2 * 100 * nh * m.cov  # noqa: E731
    assert advice.variance_before == pytest.approx(24 * hourly(50))
    assert advice.variance_after == pytest.approx(24 * hourly(80))
    assert advice.variance_removed == pytest.approx(24 * (hourly(50) - hourly(80)))
    assert book_variance(pos, 0.5, m) == pytest.approx(hourly(50))
    # Shrinking a long hedge sells; growing it buys.
    long_pos = Position("h", 1, 1, 1.0, 0.5, 100, 100)
    assert (
        rebalance_advice(
            long_pos, 0.2, m, leg_costs, impact_coefficient=0, quote_volume=1, sigma=0
        ).side
        == "sell"
    )  # type: ignore[union-attr]
    assert (
        rebalance_advice(
            long_pos, 0.9, m, leg_costs, impact_coefficient=0, quote_volume=1, sigma=0
        ).side
        == "buy"
    )  # type: ignore[union-attr]
    assert (
        rebalance_advice(pos, 0.5, m, leg_costs, impact_coefficient=0, quote_volume=1, sigma=0)
        is None
    )


def test_min_variance_advice_removes_variance() -> None:
    rng = np.random.default_rng(5)
    rh = rng.normal(0, 0.01, 300)
    rb = 1.2 * rh + rng.normal(0, 0.004, 300)
    m = moments(rb, rh)
    target = m.cov / m.var_hedge  # short hedge: k = beta
    pos = Position("h", 1, -1, 1.0, 0.3, 100, 100)
    advice = rebalance_advice(
        pos, target, m, LegCosts(FeeSchedule(0, 0)), impact_coefficient=0, quote_volume=1, sigma=0
    )
    assert advice is not None and advice.variance_removed > 0
    for other in (0.0, 0.5 * target, 1.5 * target):
        assert book_variance(pos, other * 100 / 100, m) >= advice.variance_after / 24 - 1e-12
