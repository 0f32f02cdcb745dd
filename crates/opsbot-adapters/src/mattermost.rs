//! Mattermost over its REST API v4 (reqwest) and WebSocket event stream (tokio-tungstenite).
//!
//! - **Connect**: `GET /api/v4/users/me` gives the bot's user id and username; then the
//!   WebSocket `/api/v4/websocket` with the token in the `Authorization` header. The server's
//!   first event is `hello` (with a `connection_id`): then the adapter reports itself connected.
//! - **Nothing lost, nothing twice**: every event carries `seq`, counting up by one per
//!   connection. A reconnect asks to resume with `connection_id` and `sequence_number` (the
//!   server replays what it still holds and answers `hello` with the same connection id). When
//!   it answers with a new connection id, or when a `seq` is skipped, the channels seen are
//!   read again over REST (`GET /api/v4/channels/{id}/posts?since=…`, bounded), and the post
//!   ids already handled (a bounded set) make sure none is handled twice. A catch-up takes no post
//!   created more than 10 s before the newest post already handled (the WebSocket delivered
//!   those; an old command edited since, its id forgotten, must not run again), and the post
//!   whose `seq` revealed a gap is handled after the catch-up in any case.
//!   See <https://developers.mattermost.com/integrate/reference/websocket/>.
//! - **Dead connections**: a WebSocket ping every 30 s; nothing heard for 75 s ends the run.
//! - **Messages**: `posted` events (`data.post` is a JSON string). The bot's own posts and
//!   system posts (`type` not empty) and posts by integrations (`props.from_webhook`) are
//!   skipped; channel type `D` is a direct message. In
//!   channels the bot is addressed by a leading `@username` (stripped; `mentioned`) or the
//!   engine's prefix (left in the text for the engine). Malformed events are logged and skipped.
//! - **Replies**: `POST /api/v4/posts` with Markdown ([`markdown`]), split under the
//!   16 383-character limit, `root_id` for threads, `pending_post_id` so a retried send is not
//!   posted twice; `PUT /api/v4/posts/{id}/patch` for edits (live job cards). Group mentions in
//!   the text are defused and `disable_group_highlight` is set.
//! - **Buttons**: message attachment actions whose `integration.url` is
//!   `callback_url/hooks/NAME/actions` and whose `integration.context` carries the command,
//!   the action id, the channel and thread, and an HMAC-SHA256 over them under a key derived
//!   from the token: a click with a forged or altered context is refused. See
//!   <https://developers.mattermost.com/integrate/plugins/interactive-messages/>.
//! - **Slash commands**: `POST /hooks/NAME/command` (form body), checked against
//!   `command_token`; answered at once with an ephemeral "Working on …", the replies follow as
//!   posts (through the command's `response_url` when the bot is not a member of the channel).
//!   A command is direct only in the bot's own direct channel (named `ID1__ID2` with the bot's
//!   id), and outside `channels` (when set) it is refused with an ephemeral answer.
//! - **Images**: a `data:` URL is uploaded (`POST /api/v4/files`) and attached by `file_ids`;
//!   an `http(s)` image is Markdown (the bot never fetches URLs it is given).

pub mod markdown;

use futures_util::{SinkExt, StreamExt};
use opsbot_core::config::MattermostConfig;
use opsbot_core::verify::{Encoding, HmacFormat, hmac_sha256_sign, verify_hmac_sha256};
use opsbot_core::{
    Adapter, AdapterContext, Block, Capabilities, Envelope, Place, Posted, Reply, SendError, Tone, UserId, WebhookRequest, WebhookResponse,
};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tracing::{debug, error, info, warn};

/// Largest REST response body read.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// Largest WebSocket message taken (a bigger one ends the connection: tungstenite cannot skip
/// it); events this large are malformed anyway and are skipped after parsing.
const MAX_WS_MESSAGE: usize = 32 * 1024 * 1024;
/// Largest message text of a post taken as a command; longer posts are logged and skipped.
pub const MAX_POST_TEXT: usize = 64 * 1024;
/// Largest `data:` image uploaded.
pub const MAX_IMAGE: usize = crate::MAX_IMAGE;
/// Timeout of REST requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// WebSocket pings this often.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Nothing heard for this long: the connection is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// Post ids remembered to skip duplicates.
const SEEN_MAX: usize = 4096;
/// Channels remembered for catching up.
const CHANNELS_MAX: usize = 200;
/// Channels read again in one catch-up, and posts taken per channel.
const CATCHUP_CHANNELS: usize = 50;
const CATCHUP_POSTS: usize = 500;
/// A catch-up takes no post created more than this long before the newest post already
/// handled (server time): the WebSocket delivered those, and the bounded set of handled ids
/// may have forgotten them (an old command edited since would come back as new). The slack
/// covers posts handled a little out of order across channels.
const CATCHUP_SLACK_MS: i64 = 10_000;
/// How long a slash command's `response_url` may be used.
const RESPONSE_URL_TTL: Duration = Duration::from_secs(30 * 60);
/// How often a slash command's `response_url` may be used.
const RESPONSE_URL_USES: u32 = 5;
/// The signature format of a button context (the `sig` field).
const SIG: HmacFormat = HmacFormat {
    header: "context.sig",
    prefix: "",
    encoding: Encoding::Hex,
};

/// The Mattermost adapter.
pub struct MattermostAdapter {
    name: String,
    cfg: MattermostConfig,
    http: reqwest::Client,
    base: Url,
    /// TLS for `wss://` (the system's roots plus `tls_ca`).
    ws_tls: Option<Arc<rustls::ClientConfig>>,
    /// Key of the button contexts' HMAC, derived from the token.
    button_key: Vec<u8>,
    /// The integration URL of buttons, when there is a callback URL.
    actions_url: Option<String>,
    me: Mutex<Me>,
    ctx: Mutex<Option<AdapterContext>>,
    online: AtomicBool,
    shared: Mutex<Shared>,
    /// Hash of an unsure send → the `pending_post_id`s it used, reused by the retry.
    pending: Mutex<HashMap<u64, String>>,
    seq: AtomicU64,
}

#[derive(Default, Clone)]
struct Me {
    id: String,
    username: String,
}

#[derive(Default)]
struct Shared {
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    /// Channel id → what is known of it.
    channels: HashMap<String, ChannelInfo>,
    /// The connection to resume: its id and the next `seq` expected.
    resume: Option<(String, i64)>,
    /// When the last connection said hello (ms since the epoch); `None` before the first.
    last_hello_ms: Option<i64>,
    /// Channel id → a slash command's `response_url`, when it came and how often it was used.
    response_urls: HashMap<String, (String, Instant, u32)>,
    /// `create_at` of the newest post handled (ms, server time; 0 before the first).
    newest_ms: i64,
}

