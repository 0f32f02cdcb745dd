//! A local fake of Mattermost: the subset of the REST API v4, the WebSocket event stream, slash
//! commands and interactive message buttons that opsbot's Mattermost adapter uses, written from
//! the published references (no Mattermost server can run here: it needs PostgreSQL and a
//! 300 MB binary).
//!
//! References (each handler cites the page it follows):
//! - REST API v4: <https://api.mattermost.com/> (users, posts, channels, files; error envelope
//!   `{"id","message","detailed_error","request_id","status_code"}`).
//! - WebSocket: <https://developers.mattermost.com/integrate/reference/websocket/> (authentication
//!   by header or `authentication_challenge`, `hello`, `posted` with `data.post` a JSON string,
//!   `seq` per connection, reconnecting with `connection_id` + `sequence_number`).
//! - Slash commands: <https://developers.mattermost.com/integrate/slash-commands/custom/>
//!   (form-encoded request, JSON answer, `response_url`).
//! - Interactive messages: <https://developers.mattermost.com/integrate/plugins/interactive-messages/>
//!   (attachment `actions[]` with `integration{url,context}`, the request a click makes, the
//!   `update` / `ephemeral_text` answer).
//! - Limits: <https://docs.mattermost.com/manage/product-limits.html> (16,383 characters a post).
//! - Rate limiting: the server's limiter answers `429 limit exceeded` with `X-Ratelimit-Limit`,
//!   `X-Ratelimit-Remaining`, `X-Ratelimit-Reset` (seconds) and `Retry-After`
//!   (<https://docs.mattermost.com/configure/rate-limiting-configuration-settings.html>).
//!
//! One server per [`FakeMattermost`], on 127.0.0.1 and a free port, with a team, the bot account
//! `opsbot` ([`BOT_USER_ID`], token [`TOKEN`]), a public channel `ops` the bot is in
//! ([`FakeMattermost::channel`]) and one it is not in ([`FakeMattermost::other_channel`]).
//! People are added with [`FakeMattermost::add_user`] and speak with [`FakeMattermost::post`]
//! (or as [`ChatUser`]s). Everything the bot posts is recorded ([`FakeMattermost::bot_posts`]).
//!
//! Faithful details an adapter must cope with:
//! - Posts sent to clients (REST answers and WebSocket events) have the `integration` (URL and
//!   context) of their buttons removed, as Mattermost does; the fake keeps them to click.
//! - A button's action id must be alphanumeric: Mattermost's route is
//!   `/posts/{post_id}/actions/{action_id:[A-Za-z0-9]+}`, so a click on an id with `-` or `_`
//!   never reaches the integration ([`FakeMattermost::click`] answers 404 for it).
//! - An interactive `update` replaces the message, the props and the file ids of the post.
//! - In-channel answers of a slash command are posted as the person who typed it, with
//!   `props.from_webhook = "true"`.
//! - The bot's own posts come back to it as `posted` events.

mod wire;

pub use wire::{new_id, now_ms};

use crate::{ChatServer, ChatUser, Heard};
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc};

/// The bot account's access token.
pub const TOKEN: &str = "opsbotfaketoken8ejkmcpqxot";
/// The bot account's user id.
pub const BOT_USER_ID: &str = "b0tuserbndrfg8ejkmcpqxot1u";
/// The bot account's username (a mention is `@opsbot`).
pub const BOT_USERNAME: &str = "opsbot";
/// The team's name (`team_domain` in slash command and button requests).
pub const TEAM_NAME: &str = "ops-team";
/// The environment variable that carries [`TOKEN`] in [`ChatServer::adapter_toml`].
pub const TOKEN_ENV: &str = "OPSBOT_TEST_MATTERMOST_TOKEN";
/// The longest message Mattermost accepts, in characters (runes): `PostMessageMaxRunesV2`.
pub const MAX_MESSAGE_RUNES: usize = 16383;
/// The most a post's props may take, in characters (`PostPropsMaxRunes`).
pub const MAX_PROPS_RUNES: usize = 800_000;
/// How many events the fake keeps per WebSocket connection for a resuming client (Mattermost's
/// "dead queue" holds 128).
pub const QUEUE_LEN: usize = 128;
/// The `server_version` the `hello` event gives.
pub const SERVER_VERSION: &str = "10.5.0.10.5.0.fake.false";

/// How a post of the bot's (or made on its behalf) came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `POST /api/v4/posts` with the bot's token.
    Created,
    /// `PUT /api/v4/posts/{id}/patch` with the bot's token.
    Patched,
    /// The JSON answer to a slash command request.
    CommandAnswer,
    /// A JSON body posted to a slash command's `response_url`.
    ResponseUrl,
    /// The answer to a button click (`update` patches the post; `ephemeral_text` is ephemeral).
    ActionAnswer,
}

/// One post the bot made or changed, as the fake stored it (full props, with the buttons'
/// integration URLs and contexts).
#[derive(Clone, Debug, PartialEq)]
pub struct BotPost {
    /// The post's id (for an edit, the edited post's).
    pub id: String,
    /// The channel.
    pub channel_id: String,
    /// The thread's root post, `""` for none.
    pub root_id: String,
    /// The message after this change.
    pub message: String,
    /// The props after this change (`{}` for none).
    pub props: Value,
    /// Attached files.
    pub file_ids: Vec<String>,
    /// How it came.
    pub how: How,
    /// For an ephemeral post (seen by one person only, never stored): that person's user id.
    pub ephemeral_for: Option<String>,
}

/// A file uploaded with `POST /api/v4/files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeFile {
    /// The file's id.
    pub id: String,
    /// Who uploaded it.
    pub user_id: String,
    /// The channel it was uploaded for.
    pub channel_id: String,
    /// The post it is attached to, `""` until one is made with it.
    pub post_id: String,
    /// The file name.
    pub name: String,
    /// The MIME type.
    pub mime_type: String,
    /// The bytes.
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
struct User {
    id: String,
    username: String,
    is_bot: bool,
    create_at: i64,
}

#[derive(Clone, Debug)]
struct Channel {
    id: String,
    team_id: String,
    kind: &'static str,
    name: String,
    display_name: String,
    members: BTreeSet<String>,
    create_at: i64,
    last_post_at: i64,
    total_msg_count: i64,
}

#[derive(Clone, Debug)]
struct Post {
    id: String,
    create_at: i64,
    update_at: i64,
    edit_at: i64,
    user_id: String,
    channel_id: String,
    root_id: String,
    message: String,
    kind: String,
    props: Map<String, Value>,
    file_ids: Vec<String>,
    pending_post_id: String,
}

/// One WebSocket connection's server side state (kept while the client is away, so it can
/// resume; lost in a crash).
struct Session {
    user_id: String,
    next_seq: i64,
    skip: bool,
    /// What was written (the "dead queue"), for a client resuming from a `seq` in it.
    queue: VecDeque<(i64, String)>,
    /// Events for this connection while no socket is attached (Mattermost's send queue of an
    /// inactive connection): numbered and sent when a socket attaches.
    pending: VecDeque<Value>,
    /// More was pending than Mattermost's send queue holds: the connection is gone.
    overflowed: bool,
    live: Option<(u64, mpsc::UnboundedSender<WsOut>)>,
}

/// Mattermost's send queue per connection (`sendQueueSize`).
const SEND_QUEUE: usize = 256;

impl Session {
    /// Numbers an event (`{"event","data","broadcast"}`) for this connection and keeps it in
    /// the dead queue, as the write pump does.
    fn number(&mut self, mut ev: Value) -> String {
        if self.skip {
            self.skip = false;
            self.next_seq += 1;
        }
        ev["seq"] = json!(self.next_seq);
        let text = ev.to_string();
        self.queue.push_back((self.next_seq, text.clone()));
        self.next_seq += 1;
        while self.queue.len() > QUEUE_LEN {
            self.queue.pop_front();
        }
        text
    }
}

enum WsOut {
    Text(String),
    Drop,
}

struct CommandHook {
    user_id: String,
    channel_id: String,
    root_id: String,
    created: i64,
    uses: u32,
}

struct RateLimit {
    prefix: String,
    left: u32,
    secs: u64,
}

/// What [`ChatUser`]s hear: a post as the bot (or on its behalf) made or changed it.
#[derive(Clone, Debug)]
struct Seen {
    post: Post,
    edited: bool,
    only_for: Option<String>,
}

struct St {
    team_id: String,
    ops: String,
    other: String,
    users: BTreeMap<String, User>,
    tokens: HashMap<String, String>,
    channels: BTreeMap<String, Channel>,
    posts: BTreeMap<String, Post>,
    files: BTreeMap<String, FakeFile>,
    bot_posts: Vec<BotPost>,
    bot_cursor: usize,
    command: Option<(String, String)>,
    hooks: HashMap<String, CommandHook>,
    limits: Vec<RateLimit>,
    sessions: HashMap<String, Session>,
    requests: Vec<String>,
    conn_serial: u64,
}

