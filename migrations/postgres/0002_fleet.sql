-- Schema version 2: what the fleet's store needs beyond version 1.

-- Records and holds are kept as the exact JSON text airlock wrote: an audit
-- record's hash covers its bytes, and jsonb would reorder and renormalise
-- them (and refuse a \u0000 an agent put in a summarised body).
ALTER TABLE audit ALTER COLUMN record TYPE text USING record::text;
ALTER TABLE holds ALTER COLUMN doc TYPE text USING doc::text;

-- Pending holds in the order the page lists them.
DROP INDEX holds_pending_by_expiry;
CREATE INDEX holds_pending_by_expiry ON holds (expires_at, id) WHERE state = 'pending';
CREATE INDEX holds_approved ON holds (id) WHERE state = 'approved';
CREATE INDEX holds_by_created ON holds (created_at);

-- Each running airlock renews its lease here while it runs. A send claimed
-- by an instance whose lease has lapsed is interrupted by whichever
-- instance notices first, and never sent again.
CREATE TABLE instances (
    id          text        PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    alive_until timestamptz NOT NULL
);
