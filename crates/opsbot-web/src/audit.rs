//! `/api/v1/audit`: the decision records, newest first, as JSON or JSON lines.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery};
use crate::views::{AuditList, AuditView, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use opsbot_core::job::shorten;
use serde::Deserialize;
use utoipa::IntoParams;

/// Records returned when no `limit` is given.
const DEFAULT_LIMIT: u32 = 50;
/// Most records returned at once.
const MAX_LIMIT: u32 = 1000;

/// How many records and in which format.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// At most this many, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `json` (default): one object `{"records": […]}`; `jsonl`: one record per line (`application/x-ndjson`).
    #[param(value_type = Option<String>, example = "jsonl")]
    format: Option<String>,
}

/// The newest audit records: every decision of the engine, from chat, the CLI and the API alike.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "list_audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "Newest first: `{\"records\": […]}`, or with `format=jsonl` one `AuditView` object per line.",
            content((AuditList = "application/json"), (AuditView = "application/x-ndjson"))),
        (status = 400, description = "A bad `limit` or `format` (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>, _caller: Caller, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Response, ApiError> {
    let limit = match q.limit.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => l.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`limit` is a whole number from 1 to {MAX_LIMIT}; got `{}`.",
                shorten(l, 40)
            ))
        })?,
    };
    let jsonl = match q.format.as_deref().map(str::trim).unwrap_or("") {
        "" | "json" => false,
        "jsonl" | "ndjson" => true,
        f => {
            return Err(ApiError::bad_request(format!(
                "`format` is `json` or `jsonl`; got `{}`.",
                shorten(f, 40)
            )));
        }
    };
    let records: Vec<AuditView> = state.engine.store().audit_records(limit).await?.iter().map(AuditView::of).collect();
    if !jsonl {
        return Ok(Json(AuditList { records }).into_response());
    }
    let mut body = String::new();
    for r in &records {
        body.push_str(&serde_json::to_string(r).map_err(ApiError::internal)?);
        body.push('\n');
    }
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}
