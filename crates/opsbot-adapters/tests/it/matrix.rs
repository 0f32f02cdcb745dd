//! The Matrix adapter against a real Synapse (from `opsbot-testkit`), and against tiny fake
//! homeservers for what Synapse will not do on demand: answer garbage, or 429 exactly once.

use opsbot_adapters::matrix::MatrixAdapter;
use opsbot_core::config::{InvitePolicy, MatrixConfig};
use opsbot_core::{Adapter, AdapterContext, AdapterState, Button, Envelope, Place, Reply, SendError, Tone};
use opsbot_testkit::matrix::{BOT_USER, MatrixUser, ROOM_ALIAS, Synapse};
use opsbot_testkit::{ChatServer, ChatUser};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(60);
/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63,
    0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44,
    0xAE, 0x42, 0x60, 0x82,
];

/// Adapter state kept in memory, shared across adapter instances (a restart).
#[derive(Default)]
struct MemState(Mutex<HashMap<String, String>>);

#[async_trait::async_trait]
impl AdapterState for MemState {
    async fn load(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().get(key).cloned()
    }
    async fn save(&self, key: &str, value: &str) {
        self.0.lock().unwrap().insert(key.to_string(), value.to_string());
    }
}

fn config(homeserver: &str, token: &str, threads: bool) -> MatrixConfig {
    MatrixConfig {
        homeserver: homeserver.to_string(),
        user_id: BOT_USER.to_string(),
        access_token: Some(token.to_string()),
        password: None,
        device_id: None,
        rooms: vec![ROOM_ALIAS.to_string()],
        invites: InvitePolicy::Anyone,
        threads,
        sync_timeout: Some("2s".into()),
        tls_ca: None,
    }
}

/// One `run()` of an adapter in the background.
struct Running {
    rx: mpsc::Receiver<Envelope>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    async fn start(adapter: &Arc<MatrixAdapter>, state: Arc<dyn AdapterState>) -> Running {
        let (tx, rx) = mpsc::channel(1024);
        let (stop, stop_rx) = watch::channel(false);
        let (conn, mut conn_rx) = watch::channel(false);
        let ctx = AdapterContext::new(tx, state, Arc::new(conn), stop_rx);
        let a = adapter.clone();
        let task = tokio::spawn(async move { a.run(&ctx).await });
        tokio::time::timeout(WAIT, conn_rx.wait_for(|c| *c))
            .await
            .expect("connected in time")
            .expect("connected");
        Running { rx, stop, task }
    }

    async fn next(&mut self) -> Envelope {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("an envelope in time")
            .expect("the inbox is open")
    }

    async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task).await.expect("run ends").expect("no panic")
    }
}

async fn synapse() -> Option<Synapse> {
    Synapse::launch().await.expect("Synapse starts")
}

async fn heard(u: &mut MatrixUser) -> (String, Value) {
    u.next_event(WAIT).await.expect("the user hears the bot")
}

