-- Whether each job's module is a WASI 0.2 component (1) or a core module (0), so that its tasks
-- go only to nodes that run components, after a restart as before. Jobs from before it was
-- kept ran core modules only.

ALTER TABLE jobs ADD COLUMN component BIGINT NOT NULL DEFAULT 0;
