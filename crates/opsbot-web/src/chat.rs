//! The web chat: an adapter for the browser. Channels are `[web] channels` (shared by everyone
//! signed in) plus each person's direct conversation with the bot (`dm`). Messages travel over
//! a WebSocket; every message and bot reply is stored, so a reload shows the history, and
//! several people in one channel see each other's messages and the replies live.
//!
//! A message goes through [`opsbot_engine::Engine::handle`] as `web:NAME` in the place
//! `web/CHANNEL` (`web/dm:NAME` for the direct one), like any chat platform. Shared channels are
//! rooms for talking to the bot: every message there is addressed to it, no mention needed.
//! The reply that queues a run is that run's job card; state changes replace it in place
//! ([`deliver_notice`]) and every browser showing it redraws it.

use crate::AppState;
use crate::pages::{self, PageError, PageUser};
use crate::session::{self, SignedIn};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use minijinja::context;
use opsbot_core::{Envelope, ExecState, Place, Reply, UserId};
use opsbot_engine::Notice;
use opsbot_store::{ChatMessage, NewChatMessage};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Messages sent with the history when a browser connects.
pub const HISTORY: u32 = 200;
/// Largest WebSocket message accepted from a browser, in bytes.
pub const MAX_FRAME: usize = 32 * 1024;
/// Messages one connection may send per [`RATE_WINDOW`].
pub const RATE_LIMIT: usize = 20;
/// The window of [`RATE_LIMIT`].
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Events buffered per channel for slow browsers; one that falls further behind reloads.
const CHANNEL_BUFFER: usize = 256;
/// How often an idle socket is pinged (keeps proxies from closing it).
const PING_EVERY: Duration = Duration::from_secs(30);

/// Live channels: one broadcast per channel key, and a lock that orders job-card posts
/// against their updates.
#[derive(Default)]
pub(crate) struct ChatHub {
    channels: Mutex<HashMap<String, broadcast::Sender<ServerEvent>>>,
    /// Orders card posts against their updates, and holds the state each live card shows, so
    /// a card never goes back (a notice built before the card was brought up to date may arrive
    /// after it) and is not redrawn for a state it already shows. Final cards are forgotten.
    cards: tokio::sync::Mutex<HashMap<i64, ExecState>>,
}

/// Where a state is in a run's life: queued, running, ended.
fn stage(s: ExecState) -> u8 {
    match s {
        ExecState::Queued => 0,
        ExecState::Running => 1,
        _ => 2,
    }
}

impl ChatHub {
    fn sender(&self, channel: &str) -> broadcast::Sender<ServerEvent> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        map.entry(channel.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_BUFFER).0)
            .clone()
    }

    fn publish(&self, channel: &str, event: ServerEvent) {
        let tx = self.channels.lock().unwrap_or_else(|p| p.into_inner()).get(channel).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(event);
        }
    }
}

/// A bot reply as stored and sent: the Reply document, plus the run's state for a job card.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ChatReply {
    #[serde(flatten)]
    reply: Reply,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<ExecState>,
}

/// What the server sends a browser.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerEvent {
    /// The channel's recent messages, oldest first (sent on connect).
    History { messages: Vec<MessageView> },
    /// A new message.
    Message { message: MessageView },
    /// A message changed (a job card).
    Update { message: MessageView },
    /// Something the browser sent was refused.
    Error { message: String },
    /// The browser fell behind: reload the history.
    Resync,
}

/// A message as the browser sees it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MessageView {
    id: i64,
    author: String,
    author_name: String,
    text: Option<String>,
    reply: Option<serde_json::Value>,
    card_for: Option<i64>,
    created_at: String,
    updated_at: String,
}

impl MessageView {
    fn of(m: &ChatMessage) -> Self {
        MessageView {
            id: m.id,
            author: m.author.clone(),
            author_name: m.author_name.clone(),
            text: m.text.clone(),
            reply: m.reply.clone(),
            card_for: m.card_for,
            created_at: m.created_at.to_rfc3339(),
            updated_at: m.updated_at.to_rfc3339(),
        }
    }
}

/// What a browser sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientEvent {
    /// A message typed, or a button's command (`button` holds the button's label).
    Say { text: String, button: Option<String> },
}

/// The web chat's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat", get(page_default))
        .route("/chat/ws", get(socket))
        .route("/chat/{channel}", get(page))
}

/// The store key of a channel as seen by `who`: a shared channel's name, or `dm:NAME`.
fn channel_key(state: &AppState, who: &SignedIn, channel: &str) -> Option<String> {
    if channel == "dm" {
        Some(format!("dm:{}", who.user))
    } else if state.web().channels.iter().any(|c| c == channel) {
        Some(channel.to_string())
    } else {
        None
    }
}

