//! Slack: the Web API by hand over reqwest, Socket Mode over tokio-tungstenite, and the HTTP
//! Events API through opsbot's web server (`/hooks/NAME/…`).
//!
//! - **Socket Mode** (default): `apps.connections.open` with the app token gives a `wss://`
//!   URL (<https://docs.slack.dev/apis/events-api/using-socket-mode>). Each connection is read
//!   by a task of its own that acknowledges every envelope (`{"envelope_id": …}`) the moment it
//!   is parsed, before anything else happens to it, so a full inbox never delays an ack. A
//!   `disconnect` (`refresh_requested`, `warning`) opens a new connection first; the old one is
//!   closed shortly after the new one said `hello` (Slack allows up to 10 at once), so nothing
//!   in flight is lost. When the last connection closes, `run` returns `Err` and the runtime
//!   reconnects. The adapter pings every 30 s and gives a silent connection up after 100 s.
//! - **Events API** (`mode = "events"`): [`Adapter::webhook`] takes `/events`, `/commands` and
//!   `/interactive`; every request's `v0` signature is checked over the raw bytes, within five
//!   minutes, before anything is parsed
//!   (<https://docs.slack.dev/authentication/verifying-requests-from-slack>).
//! - **Redeliveries**: envelopes and events are remembered by id (the last 10,000, across
//!   reconnects), and a message that arrives both as `message` and `app_mention` is one
//!   envelope (remembered by channel and `ts`).
//! - **Messages**: `app_mention` anywhere, `message` in direct conversations and (when the app
//!   subscribes to `message.channels`) in channels, where the engine then only answers its
//!   prefix (`!`). A leading `<@BOT>` is removed and sets `mentioned`. Messages of bots
//!   (`bot_id`, also opsbot's own) and subtypes other than `thread_broadcast` / `file_share` are
//!   skipped. Slack's markup is read back as typed ([`render::decode`]).
//! - **Slash commands**: acknowledged at once with an ephemeral "Working on …"; the replies go
//!   to the channel with `chat.postMessage`, and through the command's `response_url` (30 min,
//!   5 uses) where the bot cannot post (`not_in_channel`, `channel_not_found`).
//! - **Buttons** carry the command as `value`; a press is the clicker's own typed command.
//!   A form's "Fill in…" button opens a modal (`views.open`); its submission becomes
//!   [`opsbot_core::Form::command_line`], wrong values are answered with `response_action:
//!   errors`.
//! - **Job cards**: posted once, then `chat.update`d; the card's `Code` block (the log tail) is
//!   left out of the card and what is new in it goes to the card's thread, once per update.
//! - **Errors**: HTTP 429 → [`SendError::RateLimited`] with `Retry-After`, and that Web API
//!   method is not called again before then; `invalid_blocks` is retried once as plain text;
//!   `invalid_auth`/`token_revoked`/`account_inactive` are logged as errors and kept
//!   ([`SendError::Unavailable`]).

mod form;
mod render;

pub use render::{decode as decode_markup, escape as escape_mrkdwn};

use futures_util::{SinkExt, StreamExt};
use opsbot_core::config::{SlackConfig, SlackMode};
use opsbot_core::{
    Adapter, AdapterContext, Block, Capabilities, Envelope, Form, Place, Posted, Reply, SendError, UserId, WebhookRequest, WebhookResponse,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tracing::{debug, error, info, warn};

/// Largest Web API response read.
const MAX_RESPONSE: usize = 8 * 1024 * 1024;
/// Largest `data:` image uploaded.
pub const MAX_IMAGE: usize = crate::MAX_IMAGE;
/// Longest message text handed to the engine (the engine itself answers "too long" beyond
/// 16 KiB); longer ones are logged and skipped.
pub const MAX_INCOMING_TEXT: usize = 64 * 1024;
/// Keys remembered against redeliveries: an event uses up to three (envelope, event,
/// message), so this keeps the last 10,000 events of each kind.
const SEEN_CAPACITY: usize = 30_000;
/// Direct conversations remembered (cleared when full: they are asked for again).
const IMS_CAPACITY: usize = 100_000;
/// Forms remembered for buttons whose form is too long to travel in the button.
const FORMS_CAPACITY: usize = 1_000;
/// Web API request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a slash command's `response_url` can be used, and how often.
const RESPONSE_URL_LIFE: Duration = Duration::from_secs(30 * 60);
const RESPONSE_URL_USES: u8 = 5;
/// Longest `Retry-After` taken as it is (seconds).
const MAX_RETRY_AFTER: u64 = 3600;
/// How long the old connection stays open after the new one said hello.
const REFRESH_GRACE: Duration = Duration::from_secs(2);

/// The Slack adapter.
pub struct SlackAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    cfg: SlackConfig,
    http: reqwest::Client,
    api: String,
    me: Mutex<Option<Me>>,
    current: Mutex<Option<Current>>,
    seen: Mutex<Seen>,
    /// Signatures of slash commands and interactions handled over HTTP, against replays
    /// within the five minutes a signature is good for.
    replays: Mutex<Replays>,
    /// Web API method → not before.
    limited: Mutex<HashMap<String, Instant>>,
    /// Channel → the last slash command's response URL there.
    response_urls: Mutex<HashMap<String, ResponseUrl>>,
    /// Forms too long for their button: key → the channel it was posted in, the form. A key
    /// is honoured only in that channel, so a press naming another key cannot open a form (and
    /// its known values) asked for somewhere else, e.g. in someone's direct conversation.
    forms: Mutex<(u64, VecDeque<StoredForm>)>,
    /// The bot's direct conversations (`D…`) → the one person in each, learned from `im`
    /// messages and `conversations.info`. Only a press or a command of that person there is
    /// direct: a `D…` conversation between two other people (where answers arrive through a
    /// slash command's `response_url`) is not private.
    ims: Mutex<HashMap<String, String>>,
    /// Card ts → the log tail already posted in its thread.
    tails: Mutex<HashMap<String, String>>,
    /// Hash of a reply being posted → how many of its messages went through, first ts.
    partial: Mutex<HashMap<u64, (usize, Option<String>)>>,
    next_conn: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Debug)]
struct Me {
    user_id: String,
    /// The bot token's workspace (`None` for an org-wide Enterprise Grid install, whose events
    /// come from several workspaces).
    team_id: Option<String>,
}

#[derive(Clone)]
struct Current {
    tx: mpsc::UnboundedSender<Incoming>,
}

struct ResponseUrl {
    url: String,
    at: Instant,
    uses: u8,
}

/// Remembers the last N keys.
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// True when `key` is new (and remembers it).
    fn first(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

/// A form kept for its button: key, channel it was posted in, form.
type StoredForm = (String, String, Form);

/// Signatures of requests already handled, with their timestamps: a signed request sent again
/// (same bytes, same timestamp: the same signature) within the window Slack signatures are
/// good for is not handled again. Slack itself never sends a slash command or an interaction
/// twice, so only a replay of a captured request would.
#[derive(Default)]
struct Replays {
    set: HashSet<String>,
    order: VecDeque<(i64, String)>,
}

/// Most signatures remembered (far more than Slack sends in the window).
const REPLAYS_CAPACITY: usize = 100_000;

impl Replays {
    /// True when `sig` is new (and remembers it); forgets what is too old to be accepted again.
    fn first(&mut self, sig: &str, ts: i64, now: i64) -> bool {
        let cutoff = now - opsbot_core::verify::SLACK_MAX_SKEW.as_secs() as i64 - 60;
        while self
            .order
            .front()
            .is_some_and(|(t, _)| *t < cutoff || self.order.len() >= REPLAYS_CAPACITY)
        {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        if !self.set.insert(sig.to_string()) {
            return false;
        }
        self.order.push_back((ts, sig.to_string()));
        true
    }

    fn forget(&mut self, sig: &str) {
        if self.set.remove(sig) {
            self.order.retain(|(_, s)| s != sig);
        }
    }
}

/// What reaches `run`'s loop.
enum Incoming {
    Hello(u64),
    Disconnect(u64, String),
    Closed(u64, String),
    /// A Socket Mode envelope's `type` and `payload`, already acknowledged.
    Payload {
        kind: String,
        envelope_id: String,
        payload: Value,
    },
    /// An envelope made by `webhook`.
    Envelope(Box<Envelope>),
}

/// How a Web API call failed.
#[derive(Debug)]
enum ApiError {
    Network(String),
    Http(u16),
    RateLimited(Duration),
    Slack(String),
    Body(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "{e}"),
            ApiError::Http(s) => write!(f, "HTTP {s}"),
            ApiError::RateLimited(d) => write!(f, "rate limited for {d:?}"),
            ApiError::Slack(e) => write!(f, "{e}"),
            ApiError::Body(e) => write!(f, "bad response: {e}"),
        }
    }
}

