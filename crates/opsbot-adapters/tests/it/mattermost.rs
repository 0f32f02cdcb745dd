//! Mattermost adapter tests against the local fake (`opsbot_testkit::mattermost`), and against a
//! tiny scripted server for what the fake will not send: malformed WebSocket messages.

use crate::running::{Running, WAIT};
use opsbot_adapters::mattermost::MattermostAdapter;
use opsbot_core::config::MattermostConfig;
use opsbot_core::{Adapter, Block, Button, Place, Reply, SendError, Tone, WebhookRequest, WebhookResponse};
use opsbot_testkit::mattermost::{BOT_USER_ID, FakeMattermost, How, TOKEN};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const COMMAND_TOKEN: &str = "slashtokenxyz";

fn config(url: &str, callback: Option<&str>) -> MattermostConfig {
    MattermostConfig {
        url: url.to_string(),
        token: TOKEN.to_string(),
        command_token: Some(COMMAND_TOKEN.to_string()),
        callback_url: callback.map(str::to_string),
        channels: vec![],
        threads: false,
        tls_ca: None,
    }
}

/// The fake, a connected adapter and a person `ana` in channel `ops`.
async fn setup(callback: Option<&str>) -> (FakeMattermost, Running<MattermostAdapter>, String) {
    let fake = FakeMattermost::launch().await.expect("the fake starts");
    let adapter = Arc::new(MattermostAdapter::new("mm", config(&fake.url(), callback)).expect("adapter"));
    let run = Running::spawn_connected(adapter).await;
    let ana = fake.add_user("ana");
    (fake, run, ana)
}

/// Asserts that nothing more arrives in the inbox for a moment.
async fn quiet(run: &mut Running<MattermostAdapter>) {
    if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(700), run.inbox.recv()).await {
        panic!("unexpected envelope: {e:?}");
    }
}

#[tokio::test]
async fn posts_become_envelopes() {
    let (fake, mut run, ana) = setup(None).await;
    let ops = fake.channel();

    fake.post(&ana, &ops, "@opsbot whoami", None).await.expect("post");
    let e = run.next().await;
    assert_eq!((e.text.as_str(), e.mentioned, e.direct), ("whoami", true, false));
    assert_eq!(e.user.platform, "mm");
    assert_eq!(e.user.id, ana);
    assert_eq!(e.place.channel, ops);
    assert_eq!(e.place.thread, None);
    assert_eq!(e.display_name.as_deref(), Some("ana"));

    fake.post(&ana, &ops, "!status web", None).await.expect("post");
    let e = run.next().await;
    assert_eq!((e.text.as_str(), e.mentioned), ("!status web", false));

    let dm = fake.dm_of(&ana);
    fake.post(&ana, &dm, "deploy web", None).await.expect("post");
    let e = run.next().await;
    assert_eq!(
        (e.text.as_str(), e.direct, e.place.channel.as_str()),
        ("deploy web", true, dm.as_str())
    );

    let root = fake.post(&ana, &ops, "something broke", None).await.expect("post");
    let e = run.next().await;
    assert_eq!(e.text, "something broke");
    fake.post(&ana, &ops, "@opsbot: status", Some(&root)).await.expect("post");
    let e = run.next().await;
    assert_eq!((e.text.as_str(), e.place.thread.as_deref()), ("status", Some(root.as_str())));

    // The bot's own posts come back as events: never envelopes.
    let posted = run
        .adapter
        .post(&Place::new("mm", &ops), &Reply::text(Tone::Info, "@opsbot whoami"))
        .await
        .expect("post");
    assert!(posted.id.is_some());
    quiet(&mut run).await;
    run.stop().await.expect("clean stop");
}

