//! `/api/v1/audit`: the decision records, newest first, filtered, as JSON or JSON lines.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery};
use crate::executions::{given, parse_before, parse_limit, parse_period, parse_user};
use crate::views::{AuditList, AuditView, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use opsbot_core::job::shorten;
use opsbot_store::{AuditFilter, AuditRecord, Store, StoreError};
use serde::Deserialize;
use utoipa::IntoParams;

/// Records returned when no `limit` is given.
const DEFAULT_LIMIT: u32 = 50;

/// Which records, how many and in which format; empty values are ignored.
#[derive(Deserialize, IntoParams, Default, Clone)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only decisions on requests of this account, `platform:id` (e.g. `web:ana`).
    #[param(example = "web:ana")]
    pub actor: Option<String>,
    /// Only this action: `run`, `cancel`, `recover`, …
    #[param(example = "run")]
    pub action: Option<String>,
    /// Only this job.
    pub job: Option<String>,
    /// Only this decision: `accepted`, `refused`, `asked`, `confirmed`, `abandoned`, `expired`,
    /// `cancelled`, `lost`, …
    #[param(example = "refused")]
    pub decision: Option<String>,
    /// Only records about this execution.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub execution: Option<String>,
    /// Only at or after this time: RFC 3339 (`2024-05-01T12:00:00Z`) or a date (`2024-05-01`,
    /// midnight UTC). A time without a zone is UTC.
    #[param(value_type = Option<String>, example = "2024-05-01")]
    pub since: Option<String>,
    /// Only before this time: RFC 3339, or a date (`2024-05-31`), which includes that whole day (UTC).
    #[param(value_type = Option<String>, example = "2024-05-31")]
    pub until: Option<String>,
    /// Only with a record id below this (the `next_before` of the previous page).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub before: Option<String>,
    /// At most this many, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// `json` (default): one object `{"records": […], "next_before"}`; `jsonl`: one record per line (`application/x-ndjson`).
    #[param(value_type = Option<String>, example = "jsonl")]
    pub format: Option<String>,
}

/// The store filter of an audit query, or what is wrong with it (for a person). With
/// `bare_actor_is_web`, an actor without a platform means `web:NAME` (the console). Job names
/// are matched case-insensitively against the catalog.
pub(crate) fn audit_filter(state: &AppState, q: &AuditQuery, bare_actor_is_web: bool, default_limit: u32) -> Result<AuditFilter, String> {
    let mut f = AuditFilter {
        limit: default_limit,
        ..Default::default()
    };
    if let Some(a) = given(&q.actor) {
        f.actor = Some(parse_user("actor", a, bare_actor_is_web)?);
    }
    f.action = given(&q.action).map(str::to_lowercase);
    f.decision = given(&q.decision).map(str::to_lowercase);
    if let Some(job) = given(&q.job) {
        f.job = Some(
            state
                .engine
                .catalog()
                .get(job)
                .map(|j| j.name.clone())
                .unwrap_or_else(|| job.to_string()),
        );
    }
    if let Some(e) = given(&q.execution) {
        f.execution_id = Some(
            opsbot_engine::grammar::parse_id(e)
                .ok_or_else(|| format!("`execution` is an execution id like 12; got `{}`.", shorten(e, 40)))?,
        );
    }
    (f.since, f.until) = parse_period(&q.since, &q.until)?;
    if let Some(b) = given(&q.before) {
        f.before_id = Some(parse_before(b, "an audit record id")?);
    }
    if let Some(l) = given(&q.limit) {
        f.limit = parse_limit(l)?;
    }
    Ok(f)
}

/// One page of audit records and the `before` of the next (older) page, if any.
/// Reading the audit trail needs the `view` verb on every job (it tells who ran what).
pub(crate) async fn may_read(state: &AppState, user: &str) -> Result<(), ApiError> {
    let (person, place) = crate::executions::person_of(state, user).await?;
    if state.engine.views_everything(&place, &person) {
        return Ok(());
    }
    Err(ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "forbidden",
        "Reading the audit trail needs the `view` verb on every job; `whoami` in chat shows your roles.",
    ))
}

pub(crate) async fn page(store: &dyn Store, filter: AuditFilter) -> Result<(Vec<AuditRecord>, Option<i64>), StoreError> {
    crate::executions::paged(
        filter.limit,
        |r: &AuditRecord| r.id,
        |before, limit| {
            let f = AuditFilter {
                before_id: before.or(filter.before_id),
                limit,
                ..filter.clone()
            };
            async move { store.audit_query(&f).await }
        },
    )
    .await
}

/// Audit records, newest first: every decision of the engine, from chat, the CLI, the API and
/// the web console alike.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "list_audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "Newest first: `{\"records\": […], \"next_before\"}`, or with `format=jsonl` one `AuditView` object per line.",
            content((AuditList = "application/json"), (AuditView = "application/x-ndjson"))),
        (status = 400, description = "A malformed filter, `limit` or `format` (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "The caller may not `view` every job, which reading the audit trail needs (`forbidden`).", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller, ApiQuery(q): ApiQuery<AuditQuery>) -> Result<Response, ApiError> {
    may_read(&state, &caller.user).await?;
    let jsonl = match given(&q.format).unwrap_or("") {
        "" | "json" => false,
        "jsonl" | "ndjson" => true,
        f => {
            return Err(ApiError::bad_request(format!(
                "`format` is `json` or `jsonl`; got `{}`.",
                shorten(f, 40)
            )));
        }
    };
    let filter = audit_filter(&state, &q, false, DEFAULT_LIMIT).map_err(ApiError::bad_request)?;
    let (records, next_before) = page(state.engine.store().as_ref(), filter).await?;
    let records: Vec<AuditView> = records.iter().map(AuditView::of).collect();
    if !jsonl {
        return Ok(Json(AuditList { records, next_before }).into_response());
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