#[derive(Default, Clone)]
struct ChannelInfo {
    /// `O`, `P`, `D`, `G` when known.
    kind: Option<String>,
    /// `create_at` of the newest post seen (ms).
    last_ms: i64,
}

impl Shared {
    /// Records a post id; false when it was seen already.
    fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        self.seen.insert(id.to_string());
        self.seen_order.push_back(id.to_string());
        while self.seen_order.len() > SEEN_MAX {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    fn note_channel(&mut self, id: &str, kind: Option<&str>, at_ms: i64) {
        if !self.channels.contains_key(id) && self.channels.len() >= CHANNELS_MAX {
            // Forget the quietest channel.
            if let Some(old) = self.channels.iter().min_by_key(|(_, c)| c.last_ms).map(|(k, _)| k.clone()) {
                self.channels.remove(&old);
            }
        }
        let c = self.channels.entry(id.to_string()).or_default();
        if let Some(k) = kind.filter(|k| !k.is_empty()) {
            c.kind = Some(k.to_string());
        }
        c.last_ms = c.last_ms.max(at_ms);
    }
}

/// How a REST call failed.
#[derive(Debug)]
enum ApiError {
    /// No answer (connection refused, reset, timeout).
    Network(String),
    /// An HTTP error status, with Mattermost's error id and message when the body had them.
    Status {
        status: u16,
        id: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that was too large or not JSON.
    Body(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "{e}"),
            ApiError::Status { status, id, message, .. } => write!(f, "HTTP {status} {id}: {message}"),
            ApiError::Body(e) => write!(f, "bad response: {e}"),
        }
    }
}

