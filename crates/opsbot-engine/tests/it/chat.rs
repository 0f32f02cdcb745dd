//! The adapter runtime with an in-process adapter whose "server" the test takes down and brings
//! back: delivery through the outbox, job cards edited or followed up, order, the platform's
//! rate limits and refusals, reconnection and health.

use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Adapter, AdapterContext, Capabilities, Envelope, Place, Posted, Reply, SendError, UserId};
use opsbot_engine::Engine;
use opsbot_engine::chat::{AdapterSpec, ChatRuntime};
use opsbot_store::{Finish, SqliteStore, Store};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const CONFIG: &str = r#"
[access]
default_role = "admin"

[jobs.deploy]
aliases = ["deploy {app} to {env}"]
runner = { type = "exec", argv = ["true"] }
[[jobs.deploy.params]]
name = "app"
type = "enum"
values = ["api", "web"]
required = true
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["dev", "prod"]
required = true
"#;

/// What the fake platform received.
#[derive(Clone, Debug, PartialEq)]
enum Got {
    Post { channel: String, id: String, text: String },
    Edit { channel: String, id: String, text: String },
}

struct Fake {
    name: String,
    edit: bool,
    up: watch::Sender<bool>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Envelope>>,
    got: Mutex<Vec<Got>>,
    posts: AtomicU32,
    /// Answer this many sends with "rate limited".
    limited: AtomicU32,
    /// While true, #kicked cannot be reached (the rest can).
    kicked: watch::Sender<bool>,
    /// While false, a PONG for #slow is held in `post` (its conversation's task waits there);
    /// `held` counts the PONGs that came to wait.
    gate: watch::Sender<bool>,
    held: AtomicU32,
    /// How many replies each `post_all` carried.
    batches: Mutex<Vec<usize>>,
}

impl Fake {
    fn new(name: &str, edit: bool) -> (Arc<Fake>, mpsc::Sender<Envelope>) {
        let (tx, rx) = mpsc::channel(1024);
        let (up, _) = watch::channel(true);
        (
            Arc::new(Fake {
                name: name.into(),
                edit,
                up,
                incoming: tokio::sync::Mutex::new(rx),
                got: Mutex::new(Vec::new()),
                posts: AtomicU32::new(0),
                limited: AtomicU32::new(0),
                kicked: watch::channel(false).0,
                gate: watch::channel(true).0,
                held: AtomicU32::new(0),
                batches: Mutex::new(Vec::new()),
            }),
            tx,
        )
    }
    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
    fn check(&self) -> Result<(), SendError> {
        if !*self.up.borrow() {
            return Err(SendError::Unavailable("the fake server is down".into()));
        }
        if self.limited.load(Ordering::SeqCst) > 0 {
            self.limited.fetch_sub(1, Ordering::SeqCst);
            return Err(SendError::RateLimited(Duration::from_millis(50)));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Adapter for Fake {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edit: self.edit,
            direct: true,
            ..Default::default()
        }
    }
    async fn run(&self, ctx: &AdapterContext) -> Result<(), String> {
        let mut up = self.up.subscribe();
        if !*up.borrow() {
            return Err("connection refused".into());
        }
        ctx.connected();
        let mut incoming = self.incoming.lock().await;
        loop {
            tokio::select! {
                env = incoming.recv() => match env {
                    Some(env) => { let _ = ctx.inbox.send(env).await; }
                    None => return Ok(()),
                },
                _ = async { let _ = up.wait_for(|u| !*u).await; } => return Err("connection reset by peer".into()),
                _ = ctx.stopped() => return Ok(()),
            }
        }
    }
    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        self.check()?;
        if place.channel == "#gone" {
            return Err(SendError::Rejected("no such channel".into()));
        }
        if *self.kicked.borrow() && place.channel == "#kicked" {
            return Err(SendError::Unavailable("not in #kicked".into()));
        }
        if place.channel == "#slow" && reply.plain_text().trim() == "PONG" {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _ = self.gate.subscribe().wait_for(|open| *open).await;
        }
        let id = format!("m{}", self.posts.fetch_add(1, Ordering::SeqCst) + 1);
        self.got.lock().unwrap().push(Got::Post {
            channel: place.channel.clone(),
            id: id.clone(),
            text: reply.plain_text(),
        });
        Ok(Posted { id: Some(id) })
    }
    async fn post_all(&self, place: &Place, replies: &[Reply]) -> Result<(), SendError> {
        self.batches.lock().unwrap().push(replies.len());
        for r in replies {
            self.post(place, r).await?;
        }
        Ok(())
    }
    async fn edit(&self, place: &Place, id: &str, reply: &Reply) -> Result<(), SendError> {
        self.check()?;
        self.got.lock().unwrap().push(Got::Edit {
            channel: place.channel.clone(),
            id: id.into(),
            text: reply.plain_text(),
        });
        Ok(())
    }
}