/// Errors that mean the token no longer works: nothing will go through until someone acts.
const AUTH_ERRORS: &[&str] = &[
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
    "no_permission",
    "missing_scope",
    "ekm_access_denied",
];
/// Errors of Slack's side that pass.
const TRANSIENT_ERRORS: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
];

impl ApiError {
    fn to_send_error(&self, name: &str, method: &str) -> SendError {
        match self {
            ApiError::RateLimited(d) => SendError::RateLimited(*d),
            ApiError::Network(_) | ApiError::Body(_) => SendError::Unavailable(format!("{method}: {self}")),
            ApiError::Http(s) if *s >= 500 || *s == 408 => SendError::Unavailable(format!("{method}: {self}")),
            ApiError::Http(_) => SendError::Rejected(format!("{method}: {self}")),
            ApiError::Slack(e) if AUTH_ERRORS.contains(&e.as_str()) => {
                error!(adapter = %name, "Slack refused the bot token for {method}: {e} (check the token and the app's scopes)");
                SendError::Unavailable(format!("{method}: {e}"))
            }
            ApiError::Slack(e) if TRANSIENT_ERRORS.contains(&e.as_str()) => SendError::Unavailable(format!("{method}: {e}")),
            ApiError::Slack(e) => SendError::Rejected(format!("{method}: {e}")),
        }
    }
    fn is(&self, code: &str) -> bool {
        matches!(self, ApiError::Slack(e) if e == code)
    }
}

