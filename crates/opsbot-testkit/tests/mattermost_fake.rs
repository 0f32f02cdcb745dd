//! The Mattermost fake against its published behaviour: REST v4 (auth, posts, patch, DMs,
//! files, limits, rate limiting), the WebSocket (hello, posted, seq, resume, gaps, crash),
//! slash commands, interactive buttons, the conformance users — and an independent client
//! (`mattermostdriver` 7.3.2 from the chat venv).

use axum::Router;
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use opsbot_testkit::ChatServer;
use opsbot_testkit::mattermost::{BOT_USER_ID, FakeMattermost, How, MAX_MESSAGE_RUNES, TOKEN};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn http() -> reqwest::Client {
    opsbot_testkit::matrix::http_client()
}

async fn call(fake: &FakeMattermost, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, format!("{}{path}", fake.url())).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn ws_connect(fake: &FakeMattermost, query: &str, auth: bool) -> Ws {
    let url = format!("ws://127.0.0.1:{}/api/v4/websocket{query}", fake.port());
    let mut req = url.into_client_request().expect("request");
    if auth {
        req.headers_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().expect("header"));
    }
    tokio_tungstenite::connect_async(req).await.expect("websocket").0
}

async fn ws_next(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).expect("JSON")),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn ws_quiet(ws: &mut Ws) -> bool {
    !matches!(
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await,
        Ok(Some(Ok(Message::Text(_))))
    )
}

