-- Which coordinator leads the database: one row, held by the coordinator at `epoch` (the
-- fence of `meta`) until `expires_ms` by the database's own clock. The leader renews it well
-- inside its term; a standby takes it only once it has run out, raising the epoch with it.

CREATE TABLE leadership (
    id INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
