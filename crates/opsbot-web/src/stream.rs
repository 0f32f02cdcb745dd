//! An execution's output: all of it as text, or live as Server-Sent Events.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery};
use crate::executions::load;
use crate::views::{ErrorBody, ErrorDetail, ExecutionView, LineView};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use opsbot_core::{ExecutionId, OutputLine};
use opsbot_engine::Engine;
use opsbot_engine::present::render_lines;
use opsbot_store::StoreError;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use utoipa::IntoParams;

/// How often a stream looks for new output.
const POLL: Duration = Duration::from_millis(200);

/// Most output lines a stream reads (and so holds) at a time; the next read waits until they
/// are sent, so a client that does not read cannot make the server hold the whole output.
const BATCH: usize = 500;

/// How the full log is sent.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// `1` (or `true`): send it as a file to save, `opsbot-execution-ID.log`
    /// (`Content-Disposition: attachment`).
    #[param(value_type = Option<String>, example = "1")]
    download: Option<String>,
}

/// Where a log stream starts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Start after this many lines (a page that already shows them); a `Last-Event-ID` header
    /// takes precedence.
    #[param(value_type = Option<u64>, minimum = 0)]
    after: Option<String>,
}

/// A yes/no query flag: absent or empty, `0`, `false`, `no` are no; `1`, `true`, `yes` are yes.
fn flag(name: &str, v: &Option<String>) -> Result<bool, ApiError> {
    match v.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{name}` is 1 or 0; got `{}`.",
            opsbot_core::job::shorten(other, 40)
        ))),
    }
}

/// All output of an execution, each line as `opsbot logs ID --all` shows it.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/log",
    operation_id = "get_execution_log",
    tag = "executions",
    params(("id" = i64, Path, minimum = 1, description = "Execution id."), LogQuery),
    responses(
        (status = 200, description = "The output so far; stderr lines start with `[stderr] `, opsbot's notes with `[opsbot] `. \
            With `download=1`, as an attachment named `opsbot-execution-ID.log`.",
            body = String, content_type = "text/plain",
            headers(("Content-Disposition" = String, description = "With `download=1`: `attachment; filename=\"opsbot-execution-ID.log\"`."))),
        (status = 400, description = "Not an id, or a bad `download` (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No such execution (`not_found`).", body = ErrorBody),
    )
)]
pub(crate) async fn log(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let download = flag("download", &q.download)?;
    let e = load(&state, &caller.user, &id).await?;
    let lines = state.engine.store().output_all(e.id).await?;
    let mut text = render_lines(&lines);
    if !lines.is_empty() {
        text.push('\n');
    }
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if download {
        let disposition = format!("attachment; filename=\"opsbot-execution-{}.log\"", e.id);
        resp.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).map_err(ApiError::internal)?,
        );
    }
    Ok(resp)
}

/// Output as it is stored, as Server-Sent Events: `event: line` per line (`id` is its 1-based
/// number; data `{at, stream, text}`), then `event: end` with the final execution, then the
/// stream closes. A reconnecting client's `Last-Event-ID` resumes after that line; `after=N`
/// starts after line N (for a page that already shows the first N).
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/log/stream",
    operation_id = "stream_execution_log",
    tag = "executions",
    params(
        ("id" = i64, Path, minimum = 1, description = "Execution id."),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this line number."),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "`event: line` (data: LineView) for each output line, then `event: end` (data: \
            ExecutionView) when the execution is over. On a failure of ours, `event: error` (data: ErrorBody).",
            body = String, content_type = "text/event-stream"),
        (status = 400, description = "Not an id, or a `Last-Event-ID` or `after` that is not a line number (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No such execution (`not_found`).", body = ErrorBody),
    )
)]
pub(crate) async fn log_stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let e = load(&state, &caller.user, &id).await?;
    let after = match q.after.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => 0,
        Some(a) => a.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "`after` is a number of lines (0 or more); got `{}`.",
                opsbot_core::job::shorten(a, 40)
            ))
        })?,
    };
    let sent = match headers.get("last-event-id") {
        None => after,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "The Last-Event-ID header must be the number of the last line received (0 or more), not {:?}.",
                String::from_utf8_lossy(v.as_bytes())
            ))
        })?,
    };
    let tail = Tail {
        engine: state.engine.clone(),
        id: e.id,
        sent,
        pending: VecDeque::new(),
        over: false,
        done: false,
        now: true,
        closing: state.closing(),
        output: state.engine.store().subscribe_output(),
        states: state.engine.store().subscribe(),
    };
    Ok(Sse::new(futures_util::stream::unfold(tail, next_event)).keep_alive(KeepAlive::default()))
}

