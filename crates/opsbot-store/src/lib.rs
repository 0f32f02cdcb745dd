//! opsbot's records: executions and their output, dialogs, the audit trail, and access control
//! (approval requests and votes, locks, account links).
//!
//! Everything goes through the [`Store`] trait so the engine and the worker never see SQL.
//! [`SqliteStore`] is the default; the queries are plain SQL with numbered parameters and
//! `RETURNING`, so a PostgreSQL implementation can follow without a rewrite (claims there will
//! use `FOR UPDATE SKIP LOCKED`).

mod chain;
mod sqlite;

pub use chain::{GENESIS_HASH, audit_encoding, audit_hash};
/// The SQLite library the store is built on, for tests and tools that reach into the database
/// file ([`SqliteStore::conn`]).
pub use rusqlite;
pub use sqlite::{Conn, SqliteStore};

use chrono::{DateTime, Utc};
use opsbot_core::{ExecEvent, ExecState, Execution, ExecutionId, NewExecution, OutputLine, Params, Place, UserId};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// Audit records read per page when the chain is walked (verification, export).
pub const AUDIT_PAGE: u32 = 1000;

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed. (Not a `source`: rusqlite's error already says what its
    /// own source, SQLite's code, would repeat.)
    #[error("database error: {0}")]
    Db(rusqlite::Error),
    /// Migrations could not be applied.
    #[error("cannot prepare the database: {0}")]
    Migrate(String),
    /// The database's folder could not be made.
    #[error("cannot open the database: {0}")]
    Io(String),
    /// The store was closed ([`SqliteStore::close`]); nothing more can be asked of it.
    #[error("the store is closed")]
    Closed,
    /// A stored row could not be read back (corrupt or from a newer version).
    #[error("unreadable record: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e)
    }
}

/// Which executions to list (newest first).
#[derive(Clone, Debug, Default)]
pub struct ExecutionFilter {
    /// Only this job.
    pub job: Option<String>,
    /// Only those requested by this account.
    pub requested_by: Option<UserId>,
    /// Only in this state.
    pub state: Option<ExecState>,
    /// Only with an id below this (pagination).
    pub before_id: Option<ExecutionId>,
    /// Only those requested at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only those requested before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (the store caps it at 1000).
    pub limit: u32,
}

/// Which audit records to list (newest first).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only decisions on this account's requests.
    pub actor: Option<UserId>,
    /// Only this action (`run`, `cancel`, …).
    pub action: Option<String>,
    /// Only this job.
    pub job: Option<String>,
    /// Only this decision (`accepted`, `refused`, …).
    pub decision: Option<String>,
    /// Only records about this execution.
    pub execution_id: Option<ExecutionId>,
    /// Only with an id below this (pagination).
    pub before_id: Option<i64>,
    /// Only at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (the store caps it at 1000; 0 means 50).
    pub limit: u32,
}

/// A signed-in browser session of the web console. The cookie value is never stored, only
/// its SHA-256.
#[derive(Clone, Debug, PartialEq)]
pub struct WebSession {
    /// SHA-256 (hex) of the cookie value.
    pub id_sha256: String,
    /// The web user (`NAME` of `web:NAME`).
    pub user: String,
    /// The session's anti-forgery token.
    pub csrf: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// One web chat message: a person's text or a bot reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// Id, increasing in the order messages were posted.
    pub id: i64,
    /// The channel: `ops`, or `dm:NAME` for NAME's direct conversation with the bot.
    pub channel: String,
    /// Who wrote it: `web:NAME`, or `bot`.
    pub author: String,
    /// Their name as shown.
    pub author_name: String,
    /// A person's text.
    pub text: Option<String>,
    /// A bot reply, as the Reply document in JSON.
    pub reply: Option<serde_json::Value>,
    /// The execution whose job card this message is, if it is one.
    pub card_for: Option<ExecutionId>,
    /// When it was posted.
    pub created_at: DateTime<Utc>,
    /// When it was last changed (a job card is updated in place).
    pub updated_at: DateTime<Utc>,
}

/// A chat message to post.
#[derive(Clone, Debug, Default)]
pub struct NewChatMessage {
    /// The channel.
    pub channel: String,
    /// `web:NAME` or `bot`.
    pub author: String,
    /// The name shown.
    pub author_name: String,
    /// A person's text.
    pub text: Option<String>,
    /// A bot reply (JSON).
    pub reply: Option<serde_json::Value>,
    /// The execution whose job card it is.
    pub card_for: Option<ExecutionId>,
}