#[tokio::test]
async fn threads_setting_answers_in_a_thread() {
    let fake = FakeMattermost::launch().await.expect("the fake starts");
    let mut cfg = config(&fake.url(), None);
    cfg.threads = true;
    let mut run = Running::spawn_connected(Arc::new(MattermostAdapter::new("mm", cfg).expect("adapter"))).await;
    let ana = fake.add_user("ana");
    let id = fake.post(&ana, &fake.channel(), "!whoami", None).await.expect("post");
    assert_eq!(run.next().await.place.thread.as_deref(), Some(id.as_str()));
    let dm = fake.dm_of(&ana);
    fake.post(&ana, &dm, "whoami", None).await.expect("post");
    assert_eq!(run.next().await.place.thread, None, "direct messages are not threaded");
}

#[tokio::test]
async fn a_seq_gap_is_caught_up_over_rest_without_duplicates() {
    let (fake, mut run, ana) = setup(None).await;
    let ops = fake.channel();
    fake.post(&ana, &ops, "!one", None).await.expect("post");
    assert_eq!(run.next().await.text, "!one");
    fake.skip_seq();
    fake.post(&ana, &ops, "!two", None).await.expect("post");
    assert_eq!(run.next().await.text, "!two");
    fake.post(&ana, &ops, "!three", None).await.expect("post");
    assert_eq!(run.next().await.text, "!three");
    quiet(&mut run).await;
    assert!(
        fake.requests().iter().any(|r| r.contains(&format!("/channels/{ops}/posts?since="))),
        "the gap was filled over REST: {:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn a_dropped_connection_resumes_and_replays() {
    let (fake, mut run, ana) = setup(None).await;
    let ops = fake.channel();
    fake.post(&ana, &ops, "!before", None).await.expect("post");
    assert_eq!(run.next().await.text, "!before");
    fake.drop_connections();
    let err = tokio::time::timeout(WAIT, &mut run.task)
        .await
        .expect("run ends")
        .expect("no panic");
    assert!(err.is_err(), "a lost connection is an error: {err:?}");
    fake.post(&ana, &ops, "!meanwhile", None).await.expect("post");
    let mut again = Running::spawn_connected(run.adapter.clone()).await;
    assert_eq!(again.next().await.text, "!meanwhile");
    quiet(&mut again).await;
    assert!(fake.requests().iter().any(|r| r.contains("connection_id=")), "asked to resume");
}

#[tokio::test]
async fn a_server_crash_ends_the_run_and_it_reconnects_after_start() {
    let (fake, mut run, ana) = setup(None).await;
    let ops = fake.channel();
    fake.post(&ana, &ops, "!before", None).await.expect("post");
    assert_eq!(run.next().await.text, "!before");
    fake.stop().await;
    let err = tokio::time::timeout(WAIT, &mut run.task)
        .await
        .expect("run ends")
        .expect("no panic");
    assert!(err.is_err(), "a crash is an error: {err:?}");
    // Sending while the server is down: kept for later.
    let r = run.adapter.post(&Place::new("mm", &ops), &Reply::text(Tone::Info, "hi")).await;
    assert!(matches!(r, Err(SendError::Unavailable(_))), "{r:?}");
    fake.start().await.expect("restart");
    // Said after the restart, before the bot is back: the new session's catch-up finds it.
    fake.post(&ana, &ops, "!meanwhile", None).await.expect("post");
    let mut again = Running::spawn_connected(run.adapter.clone()).await;
    assert_eq!(again.next().await.text, "!meanwhile");
    fake.post(&ana, &ops, "!after", None).await.expect("post");
    assert_eq!(again.next().await.text, "!after");
    quiet(&mut again).await;
    again.stop().await.expect("clean stop");
}

#[tokio::test]
async fn edit_patches_the_card() {
    let (fake, run, _ana) = setup(None).await;
    let place = Place::new("mm", fake.channel());
    let card = Reply::new(Tone::Progress)
        .heading("#7 deploy")
        .status(Tone::Progress, "queued")
        .card(7);
    let id = run.adapter.post(&place, &card).await.expect("post").id.expect("an id");
    let done = Reply::new(Tone::Success)
        .heading("#7 deploy")
        .status(Tone::Success, "succeeded")
        .card(7);
    run.adapter.edit(&place, &id, &done).await.expect("edit");
    let posts = fake.bot_posts();
    let last = posts.last().expect("a post");
    assert_eq!((last.how, last.id.as_str()), (How::Patched, id.as_str()));
    assert!(last.message.contains("succeeded"), "{}", last.message);
    assert_eq!(posts.iter().filter(|p| p.how == How::Created).count(), 1);
    // A post that is gone is refused for good, not retried.
    let r = run.adapter.edit(&place, "nosuchpostxxxxxxxxxxxxxxxx", &done).await;
    assert!(matches!(r, Err(SendError::Rejected(_))), "{r:?}");
}

#[tokio::test]
async fn long_replies_are_split_in_order() {
    let (fake, run, _ana) = setup(None).await;
    let text: String = (0..3000).map(|i| format!("step {i:04} of the long job\n")).collect();
    let place = Place::new("mm", fake.channel());
    run.adapter
        .post(&place, &Reply::new(Tone::Info).code(text.clone()))
        .await
        .expect("post");
    let posts = fake.bot_posts();
    assert!(posts.len() >= 5, "{} posts", posts.len());
    let mut all = String::new();
    for p in &posts {
        assert!(p.message.chars().count() <= 16_383);
        assert!(
            p.message.starts_with("```") && p.message.ends_with("```"),
            "each part is a whole code block"
        );
        all.push_str(p.message.trim_start_matches("```\n").trim_end_matches("\n```"));
        all.push('\n');
    }
    assert_eq!(all, text);
}

#[tokio::test]
async fn replies_in_threads_and_group_mentions_defused() {
    let (fake, run, ana) = setup(None).await;
    let root = fake.post(&ana, &fake.channel(), "root", None).await.expect("post");
    let place = Place {
        platform: "mm".into(),
        channel: fake.channel(),
        thread: Some(root.clone()),
    };
    run.adapter
        .post(&place, &Reply::text(Tone::Info, "hello @channel and @all"))
        .await
        .expect("post");
    let p = fake.bot_posts().pop().expect("a post");
    assert_eq!(p.root_id, root);
    assert!(!p.message.contains("@channel") && !p.message.contains("@all"), "{}", p.message);
    assert_eq!(p.props["disable_group_highlight"], json!(true));
}

fn buttons() -> Reply {
    Reply::text(Tone::Warning, "Deploy web to prod?").buttons(vec![
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
    ])
}

#[tokio::test]
async fn buttons_are_signed_and_clicks_become_envelopes() {
    let fake = FakeMattermost::launch().await.expect("the fake starts");
    // The callback URL must be known before the adapter is made, and served after.
    let listener_probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener_probe.local_addr().expect("addr").port();
    drop(listener_probe);
    let callback = format!("http://127.0.0.1:{port}");
    let adapter = Arc::new(MattermostAdapter::new("mm", config(&fake.url(), Some(&callback))).expect("adapter"));
    assert!(adapter.capabilities().buttons);
    // Serve the hooks on that port.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the callback port");
    crate::running::serve_hooks(adapter.clone(), "mm", listener);
    let mut run = Running::spawn_connected(adapter.clone()).await;
    let ana = fake.add_user("ana");
    let ops = fake.channel();
    let id = adapter
        .post(&Place::new("mm", &ops), &buttons())
        .await
        .expect("post")
        .id
        .expect("id");
    let stored = fake.bot_posts().pop().expect("a post");
    let actions = stored.props["attachments"][0]["actions"].as_array().cloned().unwrap_or_default();
    assert_eq!(actions.len(), 2);
    assert_eq!(actions[0]["integration"]["url"], json!(format!("{callback}/hooks/mm/actions")));
    let ctx = actions[0]["integration"]["context"].clone();
    assert_eq!(ctx["command"], "approve 42");
    assert!(ctx["sig"].as_str().is_some_and(|s| s.len() == 64));
    let action_id = actions[0]["id"].as_str().expect("action id").to_string();

    let (status, body) = fake.click(&ana, &id, &action_id).await.expect("click");
    assert_eq!(status, 200, "{body}");
    let e = run.next().await;
    assert_eq!(e.text, "approve 42");
    assert_eq!(e.button.as_deref(), Some(action_id.as_str()));
    assert_eq!(e.user.id, ana);
    assert_eq!(e.place.channel, ops);

    // An altered command, a context copied to another channel, no signature: refused.
    let mut altered = ctx.clone();
    altered["command"] = json!("deploy web --env prod");
    let (status, _) = fake.click_with_context(&ana, &id, &action_id, altered).await.expect("click");
    assert_eq!(status, 403);
    let mut moved = ctx.clone();
    moved["channel"] = json!(fake.other_channel());
    let (status, _) = fake.click_with_context(&ana, &id, &action_id, moved).await.expect("click");
    assert_eq!(status, 403);
    let (status, _) = fake
        .click_with_context(&ana, &id, &action_id, json!({"command": "approve 42", "action": action_id}))
        .await
        .expect("click");
    assert_eq!(status, 403);
    quiet(&mut run).await;

    // Without a run, the adapter cannot take clicks.
    run.stop().await.expect("clean stop");
    let (status, _) = fake.click(&ana, &id, &action_id).await.expect("click");
    assert_eq!(status, 503);
}

#[tokio::test]
async fn without_a_callback_buttons_are_text() {
    let (fake, run, _ana) = setup(None).await;
    assert!(!run.adapter.capabilities().buttons);
    run.adapter.post(&Place::new("mm", fake.channel()), &buttons()).await.expect("post");
    let p = fake.bot_posts().pop().expect("a post");
    assert!(p.props.get("attachments").is_none());
    assert!(p.message.contains("`approve 42`"), "{}", p.message);
}

#[tokio::test]
async fn slash_commands_need_the_token() {
    let (fake, mut run, ana) = setup(None).await;
    let hooks = crate::running::hooks_server(run.adapter.clone(), "mm").await;
    let ops = fake.channel();
    fake.set_command(&format!("{hooks}/hooks/mm/command"), COMMAND_TOKEN);
    let (status, body) = fake.slash(&ana, &ops, "/opsbot", "whoami").await.expect("slash");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["response_type"], "ephemeral");
    assert!(v["text"].as_str().is_some_and(|t| t.contains("whoami")));
    let e = run.next().await;
    assert_eq!(
        (e.text.as_str(), e.user.id.as_str(), e.place.channel.as_str()),
        ("whoami", ana.as_str(), ops.as_str())
    );
    assert!(e.mentioned);

    fake.set_command(&format!("{hooks}/hooks/mm/command"), "wrongtoken");
    let (status, body) = fake.slash(&ana, &ops, "/opsbot", "whoami").await.expect("slash");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("command_token"));
    // No token at all.
    let resp = run
        .adapter
        .webhook(WebhookRequest {
            method: "POST".into(),
            path: "/command".into(),
            query: None,
            headers: vec![],
            body: format!("user_id={ana}&channel_id={ops}&text=whoami").into_bytes(),
        })
        .await;
    assert_eq!(resp.status, 401);
    quiet(&mut run).await;
}

