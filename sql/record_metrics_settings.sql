-- Record the metric settings (JSON) the stored metric rows were computed with.
DELETE FROM metrics_settings WHERE name = 'metrics';
INSERT INTO metrics_settings VALUES ('metrics', $settings, now());
