-- mediagen's first schema: users, the job queue with its history and ledger, fal accounts
-- and their purchases, media records, the prompt cache and fired alerts.
--
-- Append-only: never edit this file once merged; add 0002_... instead. Money is integer
-- micro-dollars (BIGINT), instants are TIMESTAMPTZ. Constraint names are part of the
-- adapter's contract (crates/postgres/src/error.rs maps them to domain errors).

CREATE TABLE users (
    id          BIGINT PRIMARY KEY,                    -- Telegram user id
    language    TEXT NOT NULL CONSTRAINT users_language_check CHECK (language IN ('en', 'ru')),
    plan        TEXT NOT NULL,
    role        TEXT NOT NULL CONSTRAINT users_role_check CHECK (role IN ('user', 'admin')),
    blocked     BOOLEAN NOT NULL DEFAULT FALSE,
    settings    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- fal accounts. Key material stays in configuration: only the keys' names are stored.
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY CONSTRAINT accounts_id_check CHECK (id <> ''),
    key_names       TEXT[] NOT NULL DEFAULT '{}',
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    lock_reason     TEXT,
    locked_since    TIMESTAMPTZ,
    limit_override  INTEGER CONSTRAINT accounts_limit_override_check CHECK (limit_override >= 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT accounts_lock_check CHECK ((lock_reason IS NULL) = (locked_since IS NULL))
);

CREATE TABLE credit_purchases (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id     TEXT NOT NULL CONSTRAINT credit_purchases_account_id_fkey REFERENCES accounts (id),
    amount_micros  BIGINT NOT NULL,
    purchased_at   TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX credit_purchases_account_idx ON credit_purchases (account_id, purchased_at, id);

CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  TEXT NOT NULL CONSTRAINT jobs_idempotency_key_key UNIQUE,
    user_id          BIGINT NOT NULL CONSTRAINT jobs_user_id_fkey REFERENCES users (id),
    chat_id          BIGINT NOT NULL,
    model            TEXT NOT NULL,                    -- copy of spec.model for reports
    spec             JSONB NOT NULL,                   -- mediagen_domain::JobSpec
    state            TEXT NOT NULL CONSTRAINT jobs_state_check CHECK (
                         state IN ('queued', 'dispatching', 'submitted', 'running', 'succeeded', 'failed', 'canceled')),
    failure          JSONB,                            -- mediagen_domain::FailureReason when failed
    -- The account and fal handle; kept on terminal jobs for the record, cleared on requeue.
    account_id       TEXT CONSTRAINT jobs_account_id_fkey REFERENCES accounts (id),
    request_id       TEXT,
    remote_model     TEXT,
    status_url       TEXT,
    response_url     TEXT,
    cancel_url       TEXT,
    hold_micros      BIGINT NOT NULL CONSTRAINT jobs_hold_check CHECK (hold_micros >= 0),
    attempts         INTEGER NOT NULL DEFAULT 0 CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
    -- The dispatcher that owns an in-flight job, until when.
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    -- A requeued job is not claimed before this instant.
    not_before       TIMESTAMPTZ,
    -- Orders the queue; kept on requeue so a retried job keeps its place.
    enqueued_at      TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
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
);
-- The queue in scheduler order, the in-flight set per account, expired leases, a user's history.
CREATE INDEX jobs_queued_idx ON jobs (enqueued_at, id) WHERE state = 'queued';
CREATE INDEX jobs_in_flight_idx ON jobs (account_id, user_id) WHERE state IN ('dispatching', 'submitted', 'running');
CREATE INDEX jobs_lease_idx ON jobs (lease_until) WHERE state IN ('dispatching', 'submitted', 'running');
CREATE INDEX jobs_user_idx ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Every state change of every job, written in the transaction that made it.
CREATE TABLE job_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      BIGINT NOT NULL CONSTRAINT job_events_job_id_fkey REFERENCES jobs (id),
    event       TEXT NOT NULL CONSTRAINT job_events_event_check CHECK (
                    event IN ('enqueued', 'claimed', 'submitted', 'started', 'requeued', 'rescued',
                              'succeeded', 'failed', 'canceled')),
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    account_id  TEXT,
    request_id  TEXT,
    owner       TEXT,
    detail      TEXT,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);
CREATE INDEX job_events_submitted_idx ON job_events (at) WHERE event = 'submitted';

-- Money that moves because of a job: the user's hold at enqueue, and at the end the charge
-- and refund that settle it (charge + refund = hold) plus what fal bills the account.
-- One row per job and kind, so no path can charge or refund twice.
CREATE TABLE ledger (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         BIGINT NOT NULL CONSTRAINT ledger_job_id_fkey REFERENCES jobs (id),
    user_id        BIGINT NOT NULL CONSTRAINT ledger_user_id_fkey REFERENCES users (id),
    account_id     TEXT CONSTRAINT ledger_account_id_fkey REFERENCES accounts (id),
    kind           TEXT NOT NULL CONSTRAINT ledger_kind_check CHECK (kind IN ('hold', 'charge', 'refund', 'fal_cost')),
    amount_micros  BIGINT NOT NULL CONSTRAINT ledger_amount_check CHECK (amount_micros >= 0),
    at             TIMESTAMPTZ NOT NULL,
    CONSTRAINT ledger_job_kind_key UNIQUE (job_id, kind)
);
CREATE INDEX ledger_user_idx ON ledger (user_id, at);
CREATE INDEX ledger_fal_cost_idx ON ledger (account_id, at) WHERE kind = 'fal_cost';

-- Files produced by jobs and where they went.
CREATE TABLE media (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id            BIGINT NOT NULL CONSTRAINT media_job_id_fkey REFERENCES jobs (id),
    fal_url           TEXT NOT NULL,
    telegram_file_id  TEXT,
    size_bytes        BIGINT CONSTRAINT media_size_check CHECK (size_bytes >= 0),
    content_type      TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT media_job_url_key UNIQUE (job_id, fal_url)
);

-- The LLM prompt-enhancement cache.
CREATE TABLE prompt_cache (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX prompt_cache_expiry_idx ON prompt_cache (expires_at);

-- Alerts that fired, once per key and period.
CREATE TABLE alerts (
    key       TEXT NOT NULL,
    period    TEXT NOT NULL,
    fired_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT alerts_pkey PRIMARY KEY (key, period)
);
