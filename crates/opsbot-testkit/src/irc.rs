//! IRC: an ngIRCd server with fresh state in a temporary folder, and [`IrcUser`], a person on
//! it — a raw-socket client written from RFC 2812, independent of opsbot's adapter.
//!
//! Facts checked on ngIRCd 26.1 (Debian 12), which the tests rely on:
//! - with `[Options] Ident = no` every user name gets a `~` prefix (no ident answer) and with
//!   `DNS = no` the host is the address: others see a local client as `nick!~user@127.0.0.1`,
//!   which is what [`IrcUser::account`] returns and what the adapter records as the identity;
//! - ngIRCd offers only the `multi-prefix` capability: no SASL, no `account-tag` (those paths
//!   of the adapter are tested against a scripted server in the adapter tests);
//! - `[Limits] MaxPenaltyTime = 0` turns its flood penalties off (otherwise ~3 lines/s);
//! - started as root it refuses to stay root and runs as `nobody` after reading its files;
//! - its Debian build has TLS (GnuTLS): `[SSL] CertFile/KeyFile/Ports` gives a real TLS port,
//!   here with a self-signed certificate for 127.0.0.1/localhost made by rcgen
//!   ([`Ngircd::start_tls`], [`Ngircd::ca_path`]). Generating its DH parameters makes a TLS
//!   start take about half a second, so plain servers leave TLS off.

use crate::{ChatServer, ChatUser, Heard, Proc, free_port, require, wait_tcp};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// The channel the bot joins and users talk in.
pub const ROOM: &str = "#ops";

/// A running ngIRCd on 127.0.0.1.
pub struct Ngircd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
    proc: Option<Proc>,
}

impl Ngircd {
    /// Starts a plain-text server; `None` when ngIRCd is not installed (the test is skipped,
    /// or fails under `OPSBOT_REQUIRE_SERVERS=1`). Panics when it is installed but will not start.
    pub async fn start() -> Option<Self> {
        Self::launch(false).await
    }

    /// Starts a server with a TLS port as well ([`Ngircd::tls_port`]), its certificate signed
    /// by itself ([`Ngircd::ca_path`]).
    pub async fn start_tls() -> Option<Self> {
        Self::launch(true).await
    }

    async fn launch(tls: bool) -> Option<Self> {
        let bin = require("ngIRCd", "OPSBOT_NGIRCD", &["ngircd", "/usr/sbin/ngircd"])?;
        let dir = tempfile::Builder::new()
            .prefix("opsbot-ngircd-")
            .tempdir()
            .expect("a temporary folder");
        let port = free_port();
        let tls_port = tls.then(free_port);
        if tls {
            let ck =
                rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("a test certificate");
            std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).expect("write cert.pem");
            std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).expect("write key.pem");
        }
        let mut s = Self {
            bin,
            dir,
            port,
            tls_port,
            proc: None,
        };
        std::fs::write(s.conf_path(), s.config()).expect("write ngircd.conf");
        if let Err(e) = s.start().await {
            panic!("ngIRCd is installed but did not start: {e}");
        }
        Some(s)
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("ngircd.conf")
    }

    fn config(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let ids = if root { "    ServerUID = root\n    ServerGID = root\n" } else { "" };
        let ssl = match self.tls_port {
            Some(p) => format!(
                "[SSL]\n    CertFile = {d}/cert.pem\n    KeyFile = {d}/key.pem\n    Ports = {p}\n",
                d = self.dir.path().display()
            ),
            None => String::new(),
        };
        format!(
            "[Global]\n    Name = irc.test.local\n    Info = opsbot test server\n    AdminInfo1 = test\n    AdminInfo2 = test\n    \
             AdminEMail = test@localhost\n    Listen = 127.0.0.1\n    Ports = {port}\n    MotdPhrase = \"test\"\n{ids}\
             [Limits]\n    MaxConnections = 0\n    MaxConnectionsIP = 0\n    MaxJoins = 0\n    MaxNickLength = 30\n    MaxPenaltyTime = 0\n\
             [Options]\n    DNS = no\n    Ident = no\n    PAM = no\n\
             {ssl}\
             [Channel]\n    Name = {ROOM}\n    Topic = ops\n    Modes = +n\n",
            port = self.port
        )
    }

    /// The plain-text port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port (servers from [`Ngircd::start_tls`]).
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The PEM file to trust for the TLS port (`tls_ca`).
    pub fn ca_path(&self) -> Option<PathBuf> {
        self.tls_port.map(|_| self.dir.path().join("cert.pem"))
    }

    /// The server's own log (its stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("ngircd.log")
    }

    /// A person on the server, registered as `nick` and in [`ROOM`].
    pub async fn irc_user(&self, nick: &str) -> Result<IrcUser, String> {
        IrcUser::connect(self.port, nick, nick, Some(ROOM)).await
    }
}