enum Body {
    Empty,
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn short(text: &str) -> String {
    text.chars().take(120).collect()
}

impl SlackAdapter {
    /// An adapter named `name` (its `[adapters.NAME]`).
    pub fn new(name: &str, cfg: SlackConfig) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if cfg.bot_token.trim().is_empty() {
            return Err("slack: bot_token is empty".into());
        }
        match cfg.mode {
            SlackMode::Socket if cfg.app_token.as_deref().is_none_or(|t| t.trim().is_empty()) => {
                return Err("slack: Socket Mode needs app_token (an xapp-… token with connections:write)".into());
            }
            SlackMode::Events if cfg.signing_secret.as_deref().is_none_or(|t| t.trim().is_empty()) => {
                return Err("slack: mode = \"events\" needs signing_secret".into());
            }
            _ => {}
        }
        let api = cfg.api_url.trim_end_matches('/').to_string();
        let lower = api.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(format!("slack: api_url `{api}` is not an http(s) URL"));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(REQUEST_TIMEOUT)
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
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_string(),
                cfg,
                http,
                api,
                me: Mutex::new(None),
                current: Mutex::new(None),
                seen: Mutex::new(Seen {
                    set: HashSet::new(),
                    order: VecDeque::new(),
                }),
                replays: Mutex::new(Replays::default()),
                limited: Mutex::new(HashMap::new()),
                response_urls: Mutex::new(HashMap::new()),
                forms: Mutex::new((0, VecDeque::new())),
                ims: Mutex::new(HashMap::new()),
                tails: Mutex::new(HashMap::new()),
                partial: Mutex::new(HashMap::new()),
                next_conn: std::sync::atomic::AtomicU64::new(1),
            }),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn me(&self) -> Option<Me> {
        lock(&self.me).clone()
    }

    fn first_time(&self, key: String) -> bool {
        lock(&self.seen).first(key)
    }

    fn remember_im(&self, channel: &str, user: &str) {
        let mut g = lock(&self.ims);
        if g.len() >= IMS_CAPACITY && !g.contains_key(channel) {
            g.clear();
        }
        g.insert(channel.to_string(), user.to_string());
    }

    /// Whether `channel` is the bot's direct conversation with `user` (as far as known).
    fn is_im_of(&self, channel: &str, user: &str) -> bool {
        lock(&self.ims).get(channel).is_some_and(|u| u == user)
    }

    /// For a command, button press or form submission in a `D…` conversation not known as
    /// the person's direct conversation with the bot (e.g. after a restart): asks Slack
    /// (`conversations.info`) whether it is the bot's IM with that person. Anything else —
    /// a DM between two other people, an error — stays not direct.
    async fn settle_direct(&self, e: &mut Envelope) {
        if e.direct || !e.place.channel.starts_with('D') || lock(&self.ims).contains_key(&e.place.channel) {
            return;
        }
        let m = "conversations.info";
        let call = self.bot(m, Body::Form(vec![("channel", e.place.channel.clone())]));
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(v)) => {
                let ch = v.get("channel").cloned().unwrap_or(Value::Null);
                if ch.get("is_im").and_then(Value::as_bool) == Some(true)
                    && let Some(u) = s(&ch, "user")
                {
                    self.remember_im(&e.place.channel, u);
                    e.direct = u == e.user.id;
                }
            }
            Ok(Err(err)) => debug!(adapter = %self.name, "{m} for {}: {err} (taken as not direct)", e.place.channel),
            Err(_) => debug!(adapter = %self.name, "{m} for {} timed out (taken as not direct)", e.place.channel),
        }
    }

    /// One Web API call (<https://docs.slack.dev/apis/web-api/>): POST with the token as a
    /// bearer; `{"ok": true, …}` back, or why not.
    async fn call(&self, method: &str, token: &str, body: Body) -> Result<Value, ApiError> {
        if let Some(until) = lock(&self.limited).get(method).copied() {
            let now = Instant::now();
            if until > now {
                return Err(ApiError::RateLimited(until - now));
            }
        }
        let mut req = self.http.post(format!("{}/{method}", self.api)).bearer_auth(token);
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(&v),
            Body::Form(f) => req
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(&f).unwrap_or_default()),
        };
        let resp = req.send().await.map_err(|e| ApiError::Network(e.without_url().to_string()))?;
        self.read_api(method, resp).await
    }

    async fn read_api(&self, method: &str, resp: reqwest::Response) -> Result<Value, ApiError> {
        let status = resp.status().as_u16();
        if status == 429 {
            let wait = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                // Bounded: `Instant + Duration` panics past the clock's range.
                .map(|s| Duration::from_secs(s.min(MAX_RETRY_AFTER)))
                .unwrap_or(Duration::from_secs(1));
            lock(&self.limited).insert(method.to_string(), Instant::now() + wait);
            warn!(adapter = %self.name, "Slack rate-limits {method}: not calling it again for {wait:?}");
            return Err(ApiError::RateLimited(wait));
        }
        if !(200..300).contains(&status) {
            return Err(ApiError::Http(status));
        }
        let buf = crate::read_capped(resp, MAX_RESPONSE).await.map_err(|e| match e {
            crate::BodyError::TooLarge(n) => ApiError::Body(format!("response larger than {n} bytes")),
            crate::BodyError::Network(e) => ApiError::Network(e),
        })?;
        let v: Value = serde_json::from_slice(&buf).map_err(|_| ApiError::Body(short(&String::from_utf8_lossy(&buf))))?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            if let Some(w) = s(&v, "warning") {
                debug!(adapter = %self.name, "{method} warns: {w}");
            }
            Ok(v)
        } else {
            Err(ApiError::Slack(s(&v, "error").unwrap_or("unknown_error").to_string()))
        }
    }

    async fn bot(&self, method: &str, body: Body) -> Result<Value, ApiError> {
        self.call(method, &self.cfg.bot_token, body).await
    }

    /// `auth.test`: who the bot is.
    async fn auth(&self) -> Result<Me, String> {
        let v = self.bot("auth.test", Body::Empty).await.map_err(|e| {
            if let ApiError::Slack(code) = &e
                && AUTH_ERRORS.contains(&code.as_str())
            {
                error!(adapter = %self.name, "Slack refused the bot token: {code}");
            }
            format!("Slack auth.test failed: {e}")
        })?;
        let user_id = s(&v, "user_id").ok_or("Slack auth.test gave no user_id")?.to_string();
        let org_wide = v.get("is_enterprise_install").and_then(Value::as_bool) == Some(true);
        let team_id = s(&v, "team_id").filter(|_| !org_wide).map(str::to_string);
        let me = Me { user_id, team_id };
        info!(adapter = %self.name, user = %me.user_id, team = s(&v, "team").unwrap_or(""), "signed in to Slack");
        *lock(&self.me) = Some(me.clone());
        Ok(me)
    }

    // ---------------------------------------------------------------- incoming

    fn remember_form(&self, form: &Form, channel: &str) -> String {
        let json = serde_json::to_string(form).unwrap_or_default();
        if json.chars().count() <= render::MAX_VALUE {
            return json;
        }
        let mut g = lock(&self.forms);
        g.0 += 1;
        let key = format!("ref:{}", g.0);
        if g.1.len() >= FORMS_CAPACITY {
            g.1.pop_front();
        }
        g.1.push_back((key.clone(), channel.to_string(), form.clone()));
        key
    }

    fn form_of(&self, value: &str, channel: &str) -> Option<Form> {
        if value.starts_with("ref:") {
            return lock(&self.forms)
                .1
                .iter()
                .find(|(k, c, _)| k == value && c == channel)
                .map(|(_, _, f)| f.clone());
        }
        serde_json::from_str(value).ok()
    }

    /// The modal's `private_metadata`: where the form was, and the form (or a reference).
    fn metadata(&self, channel: &str, thread: Option<&str>, form: &Form) -> String {
        let full = json!({"c": channel, "t": thread, "f": form}).to_string();
        if full.chars().count() <= 3000 {
            return full;
        }
        let key = self.remember_form(form, channel);
        json!({"c": channel, "t": thread, "k": key}).to_string()
    }

    fn read_metadata(&self, meta: &str) -> Option<(String, Option<String>, Form)> {
        let v: Value = serde_json::from_str(meta).ok()?;
        let channel = s(&v, "c")?.to_string();
        let thread = s(&v, "t").map(str::to_string);
        let form = match v.get("f") {
            Some(f) => serde_json::from_value(f.clone()).ok()?,
            None => self.form_of(s(&v, "k")?, &channel)?,
        };
        Some((channel, thread, form))
    }

    /// The envelope of a `message` or `app_mention` event, or why it is skipped (`Ok(None)`:
    /// skipped quietly, e.g. the bot's own message or a duplicate).
    fn message_envelope(&self, ev: &Value) -> Result<Option<Envelope>, String> {
        let Some(me) = self.me() else {
            return Err("an event before auth.test finished".into());
        };
        let kind = s(ev, "type").unwrap_or("");
        let subtype = s(ev, "subtype");
        if let Some(st) = subtype
            && st != "thread_broadcast"
            && st != "file_share"
        {
            return Ok(None);
        }
        if ev.get("bot_id").is_some_and(|b| !b.is_null())
            || ev.get("bot_profile").is_some_and(|b| !b.is_null())
            || s(ev, "user") == Some(me.user_id.as_str())
        {
            return Ok(None);
        }
        let channel = s(ev, "channel").ok_or("a message without channel")?;
        let user = s(ev, "user").ok_or("a message without user")?;
        let ts = s(ev, "ts").ok_or("a message without ts")?;
        let text = match ev.get("text") {
            None | Some(Value::Null) => "",
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err("a message whose text is not a string".into()),
        };
        if text.len() > MAX_INCOMING_TEXT {
            return Err(format!(
                "a message of {} bytes from {user} in {channel} (more than {MAX_INCOMING_TEXT})",
                text.len()
            ));
        }
        let direct = match s(ev, "channel_type") {
            Some(t) => t == "im",
            None => channel.starts_with('D'),
        };
        if !direct && !self.cfg.channels.is_empty() && !self.cfg.channels.iter().any(|c| c == channel) {
            debug!(adapter = %self.name, "ignoring a message in {channel}, which is not in `channels`");
            return Ok(None);
        }
        if !self.first_time(format!("msg:{channel}:{ts}")) {
            return Ok(None);
        }
        if direct {
            self.remember_im(channel, user);
        }
        // `<@BOT>` or `<@BOT|name>`, not a longer id that starts with the bot's.
        let (mention, labelled) = (format!("<@{}>", me.user_id), format!("<@{}|", me.user_id));
        let (raw, mentioned) = match render::strip_leading_mention(text, &me.user_id) {
            Some(rest) => (rest, true),
            None => (text, kind == "app_mention" || text.contains(&mention) || text.contains(&labelled)),
        };
        let text = render::decode(raw).trim().to_string();
        if text.is_empty() && !mentioned {
            debug!(adapter = %self.name, "ignoring a message without text (a file alone) from {user} in {channel}");
            return Ok(None);
        }
        let thread = s(ev, "thread_ts")
            .map(str::to_string)
            .or_else(|| (self.cfg.threads && !direct).then(|| ts.to_string()));
        let display_name = ev
            .get("user_profile")
            .and_then(|p| s(p, "display_name").filter(|n| !n.is_empty()).or_else(|| s(p, "real_name")))
            .map(str::to_string);
        Ok(Some(Envelope {
            user: UserId::new(&self.name, user),
            display_name,
            place: Place {
                platform: self.name.clone(),
                channel: channel.to_string(),
                thread,
            },
            direct,
            mentioned,
            text,
            button: None,
        }))
    }

    /// Whether a payload comes from another workspace than the bot token's (an app installed in
    /// a second workspace shares the signing secret and the app token): its `team_id`
    /// (events, slash commands) or `team.id` (interactions). Payloads that name none pass.
    fn foreign(&self, p: &Value) -> bool {
        let Some(ours) = lock(&self.me).as_ref().and_then(|m| m.team_id.clone()) else {
            return false;
        };
        let theirs = s(p, "team_id").or_else(|| p.get("team").and_then(|t| s(t, "id")));
        match theirs {
            Some(t) if t != ours => {
                warn!(adapter = %self.name, "skipping a payload from workspace {t}, not the bot's {ours}");
                true
            }
            _ => false,
        }
    }

    /// An Events API `event_callback` (same in Socket Mode's `events_api` payload).
    fn on_event_callback(&self, p: &Value) -> Vec<Envelope> {
        if self.foreign(p) {
            return vec![];
        }
        if let Some(id) = s(p, "event_id")
            && !self.first_time(format!("ev:{id}"))
        {
            debug!(adapter = %self.name, "event {id} again: already handled");
            return vec![];
        }
        let Some(ev) = p.get("event").filter(|e| e.is_object()) else {
            // Not the payload itself: it carries Slack's verification `token`.
            warn!(adapter = %self.name, "skipping an event_callback without event (event_id {:?})", s(p, "event_id"));
            return vec![];
        };
        match s(ev, "type") {
            Some("message" | "app_mention") => match self.message_envelope(ev) {
                Ok(Some(e)) => vec![e],
                Ok(None) => vec![],
                Err(why) => {
                    warn!(adapter = %self.name, "skipping a Slack message: {why}");
                    vec![]
                }
            },
            other => {
                debug!(adapter = %self.name, "ignoring a Slack event of type {other:?}");
                vec![]
            }
        }
    }

    /// A slash command (<https://docs.slack.dev/interactivity/implementing-slash-commands>).
    fn on_slash(&self, p: &Value) -> Option<Envelope> {
        if self.foreign(p) {
            return None;
        }
        let (Some(user), Some(channel)) = (s(p, "user_id"), s(p, "channel_id")) else {
            warn!(adapter = %self.name, "skipping a slash command without user_id or channel_id");
            return None;
        };
        let text = s(p, "text").unwrap_or("");
        if text.len() > MAX_INCOMING_TEXT {
            warn!(adapter = %self.name, "skipping a slash command of {} bytes", text.len());
            return None;
        }
        if let Some(url) = s(p, "response_url").filter(|u| render::linkable(u) && !u.starts_with("mailto")) {
            let mut g = lock(&self.response_urls);
            // Used up or expired ones go (one per channel a command was ever said in, else).
            g.retain(|_, r| r.at.elapsed() <= RESPONSE_URL_LIFE && r.uses < RESPONSE_URL_USES);
            g.insert(
                channel.to_string(),
                ResponseUrl {
                    url: url.to_string(),
                    at: Instant::now(),
                    uses: 0,
                },
            );
        }
        let text = render::decode(text).trim().to_string();
        Some(Envelope {
            user: UserId::new(&self.name, user),
            display_name: s(p, "user_name").map(str::to_string),
            place: Place::new(&self.name, channel),
            direct: self.is_im_of(channel, user),
            mentioned: true,
            text: if text.is_empty() { "help".into() } else { text },
            button: None,
        })
    }

    /// The answer a `view_submission` gets: `Err` with the `response_action: errors` body when
    /// values are wrong.
    fn check_submission(&self, p: &Value) -> Result<Option<Envelope>, Value> {
        let view = p.get("view").cloned().unwrap_or(Value::Null);
        if s(&view, "callback_id") != Some(form::CALLBACK_ID) {
            return Ok(None);
        }
        let Some(user) = p.get("user").and_then(|u| s(u, "id")) else {
            warn!(adapter = %self.name, "skipping a form submission without user");
            return Ok(None);
        };
        let Some((channel, thread, form)) = s(&view, "private_metadata").and_then(|m| self.read_metadata(m)) else {
            warn!(adapter = %self.name, "skipping a form submission whose metadata is unreadable (or forgotten after a restart)");
            return Err(json!({"response_action": "errors", "errors": {"f0": "This form is too old; ask again."}}));
        };
        let empty = json!({});
        let state = view.get("state").and_then(|st| st.get("values")).unwrap_or(&empty);
        let values = form::values(&form, state).map_err(|e| form::errors_answer(&e))?;
        let line = form.command_line(&values).map_err(|e| {
            let idx = form.fields.iter().position(|f| e.contains(&format!("`{}`", f.name))).unwrap_or(0);
            form::errors_answer(&[(format!("f{idx}"), e)])
        })?;
        Ok(Some(Envelope {
            user: UserId::new(&self.name, user),
            display_name: p.get("user").and_then(|u| s(u, "username")).map(str::to_string),
            direct: self.is_im_of(&channel, user),
            place: Place {
                platform: self.name.clone(),
                channel,
                thread,
            },
            mentioned: true,
            text: line,
            button: Some(format!("form:{}", s(&view, "id").unwrap_or(""))),
        }))
    }

    /// An interactivity payload (<https://docs.slack.dev/reference/interaction-payloads>):
    /// the envelopes it stands for, or the errors answer of a wrong form.
    fn on_interactive(self: &Arc<Self>, p: &Value) -> Result<Vec<Envelope>, Value> {
        if self.foreign(p) {
            return Ok(vec![]);
        }
        match s(p, "type") {
            Some("block_actions") => Ok(self.on_block_actions(p)),
            Some("view_submission") => Ok(self.check_submission(p)?.into_iter().collect()),
            other => {
                debug!(adapter = %self.name, "ignoring an interaction of type {other:?}");
                Ok(vec![])
            }
        }
    }

    fn on_block_actions(self: &Arc<Self>, p: &Value) -> Vec<Envelope> {
        let Some(user) = p.get("user").and_then(|u| s(u, "id")) else {
            warn!(adapter = %self.name, "skipping a button press without user");
            return vec![];
        };
        let container = p.get("container").cloned().unwrap_or(Value::Null);
        let channel = p
            .get("channel")
            .and_then(|c| s(c, "id"))
            .or_else(|| s(&container, "channel_id"))
            .map(str::to_string);
        let thread = s(&container, "thread_ts")
            .or_else(|| p.get("message").and_then(|m| s(m, "thread_ts")))
            .map(str::to_string);
        let mut out = Vec::new();
        for a in p.get("actions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let (Some(action_id), Some(value)) = (s(a, "action_id"), s(a, "value")) else {
                debug!(adapter = %self.name, "ignoring an action without action_id or value");
                continue;
            };
            // Only opsbot's own buttons carry commands (a select menu or anything else Slack may
            // report is not a command).
            if !action_id.starts_with(render::BUTTON_PREFIX) && !action_id.starts_with(render::FORM_PREFIX) {
                debug!(adapter = %self.name, "ignoring an action that is not an opsbot button: {action_id}");
                continue;
            }
            let Some(channel) = channel.clone() else {
                warn!(adapter = %self.name, "skipping a button press outside a channel");
                continue;
            };
            if action_id.starts_with(render::FORM_PREFIX) {
                let (Some(trigger), Some(form)) = (s(p, "trigger_id"), self.form_of(value, &channel)) else {
                    warn!(adapter = %self.name, "a form button without trigger_id or a readable form");
                    continue;
                };
                let meta = self.metadata(&channel, thread.as_deref(), &form);
                let view = form::view(&form, &meta);
                let (me, trigger) = (self.clone(), trigger.to_string());
                tokio::spawn(async move {
                    if let Err(e) = me.bot("views.open", Body::Json(json!({"trigger_id": trigger, "view": view}))).await {
                        warn!(adapter = %me.name, "could not open the form: views.open: {e}");
                    }
                });
                continue;
            }
            if value.len() > MAX_INCOMING_TEXT {
                warn!(adapter = %self.name, "skipping a button value of {} bytes", value.len());
                continue;
            }
            out.push(Envelope {
                user: UserId::new(&self.name, user),
                display_name: p.get("user").and_then(|u| s(u, "username")).map(str::to_string),
                direct: self.is_im_of(&channel, user),
                place: Place {
                    platform: self.name.clone(),
                    channel,
                    thread: thread.clone(),
                },
                mentioned: false,
                text: value.to_string(),
                button: Some(action_id.to_string()),
            });
        }
        out
    }

    /// A Socket Mode payload, already acknowledged.
    fn on_payload(self: &Arc<Self>, kind: &str, envelope_id: &str, p: &Value) -> Vec<Envelope> {
        if !self.first_time(format!("env:{envelope_id}")) {
            debug!(adapter = %self.name, "envelope {envelope_id} again: already handled");
            return vec![];
        }
        match kind {
            "events_api" => match s(p, "type") {
                Some("event_callback") => self.on_event_callback(p),
                other => {
                    debug!(adapter = %self.name, "ignoring an events_api payload of type {other:?}");
                    vec![]
                }
            },
            // The same command or press in another envelope (two connections open during a
            // refresh): its trigger id is unique to it.
            "slash_commands" | "interactive" if s(p, "trigger_id").is_some_and(|t| !self.first_time(format!("trigger:{t}"))) => {
                debug!(adapter = %self.name, "a {kind} already handled, in another envelope");
                vec![]
            }
            "slash_commands" => self.on_slash(p).into_iter().collect(),
            "interactive" => self.on_interactive(p).unwrap_or_default(),
            _ => vec![],
        }
    }

    /// The acknowledgement of a Socket Mode envelope: `{"envelope_id"}` and, for a slash
    /// command, the ephemeral "Working on …" line; for a wrong form, its errors.
    fn ack_for(&self, envelope_id: &str, kind: &str, payload: &Value) -> (Value, bool) {
        let mut ack = json!({"envelope_id": envelope_id});
        let mut forward = true;
        match kind {
            "slash_commands" => {
                let text = s(payload, "text").unwrap_or("").trim();
                let shown = render::escape(&render::truncate(text, 200)).replace('`', "'");
                ack["payload"] = json!({"response_type": "ephemeral", "text": format!("Working on `{shown}`…")});
            }
            "interactive" if s(payload, "type") == Some("view_submission") => {
                if let Err(errors) = self.check_submission(payload) {
                    ack["payload"] = errors;
                    forward = false;
                }
            }
            _ => {}
        }
        (ack, forward)
    }

    // ---------------------------------------------------------------- Socket Mode

    /// Opens one Socket Mode connection and starts its reader.
    async fn open_connection(self: &Arc<Self>, tx: mpsc::UnboundedSender<Incoming>) -> Result<(u64, oneshot::Sender<()>), String> {
        let app = self.cfg.app_token.clone().unwrap_or_default();
        let v = self
            .call("apps.connections.open", &app, Body::Empty)
            .await
            .map_err(|e| format!("Slack apps.connections.open failed: {e}"))?;
        let url = s(&v, "url").ok_or("apps.connections.open gave no url")?.to_string();
        let connector = if url.to_ascii_lowercase().starts_with("wss://") {
            Some(tokio_tungstenite::Connector::Rustls(crate::tls::client_config(
                self.cfg.tls_ca.as_deref(),
            )?))
        } else {
            None
        };
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, connector),
        )
        .await
        .map_err(|_| "the Socket Mode connection timed out".to_string())?
        .map_err(|e| format!("cannot open the Socket Mode connection: {e}"))?;
        let id = self.next_conn.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (close_tx, close_rx) = oneshot::channel();
        let me = self.clone();
        tokio::spawn(async move { me.read_connection(id, ws, tx, close_rx).await });
        debug!(adapter = %self.name, conn = id, "Socket Mode connection opened");
        Ok((id, close_tx))
    }

    async fn read_connection<S>(
        self: Arc<Self>,
        id: u64,
        mut ws: tokio_tungstenite::WebSocketStream<S>,
        tx: mpsc::UnboundedSender<Incoming>,
        mut close: oneshot::Receiver<()>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        ping.tick().await;
        let mut last = Instant::now();
        let reason = loop {
            let msg = tokio::select! {
                _ = &mut close => {
                    let _ = ws.close(None).await;
                    break "closed by opsbot".to_string();
                }
                _ = ping.tick() => {
                    if last.elapsed() > Duration::from_secs(100) {
                        break "nothing heard from Slack for 100 s".to_string();
                    }
                    if let Err(e) = ws.send(WsMessage::Ping(Vec::new().into())).await {
                        break format!("ping failed: {e}");
                    }
                    continue;
                }
                m = ws.next() => m,
            };
            last = Instant::now();
            let text = match msg {
                None => break "Slack closed the connection".to_string(),
                Some(Err(e)) => break format!("Socket Mode connection lost: {e}"),
                Some(Ok(WsMessage::Text(t))) => t,
                Some(Ok(WsMessage::Close(c))) => {
                    break format!(
                        "Slack closed the connection{}",
                        c.map(|c| format!(": {} {}", c.code, c.reason)).unwrap_or_default()
                    );
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    warn!(adapter = %self.name, "skipping a binary Socket Mode frame");
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            let v: Value = match serde_json::from_str(text.as_str()) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    warn!(adapter = %self.name, "skipping a Socket Mode frame that is not a JSON object: {}", short(text.as_str()));
                    continue;
                }
            };
            let kind = s(&v, "type").unwrap_or("").to_string();
            if let Some(envelope_id) = s(&v, "envelope_id") {
                // Nobody reads what this connection hands on any more (`run` ended while it was
                // closing after a refresh): leave the envelope unacknowledged, for Slack to
                // send again on a connection that is read, rather than acknowledge and drop it.
                if tx.is_closed() {
                    break "opsbot no longer reads this connection".to_string();
                }
                let payload = v.get("payload").cloned().unwrap_or(Value::Null);
                let (ack, forward) = self.ack_for(envelope_id, &kind, &payload);
                if let Err(e) = ws.send(WsMessage::Text(ack.to_string().into())).await {
                    break format!("cannot acknowledge: {e}");
                }
                if let Some(n) = v.get("retry_attempt").and_then(Value::as_u64).filter(|n| *n > 0) {
                    debug!(adapter = %self.name, "envelope {envelope_id} is retry {n} ({})", s(&v, "retry_reason").unwrap_or(""));
                }
                if !forward {
                    continue;
                }
                if !payload.is_object() {
                    warn!(adapter = %self.name, "skipping a {kind} envelope without payload");
                    continue;
                }
                match kind.as_str() {
                    "events_api" | "slash_commands" | "interactive" => {
                        let _ = tx.send(Incoming::Payload {
                            kind,
                            envelope_id: envelope_id.to_string(),
                            payload,
                        });
                    }
                    other => debug!(adapter = %self.name, "ignoring a Socket Mode envelope of type {other:?}"),
                }
                continue;
            }
            match kind.as_str() {
                "hello" => {
                    let _ = tx.send(Incoming::Hello(id));
                }
                "disconnect" => {
                    let _ = tx.send(Incoming::Disconnect(id, s(&v, "reason").unwrap_or("").to_string()));
                }
                other => debug!(adapter = %self.name, "ignoring a Socket Mode message of type {other:?}"),
            }
        };
        debug!(adapter = %self.name, conn = id, "Socket Mode connection ended: {reason}");
        let _ = tx.send(Incoming::Closed(id, reason));
    }

    async fn deliver(&self, ctx: &AdapterContext, envs: Vec<Envelope>) -> Result<(), ()> {
        for mut e in envs {
            if e.button.is_some() || e.mentioned {
                self.settle_direct(&mut e).await;
            }
            tokio::select! {
                _ = ctx.stopped() => return Err(()),
                r = ctx.inbox.send(e) => if r.is_err() { return Err(()) },
            }
        }
        Ok(())
    }

    async fn run_socket(
        self: &Arc<Self>,
        ctx: &AdapterContext,
        tx: mpsc::UnboundedSender<Incoming>,
        rx: &mut mpsc::UnboundedReceiver<Incoming>,
    ) -> Result<(), String> {
        let mut conns: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
        let (first, close) = self.open_connection(tx.clone()).await?;
        conns.insert(first, close);
        let mut hello = false;
        let mut refreshing: Option<u64> = None;
        let hello_deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(hello_deadline);
        loop {
            let msg = tokio::select! {
                _ = ctx.stopped() => {
                    for (_, c) in conns.drain() {
                        let _ = c.send(());
                    }
                    return Ok(());
                }
                _ = &mut hello_deadline, if !hello => return Err("Slack sent no hello within 30 s".into()),
                m = rx.recv() => m,
            };
            let Some(msg) = msg else {
                return Err("internal channel closed".into());
            };
            match msg {
                Incoming::Hello(id) => {
                    if !hello {
                        hello = true;
                        ctx.connected();
                        info!(adapter = %self.name, "connected to Slack (Socket Mode)");
                    }
                    if refreshing == Some(id) {
                        refreshing = None;
                        let old: Vec<u64> = conns.keys().copied().filter(|k| *k != id).collect();
                        for k in old {
                            if let Some(c) = conns.remove(&k) {
                                tokio::spawn(async move {
                                    tokio::time::sleep(REFRESH_GRACE).await;
                                    let _ = c.send(());
                                });
                            }
                        }
                    }
                }
                Incoming::Disconnect(id, reason) => {
                    // Only the current connection's: one already replaced (closing in a moment)
                    // or a second `disconnect` while a new one is coming up must not open yet
                    // another (apps.connections.open is tier 1) and close the good one.
                    if !conns.contains_key(&id) || refreshing.is_some() {
                        debug!(adapter = %self.name, conn = id, "Slack asks an old connection to reconnect ({reason}); already done");
                        continue;
                    }
                    info!(adapter = %self.name, conn = id, "Slack asks to reconnect ({reason}); opening a new connection first");
                    {
                        match self.open_connection(tx.clone()).await {
                            Ok((nid, c)) => {
                                conns.insert(nid, c);
                                refreshing = Some(nid);
                            }
                            Err(e) => warn!(adapter = %self.name, "could not open a new Socket Mode connection: {e}"),
                        }
                    }
                }
                Incoming::Closed(id, reason) => {
                    conns.remove(&id);
                    if refreshing == Some(id) {
                        refreshing = None;
                    }
                    if conns.is_empty() {
                        return Err(reason);
                    }
                    debug!(adapter = %self.name, conn = id, "an old Socket Mode connection closed: {reason}");
                }
                Incoming::Payload {
                    kind,
                    envelope_id,
                    payload,
                } => {
                    let envs = self.on_payload(&kind, &envelope_id, &payload);
                    if self.deliver(ctx, envs).await.is_err() {
                        return Ok(());
                    }
                }
                Incoming::Envelope(e) => {
                    if self.deliver(ctx, vec![*e]).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn run(self: &Arc<Self>, ctx: &AdapterContext) -> Result<(), String> {
        self.auth().await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        *lock(&self.current) = Some(Current { tx: tx.clone() });
        let _clear = ClearCurrent(&self.current);
        match self.cfg.mode {
            SlackMode::Socket => self.run_socket(ctx, tx, &mut rx).await,
            SlackMode::Events => {
                ctx.connected();
                info!(adapter = %self.name, "connected to Slack (Events API at /hooks/{}/…)", self.name);
                loop {
                    let msg = tokio::select! {
                        _ = ctx.stopped() => return Ok(()),
                        m = rx.recv() => m,
                    };
                    if let Some(Incoming::Envelope(e)) = msg
                        && self.deliver(ctx, vec![*e]).await.is_err()
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- Events API

    fn push(&self, envs: Vec<Envelope>) -> Result<(), WebhookResponse> {
        let Some(cur) = lock(&self.current).clone() else {
            return Err(WebhookResponse::text(503, "opsbot's Slack adapter is not running"));
        };
        for e in envs {
            if cur.tx.send(Incoming::Envelope(Box::new(e))).is_err() {
                return Err(WebhookResponse::text(503, "opsbot's Slack adapter is not running"));
            }
        }
        Ok(())
    }

    async fn webhook(self: &Arc<Self>, req: WebhookRequest) -> WebhookResponse {
        if self.cfg.mode != SlackMode::Events {
            return WebhookResponse::text(
                404,
                format!(
                    "adapter `{}` uses Socket Mode; set mode = \"events\" to receive requests",
                    self.name
                ),
            );
        }
        if req.method != "POST" {
            return WebhookResponse::text(405, "Slack sends POST requests");
        }
        let secret = self.cfg.signing_secret.clone().unwrap_or_default();
        if let Err(e) = opsbot_core::verify::verify_slack(
            secret.as_bytes(),
            req.header("x-slack-request-timestamp"),
            req.header("x-slack-signature"),
            &req.body,
            chrono::Utc::now(),
        ) {
            warn!(adapter = %self.name, path = %req.path, "refusing a request that is not from Slack: {e}");
            return WebhookResponse::text(401, format!("the request's Slack signature is not valid: {e}"));
        }
        // A slash command or an interaction replayed within the signature's five minutes would
        // run the command again as its person (events are remembered by their id).
        let replay_key = (req.path != "/events").then(|| req.header("x-slack-signature").unwrap_or("").to_ascii_lowercase());
        if let Some(sig) = &replay_key {
            let ts = req
                .header("x-slack-request-timestamp")
                .and_then(|t| t.trim().parse::<i64>().ok())
                .unwrap_or(0);
            if !lock(&self.replays).first(sig, ts, chrono::Utc::now().timestamp()) {
                warn!(adapter = %self.name, path = %req.path, "ignoring a signed request already handled (a replay)");
                return WebhookResponse::ok();
            }
        }
        let resp = self.verified(&req).await;
        if let Some(sig) = &replay_key
            && resp.status >= 500
        {
            // Not handled: Slack (or the person) may send it again.
            lock(&self.replays).forget(sig);
        }
        resp
    }

    /// A request whose signature is good.
    async fn verified(self: &Arc<Self>, req: &WebhookRequest) -> WebhookResponse {
        // Slack's check of the Request URL needs nothing running; everything else does.
        let running = lock(&self.current).is_some();
        if !running && req.path != "/events" {
            return WebhookResponse::text(503, "opsbot's Slack adapter is not running");
        }
        match req.path.as_str() {
            "/events" => {
                let v: Value = match serde_json::from_slice(&req.body) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        warn!(adapter = %self.name, "skipping an Events API request that is not a JSON object");
                        return WebhookResponse::text(400, "the body is not a JSON object");
                    }
                };
                match s(&v, "type") {
                    // https://docs.slack.dev/reference/events/url_verification
                    Some("url_verification") => WebhookResponse::json(&json!({"challenge": s(&v, "challenge").unwrap_or("")})),
                    _ if !running => WebhookResponse::text(503, "opsbot's Slack adapter is not running"),
                    Some("event_callback") => {
                        if let Some(n) = req.header("x-slack-retry-num") {
                            debug!(adapter = %self.name, "Slack retry {n} ({})", req.header("x-slack-retry-reason").unwrap_or(""));
                        }
                        let envs = self.on_event_callback(&v);
                        match self.push(envs) {
                            Ok(()) => WebhookResponse::ok(),
                            Err(r) => r,
                        }
                    }
                    Some("app_rate_limited") => {
                        warn!(adapter = %self.name, "Slack says it dropped events: the app is over its rate limit");
                        WebhookResponse::ok()
                    }
                    other => {
                        debug!(adapter = %self.name, "ignoring an Events API request of type {other:?}");
                        WebhookResponse::ok()
                    }
                }
            }
            "/commands" => {
                let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body) else {
                    warn!(adapter = %self.name, "skipping a slash command whose body is not a form");
                    return WebhookResponse::text(400, "the body is not a form");
                };
                let p: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                let p = Value::Object(p);
                let Some(env) = self.on_slash(&p) else {
                    return WebhookResponse::text(400, "a slash command without user_id or channel_id");
                };
                let (ack, _) = self.ack_for("", "slash_commands", &p);
                if let Err(r) = self.push(vec![env]) {
                    return r;
                }
                WebhookResponse::json(&ack["payload"])
            }
            "/interactive" => {
                let payload = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body)
                    .ok()
                    .and_then(|f| f.into_iter().find(|(k, _)| k == "payload"))
                    .and_then(|(_, p)| serde_json::from_str::<Value>(&p).ok())
                    .filter(Value::is_object);
                let Some(p) = payload else {
                    warn!(adapter = %self.name, "skipping an interaction without a JSON payload");
                    return WebhookResponse::text(400, "the body has no JSON `payload`");
                };
                match self.on_interactive(&p) {
                    Ok(envs) => match self.push(envs) {
                        Ok(()) => WebhookResponse::ok(),
                        Err(r) => r,
                    },
                    Err(errors) => WebhookResponse::json(&errors),
                }
            }
            other => WebhookResponse::text(
                404,
                format!("no such Slack endpoint: {other} (use /events, /commands or /interactive)"),
            ),
        }
    }

    // ---------------------------------------------------------------- outgoing

    fn render(&self, reply: &Reply, channel: &str) -> render::Rendered {
        render::render(reply, &mut |f| self.remember_form(f, channel))
    }

    /// A slash command's response URL for this channel, if one is still usable (and counts
    /// the use).
    fn take_response_url(&self, channel: &str) -> Option<String> {
        let mut g = lock(&self.response_urls);
        let r = g.get_mut(channel)?;
        if r.at.elapsed() > RESPONSE_URL_LIFE || r.uses >= RESPONSE_URL_USES {
            g.remove(channel);
            return None;
        }
        r.uses += 1;
        Some(r.url.clone())
    }

    /// Posts through a response URL (<https://docs.slack.dev/interactivity/handling-user-interaction#message_responses>).
    async fn post_response_url(&self, url: &str, msgs: &[render::Message]) -> Result<(), SendError> {
        for m in msgs {
            let body = json!({"response_type": "in_channel", "replace_original": false, "text": m.text, "blocks": m.blocks});
            let resp = self
                .http
                .post(url)
                .json(&body)
                .send()
                .await
                .map_err(|e| SendError::Unavailable(format!("response_url: {}", e.without_url())))?;
            let st = resp.status().as_u16();
            if st == 429 {
                return Err(SendError::RateLimited(Duration::from_secs(1)));
            }
            if st >= 500 {
                return Err(SendError::Unavailable(format!("response_url: HTTP {st}")));
            }
            if st >= 300 {
                return Err(SendError::Rejected(format!("response_url: HTTP {st} (expired or used up)")));
            }
        }
        Ok(())
    }

    async fn post_message(&self, channel: &str, thread: Option<&str>, m: &render::Message) -> Result<String, ApiError> {
        let mut body = json!({
            "channel": channel,
            "text": m.text,
            "blocks": m.blocks,
            "unfurl_links": false,
            "unfurl_media": false,
            "link_names": false,
        });
        if let Some(t) = thread {
            body["thread_ts"] = json!(t);
        }
        match self.bot("chat.postMessage", Body::Json(body.clone())).await {
            Err(e) if e.is("invalid_blocks") => {
                warn!(adapter = %self.name, "Slack refused the blocks of a message (invalid_blocks); sending it as plain text");
                if let Some(o) = body.as_object_mut() {
                    o.remove("blocks");
                }
                let v = self.bot("chat.postMessage", Body::Json(body)).await?;
                Ok(s(&v, "ts").unwrap_or_default().to_string())
            }
            Err(e) => Err(e),
            Ok(v) => Ok(s(&v, "ts").unwrap_or_default().to_string()),
        }
    }

    /// Uploads a `data:` image to the channel (`files.getUploadURLExternal`, the upload,
    /// `files.completeUploadExternal`: <https://docs.slack.dev/messaging/working-with-files#upload>).
    async fn upload(&self, channel: &str, thread: Option<&str>, up: &render::Upload) -> Result<(), SendError> {
        let (bytes, mime) = crate::decode_data_url(&up.url).map_err(SendError::Rejected)?;
        let ext = mime.split('/').nth(1).unwrap_or("bin").split(['+', ';']).next().unwrap_or("bin");
        let filename = format!("image.{ext}");
        let title = if up.alt.trim().is_empty() {
            filename.clone()
        } else {
            render::truncate(&up.alt, 250)
        };
        let m = "files.getUploadURLExternal";
        let mut args = vec![("filename", filename.clone()), ("length", bytes.len().to_string())];
        if !up.alt.trim().is_empty() {
            args.push(("alt_txt", render::truncate(&up.alt, 1000)));
        }
        let v = self.bot(m, Body::Form(args)).await.map_err(|e| e.to_send_error(&self.name, m))?;
        let (Some(url), Some(file_id)) = (s(&v, "upload_url"), s(&v, "file_id")) else {
            return Err(SendError::Unavailable(format!("{m} gave no upload_url or file_id")));
        };
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, mime.as_str())
            .body(bytes)
            .send()
            .await
            .map_err(|e| SendError::Unavailable(format!("file upload: {}", e.without_url())))?;
        let st = resp.status().as_u16();
        if !(200..300).contains(&st) {
            return Err(if st >= 500 {
                SendError::Unavailable(format!("file upload: HTTP {st}"))
            } else {
                SendError::Rejected(format!("file upload: HTTP {st}"))
            });
        }
        let mut body = json!({"files": [{"id": file_id, "title": title}], "channel_id": channel});
        if let Some(t) = thread {
            body["thread_ts"] = json!(t);
        }
        let m = "files.completeUploadExternal";
        self.bot(m, Body::Json(body)).await.map_err(|e| e.to_send_error(&self.name, m))?;
        Ok(())
    }

    /// A card without its `Code` blocks, and their text (the log tail).
    fn split_card(reply: &Reply) -> (Reply, String) {
        if reply.card_for.is_none() {
            return (reply.clone(), String::new());
        }
        let mut card = reply.clone();
        let mut tail = Vec::new();
        card.blocks.retain(|b| match b {
            Block::Code { text } => {
                tail.push(text.clone());
                false
            }
            _ => true,
        });
        (card, tail.join("\n"))
    }

    /// Posts what is new in a card's log tail into the card's thread.
    async fn post_tail(&self, channel: &str, thread: &str, card_ts: &str, tail: &str) -> Result<(), SendError> {
        if tail.trim().is_empty() {
            return Ok(());
        }
        let old = lock(&self.tails).get(card_ts).cloned().unwrap_or_default();
        let new = new_output(&old, tail);
        if new.trim().is_empty() {
            return Ok(());
        }
        let r = self.render(&Reply::new(opsbot_core::Tone::Info).code(new), channel);
        for m in &r.messages {
            self.post_message(channel, Some(thread), m)
                .await
                .map_err(|e| e.to_send_error(&self.name, "chat.postMessage"))?;
        }
        let mut g = lock(&self.tails);
        if g.len() > 1000 {
            g.clear();
        }
        g.insert(card_ts.to_string(), tail.to_string());
        Ok(())
    }

    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        let (card, tail) = Self::split_card(reply);
        let r = self.render(&card, &place.channel);
        let key = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            place.hash(&mut h);
            serde_json::to_string(reply).unwrap_or_default().hash(&mut h);
            h.finish()
        };
        let (mut done, mut first) = {
            let mut g = lock(&self.partial);
            if g.len() > 1000 {
                g.clear();
            }
            g.get(&key).cloned().unwrap_or((0, None))
        };
        let thread = place.thread.as_deref();
        for (i, m) in r.messages.iter().enumerate().skip(done) {
            match self.post_message(&place.channel, thread, m).await {
                Ok(ts) => {
                    if i == 0 {
                        first = Some(ts);
                    }
                    done = i + 1;
                    if done < r.messages.len() {
                        lock(&self.partial).insert(key, (done, first.clone()));
                    }
                }
                Err(e) if (e.is("not_in_channel") || e.is("channel_not_found")) && i == 0 => {
                    let Some(url) = self.take_response_url(&place.channel) else {
                        return Err(e.to_send_error(&self.name, "chat.postMessage"));
                    };
                    info!(adapter = %self.name, "cannot post in {} ({e}); answering through the slash command's response_url", place.channel);
                    lock(&self.partial).remove(&key);
                    self.post_response_url(&url, &r.messages).await?;
                    return Ok(Posted { id: None });
                }
                Err(e) => {
                    let se = e.to_send_error(&self.name, "chat.postMessage");
                    if !matches!(se, SendError::Rejected(_)) && done > 0 {
                        lock(&self.partial).insert(key, (done, first.clone()));
                    } else {
                        lock(&self.partial).remove(&key);
                    }
                    return Err(se);
                }
            }
        }
        lock(&self.partial).remove(&key);
        for up in &r.uploads {
            if let Err(e) = self.upload(&place.channel, thread, up).await {
                warn!(adapter = %self.name, "an image of a reply in {} could not be uploaded: {e}", place.channel);
            }
        }
        if let Some(ts) = &first
            && !tail.is_empty()
        {
            let th = thread.unwrap_or(ts).to_string();
            if let Err(e) = self.post_tail(&place.channel, &th, ts, &tail).await {
                warn!(adapter = %self.name, "the log of a job card could not be posted in its thread: {e}");
            }
        }
        Ok(Posted { id: first })
    }

    async fn edit(&self, place: &Place, id: &str, reply: &Reply) -> Result<(), SendError> {
        let (card, tail) = Self::split_card(reply);
        let r = self.render(&card, &place.channel);
        let mut m = r.messages.first().cloned().unwrap_or_default();
        if r.messages.len() > 1 {
            m.blocks.truncate(render::MAX_BLOCKS - 1);
            m.blocks
                .push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "_… (cut: too long for one message)_"}]}));
        }
        if m.text.is_empty() {
            m.text = "…".into();
        }
        let mut body = json!({"channel": place.channel, "ts": id, "text": m.text, "blocks": m.blocks, "link_names": false});
        let method = "chat.update";
        match self.bot(method, Body::Json(body.clone())).await {
            Ok(_) => {}
            Err(e) if e.is("invalid_blocks") => {
                warn!(adapter = %self.name, "Slack refused the blocks of a card (invalid_blocks); updating it as plain text");
                body["blocks"] = json!([]);
                self.bot(method, Body::Json(body))
                    .await
                    .map_err(|e| e.to_send_error(&self.name, method))?;
            }
            Err(e) => return Err(e.to_send_error(&self.name, method)),
        }
        if !tail.is_empty() {
            let th = place.thread.clone().unwrap_or_else(|| id.to_string());
            self.post_tail(&place.channel, &th, id, &tail).await?;
        }
        Ok(())
    }
}

