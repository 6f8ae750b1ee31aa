-- Retention: which blobs each job uses (its module, mounts, inputs and results), so that blobs
-- no job uses can be deleted once they have not been stored or used for a while, and an index
-- to find the jobs that ended long ago.

CREATE TABLE job_blobs (
    job_id BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (job_id, hash)
);
CREATE INDEX job_blobs_by_hash ON job_blobs (hash);

-- When the blob was last uploaded or asked for; NULL means at created_at_ms.
ALTER TABLE blobs ADD COLUMN used_at_ms BIGINT;

CREATE INDEX jobs_by_end ON jobs (finished_at_ms);
