//! The local exec runner: one job run = one local process started from argv templates.
//!
//! How a run goes:
//!
//! 1. Each argv element is rendered as a minijinja template over the params plus
//!    `execution_id`, `job` and `requester` (no auto-escaping; an absent variable renders as
//!    an empty string). The rendered strings become the argv of the process as they are —
//!    no shell ever sees them, so a param value like `; rm -rf /` is just an argument.
//! 2. The process is spawned with [`std::process::Command`] in a new process group, stdin
//!    on `/dev/null`, stdout and stderr piped, the parent's environment plus the job's `env`
//!    plus `OPSBOT_PARAM_<NAME>`, `OPSBOT_EXECUTION_ID` and `OPSBOT_JOB`.
//! 3. Its exit is watched through a pidfd registered with the tokio reactor (or by polling
//!    `waitid(WNOWAIT)` every 20 ms where pidfds are unavailable); the runner reaps it itself
//!    with `wait4` to learn its exit status and resource usage. Nothing blocks the runtime.
//! 4. stdout and stderr are read concurrently with a fixed-size buffer, split into lines
//!    (a line is cut at 16 KiB) and sent in order until the job's output limit is reached;
//!    past it the pipes are still drained so the process never blocks on a full pipe.
//! 5. On timeout or cancel the whole group gets SIGTERM, then SIGKILL if the leader has not
//!    exited after the job's kill grace; once the leader is dead the rest of the group is
//!    SIGKILLed too, while the unreaped leader still pins the group id.

use crate::redact::Redactor;
use async_trait::async_trait;
use chrono::Utc;
use minijinja::Environment;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use opsbot_core::{JobSpec, OutputLine, Params, RunOutcome, RunRequest, Runner, RunnerSpec, Stream};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest line kept, in bytes; the rest of a longer line is discarded.
const LINE_CAP: usize = 16 * 1024;
/// Appended to a line cut at [`LINE_CAP`].
const LINE_CUT_MARK: &str = " … [line cut at 16 KiB]";
/// Size of the fixed read buffer of each pipe.
const READ_BUF: usize = 64 * 1024;
/// How long to wait for pipe EOF once the process has exited (a grandchild may hold the pipe).
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// After the pipe grace, at most this much more already-written output is still read.
const LATE_DRAIN: usize = 1024 * 1024;
/// How long to wait for the leader to die after SIGKILL before leaving it to a background reaper.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the rest of a stopped group to disappear.
const GROUP_GONE_WAIT: Duration = Duration::from_secs(1);
/// Polling interval where polling is needed.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Runs jobs whose runner is [`RunnerSpec::Exec`] as local processes.
#[derive(Debug)]
pub struct ExecRunner {
    templates: Environment<'static>,
}

impl Default for ExecRunner {
    fn default() -> Self {
        Self::new()
    }
}

impl ExecRunner {
    /// A runner with a template environment that never escapes and renders absent values as "".
    pub fn new() -> Self {
        Self {
            templates: opsbot_core::job::template_env(),
        }
    }

    /// Renders every argv element over the params and the built-in variables.
    fn render_argv(
        &self,
        argv: &[String],
        execution_id: i64,
        job: &JobSpec,
        params: &Params,
        requester: &str,
    ) -> Result<Vec<String>, String> {
        let ctx = opsbot_core::job::template_context(&job.name, &job.params, params, execution_id, requester);
        let job = &job.name;
        argv.iter()
            .enumerate()
            .map(|(i, template)| {
                let name = format!("argv[{i}]");
                self.templates
                    .render_named_str(&name, template, ctx.clone())
                    .map_err(|e| format!("cannot render {name} of `{job}` (`{template}`): {e}"))
            })
            .collect()
    }
}

/// Why a running process is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Timeout,
    Cancel,
}

