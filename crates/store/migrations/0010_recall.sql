-- Results taken back after a ban. A result released by a later audit of its node rests on that
-- node's word alone: `vouched_by` names the node, so that when it is banned the result is found
-- and its task runs again. A task run again names the banned node in `recalled_from`, counts
-- how often its result was taken back in `recalls`, and its attempts from before
-- `recalled_at_ms` no longer count against its max attempts.

ALTER TABLE tasks ADD COLUMN vouched_by BIGINT;
ALTER TABLE tasks ADD COLUMN recalled_from BIGINT;
ALTER TABLE tasks ADD COLUMN recalled_at_ms BIGINT;
ALTER TABLE tasks ADD COLUMN recalls INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tasks_vouched_by ON tasks (vouched_by) WHERE vouched_by IS NOT NULL;
