//! Routes for operators and their tools: liveness, readiness, Prometheus metrics. No token needed.

use crate::AppState;
use crate::error::ApiError;
use crate::views::{AdapterView, ErrorBody, Ready};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "ops",
    security(()),
    responses((status = 200, description = "The process is up.", body = String, content_type = "text/plain", example = "ok"))
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers, so requests can be served.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "ops",
    security(()),
    responses(
        (status = 200, description = "Ready to serve.", body = Ready),
        (status = 503, description = "The store does not answer (`not_ready`).", body = ErrorBody),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    match state.engine.store().ping().await {
        Ok(()) => Ok(Json(Ready {
            status: "ready",
            adapters: state
                .chat_health()
                .into_iter()
                .map(|h| AdapterView {
                    name: h.name,
                    kind: h.kind,
                    connected: h.connected,
                    since: h.since.to_rfc3339(),
                    last_error: h.last_error,
                    reconnects: h.reconnects,
                })
                .collect(),
        })),
        Err(e) => {
            let mut err = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "opsbot cannot reach its store, so it cannot take work now; give the error id to an admin.",
            );
            err.internal = Some(format!("store ping: {e}"));
            Err(err)
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    security(()),
    responses(
        (status = 200, description = "`opsbot_http_requests_total{route,status}`, `opsbot_api_runs_total{outcome}`, \
            `opsbot_executions{state}` and `opsbot_queue_depth` (these two read from the store at most every 5 s).", body = String, content_type = "text/plain"),
        (status = 500, description = "The store failed (`internal`).", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.exec_counts().get(state.engine.store().as_ref()).await?;
    let text = state.metrics().render(&counts, &state.chat_health());
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
    Ok(resp)
}
