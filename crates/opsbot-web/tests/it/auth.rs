//! Tokens: missing, malformed, unknown, revoked; the open routes need none.

use crate::harness::TestApp;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use opsbot_store::Store as _;

async fn get_with(t: &TestApp, auth: Option<&str>) -> crate::harness::Resp {
    let mut b = Request::builder().method(Method::GET).uri("/api/v1/jobs");
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    t.call(b.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn health_readiness_metrics_and_the_document_need_no_token() {
    let t = TestApp::new().await;
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let r = t.call(Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    }
}

#[tokio::test]
async fn api_routes_without_a_well_formed_bearer_token_are_unauthorized() {
    let t = TestApp::new().await;
    for auth in [
        None,
        Some("Basic YW5hOnB3"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer a b"),
        Some(t.token.as_str()),
    ] {
        let r = get_with(&t, auth).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}: {}", r.text());
        assert_eq!(r.code(), "unauthorized");
        assert!(r.message().contains("Authorization: Bearer"), "{}", r.message());
        assert_eq!(r.header("www-authenticate"), "Bearer");
    }
    // The scheme is case-insensitive.
    let r = get_with(&t, Some(&format!("bearer {}", t.token))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn unknown_and_revoked_tokens_are_invalid_and_never_echoed() {
    let t = TestApp::new().await;
    let r = get_with(&t, Some("Bearer opsb_0123456789abcdef0123456789abcdef01234567")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "invalid_token");
    assert!(!r.text().contains("0123456789abcdef"), "{}", r.text());

    let bob = t.token_for("bob").await;
    let r = get_with(&t, Some(&format!("Bearer {bob}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let id = t.store.tokens().await.unwrap().into_iter().find(|k| k.user == "bob").unwrap().id;
    assert!(t.store.revoke_token(id).await.unwrap());
    let r = get_with(&t, Some(&format!("Bearer {bob}"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "invalid_token");
    assert!(!r.text().contains(&bob));
    // Its use was recorded before it was revoked.
    let bob = t.store.tokens().await.unwrap().into_iter().find(|k| k.user == "bob").unwrap();
    assert!(bob.last_used_at.is_some() && bob.revoked_at.is_some(), "{bob:?}");
}
