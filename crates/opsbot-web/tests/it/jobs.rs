//! The catalog as JSON.

use crate::harness::TestApp;
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn jobs_list_their_param_schemas_with_secret_defaults_hidden() {
    let t = TestApp::new().await;
    let r = t.get("/api/v1/jobs").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let names: Vec<&str> = j["jobs"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hello", "deploy", "restart", "sleepy", "lines"]);
    let deploy = &j["jobs"][1];
    assert_eq!(deploy["description"], "Deploy an app to an environment");
    assert_eq!(deploy["aliases"], json!(["deploy {app} to {env}"]));
    assert_eq!(deploy["sensitive"], false);
    assert_eq!(deploy["timeout_seconds"], 60);
    assert_eq!(deploy["concurrency"], 2);
    let p = &deploy["params"];
    assert_eq!(p[0]["name"], "app");
    assert_eq!(p[0]["type"], "enum");
    assert_eq!(p[0]["required"], true);
    assert_eq!(p[0]["help"], "which application");
    assert_eq!(
        p[1]["allowed"]["values"],
        json!([{"value": "staging", "synonyms": []}, {"value": "prod", "synonyms": ["production"]}])
    );
    assert_eq!(p[2]["type"], "int");
    assert_eq!(
        (p[2]["allowed"]["min"].as_i64(), p[2]["allowed"]["max"].as_i64()),
        (Some(1), Some(5))
    );
    assert_eq!(p[2]["default"], "1");
    assert_eq!(p[3]["type"], "bool");
    assert_eq!(p[4]["name"], "token");
    assert_eq!(p[4]["secret"], true);
    assert_eq!(p[4]["default"], "••••");
    assert!(!r.text().contains("s3cret"));
    let hello = &j["jobs"][0];
    assert_eq!(hello["params"][0]["allowed"]["pattern"], "[a-z]+");
    assert_eq!(hello["examples"], json!(["hello who=ana"]));
    assert_eq!(j["jobs"][2]["sensitive"], true);
    assert_eq!(j["jobs"][2]["concurrency"], json!(null));
}

#[tokio::test]
async fn one_job_by_name_or_not_found_with_a_suggestion() {
    let t = TestApp::new().await;
    let r = t.get("/api/v1/jobs/DEPLOY").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["name"], "deploy");
    let r = t.get("/api/v1/jobs/deplyo").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    assert!(r.message().contains("Did you mean `deploy`?"), "{}", r.message());
    let r = t.get("/api/v1/jobs/zzzzzzzz").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.message().contains("Did you mean"), "{}", r.message());
}
