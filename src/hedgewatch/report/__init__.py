"""The HTML report: one self-contained page of hedges, baskets and alerts, readable offline."""
