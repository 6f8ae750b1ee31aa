-- How long the node took to make an attempt's module ready (compiling it, or loading what it
-- compiled before), so requesters see what compiling costs. Attempts from before it was kept
-- have none.

ALTER TABLE attempts ADD COLUMN compile_ms BIGINT;
