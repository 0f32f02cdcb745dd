//! Prosody (XMPP) for tests: a throwaway server on 127.0.0.1 without TLS, with a MUC service
//! `conference.test.local` whose rooms show real JIDs (non-anonymous), and [`XmppUser`], a test
//! person.
//!
//! [`XmppUser`] is a small client written here from RFC 6120/6121 and XEP-0045 (plain TCP,
//! stream header, SASL PLAIN, resource binding, presence, room join, messages) with a minimal
//! XML scanner. It deliberately shares nothing with opsbot's adapter (which uses tokio-xmpp), so
//! a bug in one cannot hide in the other; it is honest only about the subset of XML that
//! Prosody emits (no DTDs, no external entities).

use crate::{ChatServer, ChatUser, Heard, Proc, free_port, require, wait_tcp};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The test domain.
pub const DOMAIN: &str = "test.local";
/// The MUC service.
pub const MUC_DOMAIN: &str = "conference.test.local";
/// The room the bot joins.
pub const ROOM: &str = "ops@conference.test.local";
/// The bot's account.
pub const BOT_JID: &str = "opsbot@test.local";
/// The bot's password.
pub const BOT_PASSWORD: &str = "opsbot-test-pass";
/// Every test user's password.
pub const USER_PASSWORD: &str = "user-pass";

/// A Prosody server with fresh state.
pub struct Prosody {
    bin: PathBuf,
    ctl: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    proc: Option<Proc>,
}

impl Prosody {
    /// Starts Prosody without TLS, the bot account registered; `Ok(None)` when Prosody is not
    /// installed (the test is skipped; see [`require`]).
    pub async fn start_new() -> Result<Option<Self>, String> {
        Self::launch(false).await
    }

    /// Starts Prosody requiring STARTTLS with a self-signed certificate for `test.local`
    /// ([`Prosody::ca_pem`] is the file to trust); `Ok(None)` when Prosody is not installed.
    pub async fn start_new_tls() -> Result<Option<Self>, String> {
        Self::launch(true).await
    }

    /// The certificate to trust (`tls_ca`) when started with TLS.
    pub fn ca_pem(&self) -> Option<PathBuf> {
        let p = self.dir.path().join("certs/test.local.crt");
        p.is_file().then_some(p)
    }

