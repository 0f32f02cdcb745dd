//! `POST /api/v1/executions`: the same steps and checks as chat, and every way a body can be wrong.

use crate::harness::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use opsbot_core::{Envelope, Place, UserId};
use opsbot_store::Store as _;
use serde_json::json;

#[tokio::test]
async fn a_run_is_queued_with_its_location_canonical_params_and_the_api_identity() {
    let t = TestApp::new().await;
    let r = t
        .post(
            "/api/v1/executions",
            json!({"job": "Deploy", "params": {"app": "web", "env": "production", "replicas": 3, "force": true}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let j = r.json();
    let id = j["id"].as_i64().unwrap();
    assert_eq!(r.header("location"), format!("/api/v1/executions/{id}"));
    assert_eq!(j["job"], "deploy");
    assert_eq!(j["state"], "queued");
    assert_eq!(
        j["params"],
        json!({"app": "web", "env": "prod", "replicas": "3", "force": "true", "token": "••••"})
    );
    assert_eq!(j["requested_by"], "web:ana");
    assert_eq!(j["requester_name"], "ana");
    // A place of the request's own: `api/USER/` and 16 random hex digits.
    let place = j["place"].as_str().unwrap();
    let own = place.strip_prefix("api/ana/").unwrap_or_else(|| panic!("{place}"));
    assert!(own.len() == 16 && own.chars().all(|c| c.is_ascii_hexdigit()), "{place}");
    let next = t.run(json!({"job": "hello"})).await;
    let next = t.store.execution(next).await.unwrap().unwrap();
    assert_eq!(next.place.thread.as_ref().map(|t| t.len()), Some(16));
    assert_ne!(next.place.to_string(), place);
    assert!(j["created_at"].as_str().unwrap().ends_with('Z'), "{j}");
    assert_eq!(j["started_at"], json!(null));
    assert_eq!(j["cancel_requested"], false);
    // The stored record has the real secret; only views hide it.
    let e = t.store.execution(id).await.unwrap().unwrap();
    assert_eq!(e.params["token"], "s3cret");
    assert_eq!(e.requested_by, UserId::new("web", "ana"));
}

#[tokio::test]
async fn positional_args_fill_the_params_not_named_in_order_and_stay_values() {
    let t = TestApp::new().await;
    let r = t
        .post(
            "/api/v1/executions",
            json!({"job": "deploy", "params": {"env": "staging"}, "args": ["api", 2]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["params"]["app"], "api");
    assert_eq!(r.json()["params"]["replicas"], "2");
    // A positional value that looks like `key=value` or an option is still a value (and refused here).
    let r = t.post("/api/v1/executions", json!({"job": "hello", "args": ["who=x"]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.message().contains("`who=x` is not allowed"), "{}", r.message());
    let r = t.post("/api/v1/executions", json!({"job": "hello", "args": ["--who"]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    // Values with spaces, quotes and shell syntax arrive as they are (and are checked by the pattern).
    let r = t
        .post(
            "/api/v1/executions",
            json!({"job": "hello", "params": {"who": "a \"b\" $(reboot)"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.message().contains("a \"b\" $(reboot)"), "{}", r.message());
}

#[tokio::test]
async fn unknown_job_is_refused_with_did_you_mean() {
    let t = TestApp::new().await;
    let r = t.post("/api/v1/executions", json!({"job": "deplyo"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "refused");
    assert!(
        r.message().contains("There is no job `deplyo`. Did you mean `deploy`?"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn a_bad_value_is_refused_with_the_words_chat_gives() {
    let t = TestApp::new().await;
    let r = t
        .post(
            "/api/v1/executions",
            json!({"job": "deploy", "params": {"app": "web", "env": "stagign"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "refused");
    let chat = t
        .engine
        .handle(&Envelope::direct(
            UserId::new("chat", "U1"),
            Place::new("chat", "D1"),
            "deploy app=web env=stagign",
        ))
        .await;
    let chat_text = chat.replies[0].plain_text();
    assert_eq!(r.message(), chat_text.trim());
    assert!(r.message().contains("Did you mean `staging`?"), "{}", r.message());
    let r = t
        .post(
            "/api/v1/executions",
            json!({"job": "deploy", "params": {"app": "web", "env": "prod", "replicas": 9}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("9 is out of range"), "{}", r.message());
    let r = t
        .post(
            "/api/v1/executions",
            json!({"job": "deploy", "params": {"app": "web", "env": "prod", "colour": "red"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("has no parameter `colour`"), "{}", r.message());
}

#[tokio::test]
async fn a_sensitive_job_needs_confirm_and_leaves_no_dialog_open() {
    let t = TestApp::new().await;
    let r = t.post("/api/v1/executions", json!({"job": "restart"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.code(), "confirmation_required");
    assert!(r.message().contains("`restart` is sensitive"), "{}", r.message());
    assert!(r.message().contains("\"confirm\": true"), "{}", r.message());
    // No dialog is left: the same user's next chat-style message in the same place is not an answer.
    let place = request_place(&t).await;
    assert_eq!(place.platform, "api");
    let env = || {
        let mut e = Envelope::direct(UserId::new("web", "ana"), place.clone(), "yes");
        e.display_name = Some("ana".into());
        e
    };
    assert!(t.store.dialog(&place, &UserId::new("web", "ana")).await.unwrap().is_none());
    let o = t.engine.handle(&env()).await;
    assert!(o.queued.is_none());
    assert!(
        o.replies[0].plain_text().contains("Nothing is waiting for your answer"),
        "{}",
        o.replies[0].plain_text()
    );
    assert!(t.store.executions(&Default::default()).await.unwrap().is_empty());
    // It was asked and abandoned, both audited.
    let recs = t.store.audit_records(10).await.unwrap();
    let decisions: Vec<&str> = recs.iter().rev().map(|r| r.decision.as_str()).collect();
    assert_eq!(decisions, ["asked", "abandoned"]);
}

#[tokio::test]
async fn a_sensitive_job_with_confirm_is_queued_and_audited_as_confirmed() {
    let t = TestApp::new().await;
    let r = t.post("/api/v1/executions", json!({"job": "restart", "confirm": true})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["job"], "restart");
    let recs = t.store.audit_records(10).await.unwrap();
    let decisions: Vec<&str> = recs.iter().rev().map(|r| r.decision.as_str()).collect();
    assert_eq!(decisions, ["asked", "confirmed", "accepted"]);
    // All three in the request's own place, where nothing is left open.
    let place = request_place(&t).await;
    assert!(recs.iter().all(|r| r.place == place), "{recs:?}");
    assert!(t.store.dialog(&place, &UserId::new("web", "ana")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_missing_param_is_422_and_the_question_is_withdrawn() {
    let t = TestApp::new().await;
    let r = t
        .post("/api/v1/executions", json!({"job": "deploy", "params": {"app": "web"}}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.code(), "missing_param");
    assert!(
        r.message().contains("`deploy` needs `env` (one of staging, prod)"),
        "{}",
        r.message()
    );
    let place = request_place(&t).await;
    assert!(t.store.dialog(&place, &UserId::new("web", "ana")).await.unwrap().is_none());
    // The next request is not taken as the answer to a question.
    let r = t.post("/api/v1/executions", json!({"job": "hello"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["job"], "hello");
}

#[tokio::test]
async fn a_dialog_left_open_in_the_shared_api_place_neither_answers_runs_nor_cancels() {
    let t = TestApp::new().await;
    // As if an earlier request (of an older version, or a cancel) had died after the engine
    // asked for `env` in `api/ana`.
    let ana = UserId::new("web", "ana");
    let mut env = Envelope::direct(ana.clone(), Place::new("api", "ana"), "run deploy app=web");
    env.display_name = Some("ana".into());
    assert!(t.engine.handle(&env).await.awaiting.is_some());
    let r = t
        .post("/api/v1/executions", json!({"job": "hello", "params": {"who": "bob"}}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["job"], "hello");
    assert_eq!(r.json()["params"]["who"], "bob");
    // A cancel goes to `api/ana`: the open question is closed first, then the cancel is done.
    let id = r.json()["id"].as_i64().unwrap();
    let r = t.post(&format!("/api/v1/executions/{id}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["state"], "cancelled", "{}", r.text());
    assert!(t.store.dialog(&Place::new("api", "ana"), &ana).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_of_one_user_never_answer_each_other() {
    let t = TestApp::new().await;
    // A second server on the same store, as a second opsbot process would be: it does not
    // share the first one's per-user locks.
    let mut other = TestApp::new().await;
    other.app = opsbot_web::app(opsbot_web::AppState::new(t.engine.clone()));
    other.token = t.token.clone();
    let one = |i: usize| {
        let server = if i % 4 < 2 { &t } else { &other };
        async move {
            server
                .post("/api/v1/executions", json!({"job": "restart", "confirm": i.is_multiple_of(2)}))
                .await
        }
    };
    let rs = futures_util::future::join_all((0..16).map(one)).await;
    for (i, r) in rs.iter().enumerate() {
        let want = if i.is_multiple_of(2) {
            StatusCode::CREATED
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(r.status, want, "{i}: {}", r.text());
    }
    assert_eq!(t.store.executions(&Default::default()).await.unwrap().len(), 8);
}

/// The place of the newest audit record (the last request's own place).
async fn request_place(t: &TestApp) -> Place {
    let recs = t.store.audit_records(1).await.unwrap();
    let place = recs[0].place.clone();
    assert!(place.key().starts_with("api/ana/"), "{place}");
    place
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_bad_requests_in_the_envelope() {
    let t = TestApp::new().await;
    let cases: [(&str, &str); 7] = [
        ("{\"job\": ", "not valid JSON"),
        ("not json", "not valid JSON"),
        (
            "{\"job\": \"deploy\", \"params\": [\"app=web\"]}",
            "invalid type: sequence, expected a map",
        ),
        ("{\"job\": 5}", "invalid type: integer `5`, expected a string"),
        ("{\"params\": {}}", "missing field `job`"),
        ("{\"job\": \"deploy\", \"parms\": {}}", "unknown field `parms`"),
        ("[]", "does not fit"),
    ];
    for (body, want) in cases {
        let r = t.post_raw("/api/v1/executions", body.to_string()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(r.code(), "bad_request", "{body}");
        assert!(r.message().contains(want), "{body}: {}", r.message());
    }
    let r = t
        .call(
            t.req(Method::POST, "/api/v1/executions")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("{\"job\": \"hello\"}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.code(), "unsupported_media_type");
    // Nothing was run or audited by any of these.
    assert!(t.store.audit_records(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn nested_and_null_param_values_are_invalid_params() {
    let t = TestApp::new().await;
    for (body, want) in [
        (
            json!({"job": "deploy", "params": {"app": {"name": "web"}}}),
            "`params.app` is an object",
        ),
        (json!({"job": "deploy", "params": {"app": ["web"]}}), "`params.app` is a list"),
        (json!({"job": "deploy", "params": {"app": null}}), "`params.app` is null"),
        (json!({"job": "deploy", "args": ["web", {"x": 1}]}), "`args[1]` is an object"),
        (
            json!({"job": "deploy", "params": {"not a name": "x"}}),
            "`not a name` is not a parameter name",
        ),
    ] {
        let r = t.post("/api/v1/executions", body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.text());
        assert_eq!(r.code(), "invalid_params");
        assert!(r.message().contains(want), "{body}: {}", r.message());
    }
    assert!(t.store.audit_records(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_100_kib_body_is_payload_too_large_in_the_envelope() {
    let t = TestApp::new().await;
    let big = format!("{{\"job\": \"hello\", \"params\": {{\"who\": \"{}\"}}}}", "a".repeat(100 * 1024));
    // With a Content-Length the limit answers before the body is read…
    let r = t
        .call(
            t.req(Method::POST, "/api/v1/executions")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, big.len())
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.code(), "payload_too_large");
    assert!(r.message().contains("64 KiB"), "{}", r.message());
    // …and without one (a streamed body), while reading it.
    let stream = futures_util::stream::iter(
        big.into_bytes()
            .chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = t
        .call(
            t.req(Method::POST, "/api/v1/executions")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    assert_eq!(r.code(), "payload_too_large");
}

#[tokio::test]
async fn runs_are_audited_as_the_api_user_in_json_and_json_lines() {
    let t = TestApp::new().await;
    t.run(json!({"job": "deploy", "params": {"app": "web", "env": "prod"}})).await;
    t.post("/api/v1/executions", json!({"job": "nosuch"})).await;
    let r = t.get("/api/v1/audit?limit=10").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let recs = r.json()["records"].as_array().unwrap().clone();
    assert_eq!(recs.len(), 2);
    // Newest first.
    assert_eq!(recs[0]["decision"], "refused");
    assert_eq!(recs[1]["decision"], "accepted");
    assert_eq!(recs[1]["actor"], "web:ana");
    assert_eq!(recs[1]["actor_name"], "ana");
    assert!(recs[1]["place"].as_str().unwrap().starts_with("api/ana/"), "{}", recs[1]["place"]);
    assert_eq!(recs[1]["action"], "run");
    assert_eq!(recs[1]["params"]["token"], "••••");
    assert!(recs[1]["execution_id"].is_i64());

    let r = t.get("/api/v1/audit?format=jsonl&limit=1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/x-ndjson");
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["decision"], "refused");

    for bad in [
        "/api/v1/audit?format=xml",
        "/api/v1/audit?limit=0",
        "/api/v1/audit?limit=1001",
        "/api/v1/audit?limit=x",
    ] {
        let r = t.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.code(), "bad_request");
    }
}

#[tokio::test]
async fn integral_floats_are_integers_and_other_floats_are_left_to_the_param_type() {
    let t = TestApp::new().await;
    for (body, want) in [
        (
            r#"{"job": "deploy", "params": {"app": "api", "env": "prod", "replicas": 3.0}}"#,
            "3",
        ),
        (
            r#"{"job": "deploy", "params": {"app": "api", "env": "prod", "replicas": 1e0}}"#,
            "1",
        ),
        (r#"{"job": "deploy", "params": {"app": "api", "env": "prod"}, "args": [2E0]}"#, "2"),
    ] {
        let r = t.post_raw("/api/v1/executions", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{body}: {}", r.text());
        assert_eq!(r.json()["params"]["replicas"], want, "{body}");
    }
    let r = t
        .post_raw(
            "/api/v1/executions",
            r#"{"job": "deploy", "params": {"app": "api", "env": "prod", "replicas": 2.5}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.message().contains("2.5"), "{}", r.message());
}
