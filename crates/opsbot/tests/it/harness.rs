//! Drives the real `opsbot` binary: a shell session with piped stdin/stdout, one line at a time.

use regex::Regex;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_opsbot");

/// The example config of the repository.
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/opsbot.toml")
}

/// A temporary folder holding a database (and optionally a config).
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.dir.path().join("opsbot.db")
    }
    /// Writes a config file next to the database and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("opsbot.toml");
        std::fs::write(&p, text).expect("write config");
        p
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A command for the binary on this sandbox's database, with fast demo scripts.
    pub fn cmd(&self, config: &Path) -> Command {
        // bench/chat.sh measures a release build through the same tests.
        let bin = std::env::var_os("OPSBOT_TEST_BIN").unwrap_or_else(|| BIN.into());
        let mut c = Command::new(bin);
        c.arg("--config").arg(config).arg("--db").arg(self.db());
        c.env("OPSBOT_DEMO_STEP", "0.05")
            .env("NO_COLOR", "1")
            .env_remove("OPSBOT_CONFIG")
            .env_remove("OPSBOT_DB");
        c
    }
    /// Creates an API token for web user `user` with `opsbot token create`; returns its secret.
    pub fn token(&self, config: &Path, user: &str) -> String {
        let out = self.cmd(config).args(["token", "create", "--user", user]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
    /// Starts `opsbot serve --listen 127.0.0.1:0` on this sandbox; returns it and its address.
    pub fn serve(&self, config: &Path) -> (Session, String) {
        self.serve_with(config, &[])
    }
    /// [`Sandbox::serve`] with extra environment variables (e.g. `OPSBOT_PASSWORD_DEMO`).
    pub fn serve_with(&self, config: &Path, env: &[(&str, &str)]) -> (Session, String) {
        self.serve_at(config, env, "127.0.0.1:0")
    }
    /// [`Sandbox::serve_with`] on a given address (when the config must name it, e.g. a
    /// callback URL a chat platform calls).
    pub fn serve_at(&self, config: &Path, env: &[(&str, &str)], listen: &str) -> (Session, String) {
        let mut c = self.cmd(config);
        c.args(["serve", "--listen", listen]);
        c.envs(env.iter().copied());
        let serve = Session::start(c);
        let start = Instant::now();
        // The address from the startup line (`… web console on http://ADDR/ …`, or the older
        // `REST API on http://ADDR/…`), printed once the listener is bound.
        let line = Regex::new(r"(?:web console|REST API) on http://([^/\s]+)/").unwrap();
        let addr = loop {
            let err = serve.stderr();
            if let Some(m) = line.captures(&err) {
                break m[1].to_string();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "serve did not start: {err}");
            std::thread::sleep(Duration::from_millis(20));
        };
        (serve, addr)
    }
    /// Writes the example config with `extra` appended into this sandbox (its `scripts/` linked
    /// to the examples' own) and returns its path.
    pub fn example_copy(&self, extra: &str) -> PathBuf {
        let text = std::fs::read_to_string(example_config()).expect("read the example config");
        let scripts = self.path("scripts");
        if !scripts.exists() {
            std::os::unix::fs::symlink(example_config().parent().unwrap().join("scripts"), scripts).expect("link scripts");
        }
        self.config(&format!("{text}\n{extra}\n"))
    }
    /// A command for the binary as a client of the opsbot at `server`, with `token` in
    /// OPSBOT_TOKEN (none when `None`), run in an empty folder with a config path that does not
    /// exist: a remote command must not need one.
    pub fn remote(&self, server: &str, token: Option<&str>) -> Command {
        let dir = self.path("client");
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new(BIN);
        c.current_dir(&dir)
            .args(["--config", "/nonexistent/opsbot.toml", "--server", server])
            .env("NO_COLOR", "1")
            .env("OPSBOT_DEMO_STEP", "0.05");
        for v in [
            "OPSBOT_CONFIG",
            "OPSBOT_DB",
            "OPSBOT_SERVER",
            "OPSBOT_TOKEN",
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            c.env_remove(v);
        }
        if let Some(t) = token {
            c.env("OPSBOT_TOKEN", t);
        }
        c
    }
    /// Starts `opsbot shell` as `user`.
    pub fn shell(&self, config: &Path, user: &str) -> Session {
        let mut c = self.cmd(config);
        c.args(["shell", "--user", user]);
        Session::start(c)
    }
}

/// A running shell whose output is collected in the background.
pub struct Session {
    pub child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    cursor: usize,
}

fn collect(mut r: impl Read + Send + 'static, buf: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(&mut r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => buf.lock().unwrap().push_str(&String::from_utf8_lossy(&line)),
            }
        }
    });
}

