-- airlock's store on PostgreSQL, schema version 1: one queue for a fleet of
-- sidecars. Applied by airlock itself on start (src/holds/postgres), never by
-- hand; a new version is a new file, never an edit of this one once released.

-- Holds: the columns every query filters or orders on, and the whole hold as
-- the API knows it in `doc`.
CREATE TABLE holds (
    id              uuid PRIMARY KEY,
    state           text        NOT NULL,
    rule            text        NOT NULL,
    agent           text        NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    escalate_at     timestamptz,
    status_token    text        NOT NULL UNIQUE,
    fingerprint     text        NOT NULL,
    idempotency_key text,
    -- The instance that claimed the send, and when: a claim whose instance
    -- died is interrupted, never sent again.
    claimed_by      text,
    claimed_at      timestamptz,
    doc             jsonb       NOT NULL
);
CREATE INDEX holds_pending_by_expiry ON holds (expires_at) WHERE state = 'pending';
CREATE INDEX holds_pending_by_escalation ON holds (escalate_at)
    WHERE state = 'pending' AND escalate_at IS NOT NULL;
CREATE INDEX holds_pending_by_agent ON holds (agent) WHERE state = 'pending';
CREATE INDEX holds_by_state ON holds (state, id DESC);
CREATE INDEX holds_by_rule ON holds (rule, id DESC);
CREATE INDEX holds_by_fingerprint ON holds (fingerprint);
CREATE INDEX holds_by_idempotency_key ON holds (agent, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX holds_sending ON holds (claimed_by) WHERE claimed_by IS NOT NULL;

-- What each hold would send, apart from its row so lists never read it.
CREATE TABLE hold_bodies (
    hold_id uuid  PRIMARY KEY REFERENCES holds (id) ON DELETE CASCADE,
    body    bytea NOT NULL
);

-- The audit log: one hash chain for the fleet. A record is appended in the
-- transaction of the state change it records, after locking the head row,
-- so the chain has one order whichever instance writes.
CREATE TABLE audit (
    seq    bigint      PRIMARY KEY,
    at     timestamptz NOT NULL,
    record jsonb       NOT NULL,
    hash   text        NOT NULL
);
CREATE TABLE audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint  NOT NULL,
    hash     text    NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, '');

-- Notifications: deliveries fed from the audit log once for the fleet, each
-- leased by one instance at a time.
CREATE TABLE outbox (
    id           bigserial   PRIMARY KEY,
    receiver     text        NOT NULL,
    due          timestamptz NOT NULL,
    leased_until timestamptz,
    payload      bytea       NOT NULL
);
CREATE INDEX outbox_by_due ON outbox (due);
CREATE TABLE notify_cursor (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint  NOT NULL
);
INSERT INTO notify_cursor (seq) VALUES (0);

-- Small records: reviewers' browser sessions, the generated admin token's
-- hash. Never a credential in the clear.
CREATE TABLE records (
    key        text  PRIMARY KEY,
    value      bytea NOT NULL,
    expires_at timestamptz
);
