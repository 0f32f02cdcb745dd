//! Matrix over the Client-Server API, written by hand on reqwest.
//!
//! Why by hand: `matrix-sdk` was measured far too heavy for what opsbot needs (about four more
//! minutes of build and it pulls in aws-lc); a bot needs a dozen endpoints — whoami or login,
//! join, `/sync`, send, upload — which are plain JSON over HTTPS.
//!
//! - **Login**: an access token (checked with `whoami`, which also gives the user id), or a
//!   password (`m.login.password` as `device_id`, default `OPSBOT`); the token is kept in
//!   memory and, with a password, renewed when the server answers `M_UNKNOWN_TOKEN`.
//! - **Sync**: a long-poll with an inline filter (messages, membership, encryption).
//!   `next_batch` is saved through the adapter state after every processed sync, so a restart
//!   replays nothing; on the very first start the initial sync's timeline (history) is skipped,
//!   and any message older than the adapter's start is skipped too. Each run's first sync asks
//!   for the full state, so member counts are right after a restart. Sync responses are read as
//!   `serde_json::Value`, event by event: a malformed response or event is logged and skipped.
//! - **Rooms**: `rooms` are joined at start (aliases resolve through the join; places always use
//!   the room id `!…`). Invitations are joined according to `invites`; others are left alone
//!   (neither joined nor rejected, so a person can still accept them by hand).
//! - **Direct conversations**: a message is direct only when, at that message, the room's joined
//!   and invited members are exactly the bot and the sender (and it is not one of the configured
//!   `rooms`). Membership is replayed event by event, also through the gaps of limited syncs;
//!   `is_direct` and `m.direct` are set by other people's clients and are never trusted.
//! - **Replies**: the quoted fallback (`> ` lines) of a rich reply is removed before the text is
//!   read, so quoted text never counts as a command; a thread root must look like an event id.
//! - **Sending**: `m.notice` events (the Matrix convention for bots: other bots do not answer
//!   notices, so two bots cannot loop) with a plain `body` and HTML `formatted_body`, always with
//!   an empty `m.mentions` (so text repeated from a person — `@room`, names — pings nobody);
//!   threads via `m.thread` relations; edits via `m.replace`. Images: a `data:` URL is uploaded to
//!   the media repository and an `mxc://` URL sent as is, as `m.image` after the text; an
//!   `http(s)` image is never fetched (the bot would fetch whatever address it is given) and
//!   stays a link in the text.
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
/// Largest `data:` image uploaded.
pub const MAX_IMAGE: usize = crate::MAX_IMAGE;
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
    /// The configured `rooms`, by id: never direct.
    configured: HashSet<String>,
    /// Encrypted rooms already told that the bot cannot read them.
    e2e_noted: HashSet<String>,
    /// Invitations already decided on (joined or left alone).
    invites_seen: HashSet<String>,
}

#[derive(Default, Clone)]
struct RoomInfo {
    /// Members by user id → their membership (`join`, `invite`, `knock`) and display name.
    members: HashMap<String, (String, Option<String>)>,
    /// `m.joined_member_count` from the last summary that had it.
    summary_joined: Option<u64>,
    /// `m.invited_member_count` from the last summary that had it.
    summary_invited: Option<u64>,
    encrypted: bool,
}

impl RoomInfo {
    fn is_joined(&self, user: &str) -> bool {
        self.members.get(user).is_some_and(|(m, _)| m == "join")
    }

    /// Joined plus invited members, bot included: the members replayed up to now, or the
    /// server's summary when that says more (a summary can only make the count larger).
    fn present_count(&self) -> u64 {
        let counted = self.members.values().filter(|(m, _)| m == "join" || m == "invite").count() as u64;
        let summary = self.summary_joined.unwrap_or(0) + self.summary_invited.unwrap_or(0);
        counted.max(summary)
    }
}

/// A Matrix event id as a thread root: `$` and at most 254 printable ASCII characters other
/// than `/` (room versions 4+ use URL-safe base64). Anything else comes from someone's
/// `m.relates_to` and must not make up a place of its own.
fn valid_event_id(id: &str) -> bool {
    id.len() > 1 && id.len() <= 255 && id.starts_with('$') && id.bytes().skip(1).all(|b| b.is_ascii_graphic() && b != b'/')
}