#[async_trait::async_trait]
impl ChatServer for Ngircd {
    fn platform(&self) -> &'static str {
        "irc"
    }

    fn adapter_toml(&self) -> (String, Vec<(String, String)>) {
        let body = format!(
            "type = \"irc\"\nserver = \"127.0.0.1\"\nport = {}\ntls = false\nnick = \"opsbot\"\nchannels = [\"{ROOM}\"]\nline_rate = 1000\nline_burst = 1000\n",
            self.port
        );
        (body, Vec::new())
    }

    fn room(&self) -> String {
        ROOM.to_string()
    }

    fn room_channel(&self) -> String {
        ROOM.to_string()
    }

    async fn user(&self, name: &str) -> Result<Box<dyn ChatUser>, String> {
        Ok(Box::new(self.irc_user(name).await?))
    }

    async fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    async fn start(&mut self) -> Result<(), String> {
        if self.proc.is_some() {
            return Ok(());
        }
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.arg("-n").arg("-f").arg(self.conf_path());
        let mut p = Proc::spawn("ngircd", cmd, &self.log_path())?;
        let ready = wait_tcp(self.port, Duration::from_secs(20)).await;
        if let Err(e) = ready {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            p.kill();
            return Err(format!("{e}; ngircd log:\n{log}"));
        }
        if let Some(tp) = self.tls_port {
            wait_tcp(tp, Duration::from_secs(20)).await?;
        }
        self.proc = Some(p);
        Ok(())
    }
}

/// One `PRIVMSG`/`NOTICE` from the bot as a person received it.
#[derive(Clone, Debug)]
pub struct Line {
    /// The sender's nick.
    pub from: String,
    /// The channel, or `None` for a private message.
    pub room: Option<String>,
    /// The text with IRC formatting removed.
    pub text: String,
    /// The text exactly as received.
    pub raw_text: String,
    /// Bytes of the whole line as received, CR LF included.
    pub wire_len: usize,
}

/// A person on an IRC server: a raw-socket client (registration, PING/PONG, PRIVMSG).
pub struct IrcUser {
    nick: String,
    user: String,
    w: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    rx: mpsc::UnboundedReceiver<Line>,
    bot: Arc<Mutex<String>>,
    bot_prefix: String,
}

