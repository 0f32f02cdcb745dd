//! The SQLite store: one database file shared by the bot and its workers.
//!
//! All SQL here is runtime SQL with numbered parameters (`$1`) and `RETURNING`, so a PostgreSQL
//! store can reuse it. Every multi-step change is written as single statements whose `WHERE`
//! clause re-checks the state, so no transaction ever has to upgrade from reading to writing
//! (which SQLite in WAL mode would refuse instead of waiting). The one exception is appending to
//! the audit hash chain after another writer moved it: that read-then-write runs in a
//! `BEGIN IMMEDIATE` transaction, which takes the write lock before it reads.

use crate::{
    AccountLink, ApiToken, Approval, ApprovalState, AuditFilter, AuditRecord, CancelResult, ChainedAudit, ChatCard, ChatMessage, Dialog,
    ExecutionFilter, Finish, GENESIS_HASH, IsDead, Lock, NewApproval, NewChatMessage, NewLock, NewOutgoing, NewSchedule, OutKind, Outgoing,
    STALE_SCHEDULE_DETAIL, Schedule, ScheduleState, Store, StoreError, Vote, WebSession, audit_hash,
};
use chrono::{DateTime, Utc};
use opsbot_core::{ExecEvent, ExecState, Execution, ExecutionId, NewExecution, OutputLine, Params, Place, Stream, UserId};
use rusqlite::types::{FromSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, TransactionBehavior};
use sha2::{Digest, Sha384};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify, broadcast};

/// A statement with its values, run on one of the store's connections on the calling thread.
///
/// Parameters are numbered (`$1`, `$2` … in the SQL, any order, each as often as needed) and
/// bound by number, as PostgreSQL does; values are bound in [`Query::bind`] order.
struct Query<'s> {
    sql: Cow<'s, str>,
    args: Vec<Value>,
    /// The first value that could not be turned into a SQLite value.
    bad: Option<rusqlite::Error>,
}

/// A statement on SQL text.
fn query<'s>(sql: impl Into<Cow<'s, str>>) -> Query<'s> {
    Query {
        sql: sql.into(),
        args: Vec::new(),
        bad: None,
    }
}

/// One row read: its values by column, owned, so the statement is free again at once.
struct Row {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl<'s> Query<'s> {
    /// Adds the value of the next parameter.
    fn bind<T: ToSql>(mut self, value: T) -> Self {
        match value.to_sql() {
            Ok(ToSqlOutput::Borrowed(v)) => self.args.push(owned(v)),
            Ok(ToSqlOutput::Owned(v)) => self.args.push(v),
            Ok(_) => {
                self.bad
                    .get_or_insert(rusqlite::Error::ToSqlConversionFailure("a value SQLite cannot store".into()));
                self.args.push(Value::Null);
            }
            Err(e) => {
                self.bad.get_or_insert(e);
                self.args.push(Value::Null);
            }
        }
        self
    }

    /// The statement, prepared (or taken from the connection's cache), with every parameter bound.
    fn prepare<'c>(self, conn: &'c Connection) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
        if let Some(e) = self.bad {
            return Err(e.into());
        }
        let mut stmt = conn.prepare_cached(&self.sql)?;
        let mut highest = 0;
        for i in 1..=stmt.parameter_count() {
            // `$N` or `?N` is value N; a bare `?` is the next one.
            let n = stmt
                .parameter_name(i)
                .and_then(|name| name.get(1..))
                .and_then(|digits| digits.parse::<usize>().ok())
                .unwrap_or(i);
            let value = self
                .args
                .get(n.wrapping_sub(1))
                .ok_or(rusqlite::Error::InvalidParameterCount(n, self.args.len()))?;
            stmt.raw_bind_parameter(i, value)?;
            highest = highest.max(n);
        }
        if highest != self.args.len() {
            return Err(rusqlite::Error::InvalidParameterCount(highest, self.args.len()).into());
        }
        Ok(stmt)
    }

    /// Runs the statement, reading at most `max` rows (and stopping there).
    fn rows(self, conn: &Connection, max: usize) -> Result<Vec<Row>, StoreError> {
        let traced = Traced::start(&self);
        let mut stmt = self.prepare(conn)?;
        let names: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
        let width = names.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(row) = rows.next()? else { break };
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(owned(row.get_ref(i)?));
            }
            out.push(Row {
                names: names.clone(),
                values,
            });
        }
        drop(rows);
        if let Some(t) = traced {
            t.done(out.len());
        }
        Ok(out)
    }

    /// Every row.
    fn fetch_all(self, conn: &Connection) -> Result<Vec<Row>, StoreError> {
        self.rows(conn, usize::MAX)
    }

    /// The first row, if any (a read: the statement stops there).
    fn fetch_optional(self, conn: &Connection) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(conn, 1)?.into_iter().next())
    }

    /// The first row; none is an error.
    fn fetch_one(self, conn: &Connection) -> Result<Row, StoreError> {
        self.fetch_optional(conn)?.ok_or_else(no_row)
    }

    /// A write with `RETURNING` that gives at most one row, run to its end. SQLite runs its WAL
    /// auto-checkpoint only when a statement runs to its end, so a burst of writes stopped at
    /// their first row (a worker claiming a backlog) grew the WAL without bound (448 MiB after
    /// 15,855 queued runs in a benchmark; docs/benchmarks.md).
    fn returning(self, conn: &Connection) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(conn)?.into_iter().next())
    }

    /// A statement that returns no rows; how many rows it changed.
    fn execute(self, conn: &Connection) -> Result<u64, StoreError> {
        let traced = Traced::start(&self);
        let mut stmt = self.prepare(conn)?;
        let rows = stmt.raw_execute()?;
        if let Some(t) = traced {
            t.done(rows);
        }
        Ok(rows as u64)
    }
}

/// Logs each statement with its time, at `trace` level under `opsbot_store::sql`
/// (`OPSBOT_LOG=opsbot_store::sql=trace`): how the statements of one run were counted for
/// docs/benchmarks.md. Costs one check of the level when that is off.
struct Traced {
    sql: String,
    started: Instant,
}

impl Traced {
    fn start(q: &Query<'_>) -> Option<Traced> {
        tracing::enabled!(target: "opsbot_store::sql", tracing::Level::TRACE).then(|| Traced {
            sql: q.sql.split_whitespace().collect::<Vec<_>>().join(" "),
            started: Instant::now(),
        })
    }

    fn done(self, rows: usize) {
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tracing::trace!(target: "opsbot_store::sql", rows, micros, sql = %self.sql, "statement");
    }
}

/// A value as an owned one. Text that is not UTF-8 is kept as its bytes, so reading the column
/// as text fails there, as corruption of that column.
fn owned(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Value::Text(text.to_string()),
            Err(_) => Value::Blob(bytes.to_vec()),
        },
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// The error for a statement that should have given a row and gave none.
fn no_row() -> StoreError {
    StoreError::Db(rusqlite::Error::QueryReturnedNoRows)
}

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Short waits for another writer before the long ones ([`busy_wait`]).
const BUSY_SHORT_TRIES: i32 = 100;
const BUSY_SHORT: Duration = Duration::from_micros(50);
const BUSY_LONG: Duration = Duration::from_millis(1);

/// SQLite's busy handler for our connections: called when another connection (of this process
/// or another) holds the write lock. SQLite's own handler (`busy_timeout`) sleeps 1, 2, 5, 10 …
/// ms between tries; a write here holds the lock for 50–300 µs, so a process whose worker and
/// chat runtime write at the same moment lost milliseconds per collision (a burst of 200
/// `!run echo` over IRC spent 43 % of its statement time in those sleeps, docs/benchmarks.md).
/// This one tries again every 50 µs for the first 100 tries, then every millisecond, and gives
/// up (`SQLITE_BUSY`) after about [`BUSY_TIMEOUT`], as before.
fn busy_wait(tries: i32) -> bool {
    let long_tries = (BUSY_TIMEOUT.as_millis() / BUSY_LONG.as_millis()) as i32;
    if tries < BUSY_SHORT_TRIES {
        std::thread::sleep(BUSY_SHORT);
        true
    } else if tries < BUSY_SHORT_TRIES + long_tries {
        std::thread::sleep(BUSY_LONG);
        true
    } else {
        false
    }
}
/// Rows changed in a file database after which a checkpoint is started in the background
/// ([`Conns::start_checkpoint`]): about a thousand pages of write-ahead log, SQLite's own default.
const CHECKPOINT_AFTER_CHANGES: u64 = 256;
/// How often, and how many times, a background checkpoint tries to catch up with the writers.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(5);
const CHECKPOINT_TRIES: u32 = 200;
/// SQLite's own checkpoint, run by the writer at the end of its commit, kept as a backstop for
/// when the background one cannot catch up (writes without a pause): pages of write-ahead log.
const BACKSTOP_CHECKPOINT_PAGES: u32 = 3_000;
/// Idle connections to a file database kept for the next call, at most.
const MAX_IDLE: usize = 4;
/// Prepared statements each connection keeps (the store has about a hundred distinct ones).
const STATEMENT_CACHE: usize = 128;
/// Buffered state-change events per subscriber.
const EVENT_CAPACITY: usize = 1024;
/// Most executions one listing returns.
const MAX_LIST: u32 = 1000;
/// Executions one listing returns when the filter says 0.
const DEFAULT_LIST: u32 = 20;
/// Chunks read per round trip when looking for the tail of the output.
const TAIL_PAGE: i64 = 32;
/// Attempts at taking a lock when the one in the way vanishes before it can be read.
const LOCK_ATTEMPTS: u32 = 5;
/// Attempts at opening a file (another process may be creating or migrating it right now).
const OPEN_ATTEMPTS: u32 = 5;
/// The table that records which migrations a database has had. The name and the columns are
/// sqlx's (the store used sqlx's migrator until 2026-11), so a file an older opsbot wrote opens
/// as it is.
const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// The migrations, embedded in the binary, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "api tokens", include_str!("../migrations/sqlite/0002_api_tokens.sql")),
    (3, "execution pgid", include_str!("../migrations/sqlite/0003_execution_pgid.sql")),
    (4, "listing index", include_str!("../migrations/sqlite/0004_listing_index.sql")),
    (5, "web sessions and chat", include_str!("../migrations/sqlite/0005_web.sql")),
    (6, "audit hash chain", include_str!("../migrations/sqlite/0006_audit_chain.sql")),
    (
        7,
        "approvals, votes, locks, account links",
        include_str!("../migrations/sqlite/0007_access.sql"),
    ),
    (
        8,
        "chat outbox, cards, adapter state",
        include_str!("../migrations/sqlite/0008_outbox.sql"),
    ),
    (
        9,
        "scheduled runs, cron next times",
        include_str!("../migrations/sqlite/0009_schedules.sql"),
    ),
];

