-- Set cursor $name to $value (UTC), replacing it (no upsert: DuckLake has no keys).
DELETE FROM cursors WHERE name = $name;
INSERT INTO cursors VALUES ($name, $value);