/// How an execution ended, as the worker reports it.
#[derive(Clone, Debug, Default)]
pub struct Finish {
    /// Final state (must be final).
    pub state: Option<ExecState>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Wall time.
    pub duration_ms: Option<i64>,
    /// CPU time.
    pub cpu_ms: Option<i64>,
    /// Peak RSS.
    pub max_rss_kb: Option<i64>,
    /// One-line explanation.
    pub detail: Option<String>,
}

/// What a cancel request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelResult {
    /// No such execution.
    NotFound,
    /// It had already ended in this state.
    AlreadyFinished(ExecState),
    /// It was still queued and is now cancelled.
    CancelledQueued,
    /// It is running; its worker was asked to stop it.
    Requested,
}

/// An open question to one person in one place (missing param, confirmation).
#[derive(Clone, Debug, PartialEq)]
pub struct Dialog {
    /// Where.
    pub place: Place,
    /// Who must answer.
    pub user: UserId,
    /// The engine's name for the kind of dialog.
    pub kind: String,
    /// The engine's state for it, as JSON.
    pub state: serde_json::Value,
    /// When it stops being answerable.
    pub expires_at: DateTime<Utc>,
}

/// One decision, recorded forever.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// Record id (assigned by the store).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Which platform account.
    pub actor: UserId,
    /// Their display name at the time.
    pub actor_name: String,
    /// Where.
    pub place: Place,
    /// What was asked: `run`, `cancel`, `confirm`, …
    pub action: String,
    /// The job concerned.
    pub job: Option<String>,
    /// Its params (secret ones already redacted by the engine).
    pub params: Option<Params>,
    /// `accepted`, `refused`, `asked`, `confirmed`, `abandoned`, `expired`, `cancelled`, `lost`, …
    pub decision: String,
    /// Why.
    pub reason: Option<String>,
    /// The execution concerned.
    pub execution_id: Option<ExecutionId>,
}

/// An audit record with its links in the hash chain, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainedAudit {
    /// The record's id.
    pub id: i64,
    /// The record, or why its row cannot be read (a damaged or tampered row).
    pub record: Result<AuditRecord, String>,
    /// The hash of the record before it, as stored ([`GENESIS_HASH`] for the first record).
    pub prev_hash: Option<String>,
    /// This record's hash, as stored: [`audit_hash`] of `prev_hash` and the record.
    pub hash: Option<String>,
}

/// What walking the audit chain from its first record found.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditVerification {
    /// Records checked: all of them when the chain is intact, else up to and including the broken one.
    pub checked: u64,
    /// The last record found intact, with its hash (`None` when there is none).
    pub intact_up_to: Option<(i64, String)>,
    /// The first record that breaks the chain, if any.
    pub broken: Option<BrokenLink>,
}

/// The first record that breaks the audit chain.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokenLink {
    /// The record's id.
    pub id: i64,
    /// The id of the record before it in the table (`None` when it is the first).
    pub after: Option<i64>,
    /// What is wrong.
    pub problem: ChainProblem,
}

/// Why a record breaks the audit chain.
#[derive(Clone, Debug, PartialEq)]
pub enum ChainProblem {
    /// It has no `hash` or no `prev_hash`: it was written without going through opsbot.
    Unhashed,
    /// Its `prev_hash` is not the hash of the record before it: a record before it was deleted,
    /// records were inserted or reordered, or the record before it was changed and re-hashed.
    Unlinked {
        /// The hash of the record before it (or [`GENESIS_HASH`]).
        expected: String,
        /// Its stored `prev_hash`.
        found: String,
    },
    /// Its row cannot be read back as a record (damaged, or edited into something opsbot never writes).
    Unreadable(String),
    /// Its content does not hash to its stored `hash`: the record was changed after it was
    /// written, or its hash was edited.
    Altered {
        /// The hash of what is stored now.
        computed: String,
        /// The stored `hash`.
        stored: String,
    },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::Unhashed => f.write_str("it has no hash: it was added to the table without going through opsbot"),
            ChainProblem::Unlinked { expected, found } => write!(
                f,
                "its prev_hash {found} is not the hash of the record before it ({expected}): a record before it was \
                 deleted, records were inserted or reordered, or the record before it was changed and re-hashed"
            ),
            ChainProblem::Unreadable(why) => write!(f, "it cannot be read: {why}"),
            ChainProblem::Altered { computed, stored } => write!(
                f,
                "its content hashes to {computed}, not to its stored hash {stored}: the record was changed after it was \
                 written, or its hash was edited"
            ),
        }
    }
}

