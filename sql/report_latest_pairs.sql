-- The newest correlation of every pair and window.
SELECT a, b, window_hours, open_time, corr, n_obs FROM latest_correlations;
