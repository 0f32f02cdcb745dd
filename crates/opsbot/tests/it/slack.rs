//! Slack through the real `opsbot serve` binary and the local fake of Slack
//! (`opsbot_testkit::slack`): buttons and forms checked like typed text, slash commands, a Socket
//! Mode refresh in the middle of a job card, and the HTTP Events API with signed, forged and
//! replayed requests (signatures also made by Slack's own Python SDK).

use crate::harness::{Bot, Sandbox, run_id};
use opsbot_testkit::slack::{self, BotMessage, FakeSlack, How};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn config(adapter: &str, ana: &str, bob: &str, extra: &str) -> String {
    format!(
        r#"
[bot]
name = "opsbot"

[access]
default_role = "guest"

[people.ana]
name = "Ana"
accounts = ["slack:{ana}"]
roles = ["admin"]

[people.bob]
name = "Bob"
accounts = ["slack:{bob}"]
roles = ["viewer"]

[roles.viewer]
allow = [{{ verbs = "view", jobs = "*" }}]

[jobs.hello]
description = "Says hello"
runner = {{ type = "exec", argv = ["echo", "hello"] }}

[jobs.slow]
description = "Takes two seconds"
runner = {{ type = "exec", argv = ["sh", "-c", "echo step 1; sleep 1; echo step 2; sleep 1; echo done"] }}

[jobs.wait]
description = "Waits"
runner = {{ type = "exec", argv = ["sleep", "{{{{ secs }}}}"] }}
[[jobs.wait.params]]
name = "secs"
type = "int"
min = 1
max = 60
required = true

[adapters.slack]
send_rate = 1000
send_burst = 1000
{adapter}
{extra}
"#
    )
}

async fn start(fake: &FakeSlack, events: bool, ana: &str, bob: &str) -> Bot {
    start_with(fake, events, ana, bob, "").await
}

async fn start_with(fake: &FakeSlack, events: bool, ana: &str, bob: &str, extra: &str) -> Bot {
    let sb = Sandbox::new();
    let (body, env) = if events {
        fake.adapter_toml_events("")
    } else {
        opsbot_testkit::ChatServer::adapter_toml(fake)
    };
    let cfg = sb.config(&config(&body, ana, bob, extra));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (serve, addr) = sb.serve_with(&cfg, &env);
    let bot = Bot { _sandbox: sb, serve, addr };
    crate::harness::adapters_connected(&bot.addr, &bot.serve, 1).await;
    bot
}