#[tokio::test]
async fn room_and_direct_messages_become_envelopes() {
    let Some(hs) = synapse().await else { return };
    let mut ana = hs.matrix_user("ana").await.unwrap();
    // Said before the bot ever ran: history, never a command.
    ana.say_id(ROOM_ALIAS, "opsbot: from the past").await.unwrap();
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, false), vec![]).unwrap());
    let mut run = Running::start(&adapter, Arc::new(MemState::default())).await;

    ana.say_id(ROOM_ALIAS, "opsbot: deploy web").await.unwrap();
    let e = run.next().await;
    assert_eq!(e.user.platform, "mx");
    assert_eq!(e.user.id, "@ana:test.local");
    assert_eq!(e.display_name.as_deref(), Some("ana"));
    assert_eq!(e.place.channel, hs.room_channel());
    assert_eq!(e.place.thread, None);
    assert!(e.mentioned && !e.direct);
    assert_eq!(e.text, "deploy web");

    // A prefix command stays as typed; the full user id with a comma is a mention too.
    let first = ana.say_id(ROOM_ALIAS, "!status").await.unwrap();
    let e = run.next().await;
    assert_eq!((e.text.as_str(), e.mentioned), ("!status", false));
    ana.say_id(ROOM_ALIAS, "@opsbot:test.local, who").await.unwrap();
    let e = run.next().await;
    assert_eq!((e.text.as_str(), e.mentioned), ("who", true));

    // An edit of an earlier command is not run again; an m.notice (a bot's) is ignored;
    // m.mentions marks a mention and the leading name is stripped.
    ana.send_content(
        ROOM_ALIAS,
        json!({"msgtype": "m.text", "body": "* !restart", "m.new_content": {"msgtype": "m.text", "body": "!restart"},
               "m.relates_to": {"rel_type": "m.replace", "event_id": first}}),
    )
    .await
    .unwrap();
    ana.send_content(ROOM_ALIAS, json!({"msgtype": "m.notice", "body": "opsbot: a bot talking"}))
        .await
        .unwrap();
    ana.send_content(
        ROOM_ALIAS,
        json!({"msgtype": "m.text", "body": "opsbot ping", "m.mentions": {"user_ids": [BOT_USER]}}),
    )
    .await
    .unwrap();
    let e = run.next().await;
    assert_eq!((e.text.as_str(), e.mentioned), ("ping", true));

    // A direct conversation: the bot accepts the invitation (invites = anyone).
    ana.dm("hello there").await.unwrap();
    let dm = run.next().await;
    assert!(dm.direct);
    assert_eq!(dm.text, "hello there");
    assert_eq!(dm.user.id, "@ana:test.local");
    let dm_room = ana.dm_room().await.unwrap();
    assert_eq!(dm.place.channel, dm_room);

    // The answer in the direct room reaches the person, as a room-less message.
    adapter.post(&dm.place, &Reply::text(Tone::Success, "hi ana")).await.unwrap();
    let h = ChatUser::next(&mut ana, WAIT).await.expect("the answer");
    assert_eq!(h.room, None);
    assert!(h.text.contains("hi ana"), "{h:?}");

    // The bot's own messages never come back as envelopes, nor does history.
    ana.say_id(ROOM_ALIAS, "opsbot: last").await.unwrap();
    assert_eq!(run.next().await.text, "last");
    assert!(run.rx.try_recv().is_err());
    run.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn replies_render_edit_split_and_carry_images() {
    let Some(hs) = synapse().await else { return };
    let mut bo = hs.matrix_user("bo").await.unwrap();
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, false), vec![]).unwrap());
    let run = Running::start(&adapter, Arc::new(MemState::default())).await;
    let place = Place::new("mx", hs.room_channel());

    // Rich text, escaped.
    let reply = Reply::new(Tone::Warning)
        .heading("Deploy <web>")
        .para("run `<script>alert(1)</script>` & see")
        .para("bo: @room asked by @bo:test.local")
        .fields(vec![("env".into(), "prod".into())])
        .status(Tone::Warning, "waiting for approval")
        .buttons(vec![Button {
            label: "Approve".into(),
            command: "approve 42".into(),
            tone: Tone::Success,
        }])
        .table(vec!["host".into(), "state".into()], vec![vec!["web1".into(), "<ok>".into()]])
        .code("a < b && c > d");
    let posted = adapter.post(&place, &reply).await.unwrap();
    let id = posted.id.expect("an event id");
    let (room, ev) = heard(&mut bo).await;
    assert_eq!(room, hs.room_channel());
    assert_eq!(ev["event_id"], id.as_str());
    let c = &ev["content"];
    assert_eq!(c["msgtype"], "m.notice");
    assert_eq!(c["format"], "org.matrix.custom.html");
    // Text repeated from people (`@room`, names, user ids) mentions nobody: an empty m.mentions
    // turns off the body-based push rules.
    assert!(c["body"].as_str().unwrap().contains("@room"), "{c}");
    assert_eq!(c["m.mentions"], json!({}), "{c}");
    let html = c["formatted_body"].as_str().unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(html.contains("<h4>Deploy &lt;web&gt;</h4>"), "{html}");
    assert!(html.contains("<code>approve 42</code>"), "{html}");
    assert!(html.contains("<td>&lt;ok&gt;</td>"), "{html}");
    assert!(html.contains("<pre><code>a &lt; b &amp;&amp; c &gt; d</code></pre>"), "{html}");
    let body = c["body"].as_str().unwrap();
    assert!(
        body.contains("<script>alert(1)</script>") && body.contains("[Approve: approve 42]"),
        "{body}"
    );

    // An edit replaces it (m.replace), seen by the person; it mentions nobody either.
    adapter
        .edit(&place, &id, &Reply::text(Tone::Success, "deployed, @room"))
        .await
        .unwrap();
    let (_, ev) = heard(&mut bo).await;
    let c = &ev["content"];
    assert_eq!(c["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(c["m.relates_to"]["event_id"], id.as_str());
    assert!(c["m.new_content"]["body"].as_str().unwrap().contains("deployed"), "{c}");
    assert_eq!(c["m.mentions"], json!({}), "{c}");
    assert_eq!(c["m.new_content"]["m.mentions"], json!({}), "{c}");

    // A long reply arrives whole, split at line ends into several events.
    let lines: Vec<String> = (0..6000).map(|i| format!("output line {i:05}")).collect();
    let long = Reply::new(Tone::Info).code(lines.join("\n"));
    adapter.post(&place, &long).await.unwrap();
    let mut got = String::new();
    let mut events = 0;
    while !got.contains("output line 05999") {
        let (_, ev) = heard(&mut bo).await;
        got.push_str(ev["content"]["body"].as_str().unwrap());
        got.push('\n');
        events += 1;
    }
    assert!(events > 1);
    let seen: Vec<&str> = got.lines().filter_map(|l| l.split("output line ").nth(1)).collect();
    let want: Vec<String> = (0..6000).map(|i| format!("{i:05}")).collect();
    assert_eq!(seen, want);

    // An http(s) image is never fetched (the bot would fetch any address it is given): it
    // stays a link in the text, and no m.image follows.
    let (img_url, hits) = serve_counting(PNG, "image/png").await;
    let mut with_image = Reply::text(Tone::Info, "graph:");
    with_image.blocks.push(opsbot_core::Block::Image {
        url: img_url.clone(),
        alt: "cpu graph".into(),
    });
    adapter.post(&place, &with_image).await.unwrap();
    adapter.post(&place, &Reply::text(Tone::Info, "after the graph")).await.unwrap();
    let (_, text_ev) = heard(&mut bo).await;
    let c = &text_ev["content"];
    assert!(c["body"].as_str().unwrap().contains("graph:"), "{c}");
    assert!(c["body"].as_str().unwrap().contains(&img_url), "{c}");
    assert!(
        c["formatted_body"]
            .as_str()
            .unwrap()
            .contains(&format!("<a href=\"{img_url}\">cpu graph</a>")),
        "{c}"
    );
    let (_, next) = heard(&mut bo).await;
    assert_eq!(next["content"]["msgtype"], "m.notice", "{next}");
    assert!(next["content"]["body"].as_str().unwrap().contains("after the graph"), "{next}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the image server was asked");

    // A data: URL is uploaded and sent as m.image after the text.
    use base64::Engine;
    let data_url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(PNG));
    let mut inline = Reply::default();
    inline.blocks.push(opsbot_core::Block::Image {
        url: data_url,
        alt: "inline".into(),
    });
    adapter.post(&place, &inline).await.unwrap();
    let (_, text_ev) = heard(&mut bo).await;
    assert!(!text_ev["content"]["body"].as_str().unwrap().contains("base64"), "{text_ev}");
    let (_, img_ev) = heard(&mut bo).await;
    let c = &img_ev["content"];
    assert_eq!(c["msgtype"], "m.image");
    assert_eq!(c["body"], "inline");
    assert_eq!(c["m.mentions"], json!({}), "{c}");
    assert!(c["url"].as_str().unwrap().starts_with("mxc://"), "{c}");
    assert_eq!(c["info"]["mimetype"], "image/png");
    assert_eq!(c["info"]["size"], PNG.len());
    // The uploaded bytes are the image's.
    let mxc_url = c["url"].as_str().unwrap().to_string();
    let mxc = mxc_url.trim_start_matches("mxc://").to_string();
    let got = opsbot_testkit::matrix::http_client()
        .get(format!("{}/_matrix/client/v1/media/download/{mxc}", hs.url()))
        .bearer_auth(&hs.bot_token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], PNG);

    // An mxc:// URL (already on a homeserver) is sent as it is.
    let mut again = Reply::default();
    again.blocks.push(opsbot_core::Block::Image {
        url: mxc_url.clone(),
        alt: "again".into(),
    });
    adapter.post(&place, &again).await.unwrap();
    let (_, text_ev) = heard(&mut bo).await;
    assert_eq!(text_ev["content"]["msgtype"], "m.notice", "{text_ev}");
    let (_, img_ev) = heard(&mut bo).await;
    assert_eq!(img_ev["content"]["msgtype"], "m.image");
    assert_eq!(img_ev["content"]["url"], mxc_url.as_str());

    run.stop().await.unwrap();
}

