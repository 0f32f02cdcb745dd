//! The web console's HTML: templates (embedded, rendered with minijinja, HTML-escaped), the
//! static assets (embedded), sign-in and sign-out, and the extractor that sends strangers to
//! the sign-in page.

use crate::AppState;
use crate::session::{self, LOGIN_COOKIE, MAX_FAILURES_PER_ADDR, MAX_FAILURES_PER_USER, SESSION_COOKIE, SignedIn};
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value, context};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

/// The templates, compiled once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, src) in TEMPLATE_SOURCES {
        env.add_template(name, src).expect("embedded templates are valid");
    }
    env
});

/// Every template, embedded in the binary.
const TEMPLATE_SOURCES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("chat.html", include_str!("../templates/chat.html")),
    ("executions.html", include_str!("../templates/executions.html")),
    ("execution.html", include_str!("../templates/execution.html")),
    ("jobs.html", include_str!("../templates/jobs.html")),
    ("job.html", include_str!("../templates/job.html")),
    ("audit.html", include_str!("../templates/audit.html")),
];

/// Static files, embedded: (path under /assets/, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../assets/app.css")),
    ("chat.js", "text/javascript; charset=utf-8", include_str!("../assets/chat.js")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../assets/console.js")),
    ("console.css", "text/css; charset=utf-8", include_str!("../assets/console.css")),
];

/// Changes when the assets change, so browsers never keep a stale copy.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (_, _, body) in ASSETS {
        h.update(body.as_bytes());
    }
    hex::encode(&h.finalize()[..6])
});

/// Headers every page gets: no caching of signed-in pages, no framing, a strict content policy
/// (scripts only from /assets, no inline script), no referrer leaks.
fn page_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
}

/// Renders a template with the signed-in person's context added.
pub(crate) fn render(name: &str, who: Option<&SignedIn>, section: &str, ctx: Value) -> Response {
    let base = context! {
        user => who.map(|w| w.user.clone()),
        display_name => who.map(|w| w.display_name.clone()),
        csrf => who.map(|w| w.csrf.clone()).unwrap_or_default(),
        section => section,
        asset_version => ASSET_VERSION.as_str(),
    };
    // The first source that has a key wins: the layout's own keys can never be shadowed by a page.
    let merged = context! { ..base, ..ctx };
    let html = TEMPLATES.get_template(name).and_then(|t| t.render(merged));
    match html {
        Ok(html) => {
            let mut resp = Html(html).into_response();
            page_headers(&mut resp);
            resp
        }
        Err(e) => {
            let id = opsbot_engine::error_id();
            tracing::error!(error_id = %id, template = name, error = %e, "cannot render a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(format!(
                    "<!doctype html><title>opsbot</title><p>Something went wrong on our side; give the error id {id} to an admin.</p>"
                )),
            )
                .into_response()
        }
    }
}

/// An HTML error page.
pub(crate) fn error_page(status: StatusCode, who: Option<&SignedIn>, title: &str, message: &str) -> Response {
    let error_id = status.is_server_error().then(opsbot_engine::error_id);
    if let Some(id) = &error_id {
        tracing::error!(error_id = %id, status = status.as_u16(), "{message}");
    }
    let shown = if status.is_server_error() {
        "Something went wrong on our side; give the error id below to an admin (it is in opsbot's log)."
    } else {
        message
    };
    let mut resp = render(
        "error.html",
        who,
        "",
        context! { title => title, message => shown, tone => if status.is_server_error() { "error" } else { "warning" }, error_id => error_id },
    );
    *resp.status_mut() = status;
    resp
}

/// A page failure: a store error becomes a 500 page with an error id.
pub(crate) struct PageError(pub Response);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<opsbot_store::StoreError> for PageError {
    fn from(e: opsbot_store::StoreError) -> Self {
        PageError(error_page(StatusCode::INTERNAL_SERVER_ERROR, None, "Error", &format!("store: {e}")))
    }
}

/// A signed-in person on a console page; strangers are sent to the sign-in page and come back.
pub(crate) struct PageUser(pub SignedIn);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session::signed_in(state, &parts.headers).await {
            Ok(Some(s)) => Ok(PageUser(s)),
            Ok(None) => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let to = format!("/login?next={}", urlencode(next));
                Err(Redirect::to(&to).into_response())
            }
            Err(e) => Err(PageError::from(e).0),
        }
    }
}

/// The client's address, when the server knows it (not in tests that call the router directly).
pub(crate) struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where to go after signing in: only a path of this site (never `//host` or a URL).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.chars().any(char::is_control) => n.to_string(),
        _ => "/chat".to_string(),
    }
}

/// `GET /assets/NAME`: an embedded file, cached for a year (URLs carry the version).
pub(crate) async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => (
            [
                (header::CONTENT_TYPE, *ty),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => error_page(StatusCode::NOT_FOUND, None, "Not found", "There is no such file."),
    }
}