/// Checks one record of the chain against the hash of the record before it (`expected_prev`);
/// `Ok` with the record's hash when it holds.
pub fn check_link(link: &ChainedAudit, expected_prev: &str) -> Result<String, ChainProblem> {
    let record = link.record.as_ref().map_err(|why| ChainProblem::Unreadable(why.clone()))?;
    let (Some(prev), Some(hash)) = (&link.prev_hash, &link.hash) else {
        return Err(ChainProblem::Unhashed);
    };
    if prev != expected_prev {
        return Err(ChainProblem::Unlinked {
            expected: expected_prev.to_string(),
            found: prev.clone(),
        });
    }
    // The record as stored, under the id it is stored with.
    let computed = if record.id == link.id {
        audit_hash(prev, record)
    } else {
        audit_hash(
            prev,
            &AuditRecord {
                id: link.id,
                ..record.clone()
            },
        )
    };
    if &computed != hash {
        return Err(ChainProblem::Altered {
            computed,
            stored: hash.clone(),
        });
    }
    Ok(computed)
}

/// An API token as stored. The token itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiToken {
    /// Id, for listing and revoking.
    pub id: i64,
    /// The web user it acts as (`web:USER`).
    pub user: String,
    /// What it is for, as given when created.
    pub label: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last accepted.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; revoked tokens are refused.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// State of an approval request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalState {
    /// Waiting for votes.
    Pending,
    /// Approved: the run may start.
    Approved,
    /// Refused.
    Denied,
    /// Not decided in time.
    Expired,
    /// Taken back by the requester.
    Withdrawn,
}

impl ApprovalState {
    /// Every state.
    pub const ALL: [ApprovalState; 5] = [
        ApprovalState::Pending,
        ApprovalState::Approved,
        ApprovalState::Denied,
        ApprovalState::Expired,
        ApprovalState::Withdrawn,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Withdrawn => "withdrawn",
        }
    }

    /// The state with this name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`ApprovalState`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown approval state `{0}`")]
pub struct UnknownApprovalState(pub String);

impl FromStr for ApprovalState {
    type Err = UnknownApprovalState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownApprovalState(s.to_string()))
    }
}

/// A run that needs approval, as the engine asks the store to record it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewApproval {
    /// The job to run once approved.
    pub job: String,
    /// Its full params, needed to start the run once approved.
    pub params: Params,
    /// The account that asked for the run.
    pub requested_by: UserId,
    /// The requester's person key in the config (`""` if none).
    pub requester_person: String,
    /// The requester's display name at the time.
    pub requester_name: String,
    /// Where the run was asked for.
    pub place: Place,
    /// Who must approve, as the engine describes it (opaque to the store).
    pub requirements: serde_json::Value,
    /// Why approval is required, for people.
    pub reason: String,
    /// When the request stops being answerable.
    pub expires_at: DateTime<Utc>,
}

/// An approval request as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    /// Id (assigned by the store).
    pub id: i64,
    /// The job to run once approved.
    pub job: String,
    /// Its full params.
    pub params: Params,
    /// The account that asked for the run.
    pub requested_by: UserId,
    /// The requester's person key in the config (`""` if none).
    pub requester_person: String,
    /// The requester's display name at the time.
    pub requester_name: String,
    /// Where the run was asked for.
    pub place: Place,
    /// Who must approve (engine-defined JSON).
    pub requirements: serde_json::Value,
    /// Why approval is required.
    pub reason: String,
    /// When the request stops being answerable.
    pub expires_at: DateTime<Utc>,
    /// Where it stands.
    pub state: ApprovalState,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When it left `pending`.
    pub decided_at: Option<DateTime<Utc>>,
    /// What was said when it left `pending`.
    pub decision_note: Option<String>,
    /// The run it started, once approved.
    pub execution_id: Option<ExecutionId>,
}

/// One vote on an approval request.
#[derive(Clone, Debug, PartialEq)]
pub struct Vote {
    /// The request voted on.
    pub approval_id: i64,
    /// The account that voted.
    pub voter: UserId,
    /// The voter's person key in the config (`""` if none).
    pub voter_person: String,
    /// The voter's display name at the time.
    pub voter_name: String,
    /// For (true) or against (false).
    pub approve: bool,
    /// Why, if they said.
    pub reason: Option<String>,
    /// When it was cast.
    pub at: DateTime<Utc>,
}

