-- Scheduled runs (`deploy api to dev at 23:30`) and the next run time of the config's cron
-- schedules, so that several opsbot processes on one database start each run once.

-- A run to start at `run_at`. `params` is JSON (canonical values, never secrets); `place` is
-- where it was asked for and where its card goes; `lang` is the language to answer in when it
-- fires; `text` is what the person wrote. `state` is `pending` until claimed: `firing` (set
-- with `claimed_at` by one UPDATE that re-checks `state = 'pending'`, so two processes never
-- claim the same row), then `fired` (with `execution_id`) or `failed` (`detail` says why);
-- a pending one can instead become `cancelled` (`cancelled_by_*` says by whom). `finished_at`
-- is when it left `pending`/`firing` for good.
CREATE TABLE schedules (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    job                   TEXT    NOT NULL,
    params                TEXT    NOT NULL,
    requested_by_platform TEXT    NOT NULL,
    requested_by_id       TEXT    NOT NULL,
    requester_name        TEXT    NOT NULL,
    place_platform        TEXT    NOT NULL,
    place_channel         TEXT    NOT NULL,
    place_thread          TEXT    NULL,
    run_at                INTEGER NOT NULL,
    lang                  TEXT    NOT NULL,
    text                  TEXT    NOT NULL,
    state                 TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    claimed_at            INTEGER NULL,
    finished_at           INTEGER NULL,
    execution_id          INTEGER NULL,
    detail                TEXT    NULL,
    cancelled_by_platform TEXT    NULL,
    cancelled_by_id       TEXT    NULL
);
-- Due pending runs, soonest first; stale firing ones.
CREATE INDEX schedules_state_run_at ON schedules (state, run_at, id);

-- The next run time of each cron schedule of the config, by its name. Moved forward by a
-- compare-and-set (`UPDATE ... WHERE next_at = <what the process read>`; the first insert
-- is `ON CONFLICT DO NOTHING`), so of several processes only one fires each occurrence.
CREATE TABLE cron_schedules (
    name       TEXT    NOT NULL PRIMARY KEY,
    next_at    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
