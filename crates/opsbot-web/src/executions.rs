//! `/api/v1/executions`: run a job, list and read executions, cancel one — every decision through
//! [`opsbot_engine::Engine::handle`], like chat, so it is checked and audited the same way.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::metrics::RunOutcome;
use crate::views::{ApprovalPending, ErrorBody, ExecutionList, ExecutionView, RunRequest};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use opsbot_core::job::shorten;
use opsbot_core::{Envelope, ExecState, Execution, ExecutionId, UserId};
use opsbot_engine::grammar::{cli_arg, quote_arg};
use opsbot_engine::{Awaiting, Engine, Outcome};
use opsbot_store::{ExecutionFilter, Store, StoreError};
use serde::Deserialize;

use utoipa::IntoParams;

/// Executions listed when no `limit` is given.
const DEFAULT_LIMIT: u32 = 20;
/// Most executions (or audit records) listed at once (as many as the store lists at once).
pub(crate) const MAX_LIMIT: u32 = 1000;

/// The beginning of the engine's reply when the store failed under it.
const ENGINE_FAILURE: &str = "Something went wrong on my side";

/// What became of a conversation with the engine.
pub(crate) enum Conversation {
    /// An execution was queued.
    Queued(ExecutionId),
    /// A sensitive job was not confirmed; the confirmation was declined.
    NeedsConfirmation,
    /// A required parameter was missing; the question was withdrawn.
    MissingParam(String),
    /// The engine refused (a bad value, an unknown job); its reply text.
    Refused(String),
    /// A permission or a policy refused; the engine's reply text.
    Denied(String),
    /// The run waits for approval: the request's id and the engine's reply text.
    PendingApproval(i64, String),
    /// The engine failed; its error id.
    Failed(String),
    /// Anything else the engine answered (e.g. to `cancel N`).
    Answered,
}

/// The engine's error id when its outcome reports a failure of its own (its reply starts
/// "Something went wrong on my side" and names an error id, which is also in its log line).
fn engine_failure(out: &Outcome) -> Option<String> {
    out.replies.iter().find_map(|r| {
        let text = r.plain_text();
        if !text.starts_with(ENGINE_FAILURE) {
            return None;
        }
        // ASCII lower-casing keeps byte offsets, so the position holds in `text`.
        let id = text
            .to_ascii_lowercase()
            .find("error id ")
            .and_then(|at| text[at + "error id ".len()..].split_whitespace().next())
            .map(|id| id.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string())
            .filter(|id| !id.is_empty());
        Some(id.unwrap_or_else(opsbot_engine::error_id))
    })
}

