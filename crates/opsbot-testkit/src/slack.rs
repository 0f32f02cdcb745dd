//! A local fake of Slack, written from Slack's published API documentation: the Web API subset
//! opsbot uses (`/api/METHOD`), Socket Mode (`apps.connections.open` and the WebSocket at
//! `/link/`), signed Events API delivery to an HTTP endpoint, `response_url`s and file uploads.
//!
//! No Slack server can run locally, so this is the stand-in the Slack adapter is tested against.
//! It validates what it receives as Slack does (unknown fields tolerated, missing or malformed
//! required ones refused with the documented error) so the adapter's mistakes show up, and it
//! is itself checked against the official Python SDK (`slack_sdk`) in
//! `crates/opsbot-testkit/tests/slack_fake.rs`.
//!
//! One workspace: team [`TEAM_ID`], app [`APP_ID`], bot user [`BOT_USER_ID`], the channel
//! `#ops` ([`CHANNEL_ID`]) with the bot as a member, people added with [`FakeSlack::add_user`]
//! (each with an IM channel `D…`). [`FakeSlack::stop`] is a crash (every connection dropped,
//! new ones refused) and [`FakeSlack::start`] brings it back on the same port with the same state.

mod blocks;

pub use blocks::{Surface, validate_blocks, validate_view};

use crate::{ChatServer, ChatUser, Heard};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, oneshot};

/// The bot token (`xoxb-…`) the fake accepts for Web API calls.
pub const BOT_TOKEN: &str = "xoxb-1700000000-1700000001-fakeBotTokenForOpsbotTests";
/// The app-level token (`xapp-…`) the fake accepts for `apps.connections.open`.
pub const APP_TOKEN: &str = "xapp-1-A0OPSBOT01-1700000002-fakeAppLevelTokenForOpsbotTests";
/// The app's signing secret for the HTTP Events API.
pub const SIGNING_SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The (deprecated) verification token Slack still puts in payloads.
pub const VERIFICATION_TOKEN: &str = "fakeVerificationToken0001";
/// The bot's user id.
pub const BOT_USER_ID: &str = "U0BOT00001";
/// The bot's bot id (`bot_id` on its messages).
pub const BOT_ID: &str = "B0BOT00001";
/// The workspace (team) id.
pub const TEAM_ID: &str = "T0OPSBOT01";
/// The workspace's domain.
pub const TEAM_DOMAIN: &str = "opsbot-test";
/// The app's id.
pub const APP_ID: &str = "A0OPSBOT01";
/// The id of `#ops`, the channel the bot is a member of.
pub const CHANNEL_ID: &str = "C0OPS00001";
/// The environment variable that carries [`BOT_TOKEN`] in [`ChatServer::adapter_toml`].
pub const BOT_TOKEN_ENV: &str = "OPSBOT_TEST_SLACK_BOT_TOKEN";
/// The environment variable that carries [`APP_TOKEN`].
pub const APP_TOKEN_ENV: &str = "OPSBOT_TEST_SLACK_APP_TOKEN";
/// The environment variable that carries [`SIGNING_SECRET`].
pub const SIGNING_SECRET_ENV: &str = "OPSBOT_TEST_SLACK_SIGNING_SECRET";

/// Slack's message text limit: longer text is refused with `msg_too_long`
/// (<https://docs.slack.dev/reference/methods/chat.postMessage#truncating>: 40,000 characters).
pub const MAX_TEXT: usize = 40_000;

/// How a bot message came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `chat.postMessage`.
    Posted,
    /// `chat.update` (the entry's `ts` is the updated message's).
    Updated,
    /// A POST to a `response_url` (a new message, or the original replaced).
    ResponseUrl,
    /// The message body of a slash command's acknowledgement (Socket Mode ack payload or the
    /// HTTP response to `/commands`).
    Ack,
    /// `files.completeUploadExternal` (text = `initial_comment`).
    File,
    /// The message was deleted (`delete_original` on a `response_url`); text and blocks empty.
    Deleted,
}

/// One message the bot posted or changed.
#[derive(Clone, Debug)]
pub struct BotMessage {
    /// The channel id (`C…` or `D…`).
    pub channel: String,
    /// The message's ts (its id).
    pub ts: String,
    /// The thread it is in.
    pub thread_ts: Option<String>,
    /// The `text` field (the plain fallback).
    pub text: String,
    /// The blocks (`Value::Null` when none).
    pub blocks: Value,
    /// How it came.
    pub how: How,
    /// `Some(user)` for an ephemeral message only that person sees.
    pub ephemeral_to: Option<String>,
    /// Whether it replaces an earlier message (`chat.update`, `replace_original`).
    pub replaces: bool,
}

/// What happened to one delivery (an Events API event, a slash command, an interaction).
#[derive(Clone, Debug, Default)]
pub struct Delivered {
    /// The `ts` of the message a person said ([`FakeSlack::say`]).
    pub ts: Option<String>,
    /// The Socket Mode envelope id (of the last attempt), when delivered over Socket Mode.
    pub envelope_id: Option<String>,
    /// The event id (`Ev…`) for Events API events.
    pub event_id: Option<String>,
    /// How long the acknowledgement took (Socket Mode) or the HTTP answer (Events API), when
    /// it came in time.
    pub acked: Option<Duration>,
    /// The `payload` of the Socket Mode ack, when it had one.
    pub ack_payload: Option<Value>,
    /// The HTTP status of the last attempt (HTTP Events API).
    pub http_status: Option<u16>,
    /// The HTTP body of the last attempt (HTTP Events API).
    pub http_body: Option<String>,
    /// How many attempts were made (1 + retries); 0 when nothing was delivered.
    pub attempts: u32,
    /// Why it was not delivered (no connection, the bot is not in the channel, …).
    pub note: Option<String>,
    /// For a mention in a channel: the `app_mention` event Slack sends besides the `message`.
    pub mention: Option<Box<Delivered>>,
}

/// One acknowledgement the fake received over Socket Mode.
#[derive(Clone, Debug)]
pub struct AckRecord {
    /// The envelope.
    pub envelope_id: String,
    /// `events_api`, `slash_commands` or `interactive`.
    pub kind: String,
    /// The time from sending the envelope to the ack.
    pub latency: Duration,
    /// The envelope's `retry_attempt`.
    pub retry_attempt: u32,
    /// The ack's payload, if any.
    pub payload: Option<Value>,
}

/// A modal the bot opened with `views.open`.
#[derive(Clone, Debug)]
pub struct OpenedView {
    /// The view id (`V…`).
    pub id: String,
    /// The person it was opened for (the trigger's).
    pub user: String,
    /// The view as the bot sent it.
    pub view: Value,
    /// The channel of the interaction that gave the trigger.
    pub channel: String,
}

/// A file the bot uploaded (`files.getUploadURLExternal` + upload + `completeUploadExternal`).
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// The file id (`F…`).
    pub id: String,
    /// The file name given to `getUploadURLExternal`.
    pub filename: String,
    /// The announced length.
    pub length: usize,
    /// The uploaded bytes (`None` until uploaded).
    pub bytes: Option<Vec<u8>>,
    /// The title given on completion.
    pub title: Option<String>,
    /// The channel it was shared to on completion.
    pub channel: Option<String>,
    /// The thread it was shared to.
    pub thread_ts: Option<String>,
    /// Whether `completeUploadExternal` was called for it.
    pub completed: bool,
}

#[derive(Clone, Debug)]
struct Person {
    id: String,
    name: String,
}

#[derive(Clone, Debug)]
struct Chan {
    id: String,
    name: String,
    im_of: Option<String>,
    members: HashSet<String>,
}

#[derive(Clone, Debug)]
struct Msg {
    channel: String,
    ts: String,
    thread_ts: Option<String>,
    user: String,
    text: String,
    blocks: Value,
    /// Only this person sees it (a slash command's or response_url's ephemeral answer).
    ephemeral_to: Option<String>,
}

struct Trigger {
    issued: Instant,
    used: bool,
    user: String,
    channel: String,
}

struct RespUrl {
    issued: Instant,
    uses: u32,
    user: String,
    channel: String,
    message_ts: Option<String>,
    thread_ts: Option<String>,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
}

enum Out {
    Text(String),
    Close,
}

struct Ack {
    at: Instant,
    payload: Option<Value>,
}

struct St {
    running: bool,
    people: Vec<Person>,
    chans: BTreeMap<String, Chan>,
    msgs: Vec<Msg>,
    log: Vec<BotMessage>,
    views: Vec<OpenedView>,
    files: Vec<FileInfo>,
    tickets: HashSet<String>,
    triggers: HashMap<String, Trigger>,
    resp_urls: HashMap<String, RespUrl>,
    conns: Vec<Conn>,
    pending: HashMap<String, oneshot::Sender<Ack>>,
    acks: Vec<AckRecord>,
    rate: HashMap<String, (u32, u64)>,
    fail: HashMap<String, VecDeque<String>>,
    events_url: Option<String>,
    last_ts: u128,
    seq: u64,
    cursor: usize,
    disconnect_grace: Duration,
    ack_timeout: Duration,
    connect_wait: Duration,
    echo_bot_messages: bool,
    ping_interval: Duration,
    calls: Vec<(String, Value)>,
}