#[tokio::test]
async fn slash_answers_go_through_response_url_where_the_bot_is_not_a_member() {
    let (fake, mut run, ana) = setup(None).await;
    let hooks = crate::running::hooks_server(run.adapter.clone(), "mm").await;
    let other = fake.other_channel();
    fake.set_command(&format!("{hooks}/hooks/mm/command"), COMMAND_TOKEN);
    let (status, _) = fake.slash(&ana, &other, "/opsbot", "whoami").await.expect("slash");
    assert_eq!(status, 200);
    let e = run.next().await;
    let posted = run
        .adapter
        .post(&e.place, &Reply::text(Tone::Info, "You are ana"))
        .await
        .expect("answered through response_url");
    assert_eq!(posted.id, None);
    let p = fake.bot_posts().pop().expect("a post");
    assert_eq!((p.how, p.channel_id.as_str()), (How::ResponseUrl, other.as_str()));
    assert!(p.message.contains("You are ana"));
    // The answer, posted as the person by the integration, is not taken as a command.
    quiet(&mut run).await;
    // Without a response_url, a channel the bot is not in refuses for good.
    let r = run
        .adapter
        .post(&Place::new("mm", "nosuchchannelxxxxxxxxxxxxx"), &Reply::text(Tone::Info, "x"))
        .await;
    assert!(matches!(r, Err(SendError::Rejected(_))), "{r:?}");
}