struct ClearCurrent<'a>(&'a Mutex<Option<Current>>);
impl Drop for ClearCurrent<'_> {
    fn drop(&mut self) {
        *lock(self.0) = None;
    }
}

/// The lines of `new` after its overlap with the end of `old` (a log tail that moved on).
fn new_output(old: &str, new: &str) -> String {
    if old.is_empty() {
        return new.to_string();
    }
    let o: Vec<&str> = old.lines().collect();
    let n: Vec<&str> = new.lines().collect();
    let max = o.len().min(n.len());
    for k in (1..=max).rev() {
        if o[o.len() - k..] == n[..k] {
            return n[k..].join("\n");
        }
    }
    new.to_string()
}

#[async_trait::async_trait]
impl Adapter for SlackAdapter {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edit: true,
            threads: true,
            rich_text: true,
            buttons: true,
            files: true,
            reactions: false,
            direct: true,
            forms: true,
        }
    }

    async fn run(&self, ctx: &AdapterContext) -> Result<(), String> {
        self.inner.run(ctx).await
    }

    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        self.inner.post(place, reply).await
    }

    async fn edit(&self, place: &Place, id: &str, reply: &Reply) -> Result<(), SendError> {
        self.inner.edit(place, id, reply).await
    }

    async fn webhook(&self, req: WebhookRequest) -> WebhookResponse {
        self.inner.webhook(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(mode: SlackMode) -> SlackAdapter {
        let cfg: SlackConfig = serde_json::from_value(json!({
            "mode": if mode == SlackMode::Socket { "socket" } else { "events" },
            "bot_token": "xoxb-secret",
            "app_token": "xapp-secret",
            "signing_secret": "shh",
            "api_url": "http://127.0.0.1:9/api",
        }))
        .unwrap();
        let a = SlackAdapter::new("slack", cfg).unwrap();
        *lock(&a.inner.me) = Some(Me {
            user_id: "UBOT".into(),
            team_id: Some("T1".into()),
        });
        a
    }

    fn ev(v: Value) -> Value {
        json!({"type": "event_callback", "event_id": format!("Ev{}", v["ts"].as_str().unwrap_or("")), "event": v})
    }

    #[test]
    fn payloads_of_another_workspace_are_skipped() {
        let a = adapter(SlackMode::Socket);
        let i = &a.inner;
        let mention = json!({"type": "app_mention", "user": "U1", "text": "<@UBOT> whoami", "ts": "9.1", "channel": "C1"});
        let mut other = ev(mention.clone());
        other["team_id"] = json!("T2");
        assert!(i.on_event_callback(&other).is_empty(), "another workspace's event");
        let mut ours = ev(json!({"type": "app_mention", "user": "U1", "text": "<@UBOT> whoami", "ts": "9.2", "channel": "C1"}));
        ours["team_id"] = json!("T1");
        assert_eq!(i.on_event_callback(&ours).len(), 1);
        let slash = |team: &str| json!({"team_id": team, "user_id": "U1", "channel_id": "C1", "text": "whoami", "command": "/opsbot"});
        assert!(i.on_slash(&slash("T2")).is_none());
        assert!(i.on_slash(&slash("T1")).is_some());
    }

    #[test]
    fn messages_become_envelopes() {
        let a = adapter(SlackMode::Socket);
        let i = &a.inner;
        let e = i.on_event_callback(&ev(
            json!({"type": "app_mention", "user": "U1", "text": "<@UBOT> whoami", "ts": "1.1", "channel": "C1"}),
        ));
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].text.as_str(), e[0].mentioned, e[0].direct), ("whoami", true, false));
        assert_eq!(e[0].user, UserId::new("slack", "U1"));
        // The same message as `message` (other event id): one envelope.
        let mut dup =
            ev(json!({"type": "message", "channel_type": "channel", "user": "U1", "text": "<@UBOT> whoami", "ts": "1.1", "channel": "C1"}));
        dup["event_id"] = json!("Ev-other");
        assert!(i.on_event_callback(&dup).is_empty());
        // IM.
        let e = i.on_event_callback(&ev(
            json!({"type": "message", "channel_type": "im", "user": "U1", "text": "status &amp; more", "ts": "1.2", "channel": "D1"}),
        ));
        assert_eq!((e[0].text.as_str(), e[0].direct, e[0].mentioned), ("status & more", true, false));
        // Own and other bots' messages, edits.
        assert!(
            i.on_event_callback(&ev(
                json!({"type": "message", "user": "UBOT", "text": "x", "ts": "1.3", "channel": "D1"})
            ))
            .is_empty()
        );
        assert!(
            i.on_event_callback(&ev(
                json!({"type": "message", "bot_id": "B2", "user": "U2", "text": "x", "ts": "1.4", "channel": "D1"})
            ))
            .is_empty()
        );
        assert!(
            i.on_event_callback(&ev(
                json!({"type": "message", "subtype": "message_changed", "ts": "1.5", "channel": "D1"})
            ))
            .is_empty()
        );
        // Thread.
        let e = i.on_event_callback(&ev(
            json!({"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "1.6", "thread_ts": "1.0", "channel": "C1"}),
        ));
        assert_eq!(e[0].place.thread.as_deref(), Some("1.0"));
        // Malformed: skipped.
        assert!(
            i.on_event_callback(&ev(
                json!({"type": "message", "text": 5, "ts": "1.7", "channel": "C1", "user": "U1"})
            ))
            .is_empty()
        );
        assert!(i.on_event_callback(&json!({"type": "event_callback"})).is_empty());
    }

    #[test]
    fn mentions_of_a_longer_id_and_mpims() {
        let a = adapter(SlackMode::Socket);
        let i = &a.inner;
        // `<@UBOTX>` is someone else, not the bot.
        let e = i.on_event_callback(&ev(
            json!({"type": "message", "channel_type": "channel", "user": "U1", "text": "ask <@UBOTX> about it", "ts": "3.1", "channel": "C1"}),
        ));
        assert!(!e[0].mentioned, "{e:?}");
        let e = i.on_event_callback(&ev(
            json!({"type": "message", "channel_type": "channel", "user": "U1", "text": "ask <@UBOT|opsbot> now", "ts": "3.2", "channel": "C1"}),
        ));
        assert!(e[0].mentioned);
        // A group DM with several people is not direct.
        let e = i.on_event_callback(&ev(
            json!({"type": "message", "channel_type": "mpim", "user": "U1", "text": "status", "ts": "3.3", "channel": "G1"}),
        ));
        assert!(!e[0].direct);
    }

    #[tokio::test]
    async fn presses_and_commands_are_direct_only_for_the_ims_person() {
        let a = adapter(SlackMode::Socket);
        let i = &a.inner;
        i.on_event_callback(&ev(
            json!({"type": "message", "channel_type": "im", "user": "U1", "text": "hi", "ts": "4.1", "channel": "D1"}),
        ));
        let press = |user: &str, channel: &str| {
            json!({"type": "block_actions", "user": {"id": user}, "channel": {"id": channel}, "trigger_id": "t",
                "actions": [{"action_id": "opsbot_btn_1", "value": "yes"}]})
        };
        assert!(i.on_interactive(&press("U1", "D1")).unwrap()[0].direct);
        assert!(!i.on_interactive(&press("U2", "D1")).unwrap()[0].direct);
        assert!(!i.on_interactive(&press("U2", "D2")).unwrap()[0].direct);
        let slash = |user: &str, channel: &str| json!({"user_id": user, "channel_id": channel, "text": "whoami"});
        assert!(i.on_slash(&slash("U1", "D1")).unwrap().direct);
        assert!(!i.on_slash(&slash("U2", "D9")).unwrap().direct);
    }

    #[test]
    fn replays_are_remembered_for_the_window_only() {
        let mut r = Replays::default();
        assert!(r.first("v0=a", 1000, 1000));
        assert!(!r.first("v0=a", 1000, 1100));
        r.forget("v0=a");
        assert!(r.first("v0=a", 1000, 1100));
        // Past the window the signature is refused by its timestamp anyway: forgotten.
        assert!(r.first("v0=b", 2000, 2000));
        assert!(!r.set.contains("v0=a"));
    }

    #[test]
    fn long_forms_open_only_where_they_were_posted() {
        let a = adapter(SlackMode::Socket);
        let i = &a.inner;
        let form = Form {
            title: "Run deploy".into(),
            command: "run deploy".into(),
            fields: (0..40)
                .map(|n| opsbot_core::FormField {
                    name: format!("field{n}"),
                    input: opsbot_core::FormInput::Text { secret: false },
                    required: false,
                    value: Some(format!("a value known in the direct conversation {n}")),
                    help: None,
                })
                .collect(),
        };
        let key = i.remember_form(&form, "D1");
        assert!(key.starts_with("ref:"));
        assert_eq!(i.form_of(&key, "D1"), Some(form));
        assert_eq!(i.form_of(&key, "C1"), None, "a press elsewhere naming the key opens nothing");
    }

    #[test]
    fn redeliveries_are_remembered_for_10000_events() {
        let a = adapter(SlackMode::Socket);
        let i = &a.inner;
        let env = |n: usize, attempt: usize| {
            json!({"type": "event_callback", "event_id": format!("Ev{n}"), "event": {"type": "message", "channel_type": "im",
                "channel": "D1", "user": "U1", "text": format!("m{n}"), "ts": format!("{n}.1")}, "attempt": attempt})
        };
        for n in 0..10_000 {
            assert_eq!(i.on_payload("events_api", &format!("E{n}"), &env(n, 0)).len(), 1);
        }
        // Slack's retry of the first event, in a new envelope.
        assert!(i.on_payload("events_api", "E0-retry", &env(0, 1)).is_empty());
    }

    #[test]
    fn a_command_in_two_envelopes_is_handled_once() {
        let a = adapter(SlackMode::Socket);
        let i = &a.inner;
        let slash = json!({"user_id": "U1", "channel_id": "C1", "text": "deploy web", "trigger_id": "T1"});
        assert_eq!(i.on_payload("slash_commands", "E1", &slash).len(), 1);
        assert!(i.on_payload("slash_commands", "E2", &slash).is_empty());
        let press = json!({"type": "block_actions", "user": {"id": "U1"}, "channel": {"id": "C1"}, "trigger_id": "T2",
            "actions": [{"action_id": "opsbot_btn_1", "value": "yes"}]});
        assert_eq!(i.on_payload("interactive", "E3", &press).len(), 1);
        assert!(i.on_payload("interactive", "E4", &press).is_empty());
    }

    #[test]
    fn log_tail_only_new_lines() {
        assert_eq!(new_output("", "a\nb"), "a\nb");
        assert_eq!(new_output("a\nb\nc", "b\nc\nd\ne"), "d\ne");
        assert_eq!(new_output("a\nb", "a\nb"), "");
        assert_eq!(new_output("x", "y"), "y");
    }

    #[test]
    fn debug_and_errors_hide_tokens() {
        let a = adapter(SlackMode::Socket);
        let dbg = format!("{:?}", a.inner.cfg);
        assert!(!dbg.contains("xoxb-secret") && !dbg.contains("xapp-secret") && !dbg.contains("shh"));
    }

    #[tokio::test]
    async fn webhook_refuses_unsigned() {
        let a = adapter(SlackMode::Events);
        let r = a
            .webhook(WebhookRequest {
                method: "POST".into(),
                path: "/events".into(),
                query: None,
                headers: vec![],
                body: br#"{"type":"url_verification","challenge":"c"}"#.to_vec(),
            })
            .await;
        assert_eq!(r.status, 401);
    }
}