struct Inner {
    port: u16,
    st: Mutex<St>,
    changed: Notify,
    conns_changed: Notify,
    http: reqwest::Client,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static SEQ: AtomicU64 = AtomicU64::new(1);

/// Random-looking hex from a hash of a counter and the time (ids need only be unique).
fn rand_hex(n: usize) -> String {
    let c = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut out = String::new();
    let mut i = 0u32;
    while out.len() < n {
        let d = Sha256::digest(format!("{c}:{t}:{}:{i}", std::process::id()).as_bytes());
        out.push_str(&hex::encode(d));
        i += 1;
    }
    out.truncate(n);
    out
}

fn rand_id(prefix: &str, n: usize) -> String {
    format!("{prefix}{}", rand_hex(n).to_uppercase())
}

fn uuid() -> String {
    let h = rand_hex(32);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Escapes text as a Slack client does before sending it: `&`, `<` and `>` become `&amp;`,
/// `&lt;` and `&gt;` (<https://docs.slack.dev/messaging/formatting-message-text#escaping>);
/// what remains in `<…>` is Slack's markup (mentions, links).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Undoes [`escape`]: what a person sees of a message's `text`.
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Slack's v0 request signature: `v0=` + hex(HMAC-SHA256(secret, "v0:TIMESTAMP:BODY"))
/// (<https://docs.slack.dev/authentication/verifying-requests-from-slack>). Written here
/// independently of opsbot's verifier so each checks the other.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn next_ts(st: &mut St) -> String {
    ts_after(&mut st.last_ts)
}

/// The next message ts, `SECONDS.MICROS`, from the clock but strictly after `last` (in µs).
fn ts_after(last: &mut u128) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    *last = (*last + 1).max(now);
    format!("{}.{:06}", *last / 1_000_000, *last % 1_000_000)
}

/// The fake Slack: an axum server on 127.0.0.1 and the workspace's state.
pub struct FakeSlack {
    inner: Arc<Inner>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
        let mut st = self.inner.lock();
        st.running = false;
        st.conns.clear();
    }
}

