-- Who a verified result rests on: every node whose result agreed with it (one, for a result a
-- later audit of its node released). A result is taken back once every one of them is
-- banned: then nothing but liars' word stands behind it, and a trusted accomplice that vouched
-- for a ring's lie does not keep the lie delivered once both are caught. Indexed by node, so a
-- ban finds the results it may undo.

CREATE TABLE task_witnesses (
    job_id BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    node_id BIGINT NOT NULL,
    PRIMARY KEY (job_id, idx, node_id)
);
CREATE INDEX task_witnesses_by_node ON task_witnesses (node_id);
-- Results verified before this version: those a later audit released name their node.
INSERT INTO task_witnesses (job_id, idx, node_id)
    SELECT job_id, idx, vouched_by FROM tasks WHERE vouched_by IS NOT NULL;