/// A [`Store`] on a SQLite database (a file, or memory for tests).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    conns: Arc<Conns>,
    events: broadcast::Sender<ExecEvent>,
    output: broadcast::Sender<ExecutionId>,
    queue: Arc<Notify>,
    /// The newest audit record (id, hash) as this store last appended or read it. Appends go
    /// through this lock one at a time; a stale head (another process appended) is refused by
    /// the `audit_chained` trigger and the append is redone under `BEGIN IMMEDIATE`.
    audit_head: Arc<Mutex<Option<(i64, String)>>>,
}

/// The store's connections, each opened when first needed and then kept.
///
/// Statements run on the calling thread, through rusqlite: every call takes a connection, runs
/// its statements to the end without awaiting anything, and gives it back. A call takes
/// microseconds (on the benchmark machine, file in WAL mode: a dialog lookup 3.5 µs, an
/// execution insert with its commit 49 µs); the longest are the history listings at a million
/// executions (0.3–3 ms, docs/benchmarks.md).
/// sqlx, used before, ran each connection on a thread of its own and handed every statement to
/// it and back: 29–70 µs a statement, ~1 ms of each `!run echo` from chat. A call never holds a
/// connection across an `.await`, so calls on one thread never wait for each other, and a write
/// waits for another of this process's connections only for the length of one statement (or
/// `BEGIN IMMEDIATE` block), in [`busy_wait`]. Another process holding the write lock longer
/// (a `sqlite3` shell left in a transaction) holds up the waiting call's runtime thread, up to
/// [`BUSY_TIMEOUT`].
#[derive(Debug)]
struct Conns {
    /// The database file; `None` for a memory database, which is its one connection (another
    /// would be another database).
    path: Option<PathBuf>,
    idle: std::sync::Mutex<Vec<Connection>>,
    /// Signalled when a connection is given back (a memory store's one connection is waited for).
    given_back: Condvar,
    /// Set by [`SqliteStore::close`]: no connection is taken or kept after it.
    closed: AtomicBool,
    /// Rows changed (file database) since the last background checkpoint started.
    changes: AtomicU64,
    /// A background checkpoint is running.
    checkpointing: AtomicBool,
    /// This, for the checkpoint thread (which must not keep the store alive).
    me: Weak<Conns>,
}

/// A connection of the store's, given back when dropped. Dereferences to
/// [`rusqlite::Connection`]. On a memory store it is the store's only connection: a call made
/// while one is held waits for it.
pub struct Conn<'a> {
    conn: Option<Connection>,
    home: &'a Conns,
    /// The connection's count of changed rows when it was taken.
    changes_before: u64,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("a connection until dropped")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(c) = self.conn.take() else { return };
        if self.home.path.is_some() {
            let changed = c.total_changes().saturating_sub(self.changes_before);
            if changed > 0 && self.home.changes.fetch_add(changed, Ordering::AcqRel) + changed >= CHECKPOINT_AFTER_CHANGES {
                self.home.start_checkpoint();
            }
        }
        let mut idle = self.home.idle.lock().unwrap_or_else(|p| p.into_inner());
        // A memory database lives in its connection: always kept. A file's spare connection
        // beyond the few kept, or one given back after `close`, is closed here.
        if self.home.path.is_none() || (idle.len() < MAX_IDLE && !self.home.closed.load(Ordering::Acquire)) {
            idle.push(c);
            drop(idle);
            self.home.given_back.notify_one();
        } else {
            drop(idle);
            close_connection(c);
        }
    }
}

impl Conns {
    fn new(path: Option<PathBuf>, open: Vec<Connection>) -> Arc<Conns> {
        Arc::new_cyclic(|me| Conns {
            path,
            idle: std::sync::Mutex::new(open),
            given_back: Condvar::new(),
            closed: AtomicBool::new(false),
            changes: AtomicU64::new(0),
            checkpointing: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// Starts a checkpoint of the write-ahead log on a thread of its own, unless one is running.
    ///
    /// SQLite's automatic checkpoint runs inside the commit that crosses its threshold: that
    /// write, and the call waiting for it, then copies a thousand pages into the database and
    /// syncs it — 4–6 ms on the benchmark machine, every ~15 `!run echo` (their p99 6.1 ms, 2.8
    /// without it). Here a `PASSIVE` checkpoint runs beside the writers instead; it catches up
    /// in the pauses between writes, and SQLite's own is kept as a backstop at
    /// [`BACKSTOP_CHECKPOINT_PAGES`].
    fn start_checkpoint(&self) {
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.changes.store(0, Ordering::Release);
        let me = self.me.clone();
        let spawned = std::thread::Builder::new().name("opsbot-checkpoint".into()).spawn(move || {
            if let Some(conns) = me.upgrade() {
                conns.checkpoint();
                conns.checkpointing.store(false, Ordering::Release);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to checkpoint the database; SQLite's own checkpoint will");
            self.checkpointing.store(false, Ordering::Release);
        }
    }

    /// `PASSIVE` checkpoints (they wait for no one) until the writers pause: only a log copied
    /// whole is started over from its beginning by the next write, instead of growing. A
    /// checkpoint copies the log as it was when it began, so it tries again every
    /// [`CHECKPOINT_RETRY`] until the log has not grown since the last try, for at most
    /// [`CHECKPOINT_TRIES`] tries (chat traffic pauses soon; without a pause, the next 256
    /// changed rows start this again, and SQLite's own checkpoint is the backstop).
    fn checkpoint(&self) {
        let mut last = None;
        for _ in 0..CHECKPOINT_TRIES {
            let result = self.get().and_then(|c| {
                Ok(c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })?)
            });
            match result {
                Ok((frames, copied)) if copied >= frames && last.is_some_and(|l| frames <= l) => {
                    tracing::debug!(frames, "checkpoint: the write-ahead log is all in the database");
                    return;
                }
                Ok((frames, _)) => last = Some(frames),
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "checkpointing the database failed");
                    return;
                }
            }
            std::thread::sleep(CHECKPOINT_RETRY);
        }
    }

    fn get(&self) -> Result<Conn<'_>, StoreError> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            if let Some(c) = idle.pop() {
                return Ok(self.lend(c));
            }
            match &self.path {
                Some(path) => {
                    drop(idle);
                    return Ok(self.lend(connect(path)?));
                }
                // The memory database's one connection is in use on another thread, for one
                // call's statements.
                None => idle = self.given_back.wait(idle).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    fn lend(&self, c: Connection) -> Conn<'_> {
        Conn {
            changes_before: c.total_changes(),
            conn: Some(c),
            home: self,
        }
    }
}

/// Closes a connection, logging (not failing on) an error.
fn close_connection(c: Connection) {
    if let Err((_, e)) = c.close() {
        tracing::debug!(error = %e, "closing a database connection");
    }
}

/// Sets up a fresh connection as the store needs it: foreign keys enforced, our busy handler,
/// room for the store's prepared statements.
fn prepare_connection(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    conn.busy_handler(Some(busy_wait))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Opens one connection to a database file (creating it when missing), in WAL mode.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    prepare_connection(&conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "{}: the database cannot use a write-ahead log (its journal mode stays `{mode}`)",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES}"
    ))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating it and its folder if missing) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StoreError::Io(format!("cannot create the folder {}: {e}", parent.display())))?;
        }
        // Switching a fresh file to WAL when another process does the same at the same moment
        // cannot wait in the busy handler; retrying finds the file ready.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match connect(path).and_then(|c| Self::from_conns(Conns::new(Some(path.to_path_buf()), vec![c]))) {
                Ok(store) => return Ok(store),
                // Only the races above heal by waiting; a file that is not a database never does.
                Err(e) if attempt < OPEN_ATTEMPTS && is_open_race(&e) => {
                    tracing::debug!(path = %path.display(), attempt, error = %e, "opening the database failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A fresh, migrated in-memory database (one connection, kept for the store's life).
    pub async fn memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        prepare_connection(&conn)?;
        Self::from_conns(Conns::new(None, vec![conn]))
    }

    /// One of the store's connections, for maintenance and tests; it goes back to the store
    /// when dropped. On a memory store it is the only one: drop it before calling the store.
    pub fn conn(&self) -> Result<Conn<'_>, StoreError> {
        self.conns.get()
    }

    /// Closes the store's connections (the last one to a file checkpoints its write-ahead log
    /// into it and removes it): every call after this, on any clone of the store, fails. A
    /// connection in use on another thread at this moment is closed when its call ends.
    pub async fn close(&self) {
        self.conns.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.conns.idle.lock().unwrap_or_else(|p| p.into_inner()));
        idle.into_iter().for_each(close_connection);
        self.conns.given_back.notify_all();
    }

    /// Applies the embedded migrations, up to and including version `up_to` (all of them when
    /// `None`), to `conn`, recording each in `_sqlx_migrations` as sqlx did. [`SqliteStore::open`]
    /// does this itself; tests use it to make a database as an older opsbot left it.
    ///
    /// Each migration runs in its own `BEGIN IMMEDIATE` transaction, after checking again that
    /// no other process applied it meanwhile. A database that has a migration this build does
    /// not know (written by a newer opsbot), or one whose text differs from this build's, is
    /// refused, as is one whose migration was left half applied.
    pub fn migrate(conn: &mut Connection, up_to: Option<i64>) -> Result<(), StoreError> {
        conn.execute_batch(MIGRATIONS_TABLE)?;
        let failed: Option<i64> = conn
            .query_row(
                "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
                [],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| {
                if e == rusqlite::Error::QueryReturnedNoRows {
                    Ok(None)
                } else {
                    Err(e)
                }
            })?;
        if let Some(v) = failed {
            return Err(StoreError::Migrate(format!(
                "migration {v} was left half applied; restore the database from a backup"
            )));
        }
        let known = |version: i64| MIGRATIONS.iter().find(|(v, _, _)| *v == version);
        for (version, checksum) in applied_migrations(conn)? {
            let Some((_, description, sql)) = known(version) else {
                return Err(StoreError::Migrate(format!(
                    "the database has migration {version}, which this opsbot does not know: it was written by a newer opsbot"
                )));
            };
            if Sha384::digest(sql.as_bytes()).as_slice() != checksum.as_slice() {
                return Err(StoreError::Migrate(format!(
                    "migration {version} ({description}) in the database differs from this opsbot's"
                )));
            }
        }
        for &(version, description, sql) in MIGRATIONS.iter().filter(|(v, _, _)| up_to.is_none_or(|last| *v <= last)) {
            let started = Instant::now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let done: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )?;
            if done {
                continue;
            }
            tx.execute_batch(sql)
                .map_err(|e| StoreError::Migrate(format!("migration {version} ({description}) failed: {e}")))?;
            tx.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?1, ?2, TRUE, ?3, ?4)",
                rusqlite::params![
                    version,
                    description,
                    Sha384::digest(sql.as_bytes()).as_slice(),
                    i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
                ],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Migrates the database behind `conns` and wraps it.
    fn from_conns(conns: Arc<Conns>) -> Result<SqliteStore, StoreError> {
        {
            let mut conn = conns.get()?;
            Self::migrate(&mut conn, None)?;
            chain_unchained(&mut conn)?;
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (output, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(SqliteStore {
            conns,
            events,
            output,
            queue: Arc::new(Notify::new()),
            audit_head: Arc::new(Mutex::new(None)),
        })
    }

    /// Tells listeners that execution `id` is now in `state`.
    fn announce(&self, id: ExecutionId, state: ExecState) {
        // Nobody listening is fine.
        let _ = self.events.send(ExecEvent { id, state });
    }
}

/// The migrations recorded in the database: version and checksum, in order.
fn applied_migrations(conn: &Connection) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
    let mut stmt = conn.prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Now, in unix milliseconds.
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A duration in milliseconds, saturating.
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads a column, reporting a missing column or an undecodable value as corruption.
fn col<T: FromSql>(row: &Row, name: &str) -> Result<T, StoreError> {
    let i = row
        .names
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| StoreError::Corrupt(format!("no column `{name}`")))?;
    T::column_result(ValueRef::from(&row.values[i])).map_err(|e| StoreError::Corrupt(format!("column `{name}`: {e}")))
}