#[tokio::test]
async fn a_room_with_a_third_member_is_never_direct() {
    let Some(hs) = synapse().await else { return };
    let ana = hs.matrix_user("ana").await.unwrap();
    let bob = hs.matrix_user("bob").await.unwrap();
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, false), vec![]).unwrap());
    let mut run = Running::start(&adapter, Arc::new(MemState::default())).await;

    // Ana makes a "direct" chat (is_direct on the bot's invitation) and invites Bob as well.
    let room = ana
        .create_room(json!({"is_direct": true, "invite": [BOT_USER, "@bob:test.local"], "preset": "trusted_private_chat"}))
        .await
        .unwrap();
    ana.say_id(&room, "!while bob is invited").await.unwrap();
    let e = run.next().await;
    assert_eq!(
        (e.place.channel.as_str(), e.text.as_str()),
        (room.as_str(), "!while bob is invited")
    );
    assert!(!e.direct, "an invited third member makes the room not direct");

    bob.join(&room).await.unwrap();
    ana.say_id(&room, "!while bob is in").await.unwrap();
    let e = run.next().await;
    assert_eq!(e.text, "!while bob is in");
    assert!(!e.direct);

    // Once Bob has left, only Ana and the bot remain: direct.
    bob.leave(&room).await.unwrap();
    ana.say_id(&room, "!bob left").await.unwrap();
    let e = run.next().await;
    assert_eq!(e.text, "!bob left");
    assert!(e.direct);

    // A room made as direct with Bob joining later is not direct from then on.
    let room2 = ana
        .create_room(json!({"is_direct": true, "invite": [BOT_USER], "preset": "trusted_private_chat"}))
        .await
        .unwrap();
    ana.say_id(&room2, "!just us").await.unwrap();
    assert!(run.next().await.direct);
    ana.invite(&room2, "@bob:test.local").await.unwrap();
    bob.join(&room2).await.unwrap();
    ana.say_id(&room2, "!bob came").await.unwrap();
    let e = run.next().await;
    assert_eq!(e.text, "!bob came");
    assert!(!e.direct);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn threads_when_configured() {
    let Some(hs) = synapse().await else { return };
    let mut cy = hs.matrix_user("cy").await.unwrap();
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, true), vec![]).unwrap());
    let mut run = Running::start(&adapter, Arc::new(MemState::default())).await;

    // A message outside a thread: the answer starts a thread under it.
    let root = cy.say_id(ROOM_ALIAS, "opsbot: status").await.unwrap();
    let e = run.next().await;
    assert_eq!(e.place.thread.as_deref(), Some(root.as_str()));
    adapter.post(&e.place, &Reply::text(Tone::Info, "all good")).await.unwrap();
    let (_, ev) = heard(&mut cy).await;
    let rel = &ev["content"]["m.relates_to"];
    assert_eq!(rel["rel_type"], "m.thread");
    assert_eq!(rel["event_id"], root.as_str());
    assert_eq!(rel["m.in_reply_to"]["event_id"], root.as_str());

    // A message in that thread stays in it.
    cy.send_content(
        ROOM_ALIAS,
        json!({"msgtype": "m.text", "body": "opsbot: again", "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": {"event_id": root}}}),
    )
    .await
    .unwrap();
    let e = run.next().await;
    assert_eq!(e.text, "again");
    assert_eq!(e.place.thread.as_deref(), Some(root.as_str()));
    adapter.post(&e.place, &Reply::text(Tone::Info, "still good")).await.unwrap();
    let h = ChatUser::next(&mut cy, WAIT).await.unwrap();
    assert_eq!(h.thread.as_deref(), Some(root.as_str()));
    run.stop().await.unwrap();
}

