-- The web console and web chat: sign-in sessions, generated passwords, chat messages.

-- A signed-in browser. Only the SHA-256 of the session cookie is stored. `csrf` is the
-- session's anti-forgery token, sent back with every state-changing request.
CREATE TABLE web_sessions (
    id_sha256  TEXT    PRIMARY KEY,
    user_name  TEXT    NOT NULL,
    csrf       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_name);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- Argon2 hashes of passwords opsbot generated itself for users declared with
-- `generated_password = true` (the password is printed once, at the first start).
CREATE TABLE web_passwords (
    user_name  TEXT    PRIMARY KEY,
    hash       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Web chat: every message of every channel, for history on reload. `reply` is a bot reply
-- (the Reply document as JSON); `card_for` marks an execution's job card, updated in place.
CREATE TABLE chat_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT    NOT NULL,
    author       TEXT    NOT NULL,
    author_name  TEXT    NOT NULL,
    text         TEXT    NULL,
    reply        TEXT    NULL,
    card_for     INTEGER NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX chat_messages_channel ON chat_messages (channel, id);
CREATE INDEX chat_messages_card ON chat_messages (card_for, channel) WHERE card_for IS NOT NULL;

-- Audit listings filtered by execution or by actor stay index scans.
CREATE INDEX audit_execution ON audit (execution_id, id) WHERE execution_id IS NOT NULL;
CREATE INDEX audit_actor ON audit (actor_platform, actor_id, id);
