//! Integration tests of the SQLite store, through the `Store` trait, on memory and on a file.

use chrono::{DateTime, Utc};
use opsbot_core::{ExecState, NewExecution, OutputLine, Params, Place, Stream, UserId};
use opsbot_store::{Finish, SqliteStore};

/// Runs `async fn $name(store: &SqliteStore)` once on a memory database and once on a file.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn memory() {
                let store = opsbot_store::SqliteStore::memory().await.expect("memory store");
                super::$name(&store).await;
            }

            #[tokio::test]
            async fn file() {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = opsbot_store::SqliteStore::open(&dir.path().join("opsbot.db"))
                    .await
                    .expect("file store");
                super::$name(&store).await;
            }
        }
    };
}

mod approvals;
mod audit;
mod cancel;
mod chain;
mod claims;
mod dialogs;
mod events;
mod executions;
mod files;
mod links;
mod locks;
mod output;
mod recover;
mod schedules;
mod tokens;
mod upgrade;
mod web;

/// A file store in a fresh temp dir (keep the dir alive as long as the store).
pub async fn file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("file store");
    (dir, store)
}

/// The test user `terminal:ana`.
pub fn ana() -> UserId {
    UserId::new("terminal", "ana")
}

/// The test place `terminal/ops`.
pub fn ops() -> Place {
    Place::new("terminal", "ops")
}

/// A new execution of `job` by ana in ops, with one param and no parallel limit.
pub fn new_exec(job: &str) -> NewExecution {
    let mut params = Params::new();
    params.insert("env".into(), "prod".into());
    NewExecution {
        job: job.into(),
        params,
        requested_by: ana(),
        requester_name: "Ana".into(),
        place: ops(),
        max_parallel: None,
    }
}

/// A finish record with a final state and exit code.
pub fn finished(state: ExecState, exit_code: i32) -> Finish {
    Finish {
        state: Some(state),
        exit_code: Some(exit_code),
        duration_ms: Some(1234),
        cpu_ms: Some(56),
        max_rss_kb: Some(7890),
        detail: None,
    }
}

/// A timestamp at millisecond precision (what the store keeps).
pub fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("valid timestamp")
}

/// An output line.
pub fn line(ms: i64, stream: Stream, text: &str) -> OutputLine {
    OutputLine {
        at: at_ms(ms),
        stream,
        text: text.to_string(),
    }
}

/// Now, truncated to milliseconds.
pub fn now_ms() -> DateTime<Utc> {
    at_ms(Utc::now().timestamp_millis())
}
