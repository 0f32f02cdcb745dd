//! The web console's pages: runs (the list with its filters, one run with its timeline and live
//! log, cancel and re-run), the job catalog with a run form per job, and the audit log.
//!
//! Server-rendered HTML that works without JavaScript (`console.js` only follows a running log).
//! Every action is a message to the engine from `web:USER`, exactly as the API sends it — a run
//! in a place of its own (`api/USER/<random>`), a cancel in `api/USER` — so it gets the same
//! checks, confirmations and audit as chat. Every form carries the session's CSRF token; secret
//! parameter values are never sent to the browser.

use crate::AppState;
use crate::audit::{self, AuditQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::executions::{self, Conversation, ListQuery, Where, given};
use crate::pages::{PageError, PageUser, check_csrf, error_page, render, urlencode};
use crate::session::SignedIn;
use crate::views::{HIDDEN, RunRequest, redact, rfc3339};
use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use minijinja::{Value, context};
use opsbot_core::job::{Catalog, JobSpec, ParamKind, ParamSpec, shorten};
use opsbot_core::{ExecState, Execution, OutputLine, Params, Stream};
use opsbot_engine::present;
use opsbot_store::{AuditFilter, AuditRecord, StoreError};
use std::collections::{BTreeMap, HashMap};

/// Rows per page of the runs and audit lists.
const PAGE_SIZE: u32 = 50;
/// Output lines an execution page shows when it is rendered (the download has them all).
const LOG_LINES: usize = 2000;
/// Audit records of one execution shown in its timeline.
const TIMELINE_RECORDS: u32 = 200;

/// Routes of the console.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/executions", get(executions_page))
        .route("/executions/{id}", get(execution_page))
        .route("/executions/{id}/cancel", get(back_to_execution).post(cancel))
        .route("/executions/{id}/rerun", get(back_to_execution).post(rerun))
        .route("/jobs", get(jobs_page))
        .route("/jobs/{name}", get(job_page))
        .route("/jobs/{name}/run", get(back_to_job).post(run))
        .route("/audit", get(audit_page))
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// What a template sees of a row type.
trait ToValue {
    fn value(&self) -> Value;
}

/// A list for a template.
fn values<T: ToValue>(items: &[T]) -> Value {
    Value::from(items.iter().map(ToValue::value).collect::<Vec<_>>())
}

/// A time for people: UTC, to the second.
fn shown_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A state as a badge shows it (`timed out`).
fn state_label(s: ExecState) -> String {
    s.as_str().replace('_', " ")
}

/// A URL for an `href`/`action` attribute. The URLs here are built from percent-encoded parts
/// only, so they need no escaping but `&` (minijinja would also write every `/` as `&#x2f;`).
fn url(s: String) -> Value {
    debug_assert!(
        s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~/?=&%".contains(c)),
        "not a percent-encoded URL: {s}"
    );
    Value::from_safe_string(s.replace('&', "&amp;"))
}

/// A query string from pairs, leaving out empty values.
/// The address of a listing's next (older) page: the same filters, `before` its last id.
fn next_page(path: &str, filters: &[(&str, Option<&str>)], before: i64) -> String {
    let b = before.to_string();
    let mut pairs = filters.to_vec();
    pairs.push(("before", Some(&b)));
    format!("{path}?{}", query_string(&pairs))
}

fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.trim().is_empty()).map(|v| format!("{k}={}", urlencode(v.trim()))))
        .collect();
    parts.join("&")
}

/// A form's value by name (the first one).
fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Whether a checkbox was ticked.
fn ticked(form: &[(String, String)], name: &str) -> bool {
    matches!(field(form, name).trim().to_ascii_lowercase().as_str(), "on" | "1" | "true" | "yes")
}

/// An unreadable form body: a page, not the API's JSON error.
fn bad_form(who: &SignedIn, e: FormRejection) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        Some(who),
        "Not done",
        &format!("The form could not be read ({}); nothing was done.", e.body_text()),
    )
}

/// An API error met while serving a page, as a page.
fn api_error_page(who: &SignedIn, e: ApiError) -> Response {
    if e.status.is_server_error() {
        if let Some(id) = e.error_id {
            return engine_failed_page(who, &id);
        }
        return error_page(e.status, Some(who), "Error", &e.internal.unwrap_or(e.message));
    }
    let title = match e.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        _ => "Not done",
    };
    error_page(e.status, Some(who), title, &e.message)
}

/// The engine failed; its error id is the one in its log line.
fn engine_failed_page(who: &SignedIn, id: &str) -> Response {
    tracing::error!(error_id = %id, "the engine reported a failure to a console request");
    let mut resp = render(
        "error.html",
        Some(who),
        "",
        context! {
            title => "Error",
            message => "Something went wrong on our side and nothing was done; give the error id below to an admin (it is in opsbot's log).",
            tone => "error",
            error_id => id,
        },
    );
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp
}

