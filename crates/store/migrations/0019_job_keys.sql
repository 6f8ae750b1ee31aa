-- A private job's key wrapped to every node that may run it, once its requester granted it to
-- more nodes than it was submitted with (JSON: node id -> wrapped key); NULL until then.

ALTER TABLE jobs ADD COLUMN keys_granted TEXT;
