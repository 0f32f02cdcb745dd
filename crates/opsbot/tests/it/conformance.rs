//! The chat conformance suite: one set of behaviours every chat adapter must show, run against
//! each real server (ngIRCd, Synapse, Prosody, started fresh by `opsbot-testkit`) with the real
//! `opsbot serve` binary in between and test users speaking the protocol themselves:
//!
//! - a command in a room gets its reply in that room; a direct message gets a direct reply;
//! - mentions and prefixes both address the bot;
//! - two people in one room are told apart by their stable ids (one is a configured admin, the
//!   other an unknown account refused as a guest);
//! - a long reply arrives whole;
//! - the job card shows every state (edited in place, or as follow-ups where the platform cannot
//!   edit);
//! - the server restarts in the middle of a job and the final result still arrives;
//! - a burst of 200 commands gets 200 replies, in order.
//!
//! Slack and Mattermost cannot run here; they are local fakes written from the platforms'
//! published API documents (`opsbot_testkit::slack`, `::mattermost`), checked against the
//! platforms' own client libraries in opsbot-testkit's tests.
//!
//! It also drives the bot from each platform's well-known Python client library (a client no
//! one here wrote), and measures reply latency and throughput (printed and written to
//! `target/test-artefacts/chat-figures-PLATFORM.txt`; never asserted).

use crate::harness::{Bot, Sandbox, run_id};
use opsbot_testkit::{ChatServer, ChatUser, Heard};
use std::time::{Duration, Instant};