fn with_status(mut resp: Response, status: StatusCode) -> Response {
    *resp.status_mut() = status;
    resp
}

/// `name=value` pairs of an execution's params in the job's declared order (then any others),
/// secret values (and values of params the job no longer declares) hidden.
fn shown_params(catalog: &Catalog, job: &str, params: &Params) -> Vec<(String, String)> {
    let mut shown = redact(catalog, job, params);
    let mut out = Vec::new();
    if let Some(spec) = catalog.get(job) {
        for p in &spec.params {
            if let Some(v) = shown.remove(&p.name) {
                out.push((p.name.clone(), v));
            }
        }
    }
    out.extend(shown);
    out
}

/// `name=value …` in one line for lists.
fn params_summary(pairs: &[(String, String)]) -> String {
    let s: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = shorten(v, 40);
            if v.is_empty() || v.chars().any(char::is_whitespace) {
                format!("{k}={v:?}")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    shorten(&s.join(" "), 120)
}

/// The caller the engine sees for a signed-in person (`web:NAME`, as through the API).
fn caller(who: &SignedIn) -> Caller {
    Caller { user: who.user.clone() }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// One row of the runs list.
struct ExecRow {
    id: i64,
    job: String,
    params: String,
    state: &'static str,
    state_label: String,
    requester: String,
    requested_by: String,
    created: String,
    created_iso: String,
    duration: Option<String>,
}

impl ToValue for ExecRow {
    fn value(&self) -> Value {
        context! {
            id => self.id,
            job => self.job.clone(),
            params => self.params.clone(),
            state => self.state,
            state_label => self.state_label.clone(),
            requester => self.requester.clone(),
            requested_by => self.requested_by.clone(),
            created => self.created.clone(),
            created_iso => self.created_iso.clone(),
            duration => self.duration.clone(),
        }
    }
}

impl ExecRow {
    fn of(e: &Execution, catalog: &Catalog) -> Self {
        ExecRow {
            id: e.id,
            job: e.job.clone(),
            params: params_summary(&shown_params(catalog, &e.job, &e.params)),
            state: e.state.as_str(),
            state_label: state_label(e.state),
            requester: e.requester_name.clone(),
            requested_by: e.requested_by.to_string(),
            created: shown_time(e.created_at),
            created_iso: rfc3339(e.created_at),
            duration: e.duration_ms.map(present::duration),
        }
    }
}

/// `GET /executions`: runs, newest first, filtered by job, state, person and period.
async fn executions_page(
    State(state): State<AppState>,
    PageUser(who): PageUser,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let (q, filter) = match q {
        Ok(Query(q)) => {
            let f = executions::execution_filter(&state, &q, true, PAGE_SIZE);
            (q, f)
        }
        Err(e) => (
            ListQuery::default(),
            Err(format!("The filters could not be read: {}.", e.body_text())),
        ),
    };
    let catalog = state.engine.catalog();
    let (rows, next, error) = match filter {
        Ok(f) => {
            let (list, next) = executions::page(state.engine.store().as_ref(), f).await?;
            let list = match executions::visible(&state, &who.user, list).await {
                Ok(l) => l,
                Err(err) => return Ok(api_error_page(&who, err)),
            };
            (list.iter().map(|e| ExecRow::of(e, catalog)).collect::<Vec<_>>(), next, None)
        }
        Err(msg) => (Vec::new(), None, Some(msg)),
    };
    let filters = [
        ("job", given(&q.job)),
        ("state", given(&q.state)),
        ("user", given(&q.user)),
        ("since", given(&q.since)),
        ("until", given(&q.until)),
        ("limit", given(&q.limit)),
    ];
    let next_url = next.map(|n| next_page("/executions", &filters, n));
    let filtered = filters.iter().any(|(_, v)| v.is_some()) || given(&q.before).is_some();
    let resp = render(
        "executions.html",
        Some(&who),
        "executions",
        context! {
            rows => values(&rows),
            next_url => next_url.map(url),
            error => error.clone(),
            filtered => filtered,
            paged => given(&q.before).is_some(),
            f => context! {
                job => given(&q.job).unwrap_or(""),
                state => given(&q.state).map(str::to_lowercase).unwrap_or_default(),
                user => given(&q.user).unwrap_or(""),
                since => given(&q.since).unwrap_or(""),
                until => given(&q.until).unwrap_or(""),
            },
            states => ExecState::ALL.iter().map(|s| context! { value => s.as_str(), label => state_label(*s) }).collect::<Vec<_>>(),
            job_names => catalog.jobs().iter().map(|j| j.name.clone()).collect::<Vec<_>>(),
        },
    );
    Ok(if error.is_some() {
        with_status(resp, StatusCode::BAD_REQUEST)
    } else {
        resp
    })
}

/// One step of an execution's timeline.
struct Step {
    at: String,
    at_iso: String,
    what: String,
    who: Option<String>,
    detail: Option<String>,
    tone: &'static str,
    sort: DateTime<Utc>,
}

impl ToValue for Step {
    fn value(&self) -> Value {
        context! {
            at => self.at.clone(),
            at_iso => self.at_iso.clone(),
            what => self.what.clone(),
            who => self.who.clone(),
            detail => self.detail.clone(),
            tone => self.tone,
        }
    }
}

/// The tone of an audit decision.
fn decision_tone(decision: &str) -> &'static str {
    match decision {
        "accepted" | "confirmed" => "success",
        "refused" | "lost" => "error",
        "abandoned" | "expired" | "cancelled" => "warning",
        _ => "info",
    }
}

fn audit_step(r: &AuditRecord) -> Step {
    Step {
        at: shown_time(r.at),
        at_iso: rfc3339(r.at),
        what: format!("{} {}", r.action, r.decision),
        who: Some(format!("{} ({})", r.actor_name, r.actor)),
        detail: r.reason.clone(),
        tone: decision_tone(&r.decision),
        sort: r.at,
    }
}

/// The audit records of the questions asked before the execution was queued (a missing value, a
/// confirmation): they have no execution id yet. They are the requester's records for this job
/// in the same place, just before it was queued, back to the first that is not a question.
async fn questions_before(state: &AppState, e: &Execution) -> Result<Vec<AuditRecord>, StoreError> {
    let earlier = state
        .engine
        .store()
        .audit_query(&AuditFilter {
            actor: Some(e.requested_by.clone()),
            job: Some(e.job.clone()),
            until: Some(e.created_at + chrono::Duration::milliseconds(1)),
            limit: 50,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    for r in earlier {
        if r.place != e.place || r.execution_id == Some(e.id) {
            continue;
        }
        if r.action == "run" && r.execution_id.is_none() && matches!(r.decision.as_str(), "asked" | "confirmed") {
            out.push(r);
        } else {
            break;
        }
    }
    Ok(out)
}

/// An execution's life: queued, the engine's decisions about it, started, finished.
async fn timeline(state: &AppState, e: &Execution) -> Result<Vec<Step>, StoreError> {
    let mut steps: Vec<Step> = questions_before(state, e).await?.iter().rev().map(audit_step).collect();
    steps.push(Step {
        at: shown_time(e.created_at),
        at_iso: rfc3339(e.created_at),
        what: "queued".into(),
        who: Some(format!("{} ({})", e.requester_name, e.requested_by)),
        detail: Some(format!("asked in {}", e.place)),
        tone: "info",
        sort: e.created_at,
    });
    let mut records = state
        .engine
        .store()
        .audit_query(&AuditFilter {
            execution_id: Some(e.id),
            limit: TIMELINE_RECORDS,
            ..Default::default()
        })
        .await?;
    records.reverse();
    // The engine records a cancel of a queued run (and a lost run) just after the state changed;
    // the end is shown after that record, as its consequence.
    let ended_by = records
        .iter()
        .filter(|r| {
            matches!(
                (r.action.as_str(), r.decision.as_str()),
                ("cancel", "cancelled") | ("recover", "lost")
            )
        })
        .map(|r| r.at)
        .max();
    steps.extend(records.iter().map(audit_step));
    if let Some(t) = e.started_at {
        steps.push(Step {
            at: shown_time(t),
            at_iso: rfc3339(t),
            what: "started".into(),
            who: None,
            detail: e.worker.as_ref().map(|w| format!("on worker {w}")),
            tone: "progress",
            sort: t,
        });
    }
    if let Some(t) = e.finished_at {
        let mut detail = Vec::new();
        if let Some(c) = e.exit_code {
            detail.push(format!("exit code {c}"));
        }
        if let Some(ms) = e.duration_ms {
            detail.push(format!("took {}", present::duration(ms)));
        }
        if let Some(d) = &e.detail {
            detail.push(d.clone());
        }
        steps.push(Step {
            at: shown_time(t),
            at_iso: rfc3339(t),
            what: format!("finished: {}", state_label(e.state)),
            who: None,
            detail: (!detail.is_empty()).then(|| detail.join(" · ")),
            tone: match e.state {
                ExecState::Succeeded => "success",
                ExecState::Cancelled => "warning",
                _ => "error",
            },
            sort: ended_by.map_or(t, |c| c.max(t)),
        });
    }
    // Stable: steps at the same millisecond keep the order above.
    steps.sort_by_key(|s| s.sort);
    Ok(steps)
}

/// One output line on the page.
struct LogLine {
    cls: &'static str,
    text: String,
}

impl ToValue for LogLine {
    fn value(&self) -> Value {
        context! { cls => self.cls, text => self.text.clone() }
    }
}

impl LogLine {
    fn of(l: &OutputLine) -> Self {
        let (cls, prefix) = match l.stream {
            Stream::Stdout => ("out", ""),
            Stream::Stderr => ("err", "[stderr] "),
            Stream::System => ("sys", "[opsbot] "),
        };
        LogLine {
            cls,
            text: format!("{prefix}{}\n", l.text),
        }
    }
}

/// What a console page says after an action, by the code in its `?flash=` (fixed texts only,
/// so a link cannot make the page say something else).
fn flash_of(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "cancelled" => ("warning", "Cancelled: it had not started yet and will not run."),
        "stopping" => (
            "warning",
            "Asked to stop: its processes get SIGTERM, then SIGKILL if they linger. The state changes when it has stopped.",
        ),
        "ended" => ("info", "It had already ended; there was nothing to cancel."),
        _ => return None,
    })
}

#[derive(serde::Deserialize, Default)]
struct FlashQuery {
    flash: Option<String>,
}

/// A problem to show on an execution page (a refused re-run).
struct PageProblem {
    status: StatusCode,
    message: String,
}

/// Renders an execution page.
async fn show_execution(
    state: &AppState,
    who: &SignedIn,
    e: &Execution,
    flash: Option<&str>,
    problem: Option<PageProblem>,
) -> Result<Response, PageError> {
    let catalog = state.engine.catalog();
    let job = catalog.get(&e.job);
    let (lines, total) = state.engine.store().output_tail(e.id, LOG_LINES).await?;
    let steps = timeline(state, e).await?;
    let params: Vec<_> = shown_params(catalog, &e.job, &e.params)
        .into_iter()
        .map(|(name, value)| context! { secret => value == HIDDEN, name => name, value => value })
        .collect();
    let flash = flash.and_then(flash_of);
    let live = !e.state.is_final();
    let resp = render(
        "execution.html",
        Some(who),
        "executions",
        context! {
            e => context! {
                id => e.id,
                job => e.job.clone(),
                state => e.state.as_str(),
                state_label => state_label(e.state),
                requester_name => e.requester_name.clone(),
                requested_by => e.requested_by.to_string(),
                place => e.place.to_string(),
                created => shown_time(e.created_at),
                created_iso => rfc3339(e.created_at),
                started => e.started_at.map(shown_time),
                finished => e.finished_at.map(shown_time),
                exit_code => e.exit_code,
                duration => e.duration_ms.map(present::duration),
                cpu => e.cpu_ms.map(present::duration),
                max_rss_kb => e.max_rss_kb,
                detail => e.detail.clone(),
                worker => e.worker.clone(),
                cancel_requested => e.cancel_requested,
            },
            job_known => job.is_some(),
            sensitive => job.is_some_and(|j| j.sensitive),
            job_url => url(format!("/jobs/{}", urlencode(&e.job))),
            runs_url => url(format!("/executions?job={}", urlencode(&e.job))),
            params => params,
            timeline => values(&steps),
            log => values(&lines.iter().map(LogLine::of).collect::<Vec<_>>()),
            log_total => total,
            log_skipped => total.saturating_sub(lines.len() as u64),
            live => live,
            flash => flash.map(|f| f.1),
            flash_tone => flash.map(|f| f.0),
            rerun_error => problem.as_ref().map(|p| p.message.clone()),
        },
    );
    Ok(match problem {
        Some(p) => with_status(resp, p.status),
        None => resp,
    })
}

/// `GET /executions/{id}`.
async fn execution_page(
    State(state): State<AppState>,
    PageUser(who): PageUser,
    Path(id): Path<String>,
    q: Result<Query<FlashQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let e = match executions::load(&state, &who.user, &id).await {
        Ok(e) => e,
        Err(err) => return Ok(api_error_page(&who, err)),
    };
    let flash = q.ok().and_then(|Query(q)| q.flash);
    show_execution(&state, &who, &e, flash.as_deref(), None).await
}

/// `GET` on an action's URL (e.g. after signing in again): back to the page it belongs to.
async fn back_to_execution(Path(id): Path<String>) -> Response {
    match opsbot_engine::grammar::parse_id(&id) {
        Some(id) => Redirect::to(&format!("/executions/{id}")).into_response(),
        None => Redirect::to("/executions").into_response(),
    }
}

async fn back_to_job(Path(name): Path<String>) -> Response {
    Redirect::to(&format!("/jobs/{}", urlencode(&name))).into_response()
}

/// What every action on an execution checks first: a readable form with the session's CSRF
/// token, and an execution that exists. The page to show when not.
async fn action_form(
    state: &AppState,
    who: &SignedIn,
    id: &str,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<(Vec<(String, String)>, Execution), Response> {
    let form = form.map_err(|e| bad_form(who, e))?.0;
    check_csrf(who, field(&form, "csrf"))?;
    let e = executions::load(state, &who.user, id)
        .await
        .map_err(|err| api_error_page(who, err))?;
    Ok((form, e))
}

/// `POST /executions/{id}/cancel`: `cancel N` through the engine, as in chat.
async fn cancel(
    State(state): State<AppState>,
    PageUser(who): PageUser,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let (_, e) = match action_form(&state, &who, &id, form).await {
        Ok(x) => x,
        Err(page) => return Ok(page),
    };
    match executions::converse_as(
        &state,
        &caller(&who),
        Some(who.display_name.clone()),
        Where::Shared,
        format!("cancel {}", e.id),
        false,
    )
    .await
    {
        Ok(Conversation::Failed(error_id)) => return Ok(engine_failed_page(&who, &error_id)),
        Ok(_) => {}
        Err(err) => return Ok(api_error_page(&who, err)),
    }
    let now = state.engine.store().execution(e.id).await?;
    let code = match now.map(|n| n.state) {
        _ if e.state.is_final() => "ended",
        Some(ExecState::Cancelled) if e.state == ExecState::Queued => "cancelled",
        // It ended on its own before the request reached it.
        Some(s) if s.is_final() && s != ExecState::Cancelled => "ended",
        _ => "stopping",
    };
    Ok(Redirect::to(&format!("/executions/{}?flash={code}", e.id)).into_response())
}

/// `POST /executions/{id}/rerun`: `run JOB` with the execution's stored values (secret ones
/// included: they never leave the server), through the engine, as a new request of the person
/// signed in. A sensitive job needs the form's confirmation box.
async fn rerun(
    State(state): State<AppState>,
    PageUser(who): PageUser,
    Path(id): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let (form, e) = match action_form(&state, &who, &id, form).await {
        Ok(x) => x,
        Err(page) => return Ok(page),
    };
    let confirm = ticked(&form, "confirm");
    let req = RunRequest {
        job: e.job.clone(),
        params: e
            .params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
        args: Vec::new(),
        confirm,
    };
    let problem = match run_as(&state, &who, &req, "Tick the confirmation box and re-run it.").await {
        Ok(page) => return Ok(page),
        Err(problem) => problem,
    };
    show_execution(&state, &who, &e, None, Some(problem)).await
}

/// Runs a request through the engine as the signed-in person (in a place of its own, as the
/// API does). `Ok`: the page to answer with — the new run's page, or an error page for a failure
/// on our side; `Err`: why nothing was queued, to show on the form (`confirm_hint` for a
/// sensitive job left unconfirmed).
async fn run_as(state: &AppState, who: &SignedIn, req: &RunRequest, confirm_hint: &str) -> Result<Response, PageProblem> {
    let outcome = match executions::message_text(req) {
        Ok(text) => executions::converse_as(state, &caller(who), Some(who.display_name.clone()), Where::Own, text, req.confirm).await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(Conversation::Queued(id)) => Ok(Redirect::to(&format!("/executions/{id}")).into_response()),
        Ok(Conversation::Failed(error_id)) => Ok(engine_failed_page(who, &error_id)),
        Ok(other) => Err(refusal(state.engine.catalog(), &req.job, other, confirm_hint)),
        Err(err) if err.status.is_server_error() => Ok(api_error_page(who, err)),
        Err(err) => Err(PageProblem {
            status: err.status,
            message: err.message,
        }),
    }
}

/// What to say when the engine did not queue a run.
fn refusal(catalog: &Catalog, job_name: &str, conv: Conversation, confirm_hint: &str) -> PageProblem {
    let job = catalog.get(job_name);
    let name = job.map(|j| j.name.as_str()).unwrap_or(job_name);
    match conv {
        Conversation::NeedsConfirmation => PageProblem {
            status: StatusCode::CONFLICT,
            message: format!("`{name}` is sensitive and was not run. {confirm_hint}"),
        },
        Conversation::MissingParam(p) => {
            let what = job
                .and_then(|j| j.param(&p))
                .map(|spec| match &spec.help {
                    Some(h) => format!(" ({}; {h})", spec.kind.describe()),
                    None => format!(" ({})", spec.kind.describe()),
                })
                .unwrap_or_default();
            PageProblem {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: format!("`{name}` needs `{p}`{what}. Nothing was run."),
            }
        }
        Conversation::Refused(text) if !text.is_empty() => PageProblem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: text,
        },
        Conversation::Denied(text) => PageProblem {
            status: StatusCode::FORBIDDEN,
            message: text,
        },
        Conversation::PendingApproval(_, text) => PageProblem {
            status: StatusCode::ACCEPTED,
            message: text,
        },
        _ => PageProblem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: format!("`{name}` was not run."),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// `GET /jobs`: the catalog.
async fn jobs_page(State(state): State<AppState>, PageUser(who): PageUser) -> Response {
    let (person, place) = match executions::person_of(&state, &who.user).await {
        Ok(x) => x,
        Err(err) => return api_error_page(&who, err),
    };
    let jobs: Vec<_> = state
        .engine
        .catalog()
        .jobs()
        .iter()
        .filter(|j| state.engine.may_run(&place, &person, j))
        .map(|j| {
            let params: Vec<String> = j
                .params
                .iter()
                .map(|p| if p.required { p.name.clone() } else { format!("{}?", p.name) })
                .collect();
            context! {
                name => j.name.clone(),
                url => url(format!("/jobs/{}", urlencode(&j.name))),
                runs_url => url(format!("/executions?job={}", urlencode(&j.name))),
                description => j.description.clone(),
                params => params.join(", "),
                sensitive => j.sensitive,
                timeout => present::duration(j.timeout.as_millis() as i64),
            }
        })
        .collect();
    render("jobs.html", Some(&who), "jobs", context! { jobs => jobs })
}

/// One choice of a select.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

impl ToValue for Choice {
    fn value(&self) -> Value {
        context! { value => self.value.clone(), label => self.label.clone(), selected => self.selected }
    }
}

/// One input of a run form.
struct FormField {
    /// The parameter's name.
    label: String,
    /// The form field's name, `param.NAME`.
    name: String,
    id: String,
    /// `select`, `number`, `text` or `password`.
    input: &'static str,
    kind: &'static str,
    required: bool,
    secret: bool,
    help: Option<String>,
    allowed: String,
    pattern: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    placeholder: Option<String>,
    choices: Vec<Choice>,
    value: String,
}

impl ToValue for FormField {
    fn value(&self) -> Value {
        context! {
            label => self.label.clone(),
            name => self.name.clone(),
            id => self.id.clone(),
            input => self.input,
            kind => self.kind,
            required => self.required,
            secret => self.secret,
            help => self.help.clone(),
            allowed => self.allowed.clone(),
            pattern => self.pattern.clone(),
            min => self.min,
            max => self.max,
            placeholder => self.placeholder.clone(),
            choices => values(&self.choices),
            value => self.value.clone(),
        }
    }
}

/// The first choice of a select: what leaving it alone means.
fn empty_choice(p: &ParamSpec, selected: bool, shown_default: Option<String>) -> Choice {
    let label = match (shown_default, p.required) {
        (Some(d), _) => format!("default ({d})"),
        (None, true) => "choose…".to_string(),
        (None, false) => "not set".to_string(),
    };
    Choice {
        value: String::new(),
        label,
        selected,
    }
}

fn form_field(p: &ParamSpec, value: Option<&str>) -> FormField {
    // Secret values are never sent back, not even the default.
    let value = if p.secret { "" } else { value.unwrap_or("") };
    let shown_default = p.default.as_ref().map(|d| if p.secret { HIDDEN.to_string() } else { d.clone() });
    let mut allowed = p.kind.describe();
    if let Some(c) = allowed.get(..1) {
        allowed = format!("{}{}", c.to_uppercase(), &allowed[1..]);
    }
    let mut f = FormField {
        label: p.name.clone(),
        name: format!("param.{}", p.name),
        id: format!("param-{}", p.name),
        input: "text",
        kind: p.kind.name(),
        required: p.required && p.default.is_none(),
        secret: p.secret,
        help: p.help.clone(),
        allowed,
        pattern: None,
        min: None,
        max: None,
        placeholder: shown_default.as_ref().map(|d| format!("default: {d}")),
        choices: Vec::new(),
        value: value.to_string(),
    };
    let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    match &p.kind {
        ParamKind::Enum { values } => {
            f.input = "select";
            // A synonym typed earlier selects its value.
            let canonical = p.normalize(value).ok();
            f.choices.push(empty_choice(p, value.is_empty(), shown_default));
            for v in values {
                let label = if v.synonyms.is_empty() {
                    v.value.clone()
                } else {
                    format!("{} (also {})", v.value, v.synonyms.join(", "))
                };
                f.choices.push(Choice {
                    selected: canonical.as_deref().is_some_and(|c| same(c, &v.value)),
                    value: v.value.clone(),
                    label,
                });
            }
        }
        ParamKind::Bool => {
            f.input = "select";
            let canonical = p.normalize(value).ok();
            f.choices.push(empty_choice(p, value.is_empty(), shown_default));
            for (v, label) in [("true", "yes (true)"), ("false", "no (false)")] {
                f.choices.push(Choice {
                    value: v.into(),
                    label: label.into(),
                    selected: canonical.as_deref() == Some(v),
                });
            }
        }
        ParamKind::Int { min, max } => {
            f.input = "number";
            f.min = *min;
            f.max = *max;
        }
        ParamKind::String { pattern } => {
            f.input = if p.secret { "password" } else { "text" };
            f.pattern = pattern.as_ref().map(|re| {
                re.as_str()
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(re.as_str())
                    .to_string()
            });
        }
    }
    if p.secret && f.input != "select" {
        f.input = "password";
    }
    f
}

/// Renders a job's page with its run form.
fn show_job(
    who: &SignedIn,
    job: &JobSpec,
    given_values: &HashMap<String, String>,
    error: Option<String>,
    secrets_dropped: bool,
    pending: bool,
) -> Response {
    let fields: Vec<FormField> = job
        .params
        .iter()
        .map(|p| form_field(p, given_values.get(&p.name).map(String::as_str)))
        .collect();
    render(
        "job.html",
        Some(who),
        "jobs",
        context! {
            job => context! {
                name => job.name.clone(),
                description => job.description.clone(),
                aliases => job.aliases.clone(),
                examples => job.examples.clone(),
                sensitive => job.sensitive,
                timeout => present::duration(job.timeout.as_millis() as i64),
                concurrency => job.concurrency,
            },
            action => url(format!("/jobs/{}/run", urlencode(&job.name))),
            runs_url => url(format!("/executions?job={}", urlencode(&job.name))),
            fields => values(&fields),
            error => error.clone(),
            pending => pending,
            secrets_dropped => secrets_dropped,
        },
    )
}

fn no_job(state: &AppState, who: &SignedIn, name: &str) -> Response {
    let shown = shorten(name, 40);
    let names = state.engine.catalog().jobs().iter().map(|j| j.name.as_str());
    let msg = match opsbot_core::job::closest(name, names) {
        Some(s) => format!("There is no job `{shown}`. Did you mean `{s}`?"),
        None => format!("There is no job `{shown}`."),
    };
    error_page(StatusCode::NOT_FOUND, Some(who), "Not found", &msg)
}

/// `GET /jobs/{name}`: a job and its run form.
async fn job_page(State(state): State<AppState>, PageUser(who): PageUser, Path(name): Path<String>) -> Response {
    match state.engine.catalog().get(&name) {
        Some(job) => {
            match executions::person_of(&state, &who.user).await {
                Ok((person, place)) if state.engine.may_run(&place, &person, job) => {}
                Ok(_) => {
                    return api_error_page(
                        &who,
                        ApiError::new(
                            StatusCode::FORBIDDEN,
                            "forbidden",
                            format!("You may not run `{}`; `whoami` in the chat shows your roles.", job.name),
                        ),
                    );
                }
                Err(err) => return api_error_page(&who, err),
            }
            show_job(&who, job, &HashMap::new(), None, false, false)
        }
        None => no_job(&state, &who, &name),
    }
}

/// `POST /jobs/{name}/run`: `run JOB name=value …` through the engine, as in chat (fields
/// `param.NAME`; empty ones are left out, so defaults apply), then the new run's page. A refusal
/// shows the form again with the engine's words and the values given (not the secret ones).
async fn run(
    State(state): State<AppState>,
    PageUser(who): PageUser,
    Path(name): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, PageError> {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return Ok(bad_form(&who, e)),
    };
    if let Err(r) = check_csrf(&who, field(&form, "csrf")) {
        return Ok(r);
    }
    let Some(job) = state.engine.catalog().get(&name) else {
        return Ok(no_job(&state, &who, &name));
    };
    let mut params = BTreeMap::new();
    let mut kept = HashMap::new();
    let mut secrets_given = false;
    for (k, v) in &form {
        let Some(p) = k.strip_prefix("param.") else { continue };
        if v.is_empty() || params.contains_key(p) {
            continue;
        }
        params.insert(p.to_string(), serde_json::Value::String(v.clone()));
        if job.param(p).is_some_and(|s| s.secret) {
            secrets_given = true;
        } else {
            kept.insert(p.to_string(), v.clone());
        }
    }
    let confirm = ticked(&form, "confirm");
    let req = RunRequest {
        job: job.name.clone(),
        params,
        args: Vec::new(),
        confirm,
    };
    let problem = match run_as(&state, &who, &req, "Tick “I confirm” and run it again.").await {
        Ok(page) => return Ok(page),
        Err(problem) => problem,
    };
    Ok(with_status(
        show_job(
            &who,
            job,
            &kept,
            Some(problem.message),
            secrets_given,
            problem.status == StatusCode::ACCEPTED,
        ),
        problem.status,
    ))
}

// ---------------------------------------------------------------------------------------------
// Audit

/// One row of the audit list.
struct AuditRow {
    id: i64,
    at: String,
    at_iso: String,
    actor: String,
    actor_name: String,
    place: String,
    action: String,
    job: Option<String>,
    params: Option<String>,
    decision: String,
    tone: &'static str,
    reason: Option<String>,
    execution_id: Option<i64>,
}

impl ToValue for AuditRow {
    fn value(&self) -> Value {
        context! {
            id => self.id,
            at => self.at.clone(),
            at_iso => self.at_iso.clone(),
            actor => self.actor.clone(),
            actor_name => self.actor_name.clone(),
            place => self.place.clone(),
            action => self.action.clone(),
            job => self.job.clone(),
            params => self.params.clone(),
            decision => self.decision.clone(),
            tone => self.tone,
            reason => self.reason.clone(),
            execution_id => self.execution_id,
        }
    }
}

impl AuditRow {
    fn of(r: &AuditRecord) -> Self {
        AuditRow {
            id: r.id,
            at: shown_time(r.at),
            at_iso: rfc3339(r.at),
            actor: r.actor.to_string(),
            actor_name: r.actor_name.clone(),
            place: r.place.to_string(),
            action: r.action.clone(),
            job: r.job.clone(),
            // The engine hid secret values before recording them.
            params: r
                .params
                .as_ref()
                .map(|p| params_summary(&p.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>())),
            decision: r.decision.clone(),
            tone: decision_tone(&r.decision),
            reason: r.reason.clone(),
            execution_id: r.execution_id,
        }
    }
}

/// The API URL exporting what a filter selects as JSON Lines (newest first, up to 1000 records).
fn export_url(f: &AuditFilter) -> String {
    let actor = f.actor.as_ref().map(|a| a.to_string());
    let execution = f.execution_id.map(|e| e.to_string());
    let since = f.since.map(rfc3339);
    let until = f.until.map(rfc3339);
    let q = query_string(&[
        ("format", Some("jsonl")),
        ("limit", Some("1000")),
        ("actor", actor.as_deref()),
        ("action", f.action.as_deref()),
        ("job", f.job.as_deref()),
        ("decision", f.decision.as_deref()),
        ("execution", execution.as_deref()),
        ("since", since.as_deref()),
        ("until", until.as_deref()),
    ]);
    format!("/api/v1/audit?{q}")
}

/// `GET /audit`: every decision, newest first, filtered; exportable as JSON Lines.
async fn audit_page(
    State(state): State<AppState>,
    PageUser(who): PageUser,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    if let Err(err) = audit::may_read(&state, &who.user).await {
        return Ok(api_error_page(&who, err));
    }
    let (q, filter) = match q {
        Ok(Query(q)) => {
            let f = audit::audit_filter(&state, &q, true, PAGE_SIZE);
            (q, f)
        }
        Err(e) => (
            AuditQuery::default(),
            Err(format!("The filters could not be read: {}.", e.body_text())),
        ),
    };
    let (rows, next, error, export) = match filter {
        Ok(f) => {
            let export = export_url(&f);
            let (list, next) = audit::page(state.engine.store().as_ref(), f).await?;
            (list.iter().map(AuditRow::of).collect::<Vec<_>>(), next, None, Some(export))
        }
        Err(msg) => (Vec::new(), None, Some(msg), None),
    };
    let filters = [
        ("actor", given(&q.actor)),
        ("action", given(&q.action)),
        ("job", given(&q.job)),
        ("decision", given(&q.decision)),
        ("execution", given(&q.execution)),
        ("since", given(&q.since)),
        ("until", given(&q.until)),
        ("limit", given(&q.limit)),
    ];
    let next_url = next.map(|n| next_page("/audit", &filters, n));
    let resp = render(
        "audit.html",
        Some(&who),
        "audit",
        context! {
            rows => values(&rows),
            next_url => next_url.map(url),
            export_url => export.map(url),
            error => error.clone(),
            paged => given(&q.before).is_some(),
            f => context! {
                actor => given(&q.actor).unwrap_or(""),
                action => given(&q.action).unwrap_or(""),
                job => given(&q.job).unwrap_or(""),
                decision => given(&q.decision).unwrap_or(""),
                execution => given(&q.execution).unwrap_or(""),
                since => given(&q.since).unwrap_or(""),
                until => given(&q.until).unwrap_or(""),
            },
            job_names => state.engine.catalog().jobs().iter().map(|j| j.name.clone()).collect::<Vec<_>>(),
            actions => vec!["run", "cancel", "recover"],
            decisions => vec!["accepted", "refused", "asked", "confirmed", "abandoned", "expired", "cancelled", "lost"],
        },
    );
    Ok(if error.is_some() {
        with_status(resp, StatusCode::BAD_REQUEST)
    } else {
        resp
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_leave_out_empty_values_and_encode_the_rest() {
        assert_eq!(
            query_string(&[
                ("job", Some("deploy")),
                ("user", Some("")),
                ("state", None),
                ("since", Some("2024-05-01T00:00:00+02:00"))
            ]),
            "job=deploy&since=2024-05-01T00%3A00%3A00%2B02%3A00"
        );
    }

    #[test]
    fn only_known_flash_codes_say_anything() {
        assert!(flash_of("cancelled").is_some());
        assert!(flash_of("<script>").is_none());
    }
}