/// A stored unix-millisecond timestamp as a date.
fn time(ms: i64, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("{what}: timestamp {ms} is out of range")))
}

/// An optional stored timestamp as a date.
fn opt_time(ms: Option<i64>, what: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(|ms| time(ms, what)).transpose()
}

/// Params as stored JSON.
fn params_json(params: &Params) -> Result<String, StoreError> {
    serde_json::to_string(params).map_err(|e| StoreError::Corrupt(format!("params cannot be written as JSON: {e}")))
}

/// Stored JSON as params.
fn parse_params(json: &str, what: &str) -> Result<Params, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: params are not valid JSON: {e}")))
}

/// A stored state name as a state.
fn parse_state(s: &str, what: &str) -> Result<ExecState, StoreError> {
    ExecState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("{what}: unknown state `{s}`")))
}

/// One `executions` row.
fn execution_from_row(row: &Row) -> Result<Execution, StoreError> {
    let id: i64 = col(row, "id")?;
    let what = format!("execution #{id}");
    let state: String = col(row, "state")?;
    let params: String = col(row, "params")?;
    let cancel_requested: i64 = col(row, "cancel_requested")?;
    Ok(Execution {
        id,
        job: col(row, "job")?,
        params: parse_params(&params, &what)?,
        requested_by: UserId {
            platform: col(row, "requested_by_platform")?,
            id: col(row, "requested_by_id")?,
        },
        requester_name: col(row, "requester_name")?,
        place: place_from_row(row)?,
        state: parse_state(&state, &what)?,
        created_at: time(col(row, "created_at")?, &what)?,
        started_at: opt_time(col(row, "started_at")?, &what)?,
        finished_at: opt_time(col(row, "finished_at")?, &what)?,
        exit_code: col(row, "exit_code")?,
        duration_ms: col(row, "duration_ms")?,
        cpu_ms: col(row, "cpu_ms")?,
        max_rss_kb: col(row, "max_rss_kb")?,
        detail: col(row, "detail")?,
        worker: col(row, "worker")?,
        cancel_requested: cancel_requested != 0,
        pgid: col(row, "pgid")?,
    })
}

/// The `place_platform`, `place_channel`, `place_thread` columns every table shares.
fn place_from_row(row: &Row) -> Result<Place, StoreError> {
    Ok(Place {
        platform: col(row, "place_platform")?,
        channel: col(row, "place_channel")?,
        thread: col(row, "place_thread")?,
    })
}

/// Whether an error opening a fresh file comes from another process opening it at the same
/// moment: SQLite answers busy or locked (switching a fresh file to WAL does not wait in the busy
/// handler). Migrations themselves cannot collide: each checks again under `BEGIN IMMEDIATE`.
fn is_open_race(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(rusqlite::Error::SqliteFailure(f, _))
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// One `api_tokens` row.
fn token_from_row(row: &Row) -> Result<ApiToken, StoreError> {
    let id: i64 = col(row, "id")?;
    let what = format!("api token {id}");
    Ok(ApiToken {
        id,
        user: col(row, "user_name")?,
        label: col(row, "label")?,
        created_at: time(col(row, "created_at")?, &what)?,
        last_used_at: opt_time(col(row, "last_used_at")?, &what)?,
        revoked_at: opt_time(col(row, "revoked_at")?, &what)?,
    })
}

/// One `chat_messages` row.
fn chat_from_row(row: &Row) -> Result<ChatMessage, StoreError> {
    let id: i64 = col(row, "id")?;
    let what = format!("chat message {id}");
    let reply: Option<String> = col(row, "reply")?;
    Ok(ChatMessage {
        id,
        channel: col(row, "channel")?,
        author: col(row, "author")?,
        author_name: col(row, "author_name")?,
        text: col(row, "text")?,
        reply: reply
            .map(|r| serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(format!("{what}: reply is not valid JSON: {e}"))))
            .transpose()?,
        card_for: col(row, "card_for")?,
        created_at: time(col(row, "created_at")?, &what)?,
        updated_at: time(col(row, "updated_at")?, &what)?,
    })
}

/// One `dialogs` row.
fn dialog_from_row(row: &Row) -> Result<Dialog, StoreError> {
    let state: String = col(row, "state")?;
    let kind: String = col(row, "kind")?;
    let what = format!("dialog `{kind}`");
    Ok(Dialog {
        place: place_from_row(row)?,
        user: UserId {
            platform: col(row, "user_platform")?,
            id: col(row, "user_id")?,
        },
        state: serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(format!("{what}: state is not valid JSON: {e}")))?,
        expires_at: time(col(row, "expires_at")?, &what)?,
        kind,
    })
}

/// One `audit` row.
fn audit_from_row(row: &Row) -> Result<AuditRecord, StoreError> {
    let id: i64 = col(row, "id")?;
    let what = format!("audit record {id}");
    let params: Option<String> = col(row, "params")?;
    Ok(AuditRecord {
        id,
        at: time(col(row, "at")?, &what)?,
        actor: UserId {
            platform: col(row, "actor_platform")?,
            id: col(row, "actor_id")?,
        },
        actor_name: col(row, "actor_name")?,
        place: place_from_row(row)?,
        action: col(row, "action")?,
        job: col(row, "job")?,
        params: params.map(|p| parse_params(&p, &what)).transpose()?,
        decision: col(row, "decision")?,
        reason: col(row, "reason")?,
        execution_id: col(row, "execution_id")?,
    })
}

/// One `audit` row with its hashes; a row that cannot be read is returned as such.
fn chained_from_row(row: &Row) -> Result<ChainedAudit, StoreError> {
    let id: i64 = col(row, "id")?;
    let hashes = (|| -> Result<(Option<String>, Option<String>), StoreError> { Ok((col(row, "prev_hash")?, col(row, "hash")?)) })();
    let (prev_hash, hash, unreadable) = match hashes {
        Ok((p, h)) => (p, h, None),
        Err(e) => (None, None, Some(format!("its hash columns are not text ({e})"))),
    };
    let record = match unreadable {
        Some(why) => Err(why),
        None => audit_from_row(row).map_err(|e| match e {
            StoreError::Corrupt(why) => why,
            other => other.to_string(),
        }),
    };
    Ok(ChainedAudit {
        id,
        record,
        prev_hash,
        hash,
    })
}

/// The `WHERE` clause of an audit listing (constant fragments, every value bound), numbering
/// its parameters from `$1`; returns it with the values in order and the next parameter number.
fn audit_where(f: &AuditFilter, after_id: Option<i64>) -> (String, Vec<AuditBind<'_>>, usize) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut binds = Vec::new();
    let mut push = |sql: &mut String, fragment: &str, value| {
        binds.push(value);
        sql.push_str(&fragment.replace('?', &format!("${}", binds.len())));
    };
    if let Some(a) = &f.actor {
        push(&mut sql, " AND actor_platform = ?", AuditBind::Text(&a.platform));
        push(&mut sql, " AND actor_id = ?", AuditBind::Text(&a.id));
    }
    for (value, fragment) in [
        (&f.action, " AND action = ?"),
        (&f.job, " AND job = ?"),
        (&f.decision, " AND decision = ?"),
    ] {
        if let Some(v) = value {
            push(&mut sql, fragment, AuditBind::Text(v));
        }
    }
    for (value, fragment) in [
        (f.execution_id, " AND execution_id = ?"),
        (f.before_id, " AND id < ?"),
        (after_id, " AND id > ?"),
        (f.since.map(|t| t.timestamp_millis()), " AND at >= ?"),
        (f.until.map(|t| t.timestamp_millis()), " AND at < ?"),
    ] {
        if let Some(v) = value {
            push(&mut sql, fragment, AuditBind::Int(v));
        }
    }
    let next = binds.len() + 1;
    (sql, binds, next)
}

/// A value bound into an audit listing.
enum AuditBind<'a> {
    Text(&'a str),
    Int(i64),
}

/// The newest audit record's id and hash, and the id the next one gets: above every stored id
/// and every id SQLite ever assigned (`sqlite_sequence`), so an id is never used twice.
fn audit_head(conn: &Connection) -> Result<(i64, String), StoreError> {
    let row = query(
        "SELECT (SELECT hash FROM audit ORDER BY id DESC LIMIT 1) AS head, \
         MAX(COALESCE((SELECT MAX(id) FROM audit), 0), COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit'), 0)) AS last_id",
    )
    .fetch_one(conn)?;
    let head: Option<String> = col(&row, "head")?;
    // A newest record without a hash is reported by verification; new records chain to the
    // start value, as the `audit_chained` trigger expects.
    Ok((col(&row, "last_id")?, head.unwrap_or_else(|| GENESIS_HASH.to_string())))
}

