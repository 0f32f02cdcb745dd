//! Health, readiness, the OpenAPI document, unknown routes, wrong methods and store failures.

use crate::harness::TestApp;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let t = TestApp::new().await;
    let r = t.call(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    assert!(r.header("content-type").starts_with("text/plain"));
    let r = t.call(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({"status": "ready", "adapters": []}));
}

#[tokio::test]
async fn a_store_failure_is_503_for_readyz_and_500_internal_elsewhere_without_details() {
    let t = TestApp::new().await;
    t.store.close().await;
    let r = t.call(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.code(), "not_ready");
    let r = t.get("/api/v1/jobs").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert_eq!(r.code(), "internal");
    assert!(r.message().contains("give the error id to an admin"), "{}", r.message());
    let text = r.text().to_lowercase();
    for leak in ["pool", "sqlite", "database", "closed"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    // Health does not depend on the store.
    let r = t.call(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let t = TestApp::new().await;
    for path in ["/api/v1/nope", "/api/v2/jobs", "/api"] {
        let r = t.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.code(), "not_found");
    }
    // Outside the API a person's browser gets a page.
    let r = t.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.header("content-type").starts_with("text/html"), "{:?}", r.headers);
    assert!(r.text().contains("There is no page here"), "{}", r.text());
    let r = t.call(t.req(Method::DELETE, "/api/v1/jobs").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text());
    assert_eq!(r.code(), "method_not_allowed");
    assert!(r.header("allow").contains("GET"), "{:?}", r.headers);
    assert!(r.message().contains("`DELETE` is not allowed"), "{}", r.message());
    let r = t.call(Request::put("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_with_bearer_security() {
    let t = TestApp::new().await;
    let r = t.call(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("application/json"));
    let doc: Value = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    let want = [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{name}", "get"),
        ("/api/v1/executions", "get"),
        ("/api/v1/executions", "post"),
        ("/api/v1/executions/{id}", "get"),
        ("/api/v1/executions/{id}/cancel", "post"),
        ("/api/v1/executions/{id}/log", "get"),
        ("/api/v1/executions/{id}/log/stream", "get"),
        ("/api/v1/audit", "get"),
        ("/api/v1/approvals/{id}", "get"),
        ("/api/v1/openapi.json", "get"),
    ];
    for (path, method) in want {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing");
    }
    assert_eq!(paths.len(), 13, "{:?}", paths.keys().collect::<Vec<_>>());
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().expect("every operation has an id"))
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((ids.len(), n), (14, 14), "operation ids must be unique: {ids:?}");
    let schemes = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["type"], "http");
    assert_eq!(schemes["scheme"], "bearer");
    assert!(doc["security"].to_string().contains("bearer"));
    // Open routes say so; the run route documents its body and the error envelope.
    assert_eq!(paths["/healthz"]["get"]["security"], serde_json::json!([{}]));
    let post = &paths["/api/v1/executions"]["post"];
    assert!(post["requestBody"].to_string().contains("RunRequest"), "{post}");
    for status in ["201", "400", "401", "409", "413", "422"] {
        assert!(post["responses"][status].is_object(), "{status} missing: {post}");
    }
    assert!(post["responses"]["409"].to_string().contains("ErrorBody"));
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "ErrorBody",
        "ErrorDetail",
        "ExecutionView",
        "ExecutionList",
        "JobView",
        "RunRequest",
        "AuditView",
        "LineView",
        "ApprovalPending",
        "ApprovalView",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert_eq!(opsbot_web::openapi().paths.paths.len(), 13);
}

async fn scrape(t: &TestApp) -> String {
    t.call(Request::get("/metrics").body(Body::empty()).unwrap()).await.text()
}

#[tokio::test]
async fn metrics_reuse_the_execution_counts_for_a_few_seconds() {
    let t = TestApp::new().await;
    let text = scrape(&t).await;
    assert!(text.lines().any(|l| l == "opsbot_queue_depth 0"), "{text}");
    // Queued now, but the next scrape comes within the TTL: the store is not asked again.
    t.run(serde_json::json!({"job": "hello"})).await;
    let text = scrape(&t).await;
    assert!(text.lines().any(|l| l == "opsbot_queue_depth 0"), "{text}");
    assert!(text.lines().any(|l| l == "opsbot_executions{state=\"queued\"} 0"), "{text}");
    // Many concurrent scrapes are all answered (one reads, the others share).
    let texts = futures_util::future::join_all((0..8).map(|_| scrape(&t))).await;
    assert!(texts.iter().all(|x| x.contains("opsbot_queue_depth")));
}
