//! The fake Slack against the official Python SDK (slack_sdk, from the chat venv) and against a
//! plain WebSocket/HTTP client written here from Slack's docs: it must answer as Slack does.

use futures_util::{SinkExt, StreamExt};
use opsbot_testkit::slack::{self, FakeSlack, How};
use opsbot_testkit::{ChatServer, chat_venv, require};
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn http() -> reqwest::Client {
    opsbot_testkit::matrix::http_client()
}

async fn api(fake: &FakeSlack, method: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/{method}", fake.api_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the fake answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

/// The Python lines, collected by a reader task.
struct Py {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Py {
    /// Waits for a line matching `f`, keeping every line seen.
    async fn wait(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| f(v)) {
            return v.clone();
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if f(&v) {
                        return v;
                    }
                }
                _ => panic!("no line for {what}; seen: {:#?}", self.seen),
            }
        }
    }

    async fn check(&mut self, name: &str) {
        let v = self.wait(name, |v| v["check"] == json!(name)).await;
        assert_eq!(v["ok"], json!(true), "check {name} failed: {}", v["detail"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_sees_slacks_answers() {
    let venv_python = chat_venv().join("bin/python").to_string_lossy().to_string();
    let Some(python) = require("the chat venv's python (slack_sdk)", "OPSBOT_SLACK_SDK_PYTHON", &[&venv_python]) else {
        return;
    };
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import slack_sdk"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_sdk {
        let note = format!(
            "{} cannot import slack_sdk (run scripts/test.sh, which installs it)",
            python.display()
        );
        assert!(!opsbot_testkit::servers_required(), "{note}; OPSBOT_REQUIRE_SERVERS=1 needs it");
        eprintln!("SKIPPED: {note}");
        return;
    }
    let fake = FakeSlack::start().await.expect("fake starts");
    let alice = fake.add_user("alice");
    let random = fake.add_channel("random", false);
    // A person's message (the bot may not update it); nobody is connected yet.
    fake.set_connect_wait(Duration::from_millis(100));
    let said = fake.say(&alice, &fake.channel(), "hello", None).await.expect("said");
    assert!(said.acked.is_none() && said.note.is_some(), "{said:?}");
    fake.set_connect_wait(Duration::from_secs(30));
    fake.rate_limit("chat.postMessage", 1, 7);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/slack_sdk_check.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .env("API_URL", fake.api_url())
        .env("BOT_TOKEN", slack::BOT_TOKEN)
        .env("APP_TOKEN", slack::APP_TOKEN)
        .env("CHANNEL", fake.channel())
        .env("OTHER_CHANNEL", &random)
        .env("USER_MSG_TS", said.ts.clone().expect("ts"))
        .env("SIGNING_SECRET", slack::SIGNING_SECRET)
        .env("BOT_USER_ID", slack::BOT_USER_ID)
        .env("TEAM_ID", slack::TEAM_ID)
        .env("DOC_SIGNATURE", DOC_SIGNATURE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut r = BufReader::new(stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            match serde_json::from_str::<Value>(&l) {
                Ok(v) => {
                    let _ = tx.send(v);
                }
                Err(_) => eprintln!("python: {l}"),
            }
        }
    });
    let mut py = Py {
        child,
        lines,
        seen: Vec::new(),
    };

    // The Web API, as the SDK sees it.
    for name in [
        "ratelimited_429",
        "auth_test",
        "post_message",
        "post_in_thread",
        "update_message",
        "invalid_auth",
        "not_authed",
        "app_token_on_bot_method",
        "bot_token_opens_no_socket",
        "channel_not_found",
        "not_in_channel",
        "too_many_blocks",
        "malformed_block",
        "long_button_label",
        "no_text",
        "msg_too_long",
        "message_not_found",
        "cant_update_message",
        "invalid_trigger_id",
        "files_upload_v2",
        "sdk_doc_vector",
    ] {
        py.check(name).await;
    }
    let posted = py.wait("posted", |v| v.get("posted").is_some()).await["posted"]
        .as_str()
        .expect("ts")
        .to_string();
    let msgs = fake.messages();
    assert!(msgs.iter().any(|m| m.how == How::Posted && m.ts == posted && m.text == "#1 queued"));
    assert!(
        msgs.iter()
            .any(|m| m.how == How::Updated && m.ts == posted && m.text == "#1 running")
    );
    assert!(
        msgs.iter()
            .any(|m| m.thread_ts.as_deref() == Some(posted.as_str()) && m.text == "in a thread")
    );
    assert!(msgs.iter().any(|m| m.how == How::File && m.text == "the output"));
    let files = fake.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].completed && files[0].bytes.as_deref() == Some(&b"line 1\nline 2\n"[..]),
        "{files:?}"
    );
    assert_eq!(files[0].title.as_deref(), Some("Output"));

    // Socket Mode: the SDK's client connects through apps.connections.open.
    py.wait("socket_connected", |v| v["event"] == json!("socket_connected")).await;
    fake.wait_connections(1, Duration::from_secs(10)).await.expect("connected");
    let whoami = format!("<@{}> whoami", slack::BOT_USER_ID);
    let d = fake.say(&alice, &fake.channel(), &whoami, None).await.expect("said");
    assert!(d.acked.is_some(), "{d:?}");
    let mention = d.mention.as_ref().expect("an app_mention besides the message");
    assert!(mention.acked.is_some(), "{mention:?}");
    assert_ne!(mention.event_id, d.event_id);
    py.wait("message event", |v| {
        v["envelope"] == json!("events_api") && v["event_type"] == json!("message") && v["text"] == json!(whoami)
    })
    .await;
    py.wait("app_mention event", |v| {
        v["envelope"] == json!("events_api") && v["event_type"] == json!("app_mention") && v["text"] == json!(whoami)
    })
    .await;

    // A slash command: the listener opens a modal with the trigger (once) and acks with a message.
    let d = fake.slash(&alice, &fake.channel(), "/opsbot", "deploy web").await.expect("slash");
    assert_eq!(d.ack_payload, Some(json!({"text": "got it"})), "{d:?}");
    py.wait("slash envelope", |v| {
        v["envelope"] == json!("slash_commands") && v["text"] == json!("deploy web")
    })
    .await;
    py.check("views_open").await;
    py.check("trigger_used_twice").await;
    assert_eq!(fake.views().len(), 1);
    assert_eq!(fake.views()[0].user, alice);
    assert!(
        fake.messages()
            .iter()
            .any(|m| m.how == How::Ack && m.text == "got it" && m.ephemeral_to.as_deref() == Some(alice.as_str()))
    );

    // `disconnect`: the SDK opens a new connection and goes on.
    let opens = |f: &FakeSlack| f.calls().iter().filter(|(m, _)| m == "apps.connections.open").count();
    let before = opens(&fake);
    fake.disconnect("refresh_requested");
    let end = Instant::now() + Duration::from_secs(15);
    while opens(&fake) <= before || fake.connections() != 1 {
        assert!(Instant::now() < end, "no reconnection after disconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = fake.say(&alice, &fake.channel(), "after refresh", None).await.expect("said");
    assert!(d.acked.is_some(), "{d:?}");
    py.wait("event after reconnecting", |v| v["text"] == json!("after refresh")).await;
    assert!(fake.acks().len() >= 4, "{:?}", fake.ack_records());

    // The HTTP Events API: SignatureVerifier accepts the fake's signed requests.
    let port = py.wait("http port", |v| v.get("http_port").is_some()).await["http_port"]
        .as_u64()
        .expect("port");
    fake.set_events_url(Some(format!("http://127.0.0.1:{port}/hooks/slack")));
    assert!(fake.verify_events_url().await.expect("challenge sent"), "url_verification");
    let d = fake.say(&alice, &fake.channel(), "over http", None).await.expect("said");
    assert_eq!(d.http_status, Some(200), "{d:?}");
    py.wait("signed event", |v| {
        v["http"] == json!("/hooks/slack/events") && v["kind"] == json!("message") && v["valid"] == json!(true)
    })
    .await;
    let d = fake.slash(&alice, &fake.channel(), "/opsbot", "status").await.expect("slash");
    assert_eq!(d.http_status, Some(200), "{d:?}");
    py.wait("signed slash command", |v| {
        v["http"] == json!("/hooks/slack/commands")
            && v["valid"] == json!(true)
            && v["content_type"] == json!("application/x-www-form-urlencoded")
    })
    .await;
    for v in &py.seen {
        if v.get("http").is_some() {
            assert_eq!(v["valid"], json!(true), "{v}");
        }
    }

    let mut stdin = py.child.stdin.take().expect("stdin");
    stdin.write_all(b"quit\n").await.expect("quit");
    py.wait("done", |v| v["event"] == json!("done")).await;
    for v in &py.seen {
        if v.get("check").is_some() {
            assert_eq!(v["ok"], json!(true), "{v}");
        }
    }
}

/// A Socket Mode client from the docs: apps.connections.open, then the WebSocket.
async fn socket(fake: &FakeSlack) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (_, v) = api(fake, "apps.connections.open", slack::APP_TOKEN, json!({})).await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let url = v["url"].as_str().expect("url");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connects");
    let hello = next_json(&mut ws).await.expect("hello");
    assert_eq!(hello["type"], json!("hello"));
    assert_eq!(hello["connection_info"]["app_id"], json!(slack::APP_ID));
    // A ticket is good once.
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    ws
}