#[tokio::test]
async fn rate_limits_are_reported() {
    let (fake, run, _ana) = setup(None).await;
    fake.rate_limit("/api/v4/posts", 1, 3);
    let place = Place::new("mm", fake.channel());
    let r = run.adapter.post(&place, &Reply::text(Tone::Info, "hi")).await;
    assert_eq!(r, Err(SendError::RateLimited(Duration::from_secs(3))));
    // The retry goes through, once.
    run.adapter.post(&place, &Reply::text(Tone::Info, "hi")).await.expect("post");
    assert_eq!(
        fake.bot_posts()
            .iter()
            .filter(|p| p.message == "ℹ️ hi" || p.message.contains("hi"))
            .count(),
        1
    );
}

#[tokio::test]
async fn data_images_are_uploaded() {
    let (fake, run, _ana) = setup(None).await;
    let mut reply = Reply::text(Tone::Info, "graph");
    reply.blocks.push(Block::Image {
        url: "data:image/png;base64,iVBORw0KGgo=".into(),
        alt: "cpu".into(),
    });
    reply.blocks.push(Block::Image {
        url: "https://example.com/a.png".into(),
        alt: "remote".into(),
    });
    run.adapter.post(&Place::new("mm", fake.channel()), &reply).await.expect("post");
    let files = fake.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].mime_type, "image/png");
    assert_eq!(files[0].data, b"\x89PNG\r\n\x1a\n");
    let p = fake.bot_posts().pop().expect("a post");
    assert_eq!(p.file_ids, vec![files[0].id.clone()]);
    assert!(p.message.contains("![remote](https://example.com/a.png)"), "{}", p.message);
}

