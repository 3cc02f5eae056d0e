"""Prefect flows only: the hourly run, backfill, the schedule and its runtime settings."""
