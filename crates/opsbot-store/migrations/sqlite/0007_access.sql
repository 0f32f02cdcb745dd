-- Access control records: approval requests and their votes, locks on jobs, and the links
-- between chat accounts and the people of the config.

-- A run that needs approval before it may start. `params` is the full params (JSON), needed
-- to start the run once approved; `requirements` is the engine's description of who must
-- approve (JSON, opaque to the store). `state` is `pending` until decided: `approved`,
-- `denied`, `expired` or `withdrawn`, set once by an UPDATE that re-checks `state = 'pending'`.
-- `requester_person` is the person key of the config ('' when the account is nobody's).
-- `execution_id` is the run an approved request started.
CREATE TABLE approvals (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    job                   TEXT    NOT NULL,
    params                TEXT    NOT NULL,
    requested_by_platform TEXT    NOT NULL,
    requested_by_id       TEXT    NOT NULL,
    requester_person      TEXT    NOT NULL,
    requester_name        TEXT    NOT NULL,
    place_platform        TEXT    NOT NULL,
    place_channel         TEXT    NOT NULL,
    place_thread          TEXT    NULL,
    requirements          TEXT    NOT NULL,
    reason                TEXT    NOT NULL,
    state                 TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL,
    decided_at            INTEGER NULL,
    decision_note         TEXT    NULL,
    execution_id          INTEGER NULL
);
CREATE INDEX approvals_state ON approvals (state, id);

-- One vote on an approval request; `id` is the order votes were cast. `voter_key` is who
-- counts as one voter: `person:<person>` when the voter is a person of the config, else
-- `account:<platform>:<id>`. Both unique indexes refuse a second vote (INSERT ... ON CONFLICT
-- DO NOTHING): one per person, whichever of their accounts they use, and one per account.
CREATE TABLE approval_votes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    approval_id    INTEGER NOT NULL REFERENCES approvals (id) ON DELETE CASCADE,
    voter_key      TEXT    NOT NULL,
    voter_platform TEXT    NOT NULL,
    voter_id       TEXT    NOT NULL,
    voter_person   TEXT    NOT NULL,
    voter_name     TEXT    NOT NULL,
    approve        INTEGER NOT NULL,
    reason         TEXT    NULL,
    at             INTEGER NOT NULL
);
CREATE UNIQUE INDEX approval_votes_voter ON approval_votes (approval_id, voter_key);
CREATE UNIQUE INDEX approval_votes_account ON approval_votes (approval_id, voter_platform, voter_id);

-- A lock someone took on `job` (on every job when NULL) with `params` (JSON); what it holds
-- back is the engine's business. `scope` is the canonical text of job and params
-- (`Lock::scope_of`), unique, so of two people taking the same lock at once only one gets it.
CREATE TABLE locks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scope       TEXT    NOT NULL UNIQUE,
    job         TEXT    NULL,
    params      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    by_platform TEXT    NOT NULL,
    by_id       TEXT    NOT NULL,
    by_name     TEXT    NOT NULL,
    at          INTEGER NOT NULL
);

-- One-time codes that link a chat account to a person: at most one per account (a new code
-- replaces the old one). Only the SHA-256 of a code is stored; taking it deletes it.
CREATE TABLE link_codes (
    account_platform TEXT    NOT NULL,
    account_id       TEXT    NOT NULL,
    code_sha256      TEXT    NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (account_platform, account_id)
);

-- Which person of the config a chat account belongs to (one person per account), and who
-- linked it.
CREATE TABLE account_links (
    account_platform   TEXT    NOT NULL,
    account_id         TEXT    NOT NULL,
    person             TEXT    NOT NULL,
    linked_by_platform TEXT    NOT NULL,
    linked_by_id       TEXT    NOT NULL,
    at                 INTEGER NOT NULL,
    PRIMARY KEY (account_platform, account_id)
);
CREATE INDEX account_links_person ON account_links (person);