struct Inner {
    st: Mutex<St>,
    seen: broadcast::Sender<Seen>,
    bot_notify: Notify,
    http: reqwest::Client,
    port: u16,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    kill: wire::Kill,
}

/// A running fake Mattermost server (see the module's documentation).
pub struct FakeMattermost {
    inner: Arc<Inner>,
    running: Mutex<Option<Running>>,
}

impl FakeMattermost {
    /// Starts a fresh server on a free port with the team, the bot and the channels.
    pub async fn launch() -> Result<Self, String> {
        let port = crate::free_port();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let now = now_ms();
        let team_id = new_id();
        let mut users = BTreeMap::new();
        users.insert(
            BOT_USER_ID.to_string(),
            User {
                id: BOT_USER_ID.to_string(),
                username: BOT_USERNAME.to_string(),
                is_bot: true,
                create_at: now,
            },
        );
        let mut tokens = HashMap::new();
        tokens.insert(TOKEN.to_string(), BOT_USER_ID.to_string());
        let mut channels = BTreeMap::new();
        let ops = new_id();
        let other = new_id();
        for (id, name, with_bot) in [(&ops, "ops", true), (&other, "elsewhere", false)] {
            let mut members = BTreeSet::new();
            if with_bot {
                members.insert(BOT_USER_ID.to_string());
            }
            channels.insert(
                id.clone(),
                Channel {
                    id: id.clone(),
                    team_id: team_id.clone(),
                    kind: "O",
                    name: name.to_string(),
                    display_name: capitalise(name),
                    members,
                    create_at: now,
                    last_post_at: now,
                    total_msg_count: 0,
                },
            );
        }
        let (seen, _) = broadcast::channel(16384);
        let inner = Arc::new(Inner {
            st: Mutex::new(St {
                team_id,
                ops,
                other,
                users,
                tokens,
                channels,
                posts: BTreeMap::new(),
                files: BTreeMap::new(),
                bot_posts: Vec::new(),
                bot_cursor: 0,
                command: None,
                hooks: HashMap::new(),
                limits: Vec::new(),
                sessions: HashMap::new(),
                requests: Vec::new(),
                conn_serial: 0,
            }),
            seen,
            bot_notify: Notify::new(),
            http,
            port,
        });
        let fake = Self {
            inner,
            running: Mutex::new(None),
        };
        fake.start().await?;
        Ok(fake)
    }

    /// The server's URL, `http://127.0.0.1:PORT` (what the adapter's `url` is set to).
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The team's id.
    pub fn team_id(&self) -> String {
        self.inner.lock().team_id.clone()
    }

    /// The id of channel `ops` (public; the bot is a member).
    pub fn channel(&self) -> String {
        self.inner.lock().ops.clone()
    }

    /// The id of channel `elsewhere` (public; the bot is not a member: posting there is 403).
    pub fn other_channel(&self) -> String {
        self.inner.lock().other.clone()
    }

    /// Adds a person (username `name`) to the team and to both channels; returns the user id
    /// (the existing one when that username is taken: the same person again).
    pub fn add_user(&self, name: &str) -> String {
        let mut st = self.inner.lock();
        // Usernames are unique: the same name is the same person (back after a restart).
        if let Some(u) = st.users.values().find(|u| u.username == name && !u.is_bot) {
            return u.id.clone();
        }
        let id = new_id();
        st.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                username: name.to_string(),
                is_bot: false,
                create_at: now_ms(),
            },
        );
        st.tokens.insert(format!("tok{}", &id[..23]), id.clone());
        let (ops, other) = (st.ops.clone(), st.other.clone());
        for c in [ops, other] {
            if let Some(ch) = st.channels.get_mut(&c) {
                ch.members.insert(id.clone());
            }
        }
        id
    }

    /// A person's personal access token (what they would authenticate the API with).
    pub fn user_token(&self, user_id: &str) -> Option<String> {
        let st = self.inner.lock();
        st.tokens.iter().find(|(_, u)| *u == user_id).map(|(t, _)| t.clone())
    }

    /// The id of the direct-message channel between the bot and `user_id` (made if needed;
    /// its name is the two user ids sorted and joined by `__`, as Mattermost names them).
    pub fn dm_of(&self, user_id: &str) -> String {
        direct_channel(&mut self.inner.lock(), BOT_USER_ID, user_id).id
    }

    /// Posts `message` as person `user` in `channel` (a reply in the thread of `root_id` when
    /// given): stored, and broadcast as a `posted` event to the channel's members' WebSockets.
    pub async fn post(&self, user: &str, channel: &str, message: &str, root_id: Option<&str>) -> Result<String, String> {
        let mut st = self.inner.lock();
        let mut body = Map::new();
        body.insert("channel_id".into(), json!(channel));
        body.insert("message".into(), json!(message));
        body.insert("root_id".into(), json!(root_id.unwrap_or("")));
        create_post(&mut st, &self.inner, user, &Value::Object(body), None)
            .map(|p| p.id)
            .map_err(|e| e.message)
    }

    /// Adds a channel to the team (`O` public, or `P` private when `private`), with every
    /// person in it and the bot when `bot_member`; returns its id.
    pub fn add_channel(&self, name: &str, private: bool, bot_member: bool) -> String {
        let mut st = self.inner.lock();
        let id = new_id();
        let now = now_ms();
        let mut members: BTreeSet<String> = st.users.values().filter(|u| !u.is_bot).map(|u| u.id.clone()).collect();
        if bot_member {
            members.insert(BOT_USER_ID.to_string());
        }
        let team_id = st.team_id.clone();
        st.channels.insert(
            id.clone(),
            Channel {
                id: id.clone(),
                team_id,
                kind: if private { "P" } else { "O" },
                name: name.to_string(),
                display_name: capitalise(name),
                members,
                create_at: now,
                last_post_at: now,
                total_msg_count: 0,
            },
        );
        id
    }

    /// Adds the bot to, or removes it from, a channel (posting there is 403 when it is not in).
    pub fn set_bot_member(&self, channel_id: &str, member: bool) {
        if let Some(c) = self.inner.lock().channels.get_mut(channel_id) {
            if member {
                c.members.insert(BOT_USER_ID.to_string());
            } else {
                c.members.remove(BOT_USER_ID);
            }
        }
    }

    /// Sends an event of the test's making to the bot's WebSocket connections, numbered with
    /// the next `seq` like any other (e.g. an unknown event, or a `posted` whose `data.post`
    /// is malformed).
    pub fn emit_to_bot(&self, event: &str, data: Value, broadcast: Value) {
        let only: BTreeSet<String> = [BOT_USER_ID.to_string()].into_iter().collect();
        emit(&mut self.inner.lock(), &only, event, data, broadcast);
    }

    /// Sends a raw text frame (anything: not JSON, huge, …) to the bot's live WebSocket
    /// connections, outside the event numbering.
    pub fn send_raw_to_bot(&self, text: &str) {
        let mut st = self.inner.lock();
        for s in st.sessions.values_mut() {
            if s.user_id == BOT_USER_ID
                && let Some((_, tx)) = &s.live
                && tx.send(WsOut::Text(text.to_string())).is_err()
            {
                s.live = None;
            }
        }
    }

    /// Sets the slash command's request URL and token (the token Mattermost shows for it and
    /// sends in each request).
    pub fn set_command(&self, url: &str, token: &str) {
        self.inner.lock().command = Some((url.to_string(), token.to_string()));
    }

    /// Person `user` types `trigger text` (e.g. `/opsbot`, `whoami`) in `channel`: the fake
    /// POSTs the form-encoded request to the command URL, applies the answer as Mattermost
    /// would (an in-channel post, or an ephemeral one for that person) and returns the
    /// answer's status and body.
    pub async fn slash(&self, user: &str, channel: &str, trigger: &str, text: &str) -> Result<(u16, String), String> {
        slash(&self.inner, user, channel, trigger, text, "").await
    }

    /// Like [`FakeMattermost::slash`], typed in the thread of `root_id`.
    pub async fn slash_in_thread(
        &self,
        user: &str,
        channel: &str,
        root_id: &str,
        trigger: &str,
        text: &str,
    ) -> Result<(u16, String), String> {
        slash(&self.inner, user, channel, trigger, text, root_id).await
    }

    /// Person `user` clicks button `action_id` of post `post_id`: the fake POSTs the
    /// documented JSON to the button's integration URL with the context stored in the post,
    /// applies the answer (`update`, `ephemeral_text`) and returns its status and body. An
    /// unknown post or action, or an action id that is not alphanumeric, gives 404 (what
    /// Mattermost's API answers the clicking client) without a request.
    pub async fn click(&self, user: &str, post_id: &str, action_id: &str) -> Result<(u16, String), String> {
        click(&self.inner, user, post_id, action_id, None).await
    }

    /// Like [`FakeMattermost::click`], with a forged `context` instead of the stored one.
    pub async fn click_with_context(&self, user: &str, post_id: &str, action_id: &str, context: Value) -> Result<(u16, String), String> {
        click(&self.inner, user, post_id, action_id, Some(context)).await
    }

    /// Drops every WebSocket connection (no close frame); their sessions stay, so a client
    /// may resume with `connection_id` and `sequence_number`.
    pub fn drop_connections(&self) {
        let mut st = self.inner.lock();
        for s in st.sessions.values_mut() {
            if let Some((_, tx)) = s.live.take() {
                let _ = tx.send(WsOut::Drop);
            }
        }
    }

    /// Skips one sequence number on every WebSocket connection: the next event each gets has
    /// a `seq` one higher than it should (what a client sees when an event was lost).
    pub fn skip_seq(&self) {
        for s in self.inner.lock().sessions.values_mut() {
            s.skip = true;
        }
    }

    /// Makes the next `n` REST calls whose path starts with `path_prefix` (e.g.
    /// `/api/v4/posts`) answer 429, with `X-Ratelimit-Reset` and `Retry-After` = `secs`.
    pub fn rate_limit(&self, path_prefix: &str, n: u32, secs: u64) {
        self.inner.lock().limits.push(RateLimit {
            prefix: path_prefix.to_string(),
            left: n,
            secs,
        });
    }

    /// Every post the bot made or changed, oldest first.
    pub fn bot_posts(&self) -> Vec<BotPost> {
        self.inner.lock().bot_posts.clone()
    }

    /// The next bot post not yet returned by this function, waiting up to `timeout`.
    pub async fn next_bot_post(&self, timeout: Duration) -> Option<BotPost> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.bot_notify.notified();
            {
                let mut st = self.inner.lock();
                if st.bot_cursor < st.bot_posts.len() {
                    st.bot_cursor += 1;
                    return st.bot_posts.get(st.bot_cursor - 1).cloned();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Every uploaded file.
    pub fn files(&self) -> Vec<FakeFile> {
        self.inner.lock().files.values().cloned().collect()
    }

    /// A stored post as a client would get it (`GET /api/v4/posts/{id}`), with its buttons'
    /// integrations kept (unlike the API).
    pub fn stored_post(&self, post_id: &str) -> Option<Value> {
        let st = self.inner.lock();
        st.posts.get(post_id).map(|p| post_json(&st, p, false))
    }

    /// Every REST request the server got, as `METHOD /path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().requests.clone()
    }

    /// How many WebSocket connections are open now.
    pub fn live_connections(&self) -> usize {
        self.inner.lock().sessions.values().filter(|s| s.live.is_some()).count()
    }

    /// Crashes the server: every connection (HTTP and WebSocket) is cut without a goodbye,
    /// new ones are refused, and the WebSocket sessions (kept in memory) are lost. Posts,
    /// users, channels and files stay.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = running {
            r.kill.fire();
            r.task.abort();
            let _ = r.task.await;
        }
        let mut st = self.inner.lock();
        for s in st.sessions.values_mut() {
            if let Some((_, tx)) = s.live.take() {
                let _ = tx.send(WsOut::Drop);
            }
        }
        st.sessions.clear();
    }

    /// Starts the server again (same port, same state); returns once it accepts connections.
    /// Does nothing when it runs.
    pub async fn start(&self) -> Result<(), String> {
        if self.running.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.inner.port)).await {
                Ok(l) => break l,
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(format!("cannot listen on 127.0.0.1:{}: {e}", self.inner.port)),
            }
        };
        let kill = wire::Kill::new();
        let app = Router::new()
            .route("/api/v4/websocket", get(ws_upgrade))
            .fallback(rest)
            .layer(axum::middleware::map_response(server_headers))
            .with_state(self.inner.clone());
        let listener = wire::KillListener {
            listener,
            kill: kill.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running { task, kill });
        crate::wait_tcp(self.inner.port, Duration::from_secs(10)).await
    }

    /// A person on this server as the conformance suite drives them (see [`MattermostUser`]).
    pub fn person(&self, name: &str) -> MattermostUser {
        let rx = self.inner.seen.subscribe();
        let id = self.add_user(name);
        MattermostUser {
            inner: self.inner.clone(),
            id,
            name: name.to_string(),
            rx,
        }
    }
}