/// What an outbox row carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutKind {
    /// A reply, posted as a new message.
    Message,
    /// A run's job card, posted as a new message whose id is kept for later edits.
    Card,
    /// A new state of a job card: an edit of it where the platform can, else a new message.
    CardUpdate,
}

impl OutKind {
    /// The word stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OutKind::Message => "message",
            OutKind::Card => "card",
            OutKind::CardUpdate => "card_update",
        }
    }
    /// From the word stored.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "message" => Some(OutKind::Message),
            "card" => Some(OutKind::Card),
            "card_update" => Some(OutKind::CardUpdate),
            _ => None,
        }
    }
}

/// A message for a chat adapter, to keep until the platform took it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOutgoing {
    /// Where it goes (`place.platform` is the adapter's name).
    pub place: Place,
    /// What it is.
    pub kind: OutKind,
    /// The run it shows (cards and their updates).
    pub execution: Option<ExecutionId>,
    /// The Reply document (JSON).
    pub reply: serde_json::Value,
}

/// An outbox row not yet delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// Id (delivery order within an adapter).
    pub id: i64,
    /// Where it goes.
    pub place: Place,
    /// What it is.
    pub kind: OutKind,
    /// The run it shows.
    pub execution: Option<ExecutionId>,
    /// The Reply document (JSON).
    pub reply: serde_json::Value,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Failed delivery attempts so far.
    pub attempts: i64,
}

/// A run's job card in one chat conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatCard {
    /// The conversation (`platform` is the adapter's name).
    pub place: Place,
    /// The run.
    pub execution: ExecutionId,
    /// The platform's id of the message showing it, once sent.
    pub message_id: Option<String>,
    /// The state it shows (or will once its queued messages are sent).
    pub state: ExecState,
}

/// A lock to take.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLock {
    /// The job locked; every job when `None`.
    pub job: Option<String>,
    /// The params it is limited to (none: all runs of the job).
    pub params: Params,
    /// Why, for people.
    pub reason: String,
    /// Who takes it.
    pub by: UserId,
    /// Their display name at the time.
    pub by_name: String,
}

/// A lock as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Lock {
    /// Id (assigned by the store).
    pub id: i64,
    /// The canonical text of job and params ([`Lock::scope_of`]), unique among locks.
    pub scope: String,
    /// The job locked; every job when `None`.
    pub job: Option<String>,
    /// The params it is limited to.
    pub params: Params,
    /// Why.
    pub reason: String,
    /// Who took it.
    pub by: UserId,
    /// Their display name at the time.
    pub by_name: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
}

impl Lock {
    /// The canonical text of a lock's scope: `*` for every job or the job's name, then ` k=v`
    /// for each param in key order, e.g. `* env=prod`, `deploy env=prod`, `deploy`.
    ///
    /// Distinct scopes always give distinct texts: a job name, key or value that is empty or
    /// holds whitespace, `=`, `"`, `\` or a control character (and a job named `*`) is written
    /// as a JSON string, e.g. `deploy note="two words"`.
    pub fn scope_of(job: Option<&str>, params: &Params) -> String {
        let mut out = match job {
            None => "*".to_string(),
            Some("*") => scope_quoted("*"),
            Some(job) => scope_token(job),
        };
        // `Params` is a `BTreeMap`: keys come in order.
        for (k, v) in params {
            out.push(' ');
            out.push_str(&scope_token(k));
            out.push('=');
            out.push_str(&scope_token(v));
        }
        out
    }
}

/// One word of a lock scope: as it is, or as a JSON string when it could be misread.
fn scope_token(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '=' | '"' | '\\'));
    if plain { s.to_string() } else { scope_quoted(s) }
}

/// `s` as a JSON string.
fn scope_quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The detail a schedule gets when opsbot stopped between claiming it and recording its run
/// (see [`Store::fail_stale_schedules`]).
pub const STALE_SCHEDULE_DETAIL: &str = "opsbot stopped while starting it; check `history` before running it again";

/// A run to start later, as the engine asks the store to record it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewSchedule {
    /// The job to run.
    pub job: String,
    /// Its params, canonical values (secrets are never scheduled: the engine refuses them).
    pub params: Params,
    /// The account that scheduled it.
    pub requested_by: UserId,
    /// Their display name at the time.
    pub requester_name: String,
    /// Where it was asked for; the run's card goes there.
    pub place: Place,
    /// When to start it.
    pub run_at: DateTime<Utc>,
    /// The language to answer in when it fires (`en`, `zh`).
    pub lang: String,
    /// What the person wrote, for listings and the audit (the engine keeps it short; the
    /// store keeps it as given).
    pub text: String,
}