impl FakeSlack {
    /// Starts a fresh fake on a free port with `#ops` and the bot in it.
    pub async fn start() -> Result<FakeSlack, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let mut chans = BTreeMap::new();
        chans.insert(
            CHANNEL_ID.to_string(),
            Chan {
                id: CHANNEL_ID.into(),
                name: "ops".into(),
                im_of: None,
                members: HashSet::from([BOT_USER_ID.to_string()]),
            },
        );
        let st = St {
            running: false,
            people: Vec::new(),
            chans,
            msgs: Vec::new(),
            log: Vec::new(),
            views: Vec::new(),
            files: Vec::new(),
            tickets: HashSet::new(),
            triggers: HashMap::new(),
            resp_urls: HashMap::new(),
            conns: Vec::new(),
            pending: HashMap::new(),
            acks: Vec::new(),
            rate: HashMap::new(),
            fail: HashMap::new(),
            events_url: None,
            last_ts: 0,
            seq: 0,
            cursor: 0,
            disconnect_grace: Duration::from_millis(300),
            ack_timeout: Duration::from_secs(3),
            connect_wait: Duration::from_secs(60),
            echo_bot_messages: true,
            ping_interval: Duration::from_secs(10),
            calls: Vec::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let inner = Arc::new(Inner {
            port,
            st: Mutex::new(st),
            changed: Notify::new(),
            conns_changed: Notify::new(),
            http,
        });
        let mut fake = FakeSlack { inner, server: None };
        fake.serve(listener);
        Ok(fake)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let router = Router::new()
            .route("/api/{method}", any(api))
            .route("/upload/{file_id}", post(upload))
            .route("/respond/{team}/{id}", post(respond))
            .route("/link", any(link))
            .route("/link/", any(link))
            .with_state(self.inner.clone());
        self.inner.lock().running = true;
        // Our own accept loop: every connection's task lives in the JoinSet, so aborting this
        // task drops them all (a crash), where axum::serve would let them finish.
        self.server = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let svc = hyper_util::service::TowerToHyperService::new(router.clone());
                conns.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection_with_upgrades(io, svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        }));
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The Web API's base URL, `http://127.0.0.1:PORT/api` (what `api_url` is set to; methods
    /// are at `API_URL/METHOD`).
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api", self.inner.port)
    }

    /// The id of `#ops`.
    pub fn channel(&self) -> String {
        CHANNEL_ID.to_string()
    }

    /// Adds a person (a member of `#ops`, with an IM channel to the bot); returns their id `U…`
    /// (the existing one when a person of that name was added before).
    pub fn add_user(&self, name: &str) -> String {
        let mut st = self.inner.lock();
        // The same name is the same person (back after a restart).
        if let Some(p) = st.people.iter().find(|p| p.name == name) {
            return p.id.clone();
        }
        st.seq += 1;
        let n = st.seq;
        let id = format!("U{n:09}");
        let im = format!("D{n:09}");
        st.people.push(Person {
            id: id.clone(),
            name: name.to_string(),
        });
        if let Some(c) = st.chans.get_mut(CHANNEL_ID) {
            c.members.insert(id.clone());
        }
        st.chans.insert(
            im.clone(),
            Chan {
                id: im,
                name: id.clone(),
                im_of: Some(id.clone()),
                members: HashSet::from([id.clone(), BOT_USER_ID.to_string()]),
            },
        );
        id
    }

    /// Adds a channel with every person in it, and the bot when `bot_member`; returns its id.
    pub fn add_channel(&self, name: &str, bot_member: bool) -> String {
        let mut st = self.inner.lock();
        st.seq += 1;
        let id = format!("C{:09}", st.seq);
        let mut members: HashSet<String> = st.people.iter().map(|p| p.id.clone()).collect();
        if bot_member {
            members.insert(BOT_USER_ID.to_string());
        }
        st.chans.insert(
            id.clone(),
            Chan {
                id: id.clone(),
                name: name.to_string(),
                im_of: None,
                members,
            },
        );
        id
    }

    /// The IM channel (`D…`) between a person and the bot.
    pub fn im_of(&self, user: &str) -> Option<String> {
        let st = self.inner.lock();
        st.chans.values().find(|c| c.im_of.as_deref() == Some(user)).map(|c| c.id.clone())
    }

    /// A person says `text` — as it goes over the wire: Slack markup, already [`escape`]d, a
    /// mention written `<@U…>` — in a channel (or their IM), optionally in a thread: the message is
    /// stored and the bot gets a `message` event (and an `app_mention` when the text mentions
    /// it in a channel), over Socket Mode or the HTTP Events API. Waits for the ack (Socket
    /// Mode: up to 3 s per attempt, retried like Slack) and returns what happened.
    pub async fn say(&self, user: &str, channel: &str, text: &str, thread_ts: Option<&str>) -> Result<Delivered, String> {
        say_impl(&self.inner, user, channel, text, thread_ts).await
    }

    /// A person runs a slash command (`/opsbot deploy web`) in a channel: the bot gets a
    /// `slash_commands` envelope (or a form POST to `/commands`) with a `response_url` and a
    /// `trigger_id`. A message in the ack payload / HTTP answer is recorded as [`How::Ack`].
    pub async fn slash(&self, user: &str, channel: &str, command: &str, text: &str) -> Result<Delivered, String> {
        let payload = {
            let mut st = self.inner.lock();
            if !st.running {
                return Err("the fake Slack is stopped".into());
            }
            let chan = st.chans.get(channel).ok_or_else(|| format!("no channel {channel}"))?.clone();
            if !chan.members.contains(user) {
                return Err(format!("{user} is not in {channel}"));
            }
            let name = st.people.iter().find(|p| p.id == user).map(|p| p.name.clone()).unwrap_or_default();
            let response_url = new_response_url(&mut st, self.inner.port, user, channel, None, None);
            let trigger_id = new_trigger(&mut st, user, channel);
            // https://docs.slack.dev/interactivity/implementing-slash-commands#app_command_handling
            json!({
                "token": VERIFICATION_TOKEN, "team_id": TEAM_ID, "team_domain": TEAM_DOMAIN,
                "channel_id": channel, "channel_name": if chan.im_of.is_some() { "directmessage".to_string() } else { chan.name.clone() },
                "user_id": user, "user_name": name, "command": command, "text": text,
                "api_app_id": APP_ID, "is_enterprise_install": "false",
                "response_url": response_url, "trigger_id": trigger_id,
            })
        };
        let d = deliver(&self.inner, "slash_commands", payload, true).await;
        // A message in the acknowledgement is shown (ephemeral unless `in_channel`).
        let body = d
            .ack_payload
            .clone()
            .or_else(|| d.http_body.as_deref().filter(|b| !b.trim().is_empty()).map(ack_body_value));
        if let Some(b) = body
            && (b.get("text").is_some() || b.get("blocks").is_some())
        {
            let mut st = self.inner.lock();
            let ts = next_ts(&mut st);
            let in_channel = b.get("response_type").and_then(Value::as_str) == Some("in_channel");
            st.msgs.push(Msg {
                channel: channel.to_string(),
                ts: ts.clone(),
                thread_ts: None,
                user: BOT_USER_ID.into(),
                text: b.get("text").and_then(Value::as_str).unwrap_or("").to_string(),
                blocks: b.get("blocks").cloned().unwrap_or(Value::Null),
                ephemeral_to: if in_channel { None } else { Some(user.to_string()) },
            });
            let m = BotMessage {
                channel: channel.to_string(),
                ts,
                thread_ts: None,
                text: b.get("text").and_then(Value::as_str).unwrap_or("").to_string(),
                blocks: b.get("blocks").cloned().unwrap_or(Value::Null),
                how: How::Ack,
                ephemeral_to: if in_channel { None } else { Some(user.to_string()) },
                replaces: false,
            };
            st.log.push(m);
            drop(st);
            self.inner.changed.notify_waiters();
        }
        Ok(d)
    }

    /// A person presses the button `action_id` on the bot's message `message_ts`: the value is
    /// the one stored in that message's blocks.
    pub async fn click(&self, user: &str, channel: &str, message_ts: &str, action_id: &str) -> Result<Delivered, String> {
        self.click_inner(user, channel, message_ts, action_id, None).await
    }

    /// Like [`FakeSlack::click`] but with a value of the test's choosing (a forged payload).
    pub async fn click_with_value(
        &self,
        user: &str,
        channel: &str,
        message_ts: &str,
        action_id: &str,
        value: &str,
    ) -> Result<Delivered, String> {
        self.click_inner(user, channel, message_ts, action_id, Some(value)).await
    }

    async fn click_inner(
        &self,
        user: &str,
        channel: &str,
        message_ts: &str,
        action_id: &str,
        forged: Option<&str>,
    ) -> Result<Delivered, String> {
        let payload = {
            let mut st = self.inner.lock();
            if !st.running {
                return Err("the fake Slack is stopped".into());
            }
            let msg = st
                .msgs
                .iter()
                .find(|m| m.channel == channel && m.ts == message_ts)
                .ok_or_else(|| format!("no message {message_ts} in {channel}"))?
                .clone();
            if msg.ephemeral_to.as_ref().is_some_and(|u| u != user) {
                return Err(format!("{user} does not see the ephemeral message {message_ts}"));
            }
            let (block_id, button) =
                find_button(&msg.blocks, action_id).ok_or_else(|| format!("message {message_ts} has no button {action_id}"))?;
            let value = forged
                .map(str::to_string)
                .or_else(|| button.get("value").and_then(Value::as_str).map(str::to_string));
            let name = st.people.iter().find(|p| p.id == user).map(|p| p.name.clone()).unwrap_or_default();
            let chan_name = st.chans.get(channel).map(|c| c.name.clone()).unwrap_or_default();
            let response_url = new_response_url(&mut st, self.inner.port, user, channel, Some(message_ts), msg.thread_ts.as_deref());
            let trigger_id = new_trigger(&mut st, user, channel);
            let action_ts = next_ts(&mut st);
            let mut action = json!({
                "action_id": action_id, "block_id": block_id, "text": button.get("text").cloned().unwrap_or(Value::Null),
                "type": "button", "action_ts": action_ts,
            });
            if let Some(v) = value {
                action["value"] = json!(v);
            }
            if let Some(s) = button.get("style") {
                action["style"] = s.clone();
            }
            let mut message = json!({
                "type": "message", "user": msg.user, "ts": msg.ts, "text": msg.text, "blocks": msg.blocks, "team": TEAM_ID,
            });
            if msg.user == BOT_USER_ID {
                message["bot_id"] = json!(BOT_ID);
                message["app_id"] = json!(APP_ID);
            }
            if let Some(t) = &msg.thread_ts {
                message["thread_ts"] = json!(t);
            }
            // https://docs.slack.dev/reference/interaction-payloads/block_actions-payload
            json!({
                "type": "block_actions",
                "user": {"id": user, "username": name, "name": name, "team_id": TEAM_ID},
                "api_app_id": APP_ID, "token": VERIFICATION_TOKEN,
                "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": msg.ephemeral_to.is_some()},
                "trigger_id": trigger_id,
                "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                "enterprise": null, "is_enterprise_install": false,
                "channel": {"id": channel, "name": chan_name},
                "message": message,
                "state": {"values": {}},
                "response_url": response_url,
                "actions": [action],
            })
        };
        Ok(deliver(&self.inner, "interactive", payload, false).await)
    }

    /// A person submits the modal `view_id` with values by `action_id` (text for text and
    /// number inputs, the option's value for selects and radio buttons, comma-separated option
    /// values for checkboxes): the bot gets a `view_submission` payload.
    pub async fn submit_view(&self, user: &str, view_id: &str, values: &[(&str, &str)]) -> Result<Delivered, String> {
        let payload = {
            let mut st = self.inner.lock();
            if !st.running {
                return Err("the fake Slack is stopped".into());
            }
            let v = st
                .views
                .iter()
                .find(|v| v.id == view_id)
                .ok_or_else(|| format!("no view {view_id}"))?
                .clone();
            if v.user != user {
                return Err(format!("view {view_id} was opened for {}, not {user}", v.user));
            }
            let name = st.people.iter().find(|p| p.id == user).map(|p| p.name.clone()).unwrap_or_default();
            let mut state = Map::new();
            let blocks = v.view.get("blocks").and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, b) in blocks.iter().enumerate() {
                if b.get("type").and_then(Value::as_str) != Some("input") {
                    continue;
                }
                let block_id = b
                    .get("block_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("blk{i}"));
                let el = &b["element"];
                let kind = el.get("type").and_then(Value::as_str).unwrap_or("");
                let action_id = el
                    .get("action_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("act{i}"));
                let given = values.iter().find(|(a, _)| *a == action_id).map(|(_, v)| *v);
                let opt = |val: &str| -> Result<Value, String> {
                    el.get("options")
                        .and_then(Value::as_array)
                        .and_then(|o| o.iter().find(|x| x.get("value").and_then(Value::as_str) == Some(val)))
                        .cloned()
                        .ok_or_else(|| format!("{action_id} has no option {val}"))
                };
                let entry = match kind {
                    "plain_text_input" | "number_input" => json!({"type": kind, "value": given}),
                    "static_select" | "radio_buttons" => match given {
                        Some(g) => json!({"type": kind, "selected_option": opt(g)?}),
                        None => json!({"type": kind, "selected_option": null}),
                    },
                    "checkboxes" => {
                        let mut sel = Vec::new();
                        for g in given.unwrap_or("").split(',').filter(|s| !s.is_empty()) {
                            sel.push(opt(g)?);
                        }
                        json!({"type": kind, "selected_options": sel})
                    }
                    other => json!({"type": other, "value": given}),
                };
                let mut inner = Map::new();
                inner.insert(action_id, entry);
                state.insert(block_id, Value::Object(inner));
            }
            let mut view = v.view.clone();
            view["id"] = json!(v.id);
            view["team_id"] = json!(TEAM_ID);
            view["app_id"] = json!(APP_ID);
            view["bot_id"] = json!(BOT_ID);
            view["root_view_id"] = json!(v.id);
            view["state"] = json!({"values": state});
            view["hash"] = json!(format!("{}.{}", now_secs(), rand_hex(8)));
            if view.get("private_metadata").is_none() {
                view["private_metadata"] = json!("");
            }
            if view.get("callback_id").is_none() {
                view["callback_id"] = json!("");
            }
            // https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload#view_submission
            json!({
                "type": "view_submission",
                "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                "user": {"id": user, "username": name, "name": name, "team_id": TEAM_ID},
                "api_app_id": APP_ID, "token": VERIFICATION_TOKEN, "trigger_id": new_trigger(&mut st, user, &v.channel),
                "view": view, "response_urls": [], "is_enterprise_install": false, "enterprise": null,
            })
        };
        Ok(deliver(&self.inner, "interactive", payload, true).await)
    }

    /// Sends a Socket Mode `disconnect` message (`refresh_requested`, `warning`,
    /// `link_disabled`) on every open socket and closes them after the grace time
    /// ([`FakeSlack::set_disconnect_grace`]).
    pub fn disconnect(&self, reason: &str) {
        let (conns, grace) = {
            let st = self.inner.lock();
            (st.conns.iter().map(|c| c.tx.clone()).collect::<Vec<_>>(), st.disconnect_grace)
        };
        // https://docs.slack.dev/apis/events-api/using-socket-mode#disconnect
        let msg = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-1"}}).to_string();
        for tx in &conns {
            let _ = tx.send(Out::Text(msg.clone()));
        }
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for tx in conns {
                let _ = tx.send(Out::Close);
            }
        });
    }

    /// How long a socket stays open after a `disconnect` message (default 300 ms).
    pub fn set_disconnect_grace(&self, d: Duration) {
        self.inner.lock().disconnect_grace = d;
    }

    /// How long the fake waits for an ack / HTTP answer before retrying (Slack: 3 s).
    pub fn set_ack_timeout(&self, d: Duration) {
        self.inner.lock().ack_timeout = d;
    }

    /// How long a delivery waits for a Socket Mode connection to exist (default 60 s: Slack
    /// holds events while an app reconnects, and the runtime's backoff can reach many seconds).
    pub fn set_connect_wait(&self, d: Duration) {
        self.inner.lock().connect_wait = d;
    }

    /// Whether the bot's own messages come back to it as events, as Slack sends them to apps
    /// subscribed to `message.channels`/`message.im`: a `message` with `bot_id` for each post
    /// and a `message` with subtype `message_changed` for each `chat.update`
    /// (<https://docs.slack.dev/reference/events/message/message_changed>). Default on, as on
    /// Slack: the adapter must ignore them.
    pub fn set_echo_bot_messages(&self, on: bool) {
        self.inner.lock().echo_bot_messages = on;
    }

    /// How often the fake pings each Socket Mode connection (default 10 s; for sockets opened
    /// afterwards).
    pub fn set_ping_interval(&self, d: Duration) {
        self.inner.lock().ping_interval = d.max(Duration::from_millis(10));
    }

    /// How many Socket Mode connections are open.
    pub fn connections(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Waits until at least `n` Socket Mode connections are open.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            let notified = self.inner.conns_changed.notified();
            if self.connections() >= n {
                return Ok(());
            }
            if tokio::time::timeout_at(end.into(), notified).await.is_err() {
                return Err(format!(
                    "{} Socket Mode connection(s) after {timeout:?}, wanted {n}",
                    self.connections()
                ));
            }
        }
    }

    /// The next `n` calls of a Web API method answer HTTP 429 with `Retry-After: secs` and
    /// `{"ok":false,"error":"ratelimited"}`
    /// (<https://docs.slack.dev/apis/web-api/rate-limits>).
    pub fn rate_limit(&self, method: &str, n: u32, secs: u64) {
        self.inner.lock().rate.insert(method.to_string(), (n, secs));
    }

    /// The next call of a Web API method answers `{"ok":false,"error":ERROR}` (HTTP 200).
    pub fn fail_next(&self, method: &str, error: &str) {
        self.inner
            .lock()
            .fail
            .entry(method.to_string())
            .or_default()
            .push_back(error.to_string());
    }

    /// Sets (or clears) the HTTP Events API Request URL base (opsbot's `/hooks/NAME`): events
    /// then go to `URL/events`, slash commands to `URL/commands`, interactions to
    /// `URL/interactive`, signed with [`SIGNING_SECRET`]; with `None` they go over Socket Mode.
    pub fn set_events_url(&self, url: Option<String>) {
        self.inner.lock().events_url = url.map(|u| u.trim_end_matches('/').to_string());
    }

    /// Sends the `url_verification` challenge Slack sends when a Request URL is saved
    /// (<https://docs.slack.dev/reference/events/url_verification>); `Ok(true)` when the
    /// answer carries the challenge back.
    pub async fn verify_events_url(&self) -> Result<bool, String> {
        let challenge = rand_hex(40);
        let body = json!({"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}).to_string();
        let d = deliver_http(&self.inner, "/events", "application/json", body, false).await?;
        let b = d.http_body.unwrap_or_default();
        Ok(d.http_status == Some(200)
            && (b.trim() == challenge || serde_json::from_str::<Value>(&b).is_ok_and(|v| v["challenge"] == json!(challenge))))
    }

    /// A crash: the listener and every connection (HTTP and Socket Mode) dropped without a
    /// goodbye; new connections refused until [`FakeSlack::start_again`].
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
        let mut st = self.inner.lock();
        st.running = false;
        st.conns.clear();
        st.pending.clear();
        st.tickets.clear();
        drop(st);
        self.inner.conns_changed.notify_waiters();
    }

    /// Starts it again on the same port with the same state.
    pub async fn start_again(&mut self) -> Result<(), String> {
        if self.server.is_some() {
            return Ok(());
        }
        let mut last = String::new();
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.inner.port)).await {
                Ok(l) => {
                    self.serve(l);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("cannot listen on 127.0.0.1:{} again: {last}", self.inner.port))
    }

    /// Every message the bot posted or changed, in order.
    pub fn messages(&self) -> Vec<BotMessage> {
        self.inner.lock().log.clone()
    }

    /// The next bot message after the last one this method returned, waiting up to `timeout`.
    pub async fn next_message(&self, timeout: Duration) -> Option<BotMessage> {
        let end = Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            {
                let mut st = self.inner.lock();
                if st.cursor < st.log.len() {
                    let m = st.log[st.cursor].clone();
                    st.cursor += 1;
                    return Some(m);
                }
            }
            if tokio::time::timeout_at(end.into(), notified).await.is_err() {
                return None;
            }
        }
    }

    /// The modals the bot opened.
    pub fn views(&self) -> Vec<OpenedView> {
        self.inner.lock().views.clone()
    }

    /// The files the bot uploaded (or announced).
    pub fn files(&self) -> Vec<FileInfo> {
        self.inner.lock().files.clone()
    }

    /// Every Socket Mode ack received.
    pub fn ack_records(&self) -> Vec<AckRecord> {
        self.inner.lock().acks.clone()
    }

    /// The latency of every Socket Mode ack received.
    pub fn acks(&self) -> Vec<Duration> {
        self.inner.lock().acks.iter().map(|a| a.latency).collect()
    }

    /// Every Web API call the fake answered: method and parameters (tokens removed).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.inner.lock().calls.clone()
    }

    /// A message as stored (text and blocks), by channel and ts.
    pub fn message(&self, channel: &str, ts: &str) -> Option<(String, Value)> {
        let st = self.inner.lock();
        st.msgs
            .iter()
            .find(|m| m.channel == channel && m.ts == ts)
            .map(|m| (m.text.clone(), m.blocks.clone()))
    }

    /// The `[adapters.NAME]` body for the HTTP Events API mode, with the signing secret; also
    /// points the fake's deliveries at `hooks_url` (opsbot's `…/hooks/NAME`, see
    /// [`FakeSlack::set_events_url`]).
    pub fn adapter_toml_events(&self, hooks_url: &str) -> (String, Vec<(String, String)>) {
        self.set_events_url(Some(hooks_url.to_string()));
        let toml = format!(
            "type = \"slack\"\nmode = \"events\"\nbot_token = \"${{env:{BOT_TOKEN_ENV}}}\"\nsigning_secret = \"${{env:{SIGNING_SECRET_ENV}}}\"\napi_url = \"{}\"\n",
            self.api_url()
        );
        (
            toml,
            vec![
                (BOT_TOKEN_ENV.to_string(), BOT_TOKEN.to_string()),
                (SIGNING_SECRET_ENV.to_string(), SIGNING_SECRET.to_string()),
            ],
        )
    }

    /// A person as a [`ChatUser`] (added with [`FakeSlack::add_user`]).
    pub fn person(&self, name: &str) -> SlackUser {
        let id = self.add_user(name);
        let cursor = self.inner.lock().log.len();
        SlackUser {
            inner: self.inner.clone(),
            id,
            cursor,
        }
    }
}

