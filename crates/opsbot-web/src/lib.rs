//! opsbot's HTTP door: a JSON API (`/api/v1`) that goes through the very same engine steps and
//! checks as chat and the command line, plus `/healthz`, `/readyz`, Prometheus `/metrics` and an
//! OpenAPI 3.1 document generated from the handlers.
//!
//! A request to run a job becomes the message `run JOB key=value …` from the account
//! `web:USER` (the token's user) in a place of the request's own, `api/USER/<random id>` (cancel
//! requests use `api/USER`), handled by [`Engine::handle`]; open questions (a missing parameter,
//! a confirmation) are always closed before the answer is sent, so no dialog is left behind. Tokens are stored only as their SHA-256; see [`new_token`].

#![warn(missing_docs)]

mod audit;
mod auth;
mod error;
mod executions;
mod jobs;
mod metrics;
mod openapi;
mod ops;
mod stream;
mod views;

use axum::Router;
use axum::routing::{get, post};
use opsbot_engine::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
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
}

impl AppState {
    /// State for an engine, with its own metrics recorder (several may live in one process).
    pub fn new(engine: Arc<Engine>) -> AppState {
        let (closing, _) = watch::channel(false);
        AppState {
            engine,
            inner: Arc::new(Inner {
                metrics: metrics::Metrics::new(),
                exec_counts: metrics::CountsCache::default(),
                user_locks: Mutex::new(HashMap::new()),
                closing,
            }),
        }
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
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
        .route("/openapi.json", get(openapi::document));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .nest("/api/v1", api)
        .fallback(error::not_found)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panicked))
        .layer(axum::middleware::from_fn(error::envelope_net))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight (event streams are ended) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = state.inner.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("web server: shutting down");
        closing.closing.send_replace(true);
    };
    axum::serve(listener, app(state)).with_graceful_shutdown(signal).await
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
