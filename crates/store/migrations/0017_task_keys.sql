-- Resume for free: each task's key (the hash of everything its result depends on; see
-- `wire::key`), so a task whose key already has a good result of the same requester takes it
-- instead of running, and where such a task took its result from. A result taken over this
-- way is an attempt row of its own in state 'reused', with the original's result copied and
-- its node named, so the task keeps its result when the original's job is purged; it counts
-- neither as an attempt nor toward a node's share.

ALTER TABLE tasks ADD COLUMN task_key TEXT;
ALTER TABLE tasks ADD COLUMN reused_job_id BIGINT;
ALTER TABLE tasks ADD COLUMN reused_idx INTEGER;
CREATE INDEX tasks_by_key ON tasks (task_key);
