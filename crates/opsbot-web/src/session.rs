//! Sign-in to the web console: local users with Argon2 password hashes, session cookies,
//! anti-forgery (CSRF) tokens and login throttling.
//!
//! - The session cookie `opsbot_session` holds 32 random bytes (hex); the store keeps only its
//!   SHA-256, so a copy of the database signs nobody in. It is `HttpOnly`, `SameSite=Strict`,
//!   `Path=/`, and `Secure` when `[web] public_url` is `https://…`.
//! - Every session has a CSRF token. Forms carry it in a hidden `csrf` field, scripts in an
//!   `X-CSRF-Token` header, the chat WebSocket in its URL; a state-changing request without the
//!   right one is refused (`403 csrf`). The sign-in form itself uses a double-submit cookie.
//! - Failed sign-ins are counted per user name and per client address: after
//!   [`MAX_FAILURES_PER_USER`] (or [`MAX_FAILURES_PER_ADDR`]) within [`FAILURE_WINDOW`] further
//!   attempts are refused with `429` until the oldest failure ages out. The counters live in
//!   memory (hand-rolled: a keyed rate limiter such as governor cannot forget a key's failures
//!   on success, which is what a sign-in throttle needs).

use crate::AppState;
use crate::error::ApiError;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::Utc;
use opsbot_core::config::{WebConfig, WebPassword};
use opsbot_store::{Store, StoreError, WebSession};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "opsbot_session";
/// Name of the sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "opsbot_login";
/// Header that carries the CSRF token of scripted requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Failed sign-ins per user name within [`FAILURE_WINDOW`] before further attempts are refused.
pub const MAX_FAILURES_PER_USER: usize = 5;
/// Failed sign-ins per client address within [`FAILURE_WINDOW`] before further attempts are refused.
pub const MAX_FAILURES_PER_ADDR: usize = 20;
/// How long a failed sign-in counts.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most keys the throttle remembers (beyond, the stalest are forgotten).
const MAX_THROTTLE_KEYS: usize = 10_000;

/// A person who may sign in, with the hash their password is checked against.
#[derive(Clone, Debug)]
pub struct WebUserEntry {
    /// Sign-in name (`web:NAME`).
    pub name: String,
    /// Name shown.
    pub display_name: String,
    /// Argon2 PHC string.
    pub hash: String,
}

/// What the web console needs besides the engine: who may sign in and how cookies are set.
#[derive(Clone, Debug)]
pub struct WebSettings {
    /// The people who may sign in.
    pub users: Vec<WebUserEntry>,
    /// Whether cookies get `Secure` (the console is reached over https).
    pub secure_cookies: bool,
    /// Shared chat channels.
    pub channels: Vec<String>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// The address people open, for messages and links (`public_url` or `http://LISTEN`).
    pub public_url: Option<String>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            users: Vec::new(),
            secure_cookies: false,
            channels: vec!["ops".into()],
            session_ttl: Duration::from_secs(12 * 3600),
            public_url: None,
        }
    }
}

/// A password opsbot generated for a user at this start, to print once.
#[derive(Clone, Debug)]
pub struct GeneratedPassword {
    /// The user.
    pub user: String,
    /// The password, in clear: shown once, never stored.
    pub password: String,
}

/// Builds the settings from `[web]`: hashes from the config as they are; for users with
/// `generated_password = true`, the password from `OPSBOT_PASSWORD_<NAME>` when set, else the
/// hash stored at an earlier start, else a new random password whose hash is stored and which
/// is returned to be printed once.
pub async fn prepare(cfg: &WebConfig, store: &dyn Store) -> Result<(WebSettings, Vec<GeneratedPassword>), PrepareError> {
    let mut users = Vec::new();
    let mut generated = Vec::new();
    for u in &cfg.users {
        let hash = match &u.password {
            WebPassword::Hash(h) => h.clone(),
            WebPassword::Generated { env } => match std::env::var(env) {
                Ok(pw) if !pw.is_empty() => hash_blocking(pw).await?,
                _ => match store.generated_password(&u.name).await? {
                    Some(h) => h,
                    None => {
                        let password = random_password();
                        let (stored, mine) = store
                            .put_generated_password(&u.name, &hash_blocking(password.clone()).await?)
                            .await?;
                        if mine {
                            generated.push(GeneratedPassword {
                                user: u.name.clone(),
                                password,
                            });
                        }
                        stored
                    }
                },
            },
        };
        users.push(WebUserEntry {
            name: u.name.clone(),
            display_name: u.display_name.clone().unwrap_or_else(|| u.name.clone()),
            hash,
        });
    }
    Ok((
        WebSettings {
            users,
            secure_cookies: cfg.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
            channels: cfg.channels.clone(),
            session_ttl: cfg.session_ttl,
            public_url: cfg.public_url.clone(),
        },
        generated,
    ))
}

/// Why the web users could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A password could not be hashed.
    #[error("{0}")]
    Hash(String),
}

async fn hash_blocking(password: String) -> Result<String, PrepareError> {
    tokio::task::spawn_blocking(move || opsbot_core::password::hash_password(&password))
        .await
        .map_err(|e| PrepareError::Hash(e.to_string()))?
        .map_err(PrepareError::Hash)
}

