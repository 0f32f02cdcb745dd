//! The adapter runtime: runs any number of chat adapters in one process.
//!
//! - **Supervision**: each adapter's [`Adapter::run`] is one connection; when it returns the
//!   runtime reconnects after an exponential backoff with jitter (100 ms doubling, at most
//!   [`MAX_BACKOFF`], so an adapter is back within about 5 s of its server returning), and
//!   keeps a [`Health`] record (`/metrics`, `/readyz`, `opsbot serve`'s log).
//! - **Incoming**: messages are handled in order within one conversation (place) and in
//!   parallel across conversations; an adapter's task hands each message straight to its
//!   conversation's task.
//! - **Outgoing**: every reply goes through the store's outbox and one sender per adapter,
//!   paced by the adapter's `send_rate`/`send_burst`; a reply the platform cannot take now
//!   (down, rate limited) stays queued and is sent when it can — nothing lost, nothing sent
//!   twice (a row is marked sent right after the platform accepted it; only a crash of opsbot
//!   between the two could repeat one message).
//! - **Job cards**: the reply that queues a run is its card; each state change edits it where
//!   the platform can edit, and is posted as a short follow-up where it cannot. A card never
//!   goes back to an earlier state, and pending updates of one card collapse into the latest.

use crate::{Elsewhere, Engine, Notice};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use opsbot_core::{Adapter, AdapterContext, AdapterState, Capabilities, Deliver, Envelope, ExecState, Inbox, Place, Reply, SendError};
use opsbot_store::{ChatCard, NewOutgoing, OutKind, Outgoing};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// Longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// First wait after a connection ends.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// A conversation's task ends after this long without messages.
const CONVERSATION_IDLE: Duration = Duration::from_secs(120);
/// Messages waiting in one conversation; more are answered with "send it again" instead of
/// holding up every other conversation of the adapter.
const CONVERSATION_QUEUE: usize = 1024;
/// Answers worth nothing later (`PONG`) of one conversation sent together at most.
const EPHEMERAL_BATCH: usize = 64;
/// Outbox rows read at once by an adapter's sender.
const SEND_BATCH: u32 = 64;
/// A place the platform refuses for now is retried after this, doubling up to
/// [`PLACE_BACKOFF_MAX`]; other places go on meanwhile.
const PLACE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait before a place that refused is tried again.
const PLACE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A message that could not be delivered for this long is dropped (logged, outcome `expired`).
pub const MAX_UNDELIVERED: Duration = Duration::from_secs(24 * 3600);
/// How long a final state waits for its card to be registered before it is posted on its own.
const CARD_GRACE: Duration = Duration::from_secs(3);
/// How long the senders get at shutdown to deliver what is queued while connected.
const FLUSH_AT_STOP: Duration = Duration::from_secs(3);
/// Delivered outbox rows are kept this long (for inspection), then pruned at start.
const KEEP_DELIVERED: Duration = Duration::from_secs(24 * 3600);

/// One adapter to run, with its send pacing.
pub struct AdapterSpec {
    /// The adapter.
    pub adapter: Arc<dyn Adapter>,
    /// The `type` from the config (`irc`, `matrix`, …), for health and metrics.
    pub kind: String,
    /// Messages per second at most.
    pub send_rate: f64,
    /// Messages at once before the rate applies.
    pub send_burst: u32,
}

/// What an adapter's connection looks like now.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Health {
    /// The adapter's name.
    pub name: String,
    /// Its type.
    pub kind: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Since when it is in its present state (connected or not).
    pub since: chrono::DateTime<chrono::Utc>,
    /// Why the last connection ended or failed, if it did.
    pub last_error: Option<String>,
    /// Connections lost or failed since start.
    pub reconnects: u64,
    /// Messages sent since start.
    pub sent: u64,
}

/// Messages for the web chat: the runtime hands them to whoever serves it.
pub type Forward = mpsc::UnboundedSender<Elsewhere>;

/// One conversation's queue: its task's sender, how many of its messages are sent but not yet
/// handled (the task may only be retired at zero, so order holds across a retirement), when it
/// was last used and when it last said it was behind.
struct Conversation {
    tx: mpsc::Sender<Envelope>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    last: Instant,
    told_full: Option<Instant>,
}