impl IrcUser {
    /// Connects to 127.0.0.1:`port` as `nick` (user name `user`), joining `room` if given.
    pub async fn connect(port: u16, nick: &str, user: &str, room: Option<&str>) -> Result<Self, String> {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to IRC: {e}"))?;
        let _ = s.set_nodelay(true);
        let (r, mut w) = s.into_split();
        let mut lines = LossyLines(BufReader::new(r));
        w.write_all(format!("NICK {nick}\r\nUSER {user} 0 * :{nick}\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let bot = Arc::new(Mutex::new("opsbot".to_string()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut joined = room.is_none();
        let mut welcomed = false;
        while !(welcomed && joined) {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .map_err(|_| format!("{nick}: no welcome/join from the IRC server"))?
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{nick}: the IRC server closed the connection"))?;
            let (_, cmd, params) = split_line(&line);
            match cmd.as_str() {
                "PING" => {
                    let tok = params.first().cloned().unwrap_or_default();
                    w.write_all(format!("PONG :{tok}\r\n").as_bytes())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                "001" => {
                    welcomed = true;
                    if let Some(r) = room {
                        w.write_all(format!("JOIN {r}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
                    }
                }
                "433" | "432" => return Err(format!("{nick}: the nick is refused or taken ({line})")),
                "353" => {
                    // names: a bot already in the room
                    if let Some(n) = params.last().and_then(|l| {
                        l.split(' ')
                            .map(|n| n.trim_start_matches(['~', '&', '@', '%', '+']))
                            .find(|n| n.starts_with("opsbot"))
                    }) {
                        *bot.lock().unwrap_or_else(|e| e.into_inner()) = n.to_string();
                    }
                }
                "366" => joined = true,
                "ERROR" => return Err(format!("{nick}: {line}")),
                _ => {}
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let me = nick.to_string();
        let bot2 = bot.clone();
        let w = Arc::new(tokio::sync::Mutex::new(w));
        let w2 = w.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let wire_len = line.len() + 2;
                let (prefix, cmd, params) = split_line(&line);
                let from = prefix.split('!').next().unwrap_or("").to_string();
                match cmd.as_str() {
                    "PING" => {
                        let pong = format!("PONG :{}\r\n", params.first().cloned().unwrap_or_default());
                        let _ = w2.lock().await.write_all(pong.as_bytes()).await;
                    }
                    "JOIN" | "NICK" if from.starts_with("opsbot") => {
                        let new = if cmd == "NICK" {
                            params.first().cloned().unwrap_or(from)
                        } else {
                            from
                        };
                        *bot2.lock().unwrap_or_else(|e| e.into_inner()) = new;
                    }
                    "PRIVMSG" | "NOTICE" if from.starts_with("opsbot") && params.len() >= 2 => {
                        let target = &params[0];
                        let raw_text = params[1].clone();
                        let room = (!target.eq_ignore_ascii_case(&me)).then(|| target.clone());
                        let _ = tx.send(Line {
                            from,
                            room,
                            text: strip_formatting(&raw_text),
                            raw_text,
                            wire_len,
                        });
                    }
                    _ => {}
                }
            }
        });
        Ok(Self {
            nick: nick.to_string(),
            user: user.to_string(),
            w,
            rx,
            bot,
            bot_prefix: "opsbot".into(),
        })
    }

    /// This person's nick.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// Sends a raw line (bytes as given, CR LF added).
    pub async fn send_raw(&mut self, line: &[u8]) -> Result<(), String> {
        let mut b = line.to_vec();
        b.extend_from_slice(b"\r\n");
        self.w.lock().await.write_all(&b).await.map_err(|e| format!("{}: {e}", self.nick))
    }

    /// The nick direct messages go to (the bot's nick as last seen: it may be `opsbot_`).
    pub fn bot_nick(&self) -> String {
        self.bot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the bot's nick explicitly (when another `opsbot…` is around).
    pub fn set_bot_nick(&mut self, nick: &str) {
        *self.bot.lock().unwrap_or_else(|e| e.into_inner()) = nick.to_string();
        self.bot_prefix = nick.to_string();
    }

    /// The next `PRIVMSG`/`NOTICE` from the bot, with its wire details, or `None` after `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<Line> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let l = tokio::time::timeout_at(deadline, self.rx.recv()).await.ok()??;
            if l.from.starts_with(&self.bot_prefix) && (self.bot_prefix == "opsbot" || l.from == self.bot_prefix) {
                return Some(l);
            }
        }
    }
}

#[async_trait::async_trait]
impl ChatUser for IrcUser {
    fn account(&self) -> String {
        format!("{}!~{}@127.0.0.1", self.nick, self.user)
    }

    async fn say(&mut self, room: &str, text: &str) -> Result<(), String> {
        self.send_raw(format!("PRIVMSG {room} :{text}").as_bytes()).await
    }

    async fn dm(&mut self, text: &str) -> Result<(), String> {
        let bot = self.bot_nick();
        self.send_raw(format!("PRIVMSG {bot} :{text}").as_bytes()).await
    }

    async fn next(&mut self, timeout: Duration) -> Option<Heard> {
        let l = self.next_line(timeout).await?;
        Some(Heard {
            room: l.room,
            text: l.text,
            id: None,
            replaces: None,
            thread: None,
        })
    }
}

/// Lines of the connection, decoded lossily (another user may send bytes that are not UTF-8).
struct LossyLines(BufReader<OwnedReadHalf>);

impl LossyLines {
    async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        let mut buf = Vec::new();
        if self.0.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(None);
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// `(prefix, COMMAND, params)` of a raw IRC line (tags dropped; the trailing parameter last).
fn split_line(line: &str) -> (String, String, Vec<String>) {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    if rest.starts_with('@') {
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    let mut prefix = String::new();
    if let Some(r) = rest.strip_prefix(':') {
        let (p, r) = r.split_once(' ').unwrap_or((r, ""));
        prefix = p.to_string();
        rest = r;
    }
    let (head, trailing) = match rest.split_once(" :") {
        Some((h, t)) => (h, Some(t)),
        None => (rest, None),
    };
    let mut words = head.split(' ').filter(|w| !w.is_empty());
    let cmd = words.next().unwrap_or("").to_ascii_uppercase();
    let mut params: Vec<String> = words.map(str::to_string).collect();
    if let Some(t) = trailing {
        params.push(t.to_string());
    }
    (prefix, cmd, params)
}

/// Text without IRC formatting codes.
pub fn strip_formatting(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x03' => {
                let mut n = 0;
                while n < 2 && it.peek().is_some_and(char::is_ascii_digit) {
                    it.next();
                    n += 1;
                }
            }
            '\x02' | '\x0f' | '\x16' | '\x1d' | '\x1f' | '\x1e' | '\x11' => {}
            c => out.push(c),
        }
    }
    out
}