impl Drop for FakeMattermost {
    fn drop(&mut self) {
        if let Some(r) = self.running.lock().unwrap_or_else(|p| p.into_inner()).take() {
            r.kill.fire();
            r.task.abort();
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Mattermost's error envelope (`model.AppError` as JSON).
#[derive(Debug)]
struct ApiError {
    status: u16,
    id: &'static str,
    message: String,
    detailed: String,
}

impl ApiError {
    fn new(status: u16, id: &'static str, message: &str) -> Self {
        Self {
            status,
            id,
            message: message.to_string(),
            detailed: String::new(),
        }
    }

    fn detailed(mut self, d: impl Into<String>) -> Self {
        self.detailed = d.into();
        self
    }

    fn unauthorized() -> Self {
        Self::new(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        )
    }

    fn forbidden() -> Self {
        Self::new(
            403,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        )
    }

    fn not_found(id: &'static str, message: &str) -> Self {
        Self::new(404, id, message)
    }

    fn bad_body(what: &str) -> Self {
        Self::new(
            400,
            "api.context.invalid_body_param.app_error",
            &format!("Invalid or missing {what} in request body."),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "id": self.id,
            "message": self.message,
            "detailed_error": self.detailed,
            "request_id": new_id(),
            "status_code": self.status,
        });
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [("content-type", "application/json")], body.to_string()).into_response()
    }
}

/// The headers Mattermost puts on every answer (`X-Request-Id`, `X-Version-Id`).
async fn server_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&new_id()) {
        h.insert("x-request-id", v);
    }
    h.insert("x-version-id", HeaderValue::from_static(SERVER_VERSION));
    r
}

fn json_response(status: u16, v: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, [("content-type", "application/json")], v.to_string()).into_response()
}

// ---------------------------------------------------------------------------------------------
// Serialisation (as the server sends them)

fn user_json(u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "create_at": u.create_at,
        "update_at": u.create_at,
        "delete_at": 0,
        "username": u.username,
        "auth_data": "",
        "auth_service": "",
        "email": format!("{}@example.test", u.username),
        "nickname": "",
        "first_name": "",
        "last_name": "",
        "position": "",
        "roles": "system_user",
        "locale": "en",
        "timezone": {"automaticTimezone": "", "manualTimezone": "", "useAutomaticTimezone": "true"},
        "disable_welcome_email": false,
    });
    if u.is_bot {
        v["is_bot"] = json!(true);
        v["bot_description"] = json!("opsbot");
    }
    v
}

fn channel_json(c: &Channel) -> Value {
    json!({
        "id": c.id,
        "create_at": c.create_at,
        "update_at": c.create_at,
        "delete_at": 0,
        "team_id": c.team_id,
        "type": c.kind,
        "display_name": c.display_name,
        "name": c.name,
        "header": "",
        "purpose": "",
        "last_post_at": c.last_post_at,
        "total_msg_count": c.total_msg_count,
        "extra_update_at": 0,
        "creator_id": "",
        "scheme_id": null,
        "props": null,
        "group_constrained": null,
        "shared": null,
        "total_msg_count_root": c.total_msg_count,
        "policy_id": null,
        "last_root_post_at": c.last_post_at,
    })
}

/// Removes the integrations (URL and context) of the buttons, as Mattermost does before it
/// sends a post to any client (`Post.StripActionIntegrations`).
fn strip_integrations(props: &mut Map<String, Value>) {
    if let Some(Value::Array(atts)) = props.get_mut("attachments") {
        for a in atts {
            if let Some(Value::Array(actions)) = a.get_mut("actions") {
                for act in actions {
                    if let Some(o) = act.as_object_mut() {
                        o.remove("integration");
                    }
                }
            }
        }
    }
}

