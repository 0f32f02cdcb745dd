//! Matrix over the Client-Server API, written by hand on reqwest.
//!
//! Why by hand: `matrix-sdk` was measured far too heavy for what opsbot needs (about four more
//! minutes of build and it pulls in aws-lc); a bot needs a dozen endpoints — whoami or login,
//! join, `/sync`, send, upload — which are plain JSON over HTTPS.
//!
//! - **Login**: an access token (checked with `whoami`, which also gives the user id), or a
//!   password (`m.login.password` as `device_id`, default `OPSBOT`); the token is kept in
//!   memory and, with a password, renewed when the server answers `M_UNKNOWN_TOKEN`.
//! - **Sync**: a long-poll with an inline filter (messages, membership, encryption, `m.direct`).
//!   `next_batch` is saved through the adapter state after every processed sync, so a restart
//!   replays nothing; on the very first start the initial sync's timeline (history) is skipped,
//!   and any message older than the adapter's start is skipped too. Each run's first sync asks
//!   for the full state, so member counts are right after a restart. Sync responses are read as
//!   `serde_json::Value`, event by event: a malformed response or event is logged and skipped.
//! - **Rooms**: `rooms` are joined at start (aliases resolve through the join; places always use
//!   the room id `!…`). Invitations are joined according to `invites`; others are left alone
//!   (neither joined nor rejected, so a person can still accept them by hand). A room with
//!   exactly two joined members, or listed in the bot's `m.direct`, is a direct conversation —
//!   unless it is one of the configured `rooms`.
//! - **Sending**: `m.notice` events (the Matrix convention for bots: other bots do not answer
//!   notices, so two bots cannot loop) with a plain `body` and HTML `formatted_body`; threads
//!   via `m.thread` relations; edits via `m.replace`; images uploaded to the media repository
//!   and sent as `m.image` after the text.
//! - **Idempotence**: transaction ids are `START.SEQ.PART`, `START` being this process's start.
//!   When a send ends without a clear answer (network error, 5xx, 429), the sequence number is
//!   remembered under a hash of what was sent (place, reply, edit target); the runtime's retry
//!   of that same message reuses it, so the homeserver's transaction deduplication makes sure
//!   nothing appears twice — also for a reply of several events of which some went through.
//! - **Encryption**: end-to-end encrypted rooms are not supported (see docs/adapters/matrix.md):
//!   the first encrypted message seen in a room gets a one-time notice saying so.

mod html;

use opsbot_core::config::{InvitePolicy, MatrixConfig};
use opsbot_core::{Adapter, AdapterContext, Block, Capabilities, Envelope, Place, Posted, Reply, SendError, UserId};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

pub use html::{escape as escape_html, render as render_html};

/// Largest response body read (a sync of many rooms can be big, but not this big).
pub const MAX_RESPONSE: usize = 32 * 1024 * 1024;
/// Largest image fetched for upload.
pub const MAX_IMAGE: usize = 10 * 1024 * 1024;
/// Bytes of plain text one event carries at most; longer replies go as several events.
const MAX_EVENT_TEXT: usize = 24_000;
/// Bytes of JSON one event's content takes at most (Matrix caps whole events at 64 KiB).
const MAX_CONTENT: usize = 56_000;
/// Timeline events asked for per room and sync.
const TIMELINE_LIMIT: u32 = 100;
/// Timeout of requests other than `/sync`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The Matrix adapter.
pub struct MatrixAdapter {
    name: String,
    cfg: MatrixConfig,
    people: HashSet<String>,
    http: reqwest::Client,
    base: Url,
    sync_timeout: Duration,
    started_ms: i64,
    txn_prefix: String,
    seq: AtomicU64,
    /// Hash of an unsure send → its sequence number, reused by the retry.
    pending: Mutex<HashMap<u64, u64>>,
    session: tokio::sync::RwLock<Session>,
    login_lock: tokio::sync::Mutex<()>,
    online: AtomicBool,
    rooms: Mutex<Rooms>,
}

#[derive(Default, Clone)]
struct Session {
    token: Option<String>,
    user_id: String,
    display_name: Option<String>,
}

#[derive(Default)]
struct Rooms {
    joined: HashMap<String, RoomInfo>,
    /// Rooms listed in the bot's `m.direct` account data, or invited to as direct.
    direct: HashSet<String>,
    /// The configured `rooms`, by id: never direct.
    configured: HashSet<String>,
    /// Encrypted rooms already told that the bot cannot read them.
    e2e_noted: HashSet<String>,
    /// Invitations already decided on (joined or left alone).
    invites_seen: HashSet<String>,
}

#[derive(Default)]
struct RoomInfo {
    /// Members by user id → display name, with their membership.
    members: HashMap<String, (String, Option<String>)>,
    /// `m.joined_member_count` from the last summary that had it.
    summary_joined: Option<u64>,
    encrypted: bool,
}

impl RoomInfo {
    fn joined_count(&self) -> u64 {
        let counted = self.members.values().filter(|(m, _)| m == "join").count() as u64;
        match self.summary_joined {
            Some(n) if counted == 0 => n,
            _ => counted,
        }
    }
}

