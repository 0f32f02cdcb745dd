//! Slack adapter tests against the local fake (`opsbot_testkit::slack`), over real sockets:
//! Socket Mode, the HTTP Events API through a tiny HTTP server that hands requests to
//! `Adapter::webhook`, and a hand-made Socket Mode server for frames no Slack would send.

use crate::running::{Running, WAIT};
use opsbot_adapters::slack::SlackAdapter;
use opsbot_core::config::{SlackConfig, SlackMode};
use opsbot_core::{Adapter, Button, Form, FormField, FormInput, Place, Reply, SendError, Tone, WebhookRequest};
use opsbot_testkit::slack::{self as fake, FakeSlack, How, Surface};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63,
    0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44,
    0xAE, 0x42, 0x60, 0x82,
];

fn config(api_url: &str, mode: SlackMode) -> SlackConfig {
    SlackConfig {
        mode,
        bot_token: fake::BOT_TOKEN.into(),
        app_token: Some(fake::APP_TOKEN.into()),
        signing_secret: Some(fake::SIGNING_SECRET.into()),
        api_url: api_url.into(),
        channels: vec![],
        threads: false,
        tls_ca: None,
    }
}

fn adapter(api_url: &str, mode: SlackMode) -> Arc<SlackAdapter> {
    Arc::new(SlackAdapter::new("slack", config(api_url, mode)).expect("adapter"))
}

async fn socket(f: &FakeSlack) -> Running<SlackAdapter> {
    Running::spawn_connected(adapter(&f.api_url(), SlackMode::Socket)).await
}

fn place(channel: &str) -> Place {
    Place::new("slack", channel)
}

/// Nothing more arrives in the inbox within `d`.
async fn quiet(r: &mut Running<SlackAdapter>, d: Duration) {
    if let Ok(Some(e)) = tokio::time::timeout(d, r.inbox.recv()).await {
        panic!("unexpected envelope: {e:?}");
    }
}

#[tokio::test]
async fn socket_mode_messages_mentions_and_ims() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let mut r = socket(&f).await;
    // A mention in #ops: Slack sends `message` and `app_mention`; one envelope.
    let d = f
        .say(&ana, &f.channel(), &format!("<@{}> whoami", fake::BOT_USER_ID), None)
        .await
        .unwrap();
    assert!(d.acked.is_some() && d.mention.as_ref().is_some_and(|m| m.acked.is_some()), "{d:?}");
    let e = r.next().await;
    assert_eq!((e.text.as_str(), e.mentioned, e.direct), ("whoami", true, false));
    assert_eq!(e.user.to_string(), format!("slack:{ana}"));
    assert_eq!(e.place, place(&f.channel()));
    quiet(&mut r, Duration::from_millis(300)).await;
    // A plain channel message: passed on unaddressed (the engine answers only its prefix).
    f.say(&ana, &f.channel(), "!status &lt;all&gt; <https://x.example|x.example>", None)
        .await
        .unwrap();
    let e = r.next().await;
    assert_eq!((e.text.as_str(), e.mentioned), ("!status <all> x.example", false));
    // Without `threads`, a top-level message's place has no thread.
    f.say(&ana, &f.channel(), "top", None).await.unwrap();
    assert_eq!(r.next().await.place.thread, None);
    // A direct message.
    let im = f.im_of(&ana).unwrap();
    f.say(&ana, &im, "status", None).await.unwrap();
    let e = r.next().await;
    assert_eq!((e.text.as_str(), e.direct, e.place.channel.as_str()), ("status", true, im.as_str()));
    // The bot's own messages echoed back are ignored.
    f.set_echo_bot_messages(true);
    r.adapter
        .post(&place(&f.channel()), &Reply::text(Tone::Info, "hello from the bot"))
        .await
        .unwrap();
    quiet(&mut r, Duration::from_millis(500)).await;
    r.stop().await.unwrap();
}

#[tokio::test]
async fn threads_setting_and_thread_replies() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let mut cfg = config(&f.api_url(), SlackMode::Socket);
    cfg.threads = true;
    let mut r = Running::spawn_connected(Arc::new(SlackAdapter::new("slack", cfg).unwrap())).await;
    f.say(&ana, &f.channel(), &format!("<@{}> deploy", fake::BOT_USER_ID), None)
        .await
        .unwrap();
    let e = r.next().await;
    let thread = e
        .place
        .thread
        .clone()
        .expect("threads = true answers in a thread under the command");
    r.adapter.post(&e.place, &Reply::text(Tone::Info, "in the thread")).await.unwrap();
    let m = f.next_message(WAIT).await.unwrap();
    assert_eq!(m.thread_ts.as_deref(), Some(thread.as_str()));
    // A message in that thread is answered there.
    f.say(&ana, &f.channel(), &format!("<@{}> more", fake::BOT_USER_ID), Some(&thread))
        .await
        .unwrap();
    assert_eq!(r.next().await.place.thread.as_deref(), Some(thread.as_str()));
    r.stop().await.unwrap();
}

