-- The size of each job's module, so that its tasks go only to nodes that compile modules that
-- large, after a restart as before. Jobs from before it was kept have 0: any node.

ALTER TABLE jobs ADD COLUMN module_bytes BIGINT NOT NULL DEFAULT 0;