async fn say_impl(inner: &Arc<Inner>, user: &str, channel: &str, text: &str, thread_ts: Option<&str>) -> Result<Delivered, String> {
    let (events, in_bot_channel, ts) = {
        let mut st = inner.lock();
        if !st.running {
            return Err("the fake Slack is stopped".into());
        }
        let chan = st.chans.get(channel).ok_or_else(|| format!("no channel {channel}"))?.clone();
        if !chan.members.contains(user) {
            return Err(format!("{user} is not in {channel}"));
        }
        let parent = match thread_ts {
            Some(t) => Some(
                st.msgs
                    .iter()
                    .find(|m| m.channel == channel && m.ts == t)
                    .ok_or_else(|| format!("no message {t} in {channel}"))?
                    .clone(),
            ),
            None => None,
        };
        let ts = next_ts(&mut st);
        let blocks = json!([{"type":"rich_text","block_id":rand_hex(5),"elements":[
            {"type":"rich_text_section","elements":[{"type":"text","text":text}]}]}]);
        st.msgs.push(Msg {
            channel: channel.to_string(),
            ts: ts.clone(),
            thread_ts: thread_ts.map(str::to_string),
            user: user.to_string(),
            text: text.to_string(),
            blocks: blocks.clone(),
            ephemeral_to: None,
        });
        let im = chan.im_of.is_some();
        let client_msg_id = uuid();
        // https://docs.slack.dev/reference/events/message (message.channels / message.im)
        let mut ev = json!({
            "type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
            "event_ts": ts, "channel_type": if im { "im" } else { "channel" }, "team": TEAM_ID,
            "client_msg_id": client_msg_id, "blocks": blocks,
        });
        if let Some(p) = &parent {
            ev["thread_ts"] = json!(p.thread_ts.clone().unwrap_or(p.ts.clone()));
            ev["parent_user_id"] = json!(p.user);
        }
        let mut events = vec![ev.clone()];
        // https://docs.slack.dev/reference/events/app_mention: sent besides `message` when
        // the bot is mentioned in a conversation it is in; never for IMs.
        if !im && text.contains(&format!("<@{BOT_USER_ID}>")) {
            let mut m = json!({
                "type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel,
                "event_ts": ts, "team": TEAM_ID, "client_msg_id": client_msg_id, "blocks": ev["blocks"],
            });
            if let Some(t) = ev.get("thread_ts") {
                m["thread_ts"] = t.clone();
            }
            events.push(m);
        }
        (events, chan.members.contains(BOT_USER_ID), ts)
    };
    if !in_bot_channel {
        return Ok(Delivered {
            ts: Some(ts),
            note: Some("the bot is not in this channel: no event".into()),
            ..Default::default()
        });
    }
    let mut out: Option<Delivered> = None;
    for ev in events {
        let d = deliver_event(inner, ev).await;
        match &mut out {
            None => out = Some(d),
            Some(first) => first.mention = Some(Box::new(d)),
        }
    }
    let mut out = out.unwrap_or_default();
    out.ts = Some(ts);
    Ok(out)
}

fn find_button(blocks: &Value, action_id: &str) -> Option<(String, Value)> {
    for b in blocks.as_array()? {
        let block_id = b.get("block_id").and_then(Value::as_str).unwrap_or("").to_string();
        let mut els: Vec<&Value> = Vec::new();
        if let Some(list) = b.get("elements").and_then(Value::as_array) {
            els.extend(list);
        }
        if let Some(a) = b.get("accessory") {
            els.push(a);
        }
        for e in els {
            if e.get("type").and_then(Value::as_str) == Some("button") && e.get("action_id").and_then(Value::as_str) == Some(action_id) {
                return Some((block_id, e.clone()));
            }
        }
    }
    None
}

fn new_response_url(st: &mut St, port: u16, user: &str, channel: &str, message_ts: Option<&str>, thread_ts: Option<&str>) -> String {
    let id = rand_hex(24);
    st.resp_urls.insert(
        id.clone(),
        RespUrl {
            issued: Instant::now(),
            uses: 0,
            user: user.to_string(),
            channel: channel.to_string(),
            message_ts: message_ts.map(str::to_string),
            thread_ts: thread_ts.map(str::to_string),
        },
    );
    format!("http://127.0.0.1:{port}/respond/{TEAM_ID}/{id}")
}