struct Slot {
    adapter: Arc<dyn Adapter>,
    caps: Capabilities,
    connected: Arc<watch::Sender<bool>>,
    wake: Notify,
    limiter: DefaultDirectRateLimiter,
    health: Mutex<Health>,
}

/// Every adapter's inbox: hands messages to [`ChatRuntime::take`] (weakly held: an adapter
/// keeps its inbox for webhooks, and the runtime holds the adapter).
struct Incoming(std::sync::Weak<ChatRuntime>);

impl Deliver for Incoming {
    fn deliver(&self, env: Envelope) -> Result<(), Box<Envelope>> {
        match self.0.upgrade() {
            Some(rt) => rt.take(env),
            None => Err(Box::new(env)),
        }
    }
}

/// Persists adapter values in the store under the adapter's name.
struct StoreState {
    engine: Arc<Engine>,
    adapter: String,
}

#[async_trait::async_trait]
impl AdapterState for StoreState {
    async fn load(&self, key: &str) -> Option<String> {
        match self.engine.store().adapter_value(&self.adapter, key).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(adapter = %self.adapter, key, error = %e, "cannot read an adapter value");
                None
            }
        }
    }
    async fn save(&self, key: &str, value: &str) {
        if let Err(e) = self.engine.store().put_adapter_value(&self.adapter, key, value).await {
            tracing::error!(adapter = %self.adapter, key, error = %e, "cannot store an adapter value");
        }
    }
}

