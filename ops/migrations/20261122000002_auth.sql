-- Credentials and JWT signing keys. Not read models: never rebuilt from the stream (the
-- stream holds no secret, no password hash; it records key ids and logins only).

CREATE TABLE credentials (
    user_id        uuid PRIMARY KEY,
    email          text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jwt_keys (
    kid         text PRIMARY KEY,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- Tokens ended by `logout` before their expiry.
CREATE TABLE revoked_tokens (
    jti         uuid PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