fn post_json(st: &St, p: &Post, strip: bool) -> Value {
    let mut props = p.props.clone();
    if strip {
        strip_integrations(&mut props);
    }
    let reply_count = if p.root_id.is_empty() {
        st.posts.values().filter(|q| q.root_id == p.id).count()
    } else {
        st.posts.values().filter(|q| q.root_id == p.root_id).count()
    };
    let mut v = json!({
        "id": p.id,
        "create_at": p.create_at,
        "update_at": p.update_at,
        "edit_at": p.edit_at,
        "delete_at": 0,
        "is_pinned": false,
        "user_id": p.user_id,
        "channel_id": p.channel_id,
        "root_id": p.root_id,
        "original_id": "",
        "message": p.message,
        "type": p.kind,
        "props": props,
        "hashtags": "",
        "pending_post_id": p.pending_post_id,
        "reply_count": reply_count,
        "last_reply_at": 0,
        "participants": null,
        "metadata": {},
    });
    if !p.file_ids.is_empty() {
        v["file_ids"] = json!(p.file_ids);
        let files: Vec<Value> = p.file_ids.iter().filter_map(|f| st.files.get(f)).map(file_info).collect();
        v["metadata"] = json!({"files": files});
    }
    v
}

fn file_info(f: &FakeFile) -> Value {
    let ext = f.name.rsplit_once('.').map(|(_, e)| e.to_lowercase()).unwrap_or_default();
    json!({
        "id": f.id,
        "user_id": f.user_id,
        "post_id": f.post_id,
        "channel_id": f.channel_id,
        "create_at": 0,
        "update_at": 0,
        "delete_at": 0,
        "name": f.name,
        "extension": ext,
        "size": f.data.len(),
        "mime_type": f.mime_type,
        "width": 0,
        "height": 0,
        "has_preview_image": false,
        "mini_preview": null,
        "remote_id": "",
        "archived": false,
    })
}

// ---------------------------------------------------------------------------------------------
// State changes

fn direct_channel(st: &mut St, a: &str, b: &str) -> Channel {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    let name = format!("{x}__{y}");
    if let Some(c) = st.channels.values().find(|c| c.name == name) {
        return c.clone();
    }
    let now = now_ms();
    let c = Channel {
        id: new_id(),
        team_id: String::new(),
        kind: "D",
        name,
        display_name: String::new(),
        members: [a.to_string(), b.to_string()].into_iter().collect(),
        create_at: now,
        last_post_at: now,
        total_msg_count: 0,
    };
    st.channels.insert(c.id.clone(), c.clone());
    c
}

/// The users a post mentions, as the `mentions` of a `posted` event lists them: in a direct
/// channel the other member; elsewhere channel members named `@username` in the text.
fn mentions(st: &St, ch: &Channel, sender: &str, message: &str) -> Vec<String> {
    if ch.kind == "D" {
        return ch.members.iter().filter(|m| *m != sender).cloned().collect();
    }
    let mut out = Vec::new();
    for m in &ch.members {
        if m == sender {
            continue;
        }
        let Some(u) = st.users.get(m) else { continue };
        let needle = format!("@{}", u.username.to_lowercase());
        let lower = message.to_lowercase();
        let mut from = 0;
        while let Some(i) = lower[from..].find(&needle) {
            let start = from + i;
            let end = start + needle.len();
            let before_ok = start == 0 || !lower[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            let after_ok = lower[end..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
                || lower[end..].starts_with(". ")
                || lower[end..] == *".";
            if before_ok && after_ok {
                out.push(m.clone());
                break;
            }
            from = end;
        }
    }
    out
}

/// Sends one event to every WebSocket session of the channel's members (or of one user),
/// giving each its own `seq`, and queues it for resuming clients.
fn emit(st: &mut St, members: &BTreeSet<String>, event: &str, data: Value, broadcast: Value) {
    for s in st.sessions.values_mut() {
        if !members.contains(&s.user_id) {
            continue;
        }
        let ev = json!({"event": event, "data": data, "broadcast": broadcast});
        if s.live.is_none() {
            s.pending.push_back(ev);
            if s.pending.len() > SEND_QUEUE {
                s.pending.clear();
                s.overflowed = true;
            }
            continue;
        }
        let text = s.number(ev);
        if let Some((_, tx)) = &s.live
            && tx.send(WsOut::Text(text)).is_err()
        {
            s.live = None;
        }
    }
    st.sessions.retain(|_, s| !s.overflowed);
}

fn broadcast_obj(channel_id: &str, team_id: &str, user_id: &str) -> Value {
    json!({
        "omit_users": null,
        "user_id": user_id,
        "channel_id": channel_id,
        "team_id": team_id,
        "connection_id": "",
        "omit_connection_id": "",
    })
}

fn record_bot(st: &mut St, inner: &Inner, p: &Post, how: How, ephemeral_for: Option<&str>) {
    st.bot_posts.push(BotPost {
        id: p.id.clone(),
        channel_id: p.channel_id.clone(),
        root_id: p.root_id.clone(),
        message: p.message.clone(),
        props: Value::Object(p.props.clone()),
        file_ids: p.file_ids.clone(),
        how,
        ephemeral_for: ephemeral_for.map(str::to_string),
    });
    inner.bot_notify.notify_waiters();
}

fn check_message(message: &str, props: &Map<String, Value>) -> Result<(), ApiError> {
    let runes = message.chars().count();
    if runes > MAX_MESSAGE_RUNES {
        return Err(ApiError::new(400, "model.post.is_valid.msg.app_error", "Invalid Message.")
            .detailed(format!("message has {runes} characters; at most {MAX_MESSAGE_RUNES}")));
    }
    if Value::Object(props.clone()).to_string().chars().count() > MAX_PROPS_RUNES {
        return Err(ApiError::new(400, "model.post.is_valid.props.app_error", "Invalid Props."));
    }
    Ok(())
}

/// Gives buttons without an id one (`Post.GenerateActionIds`).
fn generate_action_ids(props: &mut Map<String, Value>) {
    if let Some(Value::Array(atts)) = props.get_mut("attachments") {
        for a in atts {
            if let Some(Value::Array(actions)) = a.get_mut("actions") {
                for act in actions {
                    if let Some(o) = act.as_object_mut()
                        && o.get("id").and_then(Value::as_str).is_none_or(str::is_empty)
                    {
                        o.insert("id".into(), json!(new_id()));
                    }
                }
            }
        }
    }
}

/// Stores a post made by `user_id` from a `POST /api/v4/posts` body and broadcasts it
/// (<https://api.mattermost.com/#tag/posts/operation/CreatePost>).
fn create_post(st: &mut St, inner: &Inner, user_id: &str, body: &Value, how: Option<How>) -> Result<Post, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_body("post"));
    };
    let channel_id = obj.get("channel_id").and_then(Value::as_str).unwrap_or_default().to_string();
    if channel_id.len() != 26 {
        return Err(ApiError::bad_body("channel_id"));
    }
    let message = match obj.get("message") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_body("post")),
    };
    let root_id = obj.get("root_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut props = match obj.get("props") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::bad_body("post")),
    };
    let file_ids: Vec<String> = match obj.get("file_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(_) => return Err(ApiError::bad_body("post")),
    };
    let pending = obj.get("pending_post_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(ch) = st.channels.get(&channel_id).cloned() else {
        return Err(ApiError::forbidden());
    };
    if !ch.members.contains(user_id) {
        return Err(ApiError::forbidden());
    }
    if !root_id.is_empty() {
        match st.posts.get(&root_id) {
            Some(r) if r.channel_id == channel_id => {}
            _ => {
                return Err(ApiError::new(
                    400,
                    "api.post.create_post.root_id.app_error",
                    "Invalid RootId parameter.",
                ));
            }
        }
    }
    check_message(&message, &props)?;
    if file_ids.len() > 10 {
        return Err(ApiError::new(400, "model.post.is_valid.file_ids.app_error", "Invalid file ids."));
    }
    generate_action_ids(&mut props);
    if how == Some(How::CommandAnswer) || how == Some(How::ResponseUrl) {
        props.insert("from_webhook".into(), json!("true"));
    }
    // Files attach only when they were uploaded by this user to this channel and are free.
    let file_ids: Vec<String> = file_ids
        .into_iter()
        .filter(|f| {
            st.files
                .get(f)
                .is_some_and(|x| x.user_id == user_id && x.channel_id == channel_id && x.post_id.is_empty())
        })
        .collect();
    let now = now_ms();
    let p = Post {
        id: new_id(),
        create_at: now,
        update_at: now,
        edit_at: 0,
        user_id: user_id.to_string(),
        channel_id: channel_id.clone(),
        root_id,
        message,
        kind: String::new(),
        props,
        file_ids,
        pending_post_id: pending,
    };
    for f in &p.file_ids {
        if let Some(x) = st.files.get_mut(f) {
            x.post_id = p.id.clone();
        }
    }
    st.posts.insert(p.id.clone(), p.clone());
    if let Some(c) = st.channels.get_mut(&channel_id) {
        c.last_post_at = now;
        c.total_msg_count += 1;
    }
    // The `posted` event (https://developers.mattermost.com/integrate/reference/websocket/):
    // data.post is the post as a JSON string, mentions a JSON string of user ids.
    let sender = st.users.get(user_id).map(|u| u.username.clone()).unwrap_or_default();
    let m = mentions(st, &ch, user_id, &p.message);
    let mut data = json!({
        "channel_display_name": if ch.kind == "D" { format!("@{sender}") } else { ch.display_name.clone() },
        "channel_name": ch.name,
        "channel_type": ch.kind,
        "post": post_json(st, &p, true).to_string(),
        "sender_name": format!("@{sender}"),
        "set_online": true,
        "team_id": ch.team_id,
    });
    if !m.is_empty() {
        data["mentions"] = json!(serde_json::to_string(&m).unwrap_or_default());
    }
    if !p.file_ids.is_empty() {
        data["otherFile"] = json!("true");
    }
    emit(st, &ch.members, "posted", data, broadcast_obj(&channel_id, "", ""));
    let by_bot = user_id == BOT_USER_ID || how.is_some();
    if by_bot {
        record_bot(st, inner, &p, how.unwrap_or(How::Created), None);
        let _ = inner.seen.send(Seen {
            post: p.clone(),
            edited: false,
            only_for: None,
        });
    }
    Ok(p)
}

