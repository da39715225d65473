-- Counts that lived in one process's memory: attempts against rate limits, and the joins sent
-- to each relay of a room that its reports have not taken in yet.
CREATE TABLE rate_limit_hits (
  scope TEXT NOT NULL, client TEXT NOT NULL, at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX rate_limit_hits_key ON rate_limit_hits (scope, client, at);
CREATE INDEX rate_limit_hits_expiry ON rate_limit_hits (expires_at);
CREATE TABLE relay_ledgers (
  room TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at INTEGER NOT NULL);