    async fn launch(tls: bool) -> Result<Option<Self>, String> {
        let Some(bin) = require("Prosody", "OPSBOT_PROSODY", &["prosody", "/usr/bin/prosody"]) else {
            return Ok(None);
        };
        let ctl = bin.with_file_name("prosodyctl");
        let ctl = if ctl.is_file() { ctl } else { PathBuf::from("prosodyctl") };
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(d.join("certs")).map_err(|e| e.to_string())?;
        let tls_lines = if tls {
            let ck = rcgen::generate_simple_self_signed(vec![DOMAIN.to_string(), MUC_DOMAIN.to_string()])
                .map_err(|e| format!("a test certificate: {e}"))?;
            std::fs::write(d.join("certs/test.local.crt"), ck.cert.pem()).map_err(|e| e.to_string())?;
            std::fs::write(d.join("certs/test.local.key"), ck.signing_key.serialize_pem()).map_err(|e| e.to_string())?;
            format!(
                "modules_enabled = {{ \"roster\"; \"saslauth\"; \"disco\"; \"ping\"; \"posix\"; \"tls\" }}\nmodules_disabled = {{ \"s2s\"; \"offline\" }}\nc2s_require_encryption = true\nssl = {{ certificate = \"{d}/certs/test.local.crt\"; key = \"{d}/certs/test.local.key\" }}\n",
                d = d.display()
            )
        } else {
            "modules_enabled = { \"roster\"; \"saslauth\"; \"disco\"; \"ping\"; \"posix\" }\nmodules_disabled = { \"s2s\"; \"tls\"; \"offline\" }\nc2s_require_encryption = false\n".to_string()
        };
        let cfg = format!(
            r#"run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}/certs"
log = {{ debug = "{d}/prosody.log"; error = "{d}/prosody.err" }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
{tls_lines}allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
limits = {{ c2s = {{ rate = "10mb/s" }} }}
-- Without it Prosody lets the kernel hold small stanzas (~40 ms each, Nagle + delayed ACK).
network_settings = {{ nagle = false }}
VirtualHost "{DOMAIN}"
Component "{MUC_DOMAIN}" "muc"
    muc_room_locking = false
    restrict_room_creation = false
    muc_room_default_public_jids = true
"#,
            d = d.display()
        );
        std::fs::write(d.join("prosody.cfg.lua"), cfg).map_err(|e| e.to_string())?;
        let mut s = Self {
            bin,
            ctl,
            dir,
            port,
            proc: None,
        };
        s.register("opsbot", BOT_PASSWORD)?;
        s.start().await?;
        Ok(Some(s))
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("prosody.cfg.lua")
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file (debug level).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    /// Registers an account `user@test.local`.
    pub fn register(&self, user: &str, password: &str) -> Result<(), String> {
        let out = std::process::Command::new(&self.ctl)
            .arg("--config")
            .arg(self.config())
            .args(["register", user, DOMAIN, password])
            .output()
            .map_err(|e| format!("cannot run prosodyctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "prosodyctl register {user} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// A new person `name@test.local` in the room with the nick `nick`.
    pub async fn user_with_nick(&self, name: &str, nick: &str) -> Result<XmppUser, String> {
        self.register(name, USER_PASSWORD)?;
        let mut u = XmppUser::connect(self.port, name, USER_PASSWORD).await?;
        u.join(ROOM, nick).await?;
        Ok(u)
    }
}

#[async_trait::async_trait]
impl ChatServer for Prosody {
    fn platform(&self) -> &'static str {
        "xmpp"
    }

    fn adapter_toml(&self) -> (String, Vec<(String, String)>) {
        (
            format!(
                "type = \"xmpp\"\njid = \"{BOT_JID}\"\npassword = \"${{env:OPSBOT_TEST_XMPP_PASSWORD}}\"\nserver = \"127.0.0.1:{}\"\nrooms = [\"{ROOM}\"]\nallow_plain = true\n",
                self.port
            ),
            vec![("OPSBOT_TEST_XMPP_PASSWORD".into(), BOT_PASSWORD.into())],
        )
    }

    fn room(&self) -> String {
        ROOM.into()
    }

    fn room_channel(&self) -> String {
        ROOM.into()
    }

    async fn user(&self, name: &str) -> Result<Box<dyn ChatUser>, String> {
        Ok(Box::new(self.user_with_nick(name, name).await?))
    }

    async fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    async fn start(&mut self) -> Result<(), String> {
        self.stop().await;
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.arg("--config").arg(self.config()).arg("-F");
        let proc = Proc::spawn("prosody", cmd, &self.dir.path().join("prosody.out"))?;
        self.proc = Some(proc);
        wait_tcp(self.port, Duration::from_secs(20)).await.map_err(|e| {
            let out = std::fs::read_to_string(self.dir.path().join("prosody.out")).unwrap_or_default();
            format!("{e}; prosody said: {out}")
        })
    }
}

/// A person on the Prosody server, speaking XMPP over plain TCP.
pub struct XmppUser {
    jid: String,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: Vec<u8>,
    /// Room JID → (occupant nick → real bare JID).
    occupants: HashMap<String, HashMap<String, String>>,
    /// Room JID → this user's nick there.
    nicks: HashMap<String, String>,
    heard: VecDeque<Heard>,
    seq: u64,
}

impl XmppUser {
    /// Signs in as `name@test.local` (SASL PLAIN, resource `test`) and sends initial presence.
    pub async fn connect(port: u16, name: &str, password: &str) -> Result<Self, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
        // A person's client sends at once; Nagle would hold each small stanza ~40 ms.
        let _ = tcp.set_nodelay(true);
        let (reader, writer) = tcp.into_split();
        let mut u = Self {
            jid: format!("{name}@{DOMAIN}"),
            reader,
            writer,
            buf: Vec::new(),
            occupants: HashMap::new(),
            nicks: HashMap::new(),
            heard: VecDeque::new(),
            seq: 0,
        };
        let t = Duration::from_secs(10);
        u.open_stream().await?;
        let features = u.element(t).await?;
        if !features
            .find("mechanisms")
            .is_some_and(|m| m.children.iter().any(|c| c.text == "PLAIN"))
        {
            return Err(format!("the server offers no SASL PLAIN: {features:?}"));
        }
        let creds = b64(format!("\0{name}\0{password}").as_bytes());
        u.send_raw(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
        ))
        .await?;
        let answer = u.element(t).await?;
        if answer.local() != "success" {
            return Err(format!("sign-in as {name} failed: {answer:?}"));
        }
        u.open_stream().await?;
        let _features = u.element(t).await?;
        u.send_raw("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>test</resource></bind></iq>")
            .await?;
        loop {
            let el = u.element(t).await?;
            if el.local() == "iq" && el.attr("id") == Some("bind") {
                if el.attr("type") != Some("result") {
                    return Err(format!("binding failed: {el:?}"));
                }
                break;
            }
        }
        u.send_raw("<presence/>").await?;
        Ok(u)
    }

    /// Joins a room with a nick, asking for no history; returns once the room confirms.
    pub async fn join(&mut self, room: &str, nick: &str) -> Result<(), String> {
        self.nicks.insert(room.to_string(), nick.to_string());
        self.send_raw(&format!(
            "<presence to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
            esc(room),
            esc(nick)
        ))
        .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let el = self.element(left).await?;
            let from = el.attr("from").unwrap_or_default().to_string();
            if el.local() == "presence" && from == format!("{room}/{nick}") {
                if el.attr("type") == Some("error") {
                    return Err(format!("joining {room} as {nick} failed: {el:?}"));
                }
                self.track(&el);
                let is_self = el
                    .find("x")
                    .is_some_and(|x| x.children.iter().any(|c| c.local() == "status" && c.attr("code") == Some("110")));
                if is_self {
                    return Ok(());
                }
            } else {
                self.take(el).await?;
            }
        }
    }

    /// This user's bare JID.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// Sends raw XML on the stream (for malformed-input tests).
    pub async fn send_raw(&mut self, xml: &str) -> Result<(), String> {
        self.writer.write_all(xml.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        self.writer.flush().await.map_err(|e| format!("write: {e}"))
    }

    /// Sends a request (`<iq id='ID' ...>`) and returns the answer with that id (result or error).
    pub async fn iq(&mut self, xml: &str, id: &str) -> Result<El, String> {
        self.send_raw(xml).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let el = self.element(left).await?;
            if el.local() == "iq" && el.attr("id") == Some(id) && matches!(el.attr("type"), Some("result" | "error")) {
                return Ok(el);
            }
            self.take(el).await?;
        }
    }

    /// Sends a message and returns its id.
    pub async fn message(&mut self, to: &str, kind: &str, text: &str) -> Result<String, String> {
        self.seq += 1;
        let id = format!("u{}-{}", self.seq, std::process::id());
        self.send_raw(&format!(
            "<message to='{}' type='{kind}' id='{id}'><body>{}</body></message>",
            esc(to),
            esc(text)
        ))
        .await?;
        Ok(id)
    }

    /// Closes the stream (the user leaves).
    pub async fn quit(mut self) {
        let _ = self.send_raw("<presence type='unavailable'/></stream:stream>").await;
    }

    async fn open_stream(&mut self) -> Result<(), String> {
        self.send_raw(&format!(
            "<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        ))
        .await?;
        // The server's header: skip up to the end of `<stream:stream ...>`.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8_lossy(&self.buf).to_string();
            if let Some(start) = text.find("<stream:stream")
                && let Some(end) = text[start..].find('>')
            {
                let cut = start + end + 1;
                self.buf.drain(..text[..cut].len());
                return Ok(());
            }
            self.fill(deadline).await?;
        }
    }

    async fn fill(&mut self, deadline: tokio::time::Instant) -> Result<(), String> {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout_at(deadline, self.reader.read(&mut chunk)).await {
            Err(_) => Err("timeout".into()),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Ok(Ok(0)) => Err("the server closed the connection".into()),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// The next top-level element of the stream, within `timeout`.
    async fn element(&mut self, timeout: Duration) -> Result<El, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Only whole UTF-8 is parsed; an element never ends inside a multi-byte char.
            let valid = match std::str::from_utf8(&self.buf) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            let text = std::str::from_utf8(&self.buf[..valid]).unwrap_or_default();
            match parse_element(text) {
                Parsed::Element(el, used) => {
                    self.buf.drain(..used);
                    return Ok(el);
                }
                Parsed::End => return Err("the server ended the stream".into()),
                Parsed::Bad(why) => return Err(format!("unreadable XML from the server: {why}")),
                Parsed::Incomplete => self.fill(deadline).await?,
            }
        }
    }

    /// Presences of room occupants: nick → real JID.
    fn track(&mut self, el: &El) {
        let Some(from) = el.attr("from") else { return };
        let Some((room, nick)) = from.split_once('/') else { return };
        let occ = self.occupants.entry(room.to_string()).or_default();
        if el.attr("type") == Some("unavailable") {
            occ.remove(nick);
        } else if let Some(jid) = el.find("x").and_then(|x| x.find("item")).and_then(|i| i.attr("jid")) {
            occ.insert(nick.to_string(), jid.split('/').next().unwrap_or(jid).to_string());
        }
    }

    /// Handles one incoming element: keeps what the bot said, answers what must be answered.
    async fn take(&mut self, el: El) -> Result<(), String> {
        match el.local() {
            "presence" => self.track(&el),
            "iq" => {
                let kind = el.attr("type").unwrap_or_default();
                if kind == "get" || kind == "set" {
                    let id = esc(el.attr("id").unwrap_or_default());
                    let to = esc(el.attr("from").unwrap_or(DOMAIN));
                    let reply = if el.find("ping").is_some() {
                        format!("<iq type='result' id='{id}' to='{to}'/>")
                    } else {
                        format!(
                            "<iq type='error' id='{id}' to='{to}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                        )
                    };
                    self.send_raw(&reply).await?;
                }
            }
            "message" => {
                if let Some(h) = self.heard(&el) {
                    self.heard.push_back(h);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A message from the bot, as heard.
    fn heard(&self, el: &El) -> Option<Heard> {
        let body = el.find("body")?.text.clone();
        if el.find("delay").is_some() {
            return None;
        }
        let from = el.attr("from")?;
        let (bare, res) = from.split_once('/').unwrap_or((from, ""));
        let room = match el.attr("type") {
            Some("groupchat") => {
                let real = self.occupants.get(bare).and_then(|o| o.get(res));
                if real.map(String::as_str) != Some(BOT_JID) {
                    return None;
                }
                Some(bare.to_string())
            }
            Some("error") => return None,
            _ => {
                if bare != BOT_JID {
                    return None;
                }
                None
            }
        };
        Some(Heard {
            room,
            text: body,
            id: el.attr("id").map(str::to_string),
            replaces: el.find("replace").and_then(|r| r.attr("id")).map(str::to_string),
            thread: None,
        })
    }
}

#[async_trait::async_trait]
impl ChatUser for XmppUser {
    fn account(&self) -> String {
        self.jid.clone()
    }

    async fn say(&mut self, room: &str, text: &str) -> Result<(), String> {
        self.message(room, "groupchat", text).await.map(|_| ())
    }

    async fn dm(&mut self, text: &str) -> Result<(), String> {
        self.message(BOT_JID, "chat", text).await.map(|_| ())
    }

    async fn next(&mut self, timeout: Duration) -> Option<Heard> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(h) = self.heard.pop_front() {
                return Some(h);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let el = self.element(left).await.ok()?;
            self.take(el).await.ok()?;
        }
    }
}

/// A parsed XML element (the subset the test needs: names, attributes, children, text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct El {
    /// The qualified name as written (`stream:features`, `message`).
    pub name: String,
    /// Attributes, unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements.
    pub children: Vec<El>,
    /// The concatenated text directly inside, unescaped.
    pub text: String,
}

impl El {
    /// The name without a prefix.
    pub fn local(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }
    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// The first child with this local name.
    pub fn find(&self, local: &str) -> Option<&El> {
        self.children.iter().find(|c| c.local() == local)
    }
}

enum Parsed {
    Element(El, usize),
    Incomplete,
    End,
    Bad(String),
}

/// Parses one element at the start of `s` (after optional whitespace).
fn parse_element(s: &str) -> Parsed {
    let start = s.len() - s.trim_start().len();
    let rest = &s[start..];
    if rest.is_empty() {
        return Parsed::Incomplete;
    }
    if rest.starts_with("</") {
        return Parsed::End;
    }
    match element_at(s, start) {
        Ok(Some((el, end))) => Parsed::Element(el, end),
        Ok(None) => Parsed::Incomplete,
        Err(e) => Parsed::Bad(e),
    }
}

/// The element starting at `s[i]` (a `<`) and the index after it; `None` when incomplete.
fn element_at(s: &str, mut i: usize) -> Result<Option<(El, usize)>, String> {
    let b = s.as_bytes();
    if b.get(i) != Some(&b'<') {
        return Err(format!("expected `<` at {i}"));
    }
    i += 1;
    let name_end = match s[i..].find(|c: char| c.is_whitespace() || c == '/' || c == '>') {
        Some(n) => i + n,
        None => return Ok(None),
    };
    let mut el = El {
        name: s[i..name_end].to_string(),
        ..El::default()
    };
    i = name_end;
    // Attributes.
    loop {
        while i < b.len() && (b[i] as char).is_whitespace() {
            i += 1;
        }
        match b.get(i) {
            None => return Ok(None),
            Some(b'/') => {
                if i + 1 >= b.len() {
                    return Ok(None);
                }
                return Ok(Some((el, i + 2)));
            }
            Some(b'>') => {
                i += 1;
                break;
            }
            Some(_) => {
                let Some(eq) = s[i..].find('=') else { return Ok(None) };
                let key = s[i..i + eq].trim().to_string();
                i += eq + 1;
                while i < b.len() && (b[i] as char).is_whitespace() {
                    i += 1;
                }
                let Some(&q) = b.get(i) else { return Ok(None) };
                if q != b'"' && q != b'\'' {
                    return Err(format!("unquoted attribute {key}"));
                }
                let Some(close) = s[i + 1..].find(q as char) else { return Ok(None) };
                el.attrs.push((key, unesc(&s[i + 1..i + 1 + close])));
                i += close + 2;
            }
        }
    }
    // Content.
    loop {
        let Some(lt) = s[i..].find('<') else { return Ok(None) };
        el.text.push_str(&unesc(&s[i..i + lt]));
        i += lt;
        let r = &s[i..];
        if r.starts_with("</") {
            let Some(gt) = r.find('>') else { return Ok(None) };
            return Ok(Some((el, i + gt + 1)));
        } else if r.starts_with("<![CDATA[") {
            let Some(end) = r.find("]]>") else { return Ok(None) };
            el.text.push_str(&r[9..end]);
            i += end + 3;
        } else if r.starts_with("<!--") {
            let Some(end) = r.find("-->") else { return Ok(None) };
            i += end + 3;
        } else if r.starts_with("<?") {
            let Some(end) = r.find("?>") else { return Ok(None) };
            i += end + 2;
        } else {
            match element_at(s, i)? {
                Some((child, end)) => {
                    el.children.push(child);
                    i = end;
                }
                None => return Ok(None),
            }
        }
    }
}

/// XML-escapes text for content and attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn unesc(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let r = &rest[amp..];
        let Some(semi) = r.find(';') else {
            out.push_str(r);
            return out;
        };
        let ent = &r[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ if ent.starts_with("#x") => u32::from_str_radix(&ent[2..], 16).ok().and_then(char::from_u32),
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&r[..=semi]),
        }
        rest = &r[semi + 1..];
    }
    out.push_str(rest);
    out
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_elements() {
        let s =
            "<message from='a@b/c' type=\"chat\"><body>x &amp; y &lt;3 &#x263A;</body><x xmlns='q'><item jid='r@s/t'/></x></message> <pre";
        let Parsed::Element(el, used) = parse_element(s) else {
            panic!("not parsed")
        };
        assert_eq!(&s[used..], " <pre");
        assert_eq!(el.attr("from"), Some("a@b/c"));
        assert_eq!(el.find("body").map(|b| b.text.as_str()), Some("x & y <3 ☺"));
        assert_eq!(el.find("x").and_then(|x| x.find("item")).and_then(|i| i.attr("jid")), Some("r@s/t"));
        assert!(matches!(parse_element("<message><body>half"), Parsed::Incomplete));
        assert!(matches!(parse_element("</stream:stream>"), Parsed::End));
    }

    #[test]
    fn base64_matches_the_rfc() {
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(b"fooba"), "Zm9vYmE=");
        assert_eq!(b64(b"foob"), "Zm9vYg==");
    }
}