fn edited(st: &mut St, inner: &Inner, p: &Post, how: How) {
    let Some(ch) = st.channels.get(&p.channel_id).cloned() else {
        return;
    };
    let data = json!({"post": post_json(st, p, true).to_string()});
    emit(st, &ch.members, "post_edited", data, broadcast_obj(&p.channel_id, "", ""));
    if p.user_id == BOT_USER_ID || how == How::ActionAnswer {
        record_bot(st, inner, p, how, None);
        let _ = inner.seen.send(Seen {
            post: p.clone(),
            edited: true,
            only_for: None,
        });
    }
}

/// An ephemeral post for one person: sent to their WebSockets only, never stored
/// (`SendEphemeralPost`: event `ephemeral_message`).
fn ephemeral(
    st: &mut St,
    inner: &Inner,
    to: &str,
    (channel_id, root_id): (&str, &str),
    message: &str,
    props: Map<String, Value>,
    how: How,
) {
    let now = now_ms();
    let p = Post {
        id: new_id(),
        create_at: now,
        update_at: now,
        edit_at: 0,
        user_id: BOT_USER_ID.to_string(),
        channel_id: channel_id.to_string(),
        root_id: root_id.to_string(),
        message: message.to_string(),
        kind: "system_ephemeral".to_string(),
        props,
        file_ids: Vec::new(),
        pending_post_id: String::new(),
    };
    let data = json!({"post": post_json(st, &p, true).to_string()});
    let only: BTreeSet<String> = [to.to_string()].into_iter().collect();
    emit(st, &only, "ephemeral_message", data, broadcast_obj("", "", to));
    record_bot(st, inner, &p, how, Some(to));
    let _ = inner.seen.send(Seen {
        post: p,
        edited: false,
        only_for: Some(to.to_string()),
    });
}

// ---------------------------------------------------------------------------------------------
// REST

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")).then(|| token.trim().to_string())
}

fn rate_limited(st: &mut St, path: &str) -> Option<Response> {
    let i = st.limits.iter().position(|l| l.left > 0 && path.starts_with(&l.prefix))?;
    let l = &mut st.limits[i];
    l.left -= 1;
    let secs = l.secs.to_string();
    if l.left == 0 {
        st.limits.remove(i);
    }
    let mut r = (StatusCode::TOO_MANY_REQUESTS, "limit exceeded\n").into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-ratelimit-limit", HeaderValue::from_static("10"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    if let Ok(v) = HeaderValue::from_str(&secs) {
        h.insert("x-ratelimit-reset", v.clone());
        h.insert("retry-after", v);
    }
    Some(r)
}