/// `body` without the fallback of a rich reply: the leading lines quoted with `> ` (the
/// replied-to message, someone else's words) and the empty line after them.
fn strip_reply_fallback(body: &str) -> &str {
    let mut rest = body;
    let mut quoted = false;
    loop {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with("> ") || line == ">" {
            quoted = true;
            rest = after;
        } else {
            break;
        }
    }
    if quoted {
        rest = rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')).unwrap_or(rest);
    }
    rest
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
        let resp = req.send().await.map_err(|e| ApiError::Network(e.to_string()))?;
        let status = resp.status().as_u16();
        let retry_header = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let buf = crate::read_capped(resp, MAX_RESPONSE).await.map_err(|e| match e {
            crate::BodyError::TooLarge(n) => ApiError::Body(format!("response larger than {n} bytes")),
            crate::BodyError::Network(e) => ApiError::Network(e),
        })?;
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
            "account_data": {"not_types": ["*"]},
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

    /// The events that limited (gappy) timelines left out, back to `since`, oldest first, by
    /// room: so a burst of more than [`TIMELINE_LIMIT`] messages between two syncs loses none.
    async fn fill_gaps(&self, v: &Value, since: &str) -> HashMap<String, Vec<Value>> {
        let mut gaps = HashMap::new();
        let Some(join) = v.get("rooms").and_then(|r| r.get("join")).and_then(Value::as_object) else {
            return gaps;
        };
        for (room_id, room) in join {
            let Some(tl) = room.get("timeline").and_then(Value::as_object) else {
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
            gaps.insert(room_id.clone(), missed);
        }
        gaps
    }

    /// Reads one sync response, with the events `gaps` fetched for limited timelines;
    /// `deliver` is false for the first start's history.
    fn process_sync(&self, v: &Value, gaps: &HashMap<String, Vec<Value>>, me: &str, names: &[String], deliver: bool) -> SyncActions {
        let mut acts = SyncActions::default();
        let mut rooms = self.lock_rooms();
        let section = v.get("rooms");
        if let Some(join) = section.and_then(|r| r.get("join")).and_then(Value::as_object) {
            for (room_id, room) in join {
                let info = rooms.joined.entry(room_id.clone()).or_default();
                let summary = room.get("summary");
                let count = |key: &str| summary.and_then(|s| s.get(key)).and_then(Value::as_u64);
                if let Some(n) = count("m.joined_member_count") {
                    info.summary_joined = Some(n);
                }
                if let Some(n) = count("m.invited_member_count") {
                    info.summary_invited = Some(n);
                }
                // The state at the start of the returned timeline (after any gap).
                for ev in events(room.get("state")) {
                    apply_state(info, ev);
                }
                if let Some(gap) = gaps.get(room_id).filter(|g| !g.is_empty()) {
                    // Wind membership back to the start of the gap, then replay the gap event
                    // by event: each message is judged by the members it was said among.
                    let after = info.clone();
                    for ev in gap.iter().rev() {
                        unapply_state(info, ev);
                    }
                    for ev in gap {
                        self.timeline_event(&mut rooms, &mut acts, room_id, ev, me, names, deliver);
                    }
                    if let Some(info) = rooms.joined.get_mut(room_id) {
                        info.members = after.members;
                    }
                }
                for ev in events(room.get("timeline")) {
                    self.timeline_event(&mut rooms, &mut acts, room_id, ev, me, names, deliver);
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
                let accept = match self.cfg.invites {
                    InvitePolicy::Anyone => true,
                    InvitePolicy::People => self.people.contains(&inviter),
                    InvitePolicy::Ignore => false,
                };
                if accept {
                    info!(adapter = %self.name, room = %room_id, inviter = %inviter, "accepting an invitation");
                    acts.join_invites.push(room_id.clone());
                } else {
                    info!(adapter = %self.name, room = %room_id, inviter = %inviter, policy = ?self.cfg.invites, "leaving an invitation alone");
                }
            }
        }
        acts
    }

    /// One timeline event of `room_id`: a state change, or a message to deliver.
    #[allow(clippy::too_many_arguments)]
    fn timeline_event(
        &self,
        rooms: &mut Rooms,
        acts: &mut SyncActions,
        room_id: &str,
        ev: &Value,
        me: &str,
        names: &[String],
        deliver: bool,
    ) {
        if !ev.is_object() {
            warn!(adapter = %self.name, room = %room_id, "skipping a malformed event: {}", short(ev));
            return;
        }
        if ev.get("state_key").is_some() {
            if let Some(info) = rooms.joined.get_mut(room_id) {
                apply_state(info, ev);
            }
            return;
        }
        if !deliver {
            return;
        }
        match s(ev, "type").unwrap_or("") {
            "m.room.encrypted" if s(ev, "sender") != Some(me) && rooms.e2e_noted.insert(room_id.to_string()) => {
                warn!(adapter = %self.name, room = %room_id, "an end-to-end encrypted message: opsbot cannot read encrypted rooms");
                acts.e2e_notices.push(room_id.to_string());
            }
            "m.room.message" => {
                if let Some(env) = self.envelope(rooms, room_id, ev, me, names) {
                    acts.envelopes.push(env);
                }
            }
            _ => {}
        }
    }

    /// Whether a message from `sender` in `room_id` is a direct conversation: the room is not
    /// one of the configured `rooms`, and its joined and invited members right now are exactly
    /// the bot and the sender. Nobody's `is_direct` or `m.direct` can make a room direct.
    fn is_direct(rooms: &Rooms, room_id: &str, sender: &str, me: &str) -> bool {
        if rooms.configured.contains(room_id) {
            return false;
        }
        rooms
            .joined
            .get(room_id)
            .is_some_and(|i| sender != me && i.is_joined(sender) && i.is_joined(me) && i.present_count() <= 2)
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
        let mut body = s(content, "body")?;
        if rel.and_then(|r| r.get("m.in_reply_to")).is_some() {
            body = strip_reply_fallback(body);
        }
        let info = rooms.joined.get(room_id);
        let direct = Self::is_direct(rooms, room_id, sender, me);
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
            place.thread = rel
                .and_then(|r| s(r, "event_id"))
                .filter(|id| valid_event_id(id))
                .map(str::to_string);
            if place.thread.is_none() {
                debug!(adapter = %self.name, room = %room_id, "a thread root that is not an event id: not in a thread");
            }
        } else if self.cfg.threads && !direct && valid_event_id(event_id) {
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
        let content = quiet(content);
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

    /// The `m.image` content of an image: an `mxc://` URL as it is, a `data:` URL uploaded;
    /// `None` (logged) for anything else or when it fails for good — an `http(s)` image is
    /// never fetched, it is a link in the text. An upload the server could not take now is an
    /// error to retry.
    async fn image_content(&self, url: &str, alt: &str) -> Result<Option<Value>, SendError> {
        let body = if alt.trim().is_empty() { "image" } else { alt };
        if valid_mxc(url) {
            return Ok(Some(json!({"msgtype": "m.image", "body": body, "url": url})));
        }
        let shown: String = url.chars().take(80).collect();
        if !url.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:")) {
            debug!(adapter = %self.name, "not fetching the image {shown}: it stays a link in the text");
            return Ok(None);
        }
        let (bytes, mime) = match crate::decode_data_url(url) {
            Ok(x) => x,
            Err(e) => {
                warn!(adapter = %self.name, "cannot read the image {shown}: {e}");
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
            let acts = self.process_sync(&v, &HashMap::new(), &me, &names, false);
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
            let gaps = match since.as_deref() {
                Some(since) => self.fill_gaps(&v, since).await,
                None => HashMap::new(),
            };
            let acts = self.process_sync(&v, &gaps, &me, &names, true);
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
        }
        Some("m.room.encryption") => info.encrypted = true,
        _ => {}
    }
}

/// Undoes one membership event of a gap (replayed backwards): the member gets the membership
/// the event replaced (`unsigned.prev_content`). Without it, the member is taken as present
/// before too — counting someone too many can only make a room not direct, never direct.
fn unapply_state(info: &mut RoomInfo, ev: &Value) {
    if s(ev, "type") != Some("m.room.member") {
        return;
    }
    let Some(user) = s(ev, "state_key") else { return };
    let prev = ev.get("unsigned").and_then(|u| u.get("prev_content")).filter(|p| p.is_object());
    match prev {
        Some(p) => {
            let membership = s(p, "membership").unwrap_or("leave");
            if membership == "leave" || membership == "ban" {
                info.members.remove(user);
            } else {
                info.members
                    .insert(user.to_string(), (membership.to_string(), s(p, "displayname").map(str::to_string)));
            }
        }
        None => {
            let name = info.members.get(user).and_then(|(_, n)| n.clone());
            info.members.insert(user.to_string(), ("join".to_string(), name));
        }
    }
}

/// `content` with an empty `m.mentions`: the event mentions nobody, so a text that repeats
/// someone's words (`@room`, a name, a user id) does not notify anyone (intentional mentions,
/// Matrix 1.7: with `m.mentions` present, body-based push rules do not apply).
fn quiet(mut content: Value) -> Value {
    if let Some(o) = content.as_object_mut() {
        o.insert("m.mentions".into(), json!({}));
    }
    content
}

/// An `mxc://server/media-id` URL (sent as it is: clients fetch it from their own homeserver).
fn valid_mxc(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("mxc://") else { return false };
    let Some((server, media)) = rest.split_once('/') else {
        return false;
    };
    let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?' && b != b'#');
    ok(server) && ok(media) && url.len() <= 255
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
            forms: false,
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
        // An edit carries its content twice (fallback and m.new_content); what counts for
        // mentions is m.new_content's own m.mentions.
        let new_content = quiet(if 2 * json_len(&rich) <= MAX_CONTENT {
            rich
        } else {
            let cut = chunks(&body, MAX_EVENT_TEXT / 2).into_iter().next().unwrap_or_default();
            json!({"msgtype": "m.notice", "body": format!("{cut}\n… (cut)")})
        });
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

    const ME: &str = "@opsbot:t";

    fn adapter() -> MatrixAdapter {
        let cfg = MatrixConfig {
            homeserver: "http://127.0.0.1:9".into(),
            user_id: ME.into(),
            access_token: Some("t".into()),
            password: None,
            device_id: None,
            rooms: vec![],
            invites: InvitePolicy::Anyone,
            threads: false,
            sync_timeout: None,
            tls_ca: None,
        };
        MatrixAdapter::new("mx", cfg, vec![]).unwrap()
    }

    fn member(user: &str, membership: &str) -> Value {
        json!({"type": "m.room.member", "state_key": user, "sender": user, "content": {"membership": membership}})
    }

    fn say(id: &str, sender: &str, content: Value) -> Value {
        json!({"type": "m.room.message", "event_id": id, "sender": sender, "origin_server_ts": now_ms() + 60_000, "content": content})
    }

    fn text(id: &str, body: &str) -> Value {
        say(id, "@ana:t", json!({"msgtype": "m.text", "body": body}))
    }

    /// Runs one sync of one joined room through the adapter; the envelopes' (text, direct).
    fn sync_room(
        a: &MatrixAdapter,
        room: &str,
        state: Vec<Value>,
        timeline: Vec<Value>,
        summary: Value,
        gap: Vec<Value>,
    ) -> Vec<(String, bool)> {
        let v = json!({"next_batch": "b", "rooms": {"join": {room: {"summary": summary, "state": {"events": state}, "timeline": {"events": timeline}}}}});
        let gaps = HashMap::from([(room.to_string(), gap)]);
        let names = vec![ME.to_string(), "opsbot".to_string()];
        a.process_sync(&v, &gaps, ME, &names, true)
            .envelopes
            .into_iter()
            .map(|e| (e.text, e.direct))
            .collect()
    }

    #[test]
    fn direct_means_only_the_bot_and_the_sender_at_that_message() {
        let a = adapter();
        let dm = |t: &str| (t.to_string(), true);
        let room = |t: &str| (t.to_string(), false);
        // Two joined members: direct.
        let got = sync_room(
            &a,
            "!dm:t",
            vec![member(ME, "join"), member("@ana:t", "join")],
            vec![text("$1", "hi")],
            json!({}),
            vec![],
        );
        assert_eq!(got, vec![dm("hi")]);

        // Made as a direct chat by Ana (is_direct on the bot's invitation), but
        // Bob is invited too: not direct; nor once he joined; direct again once he left.
        let mut bot = member(ME, "join");
        bot["content"]["is_direct"] = json!(true);
        let got = sync_room(
            &a,
            "!grp:t",
            vec![bot, member("@ana:t", "join"), member("@bob:t", "invite")],
            vec![
                text("$2", "invited"),
                member("@bob:t", "join"),
                text("$3", "joined"),
                member("@bob:t", "leave"),
                text("$4", "left"),
            ],
            json!({}),
            vec![],
        );
        assert_eq!(got, vec![room("invited"), room("joined"), dm("left")]);
        // An invitation that arrives later counts from that event on.
        let got = sync_room(
            &a,
            "!grp:t",
            vec![],
            vec![text("$5", "two"), member("@cy:t", "invite"), text("$6", "three")],
            json!({}),
            vec![],
        );
        assert_eq!(got, vec![dm("two"), room("three")]);

        // The server's summary can say there are more people than the bot knows of.
        let got = sync_room(
            &a,
            "!sum:t",
            vec![member(ME, "join"), member("@ana:t", "join")],
            vec![text("$7", "x")],
            json!({"m.joined_member_count": 2, "m.invited_member_count": 1}),
            vec![],
        );
        assert_eq!(got, vec![room("x")]);

        // A sender the bot does not know as a member, or a room without the bot: not direct.
        let got = sync_room(&a, "!odd:t", vec![], vec![text("$8", "who")], json!({}), vec![]);
        assert_eq!(got, vec![room("who")]);

        // A configured room is never direct.
        a.lock_rooms().configured.insert("!cfg:t".into());
        let got = sync_room(
            &a,
            "!cfg:t",
            vec![member(ME, "join"), member("@ana:t", "join")],
            vec![text("$9", "c")],
            json!({}),
            vec![],
        );
        assert_eq!(got, vec![room("c")]);
    }

    #[test]
    fn messages_in_a_gap_are_judged_by_the_members_of_their_moment() {
        let a = adapter();
        sync_room(
            &a,
            "!gap:t",
            vec![member(ME, "join"), member("@ana:t", "join"), member("@bob:t", "join")],
            vec![],
            json!({}),
            vec![],
        );
        // Bob left during the gap: the state (after the gap) has him gone, but the first message
        // was said while he was there. The second leave (Cy's) has no prev_content: she counts
        // as present before it.
        let mut bob_leaves = member("@bob:t", "leave");
        bob_leaves["unsigned"] = json!({"prev_content": {"membership": "join"}});
        let cy_leaves = member("@cy:t", "leave");
        let got = sync_room(
            &a,
            "!gap:t",
            vec![bob_leaves.clone(), cy_leaves.clone()],
            vec![text("$13", "after")],
            json!({}),
            vec![
                text("$10", "with bob"),
                bob_leaves,
                text("$11", "with cy?"),
                cy_leaves,
                text("$12", "alone"),
            ],
        );
        let direct: Vec<(String, bool)> = ["with bob", "with cy?", "alone", "after"]
            .iter()
            .zip([false, false, true, true])
            .map(|(t, d)| (t.to_string(), d))
            .collect();
        assert_eq!(got, direct);
        // The members after the sync are the server's.
        let rooms = a.lock_rooms();
        let info = rooms.joined.get("!gap:t").unwrap();
        assert_eq!(info.present_count(), 2);
        assert!(!info.members.contains_key("@cy:t"));
    }

    #[test]
    fn thread_roots_must_be_event_ids() {
        assert!(valid_event_id("$abc-_DEF123"));
        assert!(valid_event_id("$abc:example.org"));
        assert!(valid_event_id(&format!("${}", "a".repeat(254))));
        for bad in ["", "$", "abc", "!room:t", "$a/b", "$a b", "$a\nb", "$é", "$../../x"] {
            assert!(!valid_event_id(bad), "{bad:?}");
        }
        assert!(!valid_event_id(&format!("${}", "a".repeat(255))));

        let a = adapter();
        let room = vec![member(ME, "join"), member("@ana:t", "join"), member("@bob:t", "join")];
        let in_thread = |root: &str| {
            say(
                "$m",
                "@ana:t",
                json!({"msgtype": "m.text", "body": "!status", "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
            )
        };
        let names = vec![ME.to_string()];
        sync_room(&a, "!r:t", room, vec![], json!({}), vec![]);
        let rooms = a.lock_rooms();
        let thread = |root: &str| a.envelope(&rooms, "!r:t", &in_thread(root), ME, &names).unwrap().place.thread;
        assert_eq!(thread("$root_ID-1").as_deref(), Some("$root_ID-1"));
        assert_eq!(thread("$x/../!other:t"), None);
        assert_eq!(thread("root"), None);
        assert_eq!(thread(&format!("${}", "a".repeat(300))), None);
    }

    #[test]
    fn reply_fallbacks_are_not_read_as_commands() {
        assert_eq!(strip_reply_fallback("> <@bob:t> !deploy prod\n\n!status"), "!status");
        assert_eq!(
            strip_reply_fallback("> <@bob:t> line one\n> line two\n>\n> four\n\nopsbot: ok\nmore"),
            "opsbot: ok\nmore"
        );
        assert_eq!(strip_reply_fallback("> <@bob:t> a\r\n\r\nyes"), "yes");
        assert_eq!(strip_reply_fallback("> only a quote"), "");
        assert_eq!(strip_reply_fallback("no quote\n> later"), "no quote\n> later");
        assert_eq!(strip_reply_fallback(">not a quote"), ">not a quote");

        let a = adapter();
        sync_room(
            &a,
            "!r:t",
            vec![member(ME, "join"), member("@ana:t", "join"), member("@bob:t", "join")],
            vec![],
            json!({}),
            vec![],
        );
        let names = vec![ME.to_string(), "opsbot".to_string()];
        let rooms = a.lock_rooms();
        let reply = |body: &str, in_reply: bool| {
            let mut c = json!({"msgtype": "m.text", "body": body});
            if in_reply {
                c["m.relates_to"] = json!({"m.in_reply_to": {"event_id": "$orig"}});
            }
            a.envelope(&rooms, "!r:t", &say("$r", "@ana:t", c), ME, &names).unwrap()
        };
        let e = reply("> <@bob:t> opsbot: deploy prod\n\nopsbot: status", true);
        assert_eq!((e.text.as_str(), e.mentioned), ("status", true));
        let e = reply("> <@bob:t> opsbot: deploy prod\n\nthanks", true);
        assert_eq!((e.text.as_str(), e.mentioned), ("thanks", false));
        // Not a reply: the text is the sender's own, as typed.
        let e = reply("> quoting\n\n!x", false);
        assert_eq!(e.text, "> quoting\n\n!x");
    }

    #[test]
    fn sent_contents_mention_nobody() {
        let c = quiet(json!({"msgtype": "m.notice", "body": "@room hi", "m.mentions": {"room": true}}));
        assert_eq!(c["m.mentions"], json!({}));
        for part in MatrixAdapter::text_contents(&Reply::text(opsbot_core::Tone::Info, "@room")) {
            assert_eq!(quiet(part)["m.mentions"], json!({}));
        }
    }

    #[test]
    fn images_are_data_or_mxc_urls_only() {
        assert!(valid_mxc("mxc://example.org/AbC123"));
        for bad in [
            "mxc://example.org",
            "mxc:///x",
            "mxc://a/b/c",
            "http://example.org/x.png",
            "mxc://a b/c",
        ] {
            assert!(!valid_mxc(bad), "{bad}");
        }
        let (bytes, mime) = crate::decode_data_url("data:image/png;base64,iVBORw==").unwrap();
        assert_eq!((bytes.as_slice(), mime.as_str()), (&[0x89, b'P', b'N', b'G'][..], "image/png"));
        assert!(crate::decode_data_url("http://127.0.0.1/x.png").is_err());
        assert!(crate::decode_data_url("data:image/png;base64").is_err());
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