#[tokio::test]
async fn acks_are_immediate_and_measured() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let im = f.im_of(&ana).unwrap();
    let mut r = socket(&f).await;
    // The inbox is not read while the 200 messages arrive: acks must not wait for it.
    for i in 0..200 {
        let d = f.say(&ana, &im, &format!("n{i}"), None).await.unwrap();
        assert!(d.acked.is_some(), "message {i} not acked: {d:?}");
    }
    for i in 0..200 {
        assert_eq!(r.next().await.text, format!("n{i}"));
    }
    let mut lat = f.acks();
    lat.sort();
    assert_eq!(lat.len(), 200);
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "Socket Mode event→ack over 200 envelopes: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        lat[lat.len() - 1]
    );
    r.stop().await.unwrap();
}

#[tokio::test]
async fn redeliveries_are_deduplicated() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let im = f.im_of(&ana).unwrap();
    let mut r = socket(&f).await;
    // Slack considers acks late and redelivers the event (new envelope id, same event id,
    // retry_attempt 1..3): each message still makes one envelope. (Whether the fake's timer
    // beats a sub-millisecond ack is a race, so try until a redelivery happened.)
    f.set_ack_timeout(Duration::ZERO);
    let mut redelivered = 0;
    for i in 0..20 {
        let d = f.say(&ana, &im, &format!("once {i}"), None).await.unwrap();
        if d.attempts > 1 {
            redelivered += 1;
        }
        assert_eq!(r.next().await.text, format!("once {i}"));
        quiet(&mut r, Duration::from_millis(50)).await;
        if redelivered >= 3 {
            break;
        }
    }
    assert!(redelivered > 0, "the fake never redelivered");
    f.set_ack_timeout(Duration::from_secs(3));
    // Still remembered after a reconnect.
    f.disconnect("refresh_requested");
    tokio::time::sleep(Duration::from_millis(800)).await;
    f.say(&ana, &im, "after", None).await.unwrap();
    assert_eq!(r.next().await.text, "after");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn refresh_mid_card_updates_loses_nothing() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let im = f.im_of(&ana).unwrap();
    f.set_disconnect_grace(Duration::from_secs(1));
    let mut r = socket(&f).await;
    let p = place(&f.channel());
    let card = |n: usize| {
        Reply::new(Tone::Progress)
            .heading(format!("#7 deploy step {n}"))
            .status(Tone::Progress, "running")
            .card(7)
    };
    let posted = r.adapter.post(&p, &card(0)).await.unwrap();
    let ts = posted.id.clone().expect("a card has an id");
    let a = r.adapter.clone();
    let (p2, ts2) = (p.clone(), ts.clone());
    let edits = tokio::spawn(async move {
        for n in 1..=30 {
            a.edit(&p2, &ts2, &card(n)).await.expect("edit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.disconnect("refresh_requested");
    // Messages said during the refresh arrive.
    for i in 0..5 {
        f.say(&ana, &im, &format!("during {i}"), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    edits.await.unwrap();
    for i in 0..5 {
        assert_eq!(r.next().await.text, format!("during {i}"));
    }
    let updates: Vec<String> = f
        .messages()
        .into_iter()
        .filter(|m| m.how == How::Updated && m.ts == ts)
        .map(|m| m.text)
        .collect();
    assert_eq!(updates.len(), 30);
    for (i, t) in updates.iter().enumerate() {
        assert!(t.contains(&format!("step {}", i + 1)), "update {i}: {t}");
    }
    assert!(!r.task.is_finished(), "run() must survive a refresh");
    f.wait_connections(1, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(f.connections(), 1, "the old connection is closed after the refresh");
    f.say(&ana, &im, "after", None).await.unwrap();
    assert_eq!(r.next().await.text, "after");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn crash_returns_err_and_reconnects() {
    let mut f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let im = f.im_of(&ana).unwrap();
    let a = adapter(&f.api_url(), SlackMode::Socket);
    let r = Running::spawn_connected(a.clone()).await;
    f.stop().await;
    let res = tokio::time::timeout(WAIT, r.task)
        .await
        .expect("run() ends when Slack goes")
        .unwrap();
    assert!(res.is_err(), "{res:?}");
    // While down, sending is Unavailable (kept for later).
    match a.post(&place(&im), &Reply::text(Tone::Info, "x")).await {
        Err(SendError::Unavailable(e)) => assert!(!e.contains(fake::BOT_TOKEN)),
        other => panic!("{other:?}"),
    }
    f.start_again().await.unwrap();
    let mut r = Running::spawn_connected(a.clone()).await;
    f.say(&ana, &im, "back", None).await.unwrap();
    assert_eq!(r.next().await.text, "back");
    a.post(&place(&im), &Reply::text(Tone::Info, "hello again")).await.unwrap();
    r.stop().await.unwrap();
}

#[tokio::test]
async fn slash_command_ack_and_response_url_fallback() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let mut r = socket(&f).await;
    let d = f.slash(&ana, &f.channel(), "/opsbot", "deploy web staging").await.unwrap();
    let ack = d.ack_payload.expect("an ack payload");
    assert_eq!(ack["text"], "Working on `deploy web staging`…");
    assert_eq!(ack["response_type"], "ephemeral");
    let e = r.next().await;
    assert_eq!(
        (e.text.as_str(), e.mentioned, e.user.id.as_str()),
        ("deploy web staging", true, ana.as_str())
    );
    // A channel the bot is not in: the answer goes through the response_url.
    let private = f.add_channel("private", false);
    f.slash(&ana, &private, "/opsbot", "status").await.unwrap();
    let e = r.next().await;
    assert_eq!(e.place.channel, private);
    let posted = r.adapter.post(&e.place, &Reply::text(Tone::Info, "all fine")).await.unwrap();
    assert_eq!(posted.id, None);
    let m = f
        .messages()
        .into_iter()
        .rev()
        .find(|m| m.channel == private)
        .expect("an answer in the private channel");
    assert_eq!(m.how, How::ResponseUrl);
    assert!(m.text.contains("all fine"));
    assert_eq!(m.ephemeral_to, None, "visible to the channel");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn buttons_arrive_as_the_clickers_typed_command() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let bob = f.add_user("bob");
    let mut r = socket(&f).await;
    let reply = Reply::text(Tone::Warning, "Deploy to prod?").buttons(vec![
        Button {
            label: "Approve".into(),
            command: "approve 42".into(),
            tone: Tone::Success,
        },
        Button {
            label: "Cancel".into(),
            command: "cancel 42".into(),
            tone: Tone::Error,
        },
    ]);
    let ts = r.adapter.post(&place(&f.channel()), &reply).await.unwrap().id.unwrap();
    let (_, blocks) = f.message(&f.channel(), &ts).unwrap();
    fake::validate_blocks(&blocks, Surface::Message).unwrap();
    let actions = blocks.as_array().unwrap().iter().find(|b| b["type"] == "actions").unwrap();
    let cancel = actions["elements"][1]["action_id"].as_str().unwrap().to_string();
    assert_eq!(actions["elements"][1]["style"], "danger");
    f.click(&bob, &f.channel(), &ts, &cancel).await.unwrap();
    let e = r.next().await;
    assert_eq!(e.text, "cancel 42");
    assert_eq!(e.button.as_deref(), Some(cancel.as_str()));
    assert_eq!(e.user.id, bob);
    // A forged value naming someone else's run is still only the clicker's typed text.
    f.click_with_value(&ana, &f.channel(), &ts, &cancel, "cancel 99").await.unwrap();
    let e = r.next().await;
    assert_eq!((e.text.as_str(), e.user.id.as_str()), ("cancel 99", ana.as_str()));
    r.stop().await.unwrap();
}

fn deploy_form() -> Form {
    Form {
        title: "Run deploy".into(),
        command: "deploy".into(),
        fields: vec![
            FormField {
                name: "env".into(),
                input: FormInput::Choice {
                    options: vec!["staging".into(), "prod".into()],
                },
                required: true,
                value: None,
                help: Some("Where to deploy".into()),
            },
            FormField {
                name: "replicas".into(),
                input: FormInput::Number {
                    min: Some(1),
                    max: Some(5),
                },
                required: false,
                value: Some("2".into()),
                help: None,
            },
            FormField {
                name: "note".into(),
                input: FormInput::Text { secret: false },
                required: false,
                value: None,
                help: None,
            },
        ],
    }
}

#[tokio::test]
async fn forms_open_a_modal_and_submit_a_command_line() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let mut r = socket(&f).await;
    let mut reply = Reply::text(Tone::Info, "Which environment?");
    reply.blocks.push(opsbot_core::Block::Form(deploy_form()));
    let ts = r.adapter.post(&place(&f.channel()), &reply).await.unwrap().id.unwrap();
    let (_, blocks) = f.message(&f.channel(), &ts).unwrap();
    let button = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .map(|b| b["elements"][0]["action_id"].as_str().unwrap().to_string())
        .unwrap();
    f.click(&ana, &f.channel(), &ts, &button).await.unwrap();
    let t = Instant::now();
    while f.views().is_empty() {
        assert!(t.elapsed() < WAIT, "no modal opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let view = f.views().remove(0);
    fake::validate_view(&view.view).unwrap();
    let b = &view.view["blocks"];
    assert_eq!(b[0]["element"]["type"], "static_select");
    assert_eq!(b[1]["element"]["type"], "number_input");
    assert_eq!(b[1]["element"]["initial_value"], "2");
    // A wrong value: answered with errors, nothing handed on.
    let d = f.submit_view(&ana, &view.id, &[("env", "prod"), ("replicas", "9")]).await.unwrap();
    let ack = d.ack_payload.expect("errors answer");
    assert_eq!(ack["response_action"], "errors");
    assert!(ack["errors"]["f1"].is_string(), "{ack}");
    quiet(&mut r, Duration::from_millis(300)).await;
    let d = f
        .submit_view(&ana, &view.id, &[("env", "prod"), ("replicas", "3"), ("note", "hello world")])
        .await
        .unwrap();
    assert!(d.acked.is_some());
    let e = r.next().await;
    assert_eq!(e.text, "deploy env=prod replicas=3 note=\"hello world\"");
    assert_eq!(e.user.id, ana);
    assert_eq!(e.place, place(&f.channel()));
    assert!(e.button.is_some());
    r.stop().await.unwrap();
}

#[tokio::test]
async fn cards_are_updated_and_logs_go_to_the_thread() {
    let f = FakeSlack::start().await.unwrap();
    let r = socket(&f).await;
    let p = place(&f.channel());
    let card = |state: &str, log: &str| {
        Reply::new(Tone::Progress)
            .heading(format!("#3 backup {state}"))
            .code(log.to_string())
            .card(3)
    };
    let ts = r.adapter.post(&p, &card("queued", "")).await.unwrap().id.unwrap();
    r.adapter.edit(&p, &ts, &card("running", "line 1\nline 2")).await.unwrap();
    r.adapter.edit(&p, &ts, &card("running", "line 2\nline 3")).await.unwrap();
    r.adapter.edit(&p, &ts, &card("succeeded", "line 2\nline 3")).await.unwrap();
    let msgs = f.messages();
    let updates: Vec<&str> = msgs.iter().filter(|m| m.how == How::Updated).map(|m| m.text.as_str()).collect();
    assert_eq!(updates.len(), 3);
    assert!(updates[2].contains("#3 backup succeeded"));
    assert!(!updates.iter().any(|u| u.contains("line")), "the log is not in the card");
    let thread: Vec<&str> = msgs
        .iter()
        .filter(|m| m.how == How::Posted && m.thread_ts.as_deref() == Some(ts.as_str()))
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(thread.len(), 2, "{thread:?}");
    assert!(thread[0].contains("line 1") && thread[0].contains("line 2"));
    assert!(thread[1].contains("line 3") && !thread[1].contains("line 2"));
    r.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limits_invalid_blocks_and_long_replies() {
    let f = FakeSlack::start().await.unwrap();
    let a = adapter(&f.api_url(), SlackMode::Socket);
    let p = place(&f.channel());
    // 429: the Retry-After duration, and no call to that method before it passes.
    f.rate_limit("chat.postMessage", 1, 7);
    match a.post(&p, &Reply::text(Tone::Info, "x")).await {
        Err(SendError::RateLimited(d)) => assert_eq!(d, Duration::from_secs(7)),
        other => panic!("{other:?}"),
    }
    let calls = f.calls().len();
    match a.post(&p, &Reply::text(Tone::Info, "x")).await {
        Err(SendError::RateLimited(d)) => assert!(d <= Duration::from_secs(7) && d > Duration::from_secs(5)),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.calls().len(), calls, "not called again while limited");
    // invalid_blocks: retried once as plain text.
    let b = adapter(&f.api_url(), SlackMode::Socket);
    f.fail_next("chat.postMessage", "invalid_blocks");
    b.post(&p, &Reply::text(Tone::Info, "plain <please>")).await.unwrap();
    let m = f.messages().pop().unwrap();
    assert!(m.blocks.is_null() && m.text.contains("plain &lt;please&gt;"), "{m:?}");
    // Refusals.
    f.fail_next("chat.postMessage", "is_archived");
    assert!(matches!(
        b.post(&p, &Reply::text(Tone::Info, "x")).await,
        Err(SendError::Rejected(_))
    ));
    f.fail_next("chat.postMessage", "token_revoked");
    assert!(matches!(
        b.post(&p, &Reply::text(Tone::Info, "x")).await,
        Err(SendError::Unavailable(_))
    ));
    // A long reply: several valid messages, in order, nothing lost.
    let before = f.messages().len();
    let text: String = (0..3000).map(|i| format!("step {i:04} done\n")).collect();
    b.post(&p, &Reply::new(Tone::Info).code(text.clone())).await.unwrap();
    let all = f.messages();
    let parts = &all[before..];
    assert!(parts.len() > 1);
    let mut joined = String::new();
    for m in parts {
        fake::validate_blocks(&m.blocks, Surface::Message).unwrap();
        joined.push_str(&m.text);
        joined.push('\n');
    }
    for i in 0..3000 {
        assert!(joined.contains(&format!("step {i:04} done")), "step {i} lost");
    }
}

#[tokio::test]
async fn data_images_use_the_three_step_upload() {
    let f = FakeSlack::start().await.unwrap();
    let a = adapter(&f.api_url(), SlackMode::Socket);
    use base64::Engine;
    let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(PNG));
    let mut reply = Reply::text(Tone::Info, "the graph");
    reply.blocks.push(opsbot_core::Block::Image {
        url,
        alt: "CPU graph".into(),
    });
    reply.blocks.push(opsbot_core::Block::Image {
        url: "https://img.example/x.png".into(),
        alt: "remote".into(),
    });
    let ts = a.post(&place(&f.channel()), &reply).await.unwrap().id.unwrap();
    let files = f.files();
    assert_eq!(files.len(), 1);
    assert!(files[0].completed);
    assert_eq!(files[0].bytes.as_deref(), Some(PNG));
    assert_eq!(files[0].channel.as_deref(), Some(fake::CHANNEL_ID));
    assert_eq!(files[0].title.as_deref(), Some("CPU graph"));
    let (_, blocks) = f.message(&f.channel(), &ts).unwrap();
    assert!(
        blocks
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "image" && b["image_url"] == "https://img.example/x.png")
    );
}

// ------------------------------------------------------------------------------------- Events API

/// The adapter's webhook served as opsbot's web server would; returns `…/hooks/slack`.
async fn hooks_server(adapter: Arc<SlackAdapter>) -> String {
    format!("{}/hooks/slack", crate::running::hooks_server(adapter, "slack").await)
}

async fn post_signed(url: &str, body: &str, ts: &str, sig: &str, retry: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body.to_string());
    if let Some(n) = retry {
        req = req.header("x-slack-retry-num", n).header("x-slack-retry-reason", "http_timeout");
    }
    let resp = req.send().await.unwrap();
    let st = resp.status().as_u16();
    (st, resp.text().await.unwrap())
}

fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

#[tokio::test]
async fn events_api_mode_checks_signatures_and_dedupes() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let im = f.im_of(&ana).unwrap();
    let a = adapter(&f.api_url(), SlackMode::Events);
    let base = hooks_server(a.clone()).await;
    // Before run(): the URL check is answered, events are not taken (503: Slack retries).
    let events = format!("{base}/events");
    let body = json!({"type": "url_verification", "challenge": "abc", "token": "t"}).to_string();
    let ts = now();
    let (st, text) = post_signed(&events, &body, &ts, &fake::sign(fake::SIGNING_SECRET, &ts, body.as_bytes()), None).await;
    assert_eq!((st, text.as_str()), (200, r#"{"challenge":"abc"}"#));
    let body = json!({"type": "event_callback", "event_id": "EvEARLY", "event": {"type": "message", "channel": "D1", "user": "U1", "text": "x", "ts": "1.1"}}).to_string();
    let (st, _) = post_signed(&events, &body, &ts, &fake::sign(fake::SIGNING_SECRET, &ts, body.as_bytes()), None).await;
    assert_eq!(st, 503);
    let mut r = Running::spawn_connected(a.clone()).await;
    f.set_events_url(Some(base.clone()));
    assert!(f.verify_events_url().await.unwrap(), "url_verification answered");
    // Signed events, slash commands, interactions.
    let d = f.say(&ana, &im, "status", None).await.unwrap();
    assert_eq!(d.http_status, Some(200));
    let e = r.next().await;
    assert_eq!((e.text.as_str(), e.direct), ("status", true));
    let d = f.slash(&ana, &f.channel(), "/opsbot", "deploy web").await.unwrap();
    assert!(d.http_body.unwrap_or_default().contains("Working on `deploy web`"));
    assert_eq!(r.next().await.text, "deploy web");
    // Forged signature, stale timestamp, no signature: 401, nothing handed on.
    let ev = json!({"type": "event_callback", "event_id": "EvFORGED1", "event": {"type": "message", "channel_type": "im", "channel": im, "user": ana, "text": "forged", "ts": "1.000001"}}).to_string();
    let url = format!("{base}/events");
    let ts = now();
    let (st, text) = post_signed(&url, &ev, &ts, &fake::sign("not the secret", &ts, ev.as_bytes()), None).await;
    assert_eq!(st, 401);
    assert!(text.contains("signature"), "{text}");
    let old = (chrono::Utc::now().timestamp() - 600).to_string();
    let (st, _) = post_signed(&url, &ev, &old, &fake::sign(fake::SIGNING_SECRET, &old, ev.as_bytes()), None).await;
    assert_eq!(st, 401);
    let (st, _) = post_signed(&url, &ev, "", "", None).await;
    assert_eq!(st, 401);
    quiet(&mut r, Duration::from_millis(300)).await;
    // A good one; then its retry (X-Slack-Retry-Num) and a replay of the same event id.
    let ev = ev.replace("EvFORGED1", "EvGOOD0001").replace("forged", "genuine");
    let ts = now();
    let sig = fake::sign(fake::SIGNING_SECRET, &ts, ev.as_bytes());
    assert_eq!(post_signed(&url, &ev, &ts, &sig, None).await.0, 200);
    assert_eq!(r.next().await.text, "genuine");
    assert_eq!(post_signed(&url, &ev, &ts, &sig, Some("1")).await.0, 200);
    let ts2 = now();
    assert_eq!(
        post_signed(&url, &ev, &ts2, &fake::sign(fake::SIGNING_SECRET, &ts2, ev.as_bytes()), None)
            .await
            .0,
        200
    );
    quiet(&mut r, Duration::from_millis(300)).await;
    // Garbage (signed) is refused with 400, the adapter goes on.
    let ts = now();
    let (st, _) = post_signed(&url, "{not json", &ts, &fake::sign(fake::SIGNING_SECRET, &ts, b"{not json"), None).await;
    assert_eq!(st, 400);
    f.say(&ana, &im, "still here", None).await.unwrap();
    assert_eq!(r.next().await.text, "still here");
    // Interactivity over HTTP: a button press and a form with a wrong, then a right value.
    let mut reply = Reply::text(Tone::Info, "Deploy?").buttons(vec![Button {
        label: "Go".into(),
        command: "deploy web".into(),
        tone: Tone::Success,
    }]);
    reply.blocks.push(opsbot_core::Block::Form(deploy_form()));
    let ts = a.post(&place(&f.channel()), &reply).await.unwrap().id.unwrap();
    let (_, blocks) = f.message(&f.channel(), &ts).unwrap();
    let ids: Vec<String> = blocks
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .map(|b| b["elements"][0]["action_id"].as_str().unwrap().to_string())
        .collect();
    let d = f.click(&ana, &f.channel(), &ts, &ids[0]).await.unwrap();
    assert_eq!(d.http_status, Some(200));
    let e = r.next().await;
    assert_eq!(
        (e.text.as_str(), e.user.id.as_str(), e.button.as_deref()),
        ("deploy web", ana.as_str(), Some(ids[0].as_str()))
    );
    f.click(&ana, &f.channel(), &ts, &ids[1]).await.unwrap();
    let t = Instant::now();
    while f.views().is_empty() {
        assert!(t.elapsed() < WAIT, "no modal opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let view = f.views().remove(0);
    let d = f.submit_view(&ana, &view.id, &[("replicas", "2")]).await.unwrap();
    let answer: Value = serde_json::from_str(d.http_body.as_deref().unwrap_or("")).unwrap();
    assert_eq!(answer["response_action"], "errors");
    assert!(answer["errors"]["f0"].is_string(), "env is required: {answer}");
    let d = f.submit_view(&ana, &view.id, &[("env", "staging")]).await.unwrap();
    assert_eq!(d.http_status, Some(200));
    assert_eq!(r.next().await.text, "deploy env=staging");
    // Socket Mode requests are refused in events mode and vice versa.
    let s = adapter(&f.api_url(), SlackMode::Socket);
    let resp = s
        .webhook(WebhookRequest {
            method: "POST".into(),
            path: "/events".into(),
            query: None,
            headers: vec![],
            body: vec![],
        })
        .await;
    assert_eq!(resp.status, 404);
    r.stop().await.unwrap();
}

// --------------------------------------------------------------- frames no Slack would send

/// The Web API side of a Slack of our own: `apps.connections.open` (counted in `opens`) points at
/// the WebSocket on `ws_port`, anything else answers as `auth.test`. Returns its port.
async fn web_api_stub(ws_port: u16, opens: Arc<std::sync::atomic::AtomicUsize>) -> u16 {
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = api.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = api.accept().await else { continue };
            let opens = opens.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if head.contains("apps.connections.open") {
                    opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    json!({"ok": true, "url": format!("ws://127.0.0.1:{ws_port}/link")})
                } else {
                    json!({"ok": true, "user_id": fake::BOT_USER_ID, "bot_id": fake::BOT_ID, "team": "t"})
                }
                .to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    api_port
}

/// A Socket Mode "Slack" of our own that sends `frames` after hello, then a valid message.
async fn hostile_slack(frames: Vec<tokio_tungstenite::tungstenite::Message>) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use futures_util::{SinkExt, StreamExt};
    let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_port = ws_listener.local_addr().unwrap().port();
    let api_port = web_api_stub(ws_port, Arc::new(std::sync::atomic::AtomicUsize::new(0))).await;
    let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (s, _) = ws_listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(s).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        sink.send(json!({"type": "hello", "num_connections": 1}).to_string().into())
            .await
            .unwrap();
        for f in frames {
            sink.send(f).await.unwrap();
        }
        let good = json!({"envelope_id": "good", "type": "events_api", "payload": {"type": "event_callback", "event_id": "EvGOOD",
            "event": {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "still alive", "ts": "9.1"}}});
        sink.send(good.to_string().into()).await.unwrap();
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                let _ = ack_tx.send(t.to_string());
            }
        }
    });
    (format!("http://127.0.0.1:{api_port}/api"), ack_rx)
}

#[tokio::test]
async fn malformed_envelopes_are_skipped_and_the_connection_kept() {
    use tokio_tungstenite::tungstenite::Message as M;
    let huge = "x".repeat(1024 * 1024);
    let ev = |id: &str, event: Value| -> M {
        json!({"envelope_id": id, "type": "events_api", "payload": {"type": "event_callback", "event_id": format!("Ev{id}"), "event": event}}).to_string().into()
    };
    let frames = vec![
        M::Text("this is not json".into()),
        M::Text("[1, 2, 3]".into()),
        M::Binary(vec![0u8, 1, 2].into()),
        M::Text(json!({"type": "events_api"}).to_string().into()),
        M::Text(json!({"envelope_id": "e1", "type": "something_new", "payload": {}}).to_string().into()),
        M::Text(json!({"envelope_id": "e2", "type": "events_api"}).to_string().into()),
        M::Text(json!({"envelope_id": "e3", "type": "events_api", "payload": {"type": "event_callback"}}).to_string().into()),
        ev("e4", json!({"type": "message", "channel": "D1", "text": "no user", "ts": "1.1"})),
        ev("e5", json!({"type": "message", "channel": "D1", "user": "U1", "text": huge, "ts": "1.2"})),
        ev("e6", json!({"type": "message", "channel": "D1", "user": "U1", "text": {"nested": true}, "ts": "1.3"})),
        M::Text(json!({"envelope_id": "e7", "type": "interactive", "payload": {"type": "block_actions", "actions": "nope"}}).to_string().into()),
        M::Text(json!({"envelope_id": "e8", "type": "slash_commands", "payload": {"text": "no user"}}).to_string().into()),
        // The same event twice, the second as Slack's retry: one envelope.
        ev("e10", json!({"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "dup", "ts": "2.1"})),
        M::Text(
            json!({"envelope_id": "e11", "type": "events_api", "retry_attempt": 1, "retry_reason": "timeout", "payload": {"type": "event_callback", "event_id": "Eve10",
                "event": {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "dup", "ts": "2.1"}}})
            .to_string()
            .into(),
        ),
        M::Text(json!({"envelope_id": "e9", "type": "interactive", "payload": {"type": "view_submission", "user": {"id": "U1"}, "view": {"callback_id": "opsbot_form", "private_metadata": "garbage"}}}).to_string().into()),
    ];
    let (api, mut acks) = hostile_slack(frames).await;
    let mut r = Running::spawn_connected(adapter(&api, SlackMode::Socket)).await;
    assert_eq!(r.next().await.text, "dup");
    let e = r.next().await;
    assert_eq!(e.text, "still alive");
    assert!(!r.task.is_finished());
    let mut acked = Vec::new();
    while acked.len() < 12 {
        let a = tokio::time::timeout(WAIT, acks.recv()).await.expect("acks").unwrap();
        let v: Value = serde_json::from_str(&a).unwrap();
        acked.push(v["envelope_id"].as_str().unwrap().to_string());
    }
    for id in ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10", "e11", "good"] {
        assert!(acked.iter().any(|a| a == id), "{id} not acked: {acked:?}");
    }
    quiet(&mut r, Duration::from_millis(300)).await;
    r.stop().await.unwrap();
}

// ------------------------------------------------------------------------------ hostile review

/// A press, a form submission or a slash command counts as direct only in the bot's own IM
/// with that very person: a `D…` conversation between two other people (where answers come
/// through a slash command's `response_url`, buttons included) is not private, so secrets must
/// not be taken there.
#[tokio::test]
async fn presses_in_someone_elses_dm_are_not_direct() {
    use tokio_tungstenite::tungstenite::Message as M;
    let form = serde_json::to_value(deploy_form()).unwrap();
    let meta = json!({"c": "DAB", "t": null, "f": form}).to_string();
    let frames = vec![
        M::Text(
            json!({"envelope_id": "b1", "type": "interactive", "payload": {"type": "block_actions",
                "user": {"id": "U2", "username": "bob"}, "channel": {"id": "DAB", "name": "directmessage"},
                "container": {"type": "message", "channel_id": "DAB", "message_ts": "1.1"}, "trigger_id": "t1",
                "actions": [{"action_id": "opsbot_btn_1", "value": "whoami", "type": "button"}]}})
            .to_string()
            .into(),
        ),
        M::Text(
            json!({"envelope_id": "v1", "type": "interactive", "payload": {"type": "view_submission",
                "user": {"id": "U2"}, "trigger_id": "t2", "view": {"id": "V1", "callback_id": "opsbot_form", "private_metadata": meta,
                "state": {"values": {"f0": {"env": {"type": "static_select", "selected_option": {"value": "staging"}}}}}}}})
            .to_string()
            .into(),
        ),
        M::Text(
            json!({"envelope_id": "s1", "type": "slash_commands", "payload": {"user_id": "U2", "channel_id": "DAB",
                "text": "whoami", "trigger_id": "t3"}})
            .to_string()
            .into(),
        ),
    ];
    let (api, _acks) = hostile_slack(frames).await;
    let mut r = Running::spawn_connected(adapter(&api, SlackMode::Socket)).await;
    for want in ["whoami", "deploy env=staging", "whoami"] {
        let e = r.next().await;
        assert_eq!(e.text, want);
        assert_eq!(e.place.channel, "DAB");
        assert!(!e.direct, "a D… conversation the bot is not part of is not direct: {e:?}");
    }
    let e = r.next().await;
    assert_eq!((e.text.as_str(), e.direct), ("still alive", true));
    r.stop().await.unwrap();
}

/// In the bot's IM with Ana, a press is direct for Ana (also right after a restart, before
/// Ana said anything: Slack is asked), never for someone else whose payload names that IM.
#[tokio::test]
async fn presses_in_the_bots_im_are_direct_only_for_its_person() {
    let f = FakeSlack::start().await.unwrap();
    let ana = f.add_user("ana");
    let bob = f.add_user("bob");
    let im = f.im_of(&ana).unwrap();
    let mut r = socket(&f).await;
    let reply = Reply::text(Tone::Warning, "Sure?").buttons(vec![Button {
        label: "Yes".into(),
        command: "yes".into(),
        tone: Tone::Success,
    }]);
    let ts = r.adapter.post(&place(&im), &reply).await.unwrap().id.unwrap();
    let (_, blocks) = f.message(&im, &ts).unwrap();
    let id = blocks[1]["elements"][0]["action_id"].as_str().unwrap().to_string();
    f.click(&ana, &im, &ts, &id).await.unwrap();
    let e = r.next().await;
    assert_eq!((e.user.id.as_str(), e.direct), (ana.as_str(), true));
    f.click(&bob, &im, &ts, &id).await.unwrap();
    let e = r.next().await;
    assert_eq!((e.user.id.as_str(), e.direct), (bob.as_str(), false));
    r.stop().await.unwrap();
}

/// A signed slash command or button press sent again with its signature (a replay of a
/// captured request, within the five minutes the signature is good for) is not run again; one
/// refused with 503 (the adapter not running yet) is taken when sent again.
#[tokio::test]
async fn events_api_replayed_commands_and_presses_run_once() {
    let f = FakeSlack::start().await.unwrap();
    let a = adapter(&f.api_url(), SlackMode::Events);
    let base = hooks_server(a.clone()).await;
    let commands = format!("{base}/commands");
    let slash = "user_id=U1&channel_id=C1&user_name=ana&text=deploy+web&trigger_id=t1";
    let ts = now();
    let sig = fake::sign(fake::SIGNING_SECRET, &ts, slash.as_bytes());
    assert_eq!(post_signed(&commands, slash, &ts, &sig, None).await.0, 503);
    let mut r = Running::spawn_connected(a.clone()).await;
    assert_eq!(post_signed(&commands, slash, &ts, &sig, None).await.0, 200);
    assert_eq!(r.next().await.text, "deploy web");
    assert_eq!(post_signed(&commands, slash, &ts, &sig, None).await.0, 200);
    quiet(&mut r, Duration::from_millis(300)).await;
    let press = json!({"type": "block_actions", "user": {"id": "U1"}, "channel": {"id": "C1"}, "trigger_id": "t2",
        "container": {"type": "message", "channel_id": "C1", "message_ts": "1.1"},
        "actions": [{"action_id": "opsbot_btn_1", "value": "deploy web", "type": "button"}]});
    let body = serde_urlencoded::to_string([("payload", press.to_string())]).unwrap();
    let interactive = format!("{base}/interactive");
    let ts = now();
    let sig = fake::sign(fake::SIGNING_SECRET, &ts, body.as_bytes());
    assert_eq!(post_signed(&interactive, &body, &ts, &sig, None).await.0, 200);
    assert_eq!(r.next().await.text, "deploy web");
    assert_eq!(post_signed(&interactive, &body, &ts, &sig, None).await.0, 200);
    quiet(&mut r, Duration::from_millis(300)).await;
    // The same press signed anew (another timestamp: Slack never does this) is new to us.
    let ts2 = (ts.parse::<i64>().unwrap() - 2).to_string();
    let sig2 = fake::sign(fake::SIGNING_SECRET, &ts2, body.as_bytes());
    assert_eq!(post_signed(&interactive, &body, &ts2, &sig2, None).await.0, 200);
    assert_eq!(r.next().await.text, "deploy web");
    r.stop().await.unwrap();
}

/// Slack says `disconnect` twice on a connection (a `warning`, then `refresh_requested`): one
/// new connection, not a new one per message (apps.connections.open is tier 1, and each new
/// one would close the good one).
#[tokio::test]
async fn a_second_disconnect_on_a_replaced_connection_opens_nothing() {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_port = ws_listener.local_addr().unwrap().port();
    let opens = Arc::new(AtomicUsize::new(0));
    let api_port = web_api_stub(ws_port, opens.clone()).await;
    tokio::spawn(async move {
        let mut k = 0;
        loop {
            let Ok((s, _)) = ws_listener.accept().await else { continue };
            let first = k == 0;
            k += 1;
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(s).await else { return };
                let (mut sink, mut stream) = ws.split();
                let _ = sink.send(json!({"type": "hello", "num_connections": 1}).to_string().into()).await;
                if first {
                    let _ = sink
                        .send(json!({"type": "disconnect", "reason": "warning"}).to_string().into())
                        .await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let _ = sink
                        .send(json!({"type": "disconnect", "reason": "refresh_requested"}).to_string().into())
                        .await;
                }
                while let Some(Ok(_)) = stream.next().await {}
            });
        }
    });
    let r = Running::spawn_connected(adapter(&format!("http://127.0.0.1:{api_port}/api"), SlackMode::Socket)).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(opens.load(Ordering::SeqCst), 2, "one connection, one refresh");
    assert!(!r.task.is_finished());
    r.stop().await.unwrap();
}

/// A `Retry-After` far beyond any sense (a proxy's, a bug's) is bounded, not a panic.
#[tokio::test]
async fn a_huge_retry_after_is_bounded() {
    let f = FakeSlack::start().await.unwrap();
    let a = adapter(&f.api_url(), SlackMode::Socket);
    f.rate_limit("chat.postMessage", 1, u64::MAX);
    match a.post(&place(&f.channel()), &Reply::text(Tone::Info, "x")).await {
        Err(SendError::RateLimited(d)) => assert!(d <= Duration::from_secs(3600), "{d:?}"),
        other => panic!("{other:?}"),
    }
}
