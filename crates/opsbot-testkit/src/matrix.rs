//! Synapse (the reference Matrix homeserver) from the chat venv, and Matrix people written
//! straight from the Client-Server API (their own reqwest client, nothing of opsbot's adapter).
//!
//! The server runs on 127.0.0.1 with SQLite, no TLS, no federation, presence off and every
//! rate limit raised, in a temporary folder; [`Synapse::stop`] kills it and [`Synapse::start`]
//! brings it back on the same port with the same database. Users are made through the
//! shared-secret admin API (HMAC-SHA1).

use crate::{ChatServer, ChatUser, Heard, chat_venv, free_port, require};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The homeserver's name.
pub const SERVER_NAME: &str = "test.local";
/// The room the bot is configured to join.
pub const ROOM_ALIAS: &str = "#ops:test.local";
/// The bot's account.
pub const BOT_USER: &str = "@opsbot:test.local";
/// The environment variable that carries the bot's token in [`ChatServer::adapter_toml`].
pub const TOKEN_ENV: &str = "OPSBOT_TEST_MATRIX_TOKEN";
const SECRET: &str = "opsbot-test-shared-secret";

/// A reqwest client for tests (plain HTTP; rustls needs a provider all the same).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

/// Percent-encodes one URL path segment.
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP call to a homeserver: the JSON answer, or the status and body as an error.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http.request(method.clone(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{method} {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{method} {url}: HTTP {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{method} {url}: not JSON ({e}): {text}"))
}

/// The Synapse process, killed when dropped. Not [`crate::Proc`]: its `kill -KILL -PID` is read
/// by procps-ng 4.0.2's `kill` as `kill(-1, SIGKILL)` — every process on the machine. Synapse
/// runs as one process (no workers), so killing that process is a crash-stop.
struct SynapseProc(Option<std::process::Child>);

impl SynapseProc {
    fn spawn(mut cmd: std::process::Command, log: &std::path::Path) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(std::process::Stdio::null()).stdout(out).stderr(err).process_group(0);
        Ok(Self(Some(cmd.spawn().map_err(|e| format!("cannot start Synapse: {e}"))?)))
    }

    fn alive(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SynapseProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running Synapse with a bot account and a room `#ops:test.local`.
pub struct Synapse {
    dir: tempfile::TempDir,
    python: PathBuf,
    port: u16,
    proc: Option<SynapseProc>,
    http: reqwest::Client,
    /// The bot's access token.
    pub bot_token: String,
    /// The room's id (`!…`).
    pub room_id: String,
    admin_token: String,
}

impl Synapse {
    /// Starts a fresh Synapse, registers the bot and makes the room; `Ok(None)` (with a note)
    /// when Synapse is not installed.
    pub async fn launch() -> Result<Option<Self>, String> {
        let venv_python = chat_venv().join("bin/python");
        let venv_python = venv_python.to_string_lossy().to_string();
        let Some(python) = require("Synapse", "OPSBOT_SYNAPSE_PYTHON", &[&venv_python]) else {
            return Ok(None);
        };
        let has_synapse = std::process::Command::new(&python)
            .args(["-c", "import synapse"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_synapse {
            let note = format!(
                "{} cannot import synapse (run scripts/test.sh, which installs it)",
                python.display()
            );
            if crate::servers_required() {
                panic!("{note}; OPSBOT_REQUIRE_SERVERS=1 needs it");
            }
            eprintln!("SKIPPED: {note}");
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("opsbot-synapse-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port();
        let mut hs = Self {
            dir,
            python,
            port,
            proc: None,
            http: http_client(),
            bot_token: String::new(),
            room_id: String::new(),
            admin_token: String::new(),
        };
        hs.write_config()?;
        let out = tokio::process::Command::new(&hs.python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(hs.config_path())
            .arg("--generate-keys")
            .current_dir(hs.dir.path())
            .output()
            .await
            .map_err(|e| format!("cannot run Synapse: {e}"))?;
        if !out.status.success() {
            return Err(format!("Synapse --generate-keys failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        hs.start_proc().await?;
        hs.bot_token = hs.register("opsbot", "opsbot-pass", false).await?;
        hs.admin_token = hs.register("admin", "admin-pass", true).await?;
        let v = call(
            &hs.http,
            reqwest::Method::POST,
            &hs.client_url("createRoom"),
            Some(&hs.admin_token),
            Some(json!({"name": "ops", "room_alias_name": "ops", "preset": "public_chat", "visibility": "public"})),
        )
        .await?;
        hs.room_id = v["room_id"].as_str().ok_or("createRoom without room_id")?.to_string();
        Ok(Some(hs))
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("homeserver.yaml")
    }

    fn write_config(&self) -> Result<(), String> {
        let d = self.dir.path().display();
        let port = self.port;
        let lim = "{per_second: 10000, burst_count: 100000}";
        let yaml = format!(
            r#"server_name: "{SERVER_NAME}"
pid_file: {d}/homeserver.pid
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - {{port: {port}, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false, resources: [{{names: [client], compress: false}}]}}
database: {{name: sqlite3, args: {{database: {d}/homeserver.db}}}}
log_config: "{d}/log.config"
media_store_path: {d}/media
signing_key_path: "{d}/signing.key"
registration_shared_secret: "{SECRET}"
macaroon_secret_key: "test-macaroon-secret"
form_secret: "test-form-secret"
report_stats: false
enable_registration: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence: {{enabled: false}}
rc_message: {lim}
rc_registration: {lim}
rc_login:
  address: {lim}
  account: {lim}
  failed_attempts: {lim}
rc_joins:
  local: {lim}
  remote: {lim}
rc_joins_per_room: {lim}
rc_invites:
  per_room: {lim}
  per_user: {lim}
  per_issuer: {lim}
"#
        );
        let log = format!(
            "version: 1\nformatters: {{precise: {{format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}}}\n\
             handlers: {{file: {{class: logging.FileHandler, filename: {d}/homeserver.log, formatter: precise}}}}\n\
             root: {{level: WARNING, handlers: [file]}}\ndisable_existing_loggers: false\n"
        );
        std::fs::create_dir_all(self.dir.path().join("media")).map_err(|e| e.to_string())?;
        std::fs::write(self.config_path(), yaml).map_err(|e| e.to_string())?;
        std::fs::write(self.dir.path().join("log.config"), log).map_err(|e| e.to_string())
    }

    async fn start_proc(&mut self) -> Result<(), String> {
        let mut cmd = std::process::Command::new(&self.python);
        cmd.args(["-m", "synapse.app.homeserver", "-c"])
            .arg(self.config_path())
            .current_dir(self.dir.path());
        let mut proc = SynapseProc::spawn(cmd, &self.dir.path().join("synapse.out"))?;
        let start = Instant::now();
        let health = format!("{}/health", self.url());
        loop {
            if let Ok(r) = self.http.get(&health).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                break;
            }
            if !proc.alive() || start.elapsed() > Duration::from_secs(90) {
                let out = std::fs::read_to_string(self.dir.path().join("synapse.out")).unwrap_or_default();
                let log = std::fs::read_to_string(self.dir.path().join("homeserver.log")).unwrap_or_default();
                return Err(format!("Synapse did not come up:\n{out}\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// The homeserver's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn client_url(&self, path: &str) -> String {
        format!("{}/_matrix/client/v3/{path}", self.url())
    }

    /// Registers a user through the shared-secret admin API; returns an access token.
    pub async fn register(&self, user: &str, password: &str, admin: bool) -> Result<String, String> {
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        let v = call(&self.http, reqwest::Method::GET, &url, None, None).await?;
        let nonce = v["nonce"].as_str().ok_or("no nonce")?.to_string();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).map_err(|e| e.to_string())?;
        let kind = if admin { "admin" } else { "notadmin" };
        mac.update(format!("{nonce}\0{user}\0{password}\0{kind}").as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        let body = json!({"nonce": nonce, "username": user, "password": password, "admin": admin, "mac": mac});
        let v = call(&self.http, reqwest::Method::POST, &url, None, Some(body)).await?;
        Ok(v["access_token"].as_str().ok_or("register without access_token")?.to_string())
    }

    /// A person (password `NAME-pass`): registered the first time, signed in again (a new
    /// device) after that; in the room, synced up to now.
    pub async fn matrix_user(&self, name: &str) -> Result<MatrixUser, String> {
        let password = format!("{name}-pass");
        let token = match self.register(name, &password, false).await {
            Ok(t) => t,
            Err(e) if e.contains("M_USER_IN_USE") => {
                let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": password});
                let v = call(&self.http, reqwest::Method::POST, &self.client_url("login"), None, Some(body)).await?;
                v["access_token"].as_str().ok_or("login without access_token")?.to_string()
            }
            Err(e) => return Err(e),
        };
        let mut u = MatrixUser {
            hs: self.url(),
            http: http_client(),
            token,
            user_id: format!("@{name}:{SERVER_NAME}"),
            room_id: self.room_id.clone(),
            since: None,
            dm_room: None,
            queue: VecDeque::new(),
        };
        u.join(ROOM_ALIAS).await?;
        u.catch_up().await?;
        Ok(u)
    }

    /// An admin account's access token (for the Synapse admin API).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The test's data folder (Synapse's log is `homeserver.log` in it).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

#[async_trait::async_trait]
impl ChatServer for Synapse {
    fn platform(&self) -> &'static str {
        "matrix"
    }

    fn adapter_toml(&self) -> (String, Vec<(String, String)>) {
        let toml = format!(
            "type = \"matrix\"\nhomeserver = \"{}\"\nuser_id = \"{BOT_USER}\"\naccess_token = \"${{env:{TOKEN_ENV}}}\"\nrooms = [\"{ROOM_ALIAS}\"]\ninvites = \"anyone\"\nsync_timeout = \"5s\"\n",
            self.url()
        );
        (toml, vec![(TOKEN_ENV.to_string(), self.bot_token.clone())])
    }

    fn room(&self) -> String {
        ROOM_ALIAS.to_string()
    }

    fn room_channel(&self) -> String {
        self.room_id.clone()
    }

    async fn user(&self, name: &str) -> Result<Box<dyn ChatUser>, String> {
        Ok(Box::new(self.matrix_user(name).await?))
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
        self.start_proc().await
    }
}

/// A person on the Synapse, as a Matrix client would be.
pub struct MatrixUser {
    hs: String,
    http: reqwest::Client,
    token: String,
    /// The full user id.
    pub user_id: String,
    room_id: String,
    since: Option<String>,
    dm_room: Option<String>,
    queue: VecDeque<(String, Value)>,
}

impl MatrixUser {
    fn url(&self, path: &str) -> String {
        format!("{}/_matrix/client/v3/{path}", self.hs)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(&self.http, method, &self.url(path), Some(&self.token), body).await
    }

    /// Joins a room by id or alias; returns its id.
    pub async fn join(&self, room: &str) -> Result<String, String> {
        let v = self
            .call(reqwest::Method::POST, &format!("join/{}", seg(room)), Some(json!({})))
            .await?;
        Ok(v["room_id"].as_str().ok_or("join without room_id")?.to_string())
    }

    /// Skips everything up to now.
    pub async fn catch_up(&mut self) -> Result<(), String> {
        let v = self.sync(Duration::ZERO).await?;
        self.since = v["next_batch"].as_str().map(str::to_string);
        Ok(())
    }

    async fn sync(&self, timeout: Duration) -> Result<Value, String> {
        let filter = json!({"room": {"timeline": {"limit": 200}}, "presence": {"not_types": ["*"]}}).to_string();
        let mut url = format!("sync?timeout={}&filter={}", timeout.as_millis(), seg(&filter));
        if let Some(s) = &self.since {
            url.push_str(&format!("&since={}", seg(s)));
        }
        self.call(reqwest::Method::GET, &url, None).await
    }

    async fn room_id_of(&self, room: &str) -> Result<String, String> {
        if room == ROOM_ALIAS {
            return Ok(self.room_id.clone());
        }
        if room.starts_with('#') {
            let v = self
                .call(reqwest::Method::GET, &format!("directory/room/{}", seg(room)), None)
                .await?;
            return Ok(v["room_id"].as_str().ok_or("no room_id")?.to_string());
        }
        Ok(room.to_string())
    }

    /// Sends any `m.room.message` content to a room (id or alias); returns the event id.
    pub async fn send_content(&self, room: &str, content: Value) -> Result<String, String> {
        let room = self.room_id_of(room).await?;
        let txn = format!(
            "t{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let v = self
            .call(
                reqwest::Method::PUT,
                &format!("rooms/{}/send/m.room.message/{txn}", seg(&room)),
                Some(content),
            )
            .await?;
        Ok(v["event_id"].as_str().ok_or("send without event_id")?.to_string())
    }

    /// Says `text` (`m.text`) in a room; returns the event id.
    pub async fn say_id(&self, room: &str, text: &str) -> Result<String, String> {
        self.send_content(room, json!({"msgtype": "m.text", "body": text})).await
    }

    /// The direct room with the bot: made (once) with `is_direct`, inviting the bot, and
    /// returned once the bot has joined it.
    pub async fn dm_room(&mut self) -> Result<String, String> {
        if let Some(r) = &self.dm_room {
            return Ok(r.clone());
        }
        let room = self
            .create_room(json!({"is_direct": true, "invite": [BOT_USER], "preset": "trusted_private_chat"}))
            .await?;
        self.dm_room = Some(room.clone());
        Ok(room)
    }

    /// Makes a room with `createRoom` and this body; when the body invites the bot, returns
    /// once the bot has joined it.
    pub async fn create_room(&self, body: Value) -> Result<String, String> {
        let invites_bot = body["invite"].as_array().is_some_and(|i| i.iter().any(|u| u == BOT_USER));
        let v = self.call(reqwest::Method::POST, "createRoom", Some(body)).await?;
        let room = v["room_id"].as_str().ok_or("createRoom without room_id")?.to_string();
        if invites_bot {
            self.wait_for_bot(&room).await?;
        }
        Ok(room)
    }

    /// Invites someone to a room.
    pub async fn invite(&self, room: &str, user: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &format!("rooms/{}/invite", seg(room)),
            Some(json!({"user_id": user})),
        )
        .await
        .map(|_| ())
    }

    /// Leaves a room (or declines an invitation to it).
    pub async fn leave(&self, room: &str) -> Result<(), String> {
        self.call(reqwest::Method::POST, &format!("rooms/{}/leave", seg(room)), Some(json!({})))
            .await
            .map(|_| ())
    }

    async fn wait_for_bot(&self, room: &str) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let m = self
                .call(reqwest::Method::GET, &format!("rooms/{}/joined_members", seg(room)), None)
                .await?;
            if m["joined"].get(BOT_USER).is_some() {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("the bot did not join {room}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The next event from the bot in a room (its id and the whole event), or `None` after
    /// `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<(String, Value)> {
        let start = Instant::now();
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            let left = timeout.checked_sub(start.elapsed())?;
            let v = self.sync(left.min(Duration::from_secs(5))).await.ok()?;
            let old_since = self.since.clone();
            if let Some(nb) = v["next_batch"].as_str() {
                self.since = Some(nb.to_string());
            }
            if let Some(rooms) = v["rooms"]["join"].as_object() {
                for (room, r) in rooms {
                    let mut evs: Vec<Value> = Vec::new();
                    // A gappy timeline: fetch what the sync left out, back to the last sync.
                    if r["timeline"]["limited"] == true
                        && let (Some(prev), Some(old)) = (r["timeline"]["prev_batch"].as_str(), old_since.as_deref())
                    {
                        evs = self.backfill(room, prev, old).await;
                    }
                    evs.extend(r["timeline"]["events"].as_array().into_iter().flatten().cloned());
                    for ev in evs {
                        if ev["sender"] == BOT_USER && ev["type"] == "m.room.message" {
                            self.queue.push_back((room.clone(), ev));
                        }
                    }
                }
            }
            if self.queue.is_empty() && start.elapsed() >= timeout {
                return None;
            }
        }
    }

    /// Events of `room` between the sync token `to` and the pagination token `from`, oldest first.
    async fn backfill(&self, room: &str, from: &str, to: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut from = from.to_string();
        for _ in 0..100 {
            let path = format!("rooms/{}/messages?dir=b&limit=100&from={}&to={}", seg(room), seg(&from), seg(to));
            let Ok(v) = self.call(reqwest::Method::GET, &path, None).await else {
                break;
            };
            let chunk = v["chunk"].as_array().cloned().unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            out.extend(chunk);
            match v["end"].as_str() {
                Some(e) => from = e.to_string(),
                None => break,
            }
        }
        out.reverse();
        out
    }

    fn heard(&self, room: &str, ev: &Value) -> Heard {
        let c = &ev["content"];
        let rel = &c["m.relates_to"];
        let replaces = (rel["rel_type"] == "m.replace")
            .then(|| rel["event_id"].as_str().map(str::to_string))
            .flatten();
        let thread = (rel["rel_type"] == "m.thread")
            .then(|| rel["event_id"].as_str().map(str::to_string))
            .flatten();
        let text = if replaces.is_some() {
            c["m.new_content"]["body"].as_str()
        } else {
            c["body"].as_str()
        };
        Heard {
            room: if room == self.room_id {
                Some(ROOM_ALIAS.to_string())
            } else if self.dm_room.as_deref() == Some(room) {
                None
            } else {
                Some(room.to_string())
            },
            text: text.unwrap_or("").to_string(),
            id: ev["event_id"].as_str().map(str::to_string),
            replaces,
            thread,
        }
    }
}

#[async_trait::async_trait]
impl ChatUser for MatrixUser {
    fn account(&self) -> String {
        self.user_id.clone()
    }

    async fn say(&mut self, room: &str, text: &str) -> Result<(), String> {
        self.say_id(room, text).await.map(|_| ())
    }

    async fn dm(&mut self, text: &str) -> Result<(), String> {
        let room = self.dm_room().await?;
        self.say_id(&room, text).await.map(|_| ())
    }

    async fn next(&mut self, timeout: Duration) -> Option<Heard> {
        let (room, ev) = self.next_event(timeout).await?;
        Some(self.heard(&room, &ev))
    }
}
