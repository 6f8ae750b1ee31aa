-- Which join token (its hash) each node registered with, so that the nodes one join token
-- brings can be bounded; NULL for nodes registered before it was recorded.
ALTER TABLE nodes ADD COLUMN join_token_hash TEXT;

-- When the node was last heard from, written now and then so that nodes silent for a long time
-- can be purged across restarts; NULL means at registered_at_ms.
ALTER TABLE nodes ADD COLUMN seen_at_ms BIGINT;