/// Inserts an audit record with its id and hashes.
fn insert_audit(conn: &Connection, r: &AuditRecord, prev_hash: &str, hash: &str) -> Result<(), StoreError> {
    let params = r.params.as_ref().map(params_json).transpose()?;
    query(
        "INSERT INTO audit (id, at, actor_platform, actor_id, actor_name, place_platform, place_channel, \
         place_thread, action, job, params, decision, reason, execution_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(r.id)
    .bind(r.at.timestamp_millis())
    .bind(&r.actor.platform)
    .bind(&r.actor.id)
    .bind(&r.actor_name)
    .bind(&r.place.platform)
    .bind(&r.place.channel)
    .bind(&r.place.thread)
    .bind(&r.action)
    .bind(&r.job)
    .bind(params)
    .bind(&r.decision)
    .bind(&r.reason)
    .bind(r.execution_id)
    .bind(prev_hash)
    .bind(hash)
    .execute(conn)?;
    Ok(())
}

/// Chains the audit records written before migration 6 (listed in `audit_unchained`), in id
/// order, once: under `BEGIN IMMEDIATE`, so of several processes opening the file at once one
/// does it and the others find it done. A record that cannot be read is left without a hash
/// (verification reports it) and the chain goes on from the record before it.
fn chain_unchained(conn: &mut Connection) -> Result<(), StoreError> {
    let pending: Option<i64> = col(&query("SELECT MAX(up_to) AS up_to FROM audit_unchained").fetch_one(conn)?, "up_to")?;
    if pending.is_none() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(up_to): Option<i64> = col(&query("SELECT MAX(up_to) AS up_to FROM audit_unchained").fetch_one(&tx)?, "up_to")? else {
        return Ok(());
    };
    let mut prev = GENESIS_HASH.to_string();
    let (mut after, mut chained) = (0, 0u64);
    loop {
        let rows = query("SELECT * FROM audit WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3")
            .bind(after)
            .bind(up_to)
            .bind(i64::from(crate::AUDIT_PAGE))
            .fetch_all(&tx)?;
        let Some(last) = rows.last() else { break };
        after = col(last, "id")?;
        for row in &rows {
            let link = chained_from_row(row)?;
            if let Some(hash) = link.hash {
                prev = hash;
                continue;
            }
            let record = match link.record {
                Ok(r) => r,
                Err(why) => {
                    tracing::warn!(id = link.id, %why, "an audit record from before the hash chain cannot be read; left without a hash");
                    continue;
                }
            };
            let hash = audit_hash(&prev, &record);
            query("UPDATE audit SET prev_hash = $1, hash = $2 WHERE id = $3")
                .bind(&prev)
                .bind(&hash)
                .bind(link.id)
                .execute(&tx)?;
            prev = hash;
            chained += 1;
        }
    }
    query("DELETE FROM audit_unchained").execute(&tx)?;
    tx.commit()?;
    tracing::info!(records = chained, "audit records from before the hash chain are now chained");
    Ok(())
}

/// Stored JSON as an engine-defined value.
fn parse_json(json: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: not valid JSON: {e}")))
}

/// One `approvals` row.
fn approval_from_row(row: &Row) -> Result<Approval, StoreError> {
    let id: i64 = col(row, "id")?;
    let what = format!("approval request {id}");
    let params: String = col(row, "params")?;
    let requirements: String = col(row, "requirements")?;
    let state: String = col(row, "state")?;
    Ok(Approval {
        id,
        job: col(row, "job")?,
        params: parse_params(&params, &what)?,
        requested_by: UserId {
            platform: col(row, "requested_by_platform")?,
            id: col(row, "requested_by_id")?,
        },
        requester_person: col(row, "requester_person")?,
        requester_name: col(row, "requester_name")?,
        place: place_from_row(row)?,
        requirements: parse_json(&requirements, &format!("{what}: requirements"))?,
        reason: col(row, "reason")?,
        expires_at: time(col(row, "expires_at")?, &what)?,
        state: ApprovalState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("{what}: unknown state `{state}`")))?,
        created_at: time(col(row, "created_at")?, &what)?,
        decided_at: opt_time(col(row, "decided_at")?, &what)?,
        decision_note: col(row, "decision_note")?,
        execution_id: col(row, "execution_id")?,
    })
}

/// One `schedules` row.
fn schedule_from_row(row: &Row) -> Result<Schedule, StoreError> {
    let id: i64 = col(row, "id")?;
    let what = format!("schedule {id}");
    let params: String = col(row, "params")?;
    let state: String = col(row, "state")?;
    let cancelled_platform: Option<String> = col(row, "cancelled_by_platform")?;
    let cancelled_id: Option<String> = col(row, "cancelled_by_id")?;
    Ok(Schedule {
        id,
        job: col(row, "job")?,
        params: parse_params(&params, &what)?,
        requested_by: UserId {
            platform: col(row, "requested_by_platform")?,
            id: col(row, "requested_by_id")?,
        },
        requester_name: col(row, "requester_name")?,
        place: place_from_row(row)?,
        run_at: time(col(row, "run_at")?, &what)?,
        lang: col(row, "lang")?,
        text: col(row, "text")?,
        created_at: time(col(row, "created_at")?, &what)?,
        state: ScheduleState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("{what}: unknown state `{state}`")))?,
        execution_id: col(row, "execution_id")?,
        detail: col(row, "detail")?,
        cancelled_by: match (cancelled_platform, cancelled_id) {
            (Some(platform), Some(id)) => Some(UserId { platform, id }),
            _ => None,
        },
    })
}

/// Schedule rows sorted soonest first (`RETURNING` gives no order).
fn schedules_soonest_first(rows: &[Row]) -> Result<Vec<Schedule>, StoreError> {
    let mut out = rows.iter().map(schedule_from_row).collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|s| (s.run_at, s.id));
    Ok(out)
}

/// A listing or claim limit: 0 means [`DEFAULT_LIST`], at most [`MAX_LIST`].
fn list_limit(limit: u32) -> i64 {
    i64::from(if limit == 0 { DEFAULT_LIST } else { limit.min(MAX_LIST) })
}

/// One `approval_votes` row.
fn vote_from_row(row: &Row) -> Result<Vote, StoreError> {
    let approval_id: i64 = col(row, "approval_id")?;
    let what = format!("vote on approval request {approval_id}");
    let approve: i64 = col(row, "approve")?;
    Ok(Vote {
        approval_id,
        voter: UserId {
            platform: col(row, "voter_platform")?,
            id: col(row, "voter_id")?,
        },
        voter_person: col(row, "voter_person")?,
        voter_name: col(row, "voter_name")?,
        approve: approve != 0,
        reason: col(row, "reason")?,
        at: time(col(row, "at")?, &what)?,
    })
}

/// Who counts as one voter: the person when there is one, else the account.
fn voter_key(vote: &Vote) -> String {
    if vote.voter_person.is_empty() {
        format!("account:{}:{}", vote.voter.platform, vote.voter.id)
    } else {
        format!("person:{}", vote.voter_person)
    }
}

/// One `locks` row.
fn lock_from_row(row: &Row) -> Result<Lock, StoreError> {
    let id: i64 = col(row, "id")?;
    let what = format!("lock {id}");
    let params: String = col(row, "params")?;
    Ok(Lock {
        id,
        scope: col(row, "scope")?,
        job: col(row, "job")?,
        params: parse_params(&params, &what)?,
        reason: col(row, "reason")?,
        by: UserId {
            platform: col(row, "by_platform")?,
            id: col(row, "by_id")?,
        },
        by_name: col(row, "by_name")?,
        at: time(col(row, "at")?, &what)?,
    })
}

/// One `account_links` row.
fn link_from_row(row: &Row) -> Result<AccountLink, StoreError> {
    let account = UserId {
        platform: col(row, "account_platform")?,
        id: col(row, "account_id")?,
    };
    let what = format!("link of account {account}");
    Ok(AccountLink {
        person: col(row, "person")?,
        linked_by: UserId {
            platform: col(row, "linked_by_platform")?,
            id: col(row, "linked_by_id")?,
        },
        at: time(col(row, "at")?, &what)?,
        account,
    })
}

/// Packs output lines into a chunk body: one `<unix_ms> <o|e|s> <text>` per line.
/// Returns the body and the number of text bytes.
fn pack_lines(lines: &[OutputLine]) -> (String, usize) {
    let mut body = String::with_capacity(lines.iter().map(|l| l.text.len() + 20).sum());
    let mut bytes = 0;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            body.push('\n');
        }
        body.push_str(&line.at.timestamp_millis().to_string());
        body.push(' ');
        body.push(line.stream.code());
        body.push(' ');
        if line.text.contains(['\n', '\r']) {
            body.push_str(&line.text.replace(['\n', '\r'], " "));
        } else {
            body.push_str(&line.text);
        }
        bytes += line.text.len();
    }
    (body, bytes)
}

/// Unpacks a chunk body written by [`pack_lines`], checking it holds `n_lines` lines.
fn unpack_lines(body: &str, n_lines: i64, what: &str) -> Result<Vec<OutputLine>, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("{what}: {why}"));
    let mut out = Vec::new();
    for piece in body.split('\n') {
        let mut parts = piece.splitn(3, ' ');
        let ms: i64 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("an output line has no timestamp"))?;
        let mut code = parts.next().unwrap_or("").chars();
        let stream = match (code.next(), code.next()) {
            (Some(c), None) => Stream::from_code(c),
            _ => None,
        }
        .ok_or_else(|| corrupt("an output line has no stream code"))?;
        let text = parts.next().ok_or_else(|| corrupt("an output line has no text"))?;
        out.push(OutputLine {
            at: time(ms, what)?,
            stream,
            text: text.to_string(),
        });
    }
    if i64::try_from(out.len()).ok() != Some(n_lines) {
        return Err(corrupt(&format!("the chunk says {n_lines} lines but holds {}", out.len())));
    }
    Ok(out)
}