fn reply_text(out: &Outcome) -> String {
    out.replies
        .iter()
        .map(|r| r.plain_text())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// Closes a dialog this caller left open in the API place (e.g. a request cut off by a crash),
/// through the engine so it is audited, so the next message is not taken as its answer.
async fn close_open_dialog(engine: &Engine, env: &Envelope) {
    match engine.store().dialog(&env.place, &env.user).await {
        Ok(Some(d)) => {
            let mut close = env.clone();
            close.text = if d.kind == "confirm" { "no".into() } else { "cancel".into() };
            let _ = engine.handle(&close).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, user = %env.user, "cannot look up an open API dialog"),
    }
}

/// Where a conversation with the engine happens.
pub(crate) enum Where {
    /// A place of this request's own (`api/USER/ID`), where no other message can arrive.
    Own,
    /// The caller's shared place `api/USER`.
    Shared,
}

/// Sends `text` from the caller and settles any question it raises: a confirmation is answered
/// `yes` when `confirm`, else `no`; a missing parameter is withdrawn with `cancel`. Runs in its
/// own task, so a client that hangs up never leaves a dialog open. In the caller's shared place
/// it runs under the caller's lock (two requests of one user never interleave there) after
/// closing any dialog left open in it.
pub(crate) async fn converse(
    state: &AppState,
    caller: &Caller,
    place: Where,
    text: String,
    confirm: bool,
) -> Result<Conversation, ApiError> {
    converse_as(state, caller, None, place, text, confirm).await
}

/// [`converse`] under a display name other than the user name (the console's signed-in name).
pub(crate) async fn converse_as(
    state: &AppState,
    caller: &Caller,
    display_name: Option<String>,
    place: Where,
    text: String,
    confirm: bool,
) -> Result<Conversation, ApiError> {
    state.metrics().message("api");
    let engine = state.engine.clone();
    let (mut env, lock) = match place {
        Where::Own => (caller.envelope(caller.request_place(), text), None),
        Where::Shared => (caller.envelope(caller.place(), text), Some(state.user_lock(&caller.user))),
    };
    if display_name.is_some() {
        env.display_name = display_name;
    }
    let state2 = state.clone();
    let task = tokio::spawn(async move {
        let _guard = match &lock {
            Some(lock) => {
                let guard = lock.lock().await;
                close_open_dialog(&engine, &env).await;
                Some(guard)
            }
            None => None,
        };
        let out = engine.handle(&env).await;
        settle(&state2, env, out, confirm).await
    });
    task.await
        .map_err(|e| ApiError::internal(format!("API conversation task failed: {e}")))
}

pub(crate) async fn settle(state: &AppState, mut env: Envelope, out: Outcome, confirm: bool) -> Conversation {
    let engine = &state.engine;
    crate::chat::deliver_elsewhere(state, &out.elsewhere).await;
    if let Some(id) = engine_failure(&out) {
        return Conversation::Failed(id);
    }
    if let Some(id) = out.approval {
        return Conversation::PendingApproval(id, reply_text(&out));
    }
    if out.denied {
        return Conversation::Denied(reply_text(&out));
    }
    match (out.queued, out.awaiting.clone()) {
        (Some(id), _) => Conversation::Queued(id),
        (None, Some(Awaiting::Confirmation)) if confirm => {
            env.text = "yes".into();
            let out = engine.handle(&env).await;
            crate::chat::deliver_elsewhere(state, &out.elsewhere).await;
            if let Some(id) = engine_failure(&out) {
                return Conversation::Failed(id);
            }
            if let Some(id) = out.approval {
                return Conversation::PendingApproval(id, reply_text(&out));
            }
            if out.denied {
                return Conversation::Denied(reply_text(&out));
            }
            match out.queued {
                Some(id) => Conversation::Queued(id),
                None => {
                    // E.g. the confirmation expired at once; leave nothing open.
                    close_open_dialog(engine, &env).await;
                    Conversation::Refused(reply_text(&out))
                }
            }
        }
        (None, Some(Awaiting::Confirmation)) => {
            env.text = "no".into();
            let _ = engine.handle(&env).await;
            Conversation::NeedsConfirmation
        }
        (None, Some(Awaiting::Param(p))) => {
            env.text = "cancel".into();
            let _ = engine.handle(&env).await;
            Conversation::MissingParam(p)
        }
        (None, None) if env.text.starts_with("run ") => Conversation::Refused(reply_text(&out)),
        (None, None) => Conversation::Answered,
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A JSON parameter value as the text a person would type.
fn scalar(what: &str, v: &serde_json::Value) -> Result<String, ApiError> {
    let kind = match v {
        serde_json::Value::String(s) => return Ok(s.clone()),
        serde_json::Value::Number(n) => return Ok(number(n)),
        serde_json::Value::Bool(b) => return Ok(b.to_string()),
        serde_json::Value::Null => "null",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    };
    Err(invalid_params(format!(
        "{what} is {kind}; a parameter value is a string, a number or a boolean. Nothing was run."
    )))
}

/// A JSON number as a person would type it: an integral one without a fraction even when
/// written as a float (`1e0`, `3.0` → `1`, `3`), any other as serde_json prints it (`1.5`), for
/// the parameter's type to accept or refuse.
fn number(n: &serde_json::Number) -> String {
    /// Floats up to 2^53 in size are integers exactly when they have no fraction.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match n.as_f64() {
        Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() <= EXACT => (f as i64).to_string(),
        _ => n.to_string(),
    }
}

fn invalid_params(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message)
}

/// The message a person would type for this request: `run JOB key=value … -- value …`, each
/// value quoted with the grammar's own rules (as `opsbot run` does), so the engine reads back
/// exactly these values. Positional values come after `--`, so they are never read as `key=value`
/// or as options.
pub(crate) fn message_text(req: &RunRequest) -> Result<String, ApiError> {
    let mut text = format!("run {}", quote_arg(&req.job));
    for (k, v) in &req.params {
        if !is_ident(k) {
            return Err(invalid_params(format!(
                "`{}` is not a parameter name: names are letters, digits and `_`, not starting with a digit. Nothing was run.",
                shorten(k, 40)
            )));
        }
        let v = scalar(&format!("`params.{k}`"), v)?;
        text.push(' ');
        text.push_str(&cli_arg(&format!("{k}={v}")));
    }
    if !req.args.is_empty() {
        text.push_str(" --");
        for (i, a) in req.args.iter().enumerate() {
            let a = scalar(&format!("`args[{i}]`"), a)?;
            text.push(' ');
            text.push_str(&quote_arg(&a));
        }
    }
    Ok(text)
}

/// Runs a job: the same steps and checks as `run JOB key=value …` in chat.
#[utoipa::path(
    post,
    path = "/api/v1/executions",
    operation_id = "create_execution",
    tag = "executions",
    request_body = RunRequest,
    responses(
        (status = 201, description = "Queued. `Location` is the execution's URL.", body = ExecutionView,
            headers(("Location" = String, description = "/api/v1/executions/{id}"))),
        (status = 400, description = "The body is not JSON or does not fit (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 202, description = "Not run yet: a policy asks for approval. The message names who must approve and until when; \
            approvers answer `approve ID` or `deny ID` in chat.", body = ApprovalPending),
        (status = 403, description = "A permission or a policy refused it (`forbidden`): the message says which rule and what would pass.", body = ErrorBody),
        (status = 409, description = "A sensitive job without `\"confirm\": true` (`confirmation_required`); nothing was run.", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB (`payload_too_large`).", body = ErrorBody),
        (status = 415, description = "The body is not `application/json` (`unsupported_media_type`).", body = ErrorBody),
        (status = 422, description = "Refused: unknown job or bad value (`refused`, the engine's own words), a required \
            parameter missing (`missing_param`), or a value that is not a string, number or boolean (`invalid_params`).", body = ErrorBody),
        (status = 500, description = "Something failed on our side (`internal`).", body = ErrorBody),
    )
)]
pub(crate) async fn create(State(state): State<AppState>, caller: Caller, ApiJson(req): ApiJson<RunRequest>) -> Result<Response, ApiError> {
    let metrics = state.metrics();
    let text = message_text(&req).inspect_err(|_| metrics.run(RunOutcome::Invalid))?;
    let job_name = state
        .engine
        .catalog()
        .get(&req.job)
        .map(|j| j.name.clone())
        .unwrap_or_else(|| shorten(&req.job, 40));
    let conv = converse(&state, &caller, Where::Own, text, req.confirm)
        .await
        .inspect_err(|_| metrics.run(RunOutcome::Error))?;
    match conv {
        Conversation::Queued(id) => {
            metrics.run(RunOutcome::Queued);
            let e = state
                .engine
                .store()
                .execution(id)
                .await?
                .ok_or_else(|| ApiError::internal(format!("execution #{id} was queued but cannot be read back")))?;
            let mut resp = (StatusCode::CREATED, Json(ExecutionView::of(&e, state.engine.catalog()))).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/executions/{id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Conversation::NeedsConfirmation => {
            metrics.run(RunOutcome::ConfirmationRequired);
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "confirmation_required",
                format!("`{job_name}` is sensitive and was not run. Send the request again with `\"confirm\": true` to run it."),
            ))
        }
        Conversation::MissingParam(p) => {
            metrics.run(RunOutcome::MissingParam);
            let what = state
                .engine
                .catalog()
                .get(&job_name)
                .and_then(|j| j.param(&p))
                .map(|spec| match &spec.help {
                    Some(h) => format!(" ({}; {h})", spec.kind.describe()),
                    None => format!(" ({})", spec.kind.describe()),
                })
                .unwrap_or_default();
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_param",
                format!("`{job_name}` needs `{p}`{what}: add it to `params`. Nothing was run."),
            ))
        }
        Conversation::Refused(text) => {
            metrics.run(RunOutcome::Refused);
            let text = if text.is_empty() {
                format!("`{job_name}` was not run.")
            } else {
                text
            };
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", text))
        }
        Conversation::Denied(text) => {
            metrics.run(RunOutcome::Forbidden);
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", text))
        }
        Conversation::PendingApproval(id, text) => {
            metrics.run(RunOutcome::ApprovalRequired);
            Ok((
                StatusCode::ACCEPTED,
                Json(ApprovalPending {
                    approval_id: id,
                    message: text,
                }),
            )
                .into_response())
        }
        Conversation::Answered => {
            metrics.run(RunOutcome::Refused);
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused",
                format!("`{job_name}` was not run."),
            ))
        }
        Conversation::Failed(id) => {
            metrics.run(RunOutcome::Error);
            Err(engine_failed(id))
        }
    }
}