async fn rest(State(inner): State<Arc<Inner>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    {
        let mut st = inner.lock();
        st.requests.push(format!("{method} {uri}"));
        if let Some(r) = rate_limited(&mut st, &path) {
            return r;
        }
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let ["hooks", "commands", id] = segs.as_slice() {
        return response_url(&inner, &method, id, &body).await;
    }
    let Some(rest) = segs.strip_prefix(&["api", "v4"]) else {
        return ApiError::not_found("api.context.404.app_error", "Sorry, we could not find the page.").into_response();
    };
    if method == Method::GET && rest == ["system", "ping"] {
        return json_response(200, json!({"status": "OK"}));
    }
    let user = {
        let st = inner.lock();
        bearer(&headers).and_then(|t| st.tokens.get(&t).cloned())
    };
    let Some(me) = user else {
        return ApiError::unauthorized().into_response();
    };
    let query: HashMap<String, String> = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let result = match (method.clone(), rest) {
        (Method::GET, ["users", id]) => get_user(&inner, &me, id),
        (Method::POST, ["posts"]) => parse_json(&body, "post").and_then(|b| {
            let mut st = inner.lock();
            create_post(&mut st, &inner, &me, &b, None).map(|p| json_response(201, post_json(&st, &p, true)))
        }),
        (Method::PUT, ["posts", id, "patch"]) => parse_json(&body, "patch").and_then(|b| patch_post(&inner, &me, id, &b)),
        (Method::GET, ["posts", id]) => get_post(&inner, &me, id),
        (Method::POST, ["channels", "direct"]) => parse_json(&body, "user ids").and_then(|b| create_direct(&inner, &me, &b)),
        (Method::GET, ["channels", id]) => get_channel(&inner, &me, id),
        (Method::GET, ["channels", id, "posts"]) => channel_posts(&inner, &me, id, &query),
        (Method::POST, ["files"]) => upload(&inner, &me, &ctype, &query, &body),
        _ => Err(ApiError::not_found(
            "api.context.404.app_error",
            "Sorry, we could not find the page.",
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn parse_json(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_body(what).detailed(e.to_string()))
}

/// `GET /api/v4/users/{user_id}` (`me` for oneself).
fn get_user(inner: &Inner, me: &str, id: &str) -> Result<Response, ApiError> {
    let st = inner.lock();
    let id = if id == "me" { me } else { id };
    let u = st
        .users
        .get(id)
        .ok_or_else(|| ApiError::not_found("app.user.missing_account.const", "Unable to find the user."))?;
    Ok(json_response(200, user_json(u)))
}

fn can_read(user: &str, ch: &Channel) -> bool {
    ch.members.contains(user) || (ch.kind == "O" && !ch.team_id.is_empty())
}

/// `GET /api/v4/posts/{post_id}`.
fn get_post(inner: &Inner, me: &str, id: &str) -> Result<Response, ApiError> {
    let st = inner.lock();
    let p = st
        .posts
        .get(id)
        .ok_or_else(|| ApiError::not_found("app.post.get.app_error", "Unable to get the post."))?;
    let ch = st.channels.get(&p.channel_id).ok_or_else(ApiError::forbidden)?;
    if !can_read(me, ch) {
        return Err(ApiError::forbidden());
    }
    Ok(json_response(200, post_json(&st, p, true)))
}

/// `PUT /api/v4/posts/{post_id}/patch`: only the author may; `message`, `props` (the whole
/// map), `file_ids` replace what the post had
/// (<https://api.mattermost.com/#tag/posts/operation/PatchPost>).
fn patch_post(inner: &Inner, me: &str, id: &str, body: &Value) -> Result<Response, ApiError> {
    let mut st = inner.lock();
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_body("patch"));
    };
    let Some(mut p) = st.posts.get(id).cloned() else {
        return Err(ApiError::forbidden());
    };
    if p.user_id != me {
        return Err(ApiError::forbidden());
    }
    let mut changed_message = false;
    if let Some(m) = obj.get("message") {
        let m = m.as_str().ok_or_else(|| ApiError::bad_body("patch"))?;
        changed_message = m != p.message;
        p.message = m.to_string();
    }
    if let Some(props) = obj.get("props") {
        let mut props = props.as_object().cloned().ok_or_else(|| ApiError::bad_body("patch"))?;
        generate_action_ids(&mut props);
        p.props = props;
    }
    if let Some(f) = obj.get("file_ids") {
        let f = f.as_array().ok_or_else(|| ApiError::bad_body("patch"))?;
        p.file_ids = f.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
    }
    check_message(&p.message, &p.props)?;
    let now = now_ms();
    p.update_at = now;
    if changed_message {
        p.edit_at = now;
    }
    st.posts.insert(p.id.clone(), p.clone());
    edited(&mut st, inner, &p, How::Patched);
    Ok(json_response(200, post_json(&st, &p, true)))
}

/// `POST /api/v4/channels/direct` with `[user_id, other_user_id]`: the existing or new
/// direct channel, named `smaller__larger`.
fn create_direct(inner: &Inner, me: &str, body: &Value) -> Result<Response, ApiError> {
    let ids: Vec<String> = body
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if ids.len() != 2 {
        return Err(ApiError::bad_body("user ids"));
    }
    let mut st = inner.lock();
    if !ids.iter().any(|i| i == me) {
        return Err(ApiError::forbidden());
    }
    for i in &ids {
        if !st.users.contains_key(i) {
            return Err(ApiError::new(
                400,
                "api.context.invalid_url_param.app_error",
                "Invalid or missing user_id parameter in request URL.",
            ));
        }
    }
    let c = direct_channel(&mut st, &ids[0], &ids[1]);
    Ok(json_response(201, channel_json(&c)))
}

/// `GET /api/v4/channels/{channel_id}`.
fn get_channel(inner: &Inner, me: &str, id: &str) -> Result<Response, ApiError> {
    let st = inner.lock();
    let c = st
        .channels
        .get(id)
        .ok_or_else(|| ApiError::not_found("app.channel.get.existing.app_error", "Unable to find the existing channel."))?;
    if !can_read(me, c) {
        return Err(ApiError::forbidden());
    }
    Ok(json_response(200, channel_json(c)))
}

/// `GET /api/v4/channels/{channel_id}/posts`: with `since` (ms) the posts changed after then;
/// else page `page` of `per_page` (default 60), newest first. A `PostList`:
/// `{"order":[ids newest first],"posts":{id:post},"next_post_id","prev_post_id","has_next"}`.
fn channel_posts(inner: &Inner, me: &str, id: &str, q: &HashMap<String, String>) -> Result<Response, ApiError> {
    let st = inner.lock();
    let c = st
        .channels
        .get(id)
        .ok_or_else(|| ApiError::not_found("app.channel.get.existing.app_error", "Unable to find the existing channel."))?;
    if !can_read(me, c) {
        return Err(ApiError::forbidden());
    }
    let mut posts: Vec<&Post> = st.posts.values().filter(|p| p.channel_id == id).collect();
    posts.sort_by(|a, b| b.create_at.cmp(&a.create_at).then_with(|| b.id.cmp(&a.id)));
    let bad = |n: &str| {
        ApiError::new(
            400,
            "api.context.invalid_url_param.app_error",
            &format!("Invalid or missing {n} parameter in request URL."),
        )
    };
    let chosen: Vec<&Post> = if let Some(since) = q.get("since") {
        let since: i64 = since.parse().map_err(|_| bad("since"))?;
        posts.into_iter().filter(|p| p.update_at > since).collect()
    } else {
        let page: usize = q.get("page").map(|v| v.parse()).transpose().map_err(|_| bad("page"))?.unwrap_or(0);
        let per: usize = q
            .get("per_page")
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| bad("per_page"))?
            .unwrap_or(60)
            .min(200);
        posts.into_iter().skip(page * per).take(per).collect()
    };
    let order: Vec<&str> = chosen.iter().map(|p| p.id.as_str()).collect();
    let map: Map<String, Value> = chosen.iter().map(|p| (p.id.clone(), post_json(&st, p, true))).collect();
    Ok(json_response(
        200,
        json!({"order": order, "posts": map, "next_post_id": "", "prev_post_id": "", "has_next": false, "first_inaccessible_post_time": 0}),
    ))
}

/// `POST /api/v4/files` (multipart: `channel_id` and one or more `files`):
/// `201 {"file_infos":[…],"client_ids":[…]}`
/// (<https://api.mattermost.com/#tag/files/operation/UploadFile>).
fn upload(inner: &Inner, me: &str, ctype: &str, q: &HashMap<String, String>, body: &[u8]) -> Result<Response, ApiError> {
    if !ctype.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::new(
            400,
            "api.file.upload_file.incorrect_number_of_files.app_error",
            "Unable to upload files. Incorrect number of files specified.",
        ));
    }
    let parts = wire::multipart(ctype, body).map_err(|e| {
        ApiError::new(
            400,
            "api.file.upload_file.read_request.app_error",
            "Unable to upload file(s). Error reading or parsing request data.",
        )
        .detailed(e)
    })?;
    let mut channel_id = q.get("channel_id").cloned().unwrap_or_default();
    let mut client_ids = Vec::new();
    for p in &parts {
        match (p.name.as_str(), &p.filename) {
            ("channel_id", None) => channel_id = String::from_utf8_lossy(&p.data).trim().to_string(),
            ("client_ids", None) => client_ids.push(String::from_utf8_lossy(&p.data).to_string()),
            _ => {}
        }
    }
    let mut st = inner.lock();
    let Some(ch) = st.channels.get(&channel_id) else {
        return Err(ApiError::new(
            400,
            "api.context.invalid_url_param.app_error",
            "Invalid or missing channel_id parameter in request URL.",
        ));
    };
    if !ch.members.contains(me) {
        return Err(ApiError::forbidden());
    }
    let files: Vec<&wire::Part> = parts.iter().filter(|p| p.filename.is_some()).collect();
    if files.is_empty() {
        return Err(ApiError::new(
            400,
            "api.file.upload_file.incorrect_number_of_files.app_error",
            "Unable to upload files. Incorrect number of files specified.",
        ));
    }
    let mut infos = Vec::new();
    for p in files {
        if p.data.len() > 100 * 1024 * 1024 {
            return Err(ApiError::new(
                413,
                "api.file.upload_file.too_large_detailed.app_error",
                "Unable to upload file. File is too large.",
            ));
        }
        let name = p.filename.clone().unwrap_or_default();
        let f = FakeFile {
            id: new_id(),
            user_id: me.to_string(),
            channel_id: channel_id.clone(),
            post_id: String::new(),
            mime_type: p.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
            name,
            data: p.data.clone(),
        };
        infos.push(file_info(&f));
        st.files.insert(f.id.clone(), f);
    }
    Ok(json_response(201, json!({"file_infos": infos, "client_ids": client_ids})))
}

// ---------------------------------------------------------------------------------------------
// Slash commands (https://developers.mattermost.com/integrate/slash-commands/custom/)

async fn slash(inner: &Arc<Inner>, user: &str, channel: &str, trigger: &str, text: &str, root_id: &str) -> Result<(u16, String), String> {
    let (url, form, token) = {
        let mut st = inner.lock();
        let (url, token) = st.command.clone().ok_or("no slash command configured (set_command)")?;
        let u = st.users.get(user).cloned().ok_or("unknown user")?;
        let ch = st.channels.get(channel).cloned().ok_or("unknown channel")?;
        if !ch.members.contains(user) {
            return Err(format!("{} is not in channel {}", u.username, ch.name));
        }
        let hook = new_id();
        st.hooks.insert(
            hook.clone(),
            CommandHook {
                user_id: user.to_string(),
                channel_id: channel.to_string(),
                root_id: root_id.to_string(),
                created: now_ms(),
                uses: 0,
            },
        );
        let form = vec![
            ("channel_id", channel.to_string()),
            ("channel_name", ch.name.clone()),
            ("command", trigger.to_string()),
            ("response_url", format!("{}/hooks/commands/{hook}", inner.url())),
            ("team_domain", TEAM_NAME.to_string()),
            ("team_id", st.team_id.clone()),
            ("text", text.to_string()),
            ("token", token.clone()),
            ("trigger_id", trigger_id(user)),
            ("user_id", user.to_string()),
            ("user_name", u.username.clone()),
            ("root_id", root_id.to_string()),
        ];
        (url, form, token)
    };
    let body = serde_urlencoded::to_string(&form).map_err(|e| e.to_string())?;
    let resp = inner
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("authorization", format!("Token {token}"))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text_body = resp.text().await.map_err(|e| format!("POST {url}: {e}"))?;
    if (200..300).contains(&status) {
        // Mattermost reads JSON when the answer says so, else the body is the text
        // (`CommandResponseFromHTTPBody`).
        let answer = if ctype.starts_with("application/json") {
            serde_json::from_str::<Value>(&text_body).map_err(|e| format!("the command's answer is not JSON ({e}): {text_body}"))?
        } else {
            json!({"text": text_body})
        };
        let mut st = inner.lock();
        apply_command_response(&mut st, inner, user, channel, root_id, &answer, How::CommandAnswer)?;
    }
    Ok((status, text_body))
}

fn trigger_id(user: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{}:{user}:{}", new_id(), now_ms()))
}

