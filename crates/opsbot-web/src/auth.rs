//! Who is calling an `/api/v1` route: a bearer token (hashed and looked up; never logged or
//! echoed), or — for the console's own scripts — the session cookie, with the session's CSRF
//! token in `X-CSRF-Token` on anything but GET/HEAD.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use opsbot_core::{Envelope, Place, UserId};

/// The caller of an `/api/v1` route, from its token.
pub(crate) struct Caller {
    /// The token's web user (`NAME` of `web:NAME`).
    pub user: String,
}

impl Caller {
    /// The account the engine sees: `web:NAME`.
    pub fn account(&self) -> UserId {
        UserId::new("web", &self.user)
    }

    /// Where this caller's API conversations happen that need no place of their own (cancel):
    /// `api/NAME`.
    pub fn place(&self) -> Place {
        Place::new("api", &self.user)
    }

    /// A conversation place of its own for one request: `api/NAME/<16 random hex digits>`, so
    /// concurrent requests of one user — even through two opsbot processes sharing a store —
    /// can never answer each other's questions. Panics only if the OS has no randomness.
    pub fn request_place(&self) -> Place {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the operating system's random number generator is unavailable");
        Place {
            thread: Some(hex::encode(bytes)),
            ..self.place()
        }
    }

    /// A message from this caller in `place`, as the engine reads it.
    pub fn envelope(&self, place: Place, text: impl Into<String>) -> Envelope {
        let mut env = Envelope::direct(self.account(), place, text);
        env.display_name = Some(self.user.clone());
        env
    }
}

fn unauthorized(code: &'static str, message: &str, challenge: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message).with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge))
}

/// The token of an `Authorization: Bearer …` header, if the header is well formed.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.get(header::AUTHORIZATION).is_none()
            && let Some(s) = crate::session::signed_in(state, &parts.headers).await?
        {
            if !matches!(parts.method, Method::GET | Method::HEAD) && !crate::session::csrf_header_ok(parts, &s) {
                return Err(crate::session::csrf_refused());
            }
            return Ok(Caller { user: s.user });
        }
        let Some(token) = bearer(parts) else {
            return Err(unauthorized(
                "unauthorized",
                "Send an API token as `Authorization: Bearer <token>`; an admin creates one with `opsbot token create --user NAME`.",
                "Bearer",
            ));
        };
        let hash = crate::token_hash(token);
        match state.engine.store().token_by_hash(&hash).await? {
            Some(t) => Ok(Caller { user: t.user }),
            None => Err(unauthorized(
                "invalid_token",
                "This API token is unknown or revoked; ask an admin for a new one (`opsbot token create --user NAME`).",
                "Bearer error=\"invalid_token\"",
            )),
        }
    }
}