#[async_trait]
impl Runner for ExecRunner {
    async fn run(&self, req: RunRequest) -> RunOutcome {
        let begun = Instant::now();
        let RunRequest {
            execution_id,
            job,
            params,
            requester,
            output,
            cancel,
            on_start,
        } = req;
        let sink = Sink::new(output, job.output_limit, redactor(&job, &params));
        let mut outcome = RunOutcome::default();

        let mut cmd = match self.prepare(execution_id, &job, &params, &requester) {
            Ok(cmd) => cmd,
            Err(msg) => return start_failed(outcome, &sink, msg, begun).await,
        };
        if cancel.is_cancelled() {
            sink.system("cancelled before it started".into()).await;
            outcome.cancelled = true;
            outcome.duration_ms = millis(begun.elapsed());
            return outcome;
        }

        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let why = out_of_descriptors(&e).unwrap_or_else(|| e.to_string());
                return start_failed(outcome, &sink, format!("cannot start `{program}`: {why}"), begun).await;
            }
        };
        let spawned = Instant::now();
        let pid = child.id() as libc::pid_t;
        let mut guard = ChildGuard { pid, armed: true };
        if let Some(tx) = on_start {
            // The leader's pid is the group id: it was started with process_group(0).
            let _ = tx.send(pid as u32);
        }
        tracing::debug!(execution_id, job = %job.name, pid, "started `{program}`");

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut readers = Readers(Vec::new());
        for (fd, stream) in [
            child.stdout.take().map(OwnedFd::from).map(|fd| (fd, Stream::Stdout)),
            child.stderr.take().map(OwnedFd::from).map(|fd| (fd, Stream::Stderr)),
        ]
        .into_iter()
        .flatten()
        {
            match Pipe::new(fd) {
                Ok(pipe) => readers
                    .0
                    .push(tokio::spawn(read_stream(pipe, stream, sink.clone(), stop_rx.clone()))),
                Err(e) => {
                    let msg = format!("cannot read the output of `{program}`: {e}");
                    drop(readers);
                    // The guard kills the group and reaps the leader in the background.
                    drop(guard);
                    return start_failed(outcome, &sink, msg, begun).await;
                }
            }
        }
        drop(child);

        let exit = ExitWatch::new(pid);
        let stop = tokio::select! {
            biased;
            _ = exit.exited() => None,
            _ = tokio::time::sleep(job.timeout) => Some(StopReason::Timeout),
            _ = cancel.cancelled() => Some(StopReason::Cancel),
        };

        let mut note = None;
        if let Some(reason) = stop {
            let (escalated, dead) = stop_group(pid, &exit, job.kill_grace).await;
            match reason {
                StopReason::Timeout => outcome.timed_out = true,
                StopReason::Cancel => outcome.cancelled = true,
            }
            note = Some(stop_note(reason, &job, escalated));
            if !dead {
                // The leader did not die even after SIGKILL (stuck in the kernel): leave it to a reaper task.
                guard.armed = false;
                tokio::spawn(async move {
                    exit.exited().await;
                    let _ = reap(pid).await;
                });
                outcome.duration_ms = millis(spawned.elapsed());
                finish_readers(readers, &stop_tx).await;
                if let Some(n) = note {
                    sink.system(n).await;
                }
                sink.system(format!(
                    "the process did not exit within {} of SIGKILL; it is reaped in the background",
                    human_duration(KILL_WAIT)
                ))
                .await;
                outcome.output_truncated = sink.truncated();
                return outcome;
            }
        }

        let reaped = reap(pid).await;
        guard.armed = false;
        outcome.duration_ms = millis(spawned.elapsed());
        match reaped {
            Some((status, usage)) => {
                if libc::WIFEXITED(status) {
                    outcome.exit_code = Some(libc::WEXITSTATUS(status));
                } else if libc::WIFSIGNALED(status) {
                    outcome.signal = Some(libc::WTERMSIG(status));
                }
                let cpu_us = timeval_us(usage.ru_utime) + timeval_us(usage.ru_stime);
                outcome.cpu_ms = Some(cpu_us / 1000);
                outcome.max_rss_kb = Some(usage.ru_maxrss);
            }
            None => tracing::warn!(execution_id, pid, "the process was reaped elsewhere; its exit status is unknown"),
        }
        if stop.is_some() {
            wait_group_gone(pid).await;
        }

        finish_readers(readers, &stop_tx).await;
        if let Some(n) = note {
            sink.system(n).await;
        }
        outcome.output_truncated = sink.truncated();
        tracing::debug!(execution_id, pid, ?outcome, "run ended");
        outcome
    }
}