/// Applies a command answer (or a `response_url` body) as `HandleCommandResponse` does:
/// `in_channel` posts as the person who typed the command (with `from_webhook`), the default
/// `ephemeral` shows the text to that person only; `extra_responses` follow.
fn apply_command_response(
    st: &mut St,
    inner: &Inner,
    user: &str,
    channel: &str,
    root_id: &str,
    answer: &Value,
    how: How,
) -> Result<(), String> {
    let Some(obj) = answer.as_object() else {
        return Err("the command's answer is not a JSON object".into());
    };
    let text = obj.get("text").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut props = obj.get("props").and_then(Value::as_object).cloned().unwrap_or_default();
    if let Some(a) = obj.get("attachments")
        && !a.is_null()
    {
        props.insert("attachments".into(), a.clone());
    }
    let channel = obj
        .get("channel_id")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .unwrap_or(channel)
        .to_string();
    let kind = obj.get("response_type").and_then(Value::as_str).unwrap_or("");
    let has_content = !text.is_empty() || props.contains_key("attachments");
    match kind {
        "in_channel" => {
            if has_content {
                let body = json!({"channel_id": channel, "message": text, "root_id": root_id, "props": props});
                create_post(st, inner, user, &body, Some(how)).map_err(|e| format!("{}: {}", e.id, e.message))?;
            }
        }
        "" | "ephemeral" => {
            if has_content {
                ephemeral(st, inner, user, (&channel, root_id), &text, props, how);
            }
        }
        other => return Err(format!("unknown response_type {other:?}")),
    }
    if let Some(Value::Array(extra)) = obj.get("extra_responses") {
        for e in extra {
            apply_command_response(st, inner, user, &channel, root_id, e, how)?;
        }
    }
    Ok(())
}