#[tokio::test]
async fn a_bad_token_fails_the_run_with_a_clear_error() {
    let fake = FakeMattermost::launch().await.expect("the fake starts");
    let mut cfg = config(&fake.url(), None);
    cfg.token = "not-the-token".into();
    let adapter = Arc::new(MattermostAdapter::new("mm", cfg).expect("adapter"));
    let run = Running::spawn(adapter);
    let r = tokio::time::timeout(WAIT, run.task).await.expect("ends").expect("no panic");
    let err = r.expect_err("refused");
    assert!(err.contains("token") && !err.contains("not-the-token"), "{err}");
}

/// A scripted Mattermost: `/api/v4/users/me` and a WebSocket that sends `frames` after hello.
async fn scripted(frames: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let frames = frames.clone();
            tokio::spawn(async move {
                let mut peek = [0u8; 512];
                let n = stream.peek(&mut peek).await.unwrap_or(0);
                if String::from_utf8_lossy(&peek[..n]).contains("/api/v4/websocket") {
                    use futures_util::{SinkExt, StreamExt};
                    use tokio_tungstenite::tungstenite::Message;
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    let hello = json!({"event": "hello", "data": {"connection_id": "c1"}, "seq": 0});
                    let _ = ws.send(Message::Text(hello.to_string().into())).await;
                    for f in frames {
                        let _ = ws.send(Message::Text(f.into())).await;
                    }
                    while let Some(Ok(_)) = ws.next().await {}
                } else {
                    let _ = crate::running::read_request(&mut stream).await;
                    let body = json!({"id": "botid", "username": "opsbot"}).to_string();
                    let resp = WebhookResponse {
                        status: 200,
                        content_type: "application/json",
                        body: body.into_bytes(),
                    };
                    crate::running::write_response(&mut stream, &resp).await;
                }
            });
        }
    });
    url
}

fn posted(seq: i64, post: Value) -> String {
    json!({"event": "posted", "seq": seq, "data": {"post": post.to_string(), "channel_type": "O", "sender_name": "@ana"}}).to_string()
}

