//! Test-only helpers shared by the adapter tests and the conformance suite: each module starts
//! one real chat server on 127.0.0.1 (a free port, fresh state in a temporary folder), can stop
//! and start it again in place (same port, same state), and gives [`ChatUser`]s — clients
//! written from the protocol, independent of opsbot's adapters — to talk to the bot as people
//! would.
//!
//! Slack and Mattermost cannot run here: [`slack`] and [`mattermost`] are local fakes that
//! implement exactly the subset of their APIs opsbot uses, written from the published API
//! documents and checked with the platforms' own client libraries (`tests/slack_fake.rs`,
//! `tests/mattermost_fake.rs`: slack_sdk and mattermostdriver).
//!
//! A server that is not installed makes [`require`] skip the test with a note, or fail it when
//! `OPSBOT_REQUIRE_SERVERS=1` (CI). `scripts/test.sh` installs them all.

use std::path::PathBuf;
use std::time::Duration;

pub mod irc;
pub mod llm;
pub mod matrix;
pub mod mattermost;
pub mod slack;
pub mod xmpp;

/// What a test user heard from the bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    /// The room it was said in, as [`ChatServer::room`] names it; `None` for a direct message.
    pub room: Option<String>,
    /// The text (plain body).
    pub text: String,
    /// The platform's id of this message, where it has one.
    pub id: Option<String>,
    /// When this message replaces an earlier one (a job card's update), that one's id.
    pub replaces: Option<String>,
    /// The thread it is in, where the platform has threads.
    pub thread: Option<String>,
}

/// One person on a chat server, as the conformance suite drives them.
#[async_trait::async_trait]
pub trait ChatUser: Send {
    /// This person's account as opsbot sees it, without the adapter name (what goes after
    /// `NAME:` in `[people.*] accounts`).
    fn account(&self) -> String;
    /// Says `text` in a room (one the server's [`ChatServer::room`] names).
    async fn say(&mut self, room: &str, text: &str) -> Result<(), String>;
    /// Sends `text` to the bot directly.
    async fn dm(&mut self, text: &str) -> Result<(), String>;
    /// The next message from the bot this person sees (in a room they are in or directly),
    /// or `None` after `timeout`. Messages from others than the bot are skipped.
    async fn next(&mut self, timeout: Duration) -> Option<Heard>;
}

/// A running chat server.
#[async_trait::async_trait]
pub trait ChatServer: Send + Sync {
    /// The `type` of the adapter that talks to it (`irc`, `matrix`, `xmpp`).
    fn platform(&self) -> &'static str;
    /// The body of an `[adapters.NAME]` table that connects the bot, and the environment
    /// variables its secret references need.
    fn adapter_toml(&self) -> (String, Vec<(String, String)>);
    /// The room the bot is configured to join, as a [`ChatUser`] addresses it.
    fn room(&self) -> String;
    /// The channel part of the place opsbot records for that room.
    fn room_channel(&self) -> String;
    /// A new person on the server, connected, in the room, ready to talk.
    async fn user(&self, name: &str) -> Result<Box<dyn ChatUser>, String>;
    /// Stops the server (a crash: no goodbye to clients).
    async fn stop(&mut self);
    /// Starts it again on the same port with the same state; returns once it takes clients.
    async fn start(&mut self) -> Result<(), String>;
    /// Figures the server measured itself, for the suite's report (a fake's event → ack
    /// latency); none by default.
    fn figures(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// Whether a missing server fails the test (CI) instead of skipping it.
pub fn servers_required() -> bool {
    std::env::var("OPSBOT_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

/// `Some(path)` when the program is installed (found on PATH or at the path an environment
/// variable names); otherwise a note and `None`, or a panic under `OPSBOT_REQUIRE_SERVERS=1`.
pub fn require(what: &str, env_var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var).filter(|v| !v.is_empty()).map(PathBuf::from)
        && p.is_file()
    {
        return Some(p);
    }
    for c in candidates {
        let p = PathBuf::from(c);
        if p.is_absolute() && p.is_file() {
            return Some(p);
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let full = dir.join(c);
                if full.is_file() {
                    return Some(full);
                }
            }
        }
    }
    let note = format!("{what} is not installed (set {env_var}, or run scripts/test.sh, which installs it)");
    if servers_required() {
        panic!("{note}; OPSBOT_REQUIRE_SERVERS=1 needs it");
    }
    eprintln!("SKIPPED: {note}");
    None
}

/// The venv `scripts/test.sh` makes for the Python side of the tests (Synapse and the client
/// libraries `irc`, `matrix-nio`, `slixmpp`): `target/chat-venv`, or `OPSBOT_CHAT_VENV`.
pub fn chat_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("OPSBOT_CHAT_VENV").filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("chat-venv")
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts TCP connections on the port, up to `timeout`.
pub async fn wait_tcp(port: u16, timeout: Duration) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("nothing listens on 127.0.0.1:{port} after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A child process killed (with its process group) when dropped.
pub struct Proc {
    child: Option<std::process::Child>,
    /// What it is, for messages.
    pub what: String,
}

impl Proc {
    /// Starts `cmd` in its own process group, output to `log`.
    pub fn spawn(what: &str, mut cmd: std::process::Command, log: &std::path::Path) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(std::process::Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Self {
            child: Some(child),
            what: what.to_string(),
        })
    }

    /// Kills it (SIGKILL to its group) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            // The whole group (the child was made its leader). Never through the `kill` tool:
            // procps reads `kill -KILL -PID` as `kill(-1, …)`, which as root kills everything.
            if pid > 1 {
                // SAFETY: killpg on a group id we created; no memory involved.
                unsafe {
                    libc::killpg(pid, libc::SIGKILL);
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
