//! A server under test: an engine on an in-memory store, the router driven with `oneshot`, and
//! (for end-to-end tests) a real worker running jobs as local processes.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use opsbot_core::config::{Config, LoadOptions};
use opsbot_engine::Engine;
use opsbot_runners::ExecRunner;
use opsbot_store::{SqliteStore, Store};
use opsbot_web::{AppState, app};
use opsbot_worker::{Worker, WorkerOptions};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tower::ServiceExt;

pub const CONFIG: &str = r#"
[bot]
confirm_timeout = "1m"

# Every account may do everything here; the access rules have tests of their own.
[access]
default_role = "admin"

[people.ana]
accounts = ["web:ana"]
roles = ["admin"]
[people.bo]
accounts = ["web:bo"]
roles = ["admin"]
[people.bob]
accounts = ["web:bob"]
roles = ["admin"]
# One person with a narrow role, for the visibility tests.
[people.lim]
accounts = ["web:lim"]
roles = ["limited"]
[roles.limited]
allow = [{ verbs = ["run"], jobs = ["hello"] }]

[jobs.hello]
description = "Says hello"
examples = ["hello who=ana"]
timeout = "30s"
runner = { type = "exec", argv = ["echo", "hello {{ who }}"] }
[[jobs.hello.params]]
name = "who"
pattern = '[a-z]+'
default = "world"
help = "whom to greet"

[jobs.deploy]
description = "Deploy an app to an environment"
aliases = ["deploy {app} to {env}"]
concurrency = 2
timeout = "1m"
runner = { type = "exec", argv = ["echo", "deploying {{ app }} to {{ env }} x{{ replicas }}"] }
[[jobs.deploy.params]]
name = "app"
type = "enum"
values = ["api", "web"]
required = true
help = "which application"
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["staging", "prod"]
synonyms = { prod = ["production"] }
required = true
[[jobs.deploy.params]]
name = "replicas"
type = "int"
min = 1
max = 5
default = 1
[[jobs.deploy.params]]
name = "force"
type = "bool"
default = false
[[jobs.deploy.params]]
name = "token"
secret = true
default = "s3cret"

[jobs.restart]
description = "Restart the service"
sensitive = true
runner = { type = "exec", argv = ["echo", "restarted"] }

[jobs.sleepy]
description = "Sleeps for a long time"
kill_grace = "1s"
runner = { type = "exec", argv = ["sleep", "30"] }

[jobs.lines]
description = "Prints a few lines slowly"
runner = { type = "exec", argv = ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done; echo oops >&2"] }
"#;

/// The server under test.
pub struct TestApp {
    pub app: Router,
    pub state: AppState,
    pub engine: Arc<Engine>,
    pub store: SqliteStore,
    /// A valid token acting as `web:ana`.
    pub token: String,
    worker: Option<watch::Sender<bool>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(w) = &self.worker {
            let _ = w.send(true);
        }
    }
}

/// One answer.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The `error.code` of an error envelope, checking the envelope's shape on the way.
    pub fn code(&self) -> String {
        let j = self.json();
        let err = &j["error"];
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {j}");
        assert!(err["error_id"].as_str().is_some_and(|m| m.starts_with('E')), "no error id: {j}");
        err["code"].as_str().unwrap_or_else(|| panic!("no code: {j}")).to_string()
    }
    pub fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap_or_default().to_string()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }
}

impl TestApp {
    /// A server without a worker: executions stay queued.
    pub async fn new() -> TestApp {
        Self::build(false).await
    }

    /// A server with a worker running jobs as local processes.
    pub async fn with_worker() -> TestApp {
        Self::build(true).await
    }

    async fn build(worker: bool) -> TestApp {
        let cfg = Config::parse(CONFIG, Path::new("/tmp/opsbot-web-test.toml"), LoadOptions::default()).expect("config");
        let store = SqliteStore::memory().await.expect("store");
        let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
        let catalog = Arc::new(cfg.catalog);
        let engine = Arc::new(Engine::new(catalog.clone(), cfg.bot, dyn_store.clone()).with_access(cfg.access));
        let worker = worker.then(|| {
            let (tx, rx) = watch::channel(false);
            let w = Worker::new(dyn_store.clone(), catalog, Arc::new(ExecRunner::new()), WorkerOptions::new(4));
            tokio::spawn(w.run(rx, Duration::from_secs(2)));
            tx
        });
        let state = AppState::new(engine.clone());
        let mut t = TestApp {
            app: app(state.clone()),
            state,
            engine,
            store,
            token: String::new(),
            worker,
        };
        t.token = t.token_for("ana").await;
        t
    }

    /// A new token acting as `web:USER`.
    pub async fn token_for(&self, user: &str) -> String {
        let (secret, hash) = opsbot_web::new_token();
        self.store.create_token(user, "test", &hash).await.expect("create token");
        secret
    }

    /// Sends a request as is.
    pub async fn call(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.expect("router is infallible");
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
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

    /// A request with this app's token.
    pub fn req(&self, method: Method, path: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(self.req(Method::GET, path).body(Body::empty()).expect("request")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<Body>) -> Resp {
        self.call(
            self.req(Method::POST, path)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.into())
                .expect("request"),
        )
        .await
    }

    /// Runs a job and returns the new execution's id (asserting 201).
    pub async fn run(&self, body: Value) -> i64 {
        let r = self.post("/api/v1/executions", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r.json()["id"].as_i64().expect("id")
    }

    /// Polls an execution until it is over; returns its JSON.
    pub async fn wait_final(&self, id: i64) -> Value {
        let start = Instant::now();
        loop {
            let r = self.get(&format!("/api/v1/executions/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            let j = r.json();
            if !matches!(j["state"].as_str(), Some("queued" | "running")) {
                return j;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "#{id} did not finish: {j}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
