//! End to end with a real worker: runs finish, output is there as text and as a live stream,
//! cancel stops a process, listings filter and page, metrics count.

use crate::harness::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use opsbot_store::Store as _;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_succeeds_and_its_log_has_the_output() {
    let t = TestApp::with_worker().await;
    let id = t
        .run(json!({"job": "deploy", "params": {"app": "api", "env": "staging", "replicas": "2"}}))
        .await;
    let e = t.wait_final(id).await;
    assert_eq!(e["state"], "succeeded", "{e}");
    assert_eq!(e["exit_code"], 0);
    assert!(e["started_at"].is_string() && e["finished_at"].is_string(), "{e}");
    assert!(e["duration_ms"].is_i64(), "{e}");
    let r = t.get(&format!("/api/v1/executions/{id}/log")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.text(), "deploying api to staging x2\n");
}

/// Splits an SSE body into (event, id, data) triples.
fn sse_events(body: &str) -> Vec<(String, Option<String>, String)> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|block| {
            let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            (!data.is_empty()).then_some((event, id, data))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_stream_delivers_every_line_then_the_end() {
    let t = TestApp::with_worker().await;
    let id = t.run(json!({"job": "lines"})).await;
    // Subscribe at once, while the job is still printing.
    let r = t.get(&format!("/api/v1/executions/{id}/log/stream")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.header("content-type").starts_with("text/event-stream"),
        "{}",
        r.header("content-type")
    );
    let events = sse_events(&r.text());
    let lines: Vec<Value> = events
        .iter()
        .filter(|e| e.0 == "line")
        .map(|e| serde_json::from_str(&e.2).unwrap())
        .collect();
    let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["line 1", "line 2", "line 3", "line 4", "line 5", "oops"], "{}", r.text());
    assert_eq!(lines[0]["stream"], "stdout");
    assert_eq!(lines[5]["stream"], "stderr");
    assert!(lines[0]["at"].as_str().unwrap().ends_with('Z'));
    let ids: Vec<&str> = events.iter().filter(|e| e.0 == "line").map(|e| e.1.as_deref().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
    let last = events.last().unwrap();
    assert_eq!(last.0, "end", "{}", r.text());
    let end: Value = serde_json::from_str(&last.2).unwrap();
    assert_eq!(end["id"], id);
    assert_eq!(end["state"], "succeeded");

    // After the end, a reconnect with Last-Event-ID gets only what follows, then the end.
    let req = t
        .req(Method::GET, &format!("/api/v1/executions/{id}/log/stream"))
        .header("last-event-id", "4")
        .body(Body::empty())
        .unwrap();
    let r = t.call(req).await;
    let events = sse_events(&r.text());
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["line", "line", "end"], "{}", r.text());
    assert_eq!(events[0].1.as_deref(), Some("5"));

    // The plain log has the same lines, stderr marked.
    let r = t.get(&format!("/api/v1/executions/{id}/log")).await;
    assert_eq!(r.text(), "line 1\nline 2\nline 3\nline 4\nline 5\n[stderr] oops\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_long_job_and_is_audited_like_chat() {
    let t = TestApp::with_worker().await;
    let id = t.run(json!({"job": "sleepy"})).await;
    // Wait until it runs.
    let start = std::time::Instant::now();
    while t.get(&format!("/api/v1/executions/{id}")).await.json()["state"] != "running" {
        assert!(start.elapsed().as_secs() < 10, "never started");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = t.post(&format!("/api/v1/executions/{id}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["id"], id);
    assert_eq!(r.json()["cancel_requested"], true);
    let e = t.wait_final(id).await;
    assert_eq!(e["state"], "cancelled", "{e}");
    let recs = t.store.audit_records(10).await.unwrap();
    let cancel = recs.iter().find(|r| r.action == "cancel").expect("cancel audited");
    assert_eq!(cancel.actor.to_string(), "web:ana");
    assert_eq!(cancel.execution_id, Some(id));
    assert_eq!(cancel.decision, "accepted");
    // Cancelling again is fine and changes nothing; unknown ids are 404, non-ids 400.
    let r = t.post(&format!("/api/v1/executions/{id}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json()["state"], "cancelled");
    let r = t.post("/api/v1/executions/999/cancel", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
}

#[tokio::test]
async fn unknown_executions_are_404_and_bad_ids_400() {
    let t = TestApp::new().await;
    for path in [
        "/api/v1/executions/42",
        "/api/v1/executions/42/log",
        "/api/v1/executions/42/log/stream",
    ] {
        let r = t.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.code(), "not_found");
        assert!(r.message().contains("#42"), "{}", r.message());
    }
    let r = t.get("/api/v1/executions/abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "bad_request");
    assert!(r.message().contains("`abc` is not an execution id"), "{}", r.message());
}

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    let t = TestApp::new().await;
    let bob = t.token_for("bob").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            t.run(json!({"job": "hello", "params": {"who": format!("n{}", "x".repeat(i))}}))
                .await,
        );
    }
    let deploy = t.run(json!({"job": "deploy", "params": {"app": "web", "env": "prod"}})).await;
    let as_bob = axum::http::Request::post("/api/v1/executions")
        .header("authorization", format!("Bearer {bob}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"job": "hello"}).to_string()))
        .unwrap();
    let r = t.call(as_bob).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bobs = r.json()["id"].as_i64().unwrap();

    let all = t.get("/api/v1/executions").await.json();
    let got: Vec<i64> = all["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [bobs, deploy, ids[4], ids[3], ids[2], ids[1], ids[0]]);
    assert_eq!(all["next_before"], json!(null));

    let page = t.get("/api/v1/executions?job=hello&limit=2").await.json();
    let got: Vec<i64> = ids_of(&page);
    assert_eq!(got, [bobs, ids[4]]);
    let next = page["next_before"].as_i64().unwrap();
    let page = t.get(&format!("/api/v1/executions?job=hello&limit=2&before={next}")).await.json();
    let got: Vec<i64> = ids_of(&page);
    assert_eq!(got, [ids[3], ids[2]]);
    // The last page, exactly full: no next page.
    let next = page["next_before"].as_i64().unwrap();
    let page = t.get(&format!("/api/v1/executions?job=hello&limit=2&before={next}")).await.json();
    let got: Vec<i64> = ids_of(&page);
    assert_eq!(got, [ids[1], ids[0]]);
    assert_eq!(page["next_before"], json!(null));
    // Exactly as many as exist, with the largest limit too.
    for limit in [7, 1000] {
        let page = t.get(&format!("/api/v1/executions?limit={limit}")).await.json();
        assert_eq!(page["executions"].as_array().unwrap().len(), 7, "{limit}");
        assert_eq!(page["next_before"], json!(null), "{limit}");
    }
    let page = t.get("/api/v1/executions?limit=6").await.json();
    assert_eq!(page["executions"].as_array().unwrap().len(), 6);
    assert_eq!(page["next_before"], json!(ids[1]));

    let mine = t.get("/api/v1/executions?user=web:bob&state=queued&job=").await.json();
    let got: Vec<i64> = mine["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [bobs]);
    let none = t.get("/api/v1/executions?state=succeeded").await.json();
    assert!(none["executions"].as_array().unwrap().is_empty());
    let secret = t.get("/api/v1/executions?job=DEPLOY").await.json();
    assert_eq!(secret["executions"][0]["params"]["token"], "••••");

    for bad in [
        "/api/v1/executions?state=done",
        "/api/v1/executions?limit=0",
        "/api/v1/executions?limit=1001",
        "/api/v1/executions?user=bob",
        "/api/v1/executions?before=x",
    ] {
        let r = t.get(bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert_eq!(r.code(), "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_runs_and_executions_by_state() {
    let t = TestApp::with_worker().await;
    for _ in 0..2 {
        let id = t.run(json!({"job": "hello"})).await;
        assert_eq!(t.wait_final(id).await["state"], "succeeded");
    }
    t.post("/api/v1/executions", json!({"job": "nosuch"})).await;
    let r = t.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/plain"), "{}", r.header("content-type"));
    let text = r.text();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has("opsbot_executions{state=\"succeeded\"} 2"), "{text}");
    assert!(has("opsbot_executions{state=\"failed\"} 0"), "{text}");
    assert!(has("opsbot_executions{state=\"lost\"} 0"), "{text}");
    assert!(has("opsbot_queue_depth 0"), "{text}");
    assert!(has("opsbot_api_runs_total{outcome=\"queued\"} 2"), "{text}");
    assert!(has("opsbot_api_runs_total{outcome=\"refused\"} 1"), "{text}");
    assert!(has("opsbot_api_runs_total{outcome=\"confirmation_required\"} 0"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("opsbot_http_requests_total{")
            && l.contains("route=\"/api/v1/executions\"")
            && l.contains("status=\"201\"")
            && l.ends_with(" 2")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("route=\"/api/v1/executions/{id}\"") && l.contains("status=\"200\"")),
        "{text}"
    );
    // A second server in the same process has its own, independent counts.
    let other = TestApp::new().await;
    let text = other.get("/metrics").await.text();
    assert!(!text.contains("route=\"/api/v1/executions\""), "{text}");
    assert!(text.lines().any(|l| l == "opsbot_executions{state=\"succeeded\"} 0"), "{text}");
}

#[tokio::test]
async fn a_long_log_streams_in_batches_without_gaps_or_duplicates_and_resumes() {
    let t = TestApp::new().await;
    let id = t.run(json!({"job": "hello"})).await;
    let eid: opsbot_core::ExecutionId = id;
    let mut n = 0;
    for _ in 0..13 {
        let lines: Vec<opsbot_core::OutputLine> = (0..97)
            .map(|_| {
                n += 1;
                opsbot_core::OutputLine {
                    at: chrono::Utc::now(),
                    stream: opsbot_core::Stream::Stdout,
                    text: format!("l{n}"),
                }
            })
            .collect();
        t.store.append_output(eid, &lines).await.expect("append");
    }
    t.store.request_cancel(eid).await.expect("cancel");
    let stream = |last: Option<&str>| {
        let mut req = t.req(Method::GET, &format!("/api/v1/executions/{id}/log/stream"));
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        req.body(Body::empty()).unwrap()
    };
    for (last, from) in [(None, 1), (Some("700"), 701), (Some(" 0 "), 1), (Some("5000"), 1262)] {
        let r = t.call(stream(last)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let events = sse_events(&r.text());
        let (end, lines) = events.split_last().unwrap();
        assert_eq!(end.0, "end", "{last:?}");
        let want: Vec<String> = (from..=n).map(|i| i.to_string()).collect();
        let ids: Vec<String> = lines.iter().map(|e| e.1.clone().unwrap()).collect();
        assert_eq!(ids, want, "{last:?}");
        for (i, e) in lines.iter().enumerate() {
            let v: Value = serde_json::from_str(&e.2).unwrap();
            assert_eq!(v["text"], format!("l{}", from + i), "{last:?}");
        }
    }
    for bad in ["abc", "-1", "1.5", ""] {
        let r = t.call(stream(Some(bad))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", r.text());
        assert_eq!(r.code(), "bad_request");
        assert!(r.message().contains("Last-Event-ID"), "{}", r.message());
    }
}

/// The execution ids of a listing page, in order.
fn ids_of(page: &serde_json::Value) -> Vec<i64> {
    page["executions"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["id"].as_i64()).collect())
        .unwrap_or_default()
}
