//! The seam between the engine and understanding layers (exact grammar, aliases, and later
//! natural language in `opsbot-nlu`).

use crate::job::Catalog;

/// Words that answer "yes" to a confirmation.
pub const YES: &[&str] = &["yes", "y", "yep", "confirm", "ok", "是", "是的", "确认", "好"];
/// Words that answer "no" to a confirmation (and abandon a question, unless they are a valid answer).
pub const NO: &[&str] = &["no", "n", "nope", "cancel", "abort", "stop", "否", "不", "取消"];

/// A request the engine can act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `help [job]`
    Help(Option<String>),
    /// `list`
    List,
    /// Run a job. `params` holds named values; `positional` values fill params in declared order.
    Run {
        job: String,
        params: Vec<(String, String)>,
        positional: Vec<String>,
    },
    /// `status ID`
    Status(i64),
    /// `cancel ID`
    Cancel(i64),
    /// `logs ID [--all]`
    Logs { id: i64, all: bool },
    /// `history [job] [--mine] [--limit N]`
    History {
        job: Option<String>,
        mine: bool,
        limit: Option<u32>,
    },
    /// `whoami`
    Whoami,
    /// `yes` outside a dialog
    Yes,
    /// `no` / `cancel` without an id, outside a dialog
    No,
    /// `approve ID`: a vote for an approval request
    Approve(i64),
    /// `deny ID [reason…]`: a vote against one (the requester's own `deny` withdraws it)
    Deny {
        /// The request.
        id: i64,
        /// Why, if given.
        reason: Option<String>,
    },
    /// `approvals`: open approval requests
    Approvals,
    /// `lock [JOB] [key=value …] --reason "…"`
    Lock {
        /// The job, or `None` for every job.
        job: Option<String>,
        /// Parameter values the lock covers.
        params: Vec<(String, String)>,
        /// Why (required).
        reason: Option<String>,
    },
    /// `unlock [JOB] [key=value …]`
    Unlock {
        /// The job, or `None` for every job.
        job: Option<String>,
        /// Parameter values of the lock.
        params: Vec<(String, String)>,
    },
    /// `locks`: the locks in force
    Locks,
    /// `link` (get a code for this account) or `link CODE` (confirm it from a known account)
    Link(Option<String>),
    /// `unlink PLATFORM:ID`
    Unlink(String),
}

/// What an understanding layer concluded from a text.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    /// The command.
    pub command: Command,
    /// 0.0..=1.0 — exact grammar is 1.0. The engine asks rather than acts below its threshold.
    pub confidence: f32,
    /// Which layer produced it (`grammar`, `alias`, `nlu`, …), for audit and debugging.
    pub source: &'static str,
}

/// An understanding layer that the engine consults after its exact grammar and aliases.
/// The natural-language crate implements this; returning `None` means "no idea".
pub trait Understand: Send + Sync {
    /// Tries to turn free text into an intent.
    fn understand(&self, text: &str, catalog: &Catalog) -> Option<Intent>;
}
