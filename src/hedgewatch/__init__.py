"""hedgewatch: watches crypto hedges and the market around them, hourly.

The installed namespace. The repository's `flows/`, `transforms/`, `alerts/` and `sql/` folders are
installed inside it as `hedgewatch.flows`, `hedgewatch.transforms`, `hedgewatch.alerts` and the
`hedgewatch/sql` resources; the shell's own rooms live here beside them (see the README's
Architecture section).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hedgewatch")
except PackageNotFoundError:  # pragma: no cover - only when run from an unbuilt tree
    __version__ = "0+unknown"