/// Where a scheduled run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    /// Waiting for its time.
    Pending,
    /// Claimed by an opsbot process that is starting the run.
    Firing,
    /// The run was started (or refused by the engine and recorded as such, see `detail`).
    Fired,
    /// Dropped by someone before its time.
    Cancelled,
    /// Could not be started; `detail` says why.
    Failed,
}

impl ScheduleState {
    /// Every state, in life order.
    pub const ALL: [ScheduleState; 5] = [
        ScheduleState::Pending,
        ScheduleState::Firing,
        ScheduleState::Fired,
        ScheduleState::Cancelled,
        ScheduleState::Failed,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Pending => "pending",
            ScheduleState::Firing => "firing",
            ScheduleState::Fired => "fired",
            ScheduleState::Cancelled => "cancelled",
            ScheduleState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the schedule is over (it will never fire again).
    pub fn is_final(self) -> bool {
        matches!(self, ScheduleState::Fired | ScheduleState::Cancelled | ScheduleState::Failed)
    }
}

impl fmt::Display for ScheduleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`ScheduleState`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown schedule state `{0}`")]
pub struct UnknownScheduleState(pub String);

impl FromStr for ScheduleState {
    type Err = UnknownScheduleState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownScheduleState(s.to_string()))
    }
}

/// A scheduled run as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Schedule {
    /// Id (assigned by the store), what people use to `unschedule` it.
    pub id: i64,
    /// The job to run.
    pub job: String,
    /// Its params.
    pub params: Params,
    /// The account that scheduled it.
    pub requested_by: UserId,
    /// Their display name at the time.
    pub requester_name: String,
    /// Where it was asked for; the run's card goes there.
    pub place: Place,
    /// When to start it.
    pub run_at: DateTime<Utc>,
    /// The language to answer in when it fires.
    pub lang: String,
    /// What the person wrote.
    pub text: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Where it stands.
    pub state: ScheduleState,
    /// The run it started, once fired.
    pub execution_id: Option<ExecutionId>,
    /// Why it failed, or the engine's note on how it ended.
    pub detail: Option<String>,
    /// Who cancelled it.
    pub cancelled_by: Option<UserId>,
}

/// A chat account linked to a person of the config.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountLink {
    /// The account.
    pub account: UserId,
    /// The person's key in the config.
    pub person: String,
    /// Who linked it (the account itself when it used a link code).
    pub linked_by: UserId,
    /// When.
    pub at: DateTime<Utc>,
}

/// Tells whether the worker with this id is certainly gone (a named type so the `&str` stays
/// higher-ranked through `#[async_trait]`).
pub type IsDead<'a> = dyn Fn(&str) -> bool + Send + Sync + 'a;

/// Called with the id and hash of each audit record found intact (a named type for the same reason).
pub type OnIntact<'a> = dyn FnMut(i64, &str) + Send + 'a;