/// How an API call failed.
#[derive(Debug)]
enum ApiError {
    /// No answer (connection refused, reset, timeout).
    Network(String),
    /// An HTTP error status with the Matrix error code if the body had one.
    Status {
        status: u16,
        errcode: String,
        error: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer whose body was too large or not JSON.
    Body(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "{e}"),
            ApiError::Status {
                status, errcode, error, ..
            } => write!(f, "HTTP {status} {errcode}: {error}"),
            ApiError::Body(e) => write!(f, "bad response: {e}"),
        }
    }
}

impl ApiError {
    fn to_send_error(&self) -> SendError {
        match self {
            ApiError::Network(_) | ApiError::Body(_) => SendError::Unavailable(self.to_string()),
            ApiError::Status {
                status: 429, retry_after, ..
            } => SendError::RateLimited(retry_after.unwrap_or(Duration::from_secs(1))),
            ApiError::Status { status, .. } if *status >= 500 || *status == 401 || *status == 408 => {
                SendError::Unavailable(self.to_string())
            }
            ApiError::Status { .. } => SendError::Rejected(self.to_string()),
        }
    }
}

#[derive(Clone)]
enum Payload {
    None,
    Json(Value),
    Bytes(Vec<u8>, String),
}

/// Parses `30s`, `5m`, `1m30s`, `500ms`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c.is_whitespace()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" | "sec" | "secs" | "" => Duration::from_secs(n),
            "m" | "min" | "mins" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return None,
        };
    }
    Some(total)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn localpart(user_id: &str) -> &str {
    user_id.trim_start_matches('@').split(':').next().unwrap_or("")
}

