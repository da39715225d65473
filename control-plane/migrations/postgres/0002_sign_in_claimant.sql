-- The browser that used a sign-in code (the SHA-256 of its claim cookie), so that browser can
-- be answered again when the replica that committed its sign-in died before answering.
ALTER TABLE sign_in_codes ADD COLUMN claimant TEXT;
