//! The worker: claims queued executions from the store, hands each to a runner, writes its
//! output and final state back.
//!
//! A worker runs in the `opsbot` process by default. It is identified as `host#pidns:pid`, holds a
//! lease on every execution it runs and renews it; executions whose lease lapses or whose
//! worker process is gone are marked `lost` by whoever notices (see [`is_dead`]).

use opsbot_core::job::{Catalog, RunnerSpec};
use opsbot_core::{CancelToken, ExecState, Execution, ExecutionId, OutputLine, RunOutcome, RunRequest, Runner, Stream};
use opsbot_store::{Finish, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

/// How a worker behaves.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Its id, normally [`worker_id()`].
    pub id: String,
    /// Executions at once.
    pub concurrency: usize,
    /// Lease length; renewed every third of it.
    pub lease: Duration,
    /// How often to look for cancel requests and (without a wake-up) for queued work.
    pub poll: Duration,
    /// Claim only this execution, then stop (the CLI's `opsbot run`).
    pub only: Option<ExecutionId>,
}

impl WorkerOptions {
    /// Defaults: `host#pidns:pid`, 30 s lease, 200 ms poll.
    pub fn new(concurrency: usize) -> Self {
        Self {
            id: worker_id(),
            concurrency: concurrency.max(1),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            only: None,
        }
    }
}

/// `host#pidns:pid` of this process.
pub fn worker_id() -> String {
    format!("{}:{}", host_key(), std::process::id())
}

