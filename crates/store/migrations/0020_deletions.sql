-- Jobs deleted for good: which nodes were asked to drop their cached copies and which have
-- confirmed. One JSON body per deletion (`DeletionRow`), written again as nodes confirm. Its
-- blob list is bounded (`wire::deletion::FORGET_BLOBS_MAX`; past it, nodes drop their whole
-- cache), and so is the number of rows kept.

CREATE TABLE deletions (
    job_id BIGINT PRIMARY KEY,
    requester_id BIGINT NOT NULL,
    deleted_at_ms BIGINT NOT NULL,
    body TEXT NOT NULL
);
