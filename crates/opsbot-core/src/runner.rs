//! The `Runner` trait: carry out one job with its params, streaming output.

use crate::execution::OutputLine;
use crate::job::{JobSpec, Params};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Tells a running job to stop. Cloneable; `cancel()` from anywhere.
#[derive(Clone, Debug)]
pub struct CancelToken {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx: Arc::new(tx), rx }
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        let _ = self.tx.send(true);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }
    /// Resolves once cancellation is requested.
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

/// Everything a runner needs for one execution.
pub struct RunRequest {
    /// Execution id (for logs and the `OPSBOT_EXECUTION_ID` variable).
    pub execution_id: i64,
    /// The job.
    pub job: Arc<JobSpec>,
    /// Canonical params.
    pub params: Params,
    /// Who asked, as `platform:id` (template variable `requester`, env `OPSBOT_REQUESTER`).
    pub requester: String,
    /// Where output lines go, in order.
    pub output: mpsc::Sender<OutputLine>,
    /// Stops the run when cancelled.
    pub cancel: CancelToken,
    /// Told the process-group id once the process has started, so it can be recorded (and
    /// stopped by whoever recovers the run if this process dies).
    pub on_start: Option<tokio::sync::oneshot::Sender<u32>>,
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunOutcome {
    /// Exit code when the process exited by itself.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any.
    pub signal: Option<i32>,
    /// Stopped because of the timeout.
    pub timed_out: bool,
    /// Stopped because of a cancel request.
    pub cancelled: bool,
    /// It could not start (the reason).
    pub start_error: Option<String>,
    /// Wall time in ms.
    pub duration_ms: i64,
    /// User+system CPU in ms.
    pub cpu_ms: Option<i64>,
    /// Peak RSS in KiB.
    pub max_rss_kb: Option<i64>,
    /// Whether the output cap cut the output.
    pub output_truncated: bool,
}

/// Carries out jobs. Implementations know nothing of the engine or the store.
#[async_trait::async_trait]
pub trait Runner: Send + Sync {
    /// Runs the job to its end (or until cancelled / timed out) and reports how it ended.
    async fn run(&self, req: RunRequest) -> RunOutcome;
}
