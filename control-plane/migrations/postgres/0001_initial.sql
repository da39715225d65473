-- The whole schema as of SQLite's version 2 (migrations/sqlite/), in PostgreSQL's types.
CREATE TABLE settings (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE registrations (
  event TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL, ticket_type TEXT NOT NULL,
  created_at BIGINT NOT NULL, PRIMARY KEY (event, email));
CREATE INDEX registrations_email ON registrations (email, created_at);
CREATE TABLE sign_in_codes (
  code_hash TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, next TEXT NOT NULL,
  expires_at BIGINT NOT NULL, used_at BIGINT);
CREATE TABLE pending_registrations (
  code_hash TEXT PRIMARY KEY, event TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL,
  ticket_type TEXT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX pending_registrations_expiry ON pending_registrations (expires_at);
CREATE TABLE access_links (
  code_hash TEXT PRIMARY KEY, room TEXT NOT NULL, email TEXT NOT NULL,
  expires_at BIGINT NOT NULL, used_at BIGINT);
CREATE TABLE labels (
  email TEXT PRIMARY KEY, name TEXT NOT NULL, headline TEXT NOT NULL, image TEXT NOT NULL,
  color TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE chat (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, scope TEXT NOT NULL, at BIGINT NOT NULL,
  name TEXT NOT NULL, email TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX chat_scope ON chat (scope, id);
CREATE TABLE rate_limit_hits (
  scope TEXT NOT NULL, client TEXT NOT NULL, at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX rate_limit_hits_key ON rate_limit_hits (scope, client, at);
CREATE INDEX rate_limit_hits_expiry ON rate_limit_hits (expires_at);
CREATE TABLE relay_ledgers (
  room TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at BIGINT NOT NULL);
