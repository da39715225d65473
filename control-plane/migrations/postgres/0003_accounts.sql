-- Host accounts: the profile, the URL slug chosen once (a trigger refuses any change to it),
-- the avatar as re-encoded PNG, rooms made on the dashboard (local mode; in a cluster they
-- are Room resources), OpenID Connect sign-ins in flight, and the audit of deleted accounts.
CREATE TABLE accounts (
  email TEXT PRIMARY KEY, slug TEXT UNIQUE, use_case TEXT NOT NULL DEFAULT '',
  display_name TEXT NOT NULL DEFAULT '', headline TEXT NOT NULL DEFAULT '',
  color TEXT NOT NULL DEFAULT '', notifications BOOLEAN NOT NULL DEFAULT FALSE,
  avatar BYTEA, avatar_version BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL, onboarded_at BIGINT);
CREATE FUNCTION accounts_slug_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.slug IS NOT NULL AND NEW.slug IS DISTINCT FROM OLD.slug THEN
    RAISE EXCEPTION 'an account''s slug cannot change';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER accounts_slug_fixed BEFORE UPDATE ON accounts
  FOR EACH ROW EXECUTE FUNCTION accounts_slug_fixed();
CREATE TABLE dashboard_rooms (
  host TEXT NOT NULL, slug TEXT NOT NULL, owner TEXT NOT NULL, spec TEXT NOT NULL,
  passcode TEXT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  PRIMARY KEY (host, slug));
CREATE INDEX dashboard_rooms_owner ON dashboard_rooms (owner);
CREATE TABLE oidc_states (
  state_hash TEXT PRIMARY KEY, browser TEXT NOT NULL, nonce TEXT NOT NULL,
  verifier TEXT NOT NULL, next TEXT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT);
CREATE INDEX oidc_states_expiry ON oidc_states (expires_at);
CREATE TABLE account_deletions (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email TEXT NOT NULL, slug TEXT NOT NULL,
  deleted_at BIGINT NOT NULL, removed TEXT NOT NULL);
CREATE INDEX account_deletions_slug ON account_deletions (slug);