async fn next_json(ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The next envelope that is not the bot's own message coming back (those are acked and
/// skipped, as an app does).
async fn next_envelope(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> Option<Value> {
    loop {
        let e = next_json(ws).await?;
        let ev = &e["payload"]["event"];
        if e["type"] == json!("events_api") && (ev.get("bot_id").is_some() || ev["subtype"] == json!("message_changed")) {
            ws.send(Message::Text(json!({"envelope_id": e["envelope_id"]}).to_string().into()))
                .await
                .ok()?;
            continue;
        }
        return Some(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_events_come_again_and_a_crash_drops_everything() {
    let mut fake = FakeSlack::start().await.expect("fake starts");
    let bob = fake.add_user("bob");
    fake.set_ack_timeout(Duration::from_millis(300));
    fake.set_ping_interval(Duration::from_millis(100));
    let mut ws = socket(&fake).await;
    // Slack pings its clients.
    let frame = tokio::time::timeout(Duration::from_secs(2), ws.next()).await.expect("a frame");
    assert!(matches!(frame, Some(Ok(Message::Ping(_)))), "{frame:?}");
    fake.set_ping_interval(Duration::from_secs(10));
    let said = {
        let chan = fake.channel();
        let fake_say = fake.say(&bob, &chan, "not acked at first", None);
        let reader = async {
            let first = next_envelope(&mut ws).await.expect("envelope");
            assert_eq!(first["type"], json!("events_api"));
            assert_eq!(first["retry_attempt"], json!(0));
            assert_eq!(first["payload"]["event"]["text"], json!("not acked at first"));
            assert_eq!(first["payload"]["type"], json!("event_callback"));
            assert_eq!(first["payload"]["authorizations"][0]["user_id"], json!(slack::BOT_USER_ID));
            let again = next_envelope(&mut ws).await.expect("redelivery");
            assert_eq!(again["retry_attempt"], json!(1));
            assert_eq!(again["retry_reason"], json!("timeout"));
            assert_eq!(again["payload"]["event_id"], first["payload"]["event_id"]);
            assert_ne!(again["envelope_id"], first["envelope_id"]);
            ws.send(Message::Text(json!({"envelope_id": again["envelope_id"]}).to_string().into()))
                .await
                .expect("ack");
        };
        let (d, ()) = tokio::join!(fake_say, reader);
        d.expect("said")
    };
    assert_eq!(said.attempts, 2, "{said:?}");
    assert!(said.acked.is_some());
    assert_eq!(fake.ack_records().last().map(|a| a.retry_attempt), Some(1));
    // A DM: channel_type im, no app_mention even with a mention.
    let im = fake.im_of(&bob).expect("IM");
    let hi = format!("<@{}> hi", slack::BOT_USER_ID);
    let dm = fake.say(&bob, &im, &hi, None);
    let reader = async {
        let e = next_envelope(&mut ws).await.expect("envelope");
        assert_eq!(e["payload"]["event"]["channel_type"], json!("im"));
        ws.send(Message::Text(json!({"envelope_id": e["envelope_id"]}).to_string().into()))
            .await
            .expect("ack");
    };
    let (d, ()) = tokio::join!(dm, reader);
    assert!(d.expect("dm").mention.is_none());

    // A crash: the socket ends without a close frame; HTTP is refused; then all comes back.
    let (_, v) = api(
        &fake,
        "chat.postMessage",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "text": "kept"}),
    )
    .await;
    assert_eq!(v["ok"], json!(true));
    fake.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                // Pings and envelopes sent before the crash (the echo of "kept").
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the socket ends");
    assert!(
        matches!(end, None | Some(Err(_))),
        "a crash ends the socket without a close frame: {end:?}"
    );
    assert!(
        http()
            .post(format!("{}/auth.test", fake.api_url()))
            .bearer_auth(slack::BOT_TOKEN)
            .send()
            .await
            .is_err()
    );
    assert!(fake.say(&bob, &fake.channel(), "x", None).await.is_err());
    ChatServer::start(&mut fake).await.expect("starts again");
    let (_, v) = api(&fake, "auth.test", slack::BOT_TOKEN, json!({})).await;
    assert_eq!(v["user_id"], json!(slack::BOT_USER_ID));
    assert!(fake.messages().iter().any(|m| m.text == "kept"));
    let _ws = socket(&fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_modals_and_response_urls() {
    let fake = FakeSlack::start().await.expect("fake starts");
    let carol = fake.add_user("carol");
    let mut ws = socket(&fake).await;
    let blocks = json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": "#7 running"}},
        {"type": "actions", "block_id": "acts", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Cancel"}, "action_id": "cancel", "value": "!cancel 7"}]}
    ]);
    let (_, v) = api(
        &fake,
        "chat.postMessage",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "text": "#7 running", "blocks": blocks.clone()}),
    )
    .await;
    let ts = v["ts"].as_str().expect("ts").to_string();
    // Slack sends the bot its own message back (with bot_id) and, after chat.update, a
    // message_changed.
    let echo = next_json(&mut ws).await.expect("the bot's own message");
    assert_eq!(echo["payload"]["event"]["bot_id"], json!(slack::BOT_ID), "{echo}");
    assert_eq!(echo["payload"]["event"]["ts"], json!(ts));
    ws.send(Message::Text(json!({"envelope_id": echo["envelope_id"]}).to_string().into()))
        .await
        .expect("ack");
    let (_, v) = api(
        &fake,
        "chat.update",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "ts": ts, "text": "#7 running", "blocks": blocks}),
    )
    .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let changed = next_json(&mut ws).await.expect("message_changed");
    assert_eq!(changed["payload"]["event"]["subtype"], json!("message_changed"), "{changed}");
    assert_eq!(changed["payload"]["event"]["message"]["ts"], json!(ts));
    ws.send(Message::Text(json!({"envelope_id": changed["envelope_id"]}).to_string().into()))
        .await
        .expect("ack");

    // A press: block_actions with the stored value, or a forged one when the test says so.
    // The forged press first: the response_url below replaces the message (and its buttons).
    for forged in [Some("!shutdown"), None] {
        let click = async {
            match forged {
                None => fake.click(&carol, &fake.channel(), &ts, "cancel").await,
                Some(f) => fake.click_with_value(&carol, &fake.channel(), &ts, "cancel", f).await,
            }
        };
        let reader = async {
            let e = next_envelope(&mut ws).await.expect("envelope");
            assert_eq!(e["type"], json!("interactive"));
            let p = &e["payload"];
            assert_eq!(p["type"], json!("block_actions"));
            assert_eq!(p["user"]["id"], json!(carol));
            assert_eq!(p["container"]["message_ts"], json!(ts));
            assert_eq!(p["actions"][0]["action_id"], json!("cancel"));
            assert_eq!(p["actions"][0]["block_id"], json!("acts"));
            assert_eq!(p["actions"][0]["value"], json!(forged.unwrap_or("!cancel 7")));
            ws.send(Message::Text(json!({"envelope_id": e["envelope_id"]}).to_string().into()))
                .await
                .expect("ack");
            p.clone()
        };
        let (d, p) = tokio::join!(click, reader);
        assert!(d.expect("click").acked.is_some());
        if forged.is_none() {
            // The response_url: five uses, then refused.
            let url = p["response_url"].as_str().expect("response_url").to_string();
            let r = http()
                .post(&url)
                .json(&json!({"text": "#7 cancelled", "replace_original": true}))
                .send()
                .await
                .expect("posted");
            assert_eq!(r.status().as_u16(), 200);
            assert!(
                fake.messages()
                    .iter()
                    .any(|m| m.how == How::ResponseUrl && m.replaces && m.ts == ts)
            );
            assert_eq!(fake.message(&fake.channel(), &ts).map(|m| m.0), Some("#7 cancelled".to_string()));
            for _ in 0..4 {
                let r = http().post(&url).json(&json!({"text": "again"})).send().await.expect("posted");
                assert_eq!(r.status().as_u16(), 200);
            }
            let r = http().post(&url).json(&json!({"text": "sixth"})).send().await.expect("posted");
            assert_eq!(r.status().as_u16(), 404);
            // The trigger opens a modal (once).
            let view = json!({"type": "modal", "title": {"type": "plain_text", "text": "Deploy"},
                "submit": {"type": "plain_text", "text": "Run"}, "private_metadata": "!deploy",
                "blocks": [
                    {"type": "input", "block_id": "b_env", "label": {"type": "plain_text", "text": "Env"},
                     "element": {"type": "static_select", "action_id": "env", "options": [
                        {"text": {"type": "plain_text", "text": "prod"}, "value": "prod"}]}},
                    {"type": "input", "block_id": "b_n", "label": {"type": "plain_text", "text": "N"},
                     "element": {"type": "number_input", "is_decimal_allowed": false, "action_id": "n"}},
                    {"type": "input", "block_id": "b_ok", "optional": true, "label": {"type": "plain_text", "text": "Sure"},
                     "element": {"type": "checkboxes", "action_id": "ok", "options": [
                        {"text": {"type": "plain_text", "text": "yes"}, "value": "true"}]}}]});
            let no_submit = {
                let mut v = view.clone();
                v.as_object_mut().map(|o| o.remove("submit"));
                v
            };
            let (_, v) = api(
                &fake,
                "views.open",
                slack::BOT_TOKEN,
                json!({"trigger_id": p["trigger_id"], "view": no_submit}),
            )
            .await;
            assert_eq!(v["error"], json!("invalid_arguments"), "{v}");
            let (_, v) = api(
                &fake,
                "views.open",
                slack::BOT_TOKEN,
                json!({"trigger_id": p["trigger_id"], "view": view}),
            )
            .await;
            assert_eq!(v["ok"], json!(true), "{v}");
            let vid = v["view"]["id"].as_str().expect("view id").to_string();
            let submit = fake.submit_view(&carol, &vid, &[("env", "prod"), ("n", "3"), ("ok", "true")]);
            let reader = async {
                let e = next_envelope(&mut ws).await.expect("envelope");
                let p = &e["payload"];
                assert_eq!(p["type"], json!("view_submission"));
                assert_eq!(p["view"]["id"], json!(vid));
                assert_eq!(p["view"]["private_metadata"], json!("!deploy"));
                let vals = &p["view"]["state"]["values"];
                assert_eq!(vals["b_env"]["env"]["selected_option"]["value"], json!("prod"));
                assert_eq!(vals["b_n"]["n"]["value"], json!("3"));
                assert_eq!(vals["b_ok"]["ok"]["selected_options"][0]["value"], json!("true"));
                ws.send(Message::Text(
                    json!({"envelope_id": e["envelope_id"], "payload": {"response_action": "errors", "errors": {"b_n": "too many"}}})
                        .to_string()
                        .into(),
                ))
                .await
                .expect("ack");
            };
            let (d, ()) = tokio::join!(submit, reader);
            assert_eq!(
                d.expect("submitted").ack_payload.expect("payload")["response_action"],
                json!("errors")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_events_are_signed_and_retried_with_slacks_headers() {
    let fake = FakeSlack::start().await.expect("fake starts");
    let dave = fake.add_user("dave");
    let seen: Arc<Mutex<Vec<(String, axum::http::HeaderMap, String)>>> = Arc::default();
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/hooks/slack/{*rest}",
        axum::routing::post(
            move |axum::extract::Path(rest): axum::extract::Path<String>, headers: axum::http::HeaderMap, body: String| {
                let seen = seen2.clone();
                async move {
                    let n = {
                        let mut s = seen.lock().expect("lock");
                        s.push((rest, headers, body));
                        s.len()
                    };
                    // The first answer is an error: Slack tries again.
                    if n == 1 {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake.set_events_url(Some(format!("http://127.0.0.1:{port}/hooks/slack/")));
    let d = fake.say(&dave, &fake.channel(), "hi", None).await.expect("said");
    assert_eq!((d.attempts, d.http_status), (2, Some(200)), "{d:?}");
    let s = seen.lock().expect("lock").clone();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].0, "events");
    assert!(s[0].1.get("x-slack-retry-num").is_none());
    assert_eq!(s[1].1.get("x-slack-retry-num").and_then(|v| v.to_str().ok()), Some("1"));
    assert_eq!(s[1].1.get("x-slack-retry-reason").and_then(|v| v.to_str().ok()), Some("http_error"));
    for (_, h, body) in &s {
        let ts = h.get("x-slack-request-timestamp").and_then(|v| v.to_str().ok()).expect("timestamp");
        let sig = h.get("x-slack-signature").and_then(|v| v.to_str().ok()).expect("signature");
        assert_eq!(sig, slack::sign(slack::SIGNING_SECRET, ts, body.as_bytes()));
        let v: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["type"], json!("event_callback"));
        assert_eq!(v["event"]["text"], json!("hi"));
    }
    // Interactions go to /interactive as a form with `payload`; no retry for them.
    let (_, v) = api(&fake, "chat.postMessage", slack::BOT_TOKEN, json!({"channel": fake.channel(), "text": "x",
        "blocks": [{"type": "actions", "elements": [{"type": "button", "action_id": "b", "value": "!x", "text": {"type": "plain_text", "text": "B"}}]}]})).await;
    let ts = v["ts"].as_str().expect("ts");
    let d = fake.click(&dave, &fake.channel(), ts, "b").await.expect("clicked");
    assert_eq!(d.attempts, 1);
    let s = seen.lock().expect("lock").clone();
    let (rest, h, body) = s.iter().rev().find(|r| r.0 == "interactive").expect("an interaction");
    assert_eq!(rest, "interactive");
    assert_eq!(
        h.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(String, String)> = serde_urlencoded::from_str(body).expect("form");
    let payload: Value = serde_json::from_str(&form[0].1).expect("payload JSON");
    assert_eq!(form[0].0, "payload");
    assert_eq!(payload["actions"][0]["value"], json!("!x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_hear_posts_and_updates_as_the_suite_expects() {
    let fake = FakeSlack::start().await.expect("fake starts");
    let (toml, env) = fake.adapter_toml();
    assert!(toml.contains("type = \"slack\"") && toml.contains(&fake.api_url()));
    assert!(env.iter().any(|(_, v)| v == slack::APP_TOKEN));
    let mut erin = fake.user("erin").await.expect("user");
    let mut ws = socket(&fake).await;
    let room = fake.room();
    let say = erin.say(&room, "opsbot: whoami > x");
    let reader = async {
        let mut texts = Vec::new();
        for _ in 0..2 {
            let e = next_envelope(&mut ws).await.expect("envelope");
            texts.push(e["payload"]["event"]["type"].as_str().unwrap_or("").to_string());
            // Escaped as the Slack client sends it, the mention as markup.
            assert_eq!(
                e["payload"]["event"]["text"],
                json!(format!("<@{}> whoami &gt; x", slack::BOT_USER_ID))
            );
            ws.send(Message::Text(json!({"envelope_id": e["envelope_id"]}).to_string().into()))
                .await
                .expect("ack");
        }
        texts
    };
    let (r, texts) = tokio::join!(say, reader);
    r.expect("said");
    assert_eq!(texts, vec!["message", "app_mention"]);
    let (_, v) = api(
        &fake,
        "chat.postMessage",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "text": "a &lt; b &amp; c"}),
    )
    .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(erin.next(Duration::from_secs(5)).await.expect("heard").text, "a < b & c");
    assert_eq!(
        fake.next_message(Duration::from_secs(1)).await.expect("the post").text,
        "a &lt; b &amp; c"
    );
    let (_, v) = api(
        &fake,
        "chat.postMessage",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "text": "#1 queued"}),
    )
    .await;
    let ts = v["ts"].as_str().expect("ts").to_string();
    api(
        &fake,
        "chat.update",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "ts": ts, "text": "#1 running"}),
    )
    .await;
    let h = erin.next(Duration::from_secs(5)).await.expect("heard");
    assert_eq!(
        (h.text.as_str(), h.id.as_deref(), h.replaces.as_deref()),
        ("#1 queued", Some(ts.as_str()), None)
    );
    assert_eq!(h.room, Some(fake.channel()));
    let h = erin.next(Duration::from_secs(5)).await.expect("heard");
    assert_eq!((h.text.as_str(), h.replaces.as_deref()), ("#1 running", Some(ts.as_str())));
    let m = fake.next_message(Duration::from_secs(1)).await.expect("the post");
    assert_eq!((m.how, m.text.as_str()), (How::Posted, "#1 queued"));
    let m = fake.next_message(Duration::from_secs(1)).await.expect("the update");
    assert_eq!((m.how, m.ts.as_str()), (How::Updated, ts.as_str()));
    assert!(fake.next_message(Duration::from_millis(50)).await.is_none());
    // A planned failure, once.
    fake.fail_next("chat.postMessage", "is_archived");
    let (_, v) = api(
        &fake,
        "chat.postMessage",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "text": "a"}),
    )
    .await;
    assert_eq!(v, json!({"ok": false, "error": "is_archived"}));
    let (_, v) = api(
        &fake,
        "chat.postMessage",
        slack::BOT_TOKEN,
        json!({"channel": fake.channel(), "text": "b"}),
    )
    .await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(erin.next(Duration::from_secs(5)).await.expect("heard").text, "b");
    // A DM to the person, by user id (the IM).
    let (_, v) = api(
        &fake,
        "chat.postMessage",
        slack::BOT_TOKEN,
        json!({"channel": erin.account(), "text": "psst"}),
    )
    .await;
    assert!(v["channel"].as_str().is_some_and(|c| c.starts_with('D')), "{v}");
    let h = erin.next(Duration::from_secs(5)).await.expect("heard");
    assert_eq!((h.text.as_str(), h.room.clone()), ("psst", None));
    // Form bodies work too, and a bot token cannot update a person's message.
    let r = http()
        .post(format!("{}/chat.postMessage", fake.api_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("token", slack::BOT_TOKEN), ("channel", &fake.channel()), ("text", "form")]).expect("form"))
        .send()
        .await
        .expect("sent");
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["ok"], json!(true), "{v}");
    assert!(erin.next(Duration::from_millis(200)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_answers_and_where_tokens_may_go() {
    let fake = FakeSlack::start().await.expect("fake starts");
    let mut f = fake.person("frank");
    let mut g = fake.person("gina");
    let (frank, gina) = (f.id.clone(), g.id.clone());
    // A JSON body cannot carry the token.
    let r = http()
        .post(format!("{}/auth.test", fake.api_url()))
        .json(&json!({"token": slack::BOT_TOKEN}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.json::<Value>().await.expect("JSON")["error"], json!("not_authed"));
    let r = http()
        .post(format!("{}/auth.test", fake.api_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", slack::BOT_TOKEN))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.json::<Value>().await.expect("JSON")["ok"], json!(true));

    // A slash command acked with buttons: an ephemeral message only frank sees and may press.
    let mut ws = socket(&fake).await;
    let chan = fake.channel();
    let slash = fake.slash(&frank, &chan, "/opsbot", "help");
    let reader = async {
        let e = next_envelope(&mut ws).await.expect("envelope");
        assert_eq!(e["type"], json!("slash_commands"));
        assert_eq!(e["accepts_response_payload"], json!(true));
        assert_eq!(e["payload"]["user_id"], json!(frank));
        let answer = json!({"text": "help", "blocks": [{"type": "actions", "elements": [
            {"type": "button", "action_id": "h", "value": "!help", "text": {"type": "plain_text", "text": "Help"}}]}]});
        ws.send(Message::Text(
            json!({"envelope_id": e["envelope_id"], "payload": answer}).to_string().into(),
        ))
        .await
        .expect("ack");
    };
    let (d, ()) = tokio::join!(slash, reader);
    assert!(d.expect("slash").acked.is_some());
    let m = fake.messages().into_iter().find(|m| m.how == How::Ack).expect("the answer");
    assert_eq!(m.ephemeral_to.as_deref(), Some(frank.as_str()));
    assert!(fake.click(&gina, &chan, &m.ts, "h").await.is_err(), "gina does not see it");
    let (_, v) = api(
        &fake,
        "chat.update",
        slack::BOT_TOKEN,
        json!({"channel": chan, "ts": m.ts, "text": "x"}),
    )
    .await;
    assert_eq!(v["error"], json!("message_not_found"));
    let click = fake.click(&frank, &chan, &m.ts, "h");
    let reader = async {
        let e = next_envelope(&mut ws).await.expect("envelope");
        assert_eq!(e["payload"]["container"]["is_ephemeral"], json!(true));
        assert_eq!(e["payload"]["actions"][0]["value"], json!("!help"));
        ws.send(Message::Text(json!({"envelope_id": e["envelope_id"]}).to_string().into()))
            .await
            .expect("ack");
        e["payload"]["response_url"].as_str().expect("response_url").to_string()
    };
    let (d, response_url) = tokio::join!(click, reader);
    assert!(d.expect("click").acked.is_some());
    // `delete_original` removes the message the button was on.
    let r = http()
        .post(&response_url)
        .json(&json!({"delete_original": true}))
        .send()
        .await
        .expect("posted");
    assert_eq!(r.status().as_u16(), 200);
    assert!(fake.message(&chan, &m.ts).is_none());
    assert!(fake.messages().iter().any(|x| x.how == How::Deleted && x.ts == m.ts));
    // Frank hears it; gina hears nothing.
    let h = opsbot_testkit::ChatUser::next(&mut f, Duration::from_secs(2))
        .await
        .expect("frank hears");
    assert_eq!((h.text.as_str(), h.room.clone()), ("help", Some(chan.clone())));
    assert!(opsbot_testkit::ChatUser::next(&mut g, Duration::from_millis(200)).await.is_none());
}