impl Session {
    pub fn start(mut c: Command) -> Session {
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("start opsbot");
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), out.clone());
        collect(child.stderr.take().unwrap(), err.clone());
        let stdin = child.stdin.take();
        Session {
            child,
            stdin,
            out,
            err,
            cursor: 0,
        }
    }

    /// Types one line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until the output after the cursor matches `pattern`; returns the text up to the
    /// end of the match and moves the cursor past it. Fails with everything seen on timeout.
    pub fn expect(&mut self, pattern: &str) -> String {
        self.expect_within(pattern, Duration::from_secs(20))
    }

    pub fn expect_within(&mut self, pattern: &str, limit: Duration) -> String {
        let re = Regex::new(pattern).expect("pattern");
        let start = Instant::now();
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(m) = re.find(&out[self.cursor..]) {
                    let text = out[self.cursor..self.cursor + m.end()].to_string();
                    self.cursor += m.end();
                    return text;
                }
            }
            if start.elapsed() > limit {
                panic!(
                    "timed out waiting for /{pattern}/\n--- stdout after cursor ---\n{}\n--- stderr ---\n{}",
                    &self.out.lock().unwrap()[self.cursor..],
                    self.err.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a line and waits for a pattern.
    pub fn ask(&mut self, line: &str, pattern: &str) -> String {
        self.send(line);
        self.expect(pattern)
    }

    /// Closes stdin and waits for the process to exit; returns (stdout, stderr, success).
    pub fn finish(mut self) -> (String, String, bool) {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("shell did not exit after end of input\n{}", self.out.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        (out, err, status.success())
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; returns (status, body).
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// One HTTP/1.1 request with extra headers and an optional `(content type, body)`, over a fresh
/// connection; returns (status, response headers, body).
pub fn http_with(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<(&str, &str)>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((ty, b)) = body {
        req.push_str(&format!("Content-Type: {ty}\r\nContent-Length: {}\r\n", b.len()));
    } else if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body.map(|b| b.1).unwrap_or(""));
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_string(), body.to_string())
}

/// A program the tests need from outside the repository (installed by `scripts/test.sh`):
/// `Some(path)` when it is there; otherwise a test fails when `OPSBOT_REQUIRE_SERVERS=1` (CI)
/// and is skipped with a note when not.
pub fn required_program(what: &str, env_var: &str, default: &Path) -> Option<PathBuf> {
    let path = std::env::var_os(env_var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| default.to_path_buf());
    if path.is_file() {
        return Some(path);
    }
    let note = format!(
        "{what} not found at {} (set {env_var}, or run scripts/test.sh, which installs it)",
        path.display()
    );
    if std::env::var("OPSBOT_REQUIRE_SERVERS").is_ok_and(|v| v == "1") {
        panic!("{note}; OPSBOT_REQUIRE_SERVERS=1 needs it");
    }
    eprintln!("SKIPPED: {note}");
    None
}

/// Runs the shell on a whole script (stdin closed at the end) and returns its stdout.
pub fn script(sb: &Sandbox, config: &Path, user: &str, lines: &[&str]) -> String {
    let mut c = sb.cmd(config);
    c.args(["shell", "--user", user]);
    let mut s = Session::start(c);
    for l in lines {
        s.send(l);
    }
    let (out, err, ok) = s.finish();
    assert!(ok, "shell failed\n{out}\n{err}");
    out
}

/// Whether a process group still has a living member. Zombies do not count: a killed
/// grandchild is reparented to PID 1 and stays a zombie until PID 1 reaps it, which is not
/// ours to wait for. Read from /proc/PID/stat (field 5 is the group, field 3 the state).
pub fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    dir.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // The command name (field 2) is in parentheses and may contain spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[2].parse::<i32>() == Ok(pgid) && f[0] != "Z" && f[0] != "X"
    })
}