/// `GET /`: the chat for the signed-in, the sign-in page for others.
pub(crate) async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session::signed_in(&state, &headers).await {
        Ok(Some(_)) => Redirect::to("/chat").into_response(),
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) => PageError::from(e).0,
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// `GET /login`: the sign-in form, with a fresh double-submit token.
pub(crate) async fn login_form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    if let Ok(Some(_)) = session::signed_in(&state, &headers).await {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    login_page(&state, StatusCode::OK, None, "", &safe_next(q.next.as_deref()))
}

fn login_page(state: &AppState, status: StatusCode, error: Option<&str>, user: &str, next: &str) -> Response {
    let token = session::random_hex();
    let mut resp = render(
        "login.html",
        None,
        "login",
        context! { login_csrf => token.clone(), next => next, error => error, user_name => user, no_users => state.web().users.is_empty() },
    );
    *resp.status_mut() = status;
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, &token, Duration::from_secs(3600), state.web().secure_cookies),
    );
    resp
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /login`: checks the form token, the throttle and the password; starts a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let user = form.user.trim().to_string();
    let shown_user = opsbot_core::job::shorten(&user, 64);
    let form_ok = session::cookie(&headers, LOGIN_COOKIE).is_some_and(|c| !form.csrf.is_empty() && session::same_token(c, &form.csrf));
    if !form_ok {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The sign-in form had expired or did not come from this site (CSRF check); please sign in again."),
            &shown_user,
            &next,
        );
    }
    let addr = peer.map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let keys = [
        (format!("user:{}", user.to_lowercase()), MAX_FAILURES_PER_USER),
        (format!("addr:{addr}"), MAX_FAILURES_PER_ADDR),
    ];
    if let Some(wait) = state.throttle().blocked(&keys) {
        tracing::warn!(user = %shown_user, addr = %addr, "sign-in refused: too many failures");
        let mins = wait.as_secs().div_ceil(60);
        let mut resp = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed sign-ins for this user or from this address; try again in {mins} minute{}.",
                if mins == 1 { "" } else { "s" }
            )),
            &shown_user,
            &next,
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&wait.as_secs().to_string()).expect("digits"),
        );
        return resp;
    }
    if user.is_empty() || form.password.is_empty() || !session::check_password(&state, &user, form.password).await {
        state.throttle().fail(&keys);
        tracing::warn!(user = %shown_user, addr = %addr, "sign-in failed");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password."),
            &shown_user,
            &next,
        );
    }
    state.throttle().clear(&keys[0].0);
    match session::start_session(&state, &user).await {
        Ok((cookie, _)) => {
            tracing::info!(user = %user, addr = %addr, "signed in");
            let mut resp = Redirect::to(&next).into_response();
            resp.headers_mut().append(header::SET_COOKIE, cookie);
            resp.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(LOGIN_COOKIE, "", Duration::ZERO, state.web().secure_cookies),
            );
            resp
        }
        Err(e) => PageError::from(e).0,
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: ends the session (needs the CSRF token, so no other site can sign one out).
pub(crate) async fn logout(State(state): State<AppState>, PageUser(who): PageUser, Form(form): Form<CsrfForm>) -> Response {
    if !session::same_token(&form.csrf, &who.csrf) {
        return error_page(StatusCode::FORBIDDEN, Some(&who), "Not signed out", CSRF_MESSAGE);
    }
    if let Err(e) = state.engine.store().delete_session(&who.session_hash).await {
        return PageError::from(e).0;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, "", Duration::ZERO, state.web().secure_cookies),
    );
    resp
}

/// What a person sees when a form lacked the CSRF token.
pub(crate) const CSRF_MESSAGE: &str =
    "This form did not carry the page's anti-forgery token (CSRF), so nothing was done. Reload the page and try again.";

/// Checks a form's CSRF token; the refusal page when it is wrong.
#[allow(clippy::result_large_err)] // The error is the response itself, built once, on the refusal path.
pub(crate) fn check_csrf(who: &SignedIn, token: &str) -> Result<(), Response> {
    if session::same_token(token, &who.csrf) {
        Ok(())
    } else {
        Err(error_page(StatusCode::FORBIDDEN, Some(who), "Refused", CSRF_MESSAGE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_a_local_path() {
        assert_eq!(safe_next(Some("/executions?job=x")), "/executions?job=x");
        assert_eq!(safe_next(Some("//evil.example")), "/chat");
        assert_eq!(safe_next(Some("/\\evil.example")), "/chat");
        assert_eq!(safe_next(Some("https://evil.example")), "/chat");
        assert_eq!(safe_next(None), "/chat");
    }

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATE_SOURCES {
            TEMPLATES.get_template(name).unwrap();
        }
    }
}
