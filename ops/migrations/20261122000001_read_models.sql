-- Covenant read models. Everything here is derived from the COVENANT_EVENTS stream and can
-- be dropped and rebuilt (`covenant projections rebuild NAME`). No foreign keys between
-- read-model tables, so a projection's tables can be swapped as a set.

CREATE TABLE projection_checkpoints (
    name        text PRIMARY KEY,
    seq         bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Events a projection could not apply (unknown type, unparsable payload): skipped, never silently.
CREATE TABLE projection_skipped_events (
    projection  text NOT NULL,
    seq         bigint NOT NULL,
    subject     text NOT NULL,
    event_type  text NOT NULL,
    reason      text NOT NULL,
    skipped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, seq)
);

-- ledger projection -----------------------------------------------------------------------

CREATE TABLE countries (
    code           text PRIMARY KEY,
    name           text NOT NULL,
    gdp_usd        bigint NOT NULL,
    version        bigint NOT NULL,
    last_seq       bigint NOT NULL,
    registered_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE TABLE country_gdp_history (
    code         text NOT NULL,
    version      bigint NOT NULL,
    seq          bigint NOT NULL,
    gdp_usd      bigint NOT NULL,
    delta_bp     bigint,
    occurred_at  timestamptz NOT NULL,
    PRIMARY KEY (code, version)
);

CREATE TABLE projects (
    id            uuid PRIMARY KEY,
    country_code  text NOT NULL,
    name          text NOT NULL,
    budget_usd    bigint NOT NULL,
    status        text NOT NULL,
    version       bigint NOT NULL,
    last_seq      bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);
CREATE INDEX projects_by_country_status ON projects (country_code, status, id) WHERE deleted_at IS NULL;
CREATE INDEX projects_by_status ON projects (status, id) WHERE deleted_at IS NULL;

CREATE TABLE users (
    id              uuid PRIMARY KEY,
    email           text NOT NULL,
    role            text NOT NULL,
    version         bigint NOT NULL,
    last_seq        bigint NOT NULL,
    registered_at   timestamptz NOT NULL,
    last_login_at   timestamptz,
    last_login_ip   text,
    last_logout_at  timestamptz
);
CREATE INDEX users_by_email ON users (email);

-- The covenant fund: one row, maintained incrementally.
CREATE TABLE covenant_fund (
    id          smallint PRIMARY KEY CHECK (id = 1),
    total_usd   bigint NOT NULL,
    countries   bigint NOT NULL,
    projects    bigint NOT NULL,
    users       bigint NOT NULL,
    projects_created bigint NOT NULL,
    as_of_seq   bigint NOT NULL
);
INSERT INTO covenant_fund VALUES (1, 0, 0, 0, 0, 0, 0);

-- audit projection ------------------------------------------------------------------------

CREATE TABLE audit_events (
    seq           bigint PRIMARY KEY,
    subject       text NOT NULL,
    aggregate     text NOT NULL,
    aggregate_id  text NOT NULL,
    event_id      text NOT NULL,
    event_type    text NOT NULL,
    version       bigint NOT NULL,
    actor         text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    payload       jsonb
);
CREATE INDEX audit_events_by_type ON audit_events (event_type, seq DESC);
CREATE INDEX audit_events_by_subject ON audit_events (subject, seq DESC);
CREATE INDEX audit_events_by_actor ON audit_events (actor, seq DESC);
