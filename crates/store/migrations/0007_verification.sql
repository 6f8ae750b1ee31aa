-- Verification in a pool of strangers' machines: how each task's result was verified (JSON,
-- absent where nothing was checked), and what the pool knows of each node identity's honesty,
-- kept apart from `nodes` because a record outlives the node's sessions and its ban.

ALTER TABLE tasks ADD COLUMN verification TEXT;

CREATE TABLE node_records (
    node_id BIGINT PRIMARY KEY,
    owner BIGINT NOT NULL,
    join_token_hash TEXT NOT NULL,
    verified BIGINT NOT NULL,
    audits_passed BIGINT NOT NULL,
    mismatches BIGINT NOT NULL,
    banned INTEGER NOT NULL
);