#[tokio::test]
async fn bursts_arrive_whole_and_in_order() {
    let Some(hs) = synapse().await else { return };
    let mut di = hs.matrix_user("di").await.unwrap();
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, false), vec![]).unwrap());
    let state: Arc<dyn AdapterState> = Arc::new(MemState::default());
    let run = Running::start(&adapter, state.clone()).await;
    let place = Place::new("mx", hs.room_channel());
    for i in 0..200 {
        adapter.post(&place, &Reply::text(Tone::Info, format!("burst {i}"))).await.unwrap();
    }
    for i in 0..200 {
        let (_, ev) = heard(&mut di).await;
        assert_eq!(ev["content"]["body"].as_str().unwrap().trim(), format!("burst {i}"));
    }
    run.stop().await.unwrap();

    // 150 commands while the adapter is briefly away (more than one sync's timeline holds):
    // the next run fetches the gap and delivers them all, in order.
    for i in 0..150 {
        di.say_id(ROOM_ALIAS, &format!("!cmd {i}")).await.unwrap();
    }
    let mut run = Running::start(&adapter, state).await;
    for i in 0..150 {
        assert_eq!(run.next().await.text, format!("!cmd {i}"));
    }
    run.stop().await.unwrap();
}

#[tokio::test]
async fn restarts_replay_nothing_and_reconnect_after_a_server_crash() {
    let Some(mut hs) = synapse().await else { return };
    let mut ed = hs.matrix_user("ed").await.unwrap();
    let state: Arc<dyn AdapterState> = Arc::new(MemState::default());
    let place = Place::new("mx", hs.room_channel());

    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, false), vec![]).unwrap());
    // Not running: nothing can be sent.
    assert!(matches!(
        adapter.post(&place, &Reply::text(Tone::Info, "x")).await,
        Err(SendError::Unavailable(_))
    ));
    let mut run = Running::start(&adapter, state.clone()).await;
    ed.say_id(ROOM_ALIAS, "!one").await.unwrap();
    assert_eq!(run.next().await.text, "!one");
    run.stop().await.unwrap();

    // opsbot restarts: a new adapter with the same state sees only what comes after.
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, false), vec![]).unwrap());
    let mut run = Running::start(&adapter, state.clone()).await;
    ed.say_id(ROOM_ALIAS, "!two").await.unwrap();
    assert_eq!(run.next().await.text, "!two");

    // The homeserver crashes: run returns an error; posting is Unavailable meanwhile.
    hs.stop().await;
    let r = tokio::time::timeout(WAIT, &mut run.task)
        .await
        .expect("run notices")
        .expect("no panic");
    assert!(r.is_err(), "{r:?}");
    assert!(matches!(
        adapter.post(&place, &Reply::text(Tone::Info, "x")).await,
        Err(SendError::Unavailable(_))
    ));

    // It comes back: a new run connects and works.
    hs.start().await.unwrap();
    let mut run = Running::start(&adapter, state.clone()).await;
    ed.say_id(ROOM_ALIAS, "!three").await.unwrap();
    assert_eq!(run.next().await.text, "!three");
    adapter.post(&place, &Reply::text(Tone::Info, "back")).await.unwrap();
    loop {
        let (_, ev) = heard(&mut ed).await;
        if ev["content"]["body"].as_str().unwrap().contains("back") {
            break;
        }
    }
    run.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// A tiny fake homeserver: answers requests from a script, records them.

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    body: String,
}