#[tokio::test]
async fn malformed_websocket_messages_are_skipped() {
    let good =
        |id: &str, text: &str| json!({"id": id, "channel_id": "chan", "user_id": "anaid", "message": text, "type": "", "create_at": 1});
    let frames = vec![
        "this is not JSON".to_string(),
        json!({"event": "posted", "seq": 1, "data": {"post": "{not json"}}).to_string(),
        json!({"event": "posted", "seq": 2, "data": {}}).to_string(),
        json!({"event": "posted", "seq": 3, "data": {"post": 42}}).to_string(),
        posted(4, json!({"id": "p1", "message": "@opsbot no channel"})),
        posted(5, good("p2", &format!("@opsbot {}", "x".repeat(1024 * 1024)))),
        json!({"seq": 6}).to_string(),
        posted(
            7,
            json!({"id": "p3", "channel_id": "chan", "user_id": "anaid", "message": "joined", "type": "system_join_channel"}),
        ),
        posted(8, good("p4", "@opsbot whoami")),
        posted(9, good("p4", "@opsbot whoami")),
        posted(10, good("p5", "!status")),
    ];
    let url = scripted(frames).await;
    let mut run = Running::spawn_connected(Arc::new(MattermostAdapter::new("mm", config(&url, None)).expect("adapter"))).await;
    let e = run.next().await;
    assert_eq!((e.text.as_str(), e.user.id.as_str(), e.mentioned), ("whoami", "anaid", true));
    assert_eq!(run.next().await.text, "!status", "the duplicate p4 was skipped");
    assert!(!run.task.is_finished(), "the connection is kept");
    run.stop().await.expect("clean stop");
}

#[tokio::test]
async fn own_id_is_the_fakes_bot() {
    // The fake and the adapter agree on who the bot is: its posts are attributed to it.
    let (fake, run, _ana) = setup(None).await;
    let id = run
        .adapter
        .post(&Place::new("mm", fake.channel()), &Reply::text(Tone::Info, "hi"))
        .await
        .expect("post")
        .id
        .expect("id");
    let stored = fake.stored_post(&id).expect("stored");
    assert_eq!(stored["user_id"], BOT_USER_ID);
}

// ---- Hostile review (each test failed before its fix) ----

/// A slash command request as Mattermost would send it, straight to the adapter.
fn slash_request(user: &str, channel: &str, channel_name: &str, text: &str) -> WebhookRequest {
    let form = serde_urlencoded::to_string([
        ("channel_id", channel),
        ("channel_name", channel_name),
        ("command", "/opsbot"),
        ("text", text),
        ("token", COMMAND_TOKEN),
        ("user_id", user),
        ("user_name", "someone"),
    ])
    .expect("form");
    WebhookRequest {
        method: "POST".into(),
        path: "/command".into(),
        query: None,
        headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
        body: form.into_bytes(),
    }
}

/// Secrets are taken and link codes given only in direct conversations. A slash command typed
/// in a direct channel between two *people* (the bot is not in it; its answers go to both
/// through the response_url) is not a direct conversation with the bot.
#[tokio::test]
async fn a_slash_command_in_a_dm_between_two_people_is_not_direct() {
    let (fake, mut run, ana) = setup(None).await;
    let bob = fake.add_user("bob");
    let (x, y) = if ana <= bob { (&ana, &bob) } else { (&bob, &ana) };
    let people_dm = opsbot_testkit::mattermost::new_id();
    let r = run
        .adapter
        .webhook(slash_request(&ana, &people_dm, &format!("{x}__{y}"), "link"))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let e = run.next().await;
    assert!(!e.direct, "a DM between ana and bob is not private with the bot: {e:?}");

    // The DM between ana and the bot is.
    let (x, y) = if ana.as_str() <= BOT_USER_ID {
        (ana.as_str(), BOT_USER_ID)
    } else {
        (BOT_USER_ID, ana.as_str())
    };
    let bot_dm = opsbot_testkit::mattermost::new_id();
    let r = run
        .adapter
        .webhook(slash_request(&ana, &bot_dm, &format!("{x}__{y}"), "link"))
        .await;
    assert_eq!(r.status, 200);
    assert!(run.next().await.direct);
    run.stop().await.expect("clean stop");
}

