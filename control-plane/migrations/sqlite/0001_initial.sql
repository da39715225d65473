-- The schema from before versioned migrations: IF NOT EXISTS, so a database made by an older
-- control plane is adopted as version 1 unchanged.
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (
  event TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL, ticket_type TEXT NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (event, email));
CREATE TABLE IF NOT EXISTS sign_in_codes (
  code_hash TEXT PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, next TEXT NOT NULL,
  expires_at INTEGER NOT NULL, used_at INTEGER);
CREATE TABLE IF NOT EXISTS pending_registrations (
  code_hash TEXT PRIMARY KEY, event TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL,
  ticket_type TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS access_links (
  code_hash TEXT PRIMARY KEY, room TEXT NOT NULL, email TEXT NOT NULL,
  expires_at INTEGER NOT NULL, used_at INTEGER);
CREATE TABLE IF NOT EXISTS labels (
  email TEXT PRIMARY KEY, name TEXT NOT NULL, headline TEXT NOT NULL, image TEXT NOT NULL,
  color TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chat (
  id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, at INTEGER NOT NULL,
  name TEXT NOT NULL, email TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chat_scope ON chat (scope, id);
