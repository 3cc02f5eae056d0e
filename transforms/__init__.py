"""Pure metrics core: hourly log returns, rolling correlation, hedge and basket-stress metrics.

Frames in, frames out: no I/O, no clock, no environment. Timestamps are UTC open times.
"""

from hedgewatch.transforms.correlation import (
    history_start,
    rolling_correlation,
    rolling_correlation_pairs,
)
from hedgewatch.transforms.hedges import HedgeSpec, hedge_metrics
from hedgewatch.transforms.returns import to_log_returns, to_wide
from hedgewatch.transforms.significance import (
    fisher_ci,
    fisher_ci_exprs,
    fisher_z_test,
    fisher_z_test_expr,
)
from hedgewatch.transforms.stress import BasketSpec, basket_metrics

__all__ = [
    "BasketSpec",
    "HedgeSpec",
    "basket_metrics",
    "fisher_ci",
    "fisher_ci_exprs",
    "fisher_z_test",
    "fisher_z_test_expr",
    "hedge_metrics",
    "history_start",
    "rolling_correlation",
    "rolling_correlation_pairs",
    "to_log_returns",
    "to_wide",
]
