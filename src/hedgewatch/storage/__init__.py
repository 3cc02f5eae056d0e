"""Storage: the only room that speaks SQL or imports duckdb — migrations, upserts, views, reads."""
