-- The last `covenant projections verify` of each projection: where it compared and how many
-- rows differed. The monitor exports it as covenant_projection_divergence{projection}.
CREATE TABLE projection_verifications (
    projection   text PRIMARY KEY,
    checkpoint   bigint NOT NULL,
    differing    bigint NOT NULL,
    verified_at  timestamptz NOT NULL
);
