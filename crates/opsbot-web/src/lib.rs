//! opsbot's HTTP door: a JSON API (`/api/v1`) that goes through the very same engine steps and
//! checks as chat and the command line, plus `/healthz`, `/readyz`, Prometheus `/metrics` and an
//! OpenAPI 3.1 document generated from the handlers.
//!
//! A request to run a job becomes the message `run JOB key=value …` from the account
//! `web:USER` (the token's user) in a place of the request's own, `api/USER/<random id>` (cancel
//! requests use `api/USER`), handled by [`Engine::handle`]; open questions (a missing parameter,
//! a confirmation) are always closed before the answer is sent, so no dialog is left behind. Tokens are stored only as their SHA-256; see [`new_token`].

#![warn(missing_docs)]

mod approvals;
mod audit;
mod auth;
mod chat;
mod console;
mod error;
mod executions;
mod hooks;
mod jobs;
mod metrics;
mod openapi;
mod ops;
mod pages;
pub mod session;
mod stream;
mod views;

use axum::Router;
use axum::routing::{any, get, post};
use opsbot_engine::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Largest request body accepted, in bytes; bigger ones get `413 payload_too_large`.
pub const MAX_BODY: usize = 64 * 1024;

/// Prefix of every API token secret.
pub const TOKEN_PREFIX: &str = "opsb_";

/// What every handler shares: the engine (and through it the catalog and the store), the
/// metrics recorder and the per-user locks that keep one user's API dialogs in `api/USER` from
/// interleaving.
#[derive(Clone)]
pub struct AppState {
    /// The engine every request goes through.
    pub engine: Arc<Engine>,
    inner: Arc<Inner>,
}

struct Inner {
    metrics: metrics::Metrics,
    /// Execution counts for `/metrics`, refreshed at most every few seconds, one scrape at a time.
    exec_counts: metrics::CountsCache,
    /// One lock per web user: a cancel request's messages happen in the user's shared place
    /// `api/USER`, so two of them must not interleave (run requests have places of their own).
    user_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Set when the server shuts down, so long-lived event streams end and let it finish.
    closing: watch::Sender<bool>,
    /// Who may sign in to the console, and how.
    web: session::WebSettings,
    /// Failed sign-in counters.
    throttle: session::Throttle,
    /// Live web chat channels.
    chat: chat::ChatHub,
    /// The chat adapters running next to the web server, if any (`opsbot serve`).
    chat_runtime: std::sync::OnceLock<Arc<opsbot_engine::chat::ChatRuntime>>,
}

impl AppState {
    /// State for an engine, with its own metrics recorder (several may live in one process),
    /// and no web users (the console then only explains how to add one).
    pub fn new(engine: Arc<Engine>) -> AppState {
        Self::with_web(engine, session::WebSettings::default())
    }