/// `channels` lists the channels opsbot answers in: a slash command elsewhere is refused (to
/// the person only), not run there; a direct message with the bot is always answered.
#[tokio::test]
async fn slash_commands_follow_the_channels_setting() {
    let fake = FakeMattermost::launch().await.expect("the fake starts");
    let mut cfg = config(&fake.url(), None);
    cfg.channels = vec![fake.channel()];
    let mut run = Running::spawn_connected(Arc::new(MattermostAdapter::new("mm", cfg).expect("adapter"))).await;
    let ana = fake.add_user("ana");
    let r = run
        .adapter
        .webhook(slash_request(&ana, &fake.other_channel(), "other", "deploy web"))
        .await;
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.status, 200, "{body}");
    assert!(body.contains("ephemeral") && body.contains("not"), "{body}");
    quiet(&mut run).await;
    let r = run.adapter.webhook(slash_request(&ana, &fake.channel(), "ops", "whoami")).await;
    assert_eq!(r.status, 200);
    assert_eq!(run.next().await.text, "whoami");
    run.stop().await.expect("clean stop");
}

/// Mattermost also takes `@here-now`, `@channel.`, `@all:` and `@channel_` as group mentions
/// (it splits words on `.`, `-`, `:` and trims those and `_` at the end).
#[tokio::test]
async fn group_mentions_with_punctuation_are_defused() {
    let (fake, run, _ana) = setup(None).await;
    let place = Place::new("mm", fake.channel());
    let hostile = "@here-now @channel. @all: @channel_ @ALL- x.@here";
    let reply = Reply::text(Tone::Info, hostile)
        .heading(hostile)
        .fields(vec![("app".into(), hostile.into())]);
    run.adapter.post(&place, &reply).await.expect("post");
    let p = fake.bot_posts().pop().expect("a post");
    let lower = p.message.to_lowercase();
    for g in ["@here", "@channel", "@all"] {
        assert!(!lower.contains(g), "{g} in {}", p.message);
    }
}

/// Text of a reply is plain text with `code spans`: values a person chose (a job's
/// parameters, an unknown word echoed back) must not become images that every reader's client
/// fetches, links, or formatting — also when a value breaks out of a code span with a backtick.
#[tokio::test]
async fn values_in_replies_are_not_markdown() {
    let (fake, run, _ana) = setup(None).await;
    let place = Place::new("mm", fake.channel());
    let value = "![pixel](https://evil.example/p.png) [login](https://evil.example/) **ok** <https://evil.example/>";
    let breakout = "x`![pixel](https://evil.example/q.png)`";
    let reply = Reply::text(Tone::Warning, format!("I don't know `{breakout}`. Did you mean `deploy`?"))
        .para(format!("Running deploy app={value}"))
        .heading(value)
        .status(Tone::Success, value)
        .fields(vec![("app".into(), value.into())])
        .table(vec!["app".into()], vec![vec![value.into()]]);
    run.adapter.post(&place, &reply).await.expect("post");
    let p = fake.bot_posts().pop().expect("a post");
    // Every `[`, `*` and `<` of the values is escaped (a backslash shows the character itself).
    for bad in ["[pixel](", "[login](", "*ok*", "<https://"] {
        let unescaped = p.message.match_indices(bad).any(|(i, _)| !p.message[..i].ends_with('\\'));
        assert!(!unescaped, "{bad} in {}", p.message);
    }
    // Code spans stay code.
    assert!(p.message.contains("`deploy`"), "{}", p.message);
}