fn new_trigger(st: &mut St, user: &str, channel: &str) -> String {
    let id = format!("{}.{}.{}", now_secs(), 1_700_000_000u64 + st.seq, rand_hex(32));
    st.triggers.insert(
        id.clone(),
        Trigger {
            issued: Instant::now(),
            used: false,
            user: user.to_string(),
            channel: channel.to_string(),
        },
    );
    id
}

fn ack_body_value(body: &str) -> Value {
    serde_json::from_str::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"text": body}))
}

/// Delivers an event about the bot's own doing in the background (see
/// [`FakeSlack::set_echo_bot_messages`]).
fn echo_event(inner: &Arc<Inner>, event: Value) {
    let inner = inner.clone();
    tokio::spawn(async move {
        deliver_event(&inner, event).await;
    });
}

/// Wraps an event in an `event_callback` and delivers it (Socket Mode or HTTP).
async fn deliver_event(inner: &Arc<Inner>, event: Value) -> Delivered {
    let event_id = rand_id("Ev", 9);
    // https://docs.slack.dev/apis/events-api/#callback-field
    let payload = json!({
        "token": VERIFICATION_TOKEN, "team_id": TEAM_ID, "context_team_id": TEAM_ID, "api_app_id": APP_ID,
        "event": event, "type": "event_callback", "event_id": event_id, "event_time": now_secs(),
        "authorizations": [{"enterprise_id": null, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": true, "is_enterprise_install": false}],
        "is_ext_shared_channel": false, "event_context": format!("4-{}", rand_hex(40)),
    });
    let mut d = deliver(inner, "events_api", payload, false).await;
    d.event_id = Some(event_id);
    d
}

/// Delivers one payload: over HTTP when an events URL is set, else over Socket Mode.
async fn deliver(inner: &Arc<Inner>, kind: &str, payload: Value, accepts_response_payload: bool) -> Delivered {
    let url = inner.lock().events_url.clone();
    if url.is_some() {
        let (path, ctype, body) = match kind {
            "events_api" => ("/events", "application/json", payload.to_string()),
            "slash_commands" => {
                let pairs: Vec<(String, String)> = payload
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    "/commands",
                    "application/x-www-form-urlencoded",
                    serde_urlencoded::to_string(pairs).unwrap_or_default(),
                )
            }
            _ => (
                "/interactive",
                "application/x-www-form-urlencoded",
                serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap_or_default(),
            ),
        };
        return match deliver_http(inner, path, ctype, body, kind == "events_api").await {
            Ok(d) => d,
            Err(e) => Delivered {
                note: Some(e),
                ..Default::default()
            },
        };
    }
    deliver_socket(inner, kind, payload, accepts_response_payload).await
}

/// One signed POST (and Slack's retries for events: `X-Slack-Retry-Num`,
/// `X-Slack-Retry-Reason`) — <https://docs.slack.dev/apis/events-api/#retries>. Slack retries
/// up to 3 times (immediately, after 1 and 5 minutes); the fake retries at once.
async fn deliver_http(inner: &Arc<Inner>, path: &str, ctype: &str, body: String, retries: bool) -> Result<Delivered, String> {
    let (base, timeout) = {
        let st = inner.lock();
        (st.events_url.clone().ok_or("no events URL set")?, st.ack_timeout)
    };
    let url = format!("{base}{path}");
    let mut d = Delivered::default();
    let mut reason: Option<&str> = None;
    let max = if retries { 4 } else { 1 };
    for attempt in 0..max {
        let ts = now_secs().to_string();
        let mut req = inner
            .http
            .post(&url)
            .timeout(timeout)
            .header("content-type", ctype)
            .header("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", sign(SIGNING_SECRET, &ts, body.as_bytes()))
            .body(body.clone());
        if let Some(r) = reason {
            req = req
                .header("x-slack-retry-num", attempt.to_string())
                .header("x-slack-retry-reason", r);
        }
        let start = Instant::now();
        d.attempts = attempt + 1;
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // An app may ask for no retries (https://docs.slack.dev/apis/events-api/#retries).
                let no_retry = resp.headers().get("x-slack-no-retry").is_some_and(|v| v.as_bytes() == b"1");
                let text = resp.text().await.unwrap_or_default();
                d.http_status = Some(status);
                d.http_body = Some(text);
                if status == 200 {
                    d.acked = Some(start.elapsed());
                    return Ok(d);
                }
                if no_retry {
                    return Ok(d);
                }
                reason = Some("http_error");
            }
            Err(e) if e.is_timeout() => {
                d.http_status = None;
                d.http_body = None;
                reason = Some("http_timeout");
            }
            Err(e) => {
                d.http_status = None;
                d.http_body = None;
                d.note = Some(format!("POST {url}: {e}"));
                reason = Some("connection_failed");
            }
        }
    }
    Ok(d)
}

/// Sends an envelope on the newest socket and waits for its ack; `events_api` envelopes not
/// acked in time are sent again with `retry_attempt` + 1 and `retry_reason` `timeout` (up to 3
/// retries) — <https://docs.slack.dev/apis/events-api/using-socket-mode#acknowledge>.
async fn deliver_socket(inner: &Arc<Inner>, kind: &str, payload: Value, accepts_response_payload: bool) -> Delivered {
    let (ack_timeout, connect_wait) = {
        let st = inner.lock();
        (st.ack_timeout, st.connect_wait)
    };
    let mut d = Delivered::default();
    let retries = if kind == "events_api" { 3 } else { 0 };
    let mut retry_reason = "";
    for attempt in 0..=retries {
        // A connection to send on (Slack holds events while the app reconnects).
        let end = Instant::now() + connect_wait;
        let tx = loop {
            let notified = inner.conns_changed.notified();
            if let Some(c) = inner.lock().conns.last() {
                break Some(c.tx.clone());
            }
            if tokio::time::timeout_at(end.into(), notified).await.is_err() {
                break None;
            }
        };
        let Some(tx) = tx else {
            d.note = Some(format!("no Socket Mode connection within {connect_wait:?}"));
            return d;
        };
        let envelope_id = uuid();
        let (ack_tx, ack_rx) = oneshot::channel();
        inner.lock().pending.insert(envelope_id.clone(), ack_tx);
        let mut env = json!({
            "envelope_id": envelope_id, "payload": payload, "type": kind,
            "accepts_response_payload": accepts_response_payload,
        });
        if kind == "events_api" {
            env["retry_attempt"] = json!(attempt);
            env["retry_reason"] = json!(retry_reason);
        }
        let start = Instant::now();
        d.envelope_id = Some(envelope_id.clone());
        d.attempts = attempt + 1;
        if tx.send(Out::Text(env.to_string())).is_err() {
            inner.lock().pending.remove(&envelope_id);
            retry_reason = "timeout";
            continue;
        }
        match tokio::time::timeout(ack_timeout, ack_rx).await {
            Ok(Ok(ack)) => {
                let latency = ack.at.duration_since(start);
                d.acked = Some(latency);
                d.ack_payload = ack.payload.clone();
                inner.lock().acks.push(AckRecord {
                    envelope_id,
                    kind: kind.to_string(),
                    latency,
                    retry_attempt: attempt,
                    payload: ack.payload,
                });
                return d;
            }
            _ => {
                inner.lock().pending.remove(&envelope_id);
                retry_reason = "timeout";
            }
        }
    }
    d.note = Some("not acknowledged".into());
    d
}

// ---------------------------------------------------------------------------------------------
// The Web API.

/// Parameters from the query string and a form or JSON body, merged (body wins).
struct Params(Map<String, Value>);

impl Params {
    fn str(&self, k: &str) -> Option<String> {
        match self.0.get(k)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    /// A JSON-valued argument: a JSON body's value, or a form value holding JSON text.
    fn json(&self, k: &str) -> Result<Option<Value>, ()> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|_| ()),
            Some(v) => Ok(Some(v.clone())),
        }
    }
}

fn ok(v: Value) -> Response {
    let mut v = v;
    v["ok"] = json!(true);
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn fail(error: &str) -> Response {
    (StatusCode::OK, axum::Json(json!({"ok": false, "error": error}))).into_response()
}

fn fail_with(error: &str, messages: Vec<String>) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"ok": false, "error": error, "errors": messages, "response_metadata": {"messages": messages}})),
    )
        .into_response()
}

fn parse_params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, &'static str> {
    let mut m = Map::new();
    if let Some(q) = query {
        for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(q).map_err(|_| "invalid_form_data")? {
            m.insert(k, Value::String(v));
        }
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if body.is_empty() {
        return Ok(Params(m));
    }
    if ctype.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => m.extend(o),
            _ => return Err("invalid_json"),
        }
    } else if ctype.starts_with("application/x-www-form-urlencoded") || ctype.starts_with("text/plain") {
        for (k, v) in serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(|_| "invalid_form_data")? {
            m.insert(k, Value::String(v));
        }
    } else if ctype.starts_with("multipart/form-data") {
        for (name, _, data) in multipart_parts(&ctype, body) {
            m.insert(name, Value::String(String::from_utf8_lossy(&data).into_owned()));
        }
    } else if ctype.is_empty() {
        return Err("missing_post_type");
    } else {
        return Err("invalid_post_type");
    }
    Ok(Params(m))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"))
}