/// The first bot message (from `from` on in the fake's log) whose text contains `needle`.
async fn wait_message(fake: &FakeSlack, from: usize, needle: &str, bot: &Bot) -> BotMessage {
    let t = Instant::now();
    loop {
        if let Some(m) = fake.messages().into_iter().skip(from).find(|m| m.text.contains(needle)) {
            return m;
        }
        assert!(
            t.elapsed() < WAIT,
            "no bot message containing {needle:?}; the bot said {:#?}\n--- opsbot's log:\n{}",
            fake.messages()
                .iter()
                .skip(from)
                .map(|m| (&m.channel, &m.text, m.how))
                .collect::<Vec<_>>(),
            bot.serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The action id of the button labelled `label` in a message's blocks.
fn button(blocks: &Value, label: &str) -> String {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find(|e| e["text"]["text"].as_str().is_some_and(|t| t.contains(label)))
        .and_then(|e| e["action_id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no button {label:?} in {blocks:#}"))
}

/// The card's latest state: the last post or update of that message.
fn card_text(fake: &FakeSlack, channel: &str, ts: &str) -> String {
    fake.message(channel, ts).map(|(t, _)| t).unwrap_or_default()
}

/// Waits until the card `ts` in `channel` (its latest post or update) contains `needle`.
async fn wait_card(fake: &FakeSlack, channel: &str, ts: &str, needle: &str, bot: &Bot) {
    let t = Instant::now();
    while !card_text(fake, channel, ts).contains(needle) {
        assert!(
            t.elapsed() < WAIT,
            "the card never showed {needle:?}: {:?}\n{}",
            fake.message(channel, ts),
            bot.serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_and_forms_are_checked_like_typed_commands() {
    let fake = FakeSlack::start().await.expect("fake Slack");
    let ana = fake.add_user("ana");
    let bob = fake.add_user("bob");
    let bot = start(&fake, false, &ana, &bob).await;
    let ch = fake.channel();

    // Ana starts a long run; its card has a Cancel button.
    let from = fake.messages().len();
    fake.say(&ana, &ch, "!wait secs=30", None).await.unwrap();
    let card = wait_message(&fake, from, "queued", &bot).await;
    let id = run_id(&card.text);
    let cancel = button(&card.blocks, "Cancel");

    // Bob (a viewer) presses it: refused, as if he had typed `cancel N`, and the run goes on.
    let from = fake.messages().len();
    fake.click(&bob, &ch, &card.ts, &cancel).await.unwrap();
    let refused = wait_message(&fake, from, &format!("You may not cancel #{id}"), &bot).await;
    assert_eq!(refused.channel, ch);
    // A forged payload (a value of Bob's choosing naming Ana's run, or a job) is no better.
    let from = fake.messages().len();
    fake.click_with_value(&bob, &ch, &card.ts, &cancel, &format!("cancel {id}"))
        .await
        .unwrap();
    wait_message(&fake, from, &format!("You may not cancel #{id}"), &bot).await;
    let from = fake.messages().len();
    fake.click_with_value(&bob, &ch, &card.ts, &cancel, "run hello").await.unwrap();
    let m = wait_message(&fake, from, "hello", &bot).await;
    assert!(!m.text.contains("queued"), "a viewer's forged button must not run anything: {m:?}");
    let from = fake.messages().len();
    fake.say(&ana, &ch, &format!("!status {id}"), None).await.unwrap();
    wait_message(&fake, from, &format!("#{id} running"), &bot).await;

    // Ana's own press cancels it; the card shows it.
    let from = fake.messages().len();
    fake.click(&ana, &ch, &card.ts, &cancel).await.unwrap();
    wait_message(&fake, from, "cancel", &bot).await;
    wait_card(&fake, &ch, &card.ts, "cancelled", &bot).await;

    // A missing parameter: the question carries "Fill in…", which opens the job's form as a
    // modal; submitting it runs the job, from Ana.
    let from = fake.messages().len();
    fake.say(&ana, &ch, "!wait", None).await.unwrap();
    let q = wait_message(&fake, from, "Which `secs`", &bot).await;
    let fill = button(&q.blocks, "Fill in");
    fake.click(&ana, &ch, &q.ts, &fill).await.unwrap();
    let t = Instant::now();
    let view = loop {
        if let Some(v) = fake.views().into_iter().find(|v| v.user == ana) {
            break v;
        }
        assert!(t.elapsed() < WAIT, "no modal opened\n{}", bot.serve.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(view.view.to_string().contains("secs"), "{:#}", view.view);
    // Out of range: the modal says so and nothing runs.
    let d = fake.submit_view(&ana, &view.id, &[("secs", "99")]).await.unwrap();
    let errors = d
        .ack_payload
        .clone()
        .or_else(|| d.http_body.as_deref().and_then(|b| serde_json::from_str(b).ok()));
    assert!(
        errors.as_ref().is_some_and(|e| e["response_action"] == "errors"),
        "an out-of-range value is refused in the modal: {d:?}"
    );
    let from = fake.messages().len();
    fake.submit_view(&ana, &view.id, &[("secs", "1")]).await.unwrap();
    let card = wait_message(&fake, from, "queued", &bot).await;
    assert!(card.text.contains("secs=1"), "{card:?}");
    let id = run_id(&card.text);
    wait_card(&fake, &card.channel, &card.ts, &format!("#{id} wait succeeded"), &bot).await;
    // Bob's submission of the same form is refused like his typing would be.
    let from = fake.messages().len();
    fake.say(&bob, &ch, "!wait", None).await.unwrap();
    let m = wait_message(&fake, from, "wait", &bot).await;
    assert!(
        !m.text.contains("Which"),
        "a viewer is not asked for values of a job he may not run: {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_and_a_socket_refresh_in_the_middle_of_a_card() {
    let fake = FakeSlack::start().await.expect("fake Slack");
    let ana = fake.add_user("ana");
    let bob = fake.add_user("bob");
    let bot = start(&fake, false, &ana, &bob).await;
    let ch = fake.channel();

    // `/opsbot whoami`: acknowledged at once, answered in the channel.
    let from = fake.messages().len();
    let d = fake.slash(&ana, &ch, "/opsbot", "whoami").await.unwrap();
    assert!(d.acked.is_some(), "{d:?}");
    let m = wait_message(&fake, from, "person `ana`", &bot).await;
    assert_eq!(m.channel, ch);
    // In a channel the bot is not in, the reply goes through the command's response_url.
    let other = fake.add_channel("elsewhere", false);
    let from = fake.messages().len();
    fake.slash(&ana, &other, "/opsbot", "whoami").await.unwrap();
    let m = wait_message(&fake, from, "person `ana`", &bot).await;
    assert_eq!((m.channel.as_str(), m.how), (other.as_str(), How::ResponseUrl), "{m:?}");

    // A run's card, while Slack asks the bot to reconnect (refresh_requested) mid-run: every
    // state still arrives, in order, on the same card.
    fake.set_disconnect_grace(Duration::from_millis(200));
    let from = fake.messages().len();
    fake.say(&ana, &ch, "!slow", None).await.unwrap();
    let card = wait_message(&fake, from, "queued", &bot).await;
    let id = run_id(&card.text);
    fake.disconnect("refresh_requested");
    // A command said right after the refresh is answered too (over the new connection).
    fake.say(&ana, &ch, "!whoami", None).await.unwrap();
    wait_message(&fake, from, "person `ana`", &bot).await;
    wait_card(&fake, &ch, &card.ts, &format!("#{id} slow succeeded"), &bot).await;
    let updates: Vec<String> = fake
        .messages()
        .into_iter()
        .filter(|m| m.how == How::Updated && m.ts == card.ts)
        .map(|m| m.text)
        .collect();
    let running = updates.iter().position(|t| t.contains("running"));
    let done = updates.iter().position(|t| t.contains("succeeded"));
    assert!(running.is_some() && running < done, "card updates in order: {updates:#?}");
    // Nothing was handled twice: one `whoami` answer per ask.
    let whoamis = fake
        .messages()
        .iter()
        .skip(from)
        .filter(|m| m.text.contains("person `ana`"))
        .count();
    assert_eq!(whoamis, 1);
}

/// A signed Events API request as Slack makes it.
fn signed(body: &str, ts: i64, secret: &str) -> Vec<(String, String)> {
    let ts = ts.to_string();
    vec![
        ("X-Slack-Request-Timestamp".into(), ts.clone()),
        ("X-Slack-Signature".into(), slack::sign(secret, &ts, body.as_bytes())),
        ("Content-Type".into(), "application/json".into()),
    ]
}

fn post(addr: &str, path: &str, headers: &[(String, String)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn event(event_id: &str, user: &str, channel: &str, text: &str, ts: &str) -> String {
    serde_json::json!({
        "token": slack::VERIFICATION_TOKEN,
        "team_id": slack::TEAM_ID,
        "api_app_id": slack::APP_ID,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_000,
        "event": {
            "type": "app_mention", "user": user, "channel": channel, "text": text, "ts": ts,
            "event_ts": ts, "team": slack::TEAM_ID,
        },
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_api_takes_signed_requests_and_refuses_forged_and_replayed_ones() {
    let fake = FakeSlack::start().await.expect("fake Slack");
    let ana = fake.add_user("ana");
    let bob = fake.add_user("bob");
    let bot = start(&fake, true, &ana, &bob).await;
    let ch = fake.channel();
    fake.set_events_url(Some(format!("http://{}/hooks/slack", bot.addr)));
    assert!(
        fake.verify_events_url().await.unwrap(),
        "url_verification answered with the challenge"
    );

    // Through the fake (signed as Slack signs): a mention gets its answer.
    let from = fake.messages().len();
    let d = fake
        .say(&ana, &ch, &format!("<@{}> whoami", slack::BOT_USER_ID), None)
        .await
        .unwrap();
    assert_eq!(d.http_status, Some(200), "{d:?}");
    wait_message(&fake, from, "person `ana`", &bot).await;

    let now = chrono::Utc::now().timestamp();
    let body = event(
        "Ev0REPLAY01",
        &ana,
        &ch,
        &format!("<@{}> hello", slack::BOT_USER_ID),
        "1700000100.000100",
    );
    // Forged: another secret; missing signature; five minutes and a bit old; not Slack's body.
    for (what, headers) in [
        ("another secret", signed(&body, now, "not-the-signing-secret-0000000000")),
        ("no signature", vec![("X-Slack-Request-Timestamp".to_string(), now.to_string())]),
        ("too old", signed(&body, now - 301, slack::SIGNING_SECRET)),
    ] {
        let (status, text) = post(&bot.addr, "/hooks/slack/events", &headers, &body);
        assert_eq!(status, 401, "{what}: {text}");
        assert!(
            text.contains("signature") || text.contains("timestamp"),
            "{what}: a clear reason: {text}"
        );
    }
    let mut tampered = signed(&body, now, slack::SIGNING_SECRET);
    tampered.push(("X-Ignored".into(), "x".into()));
    let (status, _) = post(&bot.addr, "/hooks/slack/events", &tampered, &body.replace("hello", "slow"));
    assert_eq!(status, 401, "a body changed after signing is refused");

    // Signed right: handled once, even when Slack retries it (X-Slack-Retry-Num) or it is
    // replayed within the window.
    let from = fake.messages().len();
    let (status, _) = post(&bot.addr, "/hooks/slack/events", &signed(&body, now, slack::SIGNING_SECRET), &body);
    assert_eq!(status, 200);
    let mut retry = signed(&body, now + 1, slack::SIGNING_SECRET);
    retry.push(("X-Slack-Retry-Num".into(), "1".into()));
    retry.push(("X-Slack-Retry-Reason".into(), "http_timeout".into()));
    assert_eq!(post(&bot.addr, "/hooks/slack/events", &retry, &body).0, 200);
    assert_eq!(
        post(&bot.addr, "/hooks/slack/events", &signed(&body, now, slack::SIGNING_SECRET), &body).0,
        200
    );
    wait_message(&fake, from, "queued", &bot).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued = fake.messages().iter().skip(from).filter(|m| m.text.contains("queued")).count();
    assert_eq!(
        queued,
        1,
        "one run for one event: {:#?}",
        fake.messages().iter().skip(from).collect::<Vec<_>>()
    );

    // Garbage, signed: refused with a reason, nothing else happens.
    let junk = "{\"type\":\"event_callback\",\"event\":";
    let (status, text) = post(&bot.addr, "/hooks/slack/events", &signed(junk, now, slack::SIGNING_SECRET), junk);
    assert_eq!(status, 400, "{text}");
    // No such adapter.
    let (status, text) = post(&bot.addr, "/hooks/nope/events", &signed(&body, now, slack::SIGNING_SECRET), &body);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("nope"), "{text}");

    // Slack's own SDK signs a request the way Slack does; opsbot takes it.
    let venv = opsbot_testkit::chat_venv();
    let python = venv.join("bin/python");
    if !python.is_file() {
        assert!(!opsbot_testkit::servers_required(), "no Python venv at {}", venv.display());
        eprintln!("SKIPPED: slack_sdk signing (no venv at {})", venv.display());
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox/slack_signed_event.py");
    // And the other way: signatures opsbot makes, which the SDK's verifier must accept.
    let rust_signed: Vec<String> = ["", "token=x&text=%2Fdeploy+web", "{\"text\":\"部署 web ✓\"}", &"x".repeat(5000)]
        .iter()
        .map(|body| {
            let ts = now.to_string();
            let sig = opsbot_core::verify::slack_signature(slack::SIGNING_SECRET.as_bytes(), &ts, body.as_bytes());
            format!("{ts}:{sig}:{}", hex(body.as_bytes()))
        })
        .collect();
    let from = fake.messages().len();
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(["--url", &format!("http://{}/hooks/slack/events", bot.addr)])
        .args([
            "--secret",
            slack::SIGNING_SECRET,
            "--user",
            &ana,
            "--channel",
            &ch,
            "--bot",
            slack::BOT_USER_ID,
        ])
        .args(rust_signed.iter().flat_map(|c| ["--check".to_string(), c.clone()]))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_message(&fake, from, "person `ana`", &bot).await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_buttons_need_another_person_allowed_to_approve() {
    let fake = FakeSlack::start().await.expect("fake Slack");
    let ana = fake.add_user("ana");
    let bob = fake.add_user("bob");
    let carol = fake.add_user("carol");
    let extra = format!(
        r#"
[people.carol]
name = "Carol"
accounts = ["slack:{carol}"]
roles = ["lead"]

[roles.lead]
allow = [{{ verbs = ["approve", "view"], jobs = "*" }}]

[[policy.approval]]
name = "four-eyes"
jobs = ["hello"]
approvers = ["lead"]
"#
    );
    let bot = start_with(&fake, false, &ana, &bob, &extra).await;
    let ch = fake.channel();

    let from = fake.messages().len();
    fake.say(&ana, &ch, "!hello", None).await.unwrap();
    let request = wait_message(&fake, from, "approval request", &bot).await;
    let approve = button(&request.blocks, "Approve");
    // Ana may not approve her own request, Bob may not approve at all: nothing runs.
    for who in [&ana, &bob] {
        let from = fake.messages().len();
        fake.click(who, &ch, &request.ts, &approve).await.unwrap();
        let m = wait_message(&fake, from, "request", &bot).await;
        assert!(!m.text.contains("queued"), "{who}: {m:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !fake.messages().iter().any(|m| m.text.contains("hello succeeded")),
        "no run before a lead approved"
    );
    // Carol, a lead, approves with the same button: the run starts and ends.
    let from = fake.messages().len();
    fake.click(&carol, &ch, &request.ts, &approve).await.unwrap();
    let t = Instant::now();
    while !fake.messages().iter().skip(from).any(|m| m.text.contains("hello succeeded")) {
        assert!(
            t.elapsed() < WAIT,
            "no run after Carol's approval: {:#?}\n{}",
            fake.messages().iter().skip(from).map(|m| &m.text).collect::<Vec<_>>(),
            bot.serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A run scheduled from chat starts at its time in the real `opsbot serve` (its schedule loop),
/// announced in the channel it was asked in, with its job card there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_starts_at_its_time_in_its_channel() {
    let fake = FakeSlack::start().await.expect("fake Slack");
    let ana = fake.add_user("ana");
    let bob = fake.add_user("bob");
    let bot = start(&fake, false, &ana, &bob).await;
    let ch = fake.channel();
    let from = fake.messages().len();
    fake.say(&ana, &ch, "!run hello in 1 minute", None).await.unwrap();
    let made = wait_message(&fake, from, "Scheduled #1", &bot).await;
    assert_eq!(made.channel, ch);
    let from = fake.messages().len();
    fake.say(&bob, &ch, "!schedules", None).await.unwrap();
    let list = wait_message(&fake, from, "#1", &bot).await;
    assert!(list.text.contains("hello"), "{list:?}");
    // Within a minute and the loop's five seconds.
    let t = Instant::now();
    loop {
        if fake.messages().iter().any(|m| m.text.contains("Starting scheduled run #1")) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(100),
            "the scheduled run did not start\n{}",
            bot.serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let card = wait_message(&fake, 0, "hello —", &bot).await;
    let id = run_id(&card.text);
    wait_card(&fake, &ch, &card.ts, "succeeded", &bot).await;
    // It ran as Ana, who asked for it.
    let from = fake.messages().len();
    fake.say(&ana, &ch, &format!("!status {id}"), None).await.unwrap();
    let status = wait_message(&fake, from, &format!("#{id}"), &bot).await;
    assert!(status.text.contains("Ana"), "{status:?}");
}