impl ExecRunner {
    /// Renders the argv and builds the command; an error is the start-failure message.
    fn prepare(&self, execution_id: i64, job: &JobSpec, params: &Params, requester: &str) -> Result<Command, String> {
        #[allow(unreachable_patterns)] // more runner types will join the enum
        let (argv, env, cwd) = match &job.runner {
            RunnerSpec::Exec { argv, env, cwd, .. } => (argv, env, cwd),
            _ => return Err(format!("cannot start `{}`: it is not an exec job", job.name)),
        };
        if argv.is_empty() {
            return Err(format!("cannot start `{}`: argv is empty", job.name));
        }
        let args = self.render_argv(argv, execution_id, job, params, requester)?;
        let program = &args[0];
        if program.is_empty() {
            return Err(format!(
                "cannot start `{}`: the program (`{}`) rendered to an empty string",
                job.name, argv[0]
            ));
        }
        let mut cmd = Command::new(program);
        cmd.args(&args[1..]);
        // Inherited OPSBOT_PARAM_* variables (say, when a job itself calls `opsbot run`) must
        // not reach the job as if they were its parameters. Other variables pass through.
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("OPSBOT_PARAM_")) {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env);
        for (name, value) in params {
            cmd.env(format!("OPSBOT_PARAM_{}", env_name(name)), value);
        }
        cmd.env("OPSBOT_EXECUTION_ID", execution_id.to_string());
        cmd.env("OPSBOT_JOB", &job.name);
        cmd.env("OPSBOT_REQUESTER", requester);
        if !cwd.as_os_str().is_empty() {
            if let Err(e) = std::fs::read_dir(cwd) {
                if let Some(why) = out_of_descriptors(&e) {
                    return Err(format!("cannot start `{program}`: {why}"));
                }
                return Err(format!("cannot start `{program}`: working directory `{}`: {e}", cwd.display()));
            }
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        Ok(cmd)
    }
}

/// The scrubber of this run's secrets: its `secret = true` param values and the values of the
/// runner env variables that came from secret references.
fn redactor(job: &JobSpec, params: &Params) -> Option<Arc<Redactor>> {
    let mut values: Vec<&str> = params
        .iter()
        .filter(|(name, _)| job.param(name).is_some_and(|p| p.secret))
        .map(|(_, v)| v.as_str())
        .collect();
    #[allow(irrefutable_let_patterns)] // more runner types will join the enum
    if let RunnerSpec::Exec { env, secret_env, .. } = &job.runner {
        values.extend(secret_env.iter().filter_map(|k| env.get(k)).map(String::as_str));
    }
    Redactor::new(values).map(Arc::new)
}

/// Reports a run that could not start: the outcome's `start_error` and one System line.
async fn start_failed(mut outcome: RunOutcome, sink: &Sink, msg: String, begun: Instant) -> RunOutcome {
    tracing::info!("{msg}");
    sink.system(msg.clone()).await;
    outcome.start_error = Some(msg);
    outcome.duration_ms = millis(begun.elapsed());
    outcome
}

/// `OPSBOT_PARAM_` suffix for a param name: uppercased, anything but `[A-Z0-9_]` as `_`.
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect()
}