/// Jobs the suite runs. `manual` has a long description (the long reply: `help manual`).
fn config(server: &dyn ChatServer, ana: &str, extra: &str) -> String {
    let (body, _) = server.adapter_toml();
    let platform = server.platform();
    let long: String = (1..=40)
        .map(|i| format!("Step {i}: check the runbook section {i} before going on, 第{i}步。"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r#"
[bot]
name = "opsbot"

[access]
default_role = "guest"

[people.ana]
name = "Ana"
accounts = ["{platform}:{ana}"]
roles = ["admin"]

[jobs.hello]
description = "Says hello"
runner = {{ type = "exec", argv = ["echo", "hello"] }}

[jobs.slow]
description = "Takes a second and a half"
runner = {{ type = "exec", argv = ["sleep", "1.5"] }}

[jobs.wait]
description = "Waits"
runner = {{ type = "exec", argv = ["sleep", "{{{{ secs }}}}"] }}
[[jobs.wait.params]]
name = "secs"
type = "int"
min = 1
max = 60
required = true

[jobs.manual]
description = "{long} END-OF-MANUAL"
runner = {{ type = "exec", argv = ["true"] }}

[adapters.{platform}]
{body}
{extra}
"#
    )
}

async fn start_bot(server: &dyn ChatServer, ana: &str, extra: &str) -> Bot {
    let sb = Sandbox::new();
    let cfg = sb.config(&config(server, ana, extra));
    let (_, env) = server.adapter_toml();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (serve, addr) = sb.serve_with(&cfg, &env);
    let bot = Bot { _sandbox: sb, serve, addr };
    crate::harness::adapters_connected(&bot.addr, &bot.serve, 1).await;
    bot
}

/// The next message from the bot whose text contains `needle`, skipping others.
async fn heard(user: &mut Box<dyn ChatUser>, needle: &str, what: &str, bot: &Bot) -> Heard {
    heard_any(user, &[needle], what, bot).await
}

/// A run's job card as first posted: queued where the platform edits the card through every
/// state; on IRC (no edits) in the state the run is in by then — running when a worker is
/// free, or already succeeded for a run that quick.
async fn heard_card(user: &mut Box<dyn ChatUser>, what: &str, bot: &Bot) -> Heard {
    heard_any(user, &["queued", " running", " succeeded"], what, bot).await
}

/// The next message from the bot whose text contains one of `needles`, skipping others.
async fn heard_any(user: &mut Box<dyn ChatUser>, needles: &[&str], what: &str, bot: &Bot) -> Heard {
    let needle = needles.join("` or `");
    if !what.ends_with(" reply") {
        eprintln!("conformance: waiting for {what}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        // The user's own timeout is not trusted to hold: a stuck client must fail the test.
        if let Ok(Some(h)) = tokio::time::timeout(Duration::from_secs(2), user.next(Duration::from_millis(500))).await {
            if needles.iter().any(|n| h.text.contains(n)) {
                return h;
            }
            seen.push(h);
        }
    }
    panic!(
        "{what}: no message containing `{needle}`; heard {seen:#?}\n--- opsbot's log:\n{}",
        bot.serve.stderr()
    );
}

/// How a platform's Python client is run: the script and its arguments, for a person `carol`
/// the server already knows (registered and in the room) who says `!whoami` in the room.
type Python = fn(&dyn ChatServer) -> (&'static str, Vec<String>);

/// The whole suite against one server.
async fn suite(mut server: Box<dyn ChatServer>, extra: &str, python: Option<Python>) {
    // The default pacing (1 message/s) suits a real network; the burst would take minutes.
    let extra = format!("send_rate = 1000\nsend_burst = 1000\n{extra}");
    let extra = extra.as_str();
    let room = server.room();
    let mut ana = server.user("ana").await.expect("user ana");
    let mut bob = server.user("bob").await.expect("user bob");
    let bot = start_bot(server.as_ref(), &ana.account(), extra).await;
    let platform = server.platform();
    let mut figures: Vec<(String, String)> = Vec::new();

    // A command in a room: the reply comes in that room. A prefix addresses the bot.
    ana.say(&room, "!whoami").await.unwrap();
    let h = heard(&mut ana, "person `ana`", "!whoami in the room", &bot).await;
    assert_eq!(h.room.as_deref(), Some(room.as_str()), "{h:?}");
    assert!(h.text.contains(&format!("{platform}:{}", ana.account())), "stable id: {h:?}");

    // A mention addresses it too.
    ana.say(&room, "opsbot: whoami").await.unwrap();
    let h = heard(&mut ana, "person `ana`", "a mention in the room", &bot).await;
    assert_eq!(h.room.as_deref(), Some(room.as_str()));

    // Two people in one room are told apart by stable id: Bob is nobody the config knows.
    bob.say(&room, "!whoami").await.unwrap();
    let h = heard(&mut bob, "an account I don't know", "Bob's whoami", &bot).await;
    assert!(h.text.contains(&format!("{platform}:{}", bob.account())), "{h:?}");
    bob.say(&room, "!hello").await.unwrap();
    let h = heard(&mut bob, "hello", "Bob refused", &bot).await;
    assert!(!h.text.contains("queued"), "a guest must not run: {h:?}");

    // A direct message gets a direct reply.
    ana.dm("whoami").await.unwrap();
    let h = heard(&mut ana, "(direct)", "a direct message", &bot).await;
    assert_eq!(h.room, None, "{h:?}");

    // A client library no one here wrote gets its answer too (Carol is nobody the config knows).
    // (Slack and Mattermost have no such client here: the people are the fake server's; their
    // SDKs check the fakes instead, in opsbot-testkit's tests.)
    if let Some(python) = python {
        drop(server.user("carol").await.expect("user carol"));
        let (script, args) = python(server.as_ref());
        python_client(script, &args);
    }

    // A long reply arrives whole (its last words included).
    // Where the platform splits it into several messages (IRC lines), all of them arrive in order.
    ana.say(&room, "!help manual").await.unwrap();
    let first = heard(&mut ana, "Step 1:", "the long reply's start", &bot).await;
    let mut whole = first.text.clone();
    while !whole.contains("END-OF-MANUAL") {
        let h = ana
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the long reply stopped after {whole:?}"));
        assert_eq!(h.room, first.room, "{h:?}");
        whole.push(' ');
        whole.push_str(&h.text);
    }
    let flat: String = whole.split_whitespace().collect::<Vec<_>>().join(" ");
    for i in 1..=40 {
        assert!(
            flat.contains(&format!("Step {i}: check the runbook section {i} before going on, 第{i}步。"))
                || flat.contains(&format!("section {i} before")),
            "step {i} missing from the long reply: {flat}"
        );
    }

    // The job card shows every state (on IRC, from the one the run is in when it is posted).
    ana.say(&room, "!slow").await.unwrap();
    let card = heard_card(&mut ana, "the card", &bot).await;
    let id = run_id(&card.text);
    let running = if card.text.contains(&format!("#{id} running")) {
        card.clone()
    } else {
        heard(&mut ana, &format!("#{id} running"), "the card, running", &bot).await
    };
    let done = heard(&mut ana, &format!("#{id} slow succeeded"), "the card, succeeded", &bot).await;
    if card.id.is_some() && running.replaces.is_some() {
        assert_eq!(running.replaces, card.id, "the running state edits the card");
        assert_eq!(done.replaces, card.id, "the end edits the card");
    }

    // One at a time: reply latency, from the send to the reply seen by the person.
    let mut one = Vec::new();
    let t = Instant::now();
    for i in 0..100 {
        let sent = Instant::now();
        ana.say(&room, &format!("!status {}", 9000 + i)).await.unwrap();
        heard(&mut ana, &format!("#{}", 9000 + i), "a status reply", &bot).await;
        one.push(sent.elapsed());
    }
    let one_rate = 100.0 / t.elapsed().as_secs_f64();
    figures.push((
        "one at a time (100)".to_string(),
        format!("{} · {one_rate:.0} commands/s", stats(&mut one)),
    ));

    // A burst of 200 commands gets 200 replies, in order.
    let t = Instant::now();
    for i in 1..=200 {
        ana.say(&room, &format!("!status {}", 10_000 + i)).await.unwrap();
    }
    let sent_all = t.elapsed();
    for i in 1..=200 {
        let h = heard(&mut ana, "There is no execution", "a burst reply", &bot).await;
        assert!(h.text.contains(&format!("#{}", 10_000 + i)), "reply {i} out of order: {h:?}");
    }
    let burst = t.elapsed();
    figures.push((
        "burst of 200".to_string(),
        format!(
            "all replies {burst:.2?} after the first send ({:.0} commands/s); sending took {sent_all:.2?}, the last reply came {:.2?} after the last send",
            200.0 / burst.as_secs_f64(),
            burst - sent_all
        ),
    ));

    // The server restarts in the middle of a job; the final result still arrives.
    ana.say(&room, "!wait secs=7").await.unwrap();
    let card = heard_card(&mut ana, "the waiting card", &bot).await;
    let id = run_id(&card.text);
    if !card.text.contains(&format!("#{id} running")) {
        heard(&mut ana, &format!("#{id} running"), "the waiting card, running", &bot).await;
    }
    drop(ana);
    server.stop().await;
    // Down for 3 s; the run ends about when the bot is back (before or after: its end waits in
    // the outbox if the bot is not back yet). Ana is back first: on IRC nothing said before she
    // is in the room again reaches her.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.start().await.expect("server back");
    let back = Instant::now();
    let mut ana = server.user("ana").await.expect("ana again");
    // How long the bot takes to be back once the server is (a figure, not asserted).
    loop {
        let (_, body) = crate::harness::http(&bot.addr, "GET", "/readyz", None, None);
        if body.contains("\"connected\":true") {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "the adapter did not reconnect: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    figures.push((
        "reconnected".to_string(),
        format!("{:.2?} after the server was back (down 3 s)", back.elapsed()),
    ));
    let h = heard(&mut ana, &format!("#{id} wait succeeded"), "the result after the restart", &bot).await;
    if card.id.is_some() && h.replaces.is_some() {
        assert_eq!(h.replaces, card.id, "the result edits the card posted before the restart");
    }
    // And the bot answers again.
    ana.say(&room, "!whoami").await.unwrap();
    heard(&mut ana, "person `ana`", "whoami after the restart", &bot).await;
    let (_, body) = crate::harness::http(&bot.addr, "GET", "/readyz", None, None);
    assert!(body.contains("\"reconnects\":") && !body.contains("\"reconnects\":0"), "{body}");

    figures.extend(server.figures());
    let bin = std::env::var("OPSBOT_TEST_BIN").unwrap_or_else(|_| "the debug build".into());
    let mut text = format!("chat figures, {platform} ({bin})\n");
    for (what, s) in &figures {
        text.push_str(&format!("{what:22} {s}\n"));
    }
    eprintln!("{text}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artefacts");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("chat-figures-{platform}.txt")), text);
}

fn stats(v: &mut [Duration]) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!("p50 {:.1?} p99 {:.1?} max {:.1?}", p(0.5), p(0.99), v[v.len() - 1])
}