/// A small multipart/form-data reader: (name, filename, bytes) per part.
fn multipart_parts(ctype: &str, body: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(b) = ctype.split(';').find_map(|p| p.trim().strip_prefix("boundary=")) else {
        return Vec::new();
    };
    let delim = format!("--{}", b.trim_matches('"'));
    let mut out = Vec::new();
    let d = delim.as_bytes();
    let mut pos = 0;
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
    };
    while let Some(start) = find(body, d, pos) {
        let after = start + d.len();
        if body.get(after..after + 2) == Some(b"--") {
            break;
        }
        let Some(hdr_end) = find(body, b"\r\n\r\n", after) else { break };
        let headers = String::from_utf8_lossy(&body[after..hdr_end]).to_string();
        let data_start = hdr_end + 4;
        let Some(next) = find(body, d, data_start) else { break };
        let data_end = next.saturating_sub(2).max(data_start);
        let mut name = String::new();
        let mut filename = None;
        for part in headers.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("name=") {
                name = v.trim_matches('"').to_string();
            } else if let Some(v) = part.strip_prefix("filename=") {
                filename = Some(v.trim_matches('"').to_string());
            }
        }
        out.push((name, filename, body[data_start..data_end].to_vec()));
        pos = next;
    }
    out
}

enum Tok {
    Bot,
    App,
}

/// `ANY /api/METHOD` — <https://docs.slack.dev/apis/web-api/>: HTTP 200 with
/// `{"ok":false,"error":…}` for errors, 429 with `Retry-After` when rate limited.
async fn api(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match parse_params(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        // A JSON body cannot carry the token: it must come as a bearer token
        // (https://docs.slack.dev/apis/web-api/#posting_json).
        .or_else(|| if is_json(&headers) { None } else { params.str("token") });
    let tok = match token.as_deref() {
        None | Some("") => return fail("not_authed"),
        Some(BOT_TOKEN) => Tok::Bot,
        Some(APP_TOKEN) => Tok::App,
        Some(_) => return fail("invalid_auth"),
    };
    {
        let mut st = inner.lock();
        let mut logged = params.0.clone();
        logged.remove("token");
        st.calls.push((method.clone(), Value::Object(logged)));
        if let Some((n, secs)) = st.rate.get_mut(&method)
            && *n > 0
        {
            *n -= 1;
            let secs = *secs;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                axum::Json(json!({"ok": false, "error": "ratelimited"})),
            )
                .into_response();
        }
        if let Some(e) = st.fail.get_mut(&method).and_then(VecDeque::pop_front) {
            return fail(&e);
        }
    }
    // App-level tokens only open connections; bot tokens cannot
    // (https://docs.slack.dev/reference/methods/apps.connections.open).
    match (method.as_str(), tok) {
        ("apps.connections.open", Tok::App) => return connections_open(&inner),
        ("apps.connections.open", Tok::Bot) | (_, Tok::App) => return fail("not_allowed_token_type"),
        _ => {}
    }
    match method.as_str() {
        "auth.test" => ok(json!({
            "url": format!("https://{TEAM_DOMAIN}.slack.com/"), "team": "opsbot test", "user": "opsbot",
            "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": false,
        })),
        "chat.postMessage" => post_message(&inner, &params),
        "chat.update" => update_message(&inner, &params),
        "views.open" => views_open(&inner, &params),
        "files.getUploadURLExternal" => get_upload_url(&inner, &params),
        "files.completeUploadExternal" => complete_upload(&inner, &params),
        "conversations.info" => conversations_info(&inner, &params),
        "users.info" => users_info(&inner, &params),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error": "unknown_method", "req_method": method})),
        )
            .into_response(),
    }
}

/// <https://docs.slack.dev/reference/methods/apps.connections.open>
fn connections_open(inner: &Arc<Inner>) -> Response {
    let ticket = uuid();
    inner.lock().tickets.insert(ticket.clone());
    ok(json!({"url": format!("ws://127.0.0.1:{}/link/?ticket={ticket}&app_id={APP_ID}", inner.port)}))
}

/// Resolves a channel argument to a conversation the bot may post in: `C…`/`D…`, or a user id
/// (the IM with that person), per chat.postMessage's `channel` argument.
fn resolve_channel(st: &St, channel: &str) -> Result<Chan, &'static str> {
    if let Some(c) = st.chans.get(channel) {
        if !c.members.contains(BOT_USER_ID) {
            return Err("not_in_channel");
        }
        return Ok(c.clone());
    }
    if channel.starts_with('U')
        && let Some(c) = st.chans.values().find(|c| c.im_of.as_deref() == Some(channel))
    {
        return Ok(c.clone());
    }
    Err("channel_not_found")
}

/// Validates `text`/`blocks` of a message; `(text, blocks)`.
fn message_content(params: &Params) -> Result<(String, Value), Box<Response>> {
    let text = params.str("text").unwrap_or_default();
    let blocks = match params.json("blocks") {
        Ok(b) => b,
        Err(()) => return Err(Box::new(fail("invalid_blocks_format"))),
    };
    if let Some(b) = &blocks {
        if !b.is_array() {
            return Err(Box::new(fail("invalid_blocks_format")));
        }
        if let Err(m) = validate_blocks(b, Surface::Message) {
            return Err(Box::new(fail_with("invalid_blocks", m)));
        }
    }
    let has_blocks = blocks.as_ref().and_then(Value::as_array).is_some_and(|b| !b.is_empty());
    let has_attachments = params.json("attachments").ok().flatten().is_some();
    if text.trim().is_empty() && !has_blocks && !has_attachments {
        return Err(Box::new(fail("no_text")));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(Box::new(fail("msg_too_long")));
    }
    Ok((text, blocks.unwrap_or(Value::Null)))
}

/// <https://docs.slack.dev/reference/methods/chat.postMessage>
fn post_message(inner: &Arc<Inner>, params: &Params) -> Response {
    let Some(channel) = params.str("channel").filter(|c| !c.is_empty()) else {
        return fail("channel_not_found");
    };
    let (text, blocks) = match message_content(params) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut st = inner.lock();
    let chan = match resolve_channel(&st, &channel) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut thread_ts = params.str("thread_ts").filter(|t| !t.is_empty());
    // A reply to a reply goes to the thread's parent, as Slack does.
    if let Some(t) = &thread_ts
        && let Some(parent) = st.msgs.iter().find(|m| m.channel == chan.id && &m.ts == t)
        && let Some(p) = &parent.thread_ts
    {
        thread_ts = Some(p.clone());
    }
    let ts = next_ts(&mut st);
    st.msgs.push(Msg {
        channel: chan.id.clone(),
        ts: ts.clone(),
        thread_ts: thread_ts.clone(),
        user: BOT_USER_ID.into(),
        text: text.clone(),
        blocks: blocks.clone(),
        ephemeral_to: None,
    });
    st.log.push(BotMessage {
        channel: chan.id.clone(),
        ts: ts.clone(),
        thread_ts: thread_ts.clone(),
        text: text.clone(),
        blocks: blocks.clone(),
        how: How::Posted,
        ephemeral_to: None,
        replaces: false,
    });
    let echo = st.echo_bot_messages;
    drop(st);
    inner.changed.notify_waiters();
    let mut message = json!({
        "type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "text": text, "ts": ts, "team": TEAM_ID,
        "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": "opsbot", "team_id": TEAM_ID, "deleted": false},
    });
    if !blocks.is_null() {
        message["blocks"] = blocks;
    }
    if let Some(t) = &thread_ts {
        message["thread_ts"] = json!(t);
    }
    if echo {
        let mut ev = message.clone();
        ev["channel"] = json!(chan.id);
        ev["event_ts"] = json!(ts);
        ev["channel_type"] = json!(if chan.im_of.is_some() { "im" } else { "channel" });
        echo_event(inner, ev);
    }
    ok(json!({"channel": chan.id, "ts": ts, "message": message}))
}

/// <https://docs.slack.dev/reference/methods/chat.update>
fn update_message(inner: &Arc<Inner>, params: &Params) -> Response {
    let Some(channel) = params.str("channel").filter(|c| !c.is_empty()) else {
        return fail("channel_not_found");
    };
    let Some(ts) = params.str("ts").filter(|t| !t.is_empty()) else {
        return fail("message_not_found");
    };
    let (text, blocks) = match message_content(params) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut st = inner.lock();
    let chan = match resolve_channel(&st, &channel) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // An ephemeral message cannot be changed with chat.update (only through its response_url).
    let Some(m) = st
        .msgs
        .iter_mut()
        .find(|m| m.channel == chan.id && m.ts == ts && m.ephemeral_to.is_none())
    else {
        return fail("message_not_found");
    };
    if m.user != BOT_USER_ID {
        return fail("cant_update_message");
    }
    let previous = json!({"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": m.text, "ts": ts, "blocks": m.blocks});
    m.text = text.clone();
    m.blocks = blocks.clone();
    let thread_ts = m.thread_ts.clone();
    st.log.push(BotMessage {
        channel: chan.id.clone(),
        ts: ts.clone(),
        thread_ts: thread_ts.clone(),
        text: text.clone(),
        blocks: blocks.clone(),
        how: How::Updated,
        ephemeral_to: None,
        replaces: true,
    });
    let edit_ts = next_ts(&mut st);
    let echo = st.echo_bot_messages;
    drop(st);
    inner.changed.notify_waiters();
    let mut message = json!({"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "text": text,
        "ts": ts, "team": TEAM_ID, "blocks": blocks, "edited": {"user": BOT_USER_ID, "ts": edit_ts}});
    if let Some(t) = &thread_ts {
        message["thread_ts"] = json!(t);
    }
    if echo {
        echo_event(
            inner,
            json!({"type": "message", "subtype": "message_changed", "hidden": true, "channel": chan.id,
                "channel_type": if chan.im_of.is_some() { "im" } else { "channel" },
                "ts": edit_ts, "event_ts": edit_ts, "message": message, "previous_message": previous}),
        );
    }
    ok(json!({"channel": chan.id, "ts": ts, "text": text, "message": message}))
}

