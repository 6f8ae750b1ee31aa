-- In a job that verifies, who is behind a task's latest checkpoint: the witnesses (owners in a
-- public pool, nodes in a family pool) of every node that saved it or one it descends from, as
-- a JSON array of numbers, NULL when none. A result that resumed from it counts as theirs too,
-- so it must outlive a restart of the coordinator.

ALTER TABLE tasks ADD COLUMN checkpoint_makers TEXT;
