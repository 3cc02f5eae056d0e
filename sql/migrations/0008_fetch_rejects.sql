-- Rows refused at the edge (bad prices, off the grid, not closed, seconds read as ms) are
-- counted per fetched series; `note` says why, and flags a venue clock that is off ours.
ALTER TABLE fetch_log ADD COLUMN rejected INTEGER DEFAULT 0;
ALTER TABLE fetch_log ADD COLUMN note VARCHAR;
