"""The outbox: queue, claim, deliver and mark notifications; channels; the failure fallback."""