/// This host as seen from this process: the hostname and, when it can be read, the PID
/// namespace, so that two containers sharing a hostname (and a store) never judge each
/// other's workers by a PID they cannot see.
fn host_key() -> String {
    match std::fs::read_link("/proc/self/ns/pid") {
        Ok(ns) => {
            let ns = ns.to_string_lossy();
            let inode = ns.trim_start_matches("pid:[").trim_end_matches(']');
            format!("{}#{inode}", hostname())
        }
        Err(_) => hostname(),
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether the worker with this id ran on this host (in this PID namespace).
pub fn is_local(worker: &str) -> bool {
    worker.rsplit_once(':').is_some_and(|(host, _)| host == host_key())
}

/// Whether the worker with this id is certainly gone: it ran on this host and its process no
/// longer exists. Workers on other hosts are judged by their lease instead.
pub fn is_dead(worker: &str) -> bool {
    let Some((host, pid)) = worker.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if host != host_key() || pid <= 0 {
        return false;
    }
    if pid as u32 == std::process::id() {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Stops what is left of a lost execution's process group on this host: every process of
/// group `pgid` whose environment carries `OPSBOT_EXECUTION_ID=<id>` gets SIGTERM, then SIGKILL
/// after `grace`. The environment check means a group id reused by an unrelated process is never
/// touched. Returns how many processes were found. (Linux: reads /proc.)
pub fn stop_orphaned_group(execution: ExecutionId, pgid: i64, grace: Duration) -> usize {
    let members = || orphan_members(execution, pgid);
    let found = members();
    if found.is_empty() {
        return 0;
    }
    for pid in &found {
        // SAFETY: plain signal to a process verified above to belong to this execution.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && !members().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in members() {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    found.len()
}

/// Living processes of group `pgid` whose environment says they run `execution`.
fn orphan_members(execution: ExecutionId, pgid: i64) -> Vec<i32> {
    let marker = format!("OPSBOT_EXECUTION_ID={execution}");
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let in_group = f.len() > 2 && f[2].parse::<i64>() == Ok(pgid) && f[0] != "Z" && f[0] != "X";
            in_group
                && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()))
        })
        .collect()
}

/// Lines per stored chunk, and the longest a line waits before being stored.
const CHUNK_LINES: usize = 256;
const CHUNK_WAIT: Duration = Duration::from_millis(100);

/// Claims and runs executions.
pub struct Worker {
    store: Arc<dyn Store>,
    catalog: Arc<Catalog>,
    exec: Arc<dyn Runner>,
    opts: WorkerOptions,
    running: Mutex<HashMap<ExecutionId, CancelToken>>,
    /// Set when shutdown cancels what is still running, so those runs say why they stopped.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Worker {
    /// A worker over a store and a catalog, running `exec` jobs with `exec`.
    pub fn new(store: Arc<dyn Store>, catalog: Arc<Catalog>, exec: Arc<dyn Runner>, opts: WorkerOptions) -> Arc<Self> {
        Arc::new(Self {
            store,
            catalog,
            exec,
            opts,
            running: Mutex::new(HashMap::new()),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.opts.id
    }

    /// How many executions this worker is running now.
    pub fn running(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Runs until `shutdown` turns true (or, with `only`, until that execution ends). On
    /// shutdown it stops claiming, lets running executions finish for `grace`, then cancels
    /// what is left and waits for it, so nothing is left `running` in the store.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let sem = Arc::new(Semaphore::new(self.opts.concurrency));
        let mut tasks = JoinSet::new();
        let ticker = tokio::spawn(self.clone().tick_loop());
        let notify = self.store.queue_notify();
        let mut claimed_only = false;
        loop {
            if *shutdown.borrow() || claimed_only {
                break;
            }
            let permit = tokio::select! {
                p = sem.clone().acquire_owned() => p.expect("semaphore never closed"),
                // A dropped sender means nobody can ask us to stop any more: stop now.
                r = shutdown.changed() => if r.is_err() { break } else { continue },
            };
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.store.claim(&self.opts.id, self.opts.lease, self.opts.only).await {
                Ok(Some(e)) => {
                    claimed_only = self.opts.only.is_some();
                    let me = self.clone();
                    tasks.spawn(async move {
                        me.execute(e).await;
                        drop(permit);
                    });
                    // Reap finished tasks so the set does not grow.
                    while tasks.try_join_next().is_some() {}
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = &mut woken => {}
                        _ = tokio::time::sleep(self.opts.poll * 5) => {}
                        r = shutdown.changed() => if r.is_err() { break },
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "cannot claim work; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if !claimed_only {
            let deadline = tokio::time::sleep(grace);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = tasks.join_next() => if r.is_none() { break },
                    _ = &mut deadline => {
                        self.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
                        for t in self.running.lock().map(|m| m.values().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                            t.cancel();
                        }
                        while tasks.join_next().await.is_some() {}
                        break;
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        ticker.abort();
    }

    /// Renews leases and passes on cancel requests.
    async fn tick_loop(self: Arc<Self>) {
        let mut since_heartbeat = Duration::ZERO;
        loop {
            tokio::time::sleep(self.opts.poll).await;
            since_heartbeat += self.opts.poll;
            if self.running() == 0 {
                continue;
            }
            if since_heartbeat >= self.opts.lease / 3 {
                since_heartbeat = Duration::ZERO;
                if let Err(e) = self.store.heartbeat(&self.opts.id, self.opts.lease).await {
                    tracing::error!(error = %e, "cannot renew leases");
                }
            }
            match self.store.cancel_requested(&self.opts.id).await {
                Ok(ids) => {
                    let map = self.running.lock().map(|m| m.clone()).unwrap_or_default();
                    for id in ids {
                        if let Some(t) = map.get(&id) {
                            t.cancel();
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read cancel requests"),
            }
        }
    }

    /// Runs one claimed execution to its end and records it.
    async fn execute(self: Arc<Self>, e: Execution) {
        let id = e.id;
        let Some(job) = self.catalog.get(&e.job).cloned() else {
            let detail = format!("job `{}` is not in this worker's configuration", e.job);
            let _ = self.store.append_output(id, &[system_line(&detail)]).await;
            self.finish(
                id,
                &Finish {
                    state: Some(ExecState::Failed),
                    detail: Some(detail),
                    ..Default::default()
                },
            )
            .await;
            return;
        };
        let cancel = CancelToken::new();
        if let Ok(mut m) = self.running.lock() {
            m.insert(id, cancel.clone());
        }
        let (tx, rx) = mpsc::channel::<OutputLine>(1024);
        let writer = tokio::spawn(write_output(self.store.clone(), id, rx));
        let runner = match &job.runner {
            RunnerSpec::Exec { .. } => self.exec.clone(),
        };
        // Record the process group as soon as it exists, for recovery if this process dies.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<u32>();
        let store = self.store.clone();
        let recorder = tokio::spawn(async move {
            if let Ok(pgid) = started_rx.await
                && let Err(err) = store.set_pgid(id, i64::from(pgid)).await
            {
                tracing::warn!(error = %err, execution = id, "cannot record the process group");
            }
        });
        let outcome = runner
            .run(RunRequest {
                requester: e.requested_by.to_string(),
                execution_id: id,
                job: Arc::new(job),
                params: e.params.clone(),
                output: tx,
                cancel,
                on_start: Some(started_tx),
            })
            .await;
        let _ = recorder.await;
        // The runner dropped its sender; wait for every line to be stored before the end is announced.
        let _ = writer.await;
        if let Ok(mut m) = self.running.lock() {
            m.remove(&id);
        }
        let mut end = finish_of(&outcome);
        if outcome.cancelled && self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            end.detail = Some("stopped: opsbot was shutting down".into());
        }
        self.finish(id, &end).await;
    }

    async fn finish(&self, id: ExecutionId, f: &Finish) {
        for attempt in 0..5u32 {
            match self.store.finish(id, f).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::error!(error = %err, execution = id, attempt, "cannot record the end of an execution; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
                }
            }
        }
    }
}

fn system_line(text: &str) -> OutputLine {
    OutputLine {
        at: chrono::Utc::now(),
        stream: Stream::System,
        text: text.to_string(),
    }
}

/// Maps a runner's outcome to the recorded end.
pub fn finish_of(o: &RunOutcome) -> Finish {
    let (state, detail) = if let Some(err) = &o.start_error {
        (ExecState::Failed, Some(err.clone()))
    } else if o.timed_out {
        (ExecState::TimedOut, Some("stopped: it ran past its timeout".to_string()))
    } else if o.cancelled {
        (ExecState::Cancelled, Some("stopped on request".to_string()))
    } else if o.exit_code == Some(0) {
        (ExecState::Succeeded, None)
    } else if let Some(sig) = o.signal {
        (ExecState::Failed, Some(format!("killed by signal {sig}")))
    } else {
        (ExecState::Failed, None)
    };
    let detail = match (detail, o.output_truncated) {
        (Some(d), true) => Some(format!("{d}; output was truncated")),
        (None, true) => Some("output was truncated".to_string()),
        (d, false) => d,
    };
    Finish {
        state: Some(state),
        exit_code: o.exit_code,
        duration_ms: Some(o.duration_ms),
        cpu_ms: o.cpu_ms,
        max_rss_kb: o.max_rss_kb,
        detail,
    }
}

/// Stores output lines in chunks: up to [`CHUNK_LINES`] lines, or what arrived within
/// [`CHUNK_WAIT`] of the first waiting line.
async fn write_output(store: Arc<dyn Store>, id: ExecutionId, mut rx: mpsc::Receiver<OutputLine>) {
    let mut buf: Vec<OutputLine> = Vec::with_capacity(CHUNK_LINES);
    loop {
        let first = match rx.recv().await {
            Some(l) => l,
            None => break,
        };
        buf.push(first);
        let deadline = tokio::time::Instant::now() + CHUNK_WAIT;
        let mut closed = false;
        while buf.len() < CHUNK_LINES {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(l)) => buf.push(l),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = store.append_output(id, &buf).await {
            tracing::error!(error = %e, execution = id, lines = buf.len(), "cannot store output lines");
        }
        buf.clear();
        if closed {
            break;
        }
    }
}
