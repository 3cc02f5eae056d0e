"""Alerts: pure rules and state machine, and rendering (jinja2) — no I/O here."""
