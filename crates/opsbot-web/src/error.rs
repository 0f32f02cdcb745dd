//! The one error shape of the API, the JSON and query extractors that use it, and the safety net
//! that turns any other error response (unknown route, wrong method, body too large) into it.

use crate::views::{ErrorBody, ErrorDetail};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use opsbot_store::StoreError;
use serde::de::DeserializeOwned;
use std::any::Any;

/// Message of every 5xx: nothing about the inside, only what to do.
pub(crate) const INTERNAL_MESSAGE: &str = "Something went wrong on our side; give the error id to an admin (it is in opsbot's log).";

/// An error answer: status, stable code, message for a person; logged with its id when 5xx.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// What really happened, for the log only (never sent).
    pub internal: Option<String>,
    /// An id already given to this failure (e.g. by the engine), reused so the logs agree.
    pub error_id: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            internal: None,
            error_id: None,
            headers: Vec::new(),
        }
    }

    /// `400 bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `404 not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `500 internal`; `what` goes to the log only.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", INTERNAL_MESSAGE);
        e.internal = Some(what.to_string());
        e
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// `404` for an execution id that does not exist.
    pub fn no_execution(id: i64) -> Self {
        Self::not_found(format!("There is no execution #{id}. `GET /api/v1/executions` lists recent ones."))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(format!("store: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error_id = self.error_id.unwrap_or_else(opsbot_engine::error_id);
        if self.status.is_server_error() {
            tracing::error!(
                error_id = %error_id,
                status = self.status.as_u16(),
                code = self.code,
                detail = self.internal.as_deref().unwrap_or(""),
                "request failed"
            );
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                error_id,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

/// A JSON body read with API errors: `413 payload_too_large`, `415 unsupported_media_type`,
/// `400 bad_request` saying what does not fit, never axum's plain-text rejections.
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if json_type != Some(true) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(format!("The request body could not be read: {}", r.body_text()))
            }
        })?;
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) if e.is_syntax() || e.is_eof() => Err(ApiError::bad_request(format!("The body is not valid JSON: {e}."))),
            Err(e) => Err(ApiError::bad_request(format!("The body does not fit this request: {e}."))),
        }
    }
}

/// Query parameters read with API errors (`400 bad_request`).
pub(crate) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(format!(
                "The query string does not fit this request: {}.",
                e.body_text().trim_start_matches("Failed to deserialize query string: ")
            ))),
            Err(e) => Err(ApiError::bad_request(format!(
                "The query string could not be read: {}.",
                e.body_text()
            ))),
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The request body is larger than {} KiB; send less.", crate::MAX_BODY / 1024),
    )
}

/// The fallback for paths that match no route: a JSON error under /api, a page elsewhere.
pub(crate) async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/api" || method != Method::GET {
        return api_not_found(method, uri).into_response();
    }
    crate::pages::error_page(
        StatusCode::NOT_FOUND,
        None,
        "Not found",
        "There is no page here. Start from the chat (/chat) or the list of runs (/executions).",
    )
}

fn api_not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    let path = opsbot_core::job::shorten(uri.path(), 200);
    ApiError::not_found(format!(
        "There is nothing at `{method} {path}`. The API is under /api/v1; /api/v1/openapi.json describes it."
    ))
}

/// Turns a panic in a handler into `500 internal` (logged with its error id).
pub(crate) fn panicked(err: Box<dyn Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::internal(format!("handler panicked: {what}")).into_response()
}

/// Rewrites any error response that is not already in the JSON envelope (axum's 405, the body
/// limit's 413, extractor rejections) into it, keeping headers such as `Allow`.
pub(crate) async fn envelope_net(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) || is_html(resp.headers()) {
        return resp;
    }
    let (parts, _) = resp.into_parts();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            (
                "method_not_allowed",
                if allow.is_empty() {
                    format!("`{method}` is not allowed here.")
                } else {
                    format!("`{method}` is not allowed here; this path allows {allow}.")
                },
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            let e = too_large();
            (e.code, e.message)
        }
        StatusCode::NOT_FOUND => ("not_found", "There is nothing here. /api/v1/openapi.json describes the API.".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Send the body as JSON with `Content-Type: application/json`.".into(),
        ),
        s if s.is_server_error() => ("internal", INTERNAL_MESSAGE.into()),
        s => (
            "bad_request",
            format!("The request was refused ({}).", s.canonical_reason().unwrap_or("client error")),
        ),
    };
    let mut err = ApiError::new(status, code, message);
    if status.is_server_error() {
        err.internal = Some(format!("{status} response without an API error body"));
    }
    let mut out = err.into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    *out.status_mut() = status;
    out
}

/// Console pages answer errors with HTML pages of their own.
fn is_html(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
