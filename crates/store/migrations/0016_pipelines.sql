-- Pipelines: stages, each a job, joined by their outputs. The whole pipeline is one JSON body
-- (at most 16 stages, each waiting stage holding its job's submission until it starts), written
-- again whenever a stage starts or is given up; the stages' jobs are rows of `jobs` as any job.
-- A waiting stage names its blobs in `job_blobs` under the id its job will have.

CREATE TABLE pipelines (
    id BIGINT PRIMARY KEY,
    requester_id BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    body TEXT NOT NULL
);
CREATE INDEX pipelines_by_requester ON pipelines (requester_id);