pub(crate) fn engine_failed(id: String) -> ApiError {
    let mut err = ApiError::internal("the engine reported a failure (its log line has the same error id)");
    err.error_id = Some(id);
    err
}

/// Reads an execution id from the path (`12` or `#12`).
fn parse_id(raw: &str) -> Result<ExecutionId, ApiError> {
    opsbot_engine::grammar::parse_id(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{}` is not an execution id; ids are whole numbers like 12.",
            shorten(raw, 40)
        ))
    })
}

/// The execution with the id in the path, or 400/404.
pub(crate) async fn load(state: &AppState, user: &str, raw: &str) -> Result<opsbot_core::Execution, ApiError> {
    let id = parse_id(raw)?;
    let e = state
        .engine
        .store()
        .execution(id)
        .await?
        .ok_or_else(|| ApiError::no_execution(id))?;
    let (person, place) = person_of(state, user).await?;
    if !state.engine.may_view(&place, &person, &e).await.map_err(engine_error)? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "#{} is {}'s run of `{}`; seeing others' runs of it needs the `view` verb on it (`whoami` in chat shows your roles).",
                e.id, e.requester_name, e.job
            ),
        ));
    }
    Ok(e)
}

/// The person behind web user `user` (`web:USER`), and the place their API and console
/// requests are judged in (`api/USER`).
pub(crate) async fn person_of(state: &AppState, user: &str) -> Result<(opsbot_engine::Person, opsbot_core::Place), ApiError> {
    let person = state
        .engine
        .identify(&UserId::new("web", user), Some(user))
        .await
        .map_err(engine_error)?;
    Ok((person, opsbot_core::Place::new("api", user)))
}

fn engine_error(e: opsbot_engine::EngineError) -> ApiError {
    ApiError::internal(format!("cannot check permissions: {e}"))
}

/// Leaves out of a page the runs `user` may not see (a page may then hold fewer than asked;
/// `next_before` still continues after the rows read).
pub(crate) async fn visible(
    state: &AppState,
    user: &str,
    list: Vec<opsbot_core::Execution>,
) -> Result<Vec<opsbot_core::Execution>, ApiError> {
    let (person, place) = person_of(state, user).await?;
    if state.engine.views_everything(&place, &person) {
        return Ok(list);
    }
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        if state.engine.may_view(&place, &person, &e).await.map_err(engine_error)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Filters of the executions listing; empty values are ignored.
#[derive(Deserialize, IntoParams, Default, Clone)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this job.
    pub job: Option<String>,
    /// Only in this state: queued, running, succeeded, failed, cancelled, timed_out, lost.
    pub state: Option<String>,
    /// Only those requested by this account, `platform:id` (e.g. `web:ana`).
    pub user: Option<String>,
    /// Only those requested at or after this time: RFC 3339 (`2024-05-01T12:00:00Z`) or a date
    /// (`2024-05-01`, midnight UTC). A time without a zone is UTC.
    #[param(value_type = Option<String>, example = "2024-05-01")]
    pub since: Option<String>,
    /// Only those requested before this time: RFC 3339, or a date (`2024-05-31`), which
    /// includes that whole day (UTC).
    #[param(value_type = Option<String>, example = "2024-05-31")]
    pub until: Option<String>,
    /// Only with an id below this (the `next_before` of the previous page).
    #[param(value_type = Option<i64>, minimum = 1)]
    pub before: Option<String>,
    /// At most this many, 1 to 1000 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A query value, trimmed; `None` when absent or blank.
pub(crate) fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A time filter by [`opsbot_core::when::parse_time`]'s rules; the error names the field.
pub(crate) fn parse_time(field: &str, raw: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    opsbot_core::when::parse_time(raw, end_of_day).ok_or_else(|| {
        format!(
            "`{field}` is a date like 2024-05-01 or a time like 2024-05-01T12:00:00Z (RFC 3339; UTC when no zone is given); got `{}`.",
            shorten(raw.trim(), 40)
        )
    })
}

/// An account filter: `platform:id`; with `bare_is_web`, a name without a platform means
/// `web:NAME` (the console's people filter).
pub(crate) fn parse_user(field: &str, raw: &str, bare_is_web: bool) -> Result<UserId, String> {
    let raw = raw.trim();
    if let Some(u) = UserId::parse(raw) {
        return Ok(u);
    }
    if bare_is_web && !raw.contains(':') && !raw.is_empty() {
        return Ok(UserId::new("web", raw));
    }
    Err(if bare_is_web {
        format!(
            "`{field}` is a person as `platform:id` (e.g. `web:ana`, `slack:U024BE7LH`) or a web user name (`ana`); got `{}`.",
            shorten(raw, 40)
        )
    } else {
        format!(
            "`{field}` is an account as `platform:id`, e.g. `web:ana`; got `{}`.",
            shorten(raw, 40)
        )
    })
}

/// A period's start (inclusive) and end (exclusive), each optional.
pub(crate) type Period = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `since` and `until` of a query, checked to leave some time between them.
pub(crate) fn parse_period(since: &Option<String>, until: &Option<String>) -> Result<Period, String> {
    let since = given(since).map(|s| parse_time("since", s, false)).transpose()?;
    let until = given(until).map(|s| parse_time("until", s, true)).transpose()?;
    if let (Some(a), Some(b)) = (since, until)
        && a >= b
    {
        return Err("`since` is not before `until`, so nothing can match; swap them or widen the period.".into());
    }
    Ok((since, until))
}

/// A `before` id (pagination): a whole number above 0.
pub(crate) fn parse_before(raw: &str, what: &str) -> Result<i64, String> {
    raw.parse::<i64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`before` is {what} (a whole number); got `{}`.", shorten(raw, 40)))
}

/// A `limit`: 1 to [`MAX_LIMIT`].
pub(crate) fn parse_limit(raw: &str) -> Result<u32, String> {
    raw.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("`limit` is a whole number from 1 to {MAX_LIMIT}; got `{}`.", shorten(raw, 40)))
}

/// The store filter of a listing query, or what is wrong with it (for a person). Job names are
/// matched case-insensitively against the catalog (a job no longer in it is taken as written).
pub(crate) fn execution_filter(
    state: &AppState,
    q: &ListQuery,
    bare_user_is_web: bool,
    default_limit: u32,
) -> Result<ExecutionFilter, String> {
    let mut filter = ExecutionFilter {
        limit: default_limit,
        ..Default::default()
    };
    if let Some(job) = given(&q.job) {
        filter.job = Some(
            state
                .engine
                .catalog()
                .get(job)
                .map(|j| j.name.clone())
                .unwrap_or_else(|| job.to_string()),
        );
    }
    if let Some(s) = given(&q.state) {
        let names: Vec<&str> = ExecState::ALL.iter().map(|s| s.as_str()).collect();
        filter.state = Some(
            ExecState::parse(&s.to_lowercase())
                .ok_or_else(|| format!("`{}` is not a state; use one of {}.", shorten(s, 40), names.join(", ")))?,
        );
    }
    if let Some(u) = given(&q.user) {
        filter.requested_by = Some(parse_user("user", u, bare_user_is_web)?);
    }
    (filter.since, filter.until) = parse_period(&q.since, &q.until)?;
    if let Some(b) = given(&q.before) {
        filter.before_id = Some(parse_before(b, "an execution id")?);
    }
    if let Some(l) = given(&q.limit) {
        filter.limit = parse_limit(l)?;
    }
    Ok(filter)
}

/// One page of a newest-first listing and the `before` of the next (older) page, if any.
/// `fetch(before, limit)` lists up to `limit` items below `before` (or the filter's own
/// `before` when `None`); one more than asked tells whether an older page exists, and when the
/// store's cap forbids asking for one more, the extra one is looked for alone.
pub(crate) async fn paged<T, F, Fut>(limit: u32, id: fn(&T) -> i64, mut fetch: F) -> Result<(Vec<T>, Option<i64>), StoreError>
where
    F: FnMut(Option<i64>, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut list = fetch(None, limit + 1).await?;
    let more = if list.len() > limit as usize {
        list.truncate(limit as usize);
        true
    } else if list.len() == limit as usize && limit == MAX_LIMIT {
        let last = list.last().map(id);
        !fetch(last, 1).await?.is_empty()
    } else {
        false
    };
    let next_before = if more { list.last().map(id) } else { None };
    Ok((list, next_before))
}

/// One page of executions for a filter, and the `before` of the next (older) page, if any.
pub(crate) async fn page(store: &dyn Store, filter: ExecutionFilter) -> Result<(Vec<Execution>, Option<i64>), StoreError> {
    paged(
        filter.limit,
        |e: &Execution| e.id,
        |before, limit| {
            let f = ExecutionFilter {
                before_id: before.or(filter.before_id),
                limit,
                ..filter.clone()
            };
            async move { store.executions(&f).await }
        },
    )
    .await
}

/// Executions, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/executions",
    operation_id = "list_executions",
    tag = "executions",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of executions; `next_before` fetches the next.", body = ExecutionList),
        (status = 400, description = "A filter is malformed, e.g. a `since` that is neither RFC 3339 nor a date (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ExecutionList>, ApiError> {
    let filter = execution_filter(&state, &q, false, DEFAULT_LIMIT).map_err(ApiError::bad_request)?;
    let (list, next_before) = page(state.engine.store().as_ref(), filter).await?;
    let list = visible(&state, &caller.user, list).await?;
    let catalog = state.engine.catalog();
    Ok(Json(ExecutionList {
        executions: list.iter().map(|e| ExecutionView::of(e, catalog)).collect(),
        next_before,
    }))
}

/// One execution.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}",
    operation_id = "get_execution",
    tag = "executions",
    params(("id" = i64, Path, minimum = 1, description = "Execution id.")),
    responses(
        (status = 200, description = "The execution.", body = ExecutionView),
        (status = 400, description = "Not an id (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "Someone else's run of a job the caller may not `view` (`forbidden`).", body = ErrorBody),
        (status = 404, description = "No such execution (`not_found`).", body = ErrorBody),
    )
)]
pub(crate) async fn one(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<ExecutionView>, ApiError> {
    let e = load(&state, &caller.user, &id).await?;
    Ok(Json(ExecutionView::of(&e, state.engine.catalog())))
}

/// Asks an execution to stop, as `cancel ID` in chat (audited the same way): a queued one is
/// cancelled at once, a running one gets SIGTERM, then SIGKILL. Poll the execution for its end.
#[utoipa::path(
    post,
    path = "/api/v1/executions/{id}/cancel",
    operation_id = "cancel_execution",
    tag = "executions",
    params(("id" = i64, Path, minimum = 1, description = "Execution id.")),
    responses(
        (status = 202, description = "Asked to stop (or already ended); the execution as it is now.", body = ExecutionView),
        (status = 400, description = "Not an id (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "Someone else's run of a job the caller may not `view` (`forbidden`).", body = ErrorBody),
        (status = 404, description = "No such execution (`not_found`).", body = ErrorBody),
    )
)]
pub(crate) async fn cancel(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let e = load(&state, &caller.user, &id).await?;
    if let Conversation::Failed(error_id) = converse(&state, &caller, Where::Shared, format!("cancel {}", e.id), false).await? {
        return Err(engine_failed(error_id));
    }
    let e = state
        .engine
        .store()
        .execution(e.id)
        .await?
        .ok_or_else(|| ApiError::no_execution(e.id))?;
    Ok((StatusCode::ACCEPTED, Json(ExecutionView::of(&e, state.engine.catalog()))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::{Reply, Tone};

    fn outcome(text: &str) -> Outcome {
        Outcome {
            replies: vec![Reply::text(Tone::Error, text)],
            ..Default::default()
        }
    }

    #[test]
    fn engine_failures_are_recognised_with_their_error_id() {
        let old = "Something went wrong on my side and nothing was run. Error id E18f0a1b2c3d04d2 — an admin can find it in opsbot's log.";
        assert_eq!(engine_failure(&outcome(old)).as_deref(), Some("E18f0a1b2c3d04d2"));
        let new = "Something went wrong on my side (error id E18f0a1b2c3d04d2; an admin can find it in opsbot's log).";
        assert_eq!(engine_failure(&outcome(new)).as_deref(), Some("E18f0a1b2c3d04d2"));
        assert!(engine_failure(&outcome("Something went wrong on my side.")).is_some_and(|id| id.starts_with('E')));
        assert_eq!(engine_failure(&outcome("There is no job `x`.")), None);
    }

    #[test]
    fn messages_quote_values_and_put_positional_ones_after_a_separator() {
        let req: RunRequest = serde_json::from_value(serde_json::json!({
            "job": "deploy",
            "params": {"app": "my app", "n": 3, "force": true},
            "args": ["a=b", "--x"],
        }))
        .unwrap();
        assert_eq!(
            message_text(&req).unwrap(),
            r#"run deploy app="my app" force=true n=3 -- "a=b" --x"#
        );
    }
}
