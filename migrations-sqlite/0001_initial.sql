-- mediagen's first schema in SQLite's dialect: the twin of migrations/0001_initial.sql
-- (PostgreSQL), with the same tables, columns, constraint names and indexes.
--
-- Append-only: never edit this file once merged; add 0002_... here whenever migrations/
-- gets a 0002_... (same version, same meaning). Differences from the PostgreSQL schema,
-- all forced by SQLite's types:
-- - STRICT tables, so a column holds only its declared type;
-- - instants are INTEGER microseconds since 1970-01-01 UTC (PostgreSQL keeps microseconds
--   too), so they compare and sort as numbers;
-- - JSONB columns are TEXT holding JSON (CHECK json_valid), TEXT[] is a JSON array;
-- - booleans are INTEGER 0/1;
-- - identity columns are INTEGER PRIMARY KEY AUTOINCREMENT (never reused, like identities).
-- Money is integer micro-dollars. Constraint names are the same as in PostgreSQL
-- (crates/sqlite/src/error.rs reads them from SQLite's messages).

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,                   -- Telegram user id
    language    TEXT NOT NULL CONSTRAINT users_language_check CHECK (language IN ('en', 'ru')),
    plan        TEXT NOT NULL,
    role        TEXT NOT NULL CONSTRAINT users_role_check CHECK (role IN ('user', 'admin')),
    blocked     INTEGER NOT NULL DEFAULT 0 CONSTRAINT users_blocked_check CHECK (blocked IN (0, 1)),
    settings    TEXT NOT NULL DEFAULT '{}' CONSTRAINT users_settings_check CHECK (json_valid(settings)),
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    updated_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;

-- fal accounts. Key material stays in configuration: only the keys' names are stored.
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY CONSTRAINT accounts_id_check CHECK (id <> ''),
    key_names       TEXT NOT NULL DEFAULT '[]' CONSTRAINT accounts_key_names_check CHECK (json_type(key_names) = 'array'),
    disabled        INTEGER NOT NULL DEFAULT 0 CONSTRAINT accounts_disabled_check CHECK (disabled IN (0, 1)),
    lock_reason     TEXT,
    locked_since    INTEGER,
    limit_override  INTEGER CONSTRAINT accounts_limit_override_check CHECK (limit_override >= 0),
    created_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    updated_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    CONSTRAINT accounts_lock_check CHECK ((lock_reason IS NULL) = (locked_since IS NULL))
) STRICT;