/// opsbot's records. One implementation per database.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Queues a new execution and wakes workers.
    async fn create_execution(&self, new: &NewExecution) -> Result<Execution, StoreError>;
    /// One execution.
    async fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError>;
    /// Executions matching a filter, newest first.
    async fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, StoreError>;
    /// Claims the oldest queued execution whose job is under its `max_parallel` (or only
    /// `only`, when given) for `worker`, marking it running with a lease. Announces the change.
    async fn claim(&self, worker: &str, lease: Duration, only: Option<ExecutionId>) -> Result<Option<Execution>, StoreError>;
    /// Records the end of a running execution. Announces the change.
    async fn finish(&self, id: ExecutionId, finish: &Finish) -> Result<(), StoreError>;
    /// Asks for an execution to stop (queued ones are cancelled at once and announced).
    async fn request_cancel(&self, id: ExecutionId) -> Result<CancelResult, StoreError>;
    /// Running executions of `worker` whose cancel was requested.
    async fn cancel_requested(&self, worker: &str) -> Result<Vec<ExecutionId>, StoreError>;
    /// Records the process group of a running execution.
    async fn set_pgid(&self, id: ExecutionId, pgid: i64) -> Result<(), StoreError>;
    /// Extends the lease of every running execution of `worker`.
    async fn heartbeat(&self, worker: &str, lease: Duration) -> Result<(), StoreError>;
    /// Marks `lost` every running execution whose lease has expired or whose worker
    /// `is_dead` says is gone. Returns them (already announced).
    async fn recover_lost(&self, is_dead: &IsDead<'_>) -> Result<Vec<Execution>, StoreError>;
    /// Appends output lines (one chunk) to an execution.
    async fn append_output(&self, id: ExecutionId, lines: &[OutputLine]) -> Result<(), StoreError>;
    /// The last `n` lines and the total number of lines.
    async fn output_tail(&self, id: ExecutionId, n: usize) -> Result<(Vec<OutputLine>, u64), StoreError>;
    /// At most `max` output lines, starting after the first `skip` (bounded reads for streams).
    async fn output_range(&self, id: ExecutionId, skip: u64, max: usize) -> Result<Vec<OutputLine>, StoreError>;
    /// All output lines.
    async fn output_all(&self, id: ExecutionId) -> Result<Vec<OutputLine>, StoreError>;
    /// Opens (or replaces) the dialog of `dialog.user` in `dialog.place`.
    async fn put_dialog(&self, dialog: &Dialog) -> Result<(), StoreError>;
    /// The dialog of `user` in `place`, expired or not.
    async fn dialog(&self, place: &Place, user: &UserId) -> Result<Option<Dialog>, StoreError>;
    /// Closes the dialog of `user` in `place`. True if this call closed it — of two concurrent
    /// answers (a double click), only one gets true and may act on it.
    async fn delete_dialog(&self, place: &Place, user: &UserId) -> Result<bool, StoreError>;
    /// Appends an audit record (its `id` is ignored and assigned), chained to the newest record
    /// by its hash (see [`audit_hash`]), also when other connections or processes append at the
    /// same time; returns the id.
    async fn audit(&self, record: &AuditRecord) -> Result<i64, StoreError>;
    /// The newest `limit` audit records, newest first.
    async fn audit_records(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_query(&AuditFilter {
            limit,
            ..Default::default()
        })
        .await
    }
    /// Audit records matching a filter, newest first.
    async fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// At most `limit` audit records with an id above `after_id` that match `filter` (whose own
    /// `limit` is not used), oldest first, with their stored hashes. A row that cannot be read is
    /// returned as such, not as an error: walking the chain must get past it.
    async fn audit_chain(&self, filter: &AuditFilter, after_id: i64, limit: u32) -> Result<Vec<ChainedAudit>, StoreError>;
    /// Walks the whole audit chain from its first record, [`AUDIT_PAGE`] records at a time, and
    /// reports the first record that breaks it. `each` sees every record that was checked and
    /// found intact (e.g. to compare with a hash kept elsewhere).
    async fn verify_audit(&self, each: &mut OnIntact<'_>) -> Result<AuditVerification, StoreError> {
        let mut v = AuditVerification {
            checked: 0,
            intact_up_to: None,
            broken: None,
        };
        let all = AuditFilter::default();
        let mut after = 0;
        loop {
            let page = self.audit_chain(&all, after, AUDIT_PAGE).await?;
            let Some(last) = page.last() else { return Ok(v) };
            after = last.id;
            for link in &page {
                v.checked += 1;
                let expected = v.intact_up_to.as_ref().map_or(GENESIS_HASH, |(_, h)| h.as_str());
                match check_link(link, expected) {
                    Ok(hash) => {
                        each(link.id, &hash);
                        v.intact_up_to = Some((link.id, hash));
                    }
                    Err(problem) => {
                        v.broken = Some(BrokenLink {
                            id: link.id,
                            after: v.intact_up_to.as_ref().map(|(id, _)| *id),
                            problem,
                        });
                        return Ok(v);
                    }
                }
            }
        }
    }
    /// Stores a new API token by the SHA-256 (hex) of its secret.
    async fn create_token(&self, user: &str, label: &str, sha256: &str) -> Result<ApiToken, StoreError>;
    /// The unrevoked token with this SHA-256 (hex), marking it used now.
    async fn token_by_hash(&self, sha256: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Revokes a token; false if there is no such unrevoked token.
    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError>;
    /// All tokens, revoked ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    /// Saves a new web session.
    async fn create_session(&self, session: &WebSession) -> Result<(), StoreError>;
    /// The unexpired session whose cookie has this SHA-256.
    async fn session_by_hash(&self, id_sha256: &str) -> Result<Option<WebSession>, StoreError>;
    /// Ends one session (sign-out); whether it existed.
    async fn delete_session(&self, id_sha256: &str) -> Result<bool, StoreError>;
    /// Ends every session of a user; how many there were.
    async fn delete_user_sessions(&self, user: &str) -> Result<u64, StoreError>;
    /// Forgets expired sessions; how many.
    async fn purge_sessions(&self) -> Result<u64, StoreError>;
    /// The stored hash of a generated password for `user`.
    async fn generated_password(&self, user: &str) -> Result<Option<String>, StoreError>;
    /// Stores `hash` as `user`'s generated password unless one is stored already; returns the
    /// stored hash and whether it is the one just given (false: another process was first).
    async fn put_generated_password(&self, user: &str, hash: &str) -> Result<(String, bool), StoreError>;
    /// Forgets `user`'s generated password (a new one is made at the next start); whether one was stored.
    async fn delete_generated_password(&self, user: &str) -> Result<bool, StoreError>;
    /// Posts a chat message.
    async fn post_chat(&self, msg: &NewChatMessage) -> Result<ChatMessage, StoreError>;
    /// A channel's messages with ids below `before` (all when `None`), newest `limit`, returned oldest first.
    async fn chat_history(&self, channel: &str, before: Option<i64>, limit: u32) -> Result<Vec<ChatMessage>, StoreError>;
    /// Replaces the reply of every job card of `execution` (in any channel) and returns the updated messages.
    async fn update_chat_cards(&self, execution: ExecutionId, reply: &serde_json::Value) -> Result<Vec<ChatMessage>, StoreError>;
    /// Records a new pending approval request.
    async fn create_approval(&self, new: &NewApproval) -> Result<Approval, StoreError>;
    /// One approval request.
    async fn approval(&self, id: i64) -> Result<Option<Approval>, StoreError>;
    /// The newest `limit` approval requests (0 means 20; at most 1000), newest first;
    /// `pending_only` limits to state pending (expired-by-time ones included: the store does
    /// not look at the clock).
    async fn approvals(&self, pending_only: bool, limit: u32) -> Result<Vec<Approval>, StoreError>;
    /// Records a vote. `Ok(false)` when this person (`voter_person`, or the voter account when
    /// `voter_person` is empty) or this account already voted on this request. The store does
    /// not check the request's state (a request that does not exist is an error).
    async fn add_vote(&self, vote: &Vote) -> Result<bool, StoreError>;
    /// The votes on a request, in the order they were cast.
    async fn votes(&self, approval_id: i64) -> Result<Vec<Vote>, StoreError>;
    /// Moves a pending request to `state` (approved/denied/expired/withdrawn) with a note.
    /// Returns false if it was no longer pending (someone else decided first), if there is no
    /// such request, or if `state` is pending.
    async fn decide_approval(&self, id: i64, state: ApprovalState, note: Option<&str>) -> Result<bool, StoreError>;
    /// Records the execution an approved request started (nothing happens when there is no
    /// such request).
    async fn set_approval_execution(&self, id: i64, execution: ExecutionId) -> Result<(), StoreError>;
    /// Takes a lock. `Ok(Err(existing))` when a lock with the same scope ([`Lock::scope_of`])
    /// is held already.
    async fn put_lock(&self, lock: &NewLock) -> Result<Result<Lock, Lock>, StoreError>;
    /// Every lock, oldest first.
    async fn locks(&self) -> Result<Vec<Lock>, StoreError>;
    /// Removes the lock with this scope; returns it if there was one.
    async fn delete_lock(&self, scope: &str) -> Result<Option<Lock>, StoreError>;
    /// Stores a one-time link code (only its SHA-256 hex) for `account`, replacing any earlier
    /// code for that account.
    async fn create_link_code(&self, code_sha256: &str, account: &UserId, expires_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Takes (deletes and returns) the code's account and expiry, expired or not; single use:
    /// of two concurrent takers only one gets `Some`.
    async fn take_link_code(&self, code_sha256: &str) -> Result<Option<(UserId, DateTime<Utc>)>, StoreError>;
    /// Links an account to a person (replacing an earlier link of that account).
    async fn link_account(&self, link: &AccountLink) -> Result<(), StoreError>;
    /// The person an account is linked to.
    async fn linked_person(&self, account: &UserId) -> Result<Option<String>, StoreError>;
    /// The links of one person, or all when `None`, by person then account.
    async fn account_links(&self, person: Option<&str>) -> Result<Vec<AccountLink>, StoreError>;
    /// Queues a message for a chat adapter; returns its id.
    async fn outbox_push(&self, msg: &NewOutgoing) -> Result<i64, StoreError>;
    /// Undelivered messages of an adapter, oldest first, leaving out those for the places
    /// in `skip` (by [`Place::key`]: places the adapter cannot reach now).
    async fn outbox_pending(&self, adapter: &str, skip: &[String], limit: u32) -> Result<Vec<Outgoing>, StoreError>;
    /// Marks a message delivered (`sent`), `superseded` or `rejected` (with the reason).
    async fn outbox_done(&self, id: i64, outcome: &str, error: Option<&str>) -> Result<(), StoreError>;
    /// Counts a failed attempt that will be retried.
    async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError>;
    /// Undelivered messages per adapter.
    async fn outbox_backlog(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Forgets delivered messages done before `before`; returns how many.
    async fn outbox_prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Records (or replaces) a job card.
    async fn put_chat_card(&self, card: &ChatCard) -> Result<(), StoreError>;
    /// The job cards of a run, in every conversation.
    async fn chat_cards_of(&self, execution: ExecutionId) -> Result<Vec<ChatCard>, StoreError>;
    /// A value an adapter keeps across restarts.
    async fn adapter_value(&self, adapter: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// Stores a value for an adapter.
    async fn put_adapter_value(&self, adapter: &str, key: &str, value: &str) -> Result<(), StoreError>;
    /// Removes an account's link; whether there was one.
    async fn unlink_account(&self, account: &UserId) -> Result<bool, StoreError>;
    /// Records a new pending scheduled run.
    async fn create_schedule(&self, new: &NewSchedule) -> Result<Schedule, StoreError>;
    /// One scheduled run, in any state.
    async fn schedule(&self, id: i64) -> Result<Option<Schedule>, StoreError>;
    /// Scheduled runs, at most `limit` (0 means 20; at most 1000): with `pending_only`, the
    /// pending ones, soonest `run_at` first (then by id); else every state, newest id first.
    async fn schedules(&self, pending_only: bool, limit: u32) -> Result<Vec<Schedule>, StoreError>;
    /// Cancels a pending scheduled run on behalf of `by`; returns it as updated. `None` when it
    /// does not exist or is no longer pending — of two people cancelling at once, exactly one
    /// gets `Some`.
    async fn cancel_schedule(&self, id: i64, by: &UserId) -> Result<Option<Schedule>, StoreError>;
    /// Moves at most `limit` (0 means 20; at most 1000) pending runs due at `now` (`run_at <=
    /// now`) to firing and returns them, soonest first. Atomic: two processes on the same
    /// database never claim the same run. `now` is also recorded as the claim time that
    /// [`Store::fail_stale_schedules`] looks at.
    async fn claim_due_schedules(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Schedule>, StoreError>;
    /// Records how a claimed run ended: `Fired` (with the execution it started, if any) or
    /// `Failed`, with a note. Applies to a firing run, and to one that
    /// [`Store::fail_stale_schedules`] gave up on meanwhile (so a late start is still recorded).
    /// Returns false when nothing was changed: no such run, another state, or `state` is
    /// neither `Fired` nor `Failed`.
    async fn finish_schedule(
        &self,
        id: i64,
        state: ScheduleState,
        execution: Option<ExecutionId>,
        detail: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Marks failed, with [`STALE_SCHEDULE_DETAIL`], every firing run claimed before
    /// `older_than` (hence also due before it): opsbot stopped between claiming it and
    /// recording its run. Returns them.
    async fn fail_stale_schedules(&self, older_than: DateTime<Utc>) -> Result<Vec<Schedule>, StoreError>;
    /// The next run time stored for the cron schedule `name` of the config.
    async fn cron_next(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Compare-and-set of a cron schedule's next run time (kept at millisecond precision):
    /// moves it from `expected` to `next` and returns true, or returns false when the stored
    /// value is not `expected` (another process moved it first). `expected = None` means "no
    /// row yet": it is inserted, false if one exists already.
    async fn advance_cron(&self, name: &str, expected: Option<DateTime<Utc>>, next: DateTime<Utc>) -> Result<bool, StoreError>;
    /// How many executions are in each state (states with none are left out).
    async fn count_by_state(&self) -> Result<Vec<(ExecState, u64)>, StoreError>;
    /// Whether the database answers (for readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;
    /// State changes of executions, as they happen in this process's store.
    fn subscribe(&self) -> broadcast::Receiver<ExecEvent>;
    /// The id of an execution each time output of it is stored by this process's store (live
    /// logs wake on it instead of waiting for their next poll).
    fn subscribe_output(&self) -> broadcast::Receiver<ExecutionId>;
    /// Notified whenever an execution is queued, so workers wake without polling.
    fn queue_notify(&self) -> Arc<Notify>;
}