/// Where a log stream is.
struct Tail {
    engine: Arc<Engine>,
    id: ExecutionId,
    /// Lines read so far (the number of the last one).
    sent: u64,
    /// Lines read but not yet sent, with their numbers; at most [`BATCH`], read again only
    /// once all are sent.
    pending: VecDeque<(u64, OutputLine)>,
    /// The execution was over before the last read of its output and that read was not cut at
    /// [`BATCH`], so it had everything.
    over: bool,
    /// Nothing more to send.
    done: bool,
    /// The next read is immediate: none yet, or the last one was cut at [`BATCH`].
    now: bool,
    closing: watch::Receiver<bool>,
    /// Output stored by this process: wakes the stream at once for its execution.
    output: broadcast::Receiver<ExecutionId>,
    /// State changes in this process: the end wakes the stream at once.
    states: broadcast::Receiver<opsbot_core::ExecEvent>,
}

impl Tail {
    /// Waits until output or a state change of this execution is seen in this process, or
    /// [`POLL`] passes (output stored by another process sharing the store), or the server closes
    /// (false).
    async fn wait(&mut self) -> bool {
        let id = self.id;
        let sleep = tokio::time::sleep(POLL);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                _ = self.closing.changed() => return false,
                got = self.output.recv() => match got {
                    Ok(x) if x != id => continue,
                    // Ours, or missed some (lagged): read now.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    // (The store holds the sender as long as the engine lives; never seen.)
                    Err(broadcast::error::RecvError::Closed) => { (&mut sleep).await; return true }
                },
                got = self.states.recv() => match got {
                    Ok(ev) if ev.id != id => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => { (&mut sleep).await; return true }
                },
            }
        }
    }
}

async fn next_event(mut t: Tail) -> Option<(Result<Event, Infallible>, Tail)> {
    loop {
        if t.done || *t.closing.borrow() {
            return None;
        }
        if let Some((n, line)) = t.pending.pop_front() {
            let data = serde_json::to_string(&LineView::of(&line)).unwrap_or_default();
            return Some((Ok(Event::default().event("line").id(n.to_string()).data(data)), t));
        }
        if t.over {
            t.done = true;
            let event = match t.engine.store().execution(t.id).await {
                Ok(Some(e)) => {
                    let data = serde_json::to_string(&ExecutionView::of(&e, t.engine.catalog())).unwrap_or_default();
                    Event::default().event("end").data(data)
                }
                Ok(None) => return None,
                Err(e) => error_event(e),
            };
            return Some((Ok(event), t));
        }
        if !t.now && !t.wait().await {
            return None;
        }
        if let Err(e) = poll(&mut t).await {
            t.done = true;
            return Some((Ok(error_event(e)), t));
        }
    }
}

/// Reads the state, then at most [`BATCH`] of the lines stored after those already read. The
/// state is read first: the worker records the end only after the last output, so a final state
/// and a read not cut at [`BATCH`] mean the output is all read. Output is only ever appended, so
/// reading from line `sent` on can neither skip nor repeat a line.
async fn poll(t: &mut Tail) -> Result<(), StoreError> {
    let store = t.engine.store();
    let over = match store.execution(t.id).await? {
        Some(e) => e.state.is_final(),
        None => {
            t.done = true;
            return Ok(());
        }
    };
    let lines = store.output_range(t.id, t.sent, BATCH).await?;
    let full = lines.len() >= BATCH;
    t.over = over && !full;
    t.now = full;
    let (first, n) = (t.sent, lines.len() as u64);
    t.pending
        .extend(lines.into_iter().enumerate().map(|(i, l)| (first + i as u64 + 1, l)));
    t.sent = first + n;
    Ok(())
}

/// An `event: error` with the error envelope, logged with its id.
fn error_event(e: StoreError) -> Event {
    let error_id = opsbot_engine::error_id();
    tracing::error!(error_id = %error_id, error = %e, "log stream failed");
    let body = ErrorBody {
        error: ErrorDetail {
            code: "internal".into(),
            message: crate::error::INTERNAL_MESSAGE.into(),
            error_id,
        },
    };
    Event::default()
        .event("error")
        .data(serde_json::to_string(&body).unwrap_or_default())
}
