-- What each job's module needs of a node, so that its tasks go only to nodes that run it, after
-- a restart as before: whether it is a WASI 0.2 component (1) or a core module (0), and the
-- WebAssembly proposals it uses (a JSON array of names). Jobs from before they were kept ran
-- core modules, which any node took.

ALTER TABLE jobs ADD COLUMN component BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN wasm_features TEXT NOT NULL DEFAULT '[]';
