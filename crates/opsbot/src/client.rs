//! The CLI as a client of a remote opsbot (`--server URL`): `run`, `status` and `logs` through
//! its REST API (docs/api.md), with the API token from the environment (`OPSBOT_TOKEN`, never a
//! flag, so it does not show up in `ps`). Nothing local is read: no config, no store.
//!
//! Exit codes follow `opsbot run`: 0 succeeded, 1 failed (the job, or reaching the server),
//! 2 refused (bad request, not confirmed, no valid token).

use crate::status::{LOG_TAIL, STATUS_TAIL, color_stderr, color_stdout, partial_note, summary};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use opsbot_adapters::terminal::render;
use opsbot_core::{ExecState, Execution, ExecutionId, OutputLine, Place, Stream, UserId};
use opsbot_engine::grammar::quote_arg;
use opsbot_engine::present;
use reqwest::header::{self, HeaderValue};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The environment variable that holds the API token.
pub const TOKEN_ENV: &str = "OPSBOT_TOKEN";

/// Exit code for a refused request (bad parameters, not confirmed, no valid token).
const REFUSED: u8 = 2;
/// Exit code for a failure (the job's, or reaching the server).
const FAILED: u8 = 1;
/// Exit code when the run waits for approval (nothing ran yet).
pub const PENDING_APPROVAL: u8 = 3;
/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence on a connection; log streams get a keep-alive from the server every 15 s.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Reconnections of a broken log stream, in a row without news, before giving up.
const RECONNECTS: u32 = 5;

/// Why a remote command stops: its exit code and what to tell the person.
#[derive(Debug)]
struct Fail {
    code: u8,
    message: String,
}

