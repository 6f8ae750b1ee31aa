-- The initial schema. One SQL text for SQLite and PostgreSQL: BIGINT ids (64-bit ids cast to
-- signed), TEXT for JSON documents, no engine-specific types.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE requesters (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Bearer tokens by their BLAKE3 hash; the tokens themselves are never stored.
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    requester_id BIGINT,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE TABLE nodes (
    id BIGINT PRIMARY KEY,
    public_key TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    labels TEXT NOT NULL,
    slots INTEGER NOT NULL,
    agent_version TEXT NOT NULL,
    registered_at_ms BIGINT NOT NULL
);

CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    size_bytes BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Who may read a blob: whoever uploaded its bytes, and the requester of a job that produced it.
CREATE TABLE blob_refs (
    hash TEXT NOT NULL,
    requester_id BIGINT NOT NULL,
    PRIMARY KEY (hash, requester_id)
);

CREATE TABLE jobs (
    id BIGINT PRIMARY KEY,
    requester_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    task_count INTEGER NOT NULL,
    state TEXT NOT NULL,
    submitted_seq BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX jobs_by_requester ON jobs (requester_id, submitted_seq);
CREATE INDEX jobs_by_state ON jobs (state);

-- A task's state is pending until it ends; "running" lives in the attempts table.
CREATE TABLE tasks (
    job_id BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    result_attempt_id BIGINT,
    finished_at_ms BIGINT,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE attempts (
    id BIGINT PRIMARY KEY,
    job_id BIGINT NOT NULL,
    task_idx INTEGER NOT NULL,
    node_id BIGINT NOT NULL,
    state TEXT NOT NULL,
    granted_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    outcome TEXT,
    fuel_used BIGINT,
    wall_ms BIGINT,
    memory_peak_bytes BIGINT,
    output_bytes BIGINT,
    stdout TEXT,
    stderr TEXT,
    outputs TEXT
);
CREATE INDEX attempts_by_task ON attempts (job_id, task_idx);
CREATE INDEX attempts_running ON attempts (state) WHERE state = 'running';