type Handler = Arc<dyn Fn(&Req) -> (u16, String, Duration) + Send + Sync>;

/// Serves HTTP/1.1 on a free port with `handler`; returns the base URL and the request log.
async fn fake_server(handler: Handler) -> (String, Arc<Mutex<Vec<Req>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handler = handler.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else { return };
                log.lock().unwrap().push(req.clone());
                let (status, body, delay) = handler(&req);
                tokio::time::sleep(delay).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, log)
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    Some(Req { method, path, body })
}

/// Serves `bytes` with a content type to every GET; returns the URL and a count of the
/// connections it got.
async fn serve_counting(bytes: &'static [u8], content_type: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graph.png", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if read_request(&mut sock).await.is_none() {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(bytes).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, hits)
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The common part of the fake: whoami, profile, join.
fn basics(r: &Req) -> Option<(u16, String, Duration)> {
    let p = r.path.as_str();
    if p.contains("/account/whoami") {
        return Some((200, json!({"user_id": BOT_USER}).to_string(), Duration::ZERO));
    }
    if p.contains("/profile/") {
        return Some((404, json!({"errcode": "M_NOT_FOUND", "error": "no"}).to_string(), Duration::ZERO));
    }
    if p.contains("/join/") {
        return Some((200, json!({"room_id": "!room:fake"}).to_string(), Duration::ZERO));
    }
    None
}

#[tokio::test]
async fn malformed_and_rate_limited_syncs_are_skipped() {
    let syncs = Arc::new(Mutex::new(0u32));
    let s2 = syncs.clone();
    let handler: Handler = Arc::new(move |r: &Req| {
        if let Some(x) = basics(r) {
            return x;
        }
        if r.path.contains("/sync") {
            let n = {
                let mut g = s2.lock().unwrap();
                *g += 1;
                *g
            };
            let ok = |batch: u32, events: Value| {
                json!({"next_batch": format!("b{batch}"), "rooms": {"join": {"!room:fake": {"timeline": {"events": events}}}}}).to_string()
            };
            return match n {
                1 => (200, ok(1, json!([])), Duration::ZERO),
                2 => (200, "<html>502 bad gateway from a proxy</html>".into(), Duration::ZERO),
                3 => (
                    429,
                    json!({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 50}).to_string(),
                    Duration::ZERO,
                ),
                4 => (200, "{\"next_batch\": \"b4\", \"rooms\": [tru".into(), Duration::ZERO),
                5 => (
                    200,
                    ok(
                        5,
                        json!([
                            42,
                            {"type": "m.room.message"},
                            {"type": "m.room.message", "sender": 7, "event_id": "$x", "content": "nope"},
                            {"type": "m.room.message", "sender": "@ana:fake", "event_id": "$good", "origin_server_ts": now_ms(),
                             "content": {"msgtype": "m.text", "body": "opsbot: still here"}}
                        ]),
                    ),
                    Duration::ZERO,
                ),
                n => (200, ok(n, json!([])), Duration::from_millis(500)),
            };
        }
        (404, json!({"errcode": "M_UNRECOGNIZED"}).to_string(), Duration::ZERO)
    });
    let (url, log) = fake_server(handler).await;
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&url, "token", false), vec![]).unwrap());
    let state = Arc::new(MemState::default());
    let mut run = Running::start(&adapter, state.clone()).await;
    let e = run.next().await;
    assert_eq!(e.text, "still here");
    assert_eq!(e.user.id, "@ana:fake");
    assert!(e.mentioned);
    // Still syncing after the garbage, with the last good batch token.
    while *syncs.lock().unwrap() < 7 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!run.task.is_finished());
    let paths: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.contains("/sync"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        paths[1].contains("since=b1") && paths[4].contains("since=b1") && paths[5].contains("since=b5"),
        "{paths:?}"
    );
    let saved = state.load("next_batch").await.unwrap();
    assert!(saved.trim_start_matches('b').parse::<u32>().unwrap() >= 5, "{saved}");
    run.stop().await.unwrap();
}