/// `POST /hooks/commands/{id}`: a follow-up to a slash command, JSON like the command's answer;
/// at most five uses within thirty minutes (`CommandWebhook`).
async fn response_url(inner: &Arc<Inner>, method: &Method, id: &str, body: &[u8]) -> Response {
    if method != Method::POST {
        return ApiError::not_found("api.context.404.app_error", "Sorry, we could not find the page.").into_response();
    }
    let answer: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::new(400, "web.command_webhook.parse.app_error", "Unable to parse incoming data.")
                .detailed(e.to_string())
                .into_response();
        }
    };
    let mut st = inner.lock();
    let Some(h) = st.hooks.get_mut(id) else {
        return ApiError::new(400, "app.command_webhook.get.missing", "Unable to find the webhook.").into_response();
    };
    if h.uses >= 5 {
        return ApiError::new(400, "app.command_webhook.try_use.invalid.app_error", "Invalid webhook.").into_response();
    }
    if now_ms() - h.created > 30 * 60 * 1000 {
        return ApiError::new(400, "app.command_webhook.get.expired", "The webhook has expired.").into_response();
    }
    h.uses += 1;
    let (user, channel, root) = (h.user_id.clone(), h.channel_id.clone(), h.root_id.clone());
    match apply_command_response(&mut st, inner, &user, &channel, &root, &answer, How::ResponseUrl) {
        Ok(()) => (StatusCode::OK, "").into_response(),
        Err(e) => ApiError::new(400, "web.command_webhook.command.app_error", "Couldn't find the command.")
            .detailed(e)
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Interactive message buttons (https://developers.mattermost.com/integrate/plugins/interactive-messages/)

fn find_action(p: &Post, action_id: &str) -> Option<Value> {
    p.props
        .get("attachments")?
        .as_array()?
        .iter()
        .filter_map(|a| a.get("actions")?.as_array())
        .flatten()
        .find(|a| a.get("id").and_then(Value::as_str) == Some(action_id))
        .cloned()
}

async fn click(inner: &Arc<Inner>, user: &str, post_id: &str, action_id: &str, forged: Option<Value>) -> Result<(u16, String), String> {
    if action_id.is_empty() || !action_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok((404, "the action id does not match Mattermost's route [A-Za-z0-9]+".into()));
    }
    let (url, req) = {
        let st = inner.lock();
        let Some(p) = st.posts.get(post_id) else {
            return Ok((404, "no such post".into()));
        };
        let Some(action) = find_action(p, action_id) else {
            return Ok((404, "no such action in the post".into()));
        };
        let ch = st.channels.get(&p.channel_id).ok_or("the post's channel is gone")?;
        if !ch.members.contains(user) {
            return Ok((403, "the person is not in the post's channel".into()));
        }
        let u = st.users.get(user).ok_or("unknown user")?;
        let url = action
            .pointer("/integration/url")
            .and_then(Value::as_str)
            .ok_or("the action has no integration url")?
            .to_string();
        let context = forged.unwrap_or_else(|| action.pointer("/integration/context").cloned().unwrap_or(Value::Null));
        let req = json!({
            "user_id": user,
            "user_name": u.username,
            "channel_id": p.channel_id,
            "channel_name": ch.name,
            "team_id": if ch.team_id.is_empty() { st.team_id.clone() } else { ch.team_id.clone() },
            "team_domain": TEAM_NAME,
            "post_id": post_id,
            "trigger_id": trigger_id(user),
            "type": action.get("type").and_then(Value::as_str).filter(|t| !t.is_empty()).unwrap_or("button"),
            "data_source": action.get("data_source").and_then(Value::as_str).unwrap_or(""),
            "context": context,
        });
        (url, req)
    };
    let resp = inner
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(req.to_string())
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| format!("POST {url}: {e}"))?;
    if status != 200 {
        return Ok((status, body));
    }
    let answer: Value = if body.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(_) => return Ok((status, body)),
        }
    };
    let mut st = inner.lock();
    if let Some(update) = answer.get("update").filter(|u| !u.is_null())
        && let Some(mut p) = st.posts.get(post_id).cloned()
    {
        // `DoPostAction`: the update replaces message, props (original ones kept when it has
        // none; from_webhook / override_* retained) and file ids.
        let message = update.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
        let original = p.props.clone();
        let mut props = match update.get("props").and_then(Value::as_object) {
            Some(m) => m.clone(),
            None => original.clone(),
        };
        for k in ["from_webhook", "override_username", "override_icon_url"] {
            if let Some(v) = original.get(k) {
                props.insert(k.to_string(), v.clone());
            }
        }
        generate_action_ids(&mut props);
        if let Err(e) = check_message(&message, &props) {
            return Ok((400, format!("{}: {}", e.id, e.message)));
        }
        let now = now_ms();
        if message != p.message {
            p.edit_at = now;
        }
        p.message = message;
        p.props = props;
        p.file_ids = update
            .get("file_ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        p.update_at = now;
        st.posts.insert(p.id.clone(), p.clone());
        edited(&mut st, inner, &p, How::ActionAnswer);
    }
    if let Some(text) = answer.get("ephemeral_text").and_then(Value::as_str).filter(|t| !t.is_empty())
        && let Some(p) = st.posts.get(post_id).cloned()
    {
        let root = if p.root_id.is_empty() { p.id.clone() } else { p.root_id.clone() };
        ephemeral(&mut st, inner, user, (&p.channel_id, &root), text, Map::new(), How::ActionAnswer);
    }
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------------
// WebSocket (https://developers.mattermost.com/integrate/reference/websocket/)

/// The query of a (re)connection.
#[derive(serde::Deserialize, Default)]
struct WsQuery {
    connection_id: Option<String>,
    sequence_number: Option<i64>,
}

async fn ws_upgrade(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let header_user = {
        let mut st = inner.lock();
        st.requests.push(format!("GET {uri}"));
        if let Some(r) = rate_limited(&mut st, uri.path()) {
            return r;
        }
        bearer(&headers).and_then(|t| st.tokens.get(&t).cloned())
    };
    ws.on_upgrade(move |socket| ws_conn(inner, socket, header_user, q))
}

/// Registers an authenticated connection as Mattermost's `PopulateWebConnConfig` and write
/// pump do (server/channels/app/platform/web_conn.go): a known `connection_id` with a
/// `sequence_number` found in the dead queue replays from there; one right after the last
/// written event resumes without loss; anything else gets a new connection id and a `hello`
/// (seq 0). Events that waited while no socket was attached follow. An unknown
/// `connection_id` (or none) is a new connection with `hello`. Returns the connection id,
/// the first messages and the receiver.
fn register(inner: &Inner, user: &str, q: &WsQuery) -> (String, u64, Vec<String>, mpsc::UnboundedReceiver<WsOut>) {
    let mut st = inner.lock();
    st.conn_serial += 1;
    let serial = st.conn_serial;
    let (tx, rx) = mpsc::unbounded_channel();
    let hello = |cid: &str| {
        json!({
            "event": "hello",
            "data": {"connection_id": cid, "server_version": SERVER_VERSION, "server_hostname": "fake-mattermost"},
            "broadcast": {"omit_users": null, "user_id": user, "channel_id": "", "team_id": "", "connection_id": "", "omit_connection_id": ""},
        })
    };
    let known = q
        .connection_id
        .as_ref()
        .and_then(|cid| st.sessions.remove(cid).map(|s| (cid.clone(), s)))
        .filter(|(_, s)| s.user_id == user);
    let (cid, mut s, mut out) = match (known, q.sequence_number) {
        (Some((cid, mut s)), Some(n)) => {
            if let Some((_, old)) = s.live.take() {
                let _ = old.send(WsOut::Drop);
            }
            let mut out = Vec::new();
            if let Some(i) = s.queue.iter().position(|(seq, _)| *seq == n) {
                out.extend(s.queue.iter().skip(i).map(|(_, t)| t.clone()));
                (cid, s, out)
            } else if s.queue.back().is_none_or(|(last, _)| *last == n - 1) {
                (cid, s, out)
            } else {
                let cid = new_id();
                s.queue.clear();
                s.next_seq = 0;
                s.skip = false;
                out.push(s.number(hello(&cid)));
                (cid, s, out)
            }
        }
        _ => {
            let cid = new_id();
            let mut s = Session {
                user_id: user.to_string(),
                next_seq: 0,
                skip: false,
                queue: VecDeque::new(),
                pending: VecDeque::new(),
                overflowed: false,
                live: None,
            };
            let out = vec![s.number(hello(&cid))];
            (cid, s, out)
        }
    };
    while let Some(ev) = s.pending.pop_front() {
        out.push(s.number(ev));
    }
    s.live = Some((serial, tx));
    st.sessions.insert(cid.clone(), s);
    (cid, serial, out, rx)
}

async fn ws_conn(inner: Arc<Inner>, mut socket: WebSocket, header_user: Option<String>, q: WsQuery) {
    let mut user = header_user;
    let mut conn: Option<(String, u64, mpsc::UnboundedReceiver<WsOut>)> = None;
    if let Some(u) = &user {
        let (cid, serial, first, rx) = register(&inner, u, &q);
        for m in first {
            if socket.send(Message::Text(m.into())).await.is_err() {
                return;
            }
        }
        conn = Some((cid, serial, rx));
    }
    loop {
        let out = async {
            match conn.as_mut() {
                Some((_, _, rx)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            o = out => match o {
                Some(WsOut::Text(t)) => {
                    if socket.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                Some(WsOut::Drop) | None => {
                    conn = None;
                    break;
                }
            },
            m = socket.recv() => {
                let Some(Ok(m)) = m else { break };
                let text = match m {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).to_string(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(req) = serde_json::from_str::<Value>(&text) else {
                    // Mattermost drops a connection that sends something that is not JSON.
                    break;
                };
                let seq = req.get("seq").and_then(Value::as_i64).unwrap_or(0);
                let action = req.get("action").and_then(Value::as_str).unwrap_or("");
                let reply = if action == "authentication_challenge" {
                    let token = req.pointer("/data/token").and_then(Value::as_str).unwrap_or("");
                    let found = inner.lock().tokens.get(token).cloned();
                    match found {
                        Some(u) if user.is_none() || user.as_deref() == Some(u.as_str()) => {
                            let ok = json!({"status": "OK", "seq_reply": seq}).to_string();
                            if socket.send(Message::Text(ok.into())).await.is_err() {
                                break;
                            }
                            if conn.is_none() {
                                let (cid, serial, first, rx) = register(&inner, &u, &q);
                                for m in first {
                                    if socket.send(Message::Text(m.into())).await.is_err() {
                                        return;
                                    }
                                }
                                conn = Some((cid, serial, rx));
                            }
                            user = Some(u);
                            None
                        }
                        _ => Some(json!({"status": "FAIL", "seq_reply": seq, "error": {
                            "id": "api.web_socket_router.not_authenticated.app_error",
                            "message": "No authentication on WebSocket connection.",
                            "detailed_error": "", "request_id": "", "status_code": 401}})),
                    }
                } else if user.is_none() {
                    Some(json!({"status": "FAIL", "seq_reply": seq, "error": {
                        "id": "api.web_socket_router.not_authenticated.app_error",
                        "message": "No authentication on WebSocket connection.",
                        "detailed_error": "", "request_id": "", "status_code": 401}}))
                } else if action == "ping" {
                    Some(json!({"status": "OK", "seq_reply": seq, "data": {"text": "pong", "version": SERVER_VERSION, "server_time": now_ms()}}))
                } else if action == "user_typing" || action == "get_statuses" || action == "get_statuses_by_ids" {
                    Some(json!({"status": "OK", "seq_reply": seq}))
                } else {
                    Some(json!({"status": "FAIL", "seq_reply": seq, "error": {
                        "id": "api.web_socket_router.bad_action.app_error",
                        "message": "Invalid websocket action.",
                        "detailed_error": "", "request_id": "", "status_code": 501}}))
                };
                if let Some(r) = reply
                    && socket.send(Message::Text(r.to_string().into())).await.is_err()
                {
                    break;
                }
            }
        }
    }
    if let Some((cid, serial, _)) = conn {
        let mut st = inner.lock();
        if let Some(s) = st.sessions.get_mut(&cid)
            && s.live.as_ref().is_some_and(|(n, _)| *n == serial)
        {
            s.live = None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance suite

/// A person on the fake, for the conformance suite: speaks through the fake (stored and
/// broadcast like a post from Mattermost's clients) and hears what the bot posts where they
/// are (channels they are in, their direct channel with the bot, ephemeral posts for them).
pub struct MattermostUser {
    inner: Arc<Inner>,
    id: String,
    name: String,
    rx: broadcast::Receiver<Seen>,
}

impl MattermostUser {
    /// The user id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The username.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The text a person sees of a post: the message, then each attachment's pretext, title, text
/// and fields (`title: value`), one a line.
pub fn visible_text(message: &str, props: &Map<String, Value>) -> String {
    let mut lines: Vec<String> = Vec::new();
    if !message.is_empty() {
        lines.push(message.to_string());
    }
    if let Some(Value::Array(atts)) = props.get("attachments") {
        for a in atts {
            for k in ["pretext", "title", "text"] {
                if let Some(s) = a.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    lines.push(s.to_string());
                }
            }
            if let Some(Value::Array(fields)) = a.get("fields") {
                for f in fields {
                    let t = f.get("title").and_then(Value::as_str).unwrap_or("");
                    let v = match f.get("value") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    };
                    lines.push(if t.is_empty() { v } else { format!("{t}: {v}") });
                }
            }
        }
    }
    lines.join("\n")
}

#[async_trait::async_trait]
impl ChatUser for MattermostUser {
    fn account(&self) -> String {
        self.id.clone()
    }

    async fn say(&mut self, room: &str, text: &str) -> Result<(), String> {
        let text = match text.strip_prefix("opsbot: ") {
            Some(rest) => format!("@{BOT_USERNAME} {rest}"),
            None => text.to_string(),
        };
        let mut st = self.inner.lock();
        let body = json!({"channel_id": room, "message": text});
        create_post(&mut st, &self.inner, &self.id, &body, None)
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.id, e.message))
    }

    async fn dm(&mut self, text: &str) -> Result<(), String> {
        let mut st = self.inner.lock();
        let ch = direct_channel(&mut st, BOT_USER_ID, &self.id);
        let body = json!({"channel_id": ch.id, "message": text});
        create_post(&mut st, &self.inner, &self.id, &body, None)
            .map(|_| ())
            .map_err(|e| format!("{}: {}", e.id, e.message))
    }

    async fn next(&mut self, timeout: Duration) -> Option<Heard> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return None,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(Ok(s)) => s,
            };
            if seen.only_for.as_ref().is_some_and(|u| *u != self.id) {
                continue;
            }
            let kind = {
                let st = self.inner.lock();
                match st.channels.get(&seen.post.channel_id) {
                    Some(c) if c.members.contains(&self.id) => c.kind,
                    _ => continue,
                }
            };
            let p = seen.post;
            return Some(Heard {
                room: (kind != "D").then(|| p.channel_id.clone()),
                text: visible_text(&p.message, &p.props),
                id: Some(p.id.clone()),
                replaces: seen.edited.then(|| p.id.clone()),
                thread: (!p.root_id.is_empty()).then(|| p.root_id.clone()),
            });
        }
    }
}

#[async_trait::async_trait]
impl ChatServer for FakeMattermost {
    fn platform(&self) -> &'static str {
        "mattermost"
    }

    fn adapter_toml(&self) -> (String, Vec<(String, String)>) {
        let toml = format!(
            "type = \"mattermost\"\nurl = \"{}\"\ntoken = \"${{env:{TOKEN_ENV}}}\"\n",
            self.url()
        );
        (toml, vec![(TOKEN_ENV.to_string(), TOKEN.to_string())])
    }

    fn room(&self) -> String {
        self.channel()
    }

    fn room_channel(&self) -> String {
        self.channel()
    }

    async fn user(&self, name: &str) -> Result<Box<dyn ChatUser>, String> {
        Ok(Box::new(self.person(name)))
    }

    async fn stop(&mut self) {
        FakeMattermost::stop(self).await;
    }

    async fn start(&mut self) -> Result<(), String> {
        FakeMattermost::start(self).await
    }
}