impl Fail {
    fn refused(message: impl Into<String>) -> Self {
        Fail {
            code: REFUSED,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Self {
        Fail {
            code: FAILED,
            message: message.into(),
        }
    }
}

fn finish(result: Result<ExitCode, Fail>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("opsbot: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// `{"error": {"code", "message", "error_id"}}`, the shape of every API error.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    error_id: String,
}

/// An execution as the API shows it (secret parameters already `••••`).
#[derive(Deserialize)]
struct ExecutionView {
    id: ExecutionId,
    job: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
    requested_by: String,
    #[serde(default)]
    requester_name: String,
    #[serde(default)]
    place: String,
    state: ExecState,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    exit_code: Option<i32>,
    duration_ms: Option<i64>,
    cpu_ms: Option<i64>,
    max_rss_kb: Option<i64>,
    detail: Option<String>,
    #[serde(default)]
    cancel_requested: bool,
}

impl ExecutionView {
    /// As a record, for the presenter that chat and the local CLI use.
    fn execution(&self) -> Execution {
        let place = match self.place.split_once('/') {
            Some((p, c)) => Place::new(p, c),
            None => Place::new(self.place.clone(), ""),
        };
        Execution {
            id: self.id,
            job: self.job.clone(),
            params: self.params.clone(),
            requested_by: UserId::parse(&self.requested_by).unwrap_or_else(|| UserId::new("", self.requested_by.clone())),
            requester_name: self.requester_name.clone(),
            place,
            state: self.state,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            duration_ms: self.duration_ms,
            cpu_ms: self.cpu_ms,
            max_rss_kb: self.max_rss_kb,
            detail: self.detail.clone(),
            worker: None,
            cancel_requested: self.cancel_requested,
            pgid: None,
        }
    }
}

/// One output line of the log stream.
#[derive(Deserialize)]
struct LineView {
    stream: StreamView,
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum StreamView {
    Stdout,
    Stderr,
    System,
}

impl LineView {
    /// The line as `opsbot run` prints it: stderr and opsbot's notes marked.
    fn rendered(&self) -> String {
        match self.stream {
            StreamView::Stdout => self.text.clone(),
            StreamView::Stderr => format!("[stderr] {}", self.text),
            StreamView::System => format!("[opsbot] {}", self.text),
        }
    }
}

/// The lines of `GET …/log` (each ends with a newline; stderr and notes are marked).
fn log_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

/// A rendered log line back as a line record (rendering it again gives the same text).
fn output_line(text: &str) -> OutputLine {
    let (stream, text) = if let Some(t) = text.strip_prefix("[stderr] ") {
        (Stream::Stderr, t)
    } else if let Some(t) = text.strip_prefix("[opsbot] ") {
        (Stream::System, t)
    } else {
        (Stream::Stdout, text)
    };
    OutputLine {
        at: Utc::now(),
        stream,
        text: text.to_string(),
    }
}

/// An error answer of the server, read.
struct ApiErr {
    status: StatusCode,
    detail: Option<ErrorDetail>,
    location: Option<String>,
}

impl ApiErr {
    fn code(&self) -> &str {
        self.detail.as_ref().map(|d| d.code.as_str()).unwrap_or("")
    }
}

/// A connection to one opsbot server.
struct Remote {
    /// The server's URL as given, without a trailing `/`; named in every error.
    base: String,
    http: Client,
    auth: HeaderValue,
}

/// The innermost cause of an error: what actually went wrong (e.g. "Connection refused").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Whether a TLS error is among the causes (also inside I/O errors, which hide what they wrap
/// from `source()`).
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.is::<rustls::Error>() {
        return true;
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && is_tls(inner)
    {
        return true;
    }
    e.source().is_some_and(is_tls)
}

impl Remote {
    /// Checks the URL and the token and prepares the HTTP client.
    fn new(server: &str) -> Result<Remote, Fail> {
        let server = server.trim();
        let mut url = reqwest::Url::parse(server).map_err(|e| {
            Fail::refused(format!(
                "--server `{server}` is not a URL ({e}); use http://HOST:PORT or https://HOST (e.g. http://127.0.0.1:8080)"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(Fail::refused(format!(
                "--server `{server}` is not an http:// or https:// URL; use e.g. http://127.0.0.1:8080 or https://opsbot.example.com"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Fail::refused(
                "--server must not carry a user name or password (they would end up in error messages and logs); \
                 the API token comes from OPSBOT_TOKEN"
                    .to_string(),
            ));
        }
        url.set_query(None);
        url.set_fragment(None);
        // The URL `opsbot serve` prints ends in /api/v1; the client adds that itself.
        let base = url
            .as_str()
            .trim_end_matches('/')
            .trim_end_matches("/api/v1")
            .trim_end_matches('/')
            .to_string();
        let token = match std::env::var(TOKEN_ENV) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                return Err(Fail::refused(format!(
                    "{TOKEN_ENV} is not set. Talking to the opsbot server at {base} needs an API token in the environment \
                     variable {TOKEN_ENV} (never a flag, so it stays out of `ps`); an admin creates one on the server with \
                     `opsbot token create --user NAME`."
                )));
            }
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Fail::refused(format!(
                "{TOKEN_ENV} holds characters that cannot be sent in an HTTP header; an API token looks like `opsb_` and 64 hex digits"
            ))
        })?;
        auth.set_sensitive(true);
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("opsbot/", env!("CARGO_PKG_VERSION")));
        if url.scheme() == "http" {
            // Plain HTTP needs no root certificates (and so works where none are installed).
            builder = builder.tls_certs_only(std::iter::empty());
        }
        let http = builder
            .build()
            .map_err(|e| Fail::failed(format!("cannot prepare HTTPS for {base}: {}", innermost(&e))))?;
        Ok(Remote { base, http, auth })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with the token; a failure to get an answer names the server.
    async fn send(&self, rb: RequestBuilder) -> Result<Response, Fail> {
        rb.header(header::AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| self.net_error(&e))
    }

    fn net_error(&self, e: &reqwest::Error) -> Fail {
        let cause = innermost(e);
        let base = &self.base;
        Fail::failed(if is_tls(e) {
            let hint = if cause.contains("InvalidContentType") {
                " (does it serve plain HTTP? then use http://)"
            } else {
                ""
            };
            format!("the TLS handshake with the opsbot server at {base} failed: {cause}{hint}")
        } else if e.is_timeout() {
            format!("the opsbot server at {base} did not answer in time ({cause})")
        } else if e.is_connect() {
            format!("cannot connect to the opsbot server at {base}: {cause}. Is `opsbot serve` running there? (--server / OPSBOT_SERVER)")
        } else {
            format!("lost the connection to the opsbot server at {base}: {cause}")
        })
    }

    /// The answer if it is a success, else the error it carries.
    async fn check(&self, resp: Response) -> Result<Response, ApiErr> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<ErrorBody>(&body).ok().map(|b| b.error);
        Err(ApiErr { status, detail, location })
    }

    /// What to say about an error answer no call site handles itself.
    fn general(&self, err: ApiErr) -> Fail {
        let base = &self.base;
        if err.status == StatusCode::UNAUTHORIZED {
            let why = if err.code() == "invalid_token" {
                "it is unknown or revoked"
            } else {
                "it is missing or malformed"
            };
            return Fail::refused(format!(
                "the opsbot server at {base} refused the API token in {TOKEN_ENV} ({why}). Set {TOKEN_ENV} to a valid token; \
                 an admin creates one on the server with `opsbot token create --user NAME`."
            ));
        }
        if err.status.is_redirection() {
            let to = err.location.as_deref().unwrap_or("elsewhere");
            return Fail::failed(format!(
                "the server at {base} redirects to {to}; pass the opsbot server's own URL as --server"
            ));
        }
        match err.detail {
            Some(d) if err.status.is_server_error() => Fail::failed(format!(
                "the opsbot server at {base} failed: {} (error id {})",
                d.message, d.error_id
            )),
            Some(d) if err.status == StatusCode::NOT_FOUND && !d.message.starts_with("There is no execution") => Fail::failed(format!(
                "there is no opsbot API at {base} ({}); pass the URL `opsbot serve` prints as --server",
                d.message
            )),
            Some(d) if err.status.is_client_error() => Fail::refused(d.message),
            Some(d) => Fail::failed(d.message),
            None => Fail::failed(format!(
                "{base} answered {} without an opsbot error; is it an opsbot server?",
                err.status
            )),
        }
    }

    /// A 404 for an execution: it does not exist (exit 1), or this is no opsbot API.
    fn not_found(&self, id: ExecutionId, err: ApiErr) -> Fail {
        match &err.detail {
            Some(d) if err.status == StatusCode::NOT_FOUND && d.message.starts_with("There is no execution") => {
                Fail::failed(format!("there is no execution #{id} on the opsbot server at {}", self.base))
            }
            _ => self.general(err),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, resp: Response) -> Result<T, Fail> {
        resp.json::<T>()
            .await
            .map_err(|e| Fail::failed(format!("unexpected answer from {}: {}", self.base, innermost(&e))))
    }

    /// `GET /api/v1/executions/{id}`.
    async fn execution(&self, id: ExecutionId) -> Result<ExecutionView, Fail> {
        let resp = self.send(self.http.get(self.url(&format!("/api/v1/executions/{id}")))).await?;
        let resp = self.check(resp).await.map_err(|e| self.not_found(id, e))?;
        self.json(resp).await
    }

    /// `GET /api/v1/executions/{id}/log`: all output, one rendered line each.
    async fn log(&self, id: ExecutionId) -> Result<String, Fail> {
        let resp = self.send(self.http.get(self.url(&format!("/api/v1/executions/{id}/log")))).await?;
        let resp = self.check(resp).await.map_err(|e| self.not_found(id, e))?;
        resp.text().await.map_err(|e| self.net_error(&e))
    }

    /// `POST /api/v1/executions/{id}/cancel`, as `cancel ID` in chat; problems are only reported.
    async fn cancel(&self, id: ExecutionId) {
        let sent = self
            .send(self.http.post(self.url(&format!("/api/v1/executions/{id}/cancel"))))
            .await;
        let result = match sent {
            Ok(resp) => self.check(resp).await.map(drop).map_err(|e| self.general(e)),
            Err(f) => Err(f),
        };
        if let Err(f) = result {
            eprintln!("opsbot: could not ask the server to stop #{id}: {}", f.message);
        }
    }

    /// Prints the output of `id` after line `after` as it comes (`GET …/log/stream`) until the
    /// execution ends; returns it, and the exit code of a signal that stopped it (only when
    /// `stop_on_signal`: then SIGINT/SIGTERM/SIGHUP cancel it and it is followed to its end).
    async fn follow(&self, id: ExecutionId, mut after: u64, stop_on_signal: bool) -> Result<(ExecutionView, Option<u8>), Fail> {
        let mut signals = if stop_on_signal {
            Signals::install().map_err(|e| Fail::failed(format!("cannot watch for signals: {e}")))?
        } else {
            Signals::default()
        };
        let mut stopping: Option<u8> = None;
        let mut connected = false;
        let mut tries = 0u32;
        let url = self.url(&format!("/api/v1/executions/{id}/log/stream"));
        loop {
            let mut rb = self.http.get(&url).header(header::ACCEPT, "text/event-stream");
            if after > 0 {
                rb = rb.header("Last-Event-ID", after.to_string());
            }
            let broke = match self.send(rb).await {
                Err(f) if !connected => return Err(f),
                Err(f) => f.message,
                Ok(resp) => {
                    let resp = self.check(resp).await.map_err(|e| self.not_found(id, e))?;
                    connected = true;
                    let mut body = resp.bytes_stream();
                    let mut sse = Sse::default();
                    loop {
                        tokio::select! {
                            chunk = body.next() => match chunk {
                                Some(Ok(bytes)) => {
                                    let mut out = std::io::stdout().lock();
                                    for ev in sse.feed(&bytes) {
                                        tries = 0;
                                        match ev.event.as_str() {
                                            "line" => {
                                                let line: LineView = self.parse(&ev.data)?;
                                                writeln!(out, "{}", line.rendered()).map_err(output_error)?;
                                                after = ev.id.as_deref().and_then(|i| i.parse().ok()).unwrap_or(after + 1);
                                            }
                                            "end" => {
                                                out.flush().map_err(output_error)?;
                                                return Ok((self.parse(&ev.data)?, stopping));
                                            }
                                            "error" => {
                                                let e: ErrorBody = self.parse(&ev.data)?;
                                                return Err(Fail::failed(format!(
                                                    "the opsbot server at {} could not read the output of #{id}: {} (error id {})",
                                                    self.base, e.error.message, e.error.error_id
                                                )));
                                            }
                                            _ => {}
                                        }
                                    }
                                    out.flush().map_err(output_error)?;
                                }
                                Some(Err(e)) => break innermost(&e),
                                None => break "the server closed the stream".to_string(),
                            },
                            code = signals.next() => self.interrupted(id, code, &mut stopping).await?,
                        }
                    }
                }
            };
            tries += 1;
            if tries > RECONNECTS {
                return Err(Fail::failed(format!(
                    "lost the output stream of #{id} from {}: {broke}. `opsbot logs {id} --follow` picks it up again.",
                    self.base
                )));
            }
            eprintln!("opsbot: the output stream of #{id} broke ({broke}); reconnecting…");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(tries.into())) => {}
                code = signals.next() => self.interrupted(id, code, &mut stopping).await?,
            }
        }
    }

    /// A signal while following a run: the first asks the server to stop it (and we wait for its
    /// end); a second one stops waiting.
    async fn interrupted(&self, id: ExecutionId, code: u8, stopping: &mut Option<u8>) -> Result<(), Fail> {
        if let Some(first) = *stopping {
            return Err(Fail {
                code: first,
                message: format!("not waiting for #{id} to stop; `opsbot status {id}` shows how it ended"),
            });
        }
        *stopping = Some(code);
        eprintln!("\nopsbot: interrupted; stopping #{id}… (again to stop waiting)");
        self.cancel(id).await;
        Ok(())
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, data: &str) -> Result<T, Fail> {
        serde_json::from_str(data).map_err(|e| Fail::failed(format!("unexpected event from {}: {e}", self.base)))
    }
}

fn output_error(e: std::io::Error) -> Fail {
    Fail::failed(format!("cannot write the output: {e}"))
}

/// SIGINT, SIGTERM and SIGHUP, when a run is to be stopped on them; otherwise nothing (their
/// default actions stay).
#[derive(Default)]
struct Signals {
    handlers: Option<(Signal, Signal, Signal)>,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            handlers: Some((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            )),
        })
    }

    /// The exit code of the next signal (128 + its number); never, without handlers.
    async fn next(&mut self) -> u8 {
        match &mut self.handlers {
            Some((int, term, hup)) => tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
                _ = hup.recv() => 129,
            },
            None => std::future::pending().await,
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, PartialEq)]
struct SseEvent {
    event: String,
    data: String,
    id: Option<String>,
}

/// A Server-Sent Events reader: bytes in, complete events out.
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl Sse {
    fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            let b = self.buf[i];
            if b == b'\n' || b == b'\r' {
                // `\r\n` is one line end; a `\r` at the end of what we have may be half of one.
                if b == b'\r' && i + 1 == self.buf.len() {
                    break;
                }
                let line = String::from_utf8_lossy(&self.buf[start..i]).into_owned();
                if b == b'\r' && self.buf[i + 1] == b'\n' {
                    i += 1;
                }
                i += 1;
                start = i;
                self.line(&line, &mut out);
                continue;
            }
            i += 1;
        }
        self.buf.drain(..start);
        out
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                let mut data = std::mem::take(&mut self.data);
                data.pop();
                let event = std::mem::take(&mut self.event);
                out.push(SseEvent {
                    event: if event.is_empty() { "message".into() } else { event },
                    data,
                    id: self.id.clone(),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `key=value` or `--key=value` (key a name), as chat and `opsbot run` read them.
fn key_value(arg: &str) -> Option<(String, String)> {
    let (k, v) = arg.split_once('=')?;
    let k = if is_ident(k) {
        k
    } else {
        k.strip_prefix("--").filter(|k| is_ident(k))?
    };
    Some((k.to_lowercase(), v.to_string()))
}

/// Splits `opsbot run` arguments into named and positional values the way the engine reads
/// them locally: `key=value`, `--key=value`, `--key value`, a bare `--flag` (true), values in
/// declared order, and `--` after which everything is a value.
fn split_args(args: &[String]) -> Result<(BTreeMap<String, String>, Vec<String>), Fail> {
    let mut params = BTreeMap::new();
    let mut positional = Vec::new();
    let mut put = |k: String, v: String| match params.insert(k.clone(), v) {
        Some(_) => Err(Fail::refused(format!("`{k}` is given twice. Nothing was run."))),
        None => Ok(()),
    };
    let mut values_only = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if values_only {
            positional.push(a.clone());
        } else if a == "--" {
            values_only = true;
        } else if let Some((k, v)) = key_value(a) {
            put(k, v)?;
        } else if let Some(opt) = a.strip_prefix("--").filter(|o| !o.is_empty() && quote_arg(a) == *a) {
            match args.get(i) {
                Some(next) if key_value(next).is_none() && (quote_arg(next) != *next || !next.starts_with("--")) => {
                    put(opt.to_lowercase(), next.clone())?;
                    i += 1;
                }
                _ => put(opt.to_lowercase(), "true".into())?,
            }
        } else {
            positional.push(a.clone());
        }
    }
    Ok((params, positional))
}

/// An API refusal in the words of the command line (flags and `key=value`, not JSON fields).
fn cli_words(err: &ErrorDetail) -> String {
    let m = err.message.clone();
    match err.code.as_str() {
        "missing_param" => {
            let p = m
                .split_once(" needs `")
                .and_then(|(_, r)| r.split_once('`'))
                .map(|(p, _)| p.to_string());
            match p {
                Some(p) => m.replace("add it to `params`", &format!("pass {p}=VALUE")),
                None => m,
            }
        }
        _ => m,
    }
}

/// `opsbot run JOB args… --server URL`: `POST /api/v1/executions`, then the output as it comes.
pub async fn run(server: &str, job: String, args: Vec<String>, user: Option<String>, yes: bool) -> ExitCode {
    finish(run_remote(server, job, args, user, yes).await)
}

async fn run_remote(server: &str, job: String, args: Vec<String>, user: Option<String>, yes: bool) -> Result<ExitCode, Fail> {
    if user.is_some() {
        return Err(Fail::refused(format!(
            "--user does not apply with --server: the server runs the job as the user of the API token in {TOKEN_ENV}"
        )));
    }
    let (args, yes) = crate::run::take_yes(args, yes);
    let (params, positional) = split_args(&args)?;
    let remote = Remote::new(server)?;
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut confirm = yes;
    // Watch for signals before asking for the run: interrupted while the server is still
    // answering, we wait for its answer and cancel what it queued, rather than die and leave a
    // run going that nobody follows.
    let mut signals = Signals::install().map_err(|e| Fail::failed(format!("cannot watch for signals: {e}")))?;
    let mut interrupted: Option<u8> = None;
    let e: ExecutionView = loop {
        let body = serde_json::json!({"job": job, "params": params, "args": positional, "confirm": confirm});
        let send = remote.send(remote.http.post(remote.url("/api/v1/executions")).json(&body));
        tokio::pin!(send);
        let resp = loop {
            tokio::select! {
                r = &mut send => break r?,
                code = signals.next(), if interrupted.is_none() => {
                    eprintln!("\nopsbot: interrupted; waiting for the server's answer so the run can be cancelled…");
                    interrupted = Some(code);
                }
            }
        };
        match remote.check(resp).await {
            Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED => {
                #[derive(serde::Deserialize)]
                struct Pending {
                    approval_id: i64,
                    message: String,
                }
                let p: Pending = remote.json(resp).await?;
                eprintln!("{}", p.message);
                eprintln!(
                    "opsbot: `{job}` waits for approval (request {id}); it starts on {base} once approved. \
                     GET {base}/api/v1/approvals/{id} shows where it stands and, once approved, its execution id.",
                    id = p.approval_id,
                    base = remote.base
                );
                return Ok(ExitCode::from(PENDING_APPROVAL));
            }
            Ok(resp) => break remote.json(resp).await?,
            Err(err) if err.code() == "confirmation_required" && interactive && !confirm => {
                let shown: Vec<String> = args.iter().map(|a| quote_arg(a)).collect();
                eprintln!("`{job}` is sensitive. Run `{job} {}` on {}?", shown.join(" "), remote.base);
                eprint!("yes/no> ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                if !matches!(line.trim().to_lowercase().as_str(), "y" | "yes") {
                    return Err(Fail::refused(format!("`{job}` was not confirmed; nothing was run.")));
                }
                confirm = true;
            }
            Err(err) if err.code() == "confirmation_required" => {
                return Err(Fail::refused(format!(
                    "`{job}` is sensitive and was not run; pass --yes to confirm it from a script."
                )));
            }
            Err(err) if matches!(err.status.as_u16(), 400 | 403 | 409 | 422) && err.detail.is_some() => {
                return Err(Fail::refused(err.detail.as_ref().map(cli_words).unwrap_or_default()));
            }
            Err(err) => return Err(remote.general(err)),
        }
    };
    eprintln!(
        "#{} queued on {}: {}",
        e.id,
        remote.base,
        present::describe_run(None, &e.job, &e.params)
    );
    drop(signals);
    if let Some(code) = interrupted {
        remote.cancel(e.id).await;
        let (end, _) = remote.follow(e.id, 0, false).await?;
        eprintln!("{}", render(&summary(&end.execution(), None), color_stderr()));
        return Ok(ExitCode::from(code));
    }
    let (end, stopping) = remote.follow(e.id, 0, true).await?;
    eprintln!("{}", render(&summary(&end.execution(), None), color_stderr()));
    Ok(match (stopping, end.state) {
        (Some(code), _) => ExitCode::from(code),
        (None, ExecState::Succeeded) => ExitCode::SUCCESS,
        _ => ExitCode::from(FAILED),
    })
}

/// `opsbot status ID --server URL`: the chat `status` reply, from the API.
pub async fn status(server: &str, id: ExecutionId) -> ExitCode {
    finish(status_remote(server, id).await)
}

async fn status_remote(server: &str, id: ExecutionId) -> Result<ExitCode, Fail> {
    let remote = Remote::new(server)?;
    let e = remote.execution(id).await?;
    let log = remote.log(id).await?;
    let lines = log_lines(&log);
    let tail: Vec<OutputLine> = lines[lines.len().saturating_sub(STATUS_TAIL)..]
        .iter()
        .map(|l| output_line(l))
        .collect();
    let reply = present::status(&e.execution(), None, &tail, lines.len() as u64);
    println!("{}", render(&reply, color_stdout()));
    Ok(ExitCode::SUCCESS)
}

/// `opsbot logs ID [--all] [--follow] --server URL`.
pub async fn logs(server: &str, id: ExecutionId, all: bool, follow: bool) -> ExitCode {
    finish(logs_remote(server, id, all, follow).await)
}

async fn logs_remote(server: &str, id: ExecutionId, all: bool, follow: bool) -> Result<ExitCode, Fail> {
    let remote = Remote::new(server)?;
    // With --follow --all the stream sends everything from the first line on.
    let mut seen = 0u64;
    if !(follow && all) {
        let log = remote.log(id).await?;
        let lines = log_lines(&log);
        let shown = if all {
            &lines[..]
        } else {
            &lines[lines.len().saturating_sub(LOG_TAIL)..]
        };
        let mut out = std::io::stdout().lock();
        for l in shown {
            writeln!(out, "{l}").map_err(output_error)?;
        }
        out.flush().map_err(output_error)?;
        if shown.len() < lines.len() {
            eprintln!("{}", partial_note(id, shown.len(), lines.len() as u64));
        }
        seen = lines.len() as u64;
        if !follow {
            if lines.is_empty() {
                let e = remote.execution(id).await?;
                eprintln!("(no output yet: #{id} is {})", e.state);
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let (end, _) = remote.follow(id, seen, false).await?;
    eprintln!("{}", render(&summary(&end.execution(), None), color_stderr()));
    Ok(if end.state == ExecState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_split_like_the_grammar_reads_them() {
        let (p, a) = split_args(&strings(&[
            "app=web",
            "--Env=staging",
            "1.2",
            "--force",
            "--note",
            "a b",
            "--",
            "x=y",
            "--z",
        ]))
        .unwrap();
        assert_eq!(
            p.into_iter().collect::<Vec<_>>(),
            [
                ("app".into(), "web".into()),
                ("env".into(), "staging".into()),
                ("force".into(), "true".into()),
                ("note".into(), "a b".into())
            ]
        );
        assert_eq!(a, ["1.2", "x=y", "--z"]);
        let (p, a) = split_args(&strings(&["1=2", "--x=a=b", "--flag", "--other"])).unwrap();
        assert_eq!(p["x"], "a=b");
        assert_eq!((p["flag"].as_str(), p["other"].as_str()), ("true", "true"));
        assert_eq!(a, ["1=2"]);
        let e = split_args(&strings(&["app=web", "APP=api"])).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (2, "`app` is given twice. Nothing was run."));
    }

    #[test]
    fn sse_events_across_chunks_and_line_ends() {
        let mut s = Sse::default();
        let mut got = s.feed(b": keep-alive\n\nevent: line\nid: 1\ndata: {\"a\":");
        assert!(got.is_empty());
        got.extend(s.feed(b"1}\n\nevent: end\r"));
        got.extend(s.feed(b"\ndata: x\r\ndata: y\r\n\r\ndata: plain\n\n"));
        assert_eq!(
            got,
            [
                SseEvent {
                    event: "line".into(),
                    data: "{\"a\":1}".into(),
                    id: Some("1".into())
                },
                SseEvent {
                    event: "end".into(),
                    data: "x\ny".into(),
                    id: Some("1".into())
                },
                SseEvent {
                    event: "message".into(),
                    data: "plain".into(),
                    id: Some("1".into())
                },
            ]
        );
        // A multi-byte character split between two chunks comes out whole.
        let bytes = "data: ✓\n\n".as_bytes();
        let mut s = Sse::default();
        assert!(s.feed(&bytes[..7]).is_empty());
        assert_eq!(s.feed(&bytes[7..])[0].data, "✓");
    }

    #[test]
    fn log_text_round_trips_through_line_records() {
        let text = "out\n[stderr] err\n[opsbot] note\n\n";
        let lines = log_lines(text);
        assert_eq!(lines, ["out", "[stderr] err", "[opsbot] note", ""]);
        let records: Vec<OutputLine> = lines.iter().map(|l| output_line(l)).collect();
        assert_eq!(present::render_lines(&records), text.trim_end_matches('\n').to_string() + "\n");
        assert!(log_lines("").is_empty());
    }

    #[test]
    fn refusals_speak_command_line() {
        let d = ErrorDetail {
            code: "missing_param".into(),
            message: "`deploy` needs `env` (one of dev, staging, prod): add it to `params`. Nothing was run.".into(),
            error_id: String::new(),
        };
        assert_eq!(
            cli_words(&d),
            "`deploy` needs `env` (one of dev, staging, prod): pass env=VALUE. Nothing was run."
        );
    }

    #[test]
    fn server_urls_are_checked() {
        for bad in [
            "localhost:8080",
            "ftp://x",
            "not a url",
            "http://",
            "http://admin:hunter2@127.0.0.1:1",
        ] {
            let e = Remote::new(bad).err().expect(bad);
            assert_eq!(e.code, REFUSED, "{bad}: {}", e.message);
            assert!(!e.message.contains("hunter2"), "{}", e.message);
        }
    }

    #[test]
    fn the_url_serve_prints_works_as_server() {
        // SAFETY: only this test reads the variable in this test binary's unit tests.
        unsafe { std::env::set_var(TOKEN_ENV, "opsb_test") };
        let _ = rustls::crypto::ring::default_provider().install_default();
        for url in [
            "http://127.0.0.1:8080/api/v1",
            "http://127.0.0.1:8080/api/v1/",
            "http://127.0.0.1:8080/",
        ] {
            let r = Remote::new(url).expect(url);
            assert_eq!(r.url("/api/v1/jobs").as_str(), "http://127.0.0.1:8080/api/v1/jobs", "{url}");
        }
    }
}
