-- Each task's latest checkpoint (a JSON wire::CheckpointRef, NULL before the first) and the
-- wall time its attempts lost since their last checkpoints. The checkpoint's hash is kept apart
-- and indexed: retention keeps a blob that any task names as its latest, and only the latest,
-- so a task holds one checkpoint in the blob store however many it saved.

ALTER TABLE tasks ADD COLUMN checkpoint TEXT;
ALTER TABLE tasks ADD COLUMN checkpoint_hash TEXT;
ALTER TABLE tasks ADD COLUMN checkpoints_lost_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tasks_by_checkpoint ON tasks (checkpoint_hash);