CREATE TABLE credit_purchases (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     TEXT NOT NULL CONSTRAINT credit_purchases_account_id_fkey REFERENCES accounts (id),
    amount_micros  INTEGER NOT NULL,
    purchased_at   INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;
CREATE INDEX credit_purchases_account_idx ON credit_purchases (account_id, purchased_at, id);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key  TEXT NOT NULL CONSTRAINT jobs_idempotency_key_key UNIQUE,
    user_id          INTEGER NOT NULL CONSTRAINT jobs_user_id_fkey REFERENCES users (id),
    chat_id          INTEGER NOT NULL,
    model            TEXT NOT NULL,                    -- copy of spec.model for reports
    spec             TEXT NOT NULL CONSTRAINT jobs_spec_check CHECK (json_valid(spec)), -- mediagen_domain::JobSpec
    state            TEXT NOT NULL CONSTRAINT jobs_state_check CHECK (
                         state IN ('queued', 'dispatching', 'submitted', 'running', 'succeeded', 'failed', 'canceled')),
    failure          TEXT CONSTRAINT jobs_failure_json_check CHECK (failure IS NULL OR json_valid(failure)),
    -- The account and fal handle; kept on terminal jobs for the record, cleared on requeue.
    account_id       TEXT CONSTRAINT jobs_account_id_fkey REFERENCES accounts (id),
    request_id       TEXT,
    remote_model     TEXT,
    status_url       TEXT,
    response_url     TEXT,
    cancel_url       TEXT,
    hold_micros      INTEGER NOT NULL CONSTRAINT jobs_hold_check CHECK (hold_micros >= 0),
    attempts         INTEGER NOT NULL DEFAULT 0 CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
    -- The dispatcher that owns an in-flight job, until when.
    lease_owner      TEXT,
    lease_until      INTEGER,
    -- A requeued job is not claimed before this instant.
    not_before       INTEGER,
    -- Orders the queue; kept on requeue so a retried job keeps its place.
    enqueued_at      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    CONSTRAINT jobs_in_flight_check CHECK (
        state NOT IN ('dispatching', 'submitted', 'running')
        OR (account_id IS NOT NULL AND lease_owner IS NOT NULL AND lease_until IS NOT NULL)),
    CONSTRAINT jobs_submitted_check CHECK (state NOT IN ('submitted', 'running') OR request_id IS NOT NULL),
    CONSTRAINT jobs_queued_check CHECK (
        state <> 'queued' OR (account_id IS NULL AND request_id IS NULL AND lease_owner IS NULL)),
    CONSTRAINT jobs_handle_check CHECK (
        (request_id IS NULL) = (remote_model IS NULL)
        AND (request_id IS NULL) = (status_url IS NULL)
        AND (request_id IS NULL) = (response_url IS NULL)
        AND (request_id IS NULL) = (cancel_url IS NULL)),
    CONSTRAINT jobs_failure_check CHECK ((state = 'failed') = (failure IS NOT NULL)),
    CONSTRAINT jobs_finished_check CHECK ((state IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL)),
    CONSTRAINT jobs_lease_check CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
) STRICT;
-- The queue in scheduler order, the in-flight set per account, expired leases, a user's history.
CREATE INDEX jobs_queued_idx ON jobs (enqueued_at, id) WHERE state = 'queued';
CREATE INDEX jobs_in_flight_idx ON jobs (account_id, user_id) WHERE state IN ('dispatching', 'submitted', 'running');
CREATE INDEX jobs_lease_idx ON jobs (lease_until) WHERE state IN ('dispatching', 'submitted', 'running');
CREATE INDEX jobs_user_idx ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Every state change of every job, written in the transaction that made it.
CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL CONSTRAINT job_events_job_id_fkey REFERENCES jobs (id),
    event       TEXT NOT NULL CONSTRAINT job_events_event_check CHECK (
                    event IN ('enqueued', 'claimed', 'submitted', 'started', 'requeued', 'rescued',
                              'succeeded', 'failed', 'canceled')),
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    account_id  TEXT,
    request_id  TEXT,
    owner       TEXT,
    detail      TEXT,
    at          INTEGER NOT NULL
) STRICT;
CREATE INDEX job_events_job_idx ON job_events (job_id, id);
CREATE INDEX job_events_submitted_idx ON job_events (at) WHERE event = 'submitted';

-- Money that moves because of a job: the user's hold at enqueue, and at the end the charge
-- and refund that settle it (charge + refund = hold) plus what fal bills the account.
-- One row per job and kind, so no path can charge or refund twice.
CREATE TABLE ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id         INTEGER NOT NULL CONSTRAINT ledger_job_id_fkey REFERENCES jobs (id),
    user_id        INTEGER NOT NULL CONSTRAINT ledger_user_id_fkey REFERENCES users (id),
    account_id     TEXT CONSTRAINT ledger_account_id_fkey REFERENCES accounts (id),
    kind           TEXT NOT NULL CONSTRAINT ledger_kind_check CHECK (kind IN ('hold', 'charge', 'refund', 'fal_cost')),
    amount_micros  INTEGER NOT NULL CONSTRAINT ledger_amount_check CHECK (amount_micros >= 0),
    at             INTEGER NOT NULL,
    CONSTRAINT ledger_job_kind_key UNIQUE (job_id, kind)
) STRICT;
CREATE INDEX ledger_user_idx ON ledger (user_id, at);
CREATE INDEX ledger_fal_cost_idx ON ledger (account_id, at) WHERE kind = 'fal_cost';

-- Files produced by jobs and where they went.
CREATE TABLE media (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id            INTEGER NOT NULL CONSTRAINT media_job_id_fkey REFERENCES jobs (id),
    fal_url           TEXT NOT NULL,
    telegram_file_id  TEXT,
    size_bytes        INTEGER CONSTRAINT media_size_check CHECK (size_bytes >= 0),
    content_type      TEXT,
    created_at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    updated_at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    CONSTRAINT media_job_url_key UNIQUE (job_id, fal_url)
) STRICT;

-- The LLM prompt-enhancement cache.
CREATE TABLE prompt_cache (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
) STRICT;
CREATE INDEX prompt_cache_expiry_idx ON prompt_cache (expires_at);

-- Alerts that fired, once per key and period.
CREATE TABLE alerts (
    key       TEXT NOT NULL,
    period    TEXT NOT NULL,
    fired_at  INTEGER NOT NULL,
    CONSTRAINT alerts_pkey PRIMARY KEY (key, period)
) STRICT;
