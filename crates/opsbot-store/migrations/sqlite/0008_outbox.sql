-- Chat delivery: every message for a chat adapter goes through the outbox and stays there until
-- the platform took it, so a reply produced while a platform is down is delivered when it is
-- back. `kind` is `message`, `card` (a run's job card, first post) or `card_update` (its new
-- state). `reply` is the Reply document (JSON). `done_at` is set once, with `outcome` `sent`,
-- `superseded` (a later update of the same card made it pointless) or `rejected` (the
-- platform refused it for good; `last_error` says why).
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    adapter      TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    thread       TEXT    NULL,
    kind         TEXT    NOT NULL,
    execution_id INTEGER NULL,
    reply        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT    NULL,
    done_at      INTEGER NULL,
    outcome      TEXT    NULL
);
CREATE INDEX outbox_pending ON outbox (adapter, id) WHERE done_at IS NULL;
CREATE INDEX outbox_done ON outbox (done_at) WHERE done_at IS NOT NULL;

-- A run's job card in a chat conversation: which platform message shows it (once sent) and
-- which state it shows, so updates edit it in place and never go back.
CREATE TABLE chat_cards (
    adapter      TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    thread       TEXT    NOT NULL DEFAULT '',
    execution_id INTEGER NOT NULL,
    message_id   TEXT    NULL,
    state        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (adapter, channel, thread, execution_id)
);
CREATE INDEX chat_cards_execution ON chat_cards (execution_id);

-- Small values an adapter keeps across restarts (Matrix's sync token).
CREATE TABLE adapter_state (
    adapter    TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (adapter, key)
);
