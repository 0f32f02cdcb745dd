//! `/hooks/NAME/…`: requests chat platforms make to opsbot (Slack's Events API, slash commands
//! and button presses; Mattermost's slash commands and message buttons), handed unparsed to the
//! adapter NAME, which checks the platform's signature or token over the exact bytes before it
//! reads anything. No opsbot token or session: the platform's own proof is the check.

use crate::AppState;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use opsbot_core::{WebhookRequest, WebhookResponse};

/// Largest body a platform may send to a hook (a Slack button press carries the whole message
/// it was pressed in, blocks and all).
pub const MAX_HOOK_BODY: usize = 1024 * 1024;

/// `ANY /hooks/{name}/{*rest}`.
pub(crate) async fn hook(
    State(state): State<AppState>,
    Path((name, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(rt) = state.chat_runtime() else {
        return no_such(&name);
    };
    let req = WebhookRequest {
        method: method.to_string(),
        path: format!("/{rest}"),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    match rt.webhook(&name, req).await {
        Some(resp) => respond(resp),
        None => no_such(&name),
    }
}

fn no_such(name: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("No chat adapter `{name}` takes requests here; its name is the NAME of [adapters.NAME]."),
    )
    .into_response()
}

/// The adapter's answer as it is; a refusal in plain text becomes the API's JSON error (the
/// adapter's words kept) so that every error from this server has one shape.
fn respond(r: WebhookResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if (status.is_client_error() || status.is_server_error()) && !r.content_type.starts_with("application/json") {
        let code = match status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        let text = String::from_utf8_lossy(&r.body).into_owned();
        return ApiError::new(status, code, text).into_response();
    }
    let mut resp = (status, r.body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    resp
}