impl ApiError {
    fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// 429 → rate limited; 401, 408, 5xx, no answer → unavailable; other 4xx → refused.
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

enum Payload {
    None,
    Json(Value),
    Multipart(reqwest::multipart::Form),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn short(t: &str) -> String {
    let mut out: String = t.chars().take(100).collect();
    if out.len() < t.len() {
        out.push('…');
    }
    out
}

fn key_of(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Strips a leading `@username` (any case) followed by the end, a space, `:` or `,`.
fn strip_mention<'a>(text: &'a str, username: &str) -> Option<&'a str> {
    let t = text.trim_start().strip_prefix('@')?;
    if username.is_empty() || !t.get(..username.len()).is_some_and(|h| h.eq_ignore_ascii_case(username)) {
        return None;
    }
    let rest = &t[username.len()..];
    if rest.is_empty() {
        return Some("");
    }
    let rest2 = rest.strip_prefix([':', ',']).unwrap_or(rest);
    if rest2.len() != rest.len() || rest.starts_with(char::is_whitespace) {
        Some(rest2.trim())
    } else {
        None
    }
}

/// Whether `given` equals `expected`, in time that does not depend on where they differ: both
/// are MACed under `key` (a secret the sender does not know) and the MACs compared
/// constant-time.
fn same_secret(key: &[u8], given: &str, expected: &str) -> bool {
    let mac = hmac_sha256_sign(key, &[expected.as_bytes()], SIG);
    verify_hmac_sha256(key, &[given.as_bytes()], Some(&mac), SIG).is_ok()
}

/// What one WebSocket message asks for.
enum WsAction {
    Nothing,
    Post(Value, Option<String>, Option<String>),
    /// A `seq` was skipped: read the channels again; then the post that came with the gap, if
    /// any (handled once: a catch-up that found it already took it).
    Gap(i64, i64, Option<(Value, Option<String>, Option<String>)>),
}

impl MattermostAdapter {
    /// An adapter named `name` for the server and token of `cfg`.
    pub fn new(name: &str, cfg: MattermostConfig) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = Url::parse(cfg.url.trim_end_matches('/')).map_err(|e| format!("url `{}`: {e}", cfg.url))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(format!("url `{}` is not an http(s) base URL", cfg.url));
        }
        if cfg.token.trim().is_empty() {
            return Err("token is empty".into());
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
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
        let ws_tls = if base.scheme() == "https" {
            Some(crate::tls::client_config(cfg.tls_ca.as_deref())?)
        } else {
            None
        };
        let key_hex = hmac_sha256_sign(cfg.token.as_bytes(), &[b"opsbot mattermost button context v1"], SIG);
        let actions_url = cfg
            .callback_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| format!("{}/hooks/{name}/actions", u.trim_end_matches('/')));
        Ok(Self {
            name: name.to_string(),
            http,
            base,
            ws_tls,
            button_key: key_hex.into_bytes(),
            actions_url,
            me: Mutex::new(Me::default()),
            ctx: Mutex::new(None),
            online: AtomicBool::new(false),
            shared: Mutex::new(Shared::default()),
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            cfg,
        })
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn me(&self) -> Me {
        self.me.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `api/v4/` + segments, each percent-encoded.
    fn api_url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty();
            p.extend(["api", "v4"]);
            p.extend(segments);
        }
        u
    }

    /// One REST call with the token: the JSON answer (size-capped), or why not.
    async fn call(&self, method: Method, url: Url, payload: Payload) -> Result<Value, ApiError> {
        let mut req = self.http.request(method, url).bearer_auth(self.cfg.token.trim());
        req = match payload {
            Payload::None => req,
            Payload::Json(v) => req.json(&v),
            Payload::Multipart(f) => req.multipart(f),
        };
        let resp = req.send().await.map_err(|e| ApiError::Network(e.without_url().to_string()))?;
        read_answer(resp).await
    }

    /// `GET /users/me`: who the token is.
    async fn whoami(&self) -> Result<Me, String> {
        let v = self
            .call(Method::GET, self.api_url(&["users", "me"]), Payload::None)
            .await
            .map_err(|e| match e.status() {
                Some(401) => format!("Mattermost refused the token (check `token`): {e}"),
                _ => format!("Mattermost GET /users/me failed: {e}"),
            })?;
        let id = s(&v, "id")
            .filter(|i| !i.is_empty())
            .ok_or("GET /users/me answered without an id")?;
        let username = s(&v, "username").unwrap_or("").to_string();
        Ok(Me {
            id: id.to_string(),
            username,
        })
    }

    fn ws_url(&self, resume: Option<&(String, i64)>) -> Url {
        let mut u = self.api_url(&["websocket"]);
        let scheme = if self.base.scheme() == "https" { "wss" } else { "ws" };
        let _ = u.set_scheme(scheme);
        if let Some((conn, seq)) = resume {
            u.query_pairs_mut()
                .append_pair("connection_id", conn)
                .append_pair("sequence_number", &seq.to_string());
        }
        u
    }

    async fn run_inner(&self, ctx: &AdapterContext) -> Result<(), String> {
        let me = self.whoami().await?;
        *self.me.lock().unwrap_or_else(|p| p.into_inner()) = me.clone();
        let resume = self.lock_shared().resume.clone();
        let url = self.ws_url(resume.as_ref());
        let mut req = url.as_str().into_client_request().map_err(|e| format!("bad WebSocket URL: {e}"))?;
        let auth = format!("Bearer {}", self.cfg.token.trim())
            .parse()
            .map_err(|_| "the token has characters not allowed in an HTTP header".to_string())?;
        req.headers_mut().insert("authorization", auth);
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_WS_MESSAGE))
            .max_frame_size(Some(MAX_WS_MESSAGE));
        let connector = match &self.ws_tls {
            Some(tls) => tokio_tungstenite::Connector::Rustls(tls.clone()),
            None => tokio_tungstenite::Connector::Plain,
        };
        let connect = tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, Some(connector));
        let (mut ws, _) = tokio::select! {
            _ = ctx.stopped() => return Ok(()),
            r = tokio::time::timeout(REQUEST_TIMEOUT, connect) => r
                .map_err(|_| "the Mattermost WebSocket did not open in time".to_string())?
                .map_err(|e| format!("cannot open the Mattermost WebSocket: {e}"))?,
        };
        // A new session starts with `hello` (seq 0, a new `connection_id`); a resumed one does
        // not: the server replays what was missed and goes on. A `ping` action tells the two
        // apart: its answer coming before any `hello` means the session was resumed.
        if let Err(e) = ws.send(Message::Text(json!({"seq": 1, "action": "ping"}).to_string().into())).await {
            return Err(format!("the Mattermost WebSocket failed: {e}"));
        }
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut early: Vec<String> = Vec::new();
        let hello: Option<(String, i64)> = loop {
            let m = tokio::select! {
                _ = ctx.stopped() => return Ok(()),
                m = tokio::time::timeout_at(deadline, ws.next()) => m.map_err(|_| "no hello from the Mattermost WebSocket".to_string())?,
            };
            match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = match serde_json::from_str(t.as_str()) {
                        Ok(v) => v,
                        Err(e) => {
                            warn!(adapter = %self.name, "skipping a WebSocket message that is not JSON ({e}): {}", short(t.as_str()));
                            continue;
                        }
                    };
                    if s(&v, "event") == Some("hello") {
                        let data = v.get("data").cloned().unwrap_or(Value::Null);
                        break Some((
                            s(&data, "connection_id").unwrap_or("").to_string(),
                            v.get("seq").and_then(Value::as_i64).unwrap_or(0),
                        ));
                    }
                    if v.get("seq_reply").and_then(Value::as_i64) == Some(1) {
                        if s(&v, "status") != Some("OK") {
                            return Err(format!("Mattermost refused the WebSocket session: {}", short(t.as_str())));
                        }
                        if resume.is_some() {
                            break None;
                        }
                        continue;
                    }
                    if early.len() < 4 * 1024 {
                        early.push(t.as_str().to_string());
                    }
                }
                Some(Ok(Message::Close(f))) => return Err(format!("the Mattermost WebSocket closed before hello: {f:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("the Mattermost WebSocket failed: {e}")),
                None => return Err("the Mattermost WebSocket closed before hello".into()),
            }
        };
        let (conn_id, hello_seq) = match (&hello, &resume) {
            (Some(h), _) => h.clone(),
            (None, Some((c, next))) => (c.clone(), next.saturating_sub(1)),
            (None, None) => (String::new(), 0),
        };
        let resumed = resume.as_ref().is_some_and(|(c, _)| !c.is_empty() && *c == conn_id);
        let mut expected = match (&resume, resumed) {
            (Some((_, next)), true) => *next,
            _ => hello_seq.saturating_add(1),
        };
        let had_connection = {
            let mut sh = self.lock_shared();
            let had = sh.last_hello_ms.is_some();
            sh.resume = Some((conn_id.clone(), expected));
            if !resumed {
                sh.last_hello_ms.get_or_insert_with(now_ms);
            }
            had
        };
        ctx.connected();
        self.online.store(true, Ordering::SeqCst);
        info!(adapter = %self.name, user = %me.username, resumed, "connected to Mattermost");
        if had_connection && !resumed {
            info!(adapter = %self.name, "a new WebSocket session: reading the channels for what was said meanwhile");
            if self.catch_up(ctx).await.is_err() {
                return Ok(());
            }
        }
        self.lock_shared().last_hello_ms = Some(now_ms());
        for t in early {
            if self.on_ws_text(ctx, &t, &mut expected).await.is_err() {
                return Ok(());
            }
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_heard = Instant::now();
        loop {
            let m = tokio::select! {
                _ = ctx.stopped() => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        return Err(format!("nothing heard from Mattermost for {}s", last_heard.elapsed().as_secs()));
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return Err(format!("the Mattermost WebSocket failed: {e}"));
                    }
                    continue;
                }
                m = ws.next() => m,
            };
            last_heard = Instant::now();
            let text = match m {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => return Err(format!("Mattermost closed the WebSocket: {f:?}")),
                Some(Ok(Message::Binary(b))) => {
                    warn!(adapter = %self.name, "skipping a binary WebSocket message of {} bytes", b.len());
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("the Mattermost WebSocket failed: {e}")),
                None => return Err("the Mattermost WebSocket closed".into()),
            };
            if self.on_ws_text(ctx, text.as_str(), &mut expected).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Handles one WebSocket message; `Err` when the inbox is closed (opsbot stops).
    async fn on_ws_text(&self, ctx: &AdapterContext, text: &str, expected: &mut i64) -> Result<(), ()> {
        let action = self.read_ws(text, expected);
        if let Some(r) = self.lock_shared().resume.as_mut() {
            r.1 = *expected;
        }
        match action {
            WsAction::Nothing => Ok(()),
            WsAction::Gap(want, got, post) => {
                warn!(adapter = %self.name, "WebSocket events {want}..{got} were missed: reading the channels again");
                self.catch_up(ctx).await?;
                match post {
                    Some((post, kind, sender)) => match self.envelope(&post, kind.as_deref(), sender.as_deref()).await {
                        Some(env) => ctx.inbox.send(env).await.map_err(|_| ()),
                        None => Ok(()),
                    },
                    None => Ok(()),
                }
            }
            WsAction::Post(post, kind, sender) => match self.envelope(&post, kind.as_deref(), sender.as_deref()).await {
                Some(env) => ctx.inbox.send(env).await.map_err(|_| ()),
                None => Ok(()),
            },
        }
    }

    /// Reads one WebSocket message: logs and skips anything malformed.
    fn read_ws(&self, text: &str, expected: &mut i64) -> WsAction {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                warn!(adapter = %self.name, "skipping a WebSocket message that is not JSON ({e}): {}", short(text));
                return WsAction::Nothing;
            }
        };
        if v.get("seq_reply").is_some() {
            return WsAction::Nothing;
        }
        let event = s(&v, "event");
        let mut gap = None;
        if let Some(seq) = v.get("seq").and_then(Value::as_i64) {
            if seq > *expected && event != Some("hello") {
                gap = Some((*expected, seq));
            }
            *expected = (*expected).max(seq.saturating_add(1));
        }
        let Some(event) = event else {
            warn!(adapter = %self.name, "skipping a WebSocket message without `event`: {}", short(text));
            return gap.map_or(WsAction::Nothing, |(a, b)| WsAction::Gap(a, b, None));
        };
        if event != "posted" {
            return match gap {
                Some((a, b)) => WsAction::Gap(a, b, None),
                None => WsAction::Nothing,
            };
        }
        let data = v.get("data");
        let post = match data.and_then(|d| d.get("post")) {
            Some(Value::String(p)) => match serde_json::from_str::<Value>(p) {
                Ok(p) if p.is_object() => p,
                _ => {
                    warn!(adapter = %self.name, "skipping a `posted` event whose post is not a JSON object: {}", short(p));
                    return gap.map_or(WsAction::Nothing, |(a, b)| WsAction::Gap(a, b, None));
                }
            },
            _ => {
                warn!(adapter = %self.name, "skipping a `posted` event without a post: {}", short(text));
                return gap.map_or(WsAction::Nothing, |(a, b)| WsAction::Gap(a, b, None));
            }
        };
        if let Some((a, b)) = gap {
            // The missed events are read over REST, then this post (its channel is remembered
            // so that the catch-up reads it; the post itself is handled after, once, in case
            // the catch-up does not reach its channel).
            let kind = data.and_then(|d| s(d, "channel_type")).map(str::to_string);
            if let Some(ch) = s(&post, "channel_id") {
                self.lock_shared().note_channel(ch, kind.as_deref(), 0);
            }
            let sender = data.and_then(|d| s(d, "sender_name")).map(str::to_string);
            return WsAction::Gap(a, b, Some((post, kind, sender)));
        }
        WsAction::Post(
            post,
            data.and_then(|d| s(d, "channel_type")).map(str::to_string),
            data.and_then(|d| s(d, "sender_name")).map(str::to_string),
        )
    }

    /// Reads every remembered channel (and the configured ones) over REST for posts since the
    /// newest one seen there, oldest first; posts already handled are skipped. `Err` when the
    /// inbox is closed (opsbot stops).
    async fn catch_up(&self, ctx: &AdapterContext) -> Result<(), ()> {
        let (mut targets, fallback, floor) = {
            let sh = self.lock_shared();
            let fallback = sh.last_hello_ms.unwrap_or_else(now_ms);
            let floor = if sh.newest_ms > 0 { sh.newest_ms - CATCHUP_SLACK_MS } else { 0 };
            let mut t: Vec<(String, i64)> = sh
                .channels
                .iter()
                .map(|(id, c)| (id.clone(), if c.last_ms > 0 { c.last_ms } else { fallback }))
                .collect();
            t.sort_by_key(|(_, ms)| std::cmp::Reverse(*ms));
            (t, fallback, floor)
        };
        for c in &self.cfg.channels {
            if !targets.iter().any(|(id, _)| id == c) {
                targets.push((c.clone(), fallback));
            }
        }
        if targets.len() > CATCHUP_CHANNELS {
            warn!(adapter = %self.name, "{} channels to read again: reading the {CATCHUP_CHANNELS} most recently active", targets.len());
            targets.truncate(CATCHUP_CHANNELS);
        }
        for (channel, since) in targets {
            let since = since.max(floor);
            let mut url = self.api_url(&["channels", &channel, "posts"]);
            url.query_pairs_mut().append_pair("since", &since.to_string());
            let v = match self.call(Method::GET, url, Payload::None).await {
                Ok(v) => v,
                Err(e) => {
                    warn!(adapter = %self.name, channel = %channel, "cannot read what was said meanwhile: {e}");
                    if matches!(e.status(), Some(403 | 404)) {
                        self.lock_shared().channels.remove(&channel);
                    }
                    continue;
                }
            };
            let mut posts: Vec<Value> = match v.get("posts") {
                Some(Value::Object(m)) => m.values().filter(|p| p.is_object()).cloned().collect(),
                _ => Vec::new(),
            };
            posts.retain(|p| p.get("create_at").and_then(Value::as_i64).unwrap_or(0) >= since);
            posts.sort_by_key(|p| p.get("create_at").and_then(Value::as_i64).unwrap_or(0));
            if posts.len() > CATCHUP_POSTS {
                warn!(adapter = %self.name, channel = %channel, "{} posts meanwhile: taking the last {CATCHUP_POSTS}", posts.len());
                posts.drain(..posts.len() - CATCHUP_POSTS);
            }
            for p in posts {
                if let Some(env) = self.envelope(&p, None, None).await
                    && ctx.inbox.send(env).await.is_err()
                {
                    return Err(());
                }
            }
        }
        Ok(())
    }

    /// The kind of a channel (`O`, `P`, `D`, `G`): remembered, or asked once.
    async fn channel_kind(&self, channel: &str) -> Option<String> {
        if let Some(k) = self.lock_shared().channels.get(channel).and_then(|c| c.kind.clone()) {
            return Some(k);
        }
        match self.call(Method::GET, self.api_url(&["channels", channel]), Payload::None).await {
            Ok(v) => {
                let k = s(&v, "type").map(str::to_string);
                self.lock_shared().note_channel(channel, k.as_deref(), 0);
                k
            }
            Err(e) => {
                debug!(adapter = %self.name, channel = %channel, "cannot read the channel's type: {e}");
                None
            }
        }
    }

    /// The envelope for one post, or `None` (logged) when it is not for the bot.
    async fn envelope(&self, post: &Value, kind: Option<&str>, sender: Option<&str>) -> Option<Envelope> {
        let (Some(id), Some(channel), Some(user)) = (s(post, "id"), s(post, "channel_id"), s(post, "user_id")) else {
            warn!(adapter = %self.name, "skipping a post without id, channel_id or user_id: {}", short(&post.to_string()));
            return None;
        };
        if id.is_empty() || channel.is_empty() || user.is_empty() {
            warn!(adapter = %self.name, "skipping a post with an empty id, channel_id or user_id");
            return None;
        }
        let created = post.get("create_at").and_then(Value::as_i64).unwrap_or(0);
        {
            let mut sh = self.lock_shared();
            sh.note_channel(channel, kind, created);
            // A time far ahead of ours (a broken clock) would make every catch-up skip all.
            if created <= now_ms().saturating_add(10 * 60 * 1000) {
                sh.newest_ms = sh.newest_ms.max(created);
            }
            if !sh.first_time(id) {
                debug!(adapter = %self.name, post = %id, "skipping a post already handled");
                return None;
            }
        }
        let me = self.me();
        if user == me.id {
            return None;
        }
        if s(post, "type").is_some_and(|t| !t.is_empty()) {
            debug!(adapter = %self.name, post = %id, "skipping a system post");
            return None;
        }
        if post.get("delete_at").and_then(Value::as_i64).unwrap_or(0) > 0 {
            return None;
        }
        // Posts by integrations (incoming webhooks, slash command answers) are not typed by the
        // person whose id they carry: never commands.
        if post
            .get("props")
            .and_then(|p| p.get("from_webhook"))
            .is_some_and(|w| w == "true" || w == true)
        {
            debug!(adapter = %self.name, post = %id, "skipping a post made by an integration");
            return None;
        }
        let Some(message) = s(post, "message") else {
            warn!(adapter = %self.name, post = %id, "skipping a post without a message");
            return None;
        };
        if message.len() > MAX_POST_TEXT {
            warn!(adapter = %self.name, post = %id, "skipping a post of {} bytes (more than {MAX_POST_TEXT})", message.len());
            return None;
        }
        let kind = match kind {
            Some(k) if !k.is_empty() => Some(k.to_string()),
            _ => self.channel_kind(channel).await,
        };
        let direct = kind.as_deref() == Some("D");
        if !direct && !self.cfg.channels.is_empty() && !self.cfg.channels.iter().any(|c| c == channel) {
            debug!(adapter = %self.name, channel = %channel, "not one of the configured channels");
            return None;
        }
        let (text, mentioned) = match strip_mention(message, &me.username) {
            Some(rest) => (rest.to_string(), true),
            None => (message.trim().to_string(), false),
        };
        let root = s(post, "root_id").filter(|r| !r.is_empty());
        let thread = match root {
            Some(r) => Some(r.to_string()),
            None if self.cfg.threads && !direct => Some(id.to_string()),
            None => None,
        };
        Some(Envelope {
            user: UserId::new(&self.name, user),
            display_name: sender.map(|n| n.trim_start_matches('@').to_string()).filter(|n| !n.is_empty()),
            place: Place {
                platform: self.name.clone(),
                channel: channel.to_string(),
                thread,
            },
            direct,
            mentioned,
            text,
            button: None,
        })
    }

    /// The `sig` of a button context.
    fn sign(&self, channel: &str, thread: &str, action: &str, command: &str) -> String {
        let msg = json!([channel, thread, action, command]).to_string();
        hmac_sha256_sign(&self.button_key, &[msg.as_bytes()], SIG)
    }

    /// `props.attachments` for the buttons of a reply (empty without a callback URL).
    fn attachments(&self, place: &Place, reply: &Reply) -> Vec<Value> {
        let Some(url) = &self.actions_url else { return Vec::new() };
        let thread = place.thread.as_deref().unwrap_or("");
        let mut out = Vec::new();
        let mut n = 0usize;
        for b in &reply.blocks {
            let Block::Buttons { buttons } = b else { continue };
            let actions: Vec<Value> = buttons
                .iter()
                .map(|btn| {
                    // Action ids must be alphanumeric (Mattermost drops clicks on others).
                    let action = format!("b{n}");
                    n += 1;
                    let style = match btn.tone {
                        Tone::Error => "danger",
                        Tone::Success | Tone::Progress => "primary",
                        Tone::Warning => "default",
                        Tone::Info => "default",
                    };
                    json!({
                        "id": action,
                        "type": "button",
                        "name": markdown::defuse(&btn.label),
                        "style": style,
                        "integration": {
                            "url": url,
                            "context": {
                                "command": btn.command,
                                "action": action,
                                "channel": place.channel,
                                "thread": thread,
                                "sig": self.sign(&place.channel, thread, &action, &btn.command),
                            }
                        }
                    })
                })
                .collect();
            if !actions.is_empty() {
                // The fallback is shown to clients (the contexts are not): labels only, never
                // the commands, which may repeat what a person typed.
                let fallback: Vec<String> = buttons.iter().map(|b| markdown::defuse(&b.label)).collect();
                out.push(json!({"fallback": fallback.join(", "), "actions": actions}));
            }
        }
        out
    }

    /// Uploads the `data:` images of a reply to the channel: their file ids. An image the
    /// server refuses for good is logged and left out; one it cannot take now is an error.
    async fn upload_images(&self, channel: &str, reply: &Reply) -> Result<Vec<String>, SendError> {
        let mut ids = Vec::new();
        for b in &reply.blocks {
            let Block::Image { url, alt } = b else { continue };
            if !url.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:")) {
                continue;
            }
            let (bytes, mime) = match crate::decode_data_url(url) {
                Ok(x) => x,
                Err(e) => {
                    warn!(adapter = %self.name, "cannot read the image `{}`: {e}", short(alt));
                    continue;
                }
            };
            let ext = mime.split('/').nth(1).unwrap_or("bin").split(['+', ';']).next().unwrap_or("bin");
            let stem: String = alt
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(40)
                .collect();
            let file_name = format!("{}.{ext}", if stem.is_empty() { "image" } else { &stem });
            let part = match reqwest::multipart::Part::bytes(bytes).file_name(file_name).mime_str(&mime) {
                Ok(p) => p,
                Err(e) => {
                    warn!(adapter = %self.name, "cannot upload the image `{}`: {e}", short(alt));
                    continue;
                }
            };
            let form = reqwest::multipart::Form::new()
                .text("channel_id", channel.to_string())
                .part("files", part);
            match self.call(Method::POST, self.api_url(&["files"]), Payload::Multipart(form)).await {
                Ok(v) => {
                    let id = v
                        .get("file_infos")
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(|f| s(f, "id"));
                    match id {
                        Some(id) => ids.push(id.to_string()),
                        None => return Err(SendError::Unavailable("the upload answered without file_infos[0].id".into())),
                    }
                }
                Err(e) => match e.to_send_error() {
                    SendError::Rejected(r) => warn!(adapter = %self.name, "Mattermost refused the image: {r}"),
                    other => return Err(other),
                },
            }
        }
        Ok(ids)
    }

    fn pending_id(&self, key: u64, part: usize, me: &str) -> String {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let base = p
            .entry(key)
            .or_insert_with(|| format!("{}{}", now_ms(), self.seq.fetch_add(1, Ordering::Relaxed)))
            .clone();
        format!("{me}:{base}{part}")
    }

    fn settle(&self, key: u64, outcome: &Result<Posted, SendError>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Err(SendError::Unavailable(_) | SendError::RateLimited(_)) => {
                if p.len() > 1024 {
                    p.clear();
                }
            }
            _ => {
                p.remove(&key);
            }
        }
    }

    async fn post_parts(&self, place: &Place, reply: &Reply, key: u64) -> Result<Posted, SendError> {
        let me = self.me();
        if me.id.is_empty() {
            return Err(SendError::Unavailable("not connected to Mattermost yet".into()));
        }
        let text = markdown::render(reply, self.actions_url.is_none());
        let attachments = self.attachments(place, reply);
        let files = self.upload_images(&place.channel, reply).await?;
        let mut parts = markdown::split(&text, markdown::MAX_RUNES);
        if parts.is_empty() {
            if attachments.is_empty() && files.is_empty() {
                debug!(adapter = %self.name, "nothing to show for this reply");
                return Ok(Posted { id: None });
            }
            parts.push(String::new());
        }
        let last = parts.len() - 1;
        let bodies: Vec<Value> = parts
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                let mut props = json!({"disable_group_highlight": true});
                if i == last && !attachments.is_empty() {
                    props["attachments"] = Value::Array(attachments.clone());
                }
                let mut body = json!({
                    "channel_id": place.channel,
                    "message": part,
                    "props": props,
                    "pending_post_id": self.pending_id(key, i, &me.id),
                });
                if let Some(root) = &place.thread {
                    body["root_id"] = Value::String(root.clone());
                }
                if i == last && !files.is_empty() {
                    body["file_ids"] = json!(files);
                }
                body
            })
            .collect();
        let mut first: Option<String> = None;
        for (i, body) in bodies.iter().enumerate() {
            match self.call(Method::POST, self.api_url(&["posts"]), Payload::Json(body.clone())).await {
                Ok(v) => {
                    if first.is_none() {
                        first = s(&v, "id").map(str::to_string);
                    }
                }
                Err(e) if e.status() == Some(403) && i == 0 => {
                    if self.response_url(&place.channel).is_some() {
                        info!(adapter = %self.name, channel = %place.channel, "not allowed to post here: answering through the slash command's response_url");
                        return self.post_response_url(&place.channel, &bodies).await;
                    }
                    warn!(adapter = %self.name, channel = %place.channel, "cannot post (add the bot to the channel): {e}");
                    return Err(e.to_send_error());
                }
                Err(e) => {
                    if e.status() == Some(401) {
                        error!(adapter = %self.name, "Mattermost refused the token: {e}");
                    }
                    return Err(e.to_send_error());
                }
            }
        }
        Ok(Posted { id: first })
    }

    fn response_url(&self, channel: &str) -> Option<String> {
        let mut sh = self.lock_shared();
        sh.response_urls.retain(|_, (_, at, _)| at.elapsed() < RESPONSE_URL_TTL);
        sh.response_urls.get(channel).map(|(u, _, _)| u.clone())
    }

    /// Posts a reply through the `response_url` of the last slash command in `channel` (no
    /// post id comes back, so such a message cannot be edited later). Mattermost takes five
    /// uses of one `response_url` within 30 minutes.
    async fn post_response_url(&self, channel: &str, bodies: &[Value]) -> Result<Posted, SendError> {
        for body in bodies {
            let url = {
                let mut sh = self.lock_shared();
                match sh.response_urls.get_mut(channel) {
                    Some((url, _, uses)) if *uses < RESPONSE_URL_USES => {
                        *uses += 1;
                        url.clone()
                    }
                    _ => {
                        sh.response_urls.remove(channel);
                        return Err(SendError::Rejected(
                            "the bot is not a member of this channel and the slash command's response_url is used up".into(),
                        ));
                    }
                }
            };
            let url = Url::parse(&url).map_err(|e| SendError::Rejected(format!("bad response_url: {e}")))?;
            let mut answer = json!({
                "response_type": "in_channel",
                "text": body.get("message").cloned().unwrap_or(Value::String(String::new())),
                "props": body.get("props").cloned().unwrap_or(json!({})),
            });
            if let Some(ids) = body.get("file_ids") {
                answer["file_ids"] = ids.clone();
            }
            let resp = self
                .http
                .post(url)
                .json(&answer)
                .send()
                .await
                .map_err(|e| SendError::Unavailable(e.without_url().to_string()))?;
            match read_answer(resp).await {
                Ok(_) | Err(ApiError::Body(_)) => {}
                Err(e) => {
                    if !matches!(e.to_send_error(), SendError::RateLimited(_) | SendError::Unavailable(_)) {
                        self.lock_shared().response_urls.remove(channel);
                    }
                    return Err(e.to_send_error());
                }
            }
        }
        Ok(Posted { id: None })
    }

    fn context(&self) -> Option<AdapterContext> {
        self.ctx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn deliver(&self, ctx: &AdapterContext, env: Envelope) -> Result<(), WebhookResponse> {
        match tokio::time::timeout(Duration::from_secs(2), ctx.inbox.send(env)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(WebhookResponse::text(503, "opsbot is busy or stopping; try again")),
        }
    }

    /// A button click: `POST /hooks/NAME/actions` with Mattermost's JSON.
    async fn on_action(&self, ctx: &AdapterContext, body: &[u8]) -> WebhookResponse {
        let v: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                warn!(adapter = %self.name, "a button request that is not JSON: {e}");
                return WebhookResponse::text(400, "the request body is not JSON");
            }
        };
        let (Some(user), Some(channel)) = (
            s(&v, "user_id").filter(|u| !u.is_empty()),
            s(&v, "channel_id").filter(|c| !c.is_empty()),
        ) else {
            warn!(adapter = %self.name, "a button request without user_id or channel_id");
            return WebhookResponse::text(400, "user_id and channel_id are required");
        };
        let c = v.get("context").cloned().unwrap_or(Value::Null);
        let (Some(command), Some(action), Some(ctx_channel), thread, sig) = (
            s(&c, "command"),
            s(&c, "action"),
            s(&c, "channel"),
            s(&c, "thread").unwrap_or(""),
            s(&c, "sig"),
        ) else {
            warn!(adapter = %self.name, user = %user, "a button request without a complete context: refused");
            return WebhookResponse::text(403, "this button's context is not one opsbot made");
        };
        let msg = json!([ctx_channel, thread, action, command]).to_string();
        if verify_hmac_sha256(&self.button_key, &[msg.as_bytes()], sig, SIG).is_err() || ctx_channel != channel {
            warn!(adapter = %self.name, user = %user, channel = %channel, "a button request with a forged or altered context: refused");
            return WebhookResponse::text(403, "this button's context is not one opsbot made");
        }
        let direct = self.lock_shared().channels.get(channel).and_then(|c| c.kind.clone()).as_deref() == Some("D");
        let env = Envelope {
            user: UserId::new(&self.name, user),
            display_name: s(&v, "user_name").map(str::to_string),
            place: Place {
                platform: self.name.clone(),
                channel: channel.to_string(),
                thread: Some(thread.to_string()).filter(|t| !t.is_empty()),
            },
            direct,
            mentioned: true,
            text: command.to_string(),
            button: Some(action.to_string()),
        };
        info!(adapter = %self.name, user = %user, channel = %channel, "button {action} pressed");
        match self.deliver(ctx, env).await {
            Ok(()) => WebhookResponse::json(&json!({})),
            Err(r) => r,
        }
    }

    /// A slash command: `POST /hooks/NAME/command`, form-encoded.
    async fn on_command(&self, ctx: &AdapterContext, body: &[u8], headers_token: Option<&str>) -> WebhookResponse {
        let Some(tokens) = self.cfg.command_token.as_deref().filter(|t| !t.trim().is_empty()) else {
            warn!(adapter = %self.name, "a slash command came, but command_token is not set: refused");
            return WebhookResponse::text(401, "slash commands are not enabled: set command_token in opsbot's configuration");
        };
        let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(body) {
            Ok(f) => f,
            Err(e) => {
                warn!(adapter = %self.name, "a slash command request that is not a form: {e}");
                return WebhookResponse::text(400, "the request body is not a form");
            }
        };
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let header = headers_token;
        let given = get("token").filter(|t| !t.is_empty()).or(header).unwrap_or("");
        let ok = !given.is_empty()
            && tokens
                .split([',', ' ', '\n'])
                .filter(|t| !t.is_empty())
                .fold(false, |acc, t| same_secret(&self.button_key, given, t) | acc);
        if !ok {
            warn!(adapter = %self.name, "a slash command with a missing or wrong token: refused");
            return WebhookResponse::text(401, "the slash command's token does not match command_token");
        }
        let (Some(user), Some(channel)) = (
            get("user_id").filter(|u| !u.is_empty()),
            get("channel_id").filter(|c| !c.is_empty()),
        ) else {
            return WebhookResponse::text(400, "user_id and channel_id are required");
        };
        let text = get("text").unwrap_or("").trim();
        if text.len() > MAX_POST_TEXT {
            return WebhookResponse::text(413, "the command is too long");
        }
        let text = if text.is_empty() { "help" } else { text };
        // Direct only with the bot: a direct channel's name is the two user ids, sorted, joined
        // by `__`; a command typed in a direct channel between two people (where the bot's
        // answers reach both through the response_url) is not private.
        let me = self.me();
        let with_bot = |n: &str| {
            let ids: Vec<&str> = n.split("__").collect();
            !me.id.is_empty() && ids.len() == 2 && ids.contains(&user) && ids.contains(&me.id.as_str()) && user != me.id
        };
        let known = self.lock_shared().channels.get(channel).and_then(|c| c.kind.clone());
        let direct = match (get("channel_name"), known.as_deref()) {
            (Some(n), Some(k)) => k == "D" && with_bot(n),
            (Some(n), None) => with_bot(n),
            (None, Some(k)) => k == "D",
            (None, None) => false,
        };
        if !direct && !self.cfg.channels.is_empty() && !self.cfg.channels.iter().any(|c| c == channel) {
            info!(adapter = %self.name, user = %user, channel = %channel, "a slash command in a channel not in `channels`: refused");
            return WebhookResponse::json(&json!({
                "response_type": "ephemeral",
                "text": "opsbot does not answer in this channel; use it in one of its channels or in a direct message.",
            }));
        }
        if let Some(url) = get("response_url").filter(|u| self.same_origin(u)) {
            let mut sh = self.lock_shared();
            if sh.response_urls.len() > 1000 {
                sh.response_urls.retain(|_, (_, at, _)| at.elapsed() < RESPONSE_URL_TTL);
            }
            sh.response_urls.insert(channel.to_string(), (url.to_string(), Instant::now(), 0));
        }
        let env = Envelope {
            user: UserId::new(&self.name, user),
            display_name: get("user_name").map(str::to_string),
            place: Place {
                platform: self.name.clone(),
                channel: channel.to_string(),
                thread: get("root_id").filter(|r| !r.is_empty()).map(str::to_string),
            },
            direct,
            mentioned: true,
            text: text.to_string(),
            button: None,
        };
        info!(adapter = %self.name, user = %user, channel = %channel, "slash command");
        if let Err(r) = self.deliver(ctx, env).await {
            return r;
        }
        let shown: String = text.replace('`', "'").chars().take(200).collect();
        WebhookResponse::json(&json!({"response_type": "ephemeral", "text": format!("Working on `{shown}`…")}))
    }

    /// Whether `url` is on the configured Mattermost server (scheme, host and port).
    fn same_origin(&self, url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| u.origin() == self.base.origin())
    }
}

