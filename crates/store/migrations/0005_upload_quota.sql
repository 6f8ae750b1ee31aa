-- Storage quotas: which of the blobs a requester may read it uploaded itself, as opposed to the
-- results of its jobs. The bytes of its uploads that are still stored count against its quota.
-- Rows from before this column existed count as results: their uploads are not known.

ALTER TABLE blob_refs ADD COLUMN uploaded BIGINT NOT NULL DEFAULT 0;
CREATE INDEX blob_refs_by_uploader ON blob_refs (requester_id, uploaded);