/// Strips a leading `NAME:` / `NAME,` (any of `names`, case-insensitively) from `body`; with
/// `loose` a name followed by a space also counts (the message already mentions the bot).
fn strip_mention(body: &str, names: &[String], loose: bool) -> Option<String> {
    let trimmed = body.trim_start();
    let mut names: Vec<&String> = names.iter().filter(|n| !n.is_empty()).collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        for cand in [n.as_str(), &format!("@{n}")] {
            let Some(head) = trimmed.get(..cand.len()) else { continue };
            if !head.eq_ignore_ascii_case(cand) {
                continue;
            }
            let rest = &trimmed[cand.len()..];
            if let Some(r) = rest.strip_prefix(':').or_else(|| rest.strip_prefix(',')) {
                return Some(r.trim_start().to_string());
            }
            if loose && (rest.is_empty() || rest.starts_with(char::is_whitespace)) {
                return Some(rest.trim_start().to_string());
            }
        }
    }
    None
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn events(v: Option<&Value>) -> &[Value] {
    v.and_then(|v| v.get("events"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// What one sync asks the adapter to do after it was read.
#[derive(Default)]
struct SyncActions {
    envelopes: Vec<Envelope>,
    join_invites: Vec<String>,
    e2e_notices: Vec<String>,
}

impl MatrixAdapter {
    /// An adapter named `name`; `people` are the Matrix user ids listed in `[people.*]` (whose
    /// invitations are accepted with `invites = "people"`).
    pub fn new(name: &str, cfg: MatrixConfig, people: Vec<String>) -> Result<Self, String> {
        // reqwest is built without a crypto provider; the binary installs ring process-wide,
        // but make sure one is there (a second install is refused harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sync_timeout = match &cfg.sync_timeout {
            Some(t) => parse_duration(t).ok_or_else(|| format!("sync_timeout `{t}` is not a duration"))?,
            None => Duration::from_secs(30),
        };
        let base = Url::parse(cfg.homeserver.trim_end_matches('/')).map_err(|e| format!("homeserver `{}`: {e}", cfg.homeserver))?;
        if base.cannot_be_a_base() {
            return Err(format!("homeserver `{}` is not a base URL", cfg.homeserver));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(sync_timeout + Duration::from_secs(30))
            .user_agent(concat!("opsbot/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("the CA file {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("the CA file {} holds no PEM certificate", ca.display()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let started_ms = now_ms();
        Ok(Self {
            name: name.to_string(),
            people: people.into_iter().collect(),
            http,
            base,
            sync_timeout,
            started_ms,
            txn_prefix: format!("{started_ms}{:x}", std::process::id()),
            seq: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            session: tokio::sync::RwLock::new(Session {
                token: cfg.access_token.clone(),
                user_id: cfg.user_id.clone(),
                display_name: None,
            }),
            login_lock: tokio::sync::Mutex::new(()),
            online: AtomicBool::new(false),
            rooms: Mutex::new(Rooms::default()),
            cfg,
        })
    }

    /// `_matrix/client/v3/` + segments, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty();
            p.extend(segments);
        }
        u
    }

    fn client_url(&self, segments: &[&str]) -> Url {
        let mut all = vec!["_matrix", "client", "v3"];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    /// One HTTP call: JSON back (size-capped), or why not.
    async fn raw(
        &self,
        method: Method,
        url: Url,
        token: Option<&str>,
        payload: &Payload,
        timeout: Option<Duration>,
    ) -> Result<Value, ApiError> {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        req = match payload {
            Payload::None => req,
            Payload::Json(v) => req.json(v),
            Payload::Bytes(b, ct) => req.header(reqwest::header::CONTENT_TYPE, ct.as_str()).body(b.clone()),
        };
        let mut resp = req.send().await.map_err(|e| ApiError::Network(e.to_string()))?;
        let status = resp.status().as_u16();
        let retry_header = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if buf.len() + c.len() > MAX_RESPONSE {
                        return Err(ApiError::Body(format!("response larger than {MAX_RESPONSE} bytes")));
                    }
                    buf.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(ApiError::Network(e.to_string())),
            }
        }
        let parsed: Option<Value> = serde_json::from_slice(&buf).ok();
        if (200..300).contains(&status) {
            return match parsed {
                Some(v) if v.is_object() => Ok(v),
                _ => Err(ApiError::Body(format!(
                    "not a JSON object: {}",
                    String::from_utf8_lossy(&buf[..buf.len().min(120)])
                ))),
            };
        }
        let p = parsed.unwrap_or(Value::Null);
        Err(ApiError::Status {
            status,
            errcode: s(&p, "errcode").unwrap_or("").to_string(),
            error: s(&p, "error").unwrap_or("").chars().take(300).collect(),
            retry_after: p
                .get("retry_after_ms")
                .and_then(Value::as_u64)
                .map(Duration::from_millis)
                .or(retry_header),
        })
    }

    /// An authenticated call; with a password, logs in again once on `M_UNKNOWN_TOKEN`.
    async fn api(&self, method: Method, url: Url, payload: Payload, timeout: Option<Duration>) -> Result<Value, ApiError> {
        let mut relogged = false;
        loop {
            let token = self.session.read().await.token.clone();
            let r = match &token {
                Some(t) => self.raw(method.clone(), url.clone(), Some(t), &payload, timeout).await,
                None => Err(ApiError::Status {
                    status: 401,
                    errcode: "M_UNKNOWN_TOKEN".into(),
                    error: "not logged in".into(),
                    retry_after: None,
                }),
            };
            match r {
                Err(ApiError::Status {
                    status: 401, ref errcode, ..
                }) if errcode == "M_UNKNOWN_TOKEN" && !relogged && self.cfg.password.is_some() => {
                    relogged = true;
                    self.login(token.as_deref()).await?;
                }
                other => return other,
            }
        }
    }

    /// Logs in with the password (unless another task already replaced `stale`).
    async fn login(&self, stale: Option<&str>) -> Result<(), ApiError> {
        let _g = self.login_lock.lock().await;
        if let Some(cur) = self.session.read().await.token.as_deref()
            && Some(cur) != stale
        {
            return Ok(());
        }
        let Some(password) = &self.cfg.password else {
            return Err(ApiError::Network("no password to log in with".into()));
        };
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.cfg.user_id},
            "password": password,
            "device_id": self.cfg.device_id.as_deref().unwrap_or("OPSBOT"),
            "initial_device_display_name": "opsbot",
        });
        let v = self
            .raw(
                Method::POST,
                self.client_url(&["login"]),
                None,
                &Payload::Json(body),
                Some(REQUEST_TIMEOUT),
            )
            .await?;
        let token = s(&v, "access_token").ok_or_else(|| ApiError::Body("login answer without access_token".into()))?;
        let mut sess = self.session.write().await;
        sess.token = Some(token.to_string());
        if let Some(u) = s(&v, "user_id") {
            sess.user_id = u.to_string();
        }
        info!(adapter = %self.name, user = %sess.user_id, "logged in to Matrix with the password");
        Ok(())
    }

    /// The bot's user id and the names it answers to.
    async fn me(&self) -> (String, Vec<String>) {
        let s = self.session.read().await;
        let mut names = vec![s.user_id.clone(), localpart(&s.user_id).to_string()];
        if let Some(d) = &s.display_name {
            names.push(d.clone());
        }
        (s.user_id.clone(), names)
    }

    /// Logs in (or checks the token), learns the display name, joins the configured rooms.
    async fn connect(&self) -> Result<(), String> {
        if self.session.read().await.token.is_none() {
            self.login(None).await.map_err(|e| format!("Matrix login failed: {e}"))?;
        }
        let who = self
            .api(
                Method::GET,
                self.client_url(&["account", "whoami"]),
                Payload::None,
                Some(REQUEST_TIMEOUT),
            )
            .await
            .map_err(|e| format!("Matrix whoami failed: {e}"))?;
        let uid = s(&who, "user_id").ok_or("Matrix whoami answered without user_id")?.to_string();
        if uid != self.cfg.user_id {
            warn!(adapter = %self.name, configured = %self.cfg.user_id, actual = %uid, "the access token belongs to another user than user_id");
        }
        self.session.write().await.user_id = uid.clone();
        match self
            .api(
                Method::GET,
                self.client_url(&["profile", &uid, "displayname"]),
                Payload::None,
                Some(REQUEST_TIMEOUT),
            )
            .await
        {
            Ok(v) => self.session.write().await.display_name = s(&v, "displayname").map(str::to_string),
            Err(e) => debug!(adapter = %self.name, "no display name: {e}"),
        }
        for room in &self.cfg.rooms {
            match self
                .api(
                    Method::POST,
                    self.client_url(&["join", room]),
                    Payload::Json(json!({})),
                    Some(REQUEST_TIMEOUT),
                )
                .await
            {
                Ok(v) => {
                    if let Some(id) = s(&v, "room_id") {
                        info!(adapter = %self.name, room = %room, id = %id, "joined");
                        self.lock_rooms().configured.insert(id.to_string());
                    }
                }
                Err(e @ (ApiError::Network(_) | ApiError::Body(_))) => return Err(format!("cannot join {room}: {e}")),
                Err(e @ ApiError::Status { status, .. }) if status >= 500 => return Err(format!("cannot join {room}: {e}")),
                Err(e) => warn!(adapter = %self.name, room = %room, "cannot join: {e}"),
            }
        }
        Ok(())
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sync_filter() -> String {
        json!({
            "presence": {"not_types": ["*"]},
            "account_data": {"types": ["m.direct"]},
            "room": {
                "timeline": {"types": ["m.room.message", "m.room.member", "m.room.encrypted", "m.room.encryption"], "limit": TIMELINE_LIMIT},
                "state": {"types": ["m.room.member", "m.room.encryption"]},
                "ephemeral": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            },
        })
        .to_string()
    }

    async fn sync(&self, since: Option<&str>, timeout: Duration, full_state: bool) -> Result<Value, ApiError> {
        let mut url = self.client_url(&["sync"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("filter", &Self::sync_filter());
            q.append_pair("timeout", &timeout.as_millis().to_string());
            if let Some(s) = since {
                q.append_pair("since", s);
            }
            if full_state {
                q.append_pair("full_state", "true");
            }
        }
        self.api(Method::GET, url, Payload::None, None).await
    }

    /// Fills limited (gappy) timelines with the events the sync left out, back to `since`,
    /// so a burst of more than [`TIMELINE_LIMIT`] messages between two syncs loses none.
    async fn fill_gaps(&self, v: &mut Value, since: &str) {
        let Some(join) = v.get_mut("rooms").and_then(|r| r.get_mut("join")).and_then(Value::as_object_mut) else {
            return;
        };
        for (room_id, room) in join.iter_mut() {
            let Some(tl) = room.get_mut("timeline").and_then(Value::as_object_mut) else {
                continue;
            };
            if tl.get("limited").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let Some(mut from) = tl.get("prev_batch").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            let mut missed: Vec<Value> = Vec::new();
            for _ in 0..20 {
                let mut url = self.client_url(&["rooms", room_id, "messages"]);
                url.query_pairs_mut()
                    .append_pair("dir", "b")
                    .append_pair("limit", &TIMELINE_LIMIT.to_string())
                    .append_pair("from", &from)
                    .append_pair("to", since)
                    .append_pair(
                        "filter",
                        &json!({"types": ["m.room.message", "m.room.member", "m.room.encrypted"]}).to_string(),
                    );
                let page = match self.api(Method::GET, url, Payload::None, Some(REQUEST_TIMEOUT)).await {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(adapter = %self.name, room = %room_id, "cannot fetch the messages a sync left out: {e}");
                        break;
                    }
                };
                let chunk = page.get("chunk").and_then(Value::as_array).cloned().unwrap_or_default();
                if chunk.is_empty() {
                    break;
                }
                missed.extend(chunk);
                match s(&page, "end") {
                    Some(e) => from = e.to_string(),
                    None => break,
                }
            }
            if missed.is_empty() {
                continue;
            }
            missed.reverse();
            let seen: HashSet<String> = events(Some(&Value::Object(tl.clone())))
                .iter()
                .filter_map(|e| s(e, "event_id").map(str::to_string))
                .collect();
            missed.retain(|e| s(e, "event_id").is_none_or(|id| !seen.contains(id)));
            if let Some(evs) = tl.get_mut("events").and_then(Value::as_array_mut) {
                missed.append(evs);
                *evs = missed;
            }
        }
    }

    /// Reads one sync response; `deliver` is false for the first start's history.
    fn process_sync(&self, v: &Value, me: &str, names: &[String], deliver: bool) -> SyncActions {
        let mut acts = SyncActions::default();
        let mut rooms = self.lock_rooms();
        for ev in events(v.get("account_data")) {
            if s(ev, "type") == Some("m.direct")
                && let Some(c) = ev.get("content").and_then(Value::as_object)
            {
                rooms.direct = c
                    .values()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
            }
        }
        let section = v.get("rooms");
        if let Some(join) = section.and_then(|r| r.get("join")).and_then(Value::as_object) {
            for (room_id, room) in join {
                let info = rooms.joined.entry(room_id.clone()).or_default();
                if let Some(n) = room
                    .get("summary")
                    .and_then(|s| s.get("m.joined_member_count"))
                    .and_then(Value::as_u64)
                {
                    info.summary_joined = Some(n);
                }
                for ev in events(room.get("state")) {
                    apply_state(info, ev);
                }
                for ev in events(room.get("timeline")) {
                    if !ev.is_object() {
                        warn!(adapter = %self.name, room = %room_id, "skipping a malformed event: {}", short(ev));
                        continue;
                    }
                    let kind = s(ev, "type").unwrap_or("");
                    if ev.get("state_key").is_some() {
                        if let Some(info) = rooms.joined.get_mut(room_id) {
                            apply_state(info, ev);
                        }
                        continue;
                    }
                    if !deliver {
                        continue;
                    }
                    match kind {
                        "m.room.encrypted" if s(ev, "sender") != Some(me) && rooms.e2e_noted.insert(room_id.clone()) => {
                            warn!(adapter = %self.name, room = %room_id, "an end-to-end encrypted message: opsbot cannot read encrypted rooms");
                            acts.e2e_notices.push(room_id.clone());
                        }
                        "m.room.message" => {
                            if let Some(env) = self.envelope(&rooms, room_id, ev, me, names) {
                                acts.envelopes.push(env);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(leave) = section.and_then(|r| r.get("leave")).and_then(Value::as_object) {
            for room_id in leave.keys() {
                rooms.joined.remove(room_id);
                rooms.invites_seen.remove(room_id);
            }
        }
        if let Some(invite) = section.and_then(|r| r.get("invite")).and_then(Value::as_object) {
            for (room_id, inv) in invite {
                let mine = events(inv.get("invite_state"))
                    .iter()
                    .find(|e| s(e, "type") == Some("m.room.member") && s(e, "state_key") == Some(me));
                let Some(ev) = mine else { continue };
                let inviter = s(ev, "sender").unwrap_or("").to_string();
                if !rooms.invites_seen.insert(room_id.clone()) {
                    continue;
                }
                let direct = ev.get("content").and_then(|c| c.get("is_direct")).and_then(Value::as_bool) == Some(true);
                let accept = match self.cfg.invites {
                    InvitePolicy::Anyone => true,
                    InvitePolicy::People => self.people.contains(&inviter),
                    InvitePolicy::Ignore => false,
                };
                if accept {
                    info!(adapter = %self.name, room = %room_id, inviter = %inviter, "accepting an invitation");
                    if direct {
                        rooms.direct.insert(room_id.clone());
                    }
                    acts.join_invites.push(room_id.clone());
                } else {
                    info!(adapter = %self.name, room = %room_id, inviter = %inviter, policy = ?self.cfg.invites, "leaving an invitation alone");
                }
            }
        }
        acts
    }

    /// The envelope for one `m.room.message`, or `None` when it is not a command.
    fn envelope(&self, rooms: &Rooms, room_id: &str, ev: &Value, me: &str, names: &[String]) -> Option<Envelope> {
        let sender = s(ev, "sender")?;
        let event_id = s(ev, "event_id")?;
        if sender == me {
            return None;
        }
        let ts = ev.get("origin_server_ts").and_then(Value::as_i64).unwrap_or(0);
        if ts < self.started_ms {
            debug!(adapter = %self.name, room = %room_id, "skipping a message from before the start");
            return None;
        }
        let content = ev.get("content")?;
        if s(content, "msgtype") != Some("m.text") {
            return None;
        }
        let rel = content.get("m.relates_to");
        let rel_type = rel.and_then(|r| s(r, "rel_type"));
        if rel_type == Some("m.replace") {
            return None;
        }
        let body = s(content, "body")?;
        let info = rooms.joined.get(room_id);
        let direct = !rooms.configured.contains(room_id) && (rooms.direct.contains(room_id) || info.is_some_and(|i| i.joined_count() == 2));
        let mentions_me = content
            .get("m.mentions")
            .and_then(|m| m.get("user_ids"))
            .and_then(Value::as_array)
            .is_some_and(|ids| ids.iter().any(|i| i.as_str() == Some(me)));
        let (text, mentioned) = match strip_mention(body, names, mentions_me) {
            Some(t) => (t, true),
            None => (body.to_string(), mentions_me),
        };
        let mut place = Place::new(&self.name, room_id);
        if rel_type == Some("m.thread") {
            place.thread = rel.and_then(|r| s(r, "event_id")).map(str::to_string);
        } else if self.cfg.threads && !direct {
            place.thread = Some(event_id.to_string());
        }
        let display_name = info.and_then(|i| i.members.get(sender)).and_then(|(_, d)| d.clone());
        Some(Envelope {
            user: UserId::new(&self.name, sender),
            display_name,
            place,
            direct,
            mentioned,
            text,
            button: None,
        })
    }

    fn next_txn(&self, key: u64) -> u64 {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get(&key) {
            Some(seq) => *seq,
            None => self.seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn settle(&self, key: u64, seq: u64, outcome: &Result<(), SendError>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Err(SendError::Unavailable(_) | SendError::RateLimited(_)) => {
                if pending.len() > 1024 {
                    pending.clear();
                }
                pending.insert(key, seq);
            }
            _ => {
                pending.remove(&key);
            }
        }
    }

    async fn send_event(&self, room: &str, kind: &str, txn: &str, content: Value) -> Result<String, SendError> {
        let url = self.client_url(&["rooms", room, "send", kind, txn]);
        let v = self
            .api(Method::PUT, url, Payload::Json(content), Some(REQUEST_TIMEOUT))
            .await
            .map_err(|e| e.to_send_error())?;
        s(&v, "event_id")
            .map(str::to_string)
            .ok_or_else(|| SendError::Unavailable("send answered without event_id".into()))
    }

    fn check_online(&self) -> Result<(), SendError> {
        if self.online.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(SendError::Unavailable("not connected to the homeserver".into()))
        }
    }

    /// The text events of a reply: one with HTML, or plain chunks when it is too long.
    fn text_contents(reply: &Reply) -> Vec<Value> {
        let body = html::plain(reply);
        let formatted = html::render(reply);
        if body.trim().is_empty() {
            return Vec::new();
        }
        let whole = json!({"msgtype": "m.notice", "body": body, "format": "org.matrix.custom.html", "formatted_body": formatted});
        if json_len(&whole) <= MAX_CONTENT {
            return vec![whole];
        }
        chunks(&body, MAX_EVENT_TEXT)
            .into_iter()
            .map(|c| json!({"msgtype": "m.notice", "body": c}))
            .collect()
    }

    /// Fetches an image (http(s) or `data:`), at most [`MAX_IMAGE`] bytes: bytes and type.
    async fn fetch_image(&self, url: &str) -> Result<(Vec<u8>, String), String> {
        if let Some(rest) = url.strip_prefix("data:") {
            let (meta, data) = rest.split_once(',').ok_or("a data: URL without a comma")?;
            let b64 = meta.ends_with(";base64");
            let mime = meta.trim_end_matches(";base64");
            let mime = if mime.is_empty() { "text/plain" } else { mime };
            let bytes = if b64 {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| format!("bad base64: {e}"))?
            } else {
                data.as_bytes().to_vec()
            };
            if bytes.len() > MAX_IMAGE {
                return Err("image larger than 10 MiB".into());
            }
            return Ok((bytes, mime.to_string()));
        }
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err("only http(s) and data: image URLs are fetched".into());
        }
        let mut resp = self
            .http
            .get(url)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_IMAGE as u64) {
            return Err("image larger than 10 MiB".into());
        }
        let mime = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into());
        let mut buf = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(|e| e.to_string())? {
            if buf.len() + c.len() > MAX_IMAGE {
                return Err("image larger than 10 MiB".into());
            }
            buf.extend_from_slice(&c);
        }
        Ok((buf, mime))
    }

    /// Uploads an image and gives the `m.image` content, or `None` (logged) when it fails
    /// for good; an upload the server could not take now is an error to retry.
    async fn image_content(&self, url: &str, alt: &str) -> Result<Option<Value>, SendError> {
        let (bytes, mime) = match self.fetch_image(url).await {
            Ok(x) => x,
            Err(e) => {
                warn!(adapter = %self.name, "cannot fetch the image {}: {e}", url.chars().take(80).collect::<String>());
                return Ok(None);
            }
        };
        let size = bytes.len();
        let ext = mime.split('/').nth(1).unwrap_or("bin").split('+').next().unwrap_or("bin");
        let mut up = self.url(&["_matrix", "media", "v3", "upload"]);
        up.query_pairs_mut().append_pair("filename", &format!("image.{ext}"));
        let v = match self
            .api(Method::POST, up, Payload::Bytes(bytes, mime.clone()), Some(REQUEST_TIMEOUT))
            .await
        {
            Ok(v) => v,
            Err(e) => {
                return match e.to_send_error() {
                    SendError::Rejected(r) => {
                        warn!(adapter = %self.name, "the homeserver refused the image: {r}");
                        Ok(None)
                    }
                    other => Err(other),
                };
            }
        };
        let Some(mxc) = s(&v, "content_uri") else {
            return Err(SendError::Unavailable("upload answered without content_uri".into()));
        };
        let body = if alt.trim().is_empty() { "image" } else { alt };
        Ok(Some(
            json!({"msgtype": "m.image", "body": body, "url": mxc, "info": {"mimetype": mime, "size": size}}),
        ))
    }

    async fn post_parts(&self, place: &Place, reply: &Reply, seq: u64) -> Result<Option<String>, SendError> {
        let mut contents = Self::text_contents(reply);
        let mut first: Option<String> = None;
        let mut part = 0usize;
        let relates = place
            .thread
            .as_ref()
            .map(|root| json!({"rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": {"event_id": root}}));
        let images: Vec<(&String, &String)> = reply
            .blocks
            .iter()
            .filter_map(|b| match b {
                Block::Image { url, alt } => Some((url, alt)),
                _ => None,
            })
            .collect();
        for c in contents.iter_mut() {
            if let (Some(r), Some(o)) = (&relates, c.as_object_mut()) {
                o.insert("m.relates_to".into(), r.clone());
            }
            let txn = format!("{}.{seq}.{part}", self.txn_prefix);
            let id = self.send_event(&place.channel, "m.room.message", &txn, c.take()).await?;
            first.get_or_insert(id);
            part += 1;
        }
        for (url, alt) in images {
            let txn = format!("{}.{seq}.{part}", self.txn_prefix);
            part += 1;
            let Some(mut c) = self.image_content(url, alt).await? else {
                continue;
            };
            if let (Some(r), Some(o)) = (&relates, c.as_object_mut()) {
                o.insert("m.relates_to".into(), r.clone());
            }
            let id = self.send_event(&place.channel, "m.room.message", &txn, c).await?;
            first.get_or_insert(id);
        }
        Ok(first)
    }

    async fn notify_encrypted(&self, ctx: &AdapterContext, room: &str) {
        let txn = format!("{}.e2e.{}", self.txn_prefix, self.seq.fetch_add(1, Ordering::Relaxed));
        let body = "opsbot cannot read end-to-end encrypted messages, so it cannot answer in this room. \
                    Talk to it in a room without encryption.";
        let content = json!({"msgtype": "m.notice", "body": body});
        if let Err(e) = self.send_event(room, "m.room.message", &txn, content).await {
            warn!(adapter = %self.name, room = %room, "cannot post the encryption notice: {e}");
        }
        let noted: Vec<String> = self.lock_rooms().e2e_noted.iter().cloned().collect();
        ctx.state
            .save("e2e_noted", &serde_json::to_string(&noted).unwrap_or_default())
            .await;
    }

    async fn act(&self, ctx: &AdapterContext, acts: SyncActions) -> Result<(), ()> {
        for room in acts.join_invites {
            match self
                .api(
                    Method::POST,
                    self.client_url(&["join", &room]),
                    Payload::Json(json!({})),
                    Some(REQUEST_TIMEOUT),
                )
                .await
            {
                Ok(_) => info!(adapter = %self.name, room = %room, "joined on invitation"),
                Err(e) => {
                    warn!(adapter = %self.name, room = %room, "cannot join on invitation: {e}");
                    self.lock_rooms().invites_seen.remove(&room);
                }
            }
        }
        for room in acts.e2e_notices {
            self.notify_encrypted(ctx, &room).await;
        }
        for env in acts.envelopes {
            if ctx.inbox.send(env).await.is_err() {
                return Err(());
            }
        }
        Ok(())
    }

    async fn run_inner(&self, ctx: &AdapterContext) -> Result<(), String> {
        self.connect().await?;
        if let Some(list) = ctx.state.load("e2e_noted").await
            && let Ok(v) = serde_json::from_str::<Vec<String>>(&list)
        {
            self.lock_rooms().e2e_noted.extend(v);
        }
        let (me, names) = self.me().await;
        let mut since = ctx.state.load("next_batch").await.filter(|s| !s.is_empty());
        if since.is_none() {
            // First start ever: learn the rooms, skip their history.
            let v = loop {
                match self.sync(None, Duration::ZERO, false).await {
                    Ok(v) => break v,
                    Err(ApiError::Status {
                        status: 429, retry_after, ..
                    }) => tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(1))).await,
                    Err(e) => return Err(format!("Matrix initial sync failed: {e}")),
                }
            };
            let acts = self.process_sync(&v, &me, &names, false);
            if self.act(ctx, acts).await.is_err() {
                return Ok(());
            }
            if let Some(nb) = s(&v, "next_batch") {
                ctx.state.save("next_batch", nb).await;
                since = Some(nb.to_string());
            }
        }
        ctx.connected();
        self.online.store(true, Ordering::SeqCst);
        info!(adapter = %self.name, user = %me, "connected to Matrix");
        let mut full_state = true;
        loop {
            let r = tokio::select! {
                _ = ctx.stopped() => return Ok(()),
                r = self.sync(since.as_deref(), self.sync_timeout, full_state) => r,
            };
            let v = match r {
                Ok(v) => v,
                Err(ApiError::Status {
                    status: 429, retry_after, ..
                }) => {
                    let wait = retry_after.unwrap_or(Duration::from_secs(1));
                    warn!(adapter = %self.name, "sync rate limited; waiting {wait:?}");
                    tokio::select! {
                        _ = ctx.stopped() => return Ok(()),
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
                Err(ApiError::Body(e)) => {
                    warn!(adapter = %self.name, "skipping a malformed sync response: {e}");
                    tokio::select! {
                        _ = ctx.stopped() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
                Err(e) => return Err(format!("Matrix sync failed: {e}")),
            };
            let Some(next) = s(&v, "next_batch").map(str::to_string) else {
                warn!(adapter = %self.name, "skipping a sync response without next_batch");
                tokio::select! {
                    _ = ctx.stopped() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            full_state = false;
            let mut v = v;
            if let Some(since) = since.as_deref() {
                self.fill_gaps(&mut v, since).await;
            }
            let acts = self.process_sync(&v, &me, &names, true);
            if self.act(ctx, acts).await.is_err() {
                return Ok(());
            }
            if since.as_deref() != Some(next.as_str()) {
                ctx.state.save("next_batch", &next).await;
                since = Some(next);
            }
        }
    }
}

/// Clears the online flag when `run` ends, however it ends.
struct Online<'a>(&'a AtomicBool);
impl Drop for Online<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn apply_state(info: &mut RoomInfo, ev: &Value) {
    match s(ev, "type") {
        Some("m.room.member") => {
            let (Some(user), Some(content)) = (s(ev, "state_key"), ev.get("content")) else {
                return;
            };
            let membership = s(content, "membership").unwrap_or("leave").to_string();
            let name = s(content, "displayname").map(str::to_string);
            if membership == "leave" || membership == "ban" {
                info.members.remove(user);
            } else {
                info.members.insert(user.to_string(), (membership, name));
            }
            // A membership change makes the last summary stale; counted members are current.
            info.summary_joined = None;
        }
        Some("m.room.encryption") => info.encrypted = true,
        _ => {}
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(120).collect()
}

/// Splits text at line ends (or, for a longer line, at a character boundary) into pieces of
/// at most `max` bytes.
fn chunks(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line;
        while line.len() > max {
            let mut cut = max;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(line[..cut].to_string());
            line = &line[cut..];
        }
        if cur.len() + line.len() > max {
            out.push(std::mem::take(&mut cur));
        }
        cur.push_str(line);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|c| c.trim_end_matches('\n').to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).map(|s| s.len()).unwrap_or(usize::MAX)
}

fn key_of(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

#[async_trait::async_trait]
impl Adapter for MatrixAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edit: true,
            threads: true,
            rich_text: true,
            buttons: false,
            files: true,
            reactions: false,
            direct: true,
        }
    }

    async fn run(&self, ctx: &AdapterContext) -> Result<(), String> {
        let _online = Online(&self.online);
        self.run_inner(ctx).await
    }

    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        self.check_online()?;
        let body = serde_json::to_string(reply).unwrap_or_default();
        let key = key_of(&["post", &place.key(), &body]);
        let seq = self.next_txn(key);
        let r = self.post_parts(place, reply, seq).await;
        self.settle(key, seq, &r.as_ref().map(|_| ()).map_err(Clone::clone));
        let id = r?;
        Ok(Posted { id })
    }

    async fn edit(&self, place: &Place, id: &str, reply: &Reply) -> Result<(), SendError> {
        self.check_online()?;
        let body = html::plain(reply);
        let formatted = html::render(reply);
        let rich = json!({"msgtype": "m.notice", "body": body, "format": "org.matrix.custom.html", "formatted_body": formatted});
        // An edit carries its content twice (fallback and m.new_content).
        let new_content = if 2 * json_len(&rich) <= MAX_CONTENT {
            rich
        } else {
            let cut = chunks(&body, MAX_EVENT_TEXT / 2).into_iter().next().unwrap_or_default();
            json!({"msgtype": "m.notice", "body": format!("{cut}\n… (cut)")})
        };
        let mut content = new_content.clone();
        if let Some(o) = content.as_object_mut() {
            let fallback = format!("* {}", s(&new_content, "body").unwrap_or(""));
            o.insert("body".into(), Value::String(fallback));
            if let Some(f) = s(&new_content, "formatted_body") {
                o.insert("formatted_body".into(), Value::String(format!("* {f}")));
            }
            o.insert("m.new_content".into(), new_content.clone());
            o.insert("m.relates_to".into(), json!({"rel_type": "m.replace", "event_id": id}));
        }
        let key = key_of(&["edit", &place.key(), id, &serde_json::to_string(reply).unwrap_or_default()]);
        let seq = self.next_txn(key);
        let txn = format!("{}.{seq}.0", self.txn_prefix);
        let r = self.send_event(&place.channel, "m.room.message", &txn, content).await.map(|_| ());
        self.settle(key, seq, &r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn mentions() {
        let names = vec!["@opsbot:test.local".to_string(), "opsbot".to_string(), "Ops Bot".to_string()];
        assert_eq!(strip_mention("opsbot: deploy web", &names, false).as_deref(), Some("deploy web"));
        assert_eq!(strip_mention("OpsBot, status", &names, false).as_deref(), Some("status"));
        assert_eq!(strip_mention("@opsbot:test.local: ping", &names, false).as_deref(), Some("ping"));
        assert_eq!(strip_mention("ops bot: ping", &names, false).as_deref(), Some("ping"));
        assert_eq!(strip_mention("opsbotx: ping", &names, false), None);
        assert_eq!(strip_mention("opsbot ping", &names, false), None);
        assert_eq!(strip_mention("opsbot ping", &names, true).as_deref(), Some("ping"));
        assert_eq!(strip_mention("é", &names, false), None);
    }

    #[test]
    fn events_stay_under_the_size_limit() {
        for text in ["\"".repeat(40_000), "\\".repeat(40_000), "<&>".repeat(15_000), "x\n".repeat(50_000)] {
            let parts = MatrixAdapter::text_contents(&Reply::new(opsbot_core::Tone::Info).code(text));
            assert!(!parts.is_empty());
            assert!(parts.iter().all(|p| json_len(p) < 64 * 1024));
        }
    }

    #[test]
    fn chunking_keeps_everything() {
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let c = chunks(&text, 1000);
        assert!(c.iter().all(|p| p.len() <= 1000));
        assert_eq!(c.join("\n"), text.trim_end());
        let long = "é".repeat(3000);
        let c = chunks(&long, 1001);
        assert!(c.iter().all(|p| p.len() <= 1001));
        assert_eq!(c.concat(), long);
    }
}