#[tokio::test]
async fn sends_map_errors_and_retries_reuse_the_transaction() {
    let sends = Arc::new(Mutex::new(0u32));
    let s2 = sends.clone();
    let handler: Handler = Arc::new(move |r: &Req| {
        if let Some(x) = basics(r) {
            return x;
        }
        if r.path.contains("/sync") {
            return (200, json!({"next_batch": "b"}).to_string(), Duration::from_millis(300));
        }
        if r.method == "PUT" && r.path.contains("/send/m.room.message/") {
            let n = {
                let mut g = s2.lock().unwrap();
                *g += 1;
                *g
            };
            return match n {
                1 => (
                    429,
                    json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 1234}).to_string(),
                    Duration::ZERO,
                ),
                2 => (502, "bad gateway".into(), Duration::ZERO),
                3 => (200, json!({"event_id": "$one"}).to_string(), Duration::ZERO),
                4 => (
                    403,
                    json!({"errcode": "M_FORBIDDEN", "error": "not in room"}).to_string(),
                    Duration::ZERO,
                ),
                _ => (200, json!({"event_id": format!("$e{n}")}).to_string(), Duration::ZERO),
            };
        }
        (404, json!({"errcode": "M_UNRECOGNIZED"}).to_string(), Duration::ZERO)
    });
    let (url, log) = fake_server(handler).await;
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&url, "token", false), vec![]).unwrap());
    let run = Running::start(&adapter, Arc::new(MemState::default())).await;
    let place = Place::new("mx", "!room:fake");
    let reply = Reply::text(Tone::Info, "hello");
    assert_eq!(
        adapter.post(&place, &reply).await,
        Err(SendError::RateLimited(Duration::from_millis(1234)))
    );
    assert!(matches!(adapter.post(&place, &reply).await, Err(SendError::Unavailable(_))));
    assert_eq!(adapter.post(&place, &reply).await.unwrap().id.as_deref(), Some("$one"));
    assert!(matches!(
        adapter.post(&place, &Reply::text(Tone::Info, "other")).await,
        Err(SendError::Rejected(_))
    ));
    assert_eq!(adapter.post(&place, &reply).await.unwrap().id.as_deref(), Some("$e5"));
    let txns: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(txns.len(), 5);
    // The retries of one message reuse its transaction id (the server deduplicates them);
    // a new message, or the same one once delivered, gets a new one.
    assert_eq!(txns[0], txns[1]);
    assert_eq!(txns[1], txns[2]);
    assert_ne!(txns[2], txns[3]);
    assert_ne!(txns[2], txns[4]);
    assert_ne!(txns[3], txns[4]);
    run.stop().await.unwrap();
}