/// Reads an answer: JSON (size-capped) on 2xx, else the status with Mattermost's error body
/// (`{"id", "message", "status_code"}`) and the rate limit's reset time.
async fn read_answer(resp: reqwest::Response) -> Result<Value, ApiError> {
    let status = resp.status().as_u16();
    let header_secs = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| Duration::from_secs_f64(v.min(3600.0)))
    };
    // Mattermost's rate limiter sends `X-Ratelimit-Reset` (seconds until the bucket refills)
    // and `Retry-After`; see https://docs.mattermost.com/configure/rate-limiting-configuration-settings.html
    let retry_after = header_secs("retry-after")
        .or_else(|| header_secs("x-ratelimit-reset"))
        .map(|d| d.max(Duration::from_millis(100)));
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
        id: s(&p, "id").unwrap_or("").chars().take(100).collect(),
        message: s(&p, "message").unwrap_or("").chars().take(300).collect(),
        retry_after,
    })
}

/// Clears the current context and the online flag when a run ends, however it ends.
struct RunGuard<'a>(&'a MattermostAdapter);
impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.0.online.store(false, Ordering::SeqCst);
        *self.0.ctx.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[async_trait::async_trait]
impl Adapter for MattermostAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edit: true,
            threads: true,
            rich_text: true,
            buttons: self.actions_url.is_some(),
            files: true,
            reactions: false,
            direct: true,
            forms: false,
        }
    }

    async fn run(&self, ctx: &AdapterContext) -> Result<(), String> {
        *self.ctx.lock().unwrap_or_else(|p| p.into_inner()) = Some(ctx.clone());
        let _guard = RunGuard(self);
        self.run_inner(ctx).await
    }

    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        let body = serde_json::to_string(reply).unwrap_or_default();
        let key = key_of(&["post", &place.key(), &body]);
        let r = self.post_parts(place, reply, key).await;
        self.settle(key, &r);
        r
    }

    async fn edit(&self, place: &Place, id: &str, reply: &Reply) -> Result<(), SendError> {
        let text = markdown::render(reply, self.actions_url.is_none());
        let message = match markdown::split(&text, markdown::MAX_RUNES - 20).into_iter().next() {
            Some(first) if first.len() < text.len() => format!("{first}\n… (cut)"),
            Some(first) => first,
            None => String::new(),
        };
        let attachments = self.attachments(place, reply);
        let body = json!({
            "message": message,
            "props": {"disable_group_highlight": true, "attachments": attachments},
        });
        self.call(Method::PUT, self.api_url(&["posts", id, "patch"]), Payload::Json(body))
            .await
            .map(|_| ())
            .map_err(|e| {
                if e.status() == Some(401) {
                    error!(adapter = %self.name, "Mattermost refused the token: {e}");
                }
                e.to_send_error()
            })
    }

    async fn webhook(&self, req: WebhookRequest) -> WebhookResponse {
        if req.method != "POST" {
            return WebhookResponse::text(405, "only POST is accepted here");
        }
        let Some(ctx) = self.context() else {
            return WebhookResponse::text(503, "opsbot is not connected to Mattermost right now; try again shortly");
        };
        match req.path.as_str() {
            "/actions" => self.on_action(&ctx, &req.body).await,
            "/command" => {
                // Mattermost sends the token in the form and as `Authorization: Token …`.
                let header = req.header("authorization").and_then(|a| a.strip_prefix("Token ")).map(str::trim);
                self.on_command(&ctx, &req.body, header).await
            }
            other => WebhookResponse::text(404, format!("no such endpoint `{}` (use /command or /actions)", short(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(callback: Option<&str>, command_token: Option<&str>) -> MattermostAdapter {
        let cfg = MattermostConfig {
            url: "http://127.0.0.1:9".into(),
            token: "secret-token".into(),
            command_token: command_token.map(str::to_string),
            callback_url: callback.map(str::to_string),
            channels: vec![],
            threads: false,
            tls_ca: None,
        };
        MattermostAdapter::new("mm", cfg).expect("adapter")
    }

    #[test]
    fn mentions() {
        assert_eq!(strip_mention("@opsbot whoami", "opsbot"), Some("whoami"));
        assert_eq!(strip_mention("@OpsBot: deploy web", "opsbot"), Some("deploy web"));
        assert_eq!(strip_mention("@opsbot", "opsbot"), Some(""));
        assert_eq!(strip_mention("@opsbotx whoami", "opsbot"), None);
        assert_eq!(strip_mention("opsbot whoami", "opsbot"), None);
        assert_eq!(strip_mention("@é", "opsbot"), None);
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret(b"k", "abc", "abc"));
        assert!(!same_secret(b"k", "abd", "abc"));
        assert!(!same_secret(b"k", "", "abc"));
    }

    #[test]
    fn buttons_carry_a_signed_context_only_with_a_callback() {
        let place = Place::new("mm", "chan1");
        let reply = Reply::new(Tone::Info).buttons(vec![opsbot_core::Button {
            label: "Cancel".into(),
            command: "cancel 3".into(),
            tone: Tone::Error,
        }]);
        assert!(adapter(None, None).attachments(&place, &reply).is_empty());
        let a = adapter(Some("https://ops.example.com/"), None);
        let att = a.attachments(&place, &reply);
        let action = &att[0]["actions"][0];
        assert_eq!(action["integration"]["url"], "https://ops.example.com/hooks/mm/actions");
        assert_eq!(action["id"], "b0");
        assert_eq!(action["style"], "danger");
        let c = &action["integration"]["context"];
        assert_eq!(c["command"], "cancel 3");
        assert_eq!(c["sig"].as_str().map(str::len), Some(64));
        assert_ne!(c["sig"], json!(a.sign("chan1", "", "b0", "cancel 4")));
        assert!(!c.to_string().contains("secret-token"));
    }

    #[test]
    fn ws_messages_are_read_defensively() {
        let a = adapter(None, None);
        let mut exp = 1;
        assert!(matches!(a.read_ws("not json", &mut exp), WsAction::Nothing));
        assert!(matches!(a.read_ws(r#"{"seq":1}"#, &mut exp), WsAction::Nothing));
        assert!(matches!(
            a.read_ws(r#"{"event":"posted","seq":2,"data":{"post":"{oops"}}"#, &mut exp),
            WsAction::Nothing
        ));
        assert!(matches!(
            a.read_ws(r#"{"event":"posted","seq":3,"data":{"post":7}}"#, &mut exp),
            WsAction::Nothing
        ));
        assert!(matches!(
            a.read_ws(r#"{"event":"typing","seq":5}"#, &mut exp),
            WsAction::Gap(4, 5, None)
        ));
        assert_eq!(exp, 6);
        let post = json!({"id": "p", "channel_id": "c", "user_id": "u", "message": "hi"}).to_string();
        let ev = json!({"event": "posted", "seq": 6, "data": {"post": post, "channel_type": "D"}}).to_string();
        assert!(matches!(a.read_ws(&ev, &mut exp), WsAction::Post(_, Some(k), _) if k == "D"));
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            crate::decode_data_url("data:image/png;base64,aGk=").ok(),
            Some((b"hi".to_vec(), "image/png".into()))
        );
        assert!(crate::decode_data_url("data:image/png;base64,@@").is_err());
        assert!(crate::decode_data_url("http://x").is_err());
    }
}
