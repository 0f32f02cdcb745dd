//! The `Adapter` trait: a chat platform seen from opsbot.
//!
//! An adapter knows its platform and nothing of the engine or the store. The adapter runtime
//! (`opsbot_engine::chat`) supervises it: it calls [`Adapter::run`] for one connection at a
//! time and reconnects with backoff when it returns, hands it replies one at a time from the
//! store's outbox through [`Adapter::post`] and [`Adapter::edit`], and retries what the
//! platform could not take ([`SendError`]) — so nothing is lost while the platform is down.

use crate::envelope::{Envelope, Place};
use crate::reply::Reply;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What a platform can do; the presenter degrades gracefully for what it cannot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Edit a message already sent (live job cards). Without it a card's state changes are
    /// posted as short follow-up messages.
    pub edit: bool,
    /// Threads.
    pub threads: bool,
    /// Rich text beyond plain lines.
    pub rich_text: bool,
    /// Clickable buttons.
    pub buttons: bool,
    /// File uploads.
    pub files: bool,
    /// Reactions.
    pub reactions: bool,
    /// Direct messages.
    pub direct: bool,
    /// Forms ([`crate::reply::Block::Form`]): a job's parameters asked in a dialog (Slack
    /// modals).
    pub forms: bool,
}

impl Capabilities {
    /// The capability names that are set, for `opsbot check` and the docs.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.edit, "edit"),
            (self.threads, "threads"),
            (self.rich_text, "rich_text"),
            (self.buttons, "buttons"),
            (self.files, "files"),
            (self.reactions, "reactions"),
            (self.direct, "direct"),
            (self.forms, "forms"),
        ];
        all.into_iter().filter(|(on, _)| *on).map(|(_, n)| n).collect()
    }
}

/// Why a message could not be delivered, and so what the runtime does with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Not connected, or the connection broke: kept and retried once the adapter is back.
    #[error("the platform is not reachable: {0}")]
    Unavailable(String),
    /// The platform asked to slow down: retried after this long.
    #[error("rate limited; retry after {0:?}")]
    RateLimited(Duration),
    /// The platform refused this message for good (no such room, not allowed there, too
    /// large even when split): logged and dropped, never retried.
    #[error("refused by the platform: {0}")]
    Rejected(String),
}

/// A message the platform accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Posted {
    /// The platform's id of the message, where it has one that can be edited later.
    pub id: Option<String>,
}

/// Small persistent values an adapter keeps across restarts (e.g. Matrix's `next_batch`),
/// stored by the runtime under the adapter's name.
#[async_trait::async_trait]
pub trait AdapterState: Send + Sync {
    /// The value stored under `key`, if any.
    async fn load(&self, key: &str) -> Option<String>;
    /// Stores `value` under `key`; an adapter may go on if this fails (it is logged).
    async fn save(&self, key: &str, value: &str);
}

/// Keeps nothing: for adapters run without a store (the terminal, unit tests).
pub struct NoState;

#[async_trait::async_trait]
impl AdapterState for NoState {
    async fn load(&self, _key: &str) -> Option<String> {
        None
    }
    async fn save(&self, _key: &str, _value: &str) {}
}

/// Takes incoming messages straight from an adapter's task, without waiting: the chat runtime
/// hands each to its conversation's queue right there, so a message crosses no task of its own
/// between the adapter and the conversation that handles it.
pub trait Deliver: Send + Sync {
    /// Takes `env`, or gives it back when opsbot no longer takes messages (it is stopping).
    fn deliver(&self, env: Envelope) -> Result<(), Box<Envelope>>;
}

/// Where an adapter puts what it receives: the chat runtime's conversations
/// ([`Inbox::direct`]), or a channel (tests and one-off use, [`AdapterContext::standalone`]).
#[derive(Clone)]
pub struct Inbox(InboxTo);

#[derive(Clone)]
enum InboxTo {
    Channel(mpsc::Sender<Envelope>),
    Direct(Arc<dyn Deliver>),
}

/// The inbox no longer takes messages: opsbot is stopping (or the test dropped its receiver).
/// Carries the message back.
#[derive(Debug, thiserror::Error)]
#[error("opsbot no longer takes messages (stopping)")]
pub struct InboxClosed(pub Box<Envelope>);

impl Inbox {
    /// An inbox handing messages to `to` from the adapter's own task.
    pub fn direct(to: Arc<dyn Deliver>) -> Self {
        Self(InboxTo::Direct(to))
    }

    /// An inbox that is a channel; `send` waits while it is full.
    pub fn channel(tx: mpsc::Sender<Envelope>) -> Self {
        Self(InboxTo::Channel(tx))
    }

    /// Hands over one incoming message (or button press). Fails only once opsbot no longer
    /// takes messages; an adapter then ends its connection.
    pub async fn send(&self, env: Envelope) -> Result<(), InboxClosed> {
        match &self.0 {
            InboxTo::Direct(d) => d.deliver(env).map_err(InboxClosed),
            InboxTo::Channel(tx) => tx.send(env).await.map_err(|e| InboxClosed(Box::new(e.0))),
        }
    }
}