async fn page_default(State(state): State<AppState>, who: PageUser) -> Response {
    let first = state.web().channels.first().cloned().unwrap_or_else(|| "dm".into());
    render_page(&state, who.0, &first)
}

async fn page(State(state): State<AppState>, who: PageUser, Path(channel): Path<String>) -> Response {
    render_page(&state, who.0, &channel)
}

fn render_page(state: &AppState, who: SignedIn, channel: &str) -> Response {
    if channel_key(state, &who, channel).is_none() {
        let known = state.web().channels.iter().map(|c| format!("#{c}")).collect::<Vec<_>>().join(", ");
        return pages::error_page(
            StatusCode::NOT_FOUND,
            Some(&who),
            "No such channel",
            &format!(
                "There is no channel `{}`. Channels: {known}, and your direct chat with the bot.",
                opsbot_core::job::shorten(channel, 40)
            ),
        );
    }
    let bot = state.engine.bot_name().to_string();
    pages::render(
        "chat.html",
        Some(&who),
        "chat",
        context! {
            channel => channel,
            channels => state.web().channels.clone(),
            bot_name => bot,
            direct => channel == "dm",
        },
    )
}

#[derive(Deserialize)]
struct SocketQuery {
    channel: Option<String>,
    csrf: Option<String>,
}

/// `GET /chat/ws?channel=C&csrf=T`: the chat socket. Needs the session cookie, the session's
/// CSRF token and, when the browser sends one, an `Origin` of this very host (no other site may
/// open a socket in the person's name).
async fn socket(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<SocketQuery>, ws: WebSocketUpgrade) -> Response {
    let who = match session::signed_in(&state, &headers).await {
        Ok(Some(w)) => w,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "Sign in first: /login").into_response(),
        Err(e) => return PageError::from(e).into_response(),
    };
    if !q.csrf.as_deref().is_some_and(|t| session::same_token(t, &who.csrf)) {
        return (StatusCode::FORBIDDEN, pages::CSRF_MESSAGE).into_response();
    }
    if !same_origin(&headers, state.web().public_url.as_deref()) {
        return (
            StatusCode::FORBIDDEN,
            "The chat socket may only be opened from this site's own pages.",
        )
            .into_response();
    }
    let Some(key) = channel_key(&state, &who, q.channel.as_deref().unwrap_or("")) else {
        return (StatusCode::NOT_FOUND, "No such channel.").into_response();
    };
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| connection(state, who, key, socket))
}

/// Whether the `Origin` header (if any) names this host: the `Host` header's, or `public_url`'s.
fn same_origin(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true; // Not a browser (browsers always send Origin on WebSocket requests).
    };
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin).trim_end_matches('/');
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let public = public_url.and_then(|u| u.split_once("://")).map(|(_, h)| h.trim_end_matches('/'));
    (!host.is_empty() && origin_host.eq_ignore_ascii_case(host)) || public.is_some_and(|p| origin_host.eq_ignore_ascii_case(p))
}

async fn send(socket: &mut WebSocket, event: &ServerEvent) -> bool {
    match serde_json::to_string(event) {
        Ok(text) => socket.send(Message::Text(Utf8Bytes::from(text))).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a chat event");
            true
        }
    }
}

/// Counts a socket as closed when its connection task ends, however it ends.
struct OpenSocket(AppState);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.metrics().connections("web_chat", -1.0);
    }
}

