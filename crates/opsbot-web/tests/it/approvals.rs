//! Approvals over the API and the web chat, on a config with people, roles and an approval
//! rule for prod deploys: a request that needs approval is not run (202), one without the right
//! is refused (403); in the chat the approval card reaches the requester's channel and the
//! `[access] notify` channel, a lead's `approve N` from her direct chat starts the run, whose job
//! card appears in the requester's channel, and nobody approves their own request.

use crate::chat::{Ws, between, next_event, say, set_cookie, until};
use crate::harness::Resp;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::SinkExt;
use opsbot_core::config::{Config, LoadOptions};
use opsbot_engine::Engine;
use opsbot_runners::ExecRunner;
use opsbot_store::{ApprovalState, SqliteStore, Store};
use opsbot_web::session::{WebSettings, WebUserEntry};
use opsbot_web::{AppState, app};
use opsbot_worker::{Worker, WorkerOptions};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;

/// Ana may deploy anywhere, but prod deploys need a lead's approval; Bo may deploy to staging
/// only; Lea is a lead. Accounts nobody lists are guests. Approval requests are also posted in
/// the web chat's #approvals.
const CONFIG: &str = r#"
[bot]
name = "opsbot"

[web]
channels = ["ops", "approvals"]

[access]
default_role = "guest"
notify = ["web/approvals"]

[people.ana]
name = "Ana"
accounts = ["web:ana"]
roles = ["deployer"]
[people.bo]
name = "Bo"
accounts = ["web:bo"]
roles = ["junior"]
[people.lea]
name = "Lea"
accounts = ["web:lea"]
roles = ["lead"]

[roles.deployer]
allow = [{ verbs = ["run", "view"], jobs = ["deploy", "hello"] }]
[roles.junior]
allow = [{ verbs = ["run", "view"], jobs = "deploy", params = { env = "staging" } }]
[roles.lead]
allow = [{ verbs = "*", jobs = "*" }]

[[policy.approval]]
name = "prod-changes"
jobs = ["deploy"]
params = { env = "prod" }
approvers = ["lead"]
expires = "30m"

[jobs.hello]
runner = { type = "exec", argv = ["echo", "hello"] }

[jobs.deploy]
description = "Deploy an app to an environment"
timeout = "1m"
runner = { type = "exec", argv = ["echo", "deploying {{ app }} to {{ env }}"] }
[[jobs.deploy.params]]
name = "app"
type = "enum"
values = ["api", "web"]
required = true
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["staging", "prod"]
synonyms = { prod = ["production"] }
required = true
"#;

/// A server on [`CONFIG`], built the way `opsbot serve` builds it: the engine with the config's
/// access rules, a worker running jobs as local processes, notices passed to the web chat, and
/// the router served over TCP. Web users ana, bo and lea sign in with "pw-NAME".
struct Server {
    state: AppState,
    store: SqliteStore,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    worker: watch::Sender<bool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.worker.send(true);
    }
}

fn user(name: &str) -> WebUserEntry {
    WebUserEntry {
        name: name.into(),
        display_name: format!("{}{}", name[..1].to_uppercase(), &name[1..]),
        hash: opsbot_core::password::hash_password(&format!("pw-{name}")).unwrap(),
    }
}

impl Server {
    async fn start() -> Server {
        let cfg = Config::parse(CONFIG, Path::new("/tmp/opsbot-approvals-test.toml"), LoadOptions::default()).expect("config");
        assert_eq!(cfg.access.notify.len(), 1, "notify is read");
        let store = SqliteStore::memory().await.expect("store");
        let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
        let catalog = Arc::new(cfg.catalog);
        let engine = Arc::new(Engine::new(catalog.clone(), cfg.bot, dyn_store.clone()).with_access(cfg.access));
        let (worker, stopped_worker) = watch::channel(false);
        let w = Worker::new(dyn_store, catalog, Arc::new(ExecRunner::new()), WorkerOptions::new(4));
        tokio::spawn(w.run(stopped_worker, Duration::from_secs(2)));
        let settings = WebSettings {
            users: vec![user("ana"), user("bo"), user("lea")],
            channels: cfg.web.channels.clone(),
            ..WebSettings::default()
        };
        let state = AppState::with_web(engine.clone(), settings);
        let (tx, mut notices) = tokio::sync::mpsc::channel(64);
        tokio::spawn(Arc::clone(&engine).notifier(tx));
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
        Server {
            state,
            store,
            addr,
            stop: Some(stop),
            worker,
        }
    }

    async fn token_for(&self, user: &str) -> String {
        let (secret, hash) = opsbot_web::new_token();
        self.store.create_token(user, "test", &hash).await.expect("create token");
        secret
    }

