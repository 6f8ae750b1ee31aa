-- Intermediates kept on nodes (a pipeline with locality = nodes): outputs of a task's result
-- that no blob store holds, only nodes. Their holders are not written: a coordinator that
-- starts again knows none, counts each such blob lost and runs its task again.

CREATE TABLE kept_blobs (
    hash TEXT NOT NULL,
    pipeline_id BIGINT NOT NULL,
    job_id BIGINT NOT NULL,
    task_idx INTEGER NOT NULL,
    size_bytes BIGINT NOT NULL,
    copies INTEGER NOT NULL,
    PRIMARY KEY (job_id, task_idx, hash)
);
CREATE INDEX kept_blobs_by_pipeline ON kept_blobs (pipeline_id);