/// One browser's socket: history first, then live events out and messages in.
async fn connection(state: AppState, who: SignedIn, key: String, mut socket: WebSocket) {
    let mut events = state.chat().sender(&key).subscribe();
    state.metrics().connections("web_chat", 1.0);
    let _open = OpenSocket(state.clone());
    let mut closing = state.closing();
    match state.engine.store().chat_history(&key, None, HISTORY).await {
        Ok(h) => {
            let messages = h.iter().map(MessageView::of).collect();
            if !send(&mut socket, &ServerEvent::History { messages }).await {
                return;
            }
        }
        Err(e) => {
            let id = opsbot_engine::error_id();
            tracing::error!(error_id = %id, error = %e, "cannot load chat history");
            let _ = send(
                &mut socket,
                &ServerEvent::Error {
                    message: format!("The history could not be loaded; error id {id}."),
                },
            )
            .await;
        }
    }
    // This socket's messages are handled one after the other, in the order typed (an answer
    // must never overtake the question it answers), by a task of their own, so a slow engine
    // step never stalls the events going out. Refusals come back to this socket only.
    let (personal, mut refusals) = tokio::sync::mpsc::channel::<String>(16);
    let (inbox, mut queued) = tokio::sync::mpsc::channel::<(String, Option<String>)>(RATE_LIMIT);
    {
        let (state, who, key) = (state.clone(), who.clone(), key.clone());
        tokio::spawn(async move {
            while let Some((text, button)) = queued.recv().await {
                if let Err(message) = say(&state, &who, &key, text, button).await {
                    let _ = personal.send(message).await;
                }
            }
        });
    }
    let mut sent: Vec<Instant> = Vec::new();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => if !send(&mut socket, &ev).await { return },
                Err(broadcast::error::RecvError::Lagged(_)) => if !send(&mut socket, &ServerEvent::Resync).await { return },
                Err(broadcast::error::RecvError::Closed) => return,
            },
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        if !send(&mut socket, &ServerEvent::Error { message: "Send text messages (JSON), not binary ones.".into() }).await { return }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let now = Instant::now();
                sent.retain(|t| now.duration_since(*t) < RATE_WINDOW);
                if sent.len() >= RATE_LIMIT {
                    let msg = format!("Slow down: at most {RATE_LIMIT} messages per {} seconds. That one was not sent.", RATE_WINDOW.as_secs());
                    if !send(&mut socket, &ServerEvent::Error { message: msg }).await { return }
                    continue;
                }
                sent.push(now);
                match serde_json::from_str::<ClientEvent>(&text) {
                    Ok(ClientEvent::Say { text, button }) => {
                        // The rate limit keeps the inbox from filling; if it is full anyway
                        // (a very slow engine), say so rather than wait.
                        if inbox.try_send((text, button)).is_err() {
                            let msg = "Still working on your earlier messages; that one was not sent.".to_string();
                            if !send(&mut socket, &ServerEvent::Error { message: msg }).await { return }
                        }
                    }
                    Err(e) => {
                        let msg = format!("Not understood: the socket takes {{\"type\":\"say\",\"text\":\"…\"}} ({e}).");
                        if !send(&mut socket, &ServerEvent::Error { message: msg }).await { return }
                    }
                }
            },
            Some(message) = refusals.recv() => if !send(&mut socket, &ServerEvent::Error { message }).await { return },
            _ = ping.tick() => if socket.send(Message::Ping(Default::default())).await.is_err() { return },
            _ = closing.changed() => {
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1001, reason: "opsbot is restarting".into() }))).await;
                return;
            }
        }
    }
}

