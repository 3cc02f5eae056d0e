-- The metric settings (JSON) the stored metric rows were computed with.
SELECT settings FROM metrics_settings WHERE name = 'metrics';