#[tokio::test]
async fn rest_auth_posts_patch_dm_files_limits() {
    let fake = FakeMattermost::launch().await.expect("fake");
    let alice = fake.add_user("alice");
    let alice_token = fake.user_token(&alice).expect("token");
    let ops = fake.channel();

    // Wrong token: Mattermost's error envelope.
    let (s, v) = call(&fake, reqwest::Method::GET, "/api/v4/users/me", "nope", None).await;
    assert_eq!(s, 401);
    assert_eq!(v["id"], "api.context.session_expired.app_error");
    assert_eq!(v["message"], "Invalid or expired session, please login again.");
    assert_eq!(v["detailed_error"], "");
    assert_eq!(v["status_code"], 401);
    assert_eq!(v["request_id"].as_str().map(str::len), Some(26));
    let resp = http().get(format!("{}/api/v4/users/me", fake.url())).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 401, "no token at all");
    assert_eq!(resp.headers().get("x-request-id").map(|v| v.len()), Some(26));
    assert!(resp.headers().get("x-version-id").is_some());

    let (s, me) = call(&fake, reqwest::Method::GET, "/api/v4/users/me", TOKEN, None).await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], BOT_USER_ID);
    assert_eq!(me["username"], "opsbot");
    assert_eq!(me["is_bot"], true);
    let (s, a) = call(&fake, reqwest::Method::GET, &format!("/api/v4/users/{alice}"), TOKEN, None).await;
    assert_eq!((s, a["username"].as_str()), (200, Some("alice")));
    let (s, _) = call(&fake, reqwest::Method::GET, "/api/v4/users/aaaaaaaaaaaaaaaaaaaaaaaaaa", TOKEN, None).await;
    assert_eq!(s, 404);

    // Create: 201 with the post; recorded as the bot's.
    let (s, p) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "hi"})),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let pid = p["id"].as_str().expect("id").to_string();
    assert_eq!(pid.len(), 26);
    assert_eq!(
        (p["user_id"].as_str(), p["channel_id"].as_str(), p["root_id"].as_str()),
        (Some(BOT_USER_ID), Some(ops.as_str()), Some(""))
    );
    let b = fake.next_bot_post(Duration::from_secs(1)).await.expect("recorded");
    assert_eq!((b.id.as_str(), b.message.as_str(), b.how), (pid.as_str(), "hi", How::Created));

    // A reply in the thread; a root from another channel is refused.
    let (s, r) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "re", "root_id": pid})),
    )
    .await;
    assert_eq!((s, r["root_id"].as_str()), (201, Some(pid.as_str())));
    let dm = fake.dm_of(&alice);
    let (s, e) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": dm, "message": "re", "root_id": pid})),
    )
    .await;
    assert_eq!((s, e["id"].as_str()), (400, Some("api.post.create_post.root_id.app_error")));

    // Not a member: 403. Unparsable body: 400.
    let (s, e) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": fake.other_channel(), "message": "x"})),
    )
    .await;
    assert_eq!((s, e["id"].as_str()), (403, Some("api.context.permissions.app_error")));
    let resp = http()
        .post(format!("{}/api/v4/posts", fake.url()))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);

    // The limit is in characters (runes), not bytes.
    let at_limit = "é".repeat(MAX_MESSAGE_RUNES);
    let (s, _) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": at_limit})),
    )
    .await;
    assert_eq!(s, 201);
    let over = "é".repeat(MAX_MESSAGE_RUNES + 1);
    let (s, e) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": over})),
    )
    .await;
    assert_eq!((s, e["id"].as_str()), (400, Some("model.post.is_valid.msg.app_error")));

    // Patch: the author only.
    let (s, p2) = call(
        &fake,
        reqwest::Method::PUT,
        &format!("/api/v4/posts/{pid}/patch"),
        TOKEN,
        Some(json!({"message": "edited"})),
    )
    .await;
    assert_eq!((s, p2["message"].as_str()), (200, Some("edited")));
    assert!(p2["edit_at"].as_i64().unwrap_or(0) > 0);
    let alice_post = fake.post(&alice, &ops, "mine", None).await.expect("alice posts");
    let (s, _) = call(
        &fake,
        reqwest::Method::PUT,
        &format!("/api/v4/posts/{alice_post}/patch"),
        TOKEN,
        Some(json!({"message": "hijack"})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, g) = call(&fake, reqwest::Method::GET, &format!("/api/v4/posts/{pid}"), TOKEN, None).await;
    assert_eq!((s, g["message"].as_str()), (200, Some("edited")));
    let patched: Vec<_> = fake.bot_posts().into_iter().filter(|b| b.how == How::Patched).collect();
    assert_eq!(patched.len(), 1);
    assert_eq!(patched[0].id, pid);

    // Direct channels: name is the sorted ids joined by "__"; the same one again.
    let (s, c) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/channels/direct",
        TOKEN,
        Some(json!([BOT_USER_ID, alice])),
    )
    .await;
    assert_eq!(s, 201);
    let mut ids = [BOT_USER_ID.to_string(), alice.clone()];
    ids.sort();
    assert_eq!(c["name"].as_str(), Some(format!("{}__{}", ids[0], ids[1]).as_str()));
    assert_eq!((c["type"].as_str(), c["id"].as_str()), (Some("D"), Some(dm.as_str())));
    let (s, _) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/channels/direct",
        &alice_token,
        Some(json!([BOT_USER_ID, fake.add_user("carol")])),
    )
    .await;
    assert_eq!(s, 403, "only a member may open a direct channel");
    let (s, c) = call(&fake, reqwest::Method::GET, &format!("/api/v4/channels/{ops}"), TOKEN, None).await;
    assert_eq!((s, c["name"].as_str(), c["type"].as_str()), (200, Some("ops"), Some("O")));

    // Catching up: posts changed after `since`.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = opsbot_testkit::mattermost::now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = fake.post(&alice, &ops, "later", None).await.expect("post");
    let (s, list) = call(
        &fake,
        reqwest::Method::GET,
        &format!("/api/v4/channels/{ops}/posts?since={since}"),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["order"], json!([later]));
    assert_eq!(list["posts"][&later]["message"], "later");

    // Rate limiting: the next two calls under the prefix get 429 with the headers.
    fake.rate_limit("/api/v4/posts", 2, 3);
    for _ in 0..2 {
        let resp = http()
            .post(format!("{}/api/v4/posts", fake.url()))
            .bearer_auth(TOKEN)
            .json(&json!({"channel_id": ops, "message": "slow down"}))
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 429);
        let h = resp.headers();
        assert_eq!(h.get("x-ratelimit-reset").and_then(|v| v.to_str().ok()), Some("3"));
        assert_eq!(h.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()), Some("0"));
        assert!(h.get("x-ratelimit-limit").is_some());
        assert_eq!(resp.text().await.expect("body"), "limit exceeded\n");
    }
    let (s, _) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "ok now"})),
    )
    .await;
    assert_eq!(s, 201);

    // Files: multipart upload, then a post with the file.
    let boundary = "----opsbotboundary";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"channel_id\"\r\n\r\n{ops}\r\n").as_bytes());
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"chart.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(b"\x89PNG\r\n\x1a\nDATA");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = http()
        .post(format!("{}/api/v4/files", fake.url()))
        .bearer_auth(TOKEN)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 201);
    let up: Value = resp.json().await.expect("json");
    assert_eq!(up["client_ids"], json!([]));
    let fid = up["file_infos"][0]["id"].as_str().expect("file id").to_string();
    assert_eq!(up["file_infos"][0]["name"], "chart.png");
    assert_eq!(up["file_infos"][0]["mime_type"], "image/png");
    assert_eq!(up["file_infos"][0]["size"], 12);
    let (s, fp) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "", "file_ids": [fid]})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(fp["file_ids"], json!([fid]));
    let f = fake.files().into_iter().find(|f| f.id == fid).expect("stored");
    assert_eq!(
        (f.post_id.as_str(), f.data.as_slice()),
        (fp["id"].as_str().unwrap_or(""), &b"\x89PNG\r\n\x1a\nDATA"[..])
    );

    // Buttons: the integration is stripped from what clients get, kept in the store; an
    // action without an id gets one.
    let props = json!({"attachments": [{"text": "card", "actions": [
        {"id": "approve", "name": "Approve", "integration": {"url": "http://127.0.0.1:1/x", "context": {"k": "v"}}},
        {"name": "NoId", "integration": {"url": "http://127.0.0.1:1/x"}}
    ]}]});
    let (s, bp) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "m", "props": props})),
    )
    .await;
    assert_eq!(s, 201);
    let actions = &bp["props"]["attachments"][0]["actions"];
    assert!(actions[0].get("integration").is_none(), "{actions}");
    assert_eq!(actions[1]["id"].as_str().map(str::len), Some(26));
    let stored = fake.stored_post(bp["id"].as_str().unwrap_or("")).expect("stored");
    assert_eq!(stored["props"]["attachments"][0]["actions"][0]["integration"]["context"]["k"], "v");
}