/// Posts a person's message, hands it to the engine and posts the replies. The error is a
/// message for the person when the message was refused before reaching the engine.
async fn say(state: &AppState, who: &SignedIn, key: &str, text: String, button: Option<String>) -> Result<(), String> {
    let text = text.trim().to_string();
    if text.is_empty() {
        return Ok(());
    }
    if text.len() > opsbot_engine::grammar::MAX_MESSAGE_LEN {
        return Err(format!(
            "That message is {} KiB; messages are at most {} KiB. It was not sent.",
            text.len() / 1024,
            opsbot_engine::grammar::MAX_MESSAGE_LEN / 1024
        ));
    }
    let store = state.engine.store();
    let posted = store
        .post_chat(&NewChatMessage {
            channel: key.to_string(),
            author: format!("web:{}", who.user),
            author_name: who.display_name.clone(),
            text: Some(text.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| failure("cannot store a chat message", &e))?;
    state.chat().publish(
        key,
        ServerEvent::Message {
            message: MessageView::of(&posted),
        },
    );

    let mut env = Envelope::direct(UserId::new("web", &who.user), Place::new("web", key), text);
    env.display_name = Some(who.display_name.clone());
    env.direct = key.starts_with("dm:");
    // Shared channels are rooms for talking to the bot: everything there is addressed to it.
    env.mentioned = true;
    env.button = button;
    state.metrics().message("web_chat");
    let out = state.engine.handle(&env).await;
    for reply in out.replies {
        let card = reply.card_for.filter(|id| out.queued == Some(*id));
        if let Some(id) = card {
            post_card(state, key, id, reply).await?;
        } else {
            post_reply(state, key, reply, None, None).await?;
        }
    }
    deliver_elsewhere(state, &out.elsewhere).await;
    Ok(())
}

/// Posts the engine's messages for other conversations that are web chat channels (an approval
/// request for the approvers' channel, an approved run's job card for the requester's).
/// Messages for other platforms go to the chat adapters' runtime.
pub(crate) async fn deliver_elsewhere(state: &AppState, list: &[opsbot_engine::Elsewhere]) {
    // The API and the command line have no conversation to post into.
    let others: Vec<_> = list
        .iter()
        .filter(|e| !["web", "api", "cli", "terminal"].contains(&e.place.platform.as_str()))
        .cloned()
        .collect();
    if !others.is_empty() {
        match state.chat_runtime() {
            Some(rt) => rt.deliver_elsewhere(others).await,
            None => {
                for e in others {
                    tracing::warn!(place = %e.place, "no chat adapter serves this place; a message for it is dropped");
                }
            }
        }
    }
    for e in list {
        if e.place.platform != "web" {
            continue;
        }
        let key = e.place.channel.as_str();
        let posted = match e.reply.card_for {
            Some(id) => post_card(state, key, id, e.reply.clone()).await,
            None => post_reply(state, key, e.reply.clone(), None, None).await,
        };
        if let Err(msg) = posted {
            tracing::warn!(place = %e.place, "cannot deliver a message to another web chat: {msg}");
        }
    }
}

fn failure(what: &str, e: &dyn std::fmt::Display) -> String {
    let id = opsbot_engine::error_id();
    tracing::error!(error_id = %id, error = %e, "{what}");
    format!("Something went wrong on my side; give the error id {id} to an admin.")
}

async fn post_reply(state: &AppState, key: &str, reply: Reply, card_for: Option<i64>, st: Option<ExecState>) -> Result<(), String> {
    let body = serde_json::to_value(ChatReply { reply, state: st }).map_err(|e| failure("cannot encode a reply", &e))?;
    let posted = state
        .engine
        .store()
        .post_chat(&NewChatMessage {
            channel: key.to_string(),
            author: "bot".into(),
            author_name: state.engine.bot_name().to_string(),
            reply: Some(body),
            card_for,
            ..Default::default()
        })
        .await
        .map_err(|e| failure("cannot store a chat reply", &e))?;
    state.chat().publish(
        key,
        ServerEvent::Message {
            message: MessageView::of(&posted),
        },
    );
    Ok(())
}

/// Posts the job card of a run just queued, as queued, and at once brings it up to date if a
/// worker already took the run — under the lock that [`deliver_notice`] takes, so no update is
/// missed and every browser sees the card go through every state.
async fn post_card(state: &AppState, key: &str, id: i64, queued: Reply) -> Result<(), String> {
    let mut shown = state.chat().cards.lock().await;
    post_reply(state, key, queued, Some(id), Some(ExecState::Queued)).await?;
    shown.insert(id, ExecState::Queued);
    match state.engine.notice_for(id).await {
        Ok(Some(n)) if n.state != ExecState::Queued => update_cards(state, &mut shown, &n).await,
        Ok(_) => {}
        Err(e) => tracing::warn!(execution = id, error = %e, "cannot read a run's state for its card"),
    }
    Ok(())
}

/// Replaces the cards of the notice's run with it and tells the browsers — unless they show
/// that stage or a later one already.
async fn update_cards(state: &AppState, shown: &mut HashMap<i64, ExecState>, notice: &Notice) {
    if shown.get(&notice.execution).is_some_and(|s| stage(*s) >= stage(notice.state)) {
        return;
    }
    let body = match serde_json::to_value(ChatReply {
        reply: notice.reply.clone(),
        state: Some(notice.state),
    }) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a job card");
            return;
        }
    };
    match state.engine.store().update_chat_cards(notice.execution, &body).await {
        Ok(updated) => {
            if notice.state.is_final() {
                shown.remove(&notice.execution);
            } else if !updated.is_empty() {
                shown.insert(notice.execution, notice.state);
            }
            for m in updated {
                state.chat().publish(
                    &m.channel,
                    ServerEvent::Update {
                        message: MessageView::of(&m),
                    },
                );
            }
        }
        Err(e) => tracing::error!(execution = notice.execution, error = %e, "cannot update a job card"),
    }
}

/// Updates the job cards of a run in the web chat (a notice for a `web` place). Cards not
/// posted yet are left alone: [`post_card`] brings them up to date when it posts them.
pub async fn deliver_notice(state: &AppState, notice: &Notice) {
    if notice.place.platform != "web" {
        return;
    }
    let mut shown = state.chat().cards.lock().await;
    update_cards(state, &mut shown, notice).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origin_must_be_this_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h, None), "no Origin: not a browser");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h, None));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h, None));
        assert!(!same_origin(&h, Some("https://ops.example.com")));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://ops.example.com"));
        assert!(same_origin(&h, Some("https://ops.example.com/")));
    }

    #[test]
    fn client_events_parse_strictly() {
        assert!(matches!(
            serde_json::from_str::<ClientEvent>(r#"{"type":"say","text":"help"}"#),
            Ok(ClientEvent::Say { .. })
        ));
        assert!(serde_json::from_str::<ClientEvent>(r#"{"type":"shout","text":"x"}"#).is_err());
        assert!(serde_json::from_str::<ClientEvent>(r#"{"type":"say"}"#).is_err());
    }
}
