//! The web chat over a real TCP server and real WebSockets: signed-in people in one channel
//! see each other's messages and the bot's replies live, the job card is updated in place, the
//! history is there on reconnect, direct chats are private, and hostile sockets are refused.

use crate::harness::TestApp;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::{SinkExt, StreamExt};
use opsbot_store::Store;
use opsbot_web::AppState;
use opsbot_web::session::{WebSettings, WebUserEntry};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tower::ServiceExt;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A chat server: the test app's engine with web users ana and bo (password "pw-NAME"), served
/// over TCP, with notices passed to the chat as `opsbot serve` does.
pub(crate) struct ChatServer {
    pub t: TestApp,
    pub state: AppState,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for ChatServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn user(name: &str) -> WebUserEntry {
    WebUserEntry {
        name: name.into(),
        display_name: name.to_uppercase(),
        hash: opsbot_core::password::hash_password(&format!("pw-{name}")).unwrap(),
    }
}

impl ChatServer {
    pub async fn start() -> ChatServer {
        Self::start_with(WebSettings::default()).await
    }

    /// With these settings, except users (ana and bo) and channels (ops, db-team).
    pub async fn start_with(base: WebSettings) -> ChatServer {
        let t = TestApp::with_worker().await;
        let settings = WebSettings {
            users: vec![user("ana"), user("bo")],
            channels: vec!["ops".into(), "db-team".into()],
            ..base
        };
        let state = AppState::with_web(t.engine.clone(), settings);
        let (tx, mut notices) = tokio::sync::mpsc::channel(64);
        tokio::spawn(Arc::clone(&t.engine).notifier(tx));
        let s2 = state.clone();
        tokio::spawn(async move {
            while let Some(n) = notices.recv().await {
                s2.deliver_notice(&n).await;
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(opsbot_web::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        ChatServer {
            t,
            state,
            addr,
            stop: Some(stop),
        }
    }

    pub async fn call(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = opsbot_web::app(self.state.clone()).oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Signs `name` in through the form; returns the session cookie and the page's CSRF token.
    pub async fn sign_in(&self, name: &str) -> (String, String) {
        let (_, headers, html) = self.call(Request::get("/login").body(Body::empty()).unwrap()).await;
        let login_cookie = set_cookie(&headers, "opsbot_login").expect("login cookie");
        let csrf = between(&html, "name=\"csrf\" value=\"", "\"").expect("csrf field");
        let form = format!("user={name}&password=pw-{name}&csrf={csrf}&next=/chat");
        let (status, headers, body) = self
            .call(
                Request::post("/login")
                    .header(header::COOKIE, format!("opsbot_login={login_cookie}"))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        let session = set_cookie(&headers, "opsbot_session").expect("session cookie");
        let (status, _, page) = self
            .call(
                Request::get("/chat")
                    .header(header::COOKIE, format!("opsbot_session={session}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("id=\"composer\""), "{page}");
        let token = between(&page, "name=\"csrf-token\" content=\"", "\"").expect("csrf meta");
        (session, token.to_string())
    }

    fn ws_request(
        &self,
        channel: &str,
        session: Option<&str>,
        csrf: &str,
        origin: Option<&str>,
    ) -> tungstenite::handshake::client::Request {
        let mut req = format!("ws://{}/chat/ws?channel={channel}&csrf={csrf}", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(s) = session {
            req.headers_mut()
                .insert(header::COOKIE, format!("opsbot_session={s}").parse().unwrap());
        }
        if let Some(o) = origin {
            req.headers_mut().insert(header::ORIGIN, o.parse().unwrap());
        }
        req
    }

    /// Opens the chat socket of a signed-in person and reads the history event.
    async fn open(&self, channel: &str, who: &(String, String)) -> (Ws, Vec<Value>) {
        let origin = format!("http://{}", self.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(self.ws_request(channel, Some(&who.0), &who.1, Some(&origin)))
            .await
            .expect("chat socket");
        let history = next_event(&mut ws).await;
        assert_eq!(history["type"], "history", "{history}");
        let msgs = history["messages"].as_array().unwrap().clone();
        (ws, msgs)
    }
}

pub(crate) fn set_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|r| r.split(';').next().unwrap_or("").to_string())
        })
        .filter(|v| !v.is_empty())
}

pub(crate) fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let at = s.find(start)? + start.len();
    let len = s[at..].find(end)?;
    Some(&s[at..at + len])
}

/// The next JSON event (pings skipped), within 20 s.
pub(crate) async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("an event within 20 s")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON event"),
            Message::Close(f) => panic!("socket closed: {f:?}"),
            _ => continue,
        }
    }
}

pub(crate) async fn say(ws: &mut Ws, text: &str) {
    ws.send(Message::text(json!({"type": "say", "text": text}).to_string()))
        .await
        .unwrap();
}

/// Reads events until one matches; returns it.
pub(crate) async fn until(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let ev = next_event(ws).await;
        if pred(&ev) {
            return ev;
        }
        seen.push(ev.to_string());
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {what}; events seen:\n{}",
            seen.join("\n")
        );
    }
}