#[tokio::test]
async fn websocket_hello_posted_seq_resume_gap_and_crash() {
    let mut fake = FakeMattermost::launch().await.expect("fake");
    let alice = fake.add_user("alice");
    let ops = fake.channel();

    let mut ws = ws_connect(&fake, "", true).await;
    let hello = ws_next(&mut ws).await.expect("hello");
    assert_eq!((hello["event"].as_str(), hello["seq"].as_i64()), (Some("hello"), Some(0)));
    let cid = hello["data"]["connection_id"].as_str().expect("connection id").to_string();
    assert!(hello["data"]["server_version"].is_string());
    assert_eq!(hello["broadcast"]["user_id"], BOT_USER_ID);

    let first = fake.post(&alice, &ops, "@opsbot whoami", None).await.expect("post");
    let ev = ws_next(&mut ws).await.expect("posted");
    assert_eq!((ev["event"].as_str(), ev["seq"].as_i64()), (Some("posted"), Some(1)));
    let d = &ev["data"];
    assert_eq!(
        (d["channel_type"].as_str(), d["sender_name"].as_str(), d["channel_name"].as_str()),
        (Some("O"), Some("@alice"), Some("ops"))
    );
    assert_eq!(d["team_id"], fake.team_id());
    let mentions: Vec<String> = serde_json::from_str(d["mentions"].as_str().expect("mentions is a JSON string")).expect("list");
    assert_eq!(mentions, vec![BOT_USER_ID.to_string()]);
    let post: Value = serde_json::from_str(d["post"].as_str().expect("post is a JSON string")).expect("post JSON");
    assert_eq!(
        (post["id"].as_str(), post["message"].as_str(), post["user_id"].as_str()),
        (Some(first.as_str()), Some("@opsbot whoami"), Some(alice.as_str()))
    );
    assert_eq!(ev["broadcast"]["channel_id"], ops);

    // Actions with seq get seq_reply; something unknown fails.
    ws.send(Message::Text(json!({"seq": 7, "action": "ping"}).to_string().into()))
        .await
        .expect("send");
    let r = ws_next(&mut ws).await.expect("reply");
    assert_eq!(
        (r["status"].as_str(), r["seq_reply"].as_i64(), r["data"]["text"].as_str()),
        (Some("OK"), Some(7), Some("pong"))
    );
    ws.send(Message::Text(json!({"seq": 8, "action": "fly"}).to_string().into()))
        .await
        .expect("send");
    let r = ws_next(&mut ws).await.expect("reply");
    assert_eq!((r["status"].as_str(), r["seq_reply"].as_i64()), (Some("FAIL"), Some(8)));

    // Direct message: channel type D, the bot mentioned.
    let dm = fake.dm_of(&alice);
    fake.post(&alice, &dm, "status", None).await.expect("dm");
    let ev = ws_next(&mut ws).await.expect("posted dm");
    assert_eq!(
        (
            ev["seq"].as_i64(),
            ev["data"]["channel_type"].as_str(),
            ev["data"]["team_id"].as_str()
        ),
        (Some(2), Some("D"), Some(""))
    );
    assert!(ev["data"]["mentions"].as_str().is_some_and(|m| m.contains(BOT_USER_ID)));

    // Dropped: the events meanwhile are replayed on resume (no new hello).
    fake.drop_connections();
    assert!(ws_next(&mut ws).await.is_none(), "the connection is dropped");
    fake.post(&alice, &ops, "missed one", None).await.expect("post");
    fake.post(&alice, &ops, "missed two", None).await.expect("post");
    let mut ws = ws_connect(&fake, &format!("?connection_id={cid}&sequence_number=3"), true).await;
    let a = ws_next(&mut ws).await.expect("replayed");
    let b = ws_next(&mut ws).await.expect("replayed");
    assert_eq!(
        (a["event"].as_str(), a["seq"].as_i64(), b["seq"].as_i64()),
        (Some("posted"), Some(3), Some(4))
    );
    assert!(a["data"]["post"].as_str().is_some_and(|p| p.contains("missed one")));
    assert!(ws_quiet(&mut ws).await);

    // A skipped seq.
    fake.skip_seq();
    fake.post(&alice, &ops, "after a gap", None).await.expect("post");
    let g = ws_next(&mut ws).await.expect("event");
    assert_eq!(g["seq"].as_i64(), Some(6), "seq 5 never came");

    // Resuming from a seq still in the dead queue replays from there.
    fake.drop_connections();
    assert!(ws_next(&mut ws).await.is_none());
    let mut ws = ws_connect(&fake, &format!("?connection_id={cid}&sequence_number=3"), true).await;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(ws_next(&mut ws).await.expect("replayed")["seq"].as_i64().unwrap_or(-1));
    }
    assert_eq!(seqs, [3, 4, 6]);
    assert!(ws_quiet(&mut ws).await);

    // Resuming from a seq the server cannot account for (5 was lost): a new connection id and
    // hello, then what waited meanwhile, numbered anew.
    fake.drop_connections();
    assert!(ws_next(&mut ws).await.is_none());
    fake.post(&alice, &ops, "while away", None).await.expect("post");
    let mut ws = ws_connect(&fake, &format!("?connection_id={cid}&sequence_number=5"), true).await;
    let h = ws_next(&mut ws).await.expect("hello");
    assert_eq!((h["event"].as_str(), h["seq"].as_i64()), (Some("hello"), Some(0)));
    let cid = h["data"]["connection_id"].as_str().expect("id").to_string();
    let w = ws_next(&mut ws).await.expect("the waiting event");
    assert_eq!(w["seq"].as_i64(), Some(1));
    assert!(w["data"]["post"].as_str().is_some_and(|p| p.contains("while away")));

    // A resume from a seq the server no longer has (or never had): a new connection.
    let mut ws2 = ws_connect(&fake, "?connection_id=bogusbogusbogusbogusbogus1&sequence_number=40", true).await;
    let h2 = ws_next(&mut ws2).await.expect("hello");
    assert_eq!((h2["event"].as_str(), h2["seq"].as_i64()), (Some("hello"), Some(0)));
    assert_ne!(h2["data"]["connection_id"].as_str(), Some(cid.as_str()));
    drop(ws2);

    // authentication_challenge instead of the header; a wrong token fails.
    let mut anon = ws_connect(&fake, "", false).await;
    assert!(ws_quiet(&mut anon).await, "nothing before authentication");
    anon.send(Message::Text(
        json!({"seq": 1, "action": "authentication_challenge", "data": {"token": "wrong"}})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let r = ws_next(&mut anon).await.expect("reply");
    assert_eq!((r["status"].as_str(), r["seq_reply"].as_i64()), (Some("FAIL"), Some(1)));
    anon.send(Message::Text(
        json!({"seq": 2, "action": "authentication_challenge", "data": {"token": TOKEN}})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let r = ws_next(&mut anon).await.expect("reply");
    assert_eq!((r["status"].as_str(), r["seq_reply"].as_i64()), (Some("OK"), Some(2)));
    let h = ws_next(&mut anon).await.expect("hello");
    assert_eq!((h["event"].as_str(), h["seq"].as_i64()), (Some("hello"), Some(0)));

    // A crash: connections cut, new ones refused; back on the same port with the same posts
    // but not the sessions.
    ChatServer::stop(&mut fake).await;
    assert!(ws_next(&mut ws).await.is_none(), "cut");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", fake.port())).await.is_err(), "refused");
    ChatServer::start(&mut fake).await.expect("restart");
    let mut ws = ws_connect(&fake, &format!("?connection_id={cid}&sequence_number=7"), true).await;
    let h = ws_next(&mut ws).await.expect("hello");
    assert_eq!(h["event"], "hello");
    assert_ne!(h["data"]["connection_id"].as_str(), Some(cid.as_str()));
    let (s, p) = call(&fake, reqwest::Method::GET, &format!("/api/v4/posts/{first}"), TOKEN, None).await;
    assert_eq!((s, p["message"].as_str()), (200, Some("@opsbot whoami")));
}

/// A tiny integration server: records each request body and answers with the next canned
/// (content type, body).
#[derive(Clone, Default)]
struct Integration {
    got: Arc<Mutex<Vec<(String, String)>>>,
    answers: Arc<Mutex<Vec<(String, String)>>>,
}

async fn integration() -> (Integration, String) {
    let it = Integration::default();
    let h = it.clone();
    let handler = move |headers: axum::http::HeaderMap, body: String| {
        let h = h.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            h.got.lock().expect("lock").push((auth, body));
            let (ct, b) = {
                let mut a = h.answers.lock().expect("lock");
                if a.is_empty() {
                    ("application/json".to_string(), "{}".to_string())
                } else {
                    a.remove(0)
                }
            };
            ([("content-type", ct)], b)
        }
    };
    let app = Router::new().route("/cmd", post(handler.clone())).route("/act", post(handler));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (it, format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn slash_commands_and_response_url() {
    let fake = FakeMattermost::launch().await.expect("fake");
    let alice = fake.add_user("alice");
    let ops = fake.channel();
    let (it, base) = integration().await;
    fake.set_command(&format!("{base}/cmd"), "cmdtoken123");
    let mut ws = ws_connect(&fake, "", true).await;
    ws_next(&mut ws).await.expect("hello");

    it.answers.lock().expect("lock").push((
        "application/json".into(),
        json!({"response_type": "in_channel", "text": "#1 queued"}).to_string(),
    ));
    let (s, _) = fake.slash(&alice, &ops, "/opsbot", "deploy web").await.expect("slash");
    assert_eq!(s, 200);
    let (auth, form) = it.got.lock().expect("lock")[0].clone();
    assert_eq!(auth, "Token cmdtoken123");
    let f: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&form).expect("form");
    for (k, v) in [
        ("command", "/opsbot"),
        ("text", "deploy web"),
        ("token", "cmdtoken123"),
        ("user_id", alice.as_str()),
        ("user_name", "alice"),
        ("channel_id", ops.as_str()),
        ("channel_name", "ops"),
        ("team_domain", "ops-team"),
    ] {
        assert_eq!(f.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(f.get("team_id"), Some(&fake.team_id()));
    assert!(!f["trigger_id"].is_empty());
    let response_url = f["response_url"].clone();
    assert!(response_url.starts_with(&format!("{}/hooks/commands/", fake.url())));

    // In channel: posted as the person, from_webhook; broadcast.
    let b = fake.next_bot_post(Duration::from_secs(2)).await.expect("answer posted");
    assert_eq!(
        (b.how, b.message.as_str(), b.ephemeral_for.as_deref()),
        (How::CommandAnswer, "#1 queued", None)
    );
    assert_eq!(b.props["from_webhook"], "true");
    let ev = ws_next(&mut ws).await.expect("posted");
    let p: Value = serde_json::from_str(ev["data"]["post"].as_str().unwrap_or("")).expect("post");
    assert_eq!(
        (p["user_id"].as_str(), p["message"].as_str()),
        (Some(alice.as_str()), Some("#1 queued"))
    );

    // Ephemeral (the default, and a plain-text answer).
    it.answers
        .lock()
        .expect("lock")
        .push(("application/json".into(), json!({"text": "only you"}).to_string()));
    fake.slash(&alice, &ops, "/opsbot", "help").await.expect("slash");
    let b = fake.next_bot_post(Duration::from_secs(2)).await.expect("ephemeral");
    assert_eq!((b.message.as_str(), b.ephemeral_for.as_deref()), ("only you", Some(alice.as_str())));
    it.answers.lock().expect("lock").push(("text/plain".into(), "plain words".into()));
    fake.slash(&alice, &ops, "/opsbot", "x").await.expect("slash");
    let b = fake.next_bot_post(Duration::from_secs(2)).await.expect("ephemeral");
    assert_eq!(
        (b.message.as_str(), b.ephemeral_for.as_deref()),
        ("plain words", Some(alice.as_str()))
    );
    assert!(ws_quiet(&mut ws).await, "the bot's socket does not get alice's ephemeral posts");

    // Follow-ups on response_url: five at most.
    for i in 0..5 {
        let r = http()
            .post(&response_url)
            .json(&json!({"response_type": "in_channel", "text": format!("update {i}")}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 200);
        let b = fake.next_bot_post(Duration::from_secs(2)).await.expect("follow-up");
        assert_eq!((b.how, b.message.clone()), (How::ResponseUrl, format!("update {i}")));
    }
    let r = http()
        .post(&response_url)
        .json(&json!({"text": "sixth"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let r = http().post(&response_url).body("nope").send().await.expect("post");
    assert_eq!(r.status().as_u16(), 400);

    // A failing command: its status comes back, nothing is posted.
    fake.set_command(&format!("{base}/missing"), "cmdtoken123");
    let (s, _) = fake.slash(&alice, &ops, "/opsbot", "x").await.expect("slash");
    assert_eq!(s, 404);
    assert!(fake.next_bot_post(Duration::from_millis(200)).await.is_none());
}

#[tokio::test]
async fn buttons_post_the_documented_request_and_apply_the_answer() {
    let fake = FakeMattermost::launch().await.expect("fake");
    let alice = fake.add_user("alice");
    let ops = fake.channel();
    let (it, base) = integration().await;
    let props = json!({"attachments": [{"text": "#3 awaiting approval", "actions": [
        {"id": "approve3", "name": "Approve", "integration": {"url": format!("{base}/act"), "context": {"command": "approve 3"}}},
        {"id": "bad-id", "name": "Broken", "integration": {"url": format!("{base}/act")}}
    ]}]});
    let (s, p) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "card", "props": props})),
    )
    .await;
    assert_eq!(s, 201);
    let pid = p["id"].as_str().expect("id").to_string();

    let update = json!({"update": {"message": "#3 approved", "props": {}}, "ephemeral_text": "done"});
    it.answers
        .lock()
        .expect("lock")
        .push(("application/json".into(), update.to_string()));
    let mut ws = ws_connect(&fake, "", true).await;
    ws_next(&mut ws).await.expect("hello");
    let (s, _) = fake.click(&alice, &pid, "approve3").await.expect("click");
    assert_eq!(s, 200);
    let (_, body) = it.got.lock().expect("lock")[0].clone();
    let req: Value = serde_json::from_str(&body).expect("JSON request");
    assert_eq!(req["user_id"], alice);
    assert_eq!(req["user_name"], "alice");
    assert_eq!(req["channel_id"], ops);
    assert_eq!(req["channel_name"], "ops");
    assert_eq!(req["team_id"], fake.team_id());
    assert_eq!(req["team_domain"], "ops-team");
    assert_eq!(req["post_id"], pid);
    assert_eq!(req["type"], "button");
    assert_eq!(req["context"], json!({"command": "approve 3"}));
    assert!(req["trigger_id"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(req.get("data_source").is_some());

    // The update replaced message and props (buttons gone); an edit event; the ephemeral text.
    let stored = fake.stored_post(&pid).expect("post");
    assert_eq!(stored["message"], "#3 approved");
    assert!(stored["props"].get("attachments").is_none());
    let ev = ws_next(&mut ws).await.expect("edited");
    assert_eq!(ev["event"], "post_edited");
    let bp: Vec<_> = fake.bot_posts().into_iter().filter(|b| b.how == How::ActionAnswer).collect();
    assert_eq!(bp.len(), 2);
    assert_eq!((bp[0].message.as_str(), bp[0].ephemeral_for.as_deref()), ("#3 approved", None));
    assert_eq!(
        (bp[1].message.as_str(), bp[1].ephemeral_for.as_deref()),
        ("done", Some(alice.as_str()))
    );

    // Ids Mattermost's route cannot carry, unknown ids: 404 and no request.
    let (s2, p2) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "again", "props": props})),
    )
    .await;
    assert_eq!(s2, 201);
    let pid2 = p2["id"].as_str().expect("id").to_string();
    assert_eq!(fake.click(&alice, &pid2, "bad-id").await.expect("click").0, 404);
    assert_eq!(fake.click(&alice, &pid2, "nothere").await.expect("click").0, 404);
    assert_eq!(it.got.lock().expect("lock").len(), 1);

    // A forged context goes as given.
    fake.click_with_context(&alice, &pid2, "approve3", json!({"command": "approve 99"}))
        .await
        .expect("click");
    let (_, body) = it.got.lock().expect("lock")[1].clone();
    let req: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(req["context"], json!({"command": "approve 99"}));
    // An empty answer changes nothing.
    assert_eq!(fake.stored_post(&pid2).expect("post")["message"], "again");
}

#[tokio::test]
async fn conformance_users_speak_and_hear() {
    let fake = FakeMattermost::launch().await.expect("fake");
    let mut alice = fake.user("alice").await.expect("user");
    let ops = fake.room();
    let mut ws = ws_connect(&fake, "", true).await;
    ws_next(&mut ws).await.expect("hello");

    alice.say(&ops, "opsbot: whoami").await.expect("say");
    let ev = ws_next(&mut ws).await.expect("posted");
    let p: Value = serde_json::from_str(ev["data"]["post"].as_str().unwrap_or("")).expect("post");
    assert_eq!(p["message"], "@opsbot whoami");
    assert_eq!(p["user_id"], alice.account());
    assert!(ev["data"]["mentions"].as_str().is_some_and(|m| m.contains(BOT_USER_ID)));

    // The bot answers in the thread and edits; alice hears both.
    let (_, r) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": ops, "message": "you are alice", "root_id": p["id"],
        "props": {"attachments": [{"title": "Who", "fields": [{"title": "user", "value": "alice"}]}]}})),
    )
    .await;
    let h = alice.next(Duration::from_secs(2)).await.expect("heard");
    assert_eq!(h.room.as_deref(), Some(ops.as_str()));
    assert_eq!(h.text, "you are alice\nWho\nuser: alice");
    assert_eq!(h.thread.as_deref(), p["id"].as_str());
    assert_eq!(h.replaces, None);
    let rid = r["id"].as_str().expect("id");
    call(
        &fake,
        reqwest::Method::PUT,
        &format!("/api/v4/posts/{rid}/patch"),
        TOKEN,
        Some(json!({"message": "still alice"})),
    )
    .await;
    let h = alice.next(Duration::from_secs(2)).await.expect("heard edit");
    assert_eq!(
        (h.text.as_str(), h.replaces.as_deref(), h.id.as_deref()),
        ("still alice\nWho\nuser: alice", Some(rid), Some(rid)),
        "a patch of the message keeps the props"
    );

    // A direct message both ways.
    alice.dm("status").await.expect("dm");
    // (The bot's socket first gets its own reply and the edit, as Mattermost sends them.)
    let mut kinds = Vec::new();
    let ev = loop {
        let ev = ws_next(&mut ws).await.expect("event");
        kinds.push(ev["event"].as_str().unwrap_or("").to_string());
        if ev["data"]["channel_type"] == "D" {
            break ev;
        }
    };
    assert_eq!(kinds, ["posted", "post_edited", "posted"]);
    let dm = ev["broadcast"]["channel_id"].as_str().expect("channel").to_string();
    call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": dm, "message": "all good"})),
    )
    .await;
    let h = alice.next(Duration::from_secs(2)).await.expect("heard dm");
    assert_eq!((h.room, h.text.as_str()), (None, "all good"));

    // Bob does not hear alice's direct messages.
    let mut bob = fake.user("bob").await.expect("user");
    call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": dm, "message": "private"})),
    )
    .await;
    assert!(bob.next(Duration::from_millis(300)).await.is_none());
    let (toml, env) = fake.adapter_toml();
    assert!(toml.contains("type = \"mattermost\"") && toml.contains(&fake.url()));
    assert_eq!(env[0].1, TOKEN);
}