/// People for tests on a copy of the example config (`Sandbox::example_copy`): the web
/// users the tests sign in as or make API tokens for, with the example's own roles.
pub const TEST_PEOPLE: &str = r#"
[people.ana]
accounts = ["web:ana"]
roles = ["deployer"]

[people.fuzz]
accounts = ["web:fuzz"]
roles = ["deployer"]

[people.auditor]
accounts = ["web:auditor"]
roles = ["viewer"]
"#;

/// A config with test jobs around a few real programs.
pub fn test_config(sb: &Sandbox, extra: &str) -> PathBuf {
    let text = format!(
        r#"
[bot]
confirm_timeout = "1s"
dialog_timeout = "1s"

# These tests are about running jobs; every account may do everything (access: access.rs).
[access]
default_role = "admin"

[jobs.echo]
description = "print its value"
runner = {{ type = "exec", argv = ["printf", "<%s>\n", "{{{{ v }}}}"] }}
[[jobs.echo.params]]
name = "v"
required = true

[jobs.envdump]
description = "print OPSBOT_PARAM_V"
runner = {{ type = "exec", argv = ["sh", "-c", "printf '<%s>\n' \"$OPSBOT_PARAM_V\"", "envdump"] }}
[[jobs.envdump.params]]
name = "v"
required = true

[jobs.sleeper]
description = "print the process group and sleep, with a child that sleeps too"
timeout = "{timeout}"
kill_grace = "1s"
runner = {{ type = "exec", argv = ["sh", "-c", "echo pgid=$$; sleep 60 & sleep 60"] }}

[jobs.flood]
description = "print a lot"
output_limit = "16KiB"
runner = {{ type = "exec", argv = ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; echo done"] }}

[jobs.fail]
description = "exit 3"
runner = {{ type = "exec", argv = ["sh", "-c", "echo about to fail; echo oops >&2; exit 3"] }}

[jobs.count]
description = "count to n"
runner = {{ type = "exec", argv = ["seq", "{{{{ n }}}}"] }}
[[jobs.count.params]]
name = "n"
type = "int"
min = 1
max = 100000
default = 3

[jobs.danger]
description = "sensitive"
sensitive = true
runner = {{ type = "exec", argv = ["echo", "danger done"] }}

{extra}
"#,
        timeout = "30s"
    );
    sb.config(&text)
}

/// Waits until `/readyz` of the `opsbot serve` at `addr` lists `n` connected chat adapters (at
/// most 30 s; the failure shows the server's log).
pub async fn adapters_connected(addr: &str, serve: &Session, n: usize) {
    let start = Instant::now();
    loop {
        let (status, body) = http(addr, "GET", "/readyz", None, None);
        if status == 200 && body.matches("\"connected\":true").count() >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not all {n} adapters connected: {body}\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An `opsbot serve` with its sandbox (kept alive as long as the server), for chat tests.
pub struct Bot {
    pub _sandbox: Sandbox,
    pub serve: Session,
    pub addr: String,
}

/// The run id in a job card's text (`#12 queued`).
pub fn run_id(text: &str) -> i64 {
    let at = text.find('#').unwrap_or_else(|| panic!("no run id in {text:?}"));
    text[at + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}