/// A button's command stays on the server (Mattermost strips `integration` for clients); the
/// attachment's `fallback`, which clients and notifications show, must not repeat it (a
/// "did you mean" button carries what the person typed, values and all).
#[tokio::test]
async fn button_commands_are_not_in_the_fallback() {
    let (fake, run, _ana) = setup(Some("https://ops.example.com")).await;
    let reply = Reply::text(Tone::Warning, "Did you mean `deploy`?").buttons(vec![Button {
        label: "deploy db".into(),
        command: "deploy db password=hunter2secret".into(),
        tone: Tone::Info,
    }]);
    run.adapter.post(&Place::new("mm", fake.channel()), &reply).await.expect("post");
    let p = fake.bot_posts().pop().expect("a post");
    let fallback = p.props["attachments"][0]["fallback"].as_str().unwrap_or_default().to_string();
    assert!(!fallback.contains("hunter2secret"), "{fallback}");
    assert!(!p.message.contains("hunter2secret"), "{}", p.message);
}

/// The post whose `seq` reveals a gap is read again over REST with the others; when that read
/// does not bring it back (more channels than a catch-up reads, a REST error), it must still
/// be handled, not lost.
#[tokio::test]
async fn the_post_that_reveals_a_gap_is_not_lost() {
    let good =
        |id: &str, text: &str| json!({"id": id, "channel_id": "chan", "user_id": "anaid", "message": text, "type": "", "create_at": 1});
    let frames = vec![posted(1, good("p1", "@opsbot one")), posted(5, good("p5", "@opsbot five"))];
    let url = scripted(frames).await;
    let mut run = Running::spawn_connected(Arc::new(MattermostAdapter::new("mm", config(&url, None)).expect("adapter"))).await;
    assert_eq!(run.next().await.text, "one");
    assert_eq!(run.next().await.text, "five");
    run.stop().await.expect("clean stop");
}

/// A `seq` at the end of the number range (a broken or hostile server) does not panic the
/// adapter.
#[tokio::test]
async fn a_huge_seq_does_not_panic() {
    let good =
        |id: &str, text: &str| json!({"id": id, "channel_id": "chan", "user_id": "anaid", "message": text, "type": "", "create_at": 1});
    let frames = vec![
        json!({"event": "typing", "seq": i64::MAX, "data": {}}).to_string(),
        posted(2, good("p2", "@opsbot still here")),
    ];
    let url = scripted(frames).await;
    let mut run = Running::spawn_connected(Arc::new(MattermostAdapter::new("mm", config(&url, None)).expect("adapter"))).await;
    assert_eq!(run.next().await.text, "still here");
    assert!(!run.task.is_finished());
    run.stop().await.expect("clean stop");
}

/// The post ids already handled are a bounded set. A catch-up (after a `seq` gap or a new
/// session) reads a channel for posts *changed* since the newest one seen there: an old command
/// edited since, whose id the set has forgotten, came back as a new command and ran again.
/// Posts older than what the WebSocket already delivered are not taken from a catch-up.
#[tokio::test]
async fn a_catch_up_does_not_run_an_old_edited_command_again() {
    let (fake, mut run, ana) = setup(None).await;
    let ops = fake.channel();
    let old = fake.post(&ana, &ops, "!deploy web", None).await.expect("post");
    assert_eq!(run.next().await.text, "!deploy web");
    // Time passes, and much is said elsewhere: the id of the old post is forgotten.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let noise = fake.add_channel("noise", false, true);
    for _ in 0..4200 {
        fake.post(&ana, &noise, "chatter", None).await.expect("post");
        assert_eq!(run.next().await.text, "chatter");
    }
    // Ana edits her old command (edits are never commands), then events are missed.
    let token = fake.user_token(&ana).expect("token");
    let r = reqwest::Client::new()
        .put(format!("{}/api/v4/posts/{old}/patch", fake.url()))
        .bearer_auth(token)
        .json(&json!({"message": "!deploy prod"}))
        .send()
        .await
        .expect("patch");
    assert!(r.status().is_success(), "{}", r.status());
    fake.skip_seq();
    fake.post(&ana, &ops, "!after", None).await.expect("post");
    assert_eq!(run.next().await.text, "!after");
    quiet(&mut run).await;
    run.stop().await.expect("clean stop");
}