#[tokio::test]
async fn password_login_and_a_new_login_when_the_token_is_revoked() {
    let Some(hs) = synapse().await else { return };
    let mut fay = hs.matrix_user("fay").await.unwrap();
    let mut cfg = config(&hs.url(), "", false);
    cfg.access_token = None;
    cfg.password = Some("opsbot-pass".into());
    let adapter = Arc::new(MatrixAdapter::new("mx", cfg, vec![]).unwrap());
    let mut run = Running::start(&adapter, Arc::new(MemState::default())).await;
    fay.say_id(ROOM_ALIAS, "!before").await.unwrap();
    assert_eq!(run.next().await.text, "!before");

    // An admin deletes the bot's device: its token dies; the adapter logs in again.
    let url = format!(
        "{}/_synapse/admin/v2/users/{}/devices/OPSBOT",
        hs.url(),
        opsbot_testkit::matrix::seg(BOT_USER)
    );
    opsbot_testkit::matrix::call(
        &opsbot_testkit::matrix::http_client(),
        reqwest::Method::DELETE,
        &url,
        Some(hs.admin_token()),
        None,
    )
    .await
    .unwrap();
    fay.say_id(ROOM_ALIAS, "!after").await.unwrap();
    assert_eq!(run.next().await.text, "!after");
    let place = Place::new("mx", hs.room_channel());
    adapter.post(&place, &Reply::text(Tone::Info, "still me")).await.unwrap();
    let h = ChatUser::next(&mut fay, WAIT).await.unwrap();
    assert!(h.text.contains("still me"));
    run.stop().await.unwrap();
}