async fn setup(edit: bool) -> (Arc<ChatRuntime>, Arc<Fake>, mpsc::Sender<Envelope>, Arc<Engine>, Arc<dyn Store>) {
    let (fake, tx) = Fake::new("fake", edit);
    let (rt, engine, store) = start(fake.clone(), None).await;
    (rt, fake, tx, engine, store)
}

/// The runtime with one fake adapter on a fresh engine and store.
async fn start(fake: Arc<Fake>, forward: Option<opsbot_engine::chat::Forward>) -> (Arc<ChatRuntime>, Arc<Engine>, Arc<dyn Store>) {
    start_paced(fake, forward, 1000.0, 1000).await
}

/// The same, sending at most `rate` messages a second in bursts of `burst`.
async fn start_paced(
    fake: Arc<Fake>,
    forward: Option<opsbot_engine::chat::Forward>,
    rate: f64,
    burst: u32,
) -> (Arc<ChatRuntime>, Arc<Engine>, Arc<dyn Store>) {
    let cfg = Config::parse(CONFIG, Path::new("/tmp/opsbot-chat.toml"), LoadOptions::default()).expect("config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.expect("store"));
    let engine = Arc::new(Engine::new(Arc::new(cfg.catalog), cfg.bot, store.clone()).with_access(cfg.access));
    let spec = AdapterSpec {
        adapter: fake,
        kind: "fake".into(),
        send_rate: rate,
        send_burst: burst,
    };
    (ChatRuntime::start(engine.clone(), vec![spec], forward).await, engine, store)
}

fn said(channel: &str, text: &str) -> Envelope {
    let mut e = Envelope::direct(UserId::new("fake", "ana"), Place::new("fake", channel), text);
    e.direct = channel.starts_with('@');
    e
}

/// Waits until `f` holds for what the fake received (at most 10 s).
async fn until(fake: &Fake, what: &str, f: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    for _ in 0..1000 {
        let got = fake.got();
        if f(&got) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: never happened; got {:#?}", fake.got());
}

/// The newest run in the store.
async fn last_run(store: &Arc<dyn Store>) -> i64 {
    store
        .executions(&opsbot_store::ExecutionFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id
}

async fn pending(store: &Arc<dyn Store>) -> u64 {
    store.outbox_backlog().await.unwrap().iter().map(|(_, n)| *n).sum()
}

/// Closes the fake's gate and sends `!ping` to #slow: returns once its PONG is held in `post`,
/// so #slow's conversation is stuck in that first message.
async fn hold_slow(fake: &Fake, tx: &mpsc::Sender<Envelope>) {
    fake.gate.send_replace(false);
    tx.send(said("#slow", "!ping")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while fake.held.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first PONG is being sent");
}

/// Moves a run to running, then to its end, delivering each notice as `opsbot serve` does.
async fn run_to_end(rt: &Arc<ChatRuntime>, engine: &Engine, store: &Arc<dyn Store>, id: i64, between: impl AsyncFnOnce()) {
    store
        .claim("test:1", Duration::from_secs(60), Some(id))
        .await
        .unwrap()
        .expect("claimed");
    rt.deliver_notice(&engine.notice_for(id).await.unwrap().unwrap()).await;
    between().await;
    store
        .finish(
            id,
            &Finish {
                state: Some(opsbot_core::ExecState::Succeeded),
                exit_code: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    rt.deliver_notice(&engine.notice_for(id).await.unwrap().unwrap()).await;
}

#[tokio::test]
async fn a_card_is_edited_in_place_and_updates_made_while_down_arrive_once_back() {
    let (rt, fake, tx, engine, store) = setup(true).await;
    tx.send(said("#ops", "!deploy api to dev")).await.unwrap();
    let got = until(&fake, "the card", |g| g.len() == 1).await;
    let Got::Post { id: card, text, .. } = &got[0] else {
        panic!("{got:?}")
    };
    assert!(text.contains("queued"), "{text}");
    let run = last_run(&store).await;

    // The platform goes away while the run goes on: its updates wait in the outbox.
    fake.set_up(false);
    run_to_end(&rt, &engine, &store, run, async || {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.got().len(), 1, "nothing can be sent while down");
    assert!(pending(&store).await > 0);
    assert!(!rt.health()[0].connected);

    // Back: the card is edited once, to its final state (the running state was superseded).
    fake.set_up(true);
    let got = until(&fake, "the final edit", |g| g.len() == 2).await;
    match &got[1] {
        Got::Edit { id, text, channel } => {
            assert_eq!((id, channel.as_str()), (card, "#ops"));
            assert!(text.contains("succeeded"), "{text}");
        }
        other => panic!("expected an edit of the card, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.got().len(), 2, "nothing is sent twice: {:#?}", fake.got());
    assert_eq!(pending(&store).await, 0);
    let h = &rt.health()[0];
    assert!(h.connected && h.reconnects >= 1, "{h:?}");
    // It lost the connection, then was refused until the server was back.
    assert!(h.last_error.is_some(), "{h:?}");
    rt.stop().await;
}

#[tokio::test]
async fn without_edits_each_state_change_is_a_follow_up_and_a_card_never_goes_back() {
    let (rt, fake, tx, engine, store) = setup(false).await;
    tx.send(said("#ops", "!deploy web to prod")).await.unwrap();
    until(&fake, "the card", |g| g.len() == 1).await;
    let run = last_run(&store).await;
    run_to_end(&rt, &engine, &store, run, async || {
        until(&fake, "the running line", |g| g.len() == 2).await;
    })
    .await;
    let got = until(&fake, "the end line", |g| g.len() == 3).await;
    let texts: Vec<&str> = got
        .iter()
        .map(|g| match g {
            Got::Post { text, .. } => text.as_str(),
            Got::Edit { .. } => panic!("no edits on a platform that cannot edit: {got:?}"),
        })
        .collect();
    assert!(
        texts[0].contains("queued") && texts[1].contains("running") && texts[2].contains("succeeded"),
        "{texts:#?}"
    );
    // A stale notice (running, after the end) changes nothing.
    let mut stale = engine.notice_for(run).await.unwrap().unwrap();
    stale.state = opsbot_core::ExecState::Running;
    rt.deliver_notice(&stale).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.got().len(), 3);
    rt.stop().await;
}

/// A card posted when its run has started already: where the platform cannot edit, it is
/// posted as running (a "queued" line would be stale at once, and one more line in the
/// channel); where it can, it is posted as queued and edited at once, so it shows every state.
#[tokio::test]
async fn a_card_posted_after_its_run_started_shows_where_the_run_is() {
    for edit in [false, true] {
        let (rt, fake, tx, _engine, store) = setup(edit).await;
        tx.send(said("#ops", "!deploy web to prod")).await.unwrap();
        // No worker here: the first card is queued on both.
        let got = until(&fake, "the card", |g| g.len() == 1).await;
        assert!(matches!(&got[0], Got::Post { text, .. } if text.contains("queued")), "{got:?}");
        let run = last_run(&store).await;
        store
            .claim("test:1", Duration::from_secs(60), Some(run))
            .await
            .unwrap()
            .expect("claimed");
        // The run's card for another place (as a run approved elsewhere gets), posted now.
        let place = Place::new("fake", "#deploys");
        rt.deliver_elsewhere(vec![opsbot_engine::Elsewhere {
            place: place.clone(),
            reply: Reply::text(opsbot_core::Tone::Info, format!("#{run} deploy queued")).card(run),
        }])
        .await;
        let there = |g: &[Got]| {
            g.iter()
                .filter(|x| matches!(x, Got::Post { channel, .. } | Got::Edit { channel, .. } if channel == "#deploys"))
                .cloned()
                .collect::<Vec<_>>()
        };
        let want = if edit { 2 } else { 1 };
        until(&fake, "the second card", |g| there(g).len() == want).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = there(&fake.got());
        if edit {
            match &got[..] {
                [Got::Post { id, text: first, .. }, Got::Edit { id: edited, text, .. }] => {
                    assert!(first.contains("queued") && text.contains(&format!("#{run} running")), "{got:#?}");
                    assert_eq!(id, edited, "the card itself is edited");
                }
                _ => panic!("a card and its edit: {got:#?}"),
            }
        } else {
            match &got[..] {
                [Got::Post { text, .. }] => {
                    assert!(text.contains(&format!("#{run} running")) && !text.contains("queued"), "{text}");
                }
                _ => panic!("one message, the card as running: {got:#?}"),
            }
        }
        let cards = store.chat_cards_of(run).await.unwrap();
        let card = cards.iter().find(|c| c.place == place).expect("the card is recorded");
        assert_eq!(card.state, opsbot_core::ExecState::Running, "{cards:?}");
        rt.stop().await;
    }
}

#[tokio::test]
async fn a_burst_of_200_gets_200_replies_in_order() {
    let (rt, fake, tx, _engine, _store) = setup(true).await;
    for i in 1..=200 {
        tx.send(said("@ana", &format!("status {i}"))).await.unwrap();
    }
    let got = until(&fake, "200 replies", |g| g.len() == 200).await;
    for (i, g) in got.iter().enumerate() {
        let Got::Post { text, channel, .. } = g else { panic!("{g:?}") };
        assert_eq!(channel, "@ana");
        assert!(
            text.contains(&format!("#{} ", i + 1)) || text.contains(&format!("#{}.", i + 1)),
            "reply {i}: {text}"
        );
    }
    rt.stop().await;
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_refusals_do_not_block_the_queue() {
    let (rt, fake, tx, _engine, store) = setup(true).await;
    fake.limited.store(3, Ordering::SeqCst);
    tx.send(said("#gone", "!status 7")).await.unwrap();
    tx.send(said("#ops", "!status 8")).await.unwrap();
    let got = until(&fake, "the reply after the refused one", |g| !g.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.got().len(), 1, "{got:?}");
    let Got::Post { channel, text, .. } = &got[0] else { panic!() };
    assert_eq!(channel, "#ops");
    assert!(text.contains("#8"), "{text}");
    assert_eq!(fake.limited.load(Ordering::SeqCst), 0, "every rate-limited attempt was retried");
    assert_eq!(pending(&store).await, 0, "the refused message is not retried forever");
    rt.stop().await;
}

#[tokio::test]
async fn a_platform_that_is_down_at_start_is_retried_until_it_is_back() {
    let (fake, tx) = Fake::new("late", true);
    fake.set_up(false);
    let (rt, _engine, _store) = start(fake.clone(), None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let h = rt.health()[0].clone();
    assert!(!h.connected && h.reconnects >= 2, "several attempts with backoff: {h:?}");
    assert_eq!(h.last_error.as_deref(), Some("connection refused"));
    fake.set_up(true);
    for _ in 0..600 {
        if rt.health()[0].connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rt.health()[0].connected, "back within the backoff cap: {:?}", rt.health());
    let mut env = said("@ana", "status 1");
    env.user.platform = "late".into();
    env.place.platform = "late".into();
    tx.send(env).await.unwrap();
    until(&fake, "a reply", |g| g.len() == 1).await;
    rt.stop().await;
}

#[tokio::test]
async fn stopping_delivers_what_is_queued_first() {
    let (rt, fake, _tx, _engine, store) = setup(true).await;
    fake.set_up(false);
    rt.deliver_elsewhere(vec![opsbot_engine::Elsewhere {
        place: Place::new("fake", "#ops"),
        reply: Reply::text(opsbot_core::Tone::Info, "approval needed"),
    }])
    .await;
    assert_eq!(pending(&store).await, 1);
    // Down at stop: kept for the next start, not lost.
    rt.stop().await;
    assert_eq!(pending(&store).await, 1);
    assert!(fake.got().is_empty());
}

#[tokio::test]
async fn messages_for_other_doors_are_forwarded_and_ours_are_posted() {
    let (fake, _tx) = Fake::new("fake", true);
    let (fwd, mut forwarded) = mpsc::unbounded_channel();
    let (rt, _engine, _store) = start(fake.clone(), Some(fwd)).await;
    let say = |platform: &str, channel: &str, text: &str| opsbot_engine::Elsewhere {
        place: Place::new(platform, channel),
        reply: Reply::text(opsbot_core::Tone::Info, text),
    };
    // A place of no configured adapter is neither posted nor forwarded (the web door would hand
    // it straight back).
    rt.deliver_elsewhere(vec![
        say("web", "ops", "for the web chat"),
        say("fake", "#ops", "for us"),
        say("slack", "C024BE91L", "for nobody here"),
    ])
    .await;
    let got = until(&fake, "ours posted", |g| g.len() == 1).await;
    assert!(matches!(&got[0], Got::Post { text, .. } if text.contains("for us")), "{got:?}");
    let e = forwarded.try_recv().expect("the web one is forwarded");
    assert_eq!(e.place, Place::new("web", "ops"));
    assert!(forwarded.try_recv().is_err(), "only that one");
    rt.stop().await;
}

#[tokio::test]
async fn a_place_that_cannot_be_reached_waits_without_holding_up_the_others() {
    let (rt, fake, _tx, _engine, store) = setup(true).await;
    fake.kicked.send_replace(true);
    let say = |channel: &str, text: &str| opsbot_engine::Elsewhere {
        place: Place::new("fake", channel),
        reply: Reply::text(opsbot_core::Tone::Info, text),
    };
    rt.deliver_elsewhere(vec![
        say("#kicked", "k1"),
        say("#kicked", "k2"),
        say("#ops", "o1"),
        say("#ops", "o2"),
    ])
    .await;
    let got = until(&fake, "the reachable place's messages", |g| g.len() == 2).await;
    let texts: Vec<String> = got
        .iter()
        .map(|g| match g {
            Got::Post { text, .. } | Got::Edit { text, .. } => text.trim().to_string(),
        })
        .collect();
    assert_eq!(texts, ["o1", "o2"]);
    assert_eq!(pending(&store).await, 2, "the other place's messages are kept");
    // Back in the room: its messages follow, in their order.
    fake.kicked.send_replace(false);
    let got = until(&fake, "the waiting place's messages", |g| g.len() == 4).await;
    let texts: Vec<String> = got[2..]
        .iter()
        .map(|g| match g {
            Got::Post { text, .. } | Got::Edit { text, .. } => text.trim().to_string(),
        })
        .collect();
    assert_eq!(texts, ["k1", "k2"]);
    rt.stop().await;
}

#[tokio::test]
async fn an_end_posted_on_its_own_is_not_followed_by_a_late_card() {
    let (rt, fake, _tx, engine, store) = setup(true).await;
    // A run asked elsewhere with its place here, that ends before any card of it is known.
    let env = said("#ops", "!deploy api to dev");
    let id = engine.handle(&env).await.queued.expect("queued");
    store.claim("test:1", Duration::from_secs(60), Some(id)).await.unwrap();
    store
        .finish(
            id,
            &Finish {
                state: Some(opsbot_core::ExecState::Succeeded),
                exit_code: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    rt.deliver_notice(&engine.notice_for(id).await.unwrap().unwrap()).await;
    let got = until(&fake, "the end on its own, after the grace", |g| g.len() == 1).await;
    assert!(matches!(&got[0], Got::Post { text, .. } if text.contains("succeeded")), "{got:?}");
    // The card turns up late: the person has the result already, so nothing more is posted.
    let card = opsbot_engine::present::queued(&store.execution(id).await.unwrap().unwrap(), None);
    rt.deliver_elsewhere(vec![opsbot_engine::Elsewhere {
        place: Place::new("fake", "#ops"),
        reply: card,
    }])
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.got().len(), 1, "{:#?}", fake.got());
    rt.stop().await;
}

#[tokio::test]
async fn a_pong_is_sent_at_once_and_never_kept_for_later() {
    let (rt, fake, tx, _engine, store) = setup(true).await;
    tx.send(said("#ops", "!ping")).await.unwrap();
    until(&fake, "PONG", |g| matches!(g, [Got::Post { text, .. }] if text.trim() == "PONG")).await;
    // While the platform cannot take messages, a PONG is dropped (it would mean nothing
    // later) and a reply to anything else waits in the outbox.
    fake.kicked.send_replace(true);
    tx.send(said("#kicked", "!ping")).await.unwrap();
    tx.send(said("#kicked", "!status 5")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while pending(&store).await == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the status reply is kept");
    fake.kicked.send_replace(false);
    let got = until(&fake, "the status reply", |g| g.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = fake.got();
    assert_eq!(got_now.len(), 2, "{got_now:?}");
    let Got::Post { channel, text, .. } = &got[1] else { panic!() };
    assert_eq!(channel, "#kicked");
    assert!(text.contains("#5"), "{text}");
    rt.stop().await;
}

#[tokio::test]
async fn a_place_that_is_behind_neither_stalls_the_adapter_nor_the_other_places() {
    let (rt, fake, tx, _engine, _store) = setup(true).await;
    hold_slow(&fake, &tx).await;
    // #slow's task is stuck in its first message: 1,024 more wait in its queue, the five after
    // them are not read, and #slow is told so once.
    for _ in 0..1024 + 5 {
        tx.send(said("#slow", "!ping")).await.unwrap();
    }
    tx.send(said("#ops", "!status 3")).await.unwrap();
    let got = until(&fake, "the reply in #ops and the note in #slow", |g| g.len() == 2).await;
    let text_in = |ch: &str| {
        got.iter()
            .find_map(|g| match g {
                Got::Post { channel, text, .. } if channel == ch => Some(text.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("nothing in {ch}: {got:#?}"))
    };
    assert!(text_in("#ops").contains("#3"), "{got:#?}");
    assert!(text_in("#slow").contains("1024 earlier messages"), "{got:#?}");
    // Once it moves again, every message it took is answered, in order, and nothing more.
    fake.gate.send_replace(true);
    let got = until(&fake, "1,025 PONGs", |g| g.len() == 2 + 1025).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.got().len(), got.len(), "no more than the messages taken are answered");
    assert_eq!(fake.held.load(Ordering::SeqCst), 1025);
    rt.stop().await;
}

#[tokio::test]
async fn pongs_that_pile_up_in_a_conversation_go_out_together_and_nothing_waits_for_more() {
    let (rt, fake, tx, _engine, _store) = setup(true).await;
    // One at a time: each PONG alone, at once.
    tx.send(said("#ops", "!ping")).await.unwrap();
    until(&fake, "the first PONG", |g| g.len() == 1).await;
    tx.send(said("#ops", "!ping")).await.unwrap();
    until(&fake, "the second PONG", |g| g.len() == 2).await;
    assert_eq!(*fake.batches.lock().unwrap(), vec![1, 1]);
    // While #slow's task is held in its first PONG, ten more pile up, with a status request in
    // the middle: the five before it go out together, it is answered, then the five after it.
    hold_slow(&fake, &tx).await;
    for i in 0..11 {
        let text = if i == 5 { "!status 4" } else { "!ping" };
        tx.send(said("#slow", text)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.gate.send_replace(true);
    let got = until(&fake, "11 PONGs and the status reply", |g| g.len() == 2 + 11 + 1).await;
    assert_eq!(*fake.batches.lock().unwrap(), vec![1, 1, 1, 5, 5], "{got:#?}");
    let pongs = got
        .iter()
        .filter(|g| matches!(g, Got::Post { text, .. } if text.trim() == "PONG"))
        .count();
    assert_eq!(pongs, 2 + 11);
    rt.stop().await;
}

#[tokio::test]
async fn pongs_sent_together_still_keep_to_the_send_rate() {
    let (fake, tx) = Fake::new("fake", true);
    let (rt, _engine, _store) = start_paced(fake.clone(), None, 10.0, 2).await;
    hold_slow(&fake, &tx).await;
    for _ in 0..6 {
        tx.send(said("#slow", "!ping")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.gate.send_replace(true);
    until(&fake, "7 PONGs", |g| g.len() == 7).await;
    // No group is larger than the burst the pacing allows; a group waiting for its tokens
    // would have gone out whole, six at once.
    let batches = fake.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 7, "{batches:?}");
    assert!(batches.iter().all(|&n| n <= 2), "{batches:?}");
    rt.stop().await;
}
