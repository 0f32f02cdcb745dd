//! Sign-in to the console: the form, its double-submit token, wrong passwords, throttling,
//! cookie attributes, sign-out, and the session cookie on the API (with its CSRF header).

use crate::chat::{ChatServer, between, set_cookie};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use opsbot_store::Store;
use opsbot_web::session::WebSettings;

async fn login_form(s: &ChatServer) -> (String, String) {
    let (status, headers, html) = s.call(Request::get("/login?next=/chat/db-team").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"sign-in\""), "{html}");
    // (minijinja writes `/` as `&#x2f;` in attribute values; browsers read it back as `/`.)
    assert!(
        html.contains("name=\"next\" value=\"&#x2f;chat&#x2f;db-team\""),
        "next kept: {html}"
    );
    let cookie = set_cookie(&headers, "opsbot_login").unwrap();
    let csrf = between(&html, "name=\"csrf\" value=\"", "\"").unwrap().to_string();
    (cookie, csrf)
}

async fn post_login(s: &ChatServer, cookie: Option<&str>, body: &str) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::post("/login").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("opsbot_login={c}"));
    }
    s.call(req.body(Body::from(body.to_string())).unwrap()).await
}

#[tokio::test]
async fn the_form_signs_in_with_strict_cookies_and_refuses_what_it_must() {
    let s = ChatServer::start().await;
    // Strangers are sent to the sign-in page and brought back.
    let (status, headers, _) = s.call(Request::get("/chat/db-team?x=1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login?next=/chat/db-team%3Fx%3D1");

    let (cookie, csrf) = login_form(&s).await;
    // Without the form token, or with another one: refused, nobody signed in.
    let (status, headers, html) = post_login(&s, Some(&cookie), "user=ana&password=pw-ana").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("CSRF"), "{html}");
    assert!(set_cookie(&headers, "opsbot_session").is_none());
    let (status, _, _) = post_login(&s, None, &format!("user=ana&password=pw-ana&csrf={csrf}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A wrong password, an unknown user: the same words, no session.
    for body in [
        format!("user=ana&password=nope&csrf={csrf}"),
        format!("user=zed&password=pw-zed&csrf={csrf}"),
    ] {
        let (status, headers, html) = post_login(&s, Some(&cookie), &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{html}");
        assert!(
            html.contains("id=\"login-error\"") && html.contains("Wrong user name or password."),
            "{html}"
        );
        assert!(set_cookie(&headers, "opsbot_session").is_none());
    }
    // The right one: a strict, HttpOnly session cookie (not Secure on plain http), back to `next`.
    let (status, headers, _) = post_login(
        &s,
        Some(&cookie),
        &format!("user=ana&password=pw-ana&csrf={csrf}&next=/chat/db-team"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/chat/db-team");
    let raw = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("opsbot_session="))
        .unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(raw.contains(part), "{raw}");
    }
    assert!(!raw.contains("Secure"), "{raw}");
    // Only the cookie's hash is stored.
    let session = set_cookie(&headers, "opsbot_session").unwrap();
    assert!(s.t.store.session_by_hash(&session).await.unwrap().is_none());
    assert!(
        s.t.store
            .session_by_hash(&opsbot_web::token_hash(&session))
            .await
            .unwrap()
            .is_some()
    );
    // `next` never leaves the site.
    let (cookie, csrf) = login_form(&s).await;
    let (_, headers, _) = post_login(
        &s,
        Some(&cookie),
        &format!("user=bo&password=pw-bo&csrf={csrf}&next=//evil.example/x"),
    )
    .await;
    assert_eq!(headers[header::LOCATION], "/chat");
}

#[tokio::test]
async fn https_public_url_makes_cookies_secure() {
    let s = ChatServer::start_with(WebSettings {
        secure_cookies: true,
        ..Default::default()
    })
    .await;
    let (_, headers, _) = s.call(Request::get("/login").body(Body::empty()).unwrap()).await;
    let raw = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(raw.contains("; Secure"), "{raw}");
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_user_and_success_clears_them() {
    let s = ChatServer::start().await;
    let (cookie, csrf) = login_form(&s).await;
    for _ in 0..opsbot_web::session::MAX_FAILURES_PER_USER {
        let (status, _, _) = post_login(&s, Some(&cookie), &format!("user=ana&password=guess&csrf={csrf}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused for a while, with Retry-After.
    let (status, headers, html) = post_login(&s, Some(&cookie), &format!("user=ana&password=pw-ana&csrf={csrf}")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{html}");
    assert!(html.contains("Too many failed sign-ins"), "{html}");
    let wait: u64 = headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 15 * 60, "{wait}");
    assert!(set_cookie(&headers, "opsbot_session").is_none());
    // Another user is not locked out by ana's failures.
    let (status, _, _) = post_login(&s, Some(&cookie), &format!("user=bo&password=pw-bo&csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // bo fails 4 times, then signs in: the count starts again.
    for _ in 0..opsbot_web::session::MAX_FAILURES_PER_USER - 1 {
        post_login(&s, Some(&cookie), &format!("user=bo&password=guess&csrf={csrf}")).await;
    }
    let (status, _, _) = post_login(&s, Some(&cookie), &format!("user=bo&password=pw-bo&csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = post_login(&s, Some(&cookie), &format!("user=bo&password=guess&csrf={csrf}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "one failure after a success is not a lock-out");
}

#[tokio::test]
async fn the_session_works_on_the_api_with_its_csrf_header_and_ends_at_sign_out() {
    let s = ChatServer::start().await;
    let (session, csrf) = s.sign_in("ana").await;
    let cookie = format!("opsbot_session={session}");
    let (status, _, body) = s
        .call(
            Request::get("/api/v1/jobs")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let run = |token: Option<&str>| {
        let mut r = Request::post("/api/v1/executions")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.body(Body::from(r#"{"job":"hello","params":{"who":"web"}}"#)).unwrap()
    };
    let (status, _, body) = s.call(run(None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("\"code\":\"csrf\""), "{body}");
    let (status, _, body) = s.call(run(Some("0123"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(s.t.store.executions(&Default::default()).await.unwrap().is_empty(), "nothing ran");
    let (status, _, body) = s.call(run(Some(&csrf))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let e = &s.t.store.executions(&Default::default()).await.unwrap()[0];
    assert_eq!(e.requested_by.to_string(), "web:ana");

    // Sign-out needs the token too; then the cookie opens nothing.
    let logout = |body: String| {
        Request::post("/logout")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, _) = s.call(logout(String::new())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = s.call(logout(format!("csrf={csrf}"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let (status, _, _) = s
        .call(
            Request::get("/api/v1/jobs")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = s
        .call(Request::get("/chat").header(header::COOKIE, &cookie).body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[header::LOCATION].to_str().unwrap().starts_with("/login"));
}

#[tokio::test]
async fn pages_carry_a_strict_content_policy() {
    let s = ChatServer::start().await;
    let (session, _) = s.sign_in("ana").await;
    let (_, headers, html) = s
        .call(
            Request::get("/chat")
                .header(header::COOKIE, format!("opsbot_session={session}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(!html.contains("<script>"), "no inline scripts");
    // The assets are embedded and served with a long cache (their URL carries a version).
    let (status, headers, js) = s.call(Request::get("/assets/chat.js").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    assert!(js.contains("WebSocket"));
    let (status, _, _) = s.call(Request::get("/assets/../Cargo.toml").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