/// <https://docs.slack.dev/reference/methods/views.open> — a trigger is valid for 3 seconds
/// and once (<https://docs.slack.dev/interactivity/handling-user-interaction#modal_responses>).
fn views_open(inner: &Arc<Inner>, params: &Params) -> Response {
    let view = match params.json("view") {
        Ok(Some(v)) => v,
        Ok(None) => return fail_with("invalid_arguments", vec!["[ERROR] missing required field: view".into()]),
        Err(()) => return fail_with("invalid_arguments", vec!["[ERROR] view must be valid JSON".into()]),
    };
    if view.to_string().len() > 250_000 {
        return fail("view_too_large");
    }
    let Some(trigger_id) = params.str("trigger_id").filter(|t| !t.is_empty()) else {
        return fail_with("invalid_arguments", vec!["[ERROR] missing required field: trigger_id".into()]);
    };
    if let Err(m) = validate_view(&view) {
        return fail_with("invalid_arguments", m);
    }
    let mut st = inner.lock();
    let Some(t) = st.triggers.get_mut(&trigger_id) else {
        return fail("invalid_trigger_id");
    };
    if t.used || t.issued.elapsed() > Duration::from_secs(3) {
        return fail("expired_trigger_id");
    }
    t.used = true;
    let (user, channel) = (t.user.clone(), t.channel.clone());
    let id = rand_id("V", 10);
    st.views.push(OpenedView {
        id: id.clone(),
        user,
        view: view.clone(),
        channel,
    });
    let mut v = view;
    v["id"] = json!(id);
    v["team_id"] = json!(TEAM_ID);
    v["app_id"] = json!(APP_ID);
    v["bot_id"] = json!(BOT_ID);
    v["root_view_id"] = json!(id);
    v["state"] = json!({"values": {}});
    v["hash"] = json!(format!("{}.{}", now_secs(), rand_hex(8)));
    ok(json!({"view": v}))
}

/// <https://docs.slack.dev/reference/methods/files.getUploadURLExternal>
fn get_upload_url(inner: &Arc<Inner>, params: &Params) -> Response {
    let Some(filename) = params.str("filename").filter(|f| !f.is_empty()) else {
        return fail_with("invalid_arguments", vec!["[ERROR] missing required field: filename".into()]);
    };
    let Some(length) = params.str("length").and_then(|l| l.parse::<usize>().ok()) else {
        return fail_with("invalid_arguments", vec!["[ERROR] missing required field: length".into()]);
    };
    if length == 0 {
        return fail("invalid_length");
    }
    let id = rand_id("F", 10);
    inner.lock().files.push(FileInfo {
        id: id.clone(),
        filename,
        length,
        bytes: None,
        title: None,
        channel: None,
        thread_ts: None,
        completed: false,
    });
    ok(json!({"upload_url": format!("http://127.0.0.1:{}/upload/{id}", inner.port), "file_id": id}))
}

/// The upload URL: raw bytes or a multipart form; answers `200 OK - LENGTH`.
async fn upload(State(inner): State<Arc<Inner>>, Path(file_id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let data = if ctype.starts_with("multipart/form-data") {
        match multipart_parts(&ctype, &body).into_iter().find(|(_, f, _)| f.is_some()) {
            Some((_, _, d)) => d,
            None => return (StatusCode::BAD_REQUEST, "no file part").into_response(),
        }
    } else {
        body.to_vec()
    };
    let mut st = inner.lock();
    let Some(f) = st.files.iter_mut().find(|f| f.id == file_id) else {
        return (StatusCode::NOT_FOUND, "file not found").into_response();
    };
    let n = data.len();
    f.bytes = Some(data);
    (StatusCode::OK, format!("OK - {n}")).into_response()
}

/// <https://docs.slack.dev/reference/methods/files.completeUploadExternal>
fn complete_upload(inner: &Arc<Inner>, params: &Params) -> Response {
    let files = match params.json("files") {
        Ok(Some(Value::Array(f))) if !f.is_empty() => f,
        _ => return fail_with("invalid_arguments", vec!["[ERROR] missing required field: files".into()]),
    };
    let channel = params
        .str("channel_id")
        .or_else(|| params.str("channels"))
        .filter(|c| !c.is_empty());
    let thread_ts = params.str("thread_ts").filter(|t| !t.is_empty());
    let comment = params.str("initial_comment").unwrap_or_default();
    let mut st = inner.lock();
    let chan = match &channel {
        Some(c) => match resolve_channel(&st, c) {
            Ok(c) => Some(c),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let mut out = Vec::new();
    for f in &files {
        let Some(id) = f.get("id").and_then(Value::as_str) else {
            return fail_with("invalid_arguments", vec!["[ERROR] missing required field: id".into()]);
        };
        let Some(info) = st.files.iter().find(|x| x.id == id) else {
            return fail("file_not_found");
        };
        match &info.bytes {
            None => return fail("file_not_found"),
            Some(b) if b.len() != info.length => return fail("file_upload_size_mismatch"),
            Some(_) => {}
        }
    }
    for f in &files {
        let id = f.get("id").and_then(Value::as_str).unwrap_or_default();
        let title = f.get("title").and_then(Value::as_str).map(str::to_string);
        if let Some(info) = st.files.iter_mut().find(|x| x.id == id) {
            info.title = title.clone().or(Some(info.filename.clone()));
            info.channel = chan.as_ref().map(|c| c.id.clone());
            info.thread_ts = thread_ts.clone();
            info.completed = true;
            out.push(json!({"id": id, "title": info.title}));
        }
    }
    if let Some(c) = &chan {
        let ts = next_ts(&mut st);
        let blocks = json!(files);
        st.msgs.push(Msg {
            channel: c.id.clone(),
            ts: ts.clone(),
            thread_ts: thread_ts.clone(),
            user: BOT_USER_ID.into(),
            text: comment.clone(),
            blocks: Value::Null,
            ephemeral_to: None,
        });
        st.log.push(BotMessage {
            channel: c.id.clone(),
            ts,
            thread_ts,
            text: comment,
            blocks,
            how: How::File,
            ephemeral_to: None,
            replaces: false,
        });
    }
    drop(st);
    inner.changed.notify_waiters();
    ok(json!({"files": out}))
}

/// <https://docs.slack.dev/reference/methods/conversations.info>
fn conversations_info(inner: &Arc<Inner>, params: &Params) -> Response {
    let Some(channel) = params.str("channel") else {
        return fail("channel_not_found");
    };
    let st = inner.lock();
    let Some(c) = st.chans.get(&channel) else {
        return fail("channel_not_found");
    };
    let im = c.im_of.is_some();
    let mut ch = json!({
        "id": c.id, "name": c.name, "is_channel": !im, "is_group": false, "is_im": im, "is_mpim": false,
        "is_private": false, "is_archived": false, "is_member": c.members.contains(BOT_USER_ID), "created": 1_700_000_000,
    });
    if let Some(u) = &c.im_of {
        ch["user"] = json!(u);
        ch.as_object_mut().map(|o| o.remove("name"));
    }
    ok(json!({"channel": ch}))
}

/// <https://docs.slack.dev/reference/methods/users.info>
fn users_info(inner: &Arc<Inner>, params: &Params) -> Response {
    let Some(user) = params.str("user") else {
        return fail("user_not_found");
    };
    let st = inner.lock();
    if user == BOT_USER_ID {
        return ok(
            json!({"user": {"id": BOT_USER_ID, "team_id": TEAM_ID, "name": "opsbot", "is_bot": true,
            "profile": {"display_name": "opsbot", "real_name": "opsbot", "bot_id": BOT_ID}}}),
        );
    }
    let Some(p) = st.people.iter().find(|p| p.id == user) else {
        return fail("user_not_found");
    };
    ok(
        json!({"user": {"id": p.id, "team_id": TEAM_ID, "name": p.name, "real_name": p.name, "is_bot": false, "deleted": false,
        "profile": {"display_name": p.name, "real_name": p.name}}}),
    )
}

/// `POST /respond/TEAM/ID` — a `response_url`
/// (<https://docs.slack.dev/interactivity/handling-user-interaction#message_responses>): up
/// to 5 uses within 30 minutes; `replace_original` changes the message the action came from.
async fn respond(State(inner): State<Arc<Inner>>, Path((team, id)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Response {
    if team != TEAM_ID {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"ok": false, "error": "invalid_url"}))).into_response();
    }
    let params = match parse_params(None, &headers, &body) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(json!({"ok": false, "error": e}))).into_response(),
    };
    let mut st = inner.lock();
    let Some(r) = st.resp_urls.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"ok": false, "error": "invalid_url"}))).into_response();
    };
    if r.issued.elapsed() > Duration::from_secs(30 * 60) {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"ok": false, "error": "expired_url"}))).into_response();
    }
    if r.uses >= 5 {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"ok": false, "error": "used_url"}))).into_response();
    }
    let (user, channel, message_ts, orig_thread) = (r.user.clone(), r.channel.clone(), r.message_ts.clone(), r.thread_ts.clone());
    // `delete_original`: the message the action came from goes away.
    if params.str("delete_original").is_some_and(|v| v == "true") {
        let Some(mts) = message_ts else {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"ok": false, "error": "message_not_found"})),
            )
                .into_response();
        };
        r.uses += 1;
        st.msgs.retain(|m| !(m.channel == channel && m.ts == mts));
        st.log.push(BotMessage {
            channel,
            ts: mts,
            thread_ts: orig_thread,
            text: String::new(),
            blocks: Value::Null,
            how: How::Deleted,
            ephemeral_to: None,
            replaces: true,
        });
        drop(st);
        inner.changed.notify_waiters();
        return (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response();
    }
    let (text, blocks) = match message_content(&params) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    if let Some(r) = st.resp_urls.get_mut(&id) {
        r.uses += 1;
    }
    let replace = params.str("replace_original").is_some_and(|v| v == "true");
    let in_channel = params.str("response_type").is_some_and(|v| v == "in_channel");
    if replace && let Some(mts) = &message_ts {
        if let Some(m) = st.msgs.iter_mut().find(|m| m.channel == channel && &m.ts == mts) {
            m.text = text.clone();
            m.blocks = blocks.clone();
        }
        st.log.push(BotMessage {
            channel,
            ts: mts.clone(),
            thread_ts: orig_thread,
            text,
            blocks,
            how: How::ResponseUrl,
            ephemeral_to: None,
            replaces: true,
        });
    } else {
        let ts = next_ts(&mut st);
        let thread_ts = params.str("thread_ts").or(orig_thread);
        st.msgs.push(Msg {
            channel: channel.clone(),
            ts: ts.clone(),
            thread_ts: thread_ts.clone(),
            user: BOT_USER_ID.into(),
            text: text.clone(),
            blocks: blocks.clone(),
            ephemeral_to: if in_channel { None } else { Some(user.clone()) },
        });
        st.log.push(BotMessage {
            channel,
            ts,
            thread_ts,
            text,
            blocks,
            how: How::ResponseUrl,
            ephemeral_to: if in_channel { None } else { Some(user) },
            replaces: false,
        });
    }
    drop(st);
    inner.changed.notify_waiters();
    (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
}

