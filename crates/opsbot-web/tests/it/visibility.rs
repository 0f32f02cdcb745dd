//! What a person may see and run through the API follows their roles: others' runs need the
//! `view` verb, the audit trail needs `view` on every job, the job list shows what they may run.

use crate::harness::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

async fn as_user(t: &TestApp, token: &str, method: Method, path: &str, body: Option<serde_json::Value>) -> Resp {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    t.call(req.body(body).expect("request")).await
}

#[tokio::test]
async fn a_narrow_role_sees_its_own_runs_and_jobs_only() {
    let t = TestApp::new().await;
    let lim = t.token_for("lim").await;
    // Ana (admin) runs a deploy; Lim (may run `hello` only) runs hello.
    let anas = t.run(json!({"job": "deploy", "params": {"app": "web", "env": "staging"}})).await;
    let r = as_user(&t, &lim, Method::POST, "/api/v1/executions", Some(json!({"job": "hello"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let lims = r.json()["id"].as_i64().expect("id");

    // Lim's listing has only Lim's run; Ana's has both.
    let r = as_user(&t, &lim, Method::GET, "/api/v1/executions", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let ids: Vec<i64> = r.json()["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![lims]);
    let ids: Vec<i64> = t.get("/api/v1/executions").await.json()["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![lims, anas]);

    // Ana's run, its log and its stream are not Lim's to see, nor to cancel.
    for path in [
        format!("/api/v1/executions/{anas}"),
        format!("/api/v1/executions/{anas}/log"),
        format!("/api/v1/executions/{anas}/log/stream"),
    ] {
        let r = as_user(&t, &lim, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "forbidden");
        assert!(r.text().contains("`view`"), "{}", r.text());
    }
    let r = as_user(&t, &lim, Method::POST, &format!("/api/v1/executions/{anas}/cancel"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let e = t.get(&format!("/api/v1/executions/{anas}")).await.json();
    assert_eq!(e["state"], "queued", "not cancelled: {e}");
    // Lim's own run is Lim's.
    let r = as_user(&t, &lim, Method::GET, &format!("/api/v1/executions/{lims}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Jobs: Lim is shown `hello` only, and told so about `deploy`; running it is refused.
    let r = as_user(&t, &lim, Method::GET, "/api/v1/jobs", None).await;
    let names: Vec<String> = r.json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["hello"]);
    let r = as_user(&t, &lim, Method::GET, "/api/v1/jobs/deploy", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = as_user(
        &t,
        &lim,
        Method::POST,
        "/api/v1/executions",
        Some(json!({"job": "deploy", "params": {"app": "web", "env": "staging"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("role") && r.text().contains("limited"), "{}", r.text());

    // The audit trail is for people who may view every job.
    let r = as_user(&t, &lim, Method::GET, "/api/v1/audit", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(t.get("/api/v1/audit").await.status, StatusCode::OK);
    // And every refusal above that reached the engine is in it.
    let audit = t.get("/api/v1/audit?limit=50").await.json();
    let refused: Vec<&serde_json::Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["decision"] == "refused" && r["actor"] == "web:lim")
        .collect();
    assert!(!refused.is_empty(), "{audit}");
}