fn card_state(ev: &Value) -> Option<&str> {
    ev["message"]["reply"]["state"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_in_a_channel_see_each_other_and_the_card_updates_in_place() {
    let s = ChatServer::start().await;
    let ana = s.sign_in("ana").await;
    let bo = s.sign_in("bo").await;
    let (mut wa, hist) = s.open("ops", &ana).await;
    assert!(hist.is_empty());
    let (mut wb, _) = s.open("ops", &bo).await;

    say(&mut wa, "run hello who=chat").await;
    for ws in [&mut wa, &mut wb] {
        let m = until(ws, "ana's message", |e| e["type"] == "message").await;
        assert_eq!(m["message"]["author"], "web:ana");
        assert_eq!(m["message"]["author_name"], "ANA");
        assert_eq!(m["message"]["text"], "run hello who=chat");
    }
    // Both see the card, then its updates, in place (same message id), to the final state.
    let mut card_id = None;
    for ws in [&mut wa, &mut wb] {
        let card = until(ws, "the job card", |e| e["type"] == "message" && e["message"]["card_for"].is_i64()).await;
        assert_eq!(card["message"]["author"], "bot");
        let id = card["message"]["id"].as_i64().unwrap();
        assert_eq!(*card_id.get_or_insert(id), id);
        let mut seen = vec![card_state(&card).unwrap().to_string()];
        while seen.last().map(String::as_str) != Some("succeeded") {
            let up = until(ws, "a card update", |e| e["type"] == "update").await;
            assert_eq!(up["message"]["id"].as_i64(), Some(id), "updated in place: {up}");
            seen.push(card_state(&up).unwrap().to_string());
        }
        // Always posted as queued; `running` may be skipped when this fast job ends before the
        // card is posted (the card then goes straight to its latest state).
        assert_eq!(seen.first().map(String::as_str), Some("queued"), "{seen:?}");
        assert!(
            seen == ["queued", "succeeded"] || seen == ["queued", "running", "succeeded"],
            "{seen:?}"
        );
        let text = serde_json::to_string(&card).unwrap();
        assert!(text.contains("cancel"), "the card has buttons: {text}");
    }
    let exec = s.t.store.executions(&Default::default()).await.unwrap();
    assert_eq!(exec.len(), 1);
    assert_eq!(exec[0].requested_by.to_string(), "web:ana");
    assert_eq!(exec[0].place.to_string(), "web/ops");

    // bo answers too; both see it.
    say(&mut wb, "help hello").await;
    for ws in [&mut wa, &mut wb] {
        until(ws, "bo's message", |e| e["type"] == "message" && e["message"]["author"] == "web:bo").await;
        let r = until(ws, "the help reply", |e| e["type"] == "message" && e["message"]["author"] == "bot").await;
        assert!(r.to_string().contains("whom to greet"), "{r}");
    }

    // A reconnecting browser gets the whole conversation, the card in its final state.
    drop(wa);
    let (_wa, hist) = s.open("ops", &ana).await;
    let texts: Vec<String> = hist.iter().map(|m| m["text"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(texts.iter().filter(|t| !t.is_empty()).count(), 2, "{texts:?}");
    let card = hist.iter().find(|m| m["card_for"].is_i64()).expect("card in history");
    assert_eq!(card["id"].as_i64(), card_id);
    assert_eq!(card["reply"]["state"], "succeeded");
    assert!(card["reply"].to_string().contains("hello chat"), "output tail on the card: {card}");

    // /metrics counts the chat's messages, its open sockets and the run's duration. (The server
    // notices ana's first socket closing on its own time: wait for it.)
    let value_in = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in {text}"))
    };
    let start = Instant::now();
    let text = loop {
        let (_, _, text) = s.call(Request::get("/metrics").body(Body::empty()).unwrap()).await;
        if value_in(&text, "opsbot_adapter_connections{adapter=\"web_chat\"}") == 2.0 || start.elapsed() > Duration::from_secs(10) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let value = |prefix: &str| value_in(&text, prefix);
    assert_eq!(value("opsbot_messages_total{adapter=\"web_chat\"}"), 2.0);
    assert_eq!(value("opsbot_adapter_up{adapter=\"web_chat\"}"), 1.0);
    assert_eq!(
        value("opsbot_adapter_connections{adapter=\"web_chat\"}"),
        2.0,
        "bo's and ana's new socket"
    );
    assert_eq!(
        value("opsbot_execution_duration_seconds_count{job=\"hello\",state=\"succeeded\"}"),
        1.0
    );
    assert!(
        text.contains("opsbot_execution_duration_seconds_bucket{job=\"hello\",state=\"succeeded\",le=\"0.5\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_chats_are_private_and_channels_are_separate() {
    let s = ChatServer::start().await;
    let ana = s.sign_in("ana").await;
    let bo = s.sign_in("bo").await;
    let (mut a_dm, _) = s.open("dm", &ana).await;
    let (mut b_dm, _) = s.open("dm", &bo).await;
    let (mut b_db, _) = s.open("db-team", &bo).await;
    say(&mut a_dm, "whoami").await;
    let r = until(&mut a_dm, "whoami reply", |e| {
        e["type"] == "message" && e["message"]["author"] == "bot"
    })
    .await;
    assert!(r.to_string().contains("web:ana"), "{r}");
    // Nothing of ana's direct chat reaches bo's direct chat or another channel.
    say(&mut b_dm, "list").await;
    let first = until(&mut b_dm, "bo's own message", |e| e["type"] == "message").await;
    assert_eq!(first["message"]["author"], "web:bo", "{first}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b_db.next()).await.is_err(),
        "db-team got an event"
    );
    let execs = s.t.store.chat_history("dm:ana", None, 10).await.unwrap();
    assert_eq!(execs.len(), 2);
    // An unknown channel is refused, as a page and as a socket.
    let (status, _, body) = s
        .call(
            Request::get("/chat/nope")
                .header(header::COOKIE, format!("opsbot_session={}", ana.0))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("#ops") && body.contains("#db-team"), "{body}");
    let err = tokio_tungstenite::connect_async(s.ws_request("dm:bo", Some(&ana.0), &ana.1, None))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, tungstenite::Error::Http(r) if r.status() == StatusCode::NOT_FOUND),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sockets_and_messages_are_refused_clearly() {
    let s = ChatServer::start().await;
    let ana = s.sign_in("ana").await;
    let status_of = |e: tungstenite::Error| match e {
        tungstenite::Error::Http(r) => r.status(),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    // No session, a wrong CSRF token, another site's origin.
    let e = tokio_tungstenite::connect_async(s.ws_request("ops", None, &ana.1, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), StatusCode::UNAUTHORIZED);
    let e = tokio_tungstenite::connect_async(s.ws_request("ops", Some(&ana.0), "0000", None))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), StatusCode::FORBIDDEN);
    let e = tokio_tungstenite::connect_async(s.ws_request("ops", Some(&ana.0), &ana.1, Some("https://evil.example")))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), StatusCode::FORBIDDEN);

    let (mut ws, _) = s.open("ops", &ana).await;
    ws.send(Message::text("not json")).await.unwrap();
    let e = until(&mut ws, "an error", |e| e["type"] == "error").await;
    assert!(e["message"].as_str().unwrap().contains("\"type\":\"say\""), "{e}");
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let e = until(&mut ws, "an error", |e| e["type"] == "error").await;
    assert!(e["message"].as_str().unwrap().contains("text"), "{e}");
    // Hostile text is only text: stored and echoed as is, never run.
    say(&mut ws, "run hello who=$(touch /tmp/opsbot-pwned)").await;
    let m = until(&mut ws, "the echo", |e| {
        e["type"] == "message" && e["message"]["author"] == "web:ana"
    })
    .await;
    assert_eq!(m["message"]["text"], "run hello who=$(touch /tmp/opsbot-pwned)");
    let r = until(&mut ws, "the refusal", |e| {
        e["type"] == "message" && e["message"]["author"] == "bot"
    })
    .await;
    assert!(r.to_string().contains("who"), "{r}");
    assert!(s.t.store.executions(&Default::default()).await.unwrap().is_empty());
    // Over the rate limit: a clear error, the message not sent.
    for i in 0..25 {
        say(&mut ws, &format!("whoami {i}")).await;
    }
    let e = until(&mut ws, "slow down", |e| e["type"] == "error").await;
    assert!(e["message"].as_str().unwrap().contains("Slow down"), "{e}");
    // A frame over the size limit closes the socket (the protocol's own refusal).
    let (mut ws2, _) = s.open("ops", &ana).await;
    let _ = ws2.send(Message::text("x".repeat(opsbot_web::chat_max_frame() + 1))).await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws2.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                _ => continue,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "an oversized frame closes the socket");

    // Signing out ends access: the page redirects and the socket is refused.
    let (status, _, _) = s
        .call(
            Request::builder()
                .method(Method::POST)
                .uri("/logout")
                .header(header::COOKIE, format!("opsbot_session={}", ana.0))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={}", ana.1)))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let e = tokio_tungstenite::connect_async(s.ws_request("ops", Some(&ana.0), &ana.1, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(e), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_typed_at_once_never_overtakes_its_question() {
    let s = ChatServer::start().await;
    let ana = s.sign_in("ana").await;
    let (mut ws, _) = s.open("ops", &ana).await;
    // `restart` is sensitive: the bot asks for `yes`. The answer is sent before the question
    // comes back; it must still be taken as the answer.
    say(&mut ws, "run restart").await;
    say(&mut ws, "yes").await;
    let card = until(&mut ws, "the job card", |e| {
        e["type"] == "message" && e["message"]["card_for"].is_i64()
    })
    .await;
    let id = card["message"]["card_for"].as_i64().unwrap();
    let e = s.t.store.execution(id).await.unwrap().unwrap();
    assert_eq!(e.job, "restart");
    let texts: Vec<String> =
        s.t.store
            .chat_history("ops", None, 10)
            .await
            .unwrap()
            .iter()
            .filter_map(|m| m.text.clone())
            .collect();
    assert_eq!(texts, ["run restart", "yes"]);
}