#[tokio::test]
async fn mattermostdriver_talks_to_the_fake() {
    let venv_python = opsbot_testkit::chat_venv().join("bin/python");
    let venv_python = venv_python.to_string_lossy().to_string();
    let Some(python) = opsbot_testkit::require("Python venv with mattermostdriver", "OPSBOT_MM_PYTHON", &[&venv_python]) else {
        return;
    };
    let importable = std::process::Command::new(&python)
        .args(["-c", "import mattermostdriver"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        let note = format!(
            "{} cannot import mattermostdriver (run scripts/test.sh, which installs it)",
            python.display()
        );
        if opsbot_testkit::servers_required() {
            panic!("{note}; OPSBOT_REQUIRE_SERVERS=1 needs it");
        }
        eprintln!("SKIPPED: {note}");
        return;
    }
    let fake = FakeMattermost::launch().await.expect("fake");
    let ops = fake.channel();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/mm_driver.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(fake.port().to_string())
            .arg(TOKEN)
            .arg(&ops)
            .output(),
    )
    .await
    .expect("in time")
    .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "script failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("JSON out");
    assert_eq!(v["me"]["id"], BOT_USER_ID);
    assert_eq!(v["bad_login"], "Invalid or expired session, please login again.");
    assert_eq!(v["created"]["message"], "hello from mattermostdriver");
    assert_eq!(v["patched"]["message"], "patched by mattermostdriver");
    assert_eq!(v["got"]["message"], "patched by mattermostdriver");
    assert_eq!(v["too_long"], "Invalid Message.");
    assert_eq!(v["uploaded"]["file_infos"][0]["name"], "chart.png");
    assert_eq!(v["with_file"]["file_ids"][0], v["uploaded"]["file_infos"][0]["id"]);
    let events = v["events"].as_array().expect("events");
    // The challenge's answer, then hello (seq 0): what the driver waits for.
    assert_eq!(
        (events[0]["status"].as_str(), events[0]["seq_reply"].as_i64()),
        (Some("OK"), Some(1))
    );
    assert_eq!((events[1]["event"].as_str(), events[1]["seq"].as_i64()), (Some("hello"), Some(0)));
    let posted = events.iter().find(|e| e["event"] == "posted").expect("posted");
    let p: Value = serde_json::from_str(posted["data"]["post"].as_str().expect("string")).expect("post");
    assert_eq!(p["message"], "hello from mattermostdriver");
    // What the server stored is what the driver sent.
    let f = fake.files();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].data, b"\x89PNG\r\n\x1a\nfake");
    assert_eq!(fake.bot_posts().iter().filter(|b| b.how == How::Patched).count(), 1);
}

