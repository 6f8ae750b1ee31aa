-- Federation. `federation_peers`: the pools this one lends its idle slots to, each with the
-- `ccf_` token that pool's owner made (the one secret the database holds: this pool's
-- credential there) and the requester account its tasks are paid from here.
-- `attempts.ran_on`: for an attempt run by another pool, that pool and its node.

CREATE TABLE federation_peers (
    id BIGINT PRIMARY KEY,
    url TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    requester_id BIGINT NOT NULL,
    added_at_ms BIGINT NOT NULL
);

ALTER TABLE attempts ADD COLUMN ran_on TEXT;
