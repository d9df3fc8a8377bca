-- callbridge store: post-call exports run where the call's recording is. Identical on both
-- backends; keep the sqlite and postgres copies in step.

-- The node that recorded the call (its `recordings_dir` holds the file) when the call has a
-- recording: only that node claims the job while its heartbeat (bridge_nodes) is fresh; once it
-- is stale, any node may (the recording is then reported missing). NULL: any node.
ALTER TABLE call_exports ADD COLUMN node_id TEXT;
