-- What each live attempt's node uploaded for it, with the sizes the coordinator measured. A
-- report may name only these blobs, so that a node cannot turn a hash it merely knows into a
-- result, and so that a report's sizes are the stored ones, not the node's claim. The rows of an
-- attempt go when it ends; job_id lets a purge of ended jobs take any that are left.

CREATE TABLE attempt_uploads (
    attempt_id BIGINT NOT NULL,
    job_id BIGINT NOT NULL,
    hash TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    PRIMARY KEY (attempt_id, hash)
);
CREATE INDEX attempt_uploads_by_job ON attempt_uploads (job_id);
