-- Record run $run_id as running (a retried run replaces its own row).
DELETE FROM runs WHERE run_id = $run_id;
INSERT INTO runs VALUES ($run_id, $started_at, NULL, $as_of, 'running', NULL);
