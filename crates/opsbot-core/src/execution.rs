//! Executions: one run of a job, its state and its output lines.

use crate::envelope::{Place, UserId};
use crate::job::Params;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An execution's id, shown to people as `#N`.
pub type ExecutionId = i64;

/// Where an execution is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecState {
    /// Waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, was killed by a signal, or could not start.
    Failed,
    /// Stopped on request.
    Cancelled,
    /// Stopped because it ran past its timeout.
    TimedOut,
    /// The worker running it died; its outcome is unknown.
    Lost,
}

impl ExecState {
    /// Every state, in life order.
    pub const ALL: [ExecState; 7] = [
        ExecState::Queued,
        ExecState::Running,
        ExecState::Succeeded,
        ExecState::Failed,
        ExecState::Cancelled,
        ExecState::TimedOut,
        ExecState::Lost,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecState::Queued => "queued",
            ExecState::Running => "running",
            ExecState::Succeeded => "succeeded",
            ExecState::Failed => "failed",
            ExecState::Cancelled => "cancelled",
            ExecState::TimedOut => "timed_out",
            ExecState::Lost => "lost",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the execution is over.
    pub fn is_final(self) -> bool {
        !matches!(self, ExecState::Queued | ExecState::Running)
    }
}

impl fmt::Display for ExecState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine asks the store to queue.
#[derive(Clone, Debug)]
pub struct NewExecution {
    /// Job name.
    pub job: String,
    /// Canonical params.
    pub params: Params,
    /// Who asked.
    pub requested_by: UserId,
    /// Display name of who asked, for humans.
    pub requester_name: String,
    /// Where they asked; the result is reported there.
    pub place: Place,
    /// Max parallel runs of this job, copied from the job spec at queue time.
    pub max_parallel: Option<u32>,
}

/// One run of a job, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Execution {
    /// Id (`#N`).
    pub id: ExecutionId,
    /// Job name.
    pub job: String,
    /// Canonical params.
    pub params: Params,
    /// Who asked.
    pub requested_by: UserId,
    /// Display name of who asked.
    pub requester_name: String,
    /// Where they asked.
    pub place: Place,
    /// Current state.
    pub state: ExecState,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Process exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// Wall time in milliseconds.
    pub duration_ms: Option<i64>,
    /// User + system CPU time in milliseconds.
    pub cpu_ms: Option<i64>,
    /// Peak resident memory in KiB.
    pub max_rss_kb: Option<i64>,
    /// A one-line explanation of the outcome (signal, timeout, start failure, lost).
    pub detail: Option<String>,
    /// Which worker claimed it (`host:pid`).
    pub worker: Option<String>,
    /// Whether someone asked for it to stop.
    pub cancel_requested: bool,
    /// Process-group id of the running job, when its runner has one (exec).
    #[serde(default)]
    pub pgid: Option<i64>,
}

impl Execution {
    /// `job k=v k=v` in param order given by the map (sorted), for audit and history.
    pub fn command_line(&self) -> String {
        let mut s = self.job.clone();
        for (k, v) in &self.params {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }
}

/// Which stream an output line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A note from opsbot itself (truncation, start failure).
    System,
}

impl Stream {
    /// One-letter code used in storage.
    pub fn code(self) -> char {
        match self {
            Stream::Stdout => 'o',
            Stream::Stderr => 'e',
            Stream::System => 's',
        }
    }
    /// Parses the one-letter code.
    pub fn from_code(c: char) -> Option<Self> {
        match c {
            'o' => Some(Stream::Stdout),
            'e' => Some(Stream::Stderr),
            's' => Some(Stream::System),
            _ => None,
        }
    }
}

/// One line of output with its timestamp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputLine {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// From where.
    pub stream: Stream,
    /// The text, without its line ending.
    pub text: String,
}

/// A state change the store announces to whoever listens (engine notifier, CLI).
#[derive(Clone, Debug)]
pub struct ExecEvent {
    /// Which execution.
    pub id: ExecutionId,
    /// Its new state.
    pub state: ExecState,
}