impl From<mpsc::Sender<Envelope>> for Inbox {
    fn from(tx: mpsc::Sender<Envelope>) -> Self {
        Self::channel(tx)
    }
}

/// What [`Adapter::run`] gets: where to put incoming messages, where to keep state, how to
/// report that the connection is up, and when to stop.
#[derive(Clone)]
pub struct AdapterContext {
    /// Every incoming message (or button press), normalised.
    pub inbox: Inbox,
    /// Persistent values under this adapter's name.
    pub state: Arc<dyn AdapterState>,
    connected: Arc<watch::Sender<bool>>,
    shutdown: watch::Receiver<bool>,
}

impl AdapterContext {
    /// A context; `connected` is set by [`AdapterContext::connected`] and cleared by the
    /// runtime when `run` returns; `shutdown` turns true when opsbot stops.
    pub fn new(
        inbox: impl Into<Inbox>,
        state: Arc<dyn AdapterState>,
        connected: Arc<watch::Sender<bool>>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            inbox: inbox.into(),
            state,
            connected,
            shutdown,
        }
    }

    /// A context for tests and one-off use: returns it with the receiving end of its inbox
    /// and the sender that stops it.
    pub fn standalone() -> (Self, mpsc::Receiver<Envelope>, watch::Sender<bool>) {
        let (tx, rx) = mpsc::channel(1024);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (conn, _) = watch::channel(false);
        (Self::new(tx, Arc::new(NoState), Arc::new(conn), stop_rx), rx, stop_tx)
    }

    /// Tells the runtime the connection is up and messages can be sent (after joining the
    /// configured rooms, where the platform has rooms).
    pub fn connected(&self) {
        self.connected.send_replace(true);
    }

    /// Whether the adapter reported itself connected (and has not dropped since).
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Whether opsbot is stopping.
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when opsbot starts stopping (at once if it already is).
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// A request a platform made to opsbot's web server under `/hooks/NAME/…` (Slack's Events API,
/// slash commands and button presses; Mattermost's slash commands and message buttons). The
/// web server hands it over unparsed (body as bytes, size already limited) so the adapter can
/// check a signature over the exact bytes before reading anything.
#[derive(Clone)]
pub struct WebhookRequest {
    /// `POST`, `GET` …
    pub method: String,
    /// The path after `/hooks/NAME`, e.g. `/events` (always starts with `/`).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Headers with lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, exactly as received.
    pub body: Vec<u8>,
}

/// Header names and the body's size only: header values and bodies carry the platforms' tokens
/// (Mattermost's `Authorization: Token …`, a slash command's `token=…`).
impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query.as_ref().map(|_| "…"))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl WebhookRequest {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What opsbot answers a [`WebhookRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl WebhookResponse {
    /// A JSON body with status 200.
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }
    /// A plain-text body with this status (errors say what was wrong, never a secret).
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: text.into().into_bytes(),
        }
    }
    /// An empty 200 (an acknowledgement).
    pub fn ok() -> Self {
        Self::text(200, "")
    }
}

/// A chat platform connection. Adapters speak `Envelope` in and `Reply` out, nothing more.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    /// The adapter's name from the config (`[adapters.NAME]`), used as `platform` in user ids
    /// and places.
    fn name(&self) -> &str;
    /// What it can render.
    fn capabilities(&self) -> Capabilities;
    /// One connection: connects, calls [`AdapterContext::connected`] once ready, sends every
    /// incoming message to the context's inbox, and returns `Ok` when opsbot stops (after
    /// leaving politely) or `Err` with a reason when the connection is lost or cannot be made;
    /// the runtime then reconnects with backoff. Malformed input from the platform is logged
    /// and skipped, never a reason to drop the connection.
    async fn run(&self, ctx: &AdapterContext) -> Result<(), String>;
    /// Delivers a reply to a place. Long replies are split as the platform needs; the id
    /// returned (if any) is the message to [`Adapter::edit`] later.
    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError>;
    /// Delivers several replies to one place, in order, as [`Adapter::post`] would one by one
    /// (the default). The runtime uses it for answers that pile up in one conversation (a
    /// burst of `ping`s); an adapter that can send them in one write does (IRC). Stops at the
    /// first error and returns it.
    async fn post_all(&self, place: &Place, replies: &[Reply]) -> Result<(), SendError> {
        for r in replies {
            self.post(place, r).await?;
        }
        Ok(())
    }
    /// Replaces a message posted earlier (a job card's new state). Only called when
    /// [`Capabilities::edit`] is set.
    async fn edit(&self, _place: &Place, _id: &str, _reply: &Reply) -> Result<(), SendError> {
        Err(SendError::Rejected(format!("{} cannot edit messages", self.name())))
    }
    /// A request the platform made to `/hooks/NAME/…` on opsbot's web server. Adapters that
    /// receive nothing over HTTP keep the default (404). The adapter puts what it accepts into
    /// the inbox of the context its current [`Adapter::run`] got, and answers quickly (Slack
    /// wants its answer within 3 seconds): the engine's replies go through the outbox later.
    async fn webhook(&self, _req: WebhookRequest) -> WebhookResponse {
        WebhookResponse::text(404, format!("adapter `{}` takes no requests over HTTP", self.name()))
    }
}