#[tokio::test]
async fn private_channels_membership_and_injected_frames() {
    let fake = FakeMattermost::launch().await.expect("fake");
    let alice = fake.add_user("alice");
    let private = fake.add_channel("secret", true, true);
    let mut ws = ws_connect(&fake, "", true).await;
    ws_next(&mut ws).await.expect("hello");

    fake.post(&alice, &private, "psst", None).await.expect("post");
    let ev = ws_next(&mut ws).await.expect("posted");
    assert_eq!((ev["seq"].as_i64(), ev["data"]["channel_type"].as_str()), (Some(1), Some("P")));
    assert!(ev["data"].get("mentions").is_none(), "no mention, no mentions field");

    // Out of the channel: no events, and posting is refused.
    fake.set_bot_member(&private, false);
    fake.post(&alice, &private, "without the bot", None).await.expect("post");
    assert!(ws_quiet(&mut ws).await);
    let (s, _) = call(
        &fake,
        reqwest::Method::POST,
        "/api/v4/posts",
        TOKEN,
        Some(json!({"channel_id": private, "message": "x"})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(&fake, reqwest::Method::GET, &format!("/api/v4/channels/{private}"), TOKEN, None).await;
    assert_eq!(s, 403, "a private channel is not readable from outside");

    // Frames of the test's making: a numbered event, then a raw frame.
    fake.emit_to_bot("posted", json!({"post": "{not json"}), json!({"channel_id": private}));
    let ev = ws_next(&mut ws).await.expect("event");
    assert_eq!((ev["seq"].as_i64(), ev["data"]["post"].as_str()), (Some(2), Some("{not json")));
    fake.send_raw_to_bot("garbage");
    match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "garbage"),
        other => panic!("no raw frame: {other:?}"),
    }
    assert_eq!(fake.live_connections(), 1);
}