/// The running adapters. Cheap to share behind an `Arc`.
pub struct ChatRuntime {
    engine: Arc<Engine>,
    slots: HashMap<String, Arc<Slot>>,
    /// Orders card posts against their updates (see [`ChatRuntime::deliver_notice`]).
    cards: tokio::sync::Mutex<()>,
    conversations: Mutex<HashMap<String, Conversation>>,
    forward: Option<Forward>,
    /// Set first at stop: senders deliver what is queued (while connected), then end.
    draining: watch::Sender<bool>,
    /// Set once the senders are done: adapters leave, everything else ends.
    shutdown: watch::Sender<bool>,
    senders: Mutex<Vec<JoinHandle<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Where a state is in a run's life: queued, running, ended.
fn stage(s: ExecState) -> u8 {
    match s {
        ExecState::Queued => 0,
        ExecState::Running => 1,
        _ => 2,
    }
}

impl ChatRuntime {
    /// Starts every adapter (supervised), its sender, and the dispatcher of incoming messages.
    /// `forward` takes messages for places that are not chat adapters (the web chat).
    pub async fn start(engine: Arc<Engine>, specs: Vec<AdapterSpec>, forward: Option<Forward>) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        let (draining, _) = watch::channel(false);
        let mut slots = HashMap::new();
        for s in specs {
            let name = s.adapter.name().to_string();
            let rate = NonZeroU32::new((s.send_rate.ceil() as u32).max(1)).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(s.send_burst.max(1)).unwrap_or(NonZeroU32::MIN);
            // Fractional rates (0.5/s) are kept exact with a period instead of a per-second count.
            let quota = if s.send_rate < 1.0 {
                Quota::with_period(Duration::from_secs_f64(1.0 / s.send_rate.max(0.001)))
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst)
            } else {
                Quota::per_second(rate).allow_burst(burst)
            };
            let (connected, _) = watch::channel(false);
            slots.insert(
                name.clone(),
                Arc::new(Slot {
                    caps: s.adapter.capabilities(),
                    adapter: s.adapter,
                    connected: Arc::new(connected),
                    wake: Notify::new(),
                    limiter: RateLimiter::direct(quota),
                    health: Mutex::new(Health {
                        name,
                        kind: s.kind,
                        connected: false,
                        since: chrono::Utc::now(),
                        last_error: None,
                        reconnects: 0,
                        sent: 0,
                    }),
                }),
            );
        }
        match engine.store().outbox_prune(chrono::Utc::now() - KEEP_DELIVERED).await {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "forgot delivered chat messages older than a day"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune the chat outbox"),
        }
        let rt = Arc::new(ChatRuntime {
            engine,
            slots,
            cards: tokio::sync::Mutex::new(()),
            conversations: Mutex::new(HashMap::new()),
            forward,
            draining,
            shutdown,
            senders: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let inbox = Inbox::direct(Arc::new(Incoming(Arc::downgrade(&rt))));
        let mut tasks = Vec::new();
        let mut senders = Vec::new();
        tasks.push(tokio::spawn(rt.clone().sweep()));
        for slot in rt.slots.values() {
            tasks.push(tokio::spawn(rt.clone().supervise(slot.clone(), inbox.clone())));
            senders.push(tokio::spawn(rt.clone().send_loop(slot.clone())));
        }
        rt.tasks.lock().unwrap_or_else(|p| p.into_inner()).extend(tasks);
        rt.senders.lock().unwrap_or_else(|p| p.into_inner()).extend(senders);
        rt
    }

    /// Hands a request made to `/hooks/NAME/…` to adapter NAME; `None` when there is none.
    pub async fn webhook(&self, name: &str, req: opsbot_core::WebhookRequest) -> Option<opsbot_core::WebhookResponse> {
        let slot = self.slots.get(name)?;
        Some(slot.adapter.webhook(req).await)
    }

    /// Whether `platform` is one of the running adapters.
    pub fn serves(&self, platform: &str) -> bool {
        self.slots.contains_key(platform)
    }

    /// The health of every adapter, by name.
    pub fn health(&self) -> Vec<Health> {
        let mut v: Vec<Health> = self
            .slots
            .values()
            .map(|s| s.health.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Stops: tells the adapters to leave, gives the senders a moment to flush what is queued
    /// while still connected, then ends every task. Undelivered messages stay in the outbox
    /// for the next start.
    pub async fn stop(&self) {
        self.draining.send_replace(true);
        for s in self.slots.values() {
            s.wake.notify_one();
        }
        let senders = std::mem::take(&mut *self.senders.lock().unwrap_or_else(|p| p.into_inner()));
        if tokio::time::timeout(FLUSH_AT_STOP + Duration::from_secs(1), futures_join(senders))
            .await
            .is_err()
        {
            tracing::warn!("chat senders did not finish in time");
        }
        self.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        if tokio::time::timeout(FLUSH_AT_STOP + Duration::from_secs(1), futures_join(tasks))
            .await
            .is_err()
        {
            tracing::warn!("chat adapters did not stop in time; leaving them");
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    // ---------------------------------------------------------------- supervision

    async fn supervise(self: Arc<Self>, slot: Arc<Slot>, inbox: Inbox) {
        let name = slot.adapter.name().to_string();
        let state: Arc<dyn AdapterState> = Arc::new(StoreState {
            engine: self.engine.clone(),
            adapter: name.clone(),
        });
        let ctx = AdapterContext::new(inbox, state, slot.connected.clone(), self.shutdown.subscribe());
        // Mirror the adapter's own "connected" into its health record and wake its sender.
        let watcher = {
            let slot = slot.clone();
            let mut rx = slot.connected.subscribe();
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let up = *rx.borrow_and_update();
                    {
                        let mut h = slot.health.lock().unwrap_or_else(|p| p.into_inner());
                        if h.connected != up {
                            h.connected = up;
                            h.since = chrono::Utc::now();
                        }
                    }
                    if up {
                        tracing::info!(adapter = %slot.adapter.name(), "connected");
                        slot.wake.notify_one();
                    }
                }
            })
        };
        let mut attempt: u32 = 0;
        loop {
            if self.stopping() {
                break;
            }
            let began = Instant::now();
            let result = {
                let run = slot.adapter.run(&ctx);
                tokio::pin!(run);
                let mut stop = self.shutdown.subscribe();
                tokio::select! {
                    r = &mut run => r,
                    _ = until(&mut stop) => {
                        // The adapter sees the same signal and should leave politely; give it a moment.
                        match tokio::time::timeout(FLUSH_AT_STOP, &mut run).await {
                            Ok(r) => r,
                            Err(_) => Ok(()),
                        }
                    }
                }
            };
            slot.connected.send_replace(false);
            if self.stopping() {
                break;
            }
            let why = match result {
                Ok(()) => "the connection ended".to_string(),
                Err(e) => e,
            };
            if began.elapsed() >= STABLE_AFTER {
                attempt = 0;
            }
            let wait = backoff(attempt);
            attempt = attempt.saturating_add(1);
            {
                let mut h = slot.health.lock().unwrap_or_else(|p| p.into_inner());
                h.reconnects += 1;
                h.last_error = Some(why.clone());
            }
            tracing::warn!(adapter = %name, error = %why, retry_in_ms = wait.as_millis() as u64, "chat connection lost; reconnecting");
            let mut stop = self.shutdown.subscribe();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = until(&mut stop) => break,
            }
        }
        watcher.abort();
    }

    // ---------------------------------------------------------------- incoming

    /// Retires, every [`CONVERSATION_IDLE`]`/4`, the tasks of conversations idle for
    /// [`CONVERSATION_IDLE`] with none of their messages queued or being handled.
    async fn sweep(self: Arc<Self>) {
        use std::sync::atomic::Ordering;
        let mut stop = self.shutdown.subscribe();
        let mut sweep = tokio::time::interval(CONVERSATION_IDLE / 4);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sweep.tick() => {}
                _ = until(&mut stop) => return,
            }
            // Messages are handed to conversations only under this lock, so a conversation
            // with nothing pending that is removed here gets no message after its last one.
            let mut map = self.conversations.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, c| c.pending.load(Ordering::SeqCst) > 0 || c.last.elapsed() < CONVERSATION_IDLE);
        }
    }

    /// Hands an incoming message to its conversation's task, from the adapter's own task and
    /// without waiting on the conversation: a conversation with [`CONVERSATION_QUEUE`]
    /// messages queued gets a "send it again" note instead of stalling the adapter (and with
    /// it every other conversation). Gives the message back once opsbot is stopping.
    fn take(self: &Arc<Self>, env: Envelope) -> Result<(), Box<Envelope>> {
        use std::sync::atomic::Ordering;
        if self.stopping() {
            return Err(Box::new(env));
        }
        let key = env.place.key();
        let full = {
            let mut map = self.conversations.lock().unwrap_or_else(|p| p.into_inner());
            // A conversation whose task is gone (it panicked) starts afresh.
            if map.get(&key).is_some_and(|c| c.tx.is_closed()) {
                map.remove(&key);
            }
            let c = map.entry(key.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(CONVERSATION_QUEUE);
                let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                tokio::spawn(self.clone().conversation(rx, pending.clone()));
                Conversation {
                    tx,
                    pending,
                    last: Instant::now(),
                    told_full: None,
                }
            });
            c.last = Instant::now();
            c.pending.fetch_add(1, Ordering::SeqCst);
            match c.tx.try_send(env) {
                Ok(()) => None,
                Err(e) => {
                    c.pending.fetch_sub(1, Ordering::SeqCst);
                    let env = match e {
                        mpsc::error::TrySendError::Full(env) | mpsc::error::TrySendError::Closed(env) => env,
                    };
                    // Say so at most once a minute per conversation.
                    let tell = c.told_full.is_none_or(|t| t.elapsed() > Duration::from_secs(60));
                    if tell {
                        c.told_full = Some(Instant::now());
                    }
                    Some((env, tell))
                }
            }
        };
        if let Some((env, tell)) = full {
            tracing::warn!(place = %key, user = %env.user, "a conversation has {CONVERSATION_QUEUE} messages waiting; this one is not read");
            if tell {
                let r = Reply::text(
                    opsbot_core::Tone::Warning,
                    format!(
                        "I'm still working through {CONVERSATION_QUEUE} earlier messages here, so I did not read the latest ones. Send them again in a minute."
                    ),
                );
                let rt = self.clone();
                tokio::spawn(async move { rt.push(&env.place, OutKind::Message, None, &r).await });
            }
        }
        Ok(())
    }

    /// Handles one conversation's messages in order; ends when [`ChatRuntime::sweep`] retires it.
    async fn conversation(self: Arc<Self>, mut rx: mpsc::Receiver<Envelope>, pending: Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering::SeqCst;
        while let Some(env) = rx.recv().await {
            let out = self.engine.handle(&env).await;
            if !out.ephemeral {
                self.answer(&env, out, &rx).await;
                pending.fetch_sub(1, SeqCst);
                continue;
            }
            // Answers worth nothing later (`PONG`) go out at once, together with those of the
            // messages already queued behind this one (a burst of `ping`s), in one
            // `Adapter::post_all`: one write on IRC instead of one per answer. Nothing waits
            // for a message that has not arrived.
            let mut replies = out.replies;
            let mut handled = 1;
            let mut after = None;
            while handled < EPHEMERAL_BATCH {
                let Ok(next) = rx.try_recv() else { break };
                let out = self.engine.handle(&next).await;
                if !out.ephemeral {
                    after = Some((next, out));
                    break;
                }
                replies.extend(out.replies);
                handled += 1;
            }
            self.send_now(&env.place, &replies).await;
            pending.fetch_sub(handled, SeqCst);
            if let Some((next, out)) = after {
                self.answer(&next, out, &rx).await;
                pending.fetch_sub(1, SeqCst);
            }
        }
    }

    /// Queues the replies of one handled message (a run's card, the rest through the outbox)
    /// and what it made for other places.
    async fn answer(&self, env: &Envelope, out: crate::Outcome, rx: &mpsc::Receiver<Envelope>) {
        if out.queued.is_some() && rx.is_empty() {
            // Store calls do not yield, so without this the run's card would always be
            // posted before a worker of this process could take the run: let it (it was
            // woken when the run was queued), and a platform without edits gets the card
            // as running instead of a "queued" line stale at once, and the run starts
            // while the card goes out. Not while more messages wait here: the worker's
            // claim and spawn would then run on this thread between every two of them
            // instead of beside them (a burst of 200 runs took ~20 % longer).
            tokio::task::yield_now().await;
        }
        for reply in out.replies {
            let card = reply.card_for.filter(|id| out.queued == Some(*id));
            match card {
                Some(id) => self.post_card(&env.place, id, reply).await,
                None => self.push(&env.place, OutKind::Message, None, &reply).await,
            }
        }
        self.deliver_elsewhere(out.elsewhere).await;
    }

    // ---------------------------------------------------------------- outgoing

    /// Sends replies that are worth nothing later (`PONG`) at once, paced like the rest,
    /// without the outbox: if the platform cannot take them now they are dropped (and logged).
    async fn send_now(&self, place: &Place, replies: &[Reply]) {
        let Some(slot) = self.slots.get(&place.platform) else {
            tracing::error!(place = %place, "no adapter for this place; the message is dropped");
            return;
        };
        // Each goes once its token is there; those whose tokens are there already go together.
        let mut rest = replies;
        while !rest.is_empty() {
            slot.limiter.until_ready().await;
            let mut n = 1;
            while n < rest.len() && slot.limiter.check().is_ok() {
                n += 1;
            }
            match slot.adapter.post_all(place, &rest[..n]).await {
                Ok(()) => slot.health.lock().unwrap_or_else(|p| p.into_inner()).sent += n as u64,
                Err(e) => {
                    tracing::info!(place = %place, error = ?e, "answers to `ping` could not be sent; dropped");
                    return;
                }
            }
            rest = &rest[n..];
        }
    }

    /// Queues a reply for one of our adapters and wakes its sender.
    async fn push(&self, place: &Place, kind: OutKind, execution: Option<i64>, reply: &Reply) {
        let Some(slot) = self.slots.get(&place.platform) else {
            tracing::error!(place = %place, "no adapter for this place; the message is dropped");
            return;
        };
        let body = match serde_json::to_value(reply) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                return;
            }
        };
        let msg = NewOutgoing {
            place: place.clone(),
            kind,
            execution,
            reply: body,
        };
        if let Err(e) = self.engine.store().outbox_push(&msg).await {
            tracing::error!(place = %place, error = %e, text = %reply.plain_text().lines().next().unwrap_or(""), "cannot queue a chat message; it is lost");
            return;
        }
        slot.wake.notify_one();
    }

    /// Messages the engine made for other conversations: ours are queued, others forwarded.
    pub async fn deliver_elsewhere(&self, list: Vec<Elsewhere>) {
        for e in list {
            if self.serves(&e.place.platform) {
                match e.reply.card_for {
                    Some(id) => self.post_card(&e.place, id, e.reply).await,
                    None => self.push(&e.place, OutKind::Message, None, &e.reply).await,
                }
            } else if e.place.platform == "web" {
                if let Some(f) = &self.forward {
                    let _ = f.send(e);
                }
            } else if !["api", "cli", "terminal"].contains(&e.place.platform.as_str()) {
                // (The API and the command line have no conversation to post into.)
                tracing::warn!(place = %e.place, "no adapter of that name is configured; a message for it is dropped");
            }
        }
    }

    /// Posts a run's job card. Where the platform can edit messages the card is posted as
    /// queued and brought up to date at once if a worker already took the run, so the card
    /// shows every state. Where it cannot (IRC) every state is a message of its own, so
    /// the card is posted in the state the run is in by now — as running, for a short queue —
    /// instead of a "queued" line that is stale at once. Under the lock
    /// [`ChatRuntime::deliver_notice`] takes, so no state is missed and none is shown twice.
    async fn post_card(&self, place: &Place, id: i64, queued: Reply) {
        let _order = self.cards.lock().await;
        // A run so quick (or a process so busy) that its end was posted on its own before the
        // card came: the person has the result already.
        if let Ok(cards) = self.engine.store().chat_cards_of(id).await
            && cards.iter().any(|c| &c.place == place && c.state.is_final())
        {
            return;
        }
        let edits = self.slots.get(&place.platform).is_some_and(|s| s.caps.edit);
        let now = if edits {
            None
        } else {
            match self.engine.notice_for(id).await {
                Ok(n) => n.filter(|n| n.state != ExecState::Queued),
                Err(e) => {
                    tracing::warn!(execution = id, error = %e, "cannot read a run's state for its card; posting it as queued");
                    None
                }
            }
        };
        let (state, reply) = match now {
            Some(n) => (n.state, n.reply),
            None => (ExecState::Queued, queued),
        };
        let card = ChatCard {
            place: place.clone(),
            execution: id,
            message_id: None,
            state,
        };
        if let Err(e) = self.engine.store().put_chat_card(&card).await {
            tracing::error!(execution = id, error = %e, "cannot record a job card; its updates will come as new messages");
        }
        self.push(place, OutKind::Card, Some(id), &reply).await;
        if edits {
            match self.engine.notice_for(id).await {
                Ok(Some(n)) if n.state != ExecState::Queued => self.update_cards(&n, vec![card]).await,
                Ok(_) => {}
                Err(e) => tracing::warn!(execution = id, error = %e, "cannot read a run's state for its card"),
            }
        }
    }

    /// Queues the new state of a run's cards in our conversations. A run whose card is not
    /// known here (yet) gets its end report as a message of its own in its place, after a
    /// grace period in which its card may still be posted.
    pub async fn deliver_notice(self: &Arc<Self>, notice: &Notice) {
        {
            let _order = self.cards.lock().await;
            let cards = match self.engine.store().chat_cards_of(notice.execution).await {
                Ok(c) => c.into_iter().filter(|c| self.serves(&c.place.platform)).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::error!(execution = notice.execution, error = %e, "cannot read a run's job cards");
                    return;
                }
            };
            if !cards.is_empty() {
                self.update_cards(notice, cards).await;
                return;
            }
        }
        if !notice.state.is_final() || !self.serves(&notice.place.platform) {
            return;
        }
        let rt = self.clone();
        let notice = notice.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CARD_GRACE).await;
            let _order = rt.cards.lock().await;
            match rt.engine.store().chat_cards_of(notice.execution).await {
                Ok(c) if c.iter().any(|c| rt.serves(&c.place.platform)) => {}
                Ok(_) => {
                    // Recorded as a card in its final state, so a card posted even later is not
                    // posted at all (see post_card) and the result is not shown twice.
                    let card = ChatCard {
                        place: notice.place.clone(),
                        execution: notice.execution,
                        message_id: None,
                        state: notice.state,
                    };
                    if let Err(e) = rt.engine.store().put_chat_card(&card).await {
                        tracing::error!(execution = notice.execution, error = %e, "cannot record a run's end report");
                    }
                    rt.push(&notice.place, OutKind::Message, Some(notice.execution), &notice.reply)
                        .await
                }
                Err(e) => tracing::error!(execution = notice.execution, error = %e, "cannot read a run's job cards"),
            }
        });
    }

    /// Queues an update of each card that shows an earlier stage. Call with the cards lock.
    async fn update_cards(&self, notice: &Notice, cards: Vec<ChatCard>) {
        for mut card in cards {
            if stage(card.state) >= stage(notice.state) {
                continue;
            }
            card.state = notice.state;
            if let Err(e) = self.engine.store().put_chat_card(&card).await {
                tracing::error!(execution = notice.execution, error = %e, "cannot record a job card's state");
            }
            self.push(&card.place, OutKind::CardUpdate, Some(notice.execution), &notice.reply)
                .await;
        }
    }

    /// Delivers one adapter's outbox while it is connected: in order within each place; a place
    /// the platform refuses for now (a room the bot was kicked from) waits with its own backoff
    /// while the other places go on.
    async fn send_loop(self: Arc<Self>, slot: Arc<Slot>) {
        let name = slot.adapter.name().to_string();
        let mut connected = slot.connected.subscribe();
        let mut stop = self.draining.subscribe();
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        // Places refused for now (until when), and the last wait of each place that keeps
        // refusing (doubled at each refusal, forgotten once a message gets through).
        let mut blocked: HashMap<String, Instant> = HashMap::new();
        let mut waits: HashMap<String, Duration> = HashMap::new();
        loop {
            if self.draining() {
                let d = *stop_deadline.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_AT_STOP);
                if tokio::time::Instant::now() >= d || !*connected.borrow() {
                    return;
                }
            }
            if !*connected.borrow() {
                blocked.clear();
                waits.clear();
                tokio::select! {
                    _ = until(&mut connected) => {}
                    _ = until(&mut stop) => continue,
                }
            }
            blocked.retain(|_, t| *t > Instant::now());
            let skip: Vec<String> = blocked.keys().cloned().collect();
            let batch = match self.engine.store().outbox_pending(&name, &skip, SEND_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(adapter = %name, error = %e, "cannot read the chat outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                if self.draining() {
                    return;
                }
                self.idle(&slot, &blocked, &mut stop).await;
                continue;
            }
            // Whether the outbox may hold more for us than this batch: a full batch, or a stop
            // on the way. Otherwise the next read waits for a push (a push wakes the sender
            // even while it is delivering), not one more read to find nothing.
            let mut more = batch.len() >= SEND_BATCH as usize;
            for (i, msg) in batch.iter().enumerate() {
                let key = msg.place.key();
                if blocked.contains_key(&key) {
                    continue; // an earlier message of this place was refused: keep the order
                }
                // A card update followed by a later one for the same card is not worth sending.
                if msg.kind == OutKind::CardUpdate
                    && batch[i + 1..]
                        .iter()
                        .any(|m| m.kind == OutKind::CardUpdate && m.execution == msg.execution && m.place == msg.place)
                {
                    self.done(msg.id, "superseded", None).await;
                    continue;
                }
                match self.deliver(&slot, msg).await {
                    Ok(()) => {
                        waits.remove(&key);
                        self.done(msg.id, "sent", None).await;
                        slot.health.lock().unwrap_or_else(|p| p.into_inner()).sent += 1;
                    }
                    Err(SendError::Rejected(why)) => {
                        tracing::warn!(adapter = %name, place = %msg.place, error = %why, "the platform refused a message; dropped");
                        self.done(msg.id, "rejected", Some(&why)).await;
                    }
                    Err(SendError::RateLimited(wait)) => {
                        self.failed(msg.id, &format!("rate limited for {wait:?}")).await;
                        tracing::info!(adapter = %name, wait_ms = wait.as_millis() as u64, "rate limited by the platform; waiting");
                        tokio::time::sleep(wait.min(Duration::from_secs(300))).await;
                        more = true;
                        break;
                    }
                    Err(SendError::Unavailable(why)) => {
                        let age = (chrono::Utc::now() - msg.created_at).to_std().unwrap_or_default();
                        if age > MAX_UNDELIVERED {
                            tracing::warn!(adapter = %name, place = %msg.place, error = %why, "a message could not be delivered for a day; dropped");
                            self.done(msg.id, "expired", Some(&why)).await;
                            continue;
                        }
                        self.failed(msg.id, &why).await;
                        if !*connected.borrow() {
                            // The connection is gone: everything waits for the next one.
                            tracing::info!(adapter = %name, error = %why, "cannot send now; kept for when the platform is back");
                            more = true;
                            break;
                        }
                        // Connected, but this place is not reachable now: it waits, others go on.
                        let wait = waits.get(&key).map(|w| (*w * 2).min(PLACE_BACKOFF_MAX)).unwrap_or(PLACE_BACKOFF);
                        tracing::info!(adapter = %name, place = %msg.place, error = %why, retry_in_ms = wait.as_millis() as u64, "cannot send to this place now; kept");
                        waits.insert(key.clone(), wait);
                        blocked.insert(key, Instant::now() + wait);
                    }
                }
            }
            if !more && !self.draining() {
                self.idle(&slot, &blocked, &mut stop).await;
            }
        }
    }

    /// The sender's wait between reads: until a push wakes it, the first refused place may be
    /// tried again, 5 s pass (rows another process queued), or opsbot starts stopping.
    async fn idle(&self, slot: &Slot, blocked: &HashMap<String, Instant>, stop: &mut watch::Receiver<bool>) {
        let next = blocked.values().map(|t| t.saturating_duration_since(Instant::now())).min();
        tokio::select! {
            _ = slot.wake.notified() => {}
            _ = tokio::time::sleep(next.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5))) => {}
            _ = until(stop) => {}
        }
    }

    async fn deliver(&self, slot: &Slot, msg: &Outgoing) -> Result<(), SendError> {
        let reply: Reply =
            serde_json::from_value(msg.reply.clone()).map_err(|e| SendError::Rejected(format!("an unreadable reply: {e}")))?;
        slot.limiter.until_ready().await;
        match msg.kind {
            OutKind::Message => slot.adapter.post(&msg.place, &reply).await.map(|_| ()),
            OutKind::Card => {
                let posted = slot.adapter.post(&msg.place, &reply).await?;
                if let (Some(id), Some(exec)) = (posted.id, msg.execution) {
                    self.remember_card_message(&msg.place, exec, id).await;
                }
                Ok(())
            }
            OutKind::CardUpdate => {
                let message_id = match (slot.caps.edit, msg.execution) {
                    (true, Some(exec)) => self.card_message(&msg.place, exec).await,
                    _ => None,
                };
                match message_id {
                    Some(id) => match slot.adapter.edit(&msg.place, &id, &reply).await {
                        // The card is gone (deleted, too old to edit): show the state anew.
                        Err(SendError::Rejected(why)) => {
                            tracing::info!(place = %msg.place, error = %why, "cannot edit a job card; posting its state instead");
                            slot.adapter.post(&msg.place, &reply).await.map(|_| ())
                        }
                        other => other,
                    },
                    None => slot.adapter.post(&msg.place, &reply).await.map(|_| ()),
                }
            }
        }
    }

    async fn card_message(&self, place: &Place, execution: i64) -> Option<String> {
        match self.engine.store().chat_cards_of(execution).await {
            Ok(cards) => cards.into_iter().find(|c| &c.place == place).and_then(|c| c.message_id),
            Err(e) => {
                tracing::error!(execution, error = %e, "cannot read a job card");
                None
            }
        }
    }

    async fn remember_card_message(&self, place: &Place, execution: i64, message_id: String) {
        let _order = self.cards.lock().await;
        let state = match self.engine.store().chat_cards_of(execution).await {
            Ok(cards) => cards.into_iter().find(|c| &c.place == place).map(|c| c.state),
            Err(_) => None,
        };
        let card = ChatCard {
            place: place.clone(),
            execution,
            message_id: Some(message_id),
            state: state.unwrap_or(ExecState::Queued),
        };
        if let Err(e) = self.engine.store().put_chat_card(&card).await {
            tracing::error!(execution, error = %e, "cannot record a job card's message id; its updates will come as new messages");
        }
    }

    async fn done(&self, id: i64, outcome: &str, error: Option<&str>) {
        if let Err(e) = self.engine.store().outbox_done(id, outcome, error).await {
            tracing::error!(outbox = id, error = %e, "cannot mark a chat message delivered; it may be sent again");
        }
    }

    async fn failed(&self, id: i64, error: &str) {
        if let Err(e) = self.engine.store().outbox_failed(id, error).await {
            tracing::error!(outbox = id, error = %e, "cannot record a failed chat delivery");
        }
    }
}

/// The wait before reconnect attempt `attempt` (0-based): 100 ms doubling up to
/// [`MAX_BACKOFF`], each scaled by a random factor in [0.5, 1.0] so many bots do not come back
/// in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF);
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b) as f64 / u16::MAX as f64
    } else {
        0.5
    };
    base.mul_f64(0.5 + 0.5 * r)
}

/// Resolves once the flag is true (or its sender is gone).
async fn until(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for a in 0..40 {
            let d = backoff(a);
            let base = FIRST_BACKOFF.saturating_mul(1u32 << a.min(16)).min(MAX_BACKOFF);
            assert!(d >= base / 2 && d <= base, "attempt {a}: {d:?} outside [{:?}, {base:?}]", base / 2);
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }
}