/// The Socket Mode WebSocket (`/link/?ticket=…`): one use per ticket from
/// `apps.connections.open`; `hello` first
/// (<https://docs.slack.dev/apis/events-api/using-socket-mode#connect>).
async fn link(State(inner): State<Arc<Inner>>, RawQuery(query): RawQuery, ws: WebSocketUpgrade) -> Response {
    let ticket = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|v| v.into_iter().find(|(k, _)| k == "ticket").map(|(_, v)| v));
    let valid = ticket.is_some_and(|t| inner.lock().tickets.remove(&t));
    if !valid {
        return (StatusCode::UNAUTHORIZED, "invalid or used ticket").into_response();
    }
    ws.on_upgrade(move |socket| socket_session(inner, socket))
}

async fn socket_session(inner: Arc<Inner>, socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = SEQ.fetch_add(1, Ordering::Relaxed);
    let n = {
        let mut st = inner.lock();
        if !st.running {
            return;
        }
        st.conns.push(Conn { id, tx });
        (st.conns.len(), st.ping_interval)
    };
    let (n, ping_every) = n;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    inner.conns_changed.notify_waiters();
    let (mut sink, mut stream) = socket.split();
    let hello = json!({
        "type": "hello", "num_connections": n,
        "debug_info": {"host": "applink-fake-1", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": APP_ID},
    });
    if sink.send(Message::Text(hello.to_string().into())).await.is_ok() {
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Out::Text(t)) => {
                        if sink.send(Message::Text(t.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Out::Close) => {
                        let _ = sink.send(Message::Close(None)).await;
                        break;
                    }
                    // Dropped by stop(): a crash, no close frame.
                    None => break,
                },
                // Slack pings its Socket Mode clients (the SDKs time out without them).
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Bytes::from_static(b"ping"))).await.is_err() {
                        break;
                    }
                }
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(t))) => on_ack(&inner, t.as_str()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    inner.lock().conns.retain(|c| c.id != id);
    inner.conns_changed.notify_waiters();
}

/// `{"envelope_id": …, "payload": …}` from the app.
fn on_ack(inner: &Arc<Inner>, text: &str) {
    let at = Instant::now();
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        eprintln!("fake Slack: a Socket Mode message that is not JSON: {text:.200}");
        return;
    };
    let Some(id) = v.get("envelope_id").and_then(Value::as_str) else {
        eprintln!("fake Slack: a Socket Mode message without envelope_id: {text:.200}");
        return;
    };
    let waiter = inner.lock().pending.remove(id);
    match waiter {
        Some(w) => {
            let _ = w.send(Ack {
                at,
                payload: v.get("payload").cloned(),
            });
        }
        None => eprintln!("fake Slack: an ack for an unknown or late envelope {id}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The conformance suite's view.

#[async_trait::async_trait]
impl ChatServer for FakeSlack {
    fn platform(&self) -> &'static str {
        "slack"
    }

    fn adapter_toml(&self) -> (String, Vec<(String, String)>) {
        let toml = format!(
            "type = \"slack\"\nbot_token = \"${{env:{BOT_TOKEN_ENV}}}\"\napp_token = \"${{env:{APP_TOKEN_ENV}}}\"\napi_url = \"{}\"\n",
            self.api_url()
        );
        (
            toml,
            vec![
                (BOT_TOKEN_ENV.to_string(), BOT_TOKEN.to_string()),
                (APP_TOKEN_ENV.to_string(), APP_TOKEN.to_string()),
            ],
        )
    }

    fn room(&self) -> String {
        CHANNEL_ID.to_string()
    }

    fn room_channel(&self) -> String {
        CHANNEL_ID.to_string()
    }

    async fn user(&self, name: &str) -> Result<Box<dyn ChatUser>, String> {
        Ok(Box::new(self.person(name)))
    }

    async fn stop(&mut self) {
        FakeSlack::stop(self).await;
    }

    async fn start(&mut self) -> Result<(), String> {
        self.start_again().await
    }

    /// Socket Mode: the time from an envelope sent to its acknowledgement, over every envelope
    /// of the run (the target is under 5 ms at p99).
    fn figures(&self) -> Vec<(String, String)> {
        let mut v = self.acks();
        if v.is_empty() {
            return Vec::new();
        }
        v.sort();
        let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        vec![(
            "event → ack".to_string(),
            format!(
                "p50 {:.2?} p99 {:.2?} max {:.2?} over {} envelopes",
                p(0.5),
                p(0.99),
                v[v.len() - 1],
                v.len()
            ),
        )]
    }
}

/// A person in the fake workspace: says things as the Slack client would (text [`escape`]d,
/// `opsbot: x` becomes a mention `<@BOT> x`) and hears what the bot posts where they can see
/// it ([`Heard::text`](crate::Heard) is the message's `text` field, [`unescape`]d as shown).
pub struct SlackUser {
    inner: Arc<Inner>,
    /// The person's user id.
    pub id: String,
    cursor: usize,
}

#[async_trait::async_trait]
impl ChatUser for SlackUser {
    fn account(&self) -> String {
        self.id.clone()
    }

    async fn say(&mut self, room: &str, text: &str) -> Result<(), String> {
        // What the Slack client sends for what was typed: escaped, the mention as markup.
        let text = match text.strip_prefix("opsbot: ") {
            Some(rest) => format!("<@{BOT_USER_ID}> {}", escape(rest)),
            None => escape(text),
        };
        let d = say_impl(&self.inner, &self.id, room, &text, None).await?;
        match d.note {
            Some(n) if d.acked.is_none() => Err(format!("not delivered to the bot: {n}")),
            _ => Ok(()),
        }
    }

    async fn dm(&mut self, text: &str) -> Result<(), String> {
        let im = {
            let st = self.inner.lock();
            st.chans
                .values()
                .find(|c| c.im_of.as_deref() == Some(&self.id))
                .map(|c| c.id.clone())
                .ok_or("no IM")?
        };
        let d = say_impl(&self.inner, &self.id, &im, &escape(text), None).await?;
        match d.note {
            Some(n) if d.acked.is_none() => Err(format!("not delivered to the bot: {n}")),
            _ => Ok(()),
        }
    }

    async fn next(&mut self, timeout: Duration) -> Option<Heard> {
        let end = Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            {
                let st = self.inner.lock();
                while self.cursor < st.log.len() {
                    let m = &st.log[self.cursor];
                    self.cursor += 1;
                    let Some(chan) = st.chans.get(&m.channel) else { continue };
                    if !chan.members.contains(&self.id) {
                        continue;
                    }
                    if m.ephemeral_to.as_ref().is_some_and(|u| u != &self.id) || m.how == How::Deleted {
                        continue;
                    }
                    return Some(Heard {
                        room: if chan.im_of.is_some() { None } else { Some(m.channel.clone()) },
                        text: unescape(&m.text),
                        id: Some(m.ts.clone()),
                        replaces: if m.replaces { Some(m.ts.clone()) } else { None },
                        thread: m.thread_ts.clone(),
                    });
                }
            }
            if tokio::time::timeout_at(end.into(), notified).await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's worked example in "Verifying requests from Slack"
    /// (<https://docs.slack.dev/authentication/verifying-requests-from-slack>).
    #[test]
    fn signature_matches_slacks_documented_example() {
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body.as_bytes()),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn ts_strictly_increase_and_multipart_parts_are_read() {
        let mut last = String::new();
        let mut clock = 0u128;
        for _ in 0..1000 {
            let ts = ts_after(&mut clock);
            let (secs, micros) = ts.split_once('.').expect("SECONDS.MICROS");
            assert_eq!(micros.len(), 6, "{ts}");
            assert!(secs.len() == 10 && secs.bytes().all(|b| b.is_ascii_digit()), "{ts}");
            assert!(last.is_empty() || ts > last, "{ts} after {last}");
            last = ts;
        }
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--XyZ--\r\n";
        let parts = multipart_parts("multipart/form-data; boundary=XyZ", body);
        assert_eq!(parts, vec![("file".to_string(), Some("a.txt".to_string()), b"hello".to_vec())]);
    }
}
