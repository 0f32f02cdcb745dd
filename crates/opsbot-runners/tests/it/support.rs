//! Helpers: building job specs and running them to the end.

use opsbot_core::{CancelToken, JobSpec, OutputLine, Params, RunOutcome, RunRequest, Runner, RunnerSpec, Stream};
use opsbot_runners::ExecRunner;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A job running `argv` in the temp dir, 30 s timeout, 300 ms grace, 1 MiB output.
pub fn job(argv: &[&str]) -> JobSpec {
    JobSpec {
        name: "demo".into(),
        description: "a test job".into(),
        params: Vec::new(),
        aliases: Vec::new(),
        examples: Vec::new(),
        runner: RunnerSpec::Exec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            cwd: std::env::temp_dir(),
            secret_env: Default::default(),
        },
        timeout: Duration::from_secs(30),
        kill_grace: Duration::from_millis(300),
        concurrency: None,
        sensitive: false,
        output_limit: 1024 * 1024,
    }
}

/// Same job, other working directory.
pub fn in_dir(mut job: JobSpec, dir: &Path) -> JobSpec {
    let RunnerSpec::Exec { cwd, .. } = &mut job.runner;
    *cwd = dir.to_path_buf();
    job
}

/// Params from pairs.
pub fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Runs the job to its end and returns the outcome and every line sent.
pub async fn run(job: JobSpec, params: Params) -> (RunOutcome, Vec<OutputLine>) {
    run_with(job, params, CancelToken::new()).await
}

/// Runs the job with a given cancel token.
pub async fn run_with(job: JobSpec, params: Params, cancel: CancelToken) -> (RunOutcome, Vec<OutputLine>) {
    let (tx, mut rx) = mpsc::channel(256);
    let collector = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push(l);
        }
        lines
    });
    let outcome = ExecRunner::new().run(request(job, params, tx, cancel)).await;
    let lines = collector.await.expect("collector");
    (outcome, lines)
}

/// A request with execution id 42.
pub fn request(job: JobSpec, params: Params, output: mpsc::Sender<OutputLine>, cancel: CancelToken) -> RunRequest {
    RunRequest {
        requester: "test:tester".into(),
        on_start: None,
        execution_id: 42,
        job: Arc::new(job),
        params,
        output,
        cancel,
    }
}

/// Texts of the lines of one stream.
pub fn texts(lines: &[OutputLine], stream: Stream) -> Vec<String> {
    lines.iter().filter(|l| l.stream == stream).map(|l| l.text.clone()).collect()
}

/// The System lines, joined for messages.
pub fn system(lines: &[OutputLine]) -> String {
    texts(lines, Stream::System).join("\n")
}