    async fn call(&self, req: Request<Body>) -> Resp {
        let resp = app(self.state.clone()).oneshot(req).await.expect("router is infallible");
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(30), http_body_util::BodyExt::collect(body))
            .await
            .expect("body within 30 s")
            .expect("body")
            .to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// POST /api/v1/executions with `token`.
    async fn run_as(&self, token: &str, body: Value) -> Resp {
        self.call(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/executions")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Signs `name` in through the form; returns the session cookie and the page's CSRF token.
    async fn sign_in(&self, name: &str) -> (String, String) {
        let r = self.call(Request::get("/login").body(Body::empty()).unwrap()).await;
        let login_cookie = set_cookie(&r.headers, "opsbot_login").expect("login cookie");
        let html = r.text();
        let csrf = between(&html, "name=\"csrf\" value=\"", "\"").expect("csrf field");
        let form = format!("user={name}&password=pw-{name}&csrf={csrf}&next=/chat");
        let r = self
            .call(
                Request::post("/login")
                    .header(header::COOKIE, format!("opsbot_login={login_cookie}"))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        let session = set_cookie(&r.headers, "opsbot_session").expect("session cookie");
        let r = self
            .call(
                Request::get("/chat")
                    .header(header::COOKIE, format!("opsbot_session={session}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let page = r.text();
        let token = between(&page, "name=\"csrf-token\" content=\"", "\"").expect("csrf meta");
        (session, token.to_string())
    }

    /// Opens a signed-in person's chat socket on `channel` (`dm` for their direct chat) and
    /// reads the history event; returns the socket and the history.
    async fn open(&self, channel: &str, who: &(String, String)) -> (Ws, Vec<Value>) {
        let mut req = format!("ws://{}/chat/ws?channel={channel}&csrf={}", self.addr, who.1)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert(header::COOKIE, format!("opsbot_session={}", who.0).parse().unwrap());
        req.headers_mut()
            .insert(header::ORIGIN, format!("http://{}", self.addr).parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("chat socket");
        let history = next_event(&mut ws).await;
        assert_eq!(history["type"], "history", "{history}");
        let msgs = history["messages"].as_array().unwrap().clone();
        (ws, msgs)
    }
}

/// The next message by the bot.
async fn bot_says(ws: &mut Ws, what: &str) -> Value {
    until(ws, what, |e| e["type"] == "message" && e["message"]["author"] == "bot").await
}

/// The commands of a reply's buttons (`reply.blocks[].buttons[].command`).
fn button_commands(reply: &Value) -> Vec<String> {
    reply["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["kind"] == "buttons")
        .flat_map(|b| b["buttons"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["command"].as_str().map(str::to_string))
        .collect()
}

/// The approval request id from an approval card's status (`approval request 7 — pending`).
fn request_id(reply: &Value) -> i64 {
    let text = reply.to_string();
    let at = text
        .find("approval request ")
        .unwrap_or_else(|| panic!("not an approval card: {text}"));
    text[at + "approval request ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no request id in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_api_answers_202_for_approval_and_403_without_the_right() {
    let s = Server::start().await;
    let ana = s.token_for("ana").await;
    let bo = s.token_for("bo").await;
    let zed = s.token_for("zed").await;
    let prod = json!({"job": "deploy", "params": {"app": "web", "env": "prod"}});

    // Ana may deploy to prod, after a lead's approval: 202 with the request and who must approve.
    let r = s.run_as(&ana, prod.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let j = r.json();
    let approval_id = j["approval_id"].as_i64().unwrap_or_else(|| panic!("approval_id: {j}"));
    let message = j["message"].as_str().unwrap_or_default();
    assert!(message.contains("prod-changes"), "names the policy: {message}");
    assert!(message.contains("`lead`"), "names the approvers: {message}");
    assert!(
        message.contains(&format!("approve {approval_id}")),
        "says how to approve: {message}"
    );
    assert!(r.header("location").is_empty(), "no execution to point to");
    let a = s.store.approval(approval_id).await.unwrap().expect("the request is stored");
    assert_eq!(a.state, ApprovalState::Pending);
    assert_eq!(a.requested_by.to_string(), "web:ana");
    assert_eq!(a.job, "deploy");
    assert_eq!(a.params.get("env").map(String::as_str), Some("prod"));
    // The request reaches the notify channel, with buttons for the approvers.
    let posted = s.store.chat_history("approvals", None, 10).await.unwrap();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let card = serde_json::to_value(&posted[0].reply).unwrap();
    assert_eq!(
        button_commands(&card),
        [format!("approve {approval_id}"), format!("deny {approval_id}")],
        "{card}"
    );

    // Bo may deploy to staging only: 403 `forbidden`, naming the rule that would allow it.
    let r = s.run_as(&bo, prod.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.code(), "forbidden");
    let m = r.message();
    assert!(m.contains("Not allowed") && m.contains("env=staging"), "{m}");
    // A web user no person lists is a guest: 403 too.
    let r = s.run_as(&zed, prod.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.code(), "forbidden");
    assert!(r.message().contains("web:zed"), "{}", r.message());

    // Ana can follow her request through the API; Bo (who may neither approve nor view prod
    // deploys) may not see it.
    let get = |token: &str, path: String| {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let r = s.call(get(&ana, format!("/api/v1/approvals/{approval_id}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!((v["state"].as_str(), v["job"].as_str()), (Some("pending"), Some("deploy")), "{v}");
    assert!(v["needs"].as_str().unwrap_or_default().contains("prod-changes"), "{v}");
    assert!(v["execution_id"].is_null(), "{v}");
    let r = s.call(get(&bo, format!("/api/v1/approvals/{approval_id}"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = s.call(get(&ana, "/api/v1/approvals/9999".into())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = s.call(get(&ana, "/api/v1/approvals/x".into())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // None of them created an execution, and only Ana's request is open.
    assert!(s.store.executions(&Default::default()).await.unwrap().is_empty());
    assert_eq!(s.store.approvals(true, 10).await.unwrap().len(), 1);
    assert_eq!(s.store.chat_history("approvals", None, 10).await.unwrap().len(), 1);

    // Without the approval rule in the way, Ana's run starts at once (201).
    let r = s
        .run_as(&ana, json!({"job": "deploy", "params": {"app": "web", "env": "staging"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_in_the_web_chat_reach_approvers_and_start_the_run_in_the_requesters_channel() {
    let s = Server::start().await;
    let ana = s.sign_in("ana").await;
    let lea = s.sign_in("lea").await;
    let (mut a_ops, _) = s.open("ops", &ana).await;
    let (mut l_approvals, hist) = s.open("approvals", &lea).await;
    assert!(hist.is_empty());
    let (mut l_dm, _) = s.open("dm", &lea).await;

    // Ana asks in #ops: the run waits; the approval card with Approve/Deny is posted there…
    say(&mut a_ops, "run deploy app=web env=prod").await;
    let card = bot_says(&mut a_ops, "the approval card in #ops").await;
    let reply = &card["message"]["reply"];
    let id = request_id(reply);
    assert_eq!(button_commands(reply), [format!("approve {id}"), format!("deny {id}")], "{reply}");
    assert!(card["message"]["card_for"].is_null(), "not a job card: {card}");
    let text = reply.to_string();
    assert!(text.contains("prod-changes") && text.contains("`lead`"), "{text}");
    assert!(s.store.executions(&Default::default()).await.unwrap().is_empty(), "nothing ran");
    // …and in #approvals, where Lea sees it live.
    let notified = bot_says(&mut l_approvals, "the approval card in #approvals").await;
    let nreply = &notified["message"]["reply"];
    assert_eq!(request_id(nreply), id);
    assert_eq!(button_commands(nreply), [format!("approve {id}"), format!("deny {id}")]);

    // Ana cannot approve her own request.
    say(&mut a_ops, &format!("approve {id}")).await;
    let refused = bot_says(&mut a_ops, "the refusal of self-approval").await;
    let rtext = refused.to_string();
    assert!(rtext.contains("someone else must approve"), "{rtext}");
    assert_eq!(
        s.store.approval(id).await.unwrap().unwrap().state,
        ApprovalState::Pending,
        "still open"
    );
    assert!(s.store.executions(&Default::default()).await.unwrap().is_empty(), "nothing ran");

    // Lea approves from her direct chat: she is told it started…
    say(&mut l_dm, &format!("approve {id}")).await;
    let told = bot_says(&mut l_dm, "Lea's confirmation").await;
    let ttext = told["message"]["reply"].to_string();
    assert!(ttext.contains("approved") && ttext.contains("started"), "{ttext}");
    assert!(ttext.contains("Ana"), "for whom: {ttext}");
    // …and Ana's #ops gets the job card of the run.
    let job_card = until(&mut a_ops, "the job card in #ops", |e| {
        e["type"] == "message" && e["message"]["card_for"].is_i64()
    })
    .await;
    let exec_id = job_card["message"]["card_for"].as_i64().unwrap();
    assert_eq!(job_card["message"]["author"], "bot");
    assert!(ttext.contains(&format!("#{exec_id}")), "Lea is told the run's id: {ttext}");
    let e = s.store.execution(exec_id).await.unwrap().expect("the execution exists");
    assert_eq!(e.job, "deploy");
    assert_eq!(e.requested_by.to_string(), "web:ana", "the run is Ana's");
    assert_eq!(e.place.to_string(), "web/ops");
    assert_eq!(e.params.get("env").map(String::as_str), Some("prod"));
    let a = s.store.approval(id).await.unwrap().unwrap();
    assert_eq!(a.state, ApprovalState::Approved);
    assert_eq!(a.execution_id, Some(exec_id));
    // The card follows the run to its end, in place.
    let card_msg = job_card["message"]["id"].as_i64();
    let mut state = job_card["message"]["reply"]["state"].as_str().unwrap_or_default().to_string();
    while state != "succeeded" {
        let up = until(&mut a_ops, "a card update", |e| e["type"] == "update").await;
        assert_eq!(up["message"]["id"].as_i64(), card_msg, "updated in place: {up}");
        state = up["message"]["reply"]["state"].as_str().unwrap_or_default().to_string();
        assert!(matches!(state.as_str(), "running" | "succeeded"), "{up}");
    }
    // Only the one run; a second approval is refused as already decided.
    assert_eq!(s.store.executions(&Default::default()).await.unwrap().len(), 1);
    say(&mut l_dm, &format!("approve {id}")).await;
    let again = bot_says(&mut l_dm, "the refusal of a second approval").await;
    assert!(again.to_string().contains("already approved"), "{again}");
    assert_eq!(s.store.executions(&Default::default()).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_in_the_web_chat_only_approvers_vote_and_a_denial_reaches_the_requester() {
    let s = Server::start().await;
    let ana = s.sign_in("ana").await;
    let bo = s.sign_in("bo").await;
    let lea = s.sign_in("lea").await;
    let (mut a_ops, _) = s.open("ops", &ana).await;
    say(&mut a_ops, "run deploy app=api env=production").await;
    let id = request_id(&bot_says(&mut a_ops, "the approval card").await["message"]["reply"]);

    // Bo sees the card in #approvals but may not vote on it.
    let (mut b_approvals, hist) = s.open("approvals", &bo).await;
    assert_eq!(hist.len(), 1, "the card is in #approvals: {hist:?}");
    assert_eq!(request_id(&hist[0]["reply"]), id);
    say(&mut b_approvals, &format!("approve {id}")).await;
    let refused = bot_says(&mut b_approvals, "Bo's refusal").await.to_string();
    assert!(refused.contains(&format!("You may not vote on request {id}")), "{refused}");
    assert_eq!(s.store.approval(id).await.unwrap().unwrap().state, ApprovalState::Pending);

    // Lea denies it with a reason, pressing the card's button in #approvals: Ana is told in
    // #ops, and nothing runs.
    let (mut l_approvals, _) = s.open("approvals", &lea).await;
    l_approvals
        .send(Message::text(
            json!({"type": "say", "text": format!("deny {id} not during the incident"), "button": format!("deny {id}")}).to_string(),
        ))
        .await
        .unwrap();
    let told = bot_says(&mut l_approvals, "Lea's confirmation").await.to_string();
    assert!(told.contains("denied by Lea") && told.contains("not during the incident"), "{told}");
    let ana_told = bot_says(&mut a_ops, "the denial in #ops").await.to_string();
    assert!(
        ana_told.contains(&format!("Request {id}")) && ana_told.contains("denied by Lea") && ana_told.contains("Nothing was run"),
        "{ana_told}"
    );
    assert_eq!(s.store.approval(id).await.unwrap().unwrap().state, ApprovalState::Denied);
    assert!(s.store.executions(&Default::default()).await.unwrap().is_empty());

    // Ana asks again and withdraws it herself with `deny N`.
    say(&mut a_ops, "run deploy app=api env=prod").await;
    let id2 = request_id(&bot_says(&mut a_ops, "the second approval card").await["message"]["reply"]);
    assert_ne!(id, id2);
    say(&mut a_ops, &format!("deny {id2}")).await;
    let withdrawn = bot_says(&mut a_ops, "the withdrawal").await.to_string();
    assert!(withdrawn.contains(&format!("Request {id2} withdrawn")), "{withdrawn}");
    assert_eq!(s.store.approval(id2).await.unwrap().unwrap().state, ApprovalState::Withdrawn);
    // A withdrawn request cannot be approved any more.
    say(&mut l_approvals, &format!("approve {id2}")).await;
    let late = until(&mut l_approvals, "the refusal of a late approval", |e| {
        e["type"] == "message" && e["message"]["author"] == "bot" && e.to_string().contains(&format!("Request {id2} is already"))
    })
    .await;
    assert!(late.to_string().contains("withdrawn"), "{late}");
    assert!(s.store.executions(&Default::default()).await.unwrap().is_empty());
}