/// A password of 20 characters from an alphabet without look-alikes (~115 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random number generator is unavailable");
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        for x in b {
            if (x as usize) < limit && out.len() < 20 {
                out.push(ALPHABET[x as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// 32 random bytes as hex: session ids and CSRF tokens.
pub fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random number generator is unavailable");
    hex::encode(b)
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value with opsbot's attributes; `max_age` 0 removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .expect("cookie values are hex")
}

/// A signed-in person of the web console.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// Sign-in name.
    pub user: String,
    /// Name shown.
    pub display_name: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// SHA-256 of the session cookie (to sign out).
    pub session_hash: String,
}

/// The session of a request's cookie, if it is valid and its user is still in the config.
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<SignedIn>, StoreError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = crate::token_hash(id);
    let Some(s) = state.engine.store().session_by_hash(&hash).await? else {
        return Ok(None);
    };
    // A user removed from the config is signed out at once.
    let Some(u) = state.web().users.iter().find(|u| u.name == s.user) else {
        return Ok(None);
    };
    Ok(Some(SignedIn {
        user: s.user,
        display_name: u.display_name.clone(),
        csrf: s.csrf,
        session_hash: hash,
    }))
}

/// Starts a session for `user`: the cookie to set and the session.
pub async fn start_session(state: &AppState, user: &str) -> Result<(HeaderValue, WebSession), StoreError> {
    let id = random_hex();
    let now = Utc::now();
    let ttl = state.web().session_ttl;
    let session = WebSession {
        id_sha256: crate::token_hash(&id),
        user: user.to_string(),
        csrf: random_hex(),
        created_at: now,
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12)),
    };
    state.engine.store().create_session(&session).await?;
    // Expired sessions are refused already; forgetting them at each sign-in keeps the table small.
    if let Err(e) = state.engine.store().purge_sessions().await {
        tracing::warn!(error = %e, "cannot forget expired sessions");
    }
    Ok((set_cookie(SESSION_COOKIE, &id, ttl, state.web().secure_cookies), session))
}

/// Checks the password of `user` (in a blocking thread: Argon2 is slow on purpose). Unknown
/// users are checked against a dummy hash so the answer takes as long.
pub async fn check_password(state: &AppState, user: &str, password: String) -> bool {
    let entry = state.web().users.iter().find(|u| u.name == user).map(|u| u.hash.clone());
    let known = entry.is_some();
    let hash = entry.unwrap_or_else(|| DUMMY_HASH.to_string());
    let ok = tokio::task::spawn_blocking(move || opsbot_core::password::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    ok && known
}

/// A hash of a random password nobody knows, with the default parameters, so checking an
/// unknown user costs what checking a known one does.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Zm9yIHRpbWluZyBvbmx5$kQxbE0t1bG9nZXR3b0x4b3VRaDVJSWpCcU1nUzJ1Yks";

/// Failed sign-in counters.
#[derive(Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Throttle {
    /// If `keys` may not try now, how long until one may.
    pub fn blocked(&self, keys: &[(String, usize)]) -> Option<Duration> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter()
            .filter_map(|(k, max)| {
                let recent: Vec<&Instant> = map.get(k)?.iter().filter(|t| now.duration_since(**t) < FAILURE_WINDOW).collect();
                (recent.len() >= *max).then(|| {
                    let oldest = recent[recent.len() - max];
                    FAILURE_WINDOW
                        .saturating_sub(now.duration_since(*oldest))
                        .max(Duration::from_secs(1))
                })
            })
            .max()
    }

    /// Counts a failure against each key.
    pub fn fail(&self, keys: &[(String, usize)]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_THROTTLE_KEYS {
            map.retain(|_, v| v.iter().any(|t| now.duration_since(*t) < FAILURE_WINDOW));
            if map.len() >= MAX_THROTTLE_KEYS {
                map.clear();
            }
        }
        for (k, max) in keys {
            let v = map.entry(k.clone()).or_default();
            v.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
            v.push(now);
            let keep = v.len().saturating_sub(*max);
            v.drain(..keep);
        }
    }

    /// Forgets the failures of a key (after a successful sign-in).
    pub fn clear(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// `403 csrf`: the request did not carry the session's anti-forgery token.
pub(crate) fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "This request did not carry the page's anti-forgery token (CSRF); reload the page and try again.",
    )
}

/// Whether a scripted request carries the session's CSRF token in its header.
pub(crate) fn csrf_header_ok(parts: &Parts, s: &SignedIn) -> bool {
    parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| same_token(t.trim(), &s.csrf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_is_usable() {
        opsbot_core::password::check_hash(DUMMY_HASH).unwrap();
        assert!(!opsbot_core::password::verify_password("", DUMMY_HASH));
    }

    #[test]
    fn passwords_are_random_and_readable() {
        let a = random_password();
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() && !"0O1lIio".contains(c)), "{a}");
        assert_ne!(a, random_password());
    }

    #[test]
    fn throttle_counts_per_key_and_forgets_on_success() {
        let t = Throttle::default();
        let keys = vec![("user:ana".to_string(), 3), ("addr:1".to_string(), 5)];
        assert!(t.blocked(&keys).is_none());
        for _ in 0..3 {
            t.fail(&keys);
        }
        let wait = t.blocked(&keys).expect("blocked after 3 failures");
        assert!(wait > Duration::from_secs(60) && wait <= FAILURE_WINDOW, "{wait:?}");
        // Another user from the same address is not blocked yet (5 per address).
        assert!(t.blocked(&[("user:bo".into(), 3), ("addr:1".into(), 5)]).is_none());
        t.clear("user:ana");
        assert!(t.blocked(&[("user:ana".into(), 3)]).is_none());
    }

    #[test]
    fn cookies_are_found_and_set_strictly() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; opsbot_session=abc ; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        let c = set_cookie(SESSION_COOKIE, "abc", Duration::from_secs(60), true);
        let c = c.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=60"] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!set_cookie("x", "y", Duration::ZERO, false).to_str().unwrap().contains("Secure"));
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("abc", "ab"));
    }
}