    /// State for an engine and the console's sign-in settings (see [`session::prepare`]).
    pub fn with_web(engine: Arc<Engine>, web: session::WebSettings) -> AppState {
        let (closing, _) = watch::channel(false);
        AppState {
            engine,
            inner: Arc::new(Inner {
                metrics: metrics::Metrics::new(),
                exec_counts: metrics::CountsCache::default(),
                user_locks: Mutex::new(HashMap::new()),
                closing,
                web,
                throttle: session::Throttle::default(),
                chat: chat::ChatHub::default(),
                chat_runtime: std::sync::OnceLock::new(),
            }),
        }
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// The console's sign-in settings.
    pub fn web(&self) -> &session::WebSettings {
        &self.inner.web
    }

    pub(crate) fn chat(&self) -> &chat::ChatHub {
        &self.inner.chat
    }

    /// Connects the chat adapters: messages the web door makes for their conversations go to
    /// them, and their health shows in `/readyz` and `/metrics`.
    pub fn set_chat_runtime(&self, rt: Arc<opsbot_engine::chat::ChatRuntime>) {
        let _ = self.inner.chat_runtime.set(rt);
    }

    pub(crate) fn chat_runtime(&self) -> Option<&Arc<opsbot_engine::chat::ChatRuntime>> {
        self.inner.chat_runtime.get()
    }

    /// The chat adapters' health (empty without adapters).
    pub(crate) fn chat_health(&self) -> Vec<opsbot_engine::chat::Health> {
        self.chat_runtime().map(|r| r.health()).unwrap_or_default()
    }

    /// Delivers messages meant for web chat conversations (from a chat adapter's conversation:
    /// an approval request for a web channel, an approved run's card for its web requester).
    pub async fn deliver_elsewhere(&self, list: &[opsbot_engine::Elsewhere]) {
        chat::deliver_elsewhere(self, list).await
    }

    /// Updates the web chat's job cards for a notice about a run asked for in the web chat
    /// (others are ignored). `opsbot serve` passes every notice here.
    /// Final notices also feed the execution duration histogram of `/metrics`.
    pub async fn deliver_notice(&self, notice: &opsbot_engine::Notice) {
        if notice.state.is_final()
            && let Some(ms) = notice.duration_ms
        {
            self.metrics().finished(&notice.job, notice.state, ms as f64 / 1000.0);
        }
        chat::deliver_notice(self, notice).await
    }

    pub(crate) fn throttle(&self) -> &session::Throttle {
        &self.inner.throttle
    }

    pub(crate) fn exec_counts(&self) -> &metrics::CountsCache {
        &self.inner.exec_counts
    }

    /// The lock serialising `user`'s conversations with the engine through the API.
    pub(crate) fn user_lock(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.inner.user_locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(user.to_string()).or_default().clone()
    }

    /// A receiver that turns `true` when the server starts shutting down.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }
}

/// Every route of the server, with body limit, JSON error envelopes, panic catching and metrics.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/jobs", get(jobs::list))
        .route("/jobs/{name}", get(jobs::one))
        .route("/executions", post(executions::create).get(executions::list))
        .route("/executions/{id}", get(executions::one))
        .route("/executions/{id}/cancel", post(executions::cancel))
        .route("/executions/{id}/log", get(stream::log))
        .route("/executions/{id}/log/stream", get(stream::log_stream))
        .route("/audit", get(audit::list))
        .route("/approvals/{id}", get(approvals::one))
        .route("/openapi.json", get(openapi::document));
    Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/assets/{name}", get(pages::asset))
        .merge(console_routes())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1", api)
        .fallback(error::not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        // Chat platforms' requests, with a larger body limit of their own.
        .merge(
            Router::new()
                .route("/hooks/{name}/{*rest}", any(hooks::hook))
                .layer(tower_http::limit::RequestBodyLimitLayer::new(hooks::MAX_HOOK_BODY)),
        )
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panicked))
        .layer(axum::middleware::from_fn(error::envelope_net))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// The console's pages and the web chat (HTML, signed in by session cookie).
fn console_routes() -> Router<AppState> {
    Router::new().merge(console::routes()).merge(chat::routes())
}

/// Most connections served at once; one over the limit is closed at once (and logged).
pub const MAX_CONNECTIONS: usize = 4096;

/// How long a client may take to send a request's headers — and how long an idle keep-alive
/// connection stays open — before the connection is closed (slow or stalled clients must not
/// hold connections forever).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight (event streams and chat sockets are ended) and returns.
///
/// HTTP/1.1 (with WebSocket upgrades) and HTTP/2 through hyper's own connection builder rather
/// than `axum::serve`, which sets no timeouts: headers must arrive within
/// [`HEADER_READ_TIMEOUT`], idle keep-alive connections close after it, and at most
/// [`MAX_CONNECTIONS`] are served at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, state, shutdown, Limits::default()).await
}

/// The connection limits of [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// [`serve`] with other limits (tests use short ones).
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let closing = state.inner.clone();
    let router = app(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_read_timeout))
        .max_concurrent_streams(256);
    let mut last_full_warning: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(limit = limits.max_connections, peer = %peer, "too many open connections; refusing new ones");
                last_full_warning = Some(std::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            router.clone().oneshot(req)
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    tracing::info!("web server: shutting down");
    closing.closing.send_replace(true);
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A fresh API token: the secret to show once (`opsb_` and 64 hex digits from the operating
/// system's CSPRNG) and the SHA-256 (hex) to store. Panics only if the OS has no randomness.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator is unavailable");
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = token_hash(&secret);
    (secret, hash)
}

/// The SHA-256 (lower-case hex) of a token secret, as stored and looked up.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Largest WebSocket message the web chat accepts from a browser, in bytes.
pub fn chat_max_frame() -> usize {
    chat::MAX_FRAME
}

/// The OpenAPI document of this server, as served on `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64, "{a}");
        assert!(a[TOKEN_PREFIX.len()..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(ha, token_hash(&a));
        assert_eq!(ha.len(), 64);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