/// The value of `key = "…"` in an adapter table body.
fn toml_value(body: &str, key: &str) -> String {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start()
                .strip_prefix('=')
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no `{key}` in {body}"))
}

/// Runs the platform's Python client script against the bot: it must see the reply.
fn python_client(script: &str, args: &[String]) {
    let venv = opsbot_testkit::chat_venv();
    let python = venv.join("bin/python");
    if !python.is_file() {
        let note = format!("no Python venv at {} (scripts/test.sh makes it)", venv.display());
        assert!(!opsbot_testkit::servers_required(), "{note}; OPSBOT_REQUIRE_SERVERS=1 needs it");
        eprintln!("SKIPPED: {note}");
        return;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/blackbox").join(script);
    let out = std::process::Command::new(python).arg(&path).args(args).output().expect("python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_conformance() {
    let Some(server) = opsbot_testkit::irc::Ngircd::start().await else {
        return;
    };
    suite(
        Box::new(server),
        "max_lines = 200",
        Some(|s| {
            let (body, _) = s.adapter_toml();
            let args = [
                "--server",
                "127.0.0.1",
                "--port",
                &toml_value(&body, "port"),
                "--nick",
                "dave",
                "--room",
                &s.room(),
                "--text",
                "!whoami",
                "--regex",
                r"irc:dave!~?dave@127\.0\.0\.1",
            ];
            ("irc_client.py", args.iter().map(|a| a.to_string()).collect())
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_conformance() {
    let Some(server) = opsbot_testkit::matrix::Synapse::launch().await.expect("synapse") else {
        return;
    };
    suite(
        Box::new(server),
        "",
        Some(|s| {
            let (body, _) = s.adapter_toml();
            let args = [
                "--homeserver",
                &toml_value(&body, "homeserver"),
                "--user",
                "@carol:test.local",
                "--password",
                "carol-pass",
                "--room",
                &s.room(),
                "--text",
                "!whoami",
                "--regex",
                r"matrix:@carol:test\.local",
                "--bot",
                &toml_value(&body, "user_id"),
            ];
            ("matrix_client.py", args.iter().map(|a| a.to_string()).collect())
        }),
    )
    .await;
}

/// Slack (Socket Mode) against the local fake written from Slack's API documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_conformance() {
    let server = opsbot_testkit::slack::FakeSlack::start().await.expect("fake Slack");
    suite(Box::new(server), "", None).await;
}

/// Mattermost against the local fake written from Mattermost's API documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mattermost_conformance() {
    let server = opsbot_testkit::mattermost::FakeMattermost::launch().await.expect("fake Mattermost");
    suite(Box::new(server), "", None).await;
}

#[cfg(feature = "xmpp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_conformance() {
    let Some(server) = opsbot_testkit::xmpp::Prosody::start_new().await.expect("prosody") else {
        return;
    };
    suite(
        Box::new(server),
        "",
        Some(|s| {
            let (body, _) = s.adapter_toml();
            let port = toml_value(&body, "server").rsplit(':').next().unwrap().to_string();
            let args = [
                "--jid",
                "carol@test.local",
                "--password",
                opsbot_testkit::xmpp::USER_PASSWORD,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--room",
                &s.room(),
                "--nick",
                "carolpy",
                "--text",
                "!whoami",
                "--regex",
                r"xmpp:carol@test\.local",
            ];
            ("xmpp_client.py", args.iter().map(|a| a.to_string()).collect())
        }),
    )
    .await;
}

/// All three platforms at once from one `opsbot serve`: a person on each gets answers, and the
/// process's memory with all three connected is recorded (a figure for docs/benchmarks.md).
#[cfg(feature = "xmpp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_platforms_in_one_process() {
    let Some(irc) = opsbot_testkit::irc::Ngircd::start().await else {
        return;
    };
    let Some(matrix) = opsbot_testkit::matrix::Synapse::launch().await.expect("synapse") else {
        return;
    };
    let Some(xmpp) = opsbot_testkit::xmpp::Prosody::start_new().await.expect("prosody") else {
        return;
    };
    let servers: Vec<Box<dyn ChatServer>> = vec![Box::new(irc), Box::new(matrix), Box::new(xmpp)];
    let mut users = Vec::new();
    for s in &servers {
        users.push(s.user("ana").await.expect("user"));
    }
    let mut text = String::from("[bot]\nname = \"opsbot\"\n[access]\ndefault_role = \"guest\"\n[people.ana]\naccounts = [");
    text.push_str(
        &servers
            .iter()
            .zip(&users)
            .map(|(s, u)| format!("\"{}:{}\"", s.platform(), u.account()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push_str("]\nroles = [\"admin\"]\n[jobs.hello]\nrunner = { type = \"exec\", argv = [\"echo\", \"hello\"] }\n");
    let mut env = Vec::new();
    for s in &servers {
        let (body, e) = s.adapter_toml();
        text.push_str(&format!(
            "[adapters.{}]\n{body}\nsend_rate = 1000\nsend_burst = 1000\n",
            s.platform()
        ));
        env.extend(e);
    }
    let sb = Sandbox::new();
    let cfg = sb.config(&text);
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (serve, addr) = sb.serve_with(&cfg, &env_ref);
    let bot = Bot { _sandbox: sb, serve, addr };
    crate::harness::adapters_connected(&bot.addr, &bot.serve, 3).await;
    for (s, u) in servers.iter().zip(users.iter_mut()) {
        u.say(&s.room(), "!hello").await.unwrap();
        let card = heard_card(u, &format!("{} card", s.platform()), &bot).await;
        let done = format!("#{} hello succeeded", run_id(&card.text));
        if !card.text.contains(&done) {
            heard(u, &done, &format!("{} result", s.platform()), &bot).await;
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", bot.serve.child.id())).unwrap_or_default();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?").to_string();
    eprintln!("opsbot serve with IRC, Matrix and XMPP connected (and the web server): {rss}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artefacts");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("chat-rss.txt"), format!("{rss}\n"));
}

/// The doors hand each other what is meant for the other: an approval request asked on IRC is
/// posted in the web chat's channel (runtime → web), one asked through the REST API is posted in
/// the IRC channel (web → runtime), and an IRC approver's vote starts the API requester's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_cross_between_irc_and_the_web() {
    let Some(server) = opsbot_testkit::irc::Ngircd::start().await else {
        return;
    };
    let room = server.room();
    let mut ana = server.user("ana").await.expect("ana");
    let mut lead = server.user("lead").await.expect("lead");
    let (body, _) = server.adapter_toml();
    let text = format!(
        r#"
[access]
default_role = "guest"
notify = ["irc/{room}", "web/ops"]

[people.ana]
accounts = ["irc:{ana}", "web:ana"]
roles = ["runner"]

[people.lead]
accounts = ["irc:{lead}"]
roles = ["lead"]

[roles.runner]
allow = [{{ verbs = ["run", "view"], jobs = "*" }}]

[roles.lead]
allow = [{{ verbs = ["approve", "view"], jobs = "*" }}]

[[policy.approval]]
name = "four-eyes"
jobs = ["hello"]
approvers = ["lead"]

[jobs.hello]
runner = {{ type = "exec", argv = ["echo", "hello"] }}

[adapters.irc]
{body}
"#,
        ana = ana.account(),
        lead = lead.account(),
    );
    let sb = Sandbox::new();
    let cfg = sb.config(&text);
    let token = sb.token(&cfg, "ana");
    let (serve, addr) = sb.serve(&cfg);
    let bot = Bot { _sandbox: sb, serve, addr };
    crate::harness::adapters_connected(&bot.addr, &bot.serve, 1).await;

    // Asked on IRC: the request is answered there and also reaches the web chat's #ops.
    ana.say(&room, "!hello").await.unwrap();
    let asked = heard(&mut ana, "approve", "the approval request on IRC", &bot).await;
    let db = bot._sandbox.db();
    let start = Instant::now();
    loop {
        let found = web_chat(&db, "ops");
        if found.contains("hello") && found.contains("approve") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the web chat's #ops never got the IRC request ({asked:?}); it has: {found}\n{}",
            bot.serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Asked through the REST API: the request is posted in the IRC channel, and the IRC lead's
    // vote starts the run.
    let (status, body) = crate::harness::http(
        &bot.addr,
        "POST",
        "/api/v1/executions",
        Some(&token),
        Some(r#"{"job":"hello","params":{}}"#),
    );
    assert_eq!(status, 202, "{body}");
    let id: i64 = body
        .split("\"approval_id\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no approval id in {body}"));
    heard(&mut lead, &format!("approve {id}"), "the API request on IRC", &bot).await;
    lead.say(&room, &format!("!approve {id}")).await.unwrap();
    heard(&mut lead, "approved", "the vote's answer", &bot).await;
    let start = Instant::now();
    loop {
        let (_, body) = crate::harness::http(&bot.addr, "GET", &format!("/api/v1/approvals/{id}"), Some(&token), None);
        if body.contains("\"execution_id\":") && !body.contains("\"execution_id\":null") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the approved request started no run: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stored replies of a web chat channel, read from the database file (read-only).
fn web_chat(db: &std::path::Path, channel: &str) -> String {
    use opsbot_store::rusqlite::{Connection, OpenFlags};
    let Ok(conn) = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return String::new();
    };
    let rows = conn
        .prepare("SELECT COALESCE(reply, '') AS reply FROM chat_messages WHERE channel = ?1")
        .and_then(|mut stmt| {
            stmt.query_map([channel], |r| r.get::<_, String>("reply"))?
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default();
    rows.join("\n")
}