/// SIGTERM to the group, SIGKILL after `grace` if the leader lives on, then SIGKILL to
/// whatever is left. Returns (escalated to SIGKILL, leader dead). The leader is not reaped
/// here, so the group id cannot have been reused by anyone else while it is signalled.
async fn stop_group(pid: libc::pid_t, exit: &ExitWatch, grace: Duration) -> (bool, bool) {
    signal_group(pid, Signal::SIGTERM);
    let escalated = tokio::time::timeout(grace, exit.exited()).await.is_err();
    let mut dead = true;
    if escalated {
        signal_group(pid, Signal::SIGKILL);
        dead = tokio::time::timeout(KILL_WAIT, exit.exited()).await.is_ok();
    }
    signal_group(pid, Signal::SIGKILL);
    (escalated, dead)
}

/// Sends a signal to the process group `pgid`, ignoring "no such group".
fn signal_group(pgid: libc::pid_t, sig: Signal) {
    if let Err(e) = killpg(Pid::from_raw(pgid), sig)
        && e != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pgid, "cannot send {sig} to the process group: {e}");
    }
}

/// Waits (briefly) until no process of the stopped group is left, zombies included.
/// Only signal 0 is sent here: the leader is reaped, so the id is no longer pinned.
async fn wait_group_gone(pgid: libc::pid_t) {
    let until = Instant::now() + GROUP_GONE_WAIT;
    while killpg(Pid::from_raw(pgid), None).is_ok() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The System line telling how a run was stopped.
fn stop_note(reason: StopReason, job: &JobSpec, escalated: bool) -> String {
    let how = if escalated {
        format!(
            "stopped with SIGKILL after {} (SIGTERM was not enough)",
            human_duration(job.kill_grace)
        )
    } else {
        "stopped with SIGTERM".to_string()
    };
    match reason {
        StopReason::Timeout => format!("timed out after {}; {how}", human_duration(job.timeout)),
        StopReason::Cancel => format!("cancelled; {how}"),
    }
}

/// Lets the readers run to EOF for at most [`PIPE_GRACE`], then tells them to finish with
/// what is already written, and waits for them.
async fn finish_readers(mut readers: Readers, stop: &watch::Sender<bool>) {
    let all = async {
        for h in readers.0.iter_mut() {
            let _ = h.await;
        }
    };
    if tokio::time::timeout(PIPE_GRACE, all).await.is_err() {
        let _ = stop.send(true);
        for h in readers.0.iter_mut() {
            let _ = h.await;
        }
    }
}

/// Reader tasks, aborted if the run is dropped half-way.
struct Readers(Vec<JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Kills the group and reaps the leader on a helper thread if a run ends without reaping
/// (its future was dropped, or the output could not be read).
struct ChildGuard {
    pid: libc::pid_t,
    armed: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let pid = self.pid;
        // The leader is not reaped yet, so the group id is still ours.
        signal_group(pid, Signal::SIGKILL);
        let spawned = std::thread::Builder::new().name("opsbot-reap".into()).spawn(move || {
            loop {
                // SAFETY: plain waitpid on our own child; a null status pointer is allowed.
                let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(pid, "cannot start a thread to reap the process: {e}");
        }
    }
}

/// Learns when the child has exited, without reaping it.
struct ExitWatch {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl ExitWatch {
    /// Opens a pidfd for the child; without one, [`ExitWatch::exited`] polls.
    fn new(pid: libc::pid_t) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = if fd >= 0 {
            // SAFETY: the syscall just returned this fd and nothing else owns it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
            // SAFETY: the OwnedFd keeps this fd open and unchanged for the AsyncFd's lifetime.
            unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }.ok()
        } else {
            tracing::debug!(pid, "pidfd_open failed ({}); polling for exit", io::Error::last_os_error());
            None
        };
        Self { pid, pidfd }
    }

    /// Resolves once the child has exited (it is then a zombie until [`reap`]).
    async fn exited(&self) {
        if let Some(fd) = &self.pidfd {
            // The readiness is never cleared: an exit stays an exit.
            if fd.readable().await.is_ok() {
                return;
            }
        }
        while !has_exited(self.pid) {
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Whether the child has exited, checked with `waitid(WNOWAIT)` so that it stays unreaped.
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only into `info`.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r == -1 {
        // ECHILD: it is no longer our child to wait for (reaped elsewhere); treat it as gone.
        return io::Error::last_os_error().kind() != io::ErrorKind::Interrupted;
    }
    // SAFETY: after a successful waitid, si_pid is set (0 when nothing has exited).
    unsafe { info.si_pid() != 0 }
}

/// Reaps the exited child with `wait4`: its wait status and resource usage, or None when it
/// cannot be waited for any more (reaped elsewhere).
async fn reap(pid: libc::pid_t) -> Option<(libc::c_int, libc::rusage)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 writes only into `status` and `usage`.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            return Some((status, usage));
        }
        if r == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        tracing::warn!(pid, "wait4 failed: {err}");
        return None;
    }
}

fn timeval_us(tv: libc::timeval) -> i64 {
    tv.tv_sec * 1_000_000 + tv.tv_usec
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A non-blocking pipe end registered with the tokio reactor.
struct Pipe(AsyncFd<File>);

impl Pipe {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(&fd)?;
        // SAFETY: the File owns the fd and keeps it open and unchanged for the AsyncFd's lifetime.
        unsafe { AsyncFd::register_with_interest(File::from(fd), Interest::READABLE) }
            .map(Pipe)
            .map_err(|e| e.into_parts().1)
    }

    /// Reads what is available, waiting for data; 0 means EOF.
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|f| f.get_ref().read(buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads what is available right now; None when nothing is.
    fn read_now(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        loop {
            match self.0.get_ref().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return Some(r),
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads one stream to EOF (or until told to stop and nothing more is immediately there),
/// sending its lines to the sink.
async fn read_stream(pipe: Pipe, stream: Stream, sink: Sink, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; READ_BUF];
    let mut lines = LineSplitter::default();
    let mut ready = Vec::new();
    let mut stopping = false;
    let mut late = 0usize;
    loop {
        stopping = stopping || *stop.borrow();
        let read = if stopping {
            if late >= LATE_DRAIN {
                break;
            }
            match pipe.read_now(&mut buf) {
                Some(r) => r,
                None => break,
            }
        } else {
            tokio::select! {
                biased;
                r = pipe.read(&mut buf) => r,
                _ = stop.wait_for(|s| *s) => {
                    stopping = true;
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!("reading {stream:?}: {e}");
                break;
            }
        };
        if stopping {
            late += n;
        }
        if sink.truncated() {
            // Past the output limit: drain only.
            continue;
        }
        lines.push(&buf[..n], &mut ready);
        for text in ready.drain(..) {
            sink.line(stream, text).await;
        }
    }
    if let Some(text) = lines.finish() {
        sink.line(stream, text).await;
    }
}

/// Splits bytes into lines with bounded memory: at most [`LINE_CAP`] + 1 bytes are held.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
    /// The current line was already cut; its rest is being skipped.
    discarding: bool,
}

impl LineSplitter {
    /// Feeds bytes; complete (or cut) lines are appended to `out`.
    fn push(&mut self, mut data: &[u8], out: &mut Vec<String>) {
        while !data.is_empty() {
            let (chunk, ended, rest) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], true, &data[i + 1..]),
                None => (data, false, &data[data.len()..]),
            };
            data = rest;
            if self.discarding {
                self.discarding = !ended;
                continue;
            }
            // One byte more than the cap, for a '\r' that may end the line.
            let room = LINE_CAP + 1 - self.line.len();
            if chunk.len() > room {
                self.line.extend_from_slice(&chunk[..room]);
                out.push(self.take_cut());
                self.discarding = !ended;
            } else {
                self.line.extend_from_slice(chunk);
                if ended {
                    out.push(self.take_line());
                }
            }
        }
    }

    /// The last line when the stream ended without a newline.
    fn finish(&mut self) -> Option<String> {
        if self.discarding || self.line.is_empty() {
            return None;
        }
        Some(self.take_line())
    }

    fn take_line(&mut self) -> String {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.len() > LINE_CAP {
            return self.take_cut();
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        text
    }

    fn take_cut(&mut self) -> String {
        let mut end = LINE_CAP.min(self.line.len());
        // Do not split a UTF-8 sequence: back off over continuation bytes.
        while end > LINE_CAP - 3 && end < self.line.len() && self.line[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        let mut text = String::from_utf8_lossy(&self.line[..end]).into_owned();
        text.push_str(LINE_CUT_MARK);
        self.line.clear();
        text
    }
}

/// Where a run's lines go: the request's channel, within the output limit.
#[derive(Clone)]
struct Sink {
    tx: mpsc::Sender<OutputLine>,
    /// Scrubs the run's secrets from every line before anything else sees it.
    redactor: Option<Arc<Redactor>>,
    budget: Arc<Mutex<Budget>>,
    /// The receiver is gone; nothing more is sent.
    closed: Arc<AtomicBool>,
}

struct Budget {
    used: u64,
    limit: u64,
    truncated: bool,
}

impl Sink {
    fn new(tx: mpsc::Sender<OutputLine>, limit: u64, redactor: Option<Arc<Redactor>>) -> Self {
        Self {
            tx,
            redactor,
            budget: Arc::new(Mutex::new(Budget {
                used: 0,
                limit,
                truncated: false,
            })),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the output limit was reached.
    fn truncated(&self) -> bool {
        self.budget().truncated
    }

    /// Sends a process output line if it fits in the limit; the first line that does not
    /// fit is replaced by the truncation note, and nothing is sent after it.
    async fn line(&self, stream: Stream, text: String) {
        let at = Utc::now();
        let text = match &self.redactor {
            None => text,
            Some(r) => match text.strip_suffix(LINE_CUT_MARK) {
                Some(kept) => r.cut_line(kept) + LINE_CUT_MARK,
                None => r.line(&text),
            },
        };
        let note = {
            let mut b = self.budget();
            if b.truncated {
                return;
            }
            let cost = text.len() as u64 + 1;
            if b.used.saturating_add(cost) <= b.limit {
                b.used += cost;
                None
            } else {
                b.truncated = true;
                Some(format!(
                    "output truncated: the first {} were kept (limit {}); the rest was discarded",
                    human_bytes(b.used),
                    human_bytes(b.limit)
                ))
            }
        };
        match note {
            None => self.send(OutputLine { at, stream, text }).await,
            Some(text) => self.system(text).await,
        }
    }

    /// Sends a note from opsbot itself (not counted in the limit).
    async fn system(&self, text: String) {
        self.send(OutputLine {
            at: Utc::now(),
            stream: Stream::System,
            text,
        })
        .await;
    }

    async fn send(&self, line: OutputLine) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if self.tx.send(line).await.is_err() {
            self.closed.store(true, Ordering::Relaxed);
        }
    }
}

/// `512 bytes`, `64 KiB`, `1.5 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut unit = 0;
    let mut scale = 1024u64;
    while unit + 1 < UNITS.len() && n >= scale * 1024 {
        unit += 1;
        scale *= 1024;
    }
    if n.is_multiple_of(scale) {
        format!("{} {}", n / scale, UNITS[unit])
    } else {
        format!("{:.1} {}", n as f64 / scale as f64, UNITS[unit])
    }
}

/// `300 ms`, `1.5 s`, `30 s`, `2 min 30 s`, `1 h`.
fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return if ms.is_multiple_of(1000) {
            format!("{} s", ms / 1000)
        } else {
            format!("{:.1} s", ms as f64 / 1000.0)
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if s > 0 {
        parts.push(format!("{s} s"));
    }
    parts.join(" ")
}

/// What to say when starting a job failed for want of file descriptors (the process's or the
/// system's), which would otherwise read as a problem of the job's program or directory.
fn out_of_descriptors(e: &std::io::Error) -> Option<String> {
    match e.raw_os_error() {
        Some(libc::EMFILE) => Some(format!(
            "opsbot is out of file descriptors ({e}): each running job holds 3. Raise the open-file limit \
             (`ulimit -n`, systemd `LimitNOFILE`) to at least 3 × [worker] concurrency + 200, or lower the concurrency"
        )),
        Some(libc::ENFILE) => Some(format!("the system is out of file descriptors ({e}); see `fs.file-max`")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_said_as_such() {
        let emfile = out_of_descriptors(&std::io::Error::from_raw_os_error(libc::EMFILE)).expect("EMFILE");
        assert!(
            emfile.contains("out of file descriptors") && emfile.contains("LimitNOFILE"),
            "{emfile}"
        );
        assert!(out_of_descriptors(&std::io::Error::from_raw_os_error(libc::ENFILE)).is_some());
        assert_eq!(out_of_descriptors(&std::io::Error::from_raw_os_error(libc::ENOENT)), None);
    }

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn splits_across_chunks_and_strips_cr() {
        assert_eq!(split(&[b"ab", b"c\r", b"\nd\n\ne"]), ["abc", "d", "", "e"]);
        assert_eq!(split(&[b"x\ry\r\n"]), ["x\ry"]);
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn cuts_long_lines_and_resumes_after_them() {
        let long = vec![b'a'; LINE_CAP * 3];
        let out = split(&[&long[..LINE_CAP], &long[LINE_CAP..], b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], format!("{}{LINE_CUT_MARK}", "a".repeat(LINE_CAP)));
        assert_eq!(out[1], "next");
    }

    #[test]
    fn a_line_of_exactly_the_cap_is_kept_even_with_crlf() {
        let mut line = vec![b'b'; LINE_CAP];
        line.extend_from_slice(b"\r\n");
        let out = split(&[&line[..LINE_CAP], &line[LINE_CAP..]]);
        assert_eq!(out, ["b".repeat(LINE_CAP)]);
        let mut over = vec![b'b'; LINE_CAP + 1];
        over.push(b'\n');
        assert!(split(&[&over]).remove(0).ends_with(LINE_CUT_MARK));
    }

    #[test]
    fn cut_respects_utf8_boundaries() {
        let mut line = b"a".to_vec();
        for _ in 0..LINE_CAP {
            line.extend_from_slice("é".as_bytes());
        }
        line.push(b'\n');
        let out = split(&[&line]);
        assert!(!out[0].contains('\u{FFFD}'));
        assert!(out[0].len() <= LINE_CAP + LINE_CUT_MARK.len());
    }

    #[test]
    fn human_sizes_and_durations() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(64 * 1024), "64 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_duration(Duration::from_millis(300)), "300 ms");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human_duration(Duration::from_secs(30)), "30 s");
        assert_eq!(human_duration(Duration::from_secs(150)), "2 min 30 s");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 h");
    }

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // reaped by `reap`, which is under test
    async fn exit_watch_uses_a_pidfd_and_reaps_with_rusage() {
        let child = Command::new("/bin/sh").args(["-c", "exit 7"]).spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        let exit = ExitWatch::new(pid);
        assert!(exit.pidfd.is_some(), "pidfd_open works on this kernel");
        tokio::time::timeout(Duration::from_secs(10), exit.exited()).await.unwrap();
        let (status, _) = reap(pid).await.unwrap();
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 7);
        assert!(reap(pid).await.is_none(), "reaped once");
    }

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // reaped by `reap`, which is under test
    async fn exit_watch_falls_back_to_polling_without_reaping() {
        let child = Command::new("/bin/sh").args(["-c", "sleep 0.1; exit 5"]).spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        let exit = ExitWatch { pid, pidfd: None };
        assert!(!has_exited(pid));
        tokio::time::timeout(Duration::from_secs(10), exit.exited()).await.unwrap();
        // Still a zombie: the group id stays pinned until reap.
        assert!(nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok());
        let (status, _) = reap(pid).await.unwrap();
        assert_eq!(libc::WEXITSTATUS(status), 5);
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("app"), "APP");
        assert_eq!(env_name("dry-run"), "DRY_RUN");
    }
}