#[tokio::test]
async fn invitations_follow_the_policy_and_encrypted_rooms_get_one_notice() {
    let syncs = Arc::new(Mutex::new(0u32));
    let s2 = syncs.clone();
    let handler: Handler = Arc::new(move |r: &Req| {
        if let Some(x) = basics(r) {
            return x;
        }
        if r.method == "PUT" {
            return (200, json!({"event_id": "$notice"}).to_string(), Duration::ZERO);
        }
        if r.path.contains("/sync") {
            let n = {
                let mut g = s2.lock().unwrap();
                *g += 1;
                *g
            };
            let invite = |from: &str| {
                json!({"invite_state": {"events": [
                    {"type": "m.room.member", "state_key": BOT_USER, "sender": from, "content": {"membership": "invite"}}
                ]}})
            };
            let encrypted = |id: &str| {
                json!({"type": "m.room.encrypted", "sender": "@ana:fake", "event_id": id, "origin_server_ts": now_ms(),
                       "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "…"}})
            };
            let body = match n {
                1 => json!({"next_batch": "b1"}),
                2 => json!({"next_batch": "b2", "rooms": {
                    "invite": {"!fromana:fake": invite("@ana:fake"), "!fromeve:fake": invite("@eve:fake")},
                    "join": {"!sec:fake": {"state": {"events": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]},
                                            "timeline": {"events": [encrypted("$e1")]}}}}}),
                3 => json!({"next_batch": "b3", "rooms": {"join": {"!sec:fake": {"timeline": {"events": [encrypted("$e2")]}}}}}),
                n => json!({"next_batch": format!("b{n}")}),
            };
            return (
                200,
                body.to_string(),
                if n > 3 { Duration::from_millis(300) } else { Duration::ZERO },
            );
        }
        (404, json!({"errcode": "M_UNRECOGNIZED"}).to_string(), Duration::ZERO)
    });
    let (url, log) = fake_server(handler).await;
    let mut cfg = config(&url, "token", false);
    cfg.invites = InvitePolicy::People;
    cfg.rooms = vec![];
    let adapter = Arc::new(MatrixAdapter::new("mx", cfg, vec!["@ana:fake".into()]).unwrap());
    let state = Arc::new(MemState::default());
    let run = Running::start(&adapter, state.clone()).await;
    while *syncs.lock().unwrap() < 5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.stop().await.unwrap();
    let log = log.lock().unwrap().clone();
    let joins: Vec<&Req> = log.iter().filter(|r| r.method == "POST" && r.path.contains("/join/")).collect();
    assert_eq!(joins.len(), 1, "{joins:?}");
    assert!(joins[0].path.contains("fromana"));
    let notices: Vec<&Req> = log.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].path.contains("sec") && notices[0].body.contains("encrypted"),
        "{notices:?}"
    );
    // Remembered across restarts.
    assert!(state.load("e2e_noted").await.unwrap().contains("!sec:fake"));
}

#[tokio::test]
async fn the_python_blackbox_client_gets_an_answer() {
    let python = opsbot_testkit::chat_venv().join("bin/python");
    let has_nio = std::process::Command::new(&python)
        .args(["-c", "import nio"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nio {
        let note = "matrix-nio is not installed in the chat venv (run scripts/test.sh)";
        assert!(!opsbot_testkit::servers_required(), "{note}");
        eprintln!("SKIPPED: {note}");
        return;
    }
    let Some(hs) = synapse().await else { return };
    let _gus = hs.matrix_user("gus").await.unwrap();
    let adapter = Arc::new(MatrixAdapter::new("mx", config(&hs.url(), &hs.bot_token, false), vec![]).unwrap());
    let mut run = Running::start(&adapter, Arc::new(MemState::default())).await;
    let mut rx = std::mem::replace(&mut run.rx, mpsc::channel(1).1);
    let a = adapter.clone();
    let echo = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let _ = a.post(&e.place, &Reply::text(Tone::Success, format!("pong {}", e.text))).await;
        }
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../opsbot/tests/blackbox/matrix_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "--homeserver",
            &hs.url(),
            "--user",
            "@gus:test.local",
            "--password",
            "gus-pass",
            "--room",
            ROOM_ALIAS,
        ])
        .args([
            "--text",
            "opsbot: ping",
            "--regex",
            "^pong ping$",
            "--timeout",
            "60",
            "--bot",
            BOT_USER,
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "pong ping");
    // And a timeout is a clear failure.
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "--homeserver",
            &hs.url(),
            "--user",
            "@gus:test.local",
            "--password",
            "gus-pass",
            "--room",
            ROOM_ALIAS,
        ])
        .args(["--text", "opsbot: ping", "--regex", "never-said", "--timeout", "3"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timeout"));
    echo.abort();
    run.stop().await.unwrap();
}
