//! The web console's pages, signed in through the real sign-in form: the runs list and its
//! filters, one run (secrets hidden, timeline, log), cancel and re-run through the engine with
//! CSRF checks, the run form per parameter type, the audit page, and the API filters and
//! download the console relies on.

use crate::harness::{Resp, TestApp};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use opsbot_core::{Envelope, ExecState, Place, UserId};
use opsbot_store::Store as _;
use opsbot_web::AppState;
use opsbot_web::session::{WebSettings, WebUserEntry};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// A signed-in browser: the app, its session cookie and the session's CSRF token.
struct Web {
    t: TestApp,
    cookie: String,
    csrf: String,
}

/// Percent-encodes a form or query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of cookie `name` set by a response.
fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.trim().strip_prefix(&format!("{name}=")).map(str::to_string))
        .filter(|v| !v.is_empty())
}

/// The `value` of the hidden input named `name` in a page.
fn hidden_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"));
    let rest = &html[at + format!("name=\"{name}\" value=\"").len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// The ids of the rows (`tr data-id`) of the table with this id, in order.
fn row_ids(html: &str, table: &str) -> Vec<i64> {
    let Some(start) = html.find(&format!("id=\"{table}\"")) else {
        panic!("no table#{table} in {html}");
    };
    let body = &html[start..];
    let body = &body[..body.find("</table>").unwrap_or(body.len())];
    body.match_indices("<tr data-id=\"")
        .map(|(i, m)| {
            let rest = &body[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The `href` of the first `<a …class="CLASS"…>` or `<a id="ID"…>` found by `marker`.
fn link(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind("<a ")?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let href = tag.find("href=\"")?;
    let rest = &tag[href + 6..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// The text of the element with this id (tags removed, entities left as they are).
fn element_text(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in {html}"));
    let open_end = at + html[at..].find('>').unwrap() + 1;
    let tag_start = html[..at].rfind('<').unwrap();
    let tag_name: String = html[tag_start + 1..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let close = open_end + html[open_end..].find(&format!("</{tag_name}>")).unwrap();
    let mut out = String::new();
    let mut in_tag = false;
    for c in html[open_end..close].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The text as the page shows it: the HTML escapes minijinja writes, undone.
fn unescape(s: &str) -> String {
    s.replace("&#x60;", "`")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Web {
    /// A server whose console has the users `ana` and `bob`, signed in as ana.
    async fn new(worker: bool) -> Web {
        let mut t = if worker {
            TestApp::with_worker().await
        } else {
            TestApp::new().await
        };
        let hash = opsbot_core::password::hash_password(PASSWORD).expect("hash");
        let web = WebSettings {
            users: ["ana", "bob"]
                .into_iter()
                .map(|n| WebUserEntry {
                    name: n.into(),
                    display_name: format!("{n} (display)"),
                    hash: hash.clone(),
                })
                .collect(),
            ..Default::default()
        };
        t.state = AppState::with_web(t.engine.clone(), web);
        t.app = opsbot_web::app(t.state.clone());
        let mut w = Web {
            t,
            cookie: String::new(),
            csrf: String::new(),
        };
        w.sign_in("ana").await;
        w
    }

    async fn sign_in(&mut self, user: &str) {
        let form = self.anon(Method::GET, "/login", None).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.text());
        let login_cookie = set_cookie(&form, "opsbot_login").expect("login cookie");
        let token = hidden_value(&form.text(), "csrf");
        let r = self
            .t
            .call(
                Request::builder()
                    .method(Method::POST)
                    .uri("/login")
                    .header(header::COOKIE, format!("opsbot_login={login_cookie}"))
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form_body(&[
                        ("user", user),
                        ("password", PASSWORD),
                        ("csrf", &token),
                        ("next", "/executions"),
                    ])))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        self.cookie = format!("opsbot_session={}", set_cookie(&r, "opsbot_session").expect("session cookie"));
        let page = self.get("/jobs").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let html = page.text();
        let at = html.find("<meta name=\"csrf-token\" content=\"").expect("csrf meta") + 33;
        self.csrf = html[at..at + html[at..].find('"').unwrap()].to_string();
        assert_eq!(self.csrf.len(), 64, "{}", self.csrf);
    }

    async fn anon(&self, method: Method, path: &str, body: Option<String>) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        self.t.call(b.body(body.map(Body::from).unwrap_or_default()).unwrap()).await
    }

    /// A GET with the session cookie.
    async fn get(&self, path: &str) -> Resp {
        self.t
            .call(
                Request::builder()
                    .uri(path)
                    .header(header::COOKIE, &self.cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
    }

    /// A form POST with the session cookie (the CSRF field only when given in `pairs`).
    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        self.t
            .call(
                Request::builder()
                    .method(Method::POST)
                    .uri(path)
                    .header(header::COOKIE, &self.cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(form_body(pairs)))
                    .unwrap(),
            )
            .await
    }

    /// A form POST carrying the session's CSRF token.
    async fn submit(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let mut all = pairs.to_vec();
        all.push(("csrf", &self.csrf));
        self.post(path, &all).await
    }

    /// A page that must be 200, as text.
    async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert!(r.header("content-type").starts_with("text/html"), "{path}");
        r.text()
    }

    /// The run ids a runs-list URL shows.
    async fn runs(&self, query: &str) -> Vec<i64> {
        row_ids(&self.page(&format!("/executions{query}")).await, "executions")
    }

    async fn execution_count(&self) -> usize {
        self.t.store.executions(&Default::default()).await.unwrap().len()
    }
}

/// A run request through the API with a token of `user`.
async fn api_post_as(t: &TestApp, user: &str, body: serde_json::Value) -> Resp {
    let token = t.token_for(user).await;
    t.call(
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/executions")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

/// Where a redirect goes.
fn location(r: &Resp) -> String {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    r.header("location")
}

/// The id of the run a redirect to `/executions/ID` names.
fn redirected_run(r: &Resp) -> i64 {
    let to = location(r);
    to.strip_prefix("/executions/")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a run page: {to}"))
}

#[tokio::test]
async fn strangers_are_sent_to_sign_in_and_can_do_nothing() {
    let w = Web::new(false).await;
    let id = w.t.run(json!({"job": "hello"})).await;
    for path in [
        "/executions",
        "/executions?job=hello&state=queued",
        "/executions/1",
        "/jobs",
        "/jobs/deploy",
        "/audit?actor=ana",
    ] {
        let r = w.anon(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        let to = r.header("location");
        assert!(to.starts_with("/login?next=/"), "{path} → {to}");
    }
    assert_eq!(
        w.anon(Method::GET, "/executions?job=hello&state=queued", None)
            .await
            .header("location"),
        "/login?next=/executions%3Fjob%3Dhello%26state%3Dqueued"
    );
    for path in [
        format!("/executions/{id}/cancel"),
        format!("/executions/{id}/rerun"),
        "/jobs/hello/run".to_string(),
    ] {
        let r = w.anon(Method::POST, &path, Some(form_body(&[("csrf", &w.csrf)]))).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert!(r.header("location").starts_with("/login?next="), "{path}");
    }
    // Nothing happened.
    assert_eq!(w.execution_count().await, 1);
    assert_eq!(w.t.store.execution(id).await.unwrap().unwrap().state, ExecState::Queued);
    // A GET on an action's URL (say, after signing in again) leads back to its page.
    assert_eq!(
        location(&w.get(&format!("/executions/{id}/cancel")).await),
        format!("/executions/{id}")
    );
    assert_eq!(location(&w.get("/jobs/hello/run").await), "/jobs/hello");
}

#[tokio::test]
async fn the_runs_list_filters_by_job_state_person_and_time_and_pages() {
    let w = Web::new(false).await;
    let hello = w.t.run(json!({"job": "hello"})).await;
    let deploy = w.t.run(json!({"job": "deploy", "params": {"app": "web", "env": "prod"}})).await;
    let r = api_post_as(&w.t, "bob", json!({"job": "hello", "params": {"who": "bob"}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let by_bob = r.json()["id"].as_i64().unwrap();
    // One from chat, by another platform's account.
    let chat =
        w.t.engine
            .handle(&Envelope::direct(
                UserId::new("slack", "U1"),
                Place::new("slack", "D1"),
                "run hello who=zoe",
            ))
            .await
            .queued
            .expect("queued from chat");
    let cancelled = w.t.run(json!({"job": "hello"})).await;
    let r = w.t.post(&format!("/api/v1/executions/{cancelled}/cancel"), json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    assert_eq!(w.runs("").await, [cancelled, chat, by_bob, deploy, hello]);
    assert_eq!(w.runs("?job=deploy").await, [deploy]);
    assert_eq!(w.runs("?job=HELLO").await, [cancelled, chat, by_bob, hello]);
    assert_eq!(w.runs("?state=cancelled").await, [cancelled]);
    assert_eq!(w.runs("?state=queued&job=hello").await, [chat, by_bob, hello]);
    // A plain name is the web user; other platforms are written out.
    assert_eq!(w.runs("?user=bob").await, [by_bob]);
    assert_eq!(w.runs("?user=web%3Abob").await, [by_bob]);
    assert_eq!(w.runs("?user=slack%3AU1").await, [chat]);
    assert_eq!(w.runs("?user=ana").await, [cancelled, deploy, hello]);
    // Periods: everything is from today.
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    assert_eq!(w.runs(&format!("?since={today}")).await.len(), 5);
    assert_eq!(w.runs(&format!("?until={today}")).await.len(), 5, "until a date includes that day");
    assert!(w.runs(&format!("?since={tomorrow}")).await.is_empty());
    assert!(w.runs("?since=2000-01-01&until=2000-01-02").await.is_empty());
    assert_eq!(w.runs("?since=2000-01-01T00%3A00%3A00Z&user=bob").await, [by_bob]);
    // The form shows the filters in effect.
    let html = w.page("/executions?state=cancelled&user=bob").await;
    assert!(html.contains("<option value=\"cancelled\" selected>"), "{html}");
    assert!(html.contains("id=\"filter-user\" value=\"bob\""), "{html}");
    assert!(
        html.contains("a plain name such as <code>ana</code> means the web user <code>web:ana</code>"),
        "{html}"
    );

    // Pages of two, keeping the filters.
    let html = w.page("/executions?limit=2&job=hello").await;
    assert_eq!(row_ids(&html, "executions"), [cancelled, chat]);
    let next = link(&html, "class=\"next-page\"").expect("a next page");
    assert!(next.contains("job=hello") && next.contains(&format!("before={chat}")), "{next}");
    let html = w.page(&next).await;
    assert_eq!(row_ids(&html, "executions"), [by_bob, hello]);
    assert!(link(&html, "class=\"next-page\"").is_none(), "the last page has no next: {html}");
}

#[tokio::test]
async fn bad_filters_are_explained_not_failed() {
    let w = Web::new(false).await;
    for (query, words) in [
        ("?state=done", "`done` is not a state"),
        ("?since=yesterday", "`since` is a date like 2024-05-01"),
        ("?until=2024-13-01", "`until` is a date like 2024-05-01"),
        ("?since=2024-05-02&until=2024-05-01", "`since` is not before `until`"),
        ("?user=%3Aana", "`user` is a person as `platform:id`"),
        ("?before=x", "`before` is an execution id"),
        ("?limit=0", "`limit` is a whole number from 1 to 1000"),
    ] {
        let r = w.get(&format!("/executions{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text());
        let text = unescape(&element_text(&r.text(), "filter-error"));
        assert!(text.contains(words), "{query}: {text}");
    }
    for (query, words) in [
        ("?execution=abc", "`execution` is an execution id"),
        ("?since=soon", "`since` is a date"),
        ("?actor=%3A", "`actor` is a person"),
        ("?limit=5000", "`limit` is a whole number"),
    ] {
        let r = w.get(&format!("/audit{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text());
        let text = unescape(&element_text(&r.text(), "filter-error"));
        assert!(text.contains(words), "{query}: {text}");
    }
}

#[tokio::test]
async fn a_run_page_shows_params_with_secrets_hidden_who_asked_and_the_timeline() {
    let w = Web::new(false).await;
    let id =
        w.t.run(json!({"job": "deploy", "params": {"app": "web", "env": "staging", "token": "hunter2"}}))
            .await;
    let html = w.page(&format!("/executions/{id}")).await;
    assert!(!html.contains("hunter2"), "a secret leaked: {html}");
    let params = element_text(&html, "params");
    assert!(
        params.contains("app") && params.contains("web") && params.contains("staging"),
        "{params}"
    );
    assert!(params.contains("token••••"), "{params}");
    assert!(html.contains("id=\"state\" class=\"badge queued\" data-state=\"queued\""), "{html}");
    let requester = element_text(&html, "requester");
    assert!(requester.contains("ana") && requester.contains("web:ana"), "{requester}");
    let timeline = element_text(&html, "timeline");
    assert!(timeline.contains("queued") && timeline.contains("run accepted"), "{timeline}");
    assert!(
        html.contains(&format!("action=\"/executions/{id}/cancel\"")),
        "a queued run can be cancelled"
    );
    assert!(html.contains("id=\"rerun-form\""));
    assert!(html.contains(&format!("href=\"/api/v1/executions/{id}/log?download=1\"")), "{html}");
    assert!(html.contains("data-live=\"1\""), "{html}");
    assert!(html.contains("src=\"/assets/console.js?v="), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    assert!(!html.contains(" style=\""), "no inline style: {html}");

    // A sensitive run shows the confirmation it took.
    let id = w.t.run(json!({"job": "restart", "confirm": true})).await;
    let html = w.page(&format!("/executions/{id}")).await;
    let timeline = element_text(&html, "timeline");
    let asked = timeline.find("run asked").unwrap_or_else(|| panic!("{timeline}"));
    let confirmed = timeline.find("run confirmed").unwrap_or_else(|| panic!("{timeline}"));
    let accepted = timeline.find("run accepted").unwrap_or_else(|| panic!("{timeline}"));
    assert!(asked < confirmed && confirmed < accepted, "{timeline}");
    assert!(html.contains("id=\"rerun-confirm\""), "a sensitive re-run needs confirming: {html}");

    for (path, status) in [
        ("/executions/999", StatusCode::NOT_FOUND),
        ("/executions/abc", StatusCode::BAD_REQUEST),
    ] {
        let r = w.get(path).await;
        assert_eq!(r.status, status, "{path}");
        assert!(r.header("content-type").starts_with("text/html"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_page_has_its_log_exit_code_and_end() {
    let w = Web::new(true).await;
    let id = w.t.run(json!({"job": "lines"})).await;
    let e = w.t.wait_final(id).await;
    assert_eq!(e["state"], "succeeded", "{e}");
    let html = w.page(&format!("/executions/{id}")).await;
    let log = element_text(&html, "log");
    assert_eq!(log, "line 1\nline 2\nline 3\nline 4\nline 5\n[stderr] oops\n");
    assert!(html.contains("<span class=\"err\">[stderr] oops"), "{html}");
    assert!(html.contains("data-live=\"0\""), "{html}");
    assert!(!html.contains("id=\"cancel-form\""), "an ended run has no cancel button");
    let timeline = element_text(&html, "timeline");
    assert!(timeline.contains("started") && timeline.contains("on worker"), "{timeline}");
    assert!(
        timeline.contains("finished: succeeded") && timeline.contains("exit code 0"),
        "{timeline}"
    );
    assert!(element_text(&html, "log-status").contains("Finished: succeeded"), "{html}");
    // The script the page loads is served, and follows the stream named in the page.
    let js = w.get("/assets/console.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.text().contains("EventSource") && js.text().contains("textContent"));
    assert!(
        html.contains(&format!("data-stream=\"/api/v1/executions/{id}/log/stream\"")),
        "{html}"
    );
    assert!(html.contains("data-after=\"6\""), "{html}");
}

#[tokio::test]
async fn cancel_needs_the_csrf_token_and_goes_through_the_engine() {
    let w = Web::new(false).await;
    let id = w.t.run(json!({"job": "hello"})).await;
    let path = format!("/executions/{id}/cancel");
    for pairs in [vec![], vec![("csrf", "0".repeat(64))]] {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = w.post(&path, &pairs).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert!(r.text().contains("anti-forgery"), "{}", r.text());
    }
    assert_eq!(w.t.store.execution(id).await.unwrap().unwrap().state, ExecState::Queued);
    let cancels = |recs: Vec<opsbot_store::AuditRecord>| recs.into_iter().filter(|r| r.action == "cancel").count();
    assert_eq!(cancels(w.t.store.audit_records(50).await.unwrap()), 0);

    let r = w.submit(&path, &[]).await;
    assert_eq!(location(&r), format!("/executions/{id}?flash=cancelled"));
    assert_eq!(w.t.store.execution(id).await.unwrap().unwrap().state, ExecState::Cancelled);
    let rec = &w.t.store.audit_records(1).await.unwrap()[0];
    assert_eq!((rec.action.as_str(), rec.decision.as_str()), ("cancel", "cancelled"));
    assert_eq!(rec.actor, UserId::new("web", "ana"));
    assert_eq!(rec.execution_id, Some(id));
    let html = w.page(&location(&r)).await;
    assert!(html.contains("Cancelled: it had not started yet"), "{html}");
    let timeline = element_text(&html, "timeline");
    let asked = timeline.find("cancel cancelled").unwrap_or_else(|| panic!("{timeline}"));
    let ended = timeline.find("finished: cancelled").unwrap_or_else(|| panic!("{timeline}"));
    assert!(asked < ended, "{timeline}");
    assert!(timeline.contains("by ana (display) (web:ana)"), "{timeline}");
    // Again: it already ended, and the engine says so (and records it).
    let r = w.submit(&path, &[]).await;
    assert_eq!(location(&r), format!("/executions/{id}?flash=ended"));
    assert_eq!(w.t.store.audit_records(1).await.unwrap()[0].decision, "refused");
    // A made-up flash says nothing.
    let html = w.page(&format!("/executions/{id}?flash=%3Cb%3Ehacked")).await;
    assert!(!html.contains("hacked"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_run_from_its_page_stops_it() {
    let w = Web::new(true).await;
    let id = w.t.run(json!({"job": "sleepy"})).await;
    // Wait for the worker to start it.
    for _ in 0..400 {
        if w.t.store.execution(id).await.unwrap().unwrap().state == ExecState::Running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let html = w.page(&format!("/executions/{id}")).await;
    assert!(html.contains("data-state=\"running\"") && html.contains("id=\"cancel\""), "{html}");
    let r = w.submit(&format!("/executions/{id}/cancel"), &[]).await;
    assert_eq!(location(&r), format!("/executions/{id}?flash=stopping"));
    let e = w.t.wait_final(id).await;
    assert_eq!(e["state"], "cancelled", "{e}");
    let rec = &w.t.store.audit_records(1).await.unwrap()[0];
    assert_eq!((rec.action.as_str(), rec.decision.as_str()), ("cancel", "accepted"));
}

#[tokio::test]
async fn rerun_needs_the_csrf_token_and_runs_the_same_values_through_the_engine() {
    let w = Web::new(false).await;
    let id =
        w.t.run(json!({"job": "deploy", "params": {"app": "web", "env": "staging", "replicas": 2, "token": "hunter2"}}))
            .await;
    let path = format!("/executions/{id}/rerun");
    let r = w.post(&path, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w.post(&path, &[("csrf", "nope")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.execution_count().await, 1);

    // As bob, so the new run is his.
    let mut w = w;
    w.sign_in("bob").await;
    let r = w.submit(&path, &[]).await;
    let new = redirected_run(&r);
    assert_ne!(new, id);
    let old = w.t.store.execution(id).await.unwrap().unwrap();
    let e = w.t.store.execution(new).await.unwrap().unwrap();
    assert_eq!(e.job, "deploy");
    assert_eq!(e.params, old.params, "the same values, the secret one included");
    assert_eq!(e.params["token"], "hunter2");
    assert_eq!(e.requested_by, UserId::new("web", "bob"));
    assert!(e.place.to_string().starts_with("api/bob/"), "{}", e.place);
    let rec = &w.t.store.audit_records(1).await.unwrap()[0];
    assert_eq!((rec.decision.as_str(), rec.execution_id), ("accepted", Some(new)));
    assert_eq!(rec.params.as_ref().unwrap()["token"], "••••");
    let html = w.page(&format!("/executions/{new}")).await;
    assert!(!html.contains("hunter2"), "{html}");

    // A sensitive job needs the box ticked, and the engine records both answers.
    let restart = w.t.run(json!({"job": "restart", "confirm": true})).await;
    let before = w.execution_count().await;
    let r = w.submit(&format!("/executions/{restart}/rerun"), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let error = unescape(&element_text(&r.text(), "rerun-error"));
    assert!(error.contains("`restart` is sensitive and was not run"), "{error}");
    assert_eq!(w.execution_count().await, before);
    let recs = w.t.store.audit_records(2).await.unwrap();
    assert_eq!((recs[1].decision.as_str(), recs[0].decision.as_str()), ("asked", "abandoned"));
    let r = w.submit(&format!("/executions/{restart}/rerun"), &[("confirm", "yes")]).await;
    let again = redirected_run(&r);
    assert_eq!(w.t.store.execution(again).await.unwrap().unwrap().job, "restart");
    assert_eq!(
        w.t.store.audit_records(1).await.unwrap()[0].reason.as_deref(),
        Some("confirmed by the requester")
    );
}

#[tokio::test]
async fn the_catalog_and_run_forms_have_an_input_per_param_type() {
    let w = Web::new(false).await;
    let html = w.page("/jobs").await;
    for job in ["hello", "deploy", "restart", "sleepy", "lines"] {
        assert!(html.contains(&format!("href=\"/jobs/{job}\"")), "{job}: {html}");
    }
    assert!(html.contains("id=\"jobs\""));

    let html = w.page("/jobs/deploy").await;
    assert!(
        html.contains("id=\"run-form\" class=\"run-form\" method=\"post\" action=\"/jobs/deploy/run\""),
        "{html}"
    );
    // Enums: selects with their values (synonyms mentioned).
    assert!(html.contains("<select name=\"param.app\" id=\"param-app\" required"), "{html}");
    assert!(
        html.contains("<option value=\"api\">api</option><option value=\"web\">web</option>"),
        "{html}"
    );
    assert!(html.contains("<option value=\"prod\">prod (also production)</option>"), "{html}");
    // Ints: numbers with their bounds.
    assert!(
        html.contains("<input type=\"number\" step=\"1\" name=\"param.replicas\" id=\"param-replicas\" value=\"\" min=\"1\" max=\"5\""),
        "{html}"
    );
    // Bools: yes / no / the default.
    assert!(html.contains("<select name=\"param.force\" id=\"param-force\""), "{html}");
    assert!(
        html.contains("<option value=\"\" selected>default (false)</option><option value=\"true\">yes (true)</option>"),
        "{html}"
    );
    // Secrets: a password input; the default is not shown.
    assert!(
        html.contains("<input type=\"password\" name=\"param.token\" id=\"param-token\" value=\"\""),
        "{html}"
    );
    assert!(!html.contains("s3cret"), "{html}");
    assert!(!html.contains("id=\"confirm\""), "deploy is not sensitive");
    assert!(html.contains("id=\"run\""));

    // Strings: text, with the pattern shown.
    let html = w.page("/jobs/hello").await;
    assert!(
        html.contains("<input type=\"text\" name=\"param.who\" id=\"param-who\" value=\"\" placeholder=\"default: world\""),
        "{html}"
    );
    assert!(
        html.contains("Must match the pattern <code class=\"pattern\">[a-z]+</code>"),
        "{html}"
    );
    assert!(html.contains("whom to greet"), "{html}");

    let html = w.page("/jobs/restart").await;
    assert!(html.contains("<input type=\"checkbox\" name=\"confirm\" id=\"confirm\""), "{html}");

    let r = w.get("/jobs/deplyo").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(unescape(&r.text()).contains("Did you mean `deploy`?"), "{}", r.text());
}

#[tokio::test]
async fn a_run_through_the_form_is_queued_with_canonical_values_and_defaults() {
    let w = Web::new(false).await;
    let r = w
        .submit(
            "/jobs/deploy/run",
            &[
                ("param.app", "web"),
                ("param.env", "production"),
                ("param.replicas", "3"),
                ("param.force", ""),
                ("param.token", ""),
            ],
        )
        .await;
    let id = redirected_run(&r);
    let e = w.t.store.execution(id).await.unwrap().unwrap();
    assert_eq!(e.job, "deploy");
    assert_eq!(e.state, ExecState::Queued);
    let params: Vec<(&str, &str)> = e.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        params,
        [
            ("app", "web"),
            ("env", "prod"),
            ("force", "false"),
            ("replicas", "3"),
            ("token", "s3cret")
        ],
        "empty fields are left out, so defaults apply"
    );
    assert_eq!(e.requested_by, UserId::new("web", "ana"));
    assert_eq!(e.requester_name, "ana (display)", "the signed-in name");
    let own = e.place.to_string();
    assert!(own.starts_with("api/ana/") && own.len() == "api/ana/".len() + 16, "{own}");
    let rec = &w.t.store.audit_records(1).await.unwrap()[0];
    assert_eq!((rec.action.as_str(), rec.decision.as_str()), ("run", "accepted"));

    // Without the token nothing runs.
    let before = w.execution_count().await;
    let r = w.post("/jobs/hello/run", &[("param.who", "zoe")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(w.execution_count().await, before);
}

#[tokio::test]
async fn the_form_refuses_with_the_engines_words_and_keeps_the_values() {
    let w = Web::new(false).await;
    // A missing required value.
    let r = w
        .submit("/jobs/deploy/run", &[("param.app", "web"), ("param.token", "hunter2")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let html = r.text();
    let error = unescape(&element_text(&html, "run-error"));
    assert!(error.contains("`deploy` needs `env` (one of staging, prod)"), "{error}");
    assert!(
        html.contains("<option value=\"web\" selected>web</option>"),
        "the value is kept: {html}"
    );
    assert!(!html.contains("hunter2"), "a secret is never sent back: {html}");
    assert!(html.contains("id=\"secrets-dropped\""), "{html}");

    // A value the parameter refuses: the same words as chat and the API.
    let r = w
        .submit("/jobs/deploy/run", &[("param.app", "web"), ("param.env", "stagign")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let api =
        w.t.post(
            "/api/v1/executions",
            json!({"job": "deploy", "params": {"app": "web", "env": "stagign"}}),
        )
        .await;
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = unescape(&element_text(&r.text(), "run-error"));
    assert_eq!(error, api.message());
    assert!(error.contains("Did you mean `staging`?"), "{error}");

    let r = w.submit("/jobs/hello/run", &[("param.who", "Bob1")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text();
    let error = unescape(&element_text(&html, "run-error"));
    assert!(error.contains("`Bob1` is not allowed: expected text matching `[a-z]+`"), "{error}");
    assert!(html.contains("id=\"param-who\" value=\"Bob1\""), "{html}");

    let r = w
        .submit(
            "/jobs/deploy/run",
            &[("param.app", "web"), ("param.env", "prod"), ("param.replicas", "9")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unescape(&element_text(&r.text(), "run-error")).contains("9 is out of range"),
        "{}",
        r.text()
    );

    assert_eq!(w.execution_count().await, 0, "nothing was run");
}

#[tokio::test]
async fn a_sensitive_job_runs_from_the_form_only_when_confirmed() {
    let w = Web::new(false).await;
    let r = w.submit("/jobs/restart/run", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let error = unescape(&element_text(&r.text(), "run-error"));
    assert!(error.contains("`restart` is sensitive and was not run"), "{error}");
    assert_eq!(w.execution_count().await, 0);
    let recs = w.t.store.audit_records(10).await.unwrap();
    let decisions: Vec<&str> = recs.iter().rev().map(|r| r.decision.as_str()).collect();
    assert_eq!(decisions, ["asked", "abandoned"]);

    let r = w.submit("/jobs/restart/run", &[("confirm", "yes")]).await;
    let id = redirected_run(&r);
    assert_eq!(w.t.store.execution(id).await.unwrap().unwrap().job, "restart");
    let recs = w.t.store.audit_records(3).await.unwrap();
    let decisions: Vec<&str> = recs.iter().rev().map(|r| r.decision.as_str()).collect();
    assert_eq!(decisions, ["asked", "confirmed", "accepted"]);
    assert!(recs.iter().all(|r| r.actor == UserId::new("web", "ana")));
}

#[tokio::test]
async fn the_audit_page_filters_pages_and_exports() {
    let w = Web::new(false).await;
    let deploy =
        w.t.run(json!({"job": "deploy", "params": {"app": "web", "env": "prod", "token": "hunter2"}}))
            .await;
    let r = api_post_as(&w.t, "bob", json!({"job": "nosuch"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    w.submit(&format!("/executions/{deploy}/cancel"), &[]).await;
    let recs = w.t.store.audit_records(10).await.unwrap();
    let ids: Vec<i64> = recs.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 3);
    let (cancel, refused, accepted) = (ids[0], ids[1], ids[2]);

    let html = w.page("/audit").await;
    assert_eq!(row_ids(&html, "audit"), [cancel, refused, accepted]);
    assert!(!html.contains("hunter2"), "{html}");
    assert!(html.contains("token=••••"), "{html}");
    let web = &w;
    let audit = |q: &'static str| async move { row_ids(&web.page(&format!("/audit{q}")).await, "audit") };
    assert_eq!(audit("?decision=refused").await, [refused]);
    assert_eq!(audit("?actor=bob").await, [refused]);
    assert_eq!(audit("?actor=web%3Abob").await, [refused]);
    assert_eq!(audit("?actor=ana").await, [cancel, accepted]);
    assert_eq!(audit("?action=cancel").await, [cancel]);
    assert_eq!(audit("?job=deploy").await, [cancel, accepted]);
    let q = format!("/audit?execution={deploy}");
    assert_eq!(row_ids(&w.page(&q).await, "audit"), [cancel, accepted]);
    assert!(audit("?since=2000-01-01&until=2000-01-02").await.is_empty());
    let today = chrono::Utc::now().date_naive();
    assert_eq!(
        row_ids(&w.page(&format!("/audit?since={today}&until={today}")).await, "audit").len(),
        3
    );

    // Pages.
    let html = w.page("/audit?limit=2").await;
    assert_eq!(row_ids(&html, "audit"), [cancel, refused]);
    let next = link(&html, "class=\"next-page\"").expect("next page");
    assert_eq!(row_ids(&w.page(&next).await, "audit"), [accepted]);

    // The export link is the API with the same filters, a plain name written out.
    let html = w.page("/audit?actor=ana&since=2000-01-01").await;
    let export = link(&html, "id=\"export-jsonl\"").expect("export link");
    assert!(export.starts_with("/api/v1/audit?format=jsonl"), "{export}");
    assert!(export.contains("actor=web%3Aana"), "{export}");
    let r = w.get(&export).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/x-ndjson");
    let lines: Vec<serde_json::Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(got, [cancel, accepted]);
}

#[tokio::test]
async fn the_api_filters_executions_by_time_and_audit_by_everything() {
    let w = Web::new(false).await;
    let t = &w.t;
    let a = t.run(json!({"job": "hello"})).await;
    let b = t.run(json!({"job": "deploy", "params": {"app": "web", "env": "prod"}})).await;
    t.post("/api/v1/executions", json!({"job": "nosuch"})).await;
    t.post(&format!("/api/v1/executions/{a}/cancel"), json!({})).await;
    let ids = |r: Resp, key: &str| -> Vec<i64> {
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let today = chrono::Utc::now().date_naive();
    assert_eq!(ids(t.get(&format!("/api/v1/executions?since={today}")).await, "executions"), [b, a]);
    assert_eq!(ids(t.get(&format!("/api/v1/executions?until={today}")).await, "executions"), [b, a]);
    assert!(ids(t.get("/api/v1/executions?until=2000-01-01T00:00:00Z").await, "executions").is_empty());
    assert!(
        ids(
            t.get(&format!("/api/v1/executions?since={}", today.succ_opt().unwrap())).await,
            "executions"
        )
        .is_empty()
    );
    for bad in ["since=tomorrow", "until=2024-02-30", "since=2024-05-02&until=2024-05-01"] {
        let r = t.get(&format!("/api/v1/executions?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.code(), "bad_request");
        assert!(r.message().contains("since") || r.message().contains("until"), "{}", r.message());
    }

    let recs = t.store.audit_records(10).await.unwrap();
    let (cancel, refused, accepted_b, accepted_a) = (recs[0].id, recs[1].id, recs[2].id, recs[3].id);
    let audit = |q: String| async move { ids(t.get(&format!("/api/v1/audit?{q}")).await, "records") };
    assert_eq!(audit("actor=web:ana".into()).await, [cancel, refused, accepted_b, accepted_a]);
    assert!(audit("actor=slack:U1".into()).await.is_empty());
    assert_eq!(audit("action=cancel".into()).await, [cancel]);
    assert_eq!(audit("job=Deploy".into()).await, [accepted_b]);
    assert_eq!(audit("decision=refused".into()).await, [refused]);
    assert_eq!(audit(format!("execution={a}")).await, [cancel, accepted_a]);
    assert_eq!(audit(format!("since={today}&until={today}")).await.len(), 4);
    assert!(audit("until=2000-01-01".into()).await.is_empty());
    // Pages with `before` and `next_before`.
    let r = t.get("/api/v1/audit?limit=3").await;
    let j = r.json();
    assert_eq!(j["next_before"], json!(accepted_b));
    let r = t.get(&format!("/api/v1/audit?limit=3&before={accepted_b}")).await;
    assert_eq!(r.json()["records"].as_array().unwrap().len(), 1);
    assert_eq!(r.json()["next_before"], json!(null));
    // JSON Lines with filters.
    let r = t.get("/api/v1/audit?format=jsonl&decision=refused").await;
    assert_eq!(r.header("content-type"), "application/x-ndjson");
    assert_eq!(r.text().lines().count(), 1);
    for bad in ["actor=ana", "execution=x", "before=0", "since=x", "limit=0", "format=csv"] {
        let r = t.get(&format!("/api/v1/audit?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert_eq!(r.code(), "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_downloads_as_a_file_and_the_stream_starts_after_a_given_line() {
    let w = Web::new(true).await;
    let id = w.t.run(json!({"job": "lines"})).await;
    w.t.wait_final(id).await;
    let r = w.t.get(&format!("/api/v1/executions/{id}/log?download=1")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-disposition"),
        format!("attachment; filename=\"opsbot-execution-{id}.log\"")
    );
    assert!(r.text().starts_with("line 1\n"), "{}", r.text());
    let r = w.t.get(&format!("/api/v1/executions/{id}/log")).await;
    assert_eq!(r.header("content-disposition"), "");
    let r = w.t.get(&format!("/api/v1/executions/{id}/log?download=maybe")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The console's own link works with the session cookie.
    let r = w.get(&format!("/api/v1/executions/{id}/log?download=1")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-disposition").starts_with("attachment"));

    let r = w.get(&format!("/api/v1/executions/{id}/log/stream?after=4")).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.text();
    assert!(!body.contains("line 4"), "{body}");
    assert!(
        body.contains("id: 5") && body.contains("line 5") && body.contains("id: 6") && body.contains("oops"),
        "{body}"
    );
    assert!(body.contains("event: end"), "{body}");
    let r = w.get(&format!("/api/v1/executions/{id}/log/stream?after=-1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_api_document_describes_the_new_filters() {
    let w = Web::new(false).await;
    let doc = w.t.get("/api/v1/openapi.json").await.json();
    let names = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}"))
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let ex = names("/api/v1/executions");
    assert!(ex.contains(&"since".into()) && ex.contains(&"until".into()), "{ex:?}");
    let au = names("/api/v1/audit");
    for n in [
        "actor",
        "action",
        "job",
        "decision",
        "execution",
        "since",
        "until",
        "before",
        "limit",
        "format",
    ] {
        assert!(au.contains(&n.to_string()), "{n}: {au:?}");
    }
    assert!(names("/api/v1/executions/{id}/log").contains(&"download".into()));
    assert!(names("/api/v1/executions/{id}/log/stream").contains(&"after".into()));
}