/// One `output_chunks` row's lines.
fn chunk_from_row(row: &Row, id: ExecutionId) -> Result<Vec<OutputLine>, StoreError> {
    let seq: i64 = col(row, "seq")?;
    let n_lines: i64 = col(row, "n_lines")?;
    let body: String = col(row, "body")?;
    unpack_lines(&body, n_lines, &format!("output chunk {seq} of execution #{id}"))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_execution(&self, new: &NewExecution) -> Result<Execution, StoreError> {
        let row = query(
            "INSERT INTO executions (job, params, requested_by_platform, requested_by_id, requester_name, \
             place_platform, place_channel, place_thread, state, created_at, cancel_requested, max_parallel) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, 0, $10) RETURNING *",
        )
        .bind(&new.job)
        .bind(params_json(&new.params)?)
        .bind(&new.requested_by.platform)
        .bind(&new.requested_by.id)
        .bind(&new.requester_name)
        .bind(&new.place.platform)
        .bind(&new.place.channel)
        .bind(&new.place.thread)
        .bind(now_ms())
        .bind(new.max_parallel.map(i64::from))
        .returning(&*self.conn()?)?
        .ok_or_else(no_row)?;
        let execution = execution_from_row(&row)?;
        // Wake the workers already waiting, and leave a permit for one about to wait.
        self.queue.notify_waiters();
        self.queue.notify_one();
        Ok(execution)
    }

    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        let row = query("SELECT * FROM executions WHERE id = $1")
            .bind(id)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref().map(execution_from_row).transpose()
    }

    async fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, StoreError> {
        let limit = if filter.limit == 0 {
            DEFAULT_LIST
        } else {
            filter.limit.min(MAX_LIST)
        };
        // Only the conditions asked for, so SQLite can use the matching index. The SQL is
        // made of constant fragments; every value is bound.
        let mut sql = String::from("SELECT * FROM executions WHERE 1 = 1");
        let mut n = 0;
        let mut param = |sql: &mut String, fragment: &str| {
            n += 1;
            sql.push_str(&fragment.replace('?', &format!("${n}")));
        };
        if filter.job.is_some() {
            param(&mut sql, " AND job = ?");
        }
        if filter.requested_by.is_some() {
            param(&mut sql, " AND requested_by_platform = ?");
            param(&mut sql, " AND requested_by_id = ?");
        }
        if filter.state.is_some() {
            param(&mut sql, " AND state = ?");
        }
        if filter.before_id.is_some() {
            param(&mut sql, " AND id < ?");
        }
        if filter.since.is_some() {
            param(&mut sql, " AND created_at >= ?");
        }
        if filter.until.is_some() {
            param(&mut sql, " AND created_at < ?");
        }
        param(&mut sql, " ORDER BY id DESC LIMIT ?");

        let mut query = query(sql);
        if let Some(job) = &filter.job {
            query = query.bind(job);
        }
        if let Some(user) = &filter.requested_by {
            query = query.bind(&user.platform).bind(&user.id);
        }
        if let Some(state) = filter.state {
            query = query.bind(state.as_str());
        }
        if let Some(before) = filter.before_id {
            query = query.bind(before);
        }
        for t in [filter.since, filter.until].into_iter().flatten() {
            query = query.bind(t.timestamp_millis());
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&*self.conn()?)?;
        rows.iter().map(execution_from_row).collect()
    }

    async fn claim(&self, worker: &str, lease: Duration, only: Option<ExecutionId>) -> Result<Option<Execution>, StoreError> {
        let now = now_ms();
        // One statement: SQLite runs it under the write lock, so two processes sharing the
        // file never claim the same row.
        let row = query(
            "UPDATE executions SET state = 'running', worker = $1, started_at = $2, lease_until = $3 \
             WHERE id = ( \
                 SELECT e.id FROM executions e \
                 WHERE e.state = 'queued' AND ($4 IS NULL OR e.id = $4) \
                   AND (e.max_parallel IS NULL OR \
                        (SELECT COUNT(*) FROM executions r WHERE r.job = e.job AND r.state = 'running') < e.max_parallel) \
                 ORDER BY e.id LIMIT 1) \
             RETURNING *",
        )
        .bind(worker)
        .bind(now)
        .bind(now.saturating_add(duration_ms(lease)))
        .bind(only)
        .returning(&*self.conn()?)?;
        let Some(row) = row else { return Ok(None) };
        let execution = execution_from_row(&row)?;
        self.announce(execution.id, execution.state);
        Ok(Some(execution))
    }

    async fn finish(&self, id: ExecutionId, finish: &Finish) -> Result<(), StoreError> {
        let state = match finish.state {
            Some(state) if state.is_final() => state,
            other => {
                let inferred = if finish.exit_code == Some(0) {
                    ExecState::Succeeded
                } else {
                    ExecState::Failed
                };
                if let Some(given) = other {
                    tracing::warn!(execution = id, %given, %inferred, "finish with a state that is not final");
                }
                inferred
            }
        };
        let row = query(
            "UPDATE executions SET state = $2, finished_at = $3, exit_code = $4, duration_ms = $5, cpu_ms = $6, \
             max_rss_kb = $7, detail = $8, lease_until = NULL \
             WHERE id = $1 AND state = 'running' RETURNING id",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(now_ms())
        .bind(finish.exit_code)
        .bind(finish.duration_ms)
        .bind(finish.cpu_ms)
        .bind(finish.max_rss_kb)
        .bind(&finish.detail)
        .returning(&*self.conn()?)?;
        match row {
            Some(_) => self.announce(id, state),
            None => tracing::debug!(execution = id, "finish ignored: the execution is not running"),
        }
        Ok(())
    }

    async fn request_cancel(&self, id: ExecutionId) -> Result<CancelResult, StoreError> {
        // States only move forward (queued → running → final), so this settles within a few
        // rounds even when a worker claims or finishes it meanwhile.
        loop {
            let cancelled = query(
                "UPDATE executions SET state = 'cancelled', finished_at = $2, cancel_requested = 1, \
                 detail = 'cancelled before it started', lease_until = NULL \
                 WHERE id = $1 AND state = 'queued' RETURNING id",
            )
            .bind(id)
            .bind(now_ms())
            .returning(&*self.conn()?)?;
            if cancelled.is_some() {
                self.announce(id, ExecState::Cancelled);
                return Ok(CancelResult::CancelledQueued);
            }
            let requested = query("UPDATE executions SET cancel_requested = 1 WHERE id = $1 AND state = 'running' RETURNING id")
                .bind(id)
                .returning(&*self.conn()?)?;
            if requested.is_some() {
                return Ok(CancelResult::Requested);
            }
            let row = query("SELECT state FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(&*self.conn()?)?;
            let Some(row) = row else {
                return Ok(CancelResult::NotFound);
            };
            let state: String = col(&row, "state")?;
            let state = parse_state(&state, &format!("execution #{id}"))?;
            if state.is_final() {
                return Ok(CancelResult::AlreadyFinished(state));
            }
        }
    }

    async fn cancel_requested(&self, worker: &str) -> Result<Vec<ExecutionId>, StoreError> {
        let rows = query("SELECT id FROM executions WHERE state = 'running' AND worker = $1 AND cancel_requested = 1 ORDER BY id")
            .bind(worker)
            .fetch_all(&*self.conn()?)?;
        rows.iter().map(|row| col(row, "id")).collect()
    }

    async fn set_pgid(&self, id: ExecutionId, pgid: i64) -> Result<(), StoreError> {
        query("UPDATE executions SET pgid = $1 WHERE id = $2 AND state = 'running'")
            .bind(pgid)
            .bind(id)
            .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn heartbeat(&self, worker: &str, lease: Duration) -> Result<(), StoreError> {
        query("UPDATE executions SET lease_until = $2 WHERE state = 'running' AND worker = $1")
            .bind(worker)
            .bind(now_ms().saturating_add(duration_ms(lease)))
            .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn recover_lost(&self, is_dead: &IsDead<'_>) -> Result<Vec<Execution>, StoreError> {
        let now = now_ms();
        let running =
            query("SELECT id, worker, lease_until FROM executions WHERE state = 'running' ORDER BY id").fetch_all(&*self.conn()?)?;
        let mut lost = Vec::new();
        for row in &running {
            let id: i64 = col(row, "id")?;
            let worker: Option<String> = col(row, "worker")?;
            let lease_until: Option<i64> = col(row, "lease_until")?;
            let worker = worker.unwrap_or_else(|| "unknown".to_string());
            let expired = lease_until.is_none_or(|until| until < now);
            if !expired && !is_dead(&worker) {
                continue;
            }
            // Re-checks `running`: it may have finished since the select.
            let row = query(
                "UPDATE executions SET state = 'lost', finished_at = $2, detail = $3, lease_until = NULL \
                 WHERE id = $1 AND state = 'running' RETURNING *",
            )
            .bind(id)
            .bind(now)
            .bind(format!("its worker {worker} stopped before it finished"))
            .returning(&*self.conn()?)?;
            if let Some(row) = row {
                let execution = execution_from_row(&row)?;
                tracing::warn!(execution = id, %worker, "execution lost");
                self.announce(id, ExecState::Lost);
                lost.push(execution);
            }
        }
        Ok(lost)
    }

    async fn append_output(&self, id: ExecutionId, lines: &[OutputLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let (body, bytes) = pack_lines(lines);
        // One statement, so the next sequence number cannot be taken twice.
        query(
            "INSERT INTO output_chunks (execution_id, seq, n_lines, n_bytes, body) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM output_chunks WHERE execution_id = $1",
        )
        .bind(id)
        .bind(i64::try_from(lines.len()).unwrap_or(i64::MAX))
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(body)
        .execute(&*self.conn()?)?;
        let _ = self.output.send(id);
        Ok(())
    }

    async fn output_tail(&self, id: ExecutionId, n: usize) -> Result<(Vec<OutputLine>, u64), StoreError> {
        // The newest page of chunks and the line count come from one statement (one snapshot:
        // the count covers exactly the chunks stored so far); older pages, when those are not
        // enough lines, are read from there back, so a chunk stored in between cannot shift
        // them (chunks are append-only).
        let first = query(
            "SELECT seq, n_lines, body, \
             (SELECT COALESCE(SUM(n_lines), 0) FROM output_chunks WHERE execution_id = $1) AS total \
             FROM output_chunks WHERE execution_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(id)
        .bind(TAIL_PAGE)
        .fetch_all(&*self.conn()?)?;
        let total: i64 = match first.first() {
            Some(row) => col(row, "total")?,
            None => 0,
        };
        let total = u64::try_from(total).map_err(|_| StoreError::Corrupt(format!("execution #{id}: negative line count")))?;
        let mut chunks: Vec<Vec<OutputLine>> = Vec::new();
        let mut have = 0usize;
        let mut rows = first;
        loop {
            let full_page = rows.len() as i64 == TAIL_PAGE;
            let mut before = None;
            for row in &rows {
                before = Some(col::<i64>(row, "seq")?);
                let lines = chunk_from_row(row, id)?;
                have += lines.len();
                chunks.push(lines);
                if have >= n {
                    break;
                }
            }
            // Enough lines, or no older chunks.
            let Some(before) = before.filter(|_| have < n && full_page) else {
                break;
            };
            rows = query(
                "SELECT seq, n_lines, body FROM output_chunks WHERE execution_id = $1 AND seq < $2 \
                 ORDER BY seq DESC LIMIT $3",
            )
            .bind(id)
            .bind(before)
            .bind(TAIL_PAGE)
            .fetch_all(&*self.conn()?)?;
        }
        let mut lines: Vec<OutputLine> = chunks.into_iter().rev().flatten().collect();
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
        Ok((lines, total))
    }

    async fn output_range(&self, id: ExecutionId, skip: u64, max: usize) -> Result<Vec<OutputLine>, StoreError> {
        // Find the chunks covering lines skip..skip+max from their line counts, then read only those.
        let counts = query("SELECT seq, n_lines FROM output_chunks WHERE execution_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&*self.conn()?)?;
        let (mut first_seq, mut last_seq, mut before_first, mut seen) = (None, None, 0u64, 0u64);
        for row in &counts {
            let seq: i64 = col(row, "seq")?;
            let n: i64 = col(row, "n_lines")?;
            let n = n.max(0) as u64;
            if first_seq.is_none() && seen + n > skip {
                first_seq = Some(seq);
                before_first = seen;
            }
            seen += n;
            if first_seq.is_some() {
                last_seq = Some(seq);
                if seen >= skip.saturating_add(max as u64) {
                    break;
                }
            }
        }
        let (Some(first), Some(last)) = (first_seq, last_seq) else {
            return Ok(Vec::new());
        };
        let rows = query("SELECT seq, n_lines, body FROM output_chunks WHERE execution_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq")
            .bind(id)
            .bind(first)
            .bind(last)
            .fetch_all(&*self.conn()?)?;
        let mut lines = Vec::new();
        for row in &rows {
            lines.extend(chunk_from_row(row, id)?);
        }
        let start = (skip - before_first) as usize;
        Ok(lines.into_iter().skip(start).take(max).collect())
    }

    async fn output_all(&self, id: ExecutionId) -> Result<Vec<OutputLine>, StoreError> {
        let rows = query("SELECT seq, n_lines, body FROM output_chunks WHERE execution_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&*self.conn()?)?;
        let mut lines = Vec::new();
        for row in &rows {
            lines.extend(chunk_from_row(row, id)?);
        }
        Ok(lines)
    }

    async fn put_dialog(&self, dialog: &Dialog) -> Result<(), StoreError> {
        query(
            "INSERT INTO dialogs (place_key, user_platform, user_id, place_platform, place_channel, place_thread, \
             kind, state, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (place_key, user_platform, user_id) DO UPDATE SET \
             place_platform = excluded.place_platform, place_channel = excluded.place_channel, \
             place_thread = excluded.place_thread, kind = excluded.kind, state = excluded.state, \
             expires_at = excluded.expires_at",
        )
        .bind(dialog.place.key())
        .bind(&dialog.user.platform)
        .bind(&dialog.user.id)
        .bind(&dialog.place.platform)
        .bind(&dialog.place.channel)
        .bind(&dialog.place.thread)
        .bind(&dialog.kind)
        .bind(dialog.state.to_string())
        .bind(dialog.expires_at.timestamp_millis())
        .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn dialog(&self, place: &Place, user: &UserId) -> Result<Option<Dialog>, StoreError> {
        let row = query("SELECT * FROM dialogs WHERE place_key = $1 AND user_platform = $2 AND user_id = $3")
            .bind(place.key())
            .bind(&user.platform)
            .bind(&user.id)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref().map(dialog_from_row).transpose()
    }

    async fn delete_dialog(&self, place: &Place, user: &UserId) -> Result<bool, StoreError> {
        let changed = query("DELETE FROM dialogs WHERE place_key = $1 AND user_platform = $2 AND user_id = $3")
            .bind(place.key())
            .bind(&user.platform)
            .bind(&user.id)
            .execute(&*self.conn()?)?;
        Ok(changed == 1)
    }

    async fn audit(&self, record: &AuditRecord) -> Result<i64, StoreError> {
        let mut head = self.audit_head.lock().await;
        // Fast path: chain to the head this store knows. One statement; the trigger refuses it
        // if another connection or process appended since.
        if let Some((last_id, prev)) = head.take() {
            let r = AuditRecord {
                id: last_id + 1,
                ..record.clone()
            };
            let hash = audit_hash(&prev, &r);
            match insert_audit(&*self.conn()?, &r, &prev, &hash) {
                Ok(()) => {
                    *head = Some((r.id, hash));
                    return Ok(r.id);
                }
                Err(e) => tracing::debug!(error = %e, "audit head moved; appending under the write lock"),
            }
        }
        // Under the write lock from before the head is read until the record is in.
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (last_id, prev) = audit_head(&tx)?;
        let r = AuditRecord {
            id: last_id + 1,
            ..record.clone()
        };
        let hash = audit_hash(&prev, &r);
        insert_audit(&tx, &r, &prev, &hash)?;
        tx.commit()?;
        *head = Some((r.id, hash));
        Ok(r.id)
    }

    async fn audit_query(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = if f.limit == 0 { 50 } else { f.limit.min(MAX_LIST) };
        let (clause, binds, n) = audit_where(f, None);
        let sql = format!("SELECT * FROM audit{clause} ORDER BY id DESC LIMIT ${n}");
        let mut q = query(sql);
        for b in binds {
            q = match b {
                AuditBind::Text(s) => q.bind(s),
                AuditBind::Int(v) => q.bind(v),
            };
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&*self.conn()?)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_chain(&self, f: &AuditFilter, after_id: i64, limit: u32) -> Result<Vec<ChainedAudit>, StoreError> {
        let (clause, binds, n) = audit_where(f, Some(after_id));
        let sql = format!("SELECT * FROM audit{clause} ORDER BY id LIMIT ${n}");
        let mut q = query(sql);
        for b in binds {
            q = match b {
                AuditBind::Text(s) => q.bind(s),
                AuditBind::Int(v) => q.bind(v),
            };
        }
        let rows = q.bind(i64::from(limit.clamp(1, MAX_LIST))).fetch_all(&*self.conn()?)?;
        rows.iter().map(chained_from_row).collect()
    }

    async fn create_token(&self, user: &str, label: &str, sha256: &str) -> Result<ApiToken, StoreError> {
        let row = query("INSERT INTO api_tokens (user_name, label, token_sha256, created_at) VALUES ($1, $2, $3, $4) RETURNING *")
            .bind(user)
            .bind(label)
            .bind(sha256)
            .bind(now_ms())
            .returning(&*self.conn()?)?
            .ok_or_else(no_row)?;
        token_from_row(&row)
    }

    async fn token_by_hash(&self, sha256: &str) -> Result<Option<ApiToken>, StoreError> {
        // A read for every request; the write of `last_used_at` only for a valid token and at
        // most once a minute, so bogus tokens never take the write lock.
        let row = query("SELECT * FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL")
            .bind(sha256)
            .fetch_optional(&*self.conn()?)?;
        let Some(mut token) = row.as_ref().map(token_from_row).transpose()? else {
            return Ok(None);
        };
        let now = Utc::now();
        if token.last_used_at.is_none_or(|t| now - t > chrono::Duration::seconds(60)) {
            query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now.timestamp_millis())
                .bind(token.id)
                .execute(&*self.conn()?)?;
            token.last_used_at = Some(now);
        }
        Ok(Some(token))
    }

    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        let changed = query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&*self.conn()?)?;
        Ok(changed == 1)
    }

    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = query("SELECT * FROM api_tokens ORDER BY id").fetch_all(&*self.conn()?)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn create_session(&self, session: &WebSession) -> Result<(), StoreError> {
        query("INSERT INTO web_sessions (id_sha256, user_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&session.id_sha256)
            .bind(&session.user)
            .bind(&session.csrf)
            .bind(session.created_at.timestamp_millis())
            .bind(session.expires_at.timestamp_millis())
            .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn session_by_hash(&self, id_sha256: &str) -> Result<Option<WebSession>, StoreError> {
        let row = query("SELECT * FROM web_sessions WHERE id_sha256 = $1 AND expires_at > $2")
            .bind(id_sha256)
            .bind(now_ms())
            .fetch_optional(&*self.conn()?)?;
        row.as_ref()
            .map(|row| {
                let what = "web session";
                Ok(WebSession {
                    id_sha256: col(row, "id_sha256")?,
                    user: col(row, "user_name")?,
                    csrf: col(row, "csrf")?,
                    created_at: time(col(row, "created_at")?, what)?,
                    expires_at: time(col(row, "expires_at")?, what)?,
                })
            })
            .transpose()
    }

    async fn delete_session(&self, id_sha256: &str) -> Result<bool, StoreError> {
        let changed = query("DELETE FROM web_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&*self.conn()?)?;
        Ok(changed > 0)
    }

    async fn delete_user_sessions(&self, user: &str) -> Result<u64, StoreError> {
        let changed = query("DELETE FROM web_sessions WHERE user_name = $1")
            .bind(user)
            .execute(&*self.conn()?)?;
        Ok(changed)
    }

    async fn purge_sessions(&self) -> Result<u64, StoreError> {
        let changed = query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&*self.conn()?)?;
        Ok(changed)
    }

    async fn generated_password(&self, user: &str) -> Result<Option<String>, StoreError> {
        let row = query("SELECT hash FROM web_passwords WHERE user_name = $1")
            .bind(user)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref().map(|r| col(r, "hash")).transpose()
    }

    async fn put_generated_password(&self, user: &str, hash: &str) -> Result<(String, bool), StoreError> {
        let changed =
            query("INSERT INTO web_passwords (user_name, hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_name) DO NOTHING")
                .bind(user)
                .bind(hash)
                .bind(now_ms())
                .execute(&*self.conn()?)?;
        if changed > 0 {
            return Ok((hash.to_string(), true));
        }
        let stored = self
            .generated_password(user)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("the generated password of `{user}` vanished while being stored")))?;
        Ok((stored, false))
    }

    async fn delete_generated_password(&self, user: &str) -> Result<bool, StoreError> {
        let changed = query("DELETE FROM web_passwords WHERE user_name = $1")
            .bind(user)
            .execute(&*self.conn()?)?;
        Ok(changed > 0)
    }

    async fn post_chat(&self, m: &NewChatMessage) -> Result<ChatMessage, StoreError> {
        let now = now_ms();
        let reply = m.reply.as_ref().map(serde_json::Value::to_string);
        let row = query(
            "INSERT INTO chat_messages (channel, author, author_name, text, reply, card_for, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
        )
        .bind(&m.channel)
        .bind(&m.author)
        .bind(&m.author_name)
        .bind(&m.text)
        .bind(reply)
        .bind(m.card_for)
        .bind(now)
        .returning(&*self.conn()?)?
        .ok_or_else(no_row)?;
        chat_from_row(&row)
    }

    async fn chat_history(&self, channel: &str, before: Option<i64>, limit: u32) -> Result<Vec<ChatMessage>, StoreError> {
        let rows = query("SELECT * FROM chat_messages WHERE channel = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            .bind(channel)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit.min(MAX_LIST)))
            .fetch_all(&*self.conn()?)?;
        let mut out = rows.iter().map(chat_from_row).collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    async fn update_chat_cards(&self, execution: ExecutionId, reply: &serde_json::Value) -> Result<Vec<ChatMessage>, StoreError> {
        let rows = query("UPDATE chat_messages SET reply = $1, updated_at = $2 WHERE card_for = $3 RETURNING *")
            .bind(reply.to_string())
            .bind(now_ms())
            .bind(execution)
            .fetch_all(&*self.conn()?)?;
        let mut out = rows.iter().map(chat_from_row).collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    async fn create_approval(&self, new: &NewApproval) -> Result<Approval, StoreError> {
        let row = query(
            "INSERT INTO approvals (job, params, requested_by_platform, requested_by_id, requester_person, requester_name, \
             place_platform, place_channel, place_thread, requirements, reason, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13) RETURNING *",
        )
        .bind(&new.job)
        .bind(params_json(&new.params)?)
        .bind(&new.requested_by.platform)
        .bind(&new.requested_by.id)
        .bind(&new.requester_person)
        .bind(&new.requester_name)
        .bind(&new.place.platform)
        .bind(&new.place.channel)
        .bind(&new.place.thread)
        .bind(new.requirements.to_string())
        .bind(&new.reason)
        .bind(now_ms())
        .bind(new.expires_at.timestamp_millis())
        .returning(&*self.conn()?)?
        .ok_or_else(no_row)?;
        approval_from_row(&row)
    }

    async fn approval(&self, id: i64) -> Result<Option<Approval>, StoreError> {
        let row = query("SELECT * FROM approvals WHERE id = $1")
            .bind(id)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref().map(approval_from_row).transpose()
    }

    async fn approvals(&self, pending_only: bool, limit: u32) -> Result<Vec<Approval>, StoreError> {
        let limit = if limit == 0 { DEFAULT_LIST } else { limit.min(MAX_LIST) };
        let query = if pending_only {
            query("SELECT * FROM approvals WHERE state = 'pending' ORDER BY id DESC LIMIT $1")
        } else {
            query("SELECT * FROM approvals ORDER BY id DESC LIMIT $1")
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&*self.conn()?)?;
        rows.iter().map(approval_from_row).collect()
    }

    async fn add_vote(&self, vote: &Vote) -> Result<bool, StoreError> {
        // The unique indexes decide, inside the INSERT: of two votes by the same person only
        // one gets in, whatever the timing.
        let changed = query(
            "INSERT INTO approval_votes (approval_id, voter_key, voter_platform, voter_id, voter_person, voter_name, \
             approve, reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(vote.approval_id)
        .bind(voter_key(vote))
        .bind(&vote.voter.platform)
        .bind(&vote.voter.id)
        .bind(&vote.voter_person)
        .bind(&vote.voter_name)
        .bind(i64::from(vote.approve))
        .bind(&vote.reason)
        .bind(vote.at.timestamp_millis())
        .execute(&*self.conn()?)?;
        Ok(changed == 1)
    }

    async fn votes(&self, approval_id: i64) -> Result<Vec<Vote>, StoreError> {
        let rows = query("SELECT * FROM approval_votes WHERE approval_id = $1 ORDER BY id")
            .bind(approval_id)
            .fetch_all(&*self.conn()?)?;
        rows.iter().map(vote_from_row).collect()
    }

    async fn decide_approval(&self, id: i64, state: ApprovalState, note: Option<&str>) -> Result<bool, StoreError> {
        if state == ApprovalState::Pending {
            return Ok(false);
        }
        let changed = query("UPDATE approvals SET state = $1, decided_at = $2, decision_note = $3 WHERE id = $4 AND state = 'pending'")
            .bind(state.as_str())
            .bind(now_ms())
            .bind(note)
            .bind(id)
            .execute(&*self.conn()?)?;
        Ok(changed == 1)
    }

    async fn set_approval_execution(&self, id: i64, execution: ExecutionId) -> Result<(), StoreError> {
        query("UPDATE approvals SET execution_id = $1 WHERE id = $2")
            .bind(execution)
            .bind(id)
            .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn put_lock(&self, lock: &NewLock) -> Result<Result<Lock, Lock>, StoreError> {
        let scope = Lock::scope_of(lock.job.as_deref(), &lock.params);
        let params = params_json(&lock.params)?;
        // The unique scope decides, inside the INSERT. When it is taken, the lock in the way
        // is read; if it was removed in between, try again.
        for _ in 0..LOCK_ATTEMPTS {
            let row = query(
                "INSERT INTO locks (scope, job, params, reason, by_platform, by_id, by_name, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (scope) DO NOTHING RETURNING *",
            )
            .bind(&scope)
            .bind(&lock.job)
            .bind(&params)
            .bind(&lock.reason)
            .bind(&lock.by.platform)
            .bind(&lock.by.id)
            .bind(&lock.by_name)
            .bind(now_ms())
            .returning(&*self.conn()?)?;
            if let Some(row) = row {
                return Ok(Ok(lock_from_row(&row)?));
            }
            let existing = query("SELECT * FROM locks WHERE scope = $1")
                .bind(&scope)
                .fetch_optional(&*self.conn()?)?;
            if let Some(row) = existing {
                return Ok(Err(lock_from_row(&row)?));
            }
        }
        Err(StoreError::Corrupt(format!(
            "the lock `{scope}` kept being taken and released while being taken"
        )))
    }

    async fn locks(&self) -> Result<Vec<Lock>, StoreError> {
        let rows = query("SELECT * FROM locks ORDER BY id").fetch_all(&*self.conn()?)?;
        rows.iter().map(lock_from_row).collect()
    }

    async fn delete_lock(&self, scope: &str) -> Result<Option<Lock>, StoreError> {
        let row = query("DELETE FROM locks WHERE scope = $1 RETURNING *")
            .bind(scope)
            .returning(&*self.conn()?)?;
        row.as_ref().map(lock_from_row).transpose()
    }

    async fn create_link_code(&self, code_sha256: &str, account: &UserId, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        query(
            "INSERT INTO link_codes (account_platform, account_id, code_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_platform, account_id) DO UPDATE SET \
             code_sha256 = excluded.code_sha256, created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(&account.platform)
        .bind(&account.id)
        .bind(code_sha256)
        .bind(now_ms())
        .bind(expires_at.timestamp_millis())
        .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn take_link_code(&self, code_sha256: &str) -> Result<Option<(UserId, DateTime<Utc>)>, StoreError> {
        let row = query("DELETE FROM link_codes WHERE code_sha256 = $1 RETURNING account_platform, account_id, expires_at")
            .bind(code_sha256)
            .returning(&*self.conn()?)?;
        row.as_ref()
            .map(|row| {
                let account = UserId {
                    platform: col(row, "account_platform")?,
                    id: col(row, "account_id")?,
                };
                let expires_at = time(col(row, "expires_at")?, &format!("link code of account {account}"))?;
                Ok((account, expires_at))
            })
            .transpose()
    }

    async fn link_account(&self, link: &AccountLink) -> Result<(), StoreError> {
        query(
            "INSERT INTO account_links (account_platform, account_id, person, linked_by_platform, linked_by_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_platform, account_id) DO UPDATE SET \
             person = excluded.person, linked_by_platform = excluded.linked_by_platform, \
             linked_by_id = excluded.linked_by_id, at = excluded.at",
        )
        .bind(&link.account.platform)
        .bind(&link.account.id)
        .bind(&link.person)
        .bind(&link.linked_by.platform)
        .bind(&link.linked_by.id)
        .bind(link.at.timestamp_millis())
        .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn linked_person(&self, account: &UserId) -> Result<Option<String>, StoreError> {
        let row = query("SELECT person FROM account_links WHERE account_platform = $1 AND account_id = $2")
            .bind(&account.platform)
            .bind(&account.id)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref().map(|r| col(r, "person")).transpose()
    }

    async fn account_links(&self, person: Option<&str>) -> Result<Vec<AccountLink>, StoreError> {
        let rows = match person {
            Some(person) => query("SELECT * FROM account_links WHERE person = $1 ORDER BY account_platform, account_id")
                .bind(person)
                .fetch_all(&*self.conn()?)?,
            None => query("SELECT * FROM account_links ORDER BY person, account_platform, account_id").fetch_all(&*self.conn()?)?,
        };
        rows.iter().map(link_from_row).collect()
    }

    async fn unlink_account(&self, account: &UserId) -> Result<bool, StoreError> {
        let changed = query("DELETE FROM account_links WHERE account_platform = $1 AND account_id = $2")
            .bind(&account.platform)
            .bind(&account.id)
            .execute(&*self.conn()?)?;
        Ok(changed == 1)
    }

    async fn outbox_push(&self, msg: &NewOutgoing) -> Result<i64, StoreError> {
        let row = query(
            "INSERT INTO outbox (adapter, channel, thread, kind, execution_id, reply, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&msg.place.platform)
        .bind(&msg.place.channel)
        .bind(&msg.place.thread)
        .bind(msg.kind.as_str())
        .bind(msg.execution)
        .bind(msg.reply.to_string())
        .bind(now_ms())
        .returning(&*self.conn()?)?
        .ok_or_else(no_row)?;
        col(&row, "id")
    }

    async fn outbox_pending(&self, adapter: &str, skip: &[String], limit: u32) -> Result<Vec<Outgoing>, StoreError> {
        // The place key as Place::key builds it: adapter/channel[/thread].
        let rows = query(
            "SELECT * FROM outbox WHERE adapter = $1 AND done_at IS NULL \
             AND (adapter || '/' || channel || COALESCE('/' || thread, '')) NOT IN (SELECT value FROM json_each($2)) \
             ORDER BY id LIMIT $3",
        )
        .bind(adapter)
        .bind(serde_json::to_string(skip).unwrap_or_else(|_| "[]".into()))
        .bind(limit as i64)
        .fetch_all(&*self.conn()?)?;
        rows.iter()
            .map(|row| {
                let id: i64 = col(row, "id")?;
                let kind: String = col(row, "kind")?;
                let reply: String = col(row, "reply")?;
                Ok(Outgoing {
                    id,
                    place: Place {
                        platform: col(row, "adapter")?,
                        channel: col(row, "channel")?,
                        thread: col(row, "thread")?,
                    },
                    kind: OutKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("outbox message {id} has the kind `{kind}`")))?,
                    execution: col(row, "execution_id")?,
                    reply: serde_json::from_str(&reply).map_err(|e| StoreError::Corrupt(format!("outbox message {id}: {e}")))?,
                    created_at: time(col(row, "created_at")?, "outbox message")?,
                    attempts: col(row, "attempts")?,
                })
            })
            .collect()
    }

    async fn outbox_done(&self, id: i64, outcome: &str, error: Option<&str>) -> Result<(), StoreError> {
        query("UPDATE outbox SET done_at = $1, outcome = $2, last_error = COALESCE($3, last_error) WHERE id = $4 AND done_at IS NULL")
            .bind(now_ms())
            .bind(outcome)
            .bind(error)
            .bind(id)
            .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        query("UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn outbox_backlog(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = query("SELECT adapter, COUNT(*) AS n FROM outbox WHERE done_at IS NULL GROUP BY adapter ORDER BY adapter")
            .fetch_all(&*self.conn()?)?;
        rows.iter()
            .map(|r| Ok((col(r, "adapter")?, col::<i64>(r, "n")?.max(0) as u64)))
            .collect()
    }

    async fn outbox_prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let changed = query("DELETE FROM outbox WHERE done_at IS NOT NULL AND done_at < $1")
            .bind(before.timestamp_millis())
            .execute(&*self.conn()?)?;
        Ok(changed)
    }

    async fn put_chat_card(&self, card: &ChatCard) -> Result<(), StoreError> {
        query(
            "INSERT INTO chat_cards (adapter, channel, thread, execution_id, message_id, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (adapter, channel, thread, execution_id) DO UPDATE SET \
             message_id = COALESCE(excluded.message_id, chat_cards.message_id), state = excluded.state",
        )
        .bind(&card.place.platform)
        .bind(&card.place.channel)
        .bind(card.place.thread.as_deref().unwrap_or(""))
        .bind(card.execution)
        .bind(&card.message_id)
        .bind(card.state.as_str())
        .bind(now_ms())
        .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn chat_cards_of(&self, execution: ExecutionId) -> Result<Vec<ChatCard>, StoreError> {
        let rows = query("SELECT * FROM chat_cards WHERE execution_id = $1 ORDER BY created_at, adapter, channel")
            .bind(execution)
            .fetch_all(&*self.conn()?)?;
        rows.iter()
            .map(|r| {
                let thread: String = col(r, "thread")?;
                let state: String = col(r, "state")?;
                Ok(ChatCard {
                    place: Place {
                        platform: col(r, "adapter")?,
                        channel: col(r, "channel")?,
                        thread: (!thread.is_empty()).then_some(thread),
                    },
                    execution,
                    message_id: col(r, "message_id")?,
                    state: parse_state(&state, "chat card")?,
                })
            })
            .collect()
    }

    async fn adapter_value(&self, adapter: &str, key: &str) -> Result<Option<String>, StoreError> {
        let row = query("SELECT value FROM adapter_state WHERE adapter = $1 AND key = $2")
            .bind(adapter)
            .bind(key)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref().map(|r| col(r, "value")).transpose()
    }

    async fn put_adapter_value(&self, adapter: &str, key: &str, value: &str) -> Result<(), StoreError> {
        query(
            "INSERT INTO adapter_state (adapter, key, value, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (adapter, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(adapter)
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(&*self.conn()?)?;
        Ok(())
    }

    async fn create_schedule(&self, new: &NewSchedule) -> Result<Schedule, StoreError> {
        let row = query(
            "INSERT INTO schedules (job, params, requested_by_platform, requested_by_id, requester_name, \
             place_platform, place_channel, place_thread, run_at, lang, text, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12) RETURNING *",
        )
        .bind(&new.job)
        .bind(params_json(&new.params)?)
        .bind(&new.requested_by.platform)
        .bind(&new.requested_by.id)
        .bind(&new.requester_name)
        .bind(&new.place.platform)
        .bind(&new.place.channel)
        .bind(&new.place.thread)
        .bind(new.run_at.timestamp_millis())
        .bind(&new.lang)
        .bind(&new.text)
        .bind(now_ms())
        .returning(&*self.conn()?)?
        .ok_or_else(no_row)?;
        schedule_from_row(&row)
    }

    async fn schedule(&self, id: i64) -> Result<Option<Schedule>, StoreError> {
        let row = query("SELECT * FROM schedules WHERE id = $1")
            .bind(id)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn schedules(&self, pending_only: bool, limit: u32) -> Result<Vec<Schedule>, StoreError> {
        let query = if pending_only {
            query("SELECT * FROM schedules WHERE state = 'pending' ORDER BY run_at, id LIMIT $1")
        } else {
            query("SELECT * FROM schedules ORDER BY id DESC LIMIT $1")
        };
        let rows = query.bind(list_limit(limit)).fetch_all(&*self.conn()?)?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn cancel_schedule(&self, id: i64, by: &UserId) -> Result<Option<Schedule>, StoreError> {
        // The WHERE re-checks the state inside the UPDATE: of two cancels only one matches.
        let row = query(
            "UPDATE schedules SET state = 'cancelled', cancelled_by_platform = $1, cancelled_by_id = $2, finished_at = $3 \
             WHERE id = $4 AND state = 'pending' RETURNING *",
        )
        .bind(&by.platform)
        .bind(&by.id)
        .bind(now_ms())
        .bind(id)
        .returning(&*self.conn()?)?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    async fn claim_due_schedules(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Schedule>, StoreError> {
        let now = now.timestamp_millis();
        // One statement: SQLite runs it under the write lock, so two processes sharing the
        // file never claim the same row (the outer `state` check keeps it right elsewhere too).
        let rows = query(
            "UPDATE schedules SET state = 'firing', claimed_at = $1 \
             WHERE state = 'pending' AND id IN ( \
                 SELECT id FROM schedules WHERE state = 'pending' AND run_at <= $1 ORDER BY run_at, id LIMIT $2) \
             RETURNING *",
        )
        .bind(now)
        .bind(list_limit(limit))
        .fetch_all(&*self.conn()?)?;
        schedules_soonest_first(&rows)
    }

    async fn finish_schedule(
        &self,
        id: i64,
        state: ScheduleState,
        execution: Option<ExecutionId>,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        if !matches!(state, ScheduleState::Fired | ScheduleState::Failed) {
            return Ok(false);
        }
        let changed = query(
            "UPDATE schedules SET state = $1, execution_id = $2, detail = $3, finished_at = $4 \
             WHERE id = $5 AND (state = 'firing' OR (state = 'failed' AND execution_id IS NULL AND detail = $6))",
        )
        .bind(state.as_str())
        .bind(execution)
        .bind(detail)
        .bind(now_ms())
        .bind(id)
        .bind(STALE_SCHEDULE_DETAIL)
        .execute(&*self.conn()?)?;
        Ok(changed == 1)
    }

    async fn fail_stale_schedules(&self, older_than: DateTime<Utc>) -> Result<Vec<Schedule>, StoreError> {
        // By claim time, not run time: a run due long ago (opsbot was down) and claimed just
        // now is not stale. The claim time is never before the run time, so every row found
        // is also due before `older_than`.
        let older_than = older_than.timestamp_millis();
        let rows = query(
            "UPDATE schedules SET state = 'failed', detail = $1, finished_at = $2 \
             WHERE state = 'firing' AND run_at < $3 AND COALESCE(claimed_at, run_at) < $3 RETURNING *",
        )
        .bind(STALE_SCHEDULE_DETAIL)
        .bind(now_ms())
        .bind(older_than)
        .fetch_all(&*self.conn()?)?;
        schedules_soonest_first(&rows)
    }

    async fn cron_next(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = query("SELECT next_at FROM cron_schedules WHERE name = $1")
            .bind(name)
            .fetch_optional(&*self.conn()?)?;
        row.as_ref()
            .map(|r| time(col(r, "next_at")?, &format!("cron schedule `{name}`")))
            .transpose()
    }

    async fn advance_cron(&self, name: &str, expected: Option<DateTime<Utc>>, next: DateTime<Utc>) -> Result<bool, StoreError> {
        let query = match expected {
            None => query("INSERT INTO cron_schedules (name, next_at, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(next.timestamp_millis())
                .bind(now_ms()),
            Some(expected) => query("UPDATE cron_schedules SET next_at = $1, updated_at = $2 WHERE name = $3 AND next_at = $4")
                .bind(next.timestamp_millis())
                .bind(now_ms())
                .bind(name)
                .bind(expected.timestamp_millis()),
        };
        let changed = query.execute(&*self.conn()?)?;
        Ok(changed == 1)
    }

    async fn count_by_state(&self) -> Result<Vec<(ExecState, u64)>, StoreError> {
        let rows = query("SELECT state, COUNT(*) AS n FROM executions GROUP BY state").fetch_all(&*self.conn()?)?;
        rows.iter()
            .map(|r| {
                let state: String = col(r, "state")?;
                let n: i64 = col(r, "n")?;
                Ok((parse_state(&state, "execution counts")?, n.max(0) as u64))
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        query("SELECT 1").fetch_one(&*self.conn()?)?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ExecEvent> {
        self.events.subscribe()
    }

    fn subscribe_output(&self) -> broadcast::Receiver<ExecutionId> {
        self.output.subscribe()
    }

    fn queue_notify(&self) -> Arc<Notify> {
        self.queue.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ms: i64, stream: Stream, text: &str) -> OutputLine {
        OutputLine {
            at: DateTime::from_timestamp_millis(ms).expect("valid ms"),
            stream,
            text: text.to_string(),
        }
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        let lines = vec![
            line(1, Stream::Stdout, ""),
            line(2, Stream::Stderr, "  two  spaces "),
            line(3, Stream::System, "ünïcødé ✓ 生产"),
            line(4, Stream::Stdout, ""),
        ];
        let (body, bytes) = pack_lines(&lines);
        assert_eq!(bytes, lines.iter().map(|l| l.text.len()).sum::<usize>());
        assert_eq!(unpack_lines(&body, 4, "t").expect("unpacks"), lines);
    }

    #[test]
    fn pack_replaces_line_breaks() {
        let (body, _) = pack_lines(&[line(5, Stream::Stdout, "a\nb\r\nc")]);
        assert_eq!(body, "5 o a b  c");
        assert_eq!(unpack_lines(&body, 1, "t").expect("unpacks")[0].text, "a b  c");
    }

    #[test]
    fn unpack_rejects_bad_bodies() {
        assert!(matches!(unpack_lines("x o hi", 1, "t"), Err(StoreError::Corrupt(_))));
        assert!(matches!(unpack_lines("1 q hi", 1, "t"), Err(StoreError::Corrupt(_))));
        assert!(matches!(unpack_lines("1 o", 1, "t"), Err(StoreError::Corrupt(_))));
        assert!(matches!(unpack_lines("1 o a\n2 o b", 1, "t"), Err(StoreError::Corrupt(_))));
    }
}
