//! The web chat and console in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, thirtyfour) against the real `opsbot serve` on a copy of the example config.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them); without
//! them each test is skipped with a note, or fails when `OPSBOT_REQUIRE_SERVERS=1` (CI).
//! `OPSBOT_CHROMEDRIVER` / `OPSBOT_CHROMIUM` point at other binaries. Every wait polls for a
//! condition; no timing is asserted. Screenshots go to `target/test-artefacts/`.
//!
//! `measure_log_latency` is a measurement, not a test: it runs only with `OPSBOT_MEASURE=1`
//! (see bench/log-latency.sh and docs/benchmarks.md).

use crate::harness::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thirtyfour::components::SelectElement;
use thirtyfour::prelude::*;

const PASSWORD_DEMO: &str = "demo-password-for-browser-tests";
const PASSWORD_ANA: &str = "ana-password-for-browser-tests";
const PASSWORD_LEAD: &str = "lead-password-for-browser-tests";
/// How long any one condition may take to become true before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

/// Chromium's flags that work as root on this kind of machine (see the notes on browsers).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// Polls an async block (every 50 ms) until it gives `Ok`; fails after [`LIMIT`] with the
/// last `Err` (what it saw).
macro_rules! until {
    ($what:expr, $check:expr) => {{
        let start = Instant::now();
        loop {
            let r: Result<_, String> = $check.await;
            match r {
                Ok(v) => break v,
                Err(last) => assert!(start.elapsed() < LIMIT, "timed out waiting for {}; last seen: {last}", $what),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

// --- harness ----------------------------------------------------------------------------------

/// `chromedriver --port=0`, its port read from its first line; its output is drained for as
/// long as it runs, and it is killed on drop (after every browser session has quit).
struct ChromeDriver {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl ChromeDriver {
    fn start(path: &Path) -> ChromeDriver {
        let mut child = Command::new(path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let port = regex::Regex::new(r"started successfully on port (\d+)").unwrap();
        for (i, stream) in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .enumerate()
        {
            let (tx, log, port) = (tx.clone(), log.clone(), port.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if i == 0
                        && let Some(m) = port.captures(&line)
                    {
                        let _ = tx.send(m[1].to_string());
                    }
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let port = match rx.recv_timeout(LIMIT) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromedriver did not say its port:\n{}", log.lock().unwrap());
            }
        };
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `opsbot serve` on a sandbox copy of the example config (plus the web user `ana` and the
/// test jobs below), chromedriver, and an API token of `demo`. Drops in field order: chromedriver,
/// then serve, then the sandbox.
struct Rig {
    chromedriver: ChromeDriver,
    serve: Session,
    base: String,
    addr: String,
    token: String,
    sb: Sandbox,
}

impl Rig {
    /// `None` (with a note) when chromedriver is missing and `OPSBOT_REQUIRE_SERVERS` is not 1.
    /// `demo_step` is the pause between the example deploy's steps (OPSBOT_DEMO_STEP).
    fn start(demo_step: &str) -> Option<Rig> {
        let path = required_program(
            "chromedriver (Debian: apt-get install chromium chromium-driver)",
            "OPSBOT_CHROMEDRIVER",
            Path::new("/usr/bin/chromedriver"),
        )?;
        let sb = Sandbox::new();
        let dir = sb.dir.path().display().to_string();
        let cfg = sb.example_copy(&format!(
            r#"
[web.users.ana]
generated_password = true
display_name = "Ana"

[jobs.gate]
description = "prints step-1, waits for the file r1, prints step-2, waits for r2, prints step-3"
timeout = "60s"
runner = {{ type = "exec", argv = ["sh", "-c", 'echo step-1; while [ ! -e "$0/r1" ]; do sleep 0.05; done; echo step-2; while [ ! -e "$0/r2" ]; do sleep 0.05; done; echo step-3', "{dir}"] }}

[jobs.ticker]
description = "after 1 s, prints `tick N EPOCH_MS` n times, every 170-290 ms (not in step with any poll)"
timeout = "10m"
runner = {{ type = "exec", argv = ["sh", "-c", 'sleep 1; i=0; while [ "$i" -lt "$0" ]; do echo "tick $i $(date +%s%3N)"; sleep 0.$((17 + i * 7 % 13)); i=$((i+1)); done', "{{{{ n }}}}"] }}
[[jobs.ticker.params]]
name = "n"
type = "int"
min = 1
max = 10000
default = 60
"#
        ));
        let token = sb.token(&cfg, "demo");
        let (serve, addr) = sb.serve_with(
            &cfg,
            &[
                ("OPSBOT_PASSWORD_DEMO", PASSWORD_DEMO),
                ("OPSBOT_PASSWORD_ANA", PASSWORD_ANA),
                ("OPSBOT_PASSWORD_LEAD", PASSWORD_LEAD),
                ("OPSBOT_DEMO_STEP", demo_step),
            ],
        );
        let chromedriver = ChromeDriver::start(&path);
        Some(Rig {
            chromedriver,
            serve,
            base: format!("http://{addr}"),
            addr,
            token,
            sb,
        })
    }

    /// A fresh Chromium session with a profile of its own.
    async fn browser(&self) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("chromium-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("profile dir");
        let mut caps = DesiredCapabilities::chrome();
        for flag in CHROMIUM_FLAGS {
            caps.add_arg(flag).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display())).unwrap();
        let binary = std::env::var("OPSBOT_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if Path::new(&binary).is_file() {
            caps.set_binary(&binary).unwrap();
        }
        // reqwest is built without a default TLS provider in this workspace (rustls with ring
        // only); chromedriver is plain HTTP, but the client still wants one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver = match WebDriver::new(&self.chromedriver.url, caps).await {
            Ok(d) => d,
            Err(e) => panic!(
                "no Chromium session: {e}\n--- chromedriver ---\n{}",
                self.chromedriver.log.lock().unwrap()
            ),
        };
        Browser {
            driver: Some(driver),
            profile,
            base: self.base.clone(),
        }
    }

    /// Queues a run through the REST API as `demo`; returns its id.
    fn run_api(&self, body: &str) -> u64 {
        let (status, resp) = http(&self.addr, "POST", "/api/v1/executions", Some(&self.token), Some(body));
        assert_eq!(status, 201, "{resp}");
        let v: Value = serde_json::from_str(&resp).unwrap();
        v["id"].as_u64().unwrap_or_else(|| panic!("no id in {resp}"))
    }

    /// An execution's state from the REST API.
    fn api_state(&self, id: u64) -> String {
        let (_, body) = http(&self.addr, "GET", &format!("/api/v1/executions/{id}"), Some(&self.token), None);
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["state"].as_str().unwrap_or("?").to_string()
    }

    /// Lets the `gate` job go past its `n`th wait.
    fn release(&self, n: u32) {
        std::fs::write(self.sb.path(&format!("r{n}")), "").unwrap();
    }

    fn serve_log(&self) -> String {
        self.serve.stderr()
    }
}

/// One Chromium session. Quits on drop (which needs the multi-thread runtime), and then ends
/// whatever is left of this session's browser processes (found by their profile folder).
struct Browser {
    driver: Option<WebDriver>,
    profile: tempfile::TempDir,
    base: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            tokio::task::block_in_place(|| {
                let _ = rt.block_on(tokio::time::timeout(Duration::from_secs(10), d.quit()));
            });
        }
        kill_processes_mentioning(&self.profile.path().display().to_string());
    }
}

/// SIGKILL to every process whose command line contains `needle` (a unique profile folder: only
/// the browser this test started has it).
fn kill_processes_mentioning(needle: &str) {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name == me || !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
            && let Ok(pid) = name.parse::<i32>()
        {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Browser {
    fn d(&self) -> &WebDriver {
        self.driver.as_ref().expect("driver")
    }

    async fn goto(&self, path: &str) {
        self.d().goto(format!("{}{path}", self.base)).await.unwrap();
    }

    /// The path of the current page.
    async fn path(&self) -> String {
        self.d().current_url().await.unwrap().path().to_string()
    }

    /// Runs a script in the page; its return value as JSON.
    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        match self.d().execute(script, args).await {
            Ok(r) => r.json().clone(),
            Err(e) => panic!("script failed: {e}\n{script}"),
        }
    }

    /// The trimmed text of the first element matching `css`, `None` when there is none.
    async fn text(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    /// An attribute of the first element matching `css`.
    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(css), json!(name)],
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.d().find(By::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        let e = self.d().find(By::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.click().await.unwrap();
    }

    /// Fills and submits the sign-in form (the page must be /login).
    async fn submit_login(&self, user: &str, password: &str) {
        self.fill("#user", user).await;
        self.fill("#password", password).await;
        self.click("#sign-in").await;
    }

    /// Signs in and waits until the browser has left /login.
    async fn sign_in(&self, user: &str, password: &str) {
        self.goto("/login").await;
        self.submit_login(user, password).await;
        until!("to leave /login after signing in", async {
            let p = self.path().await;
            if p != "/login" { Ok(p) } else { Err(p) }
        });
    }

    /// Marks the current document; [`Browser::same_document`] tells whether it is still the
    /// one shown (no reload, no navigation).
    async fn mark_document(&self) {
        self.js("window.__opsbotSameDocument = true; return true;", vec![]).await;
    }

    async fn same_document(&self) -> bool {
        self.js("return window.__opsbotSameDocument === true;", vec![]).await == json!(true)
    }

    /// Saves a screenshot under target/test-artefacts/ and prints its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = artefacts_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        self.d().screenshot(&path).await.unwrap();
        println!("screenshot: {}", path.display());
        path
    }

    /// The execution page's #state data-state and pre#log text.
    async fn state_and_log(&self) -> (String, String) {
        let v = self
            .js(
                "const s = document.querySelector('#state'), l = document.querySelector('pre#log');
                 return [s ? s.getAttribute('data-state') : null, l ? l.textContent : null];",
                vec![],
            )
            .await;
        (v[0].as_str().unwrap_or("").to_string(), v[1].as_str().unwrap_or("").to_string())
    }

    // --- chat ---

    /// Opens a chat page and waits until its socket is open and the composer usable.
    async fn open_chat(&self, path: &str) {
        self.goto(path).await;
        self.wait_chat_ready().await;
    }

    async fn wait_chat_ready(&self) {
        until!("the chat to be connected (#connection `connected`, #send enabled)", async {
            let v = self
                .js(
                    "const c = document.querySelector('#connection'), s = document.querySelector('#send');
                     return [c ? c.textContent.trim() : null, s ? s.disabled : null];",
                    vec![],
                )
                .await;
            if v == json!(["connected", false]) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        });
    }

    async fn say(&self, text: &str) {
        self.fill("#message", text).await;
        self.click("#send").await;
    }

    /// Every message shown: data-id, classes, data-card, the badge's state, the text.
    async fn messages(&self) -> Vec<Msg> {
        let v = self
            .js(
                "return [...document.querySelectorAll('#messages div.msg')].map(e => {
                   const b = e.querySelector('span.badge[data-state]');
                   return {id: e.getAttribute('data-id'), class: e.className, card: e.getAttribute('data-card'),
                           state: b ? b.getAttribute('data-state') : null, text: e.textContent};
                 });",
                vec![],
            )
            .await;
        serde_json::from_value(v).unwrap()
    }

    /// Installs a MutationObserver that records each change of a job card's data-state (with
    /// the card's data-id and position) and counts the elements that have rendered each card.
    async fn record_cards(&self) {
        self.js(
            "if (!window.__cards) {
               window.__cards = []; window.__cardState = {}; window.__cardNodes = {}; let n = 0;
               const rec = () => document.querySelectorAll('div.msg[data-card]').forEach(el => {
                 const k = el.getAttribute('data-card');
                 if (!el.__mark) { el.__mark = ++n; window.__cardNodes[k] = (window.__cardNodes[k] || 0) + 1; }
                 const b = el.querySelector('span.badge[data-state]');
                 const s = b ? b.getAttribute('data-state') : null;
                 if (window.__cardState[k] !== s) {
                   window.__cardState[k] = s;
                   window.__cards.push({card: k, id: el.getAttribute('data-id'), state: s,
                                        pos: [...el.parentNode.children].indexOf(el)});
                 }
               });
               new MutationObserver(rec).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
               rec();
             }
             return true;",
            vec![],
        )
        .await;
    }

    async fn card_records(&self) -> Vec<CardSeen> {
        serde_json::from_value(self.js("return window.__cards || [];", vec![]).await).unwrap()
    }

    /// How many elements have rendered job card `card` since [`Browser::record_cards`].
    async fn card_nodes(&self, card: &str) -> u64 {
        self.js("return (window.__cardNodes || {})[arguments[0]] || 0;", vec![json!(card)])
            .await
            .as_u64()
            .unwrap_or(0)
    }
}

#[derive(serde::Deserialize, Debug, Clone)]
struct Msg {
    id: Option<String>,
    class: String,
    card: Option<String>,
    state: Option<String>,
    text: String,
}

impl Msg {
    fn has(&self, class: &str) -> bool {
        self.class.split_whitespace().any(|c| c == class)
    }
}

#[derive(serde::Deserialize, Debug, Clone)]
struct CardSeen {
    card: Option<String>,
    id: Option<String>,
    state: Option<String>,
    /// Index among its siblings in #messages.
    pos: i64,
}

fn artefacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-artefacts")
}

const STATE_ORDER: &[&str] = &["queued", "running", "succeeded"];

// --- a. sign-in and CSRF ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_lands_on_chat_and_bad_attempts_are_refused() {
    let Some(rig) = Rig::start("0.05") else { return };
    let b = rig.browser().await;

    // An unauthenticated page sends to /login.
    b.goto("/").await;
    until!("the sign-in page", async {
        let p = b.path().await;
        if p == "/login" { Ok(()) } else { Err(p) }
    });

    // Wrong password: refused, stays on the form.
    b.submit_login("demo", "not-the-password").await;
    let err = until!("#login-error", async {
        b.text("#login-error").await.ok_or_else(|| "none".to_string())
    });
    assert!(err.contains("Wrong user name or password"), "{err}");
    assert_eq!(b.path().await, "/login");

    // The form without its CSRF field (removed in the page): refused.
    b.goto("/login").await;
    b.js("document.querySelector('form input[name=csrf]').remove(); return true;", vec![])
        .await;
    b.submit_login("demo", PASSWORD_DEMO).await;
    let err = until!("#login-error after a form without CSRF", async {
        b.text("#login-error").await.ok_or_else(|| "none".to_string())
    });
    assert!(err.contains("CSRF"), "{err}");
    assert_eq!(b.path().await, "/login");

    // The same over plain HTTP: no token field, and a token that does not match the cookie.
    let form = "user=demo&password=".to_string() + PASSWORD_DEMO;
    for (cookie, body) in [
        ("opsbot_login=abc", form.clone()),
        ("opsbot_login=abc", format!("{form}&csrf=abd")),
        ("", format!("{form}&csrf=abc")),
    ] {
        let headers: Vec<(&str, &str)> = if cookie.is_empty() { vec![] } else { vec![("Cookie", cookie)] };
        let (status, head, page) = http_with(
            &rig.addr,
            "POST",
            "/login",
            &headers,
            Some(("application/x-www-form-urlencoded", &body)),
        );
        assert_eq!(status, 403, "{cookie} {body}\n{head}\n{page}");
        assert!(!head.contains("opsbot_session="), "a session was started: {head}");
    }

    // The right password: lands on the chat.
    b.sign_in("demo", PASSWORD_DEMO).await;
    assert_eq!(b.path().await, "/chat");
    assert!(b.d().get_named_cookie("opsbot_session").await.is_ok());
    // Signed in, / goes to the chat too.
    b.goto("/").await;
    assert_eq!(b.path().await, "/chat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_posts_without_csrf_are_refused() {
    let Some(rig) = Rig::start("0.05") else { return };
    let b = rig.browser().await;
    b.sign_in("demo", PASSWORD_DEMO).await;
    let session = b.d().get_named_cookie("opsbot_session").await.expect("session cookie").value;
    let cookie = format!("opsbot_session={session}");
    let form = "application/x-www-form-urlencoded";

    // POST /logout without the token, with a wrong one: 403, still signed in.
    for body in ["", "csrf=", "csrf=0123456789abcdef"] {
        let (status, _, page) = http_with(&rig.addr, "POST", "/logout", &[("Cookie", &cookie)], Some((form, body)));
        assert_eq!(status, 403, "POST /logout {body:?}\n{page}");
    }
    // In the browser: the header's sign-out form without its hidden field.
    b.goto("/executions").await;
    b.js(
        "document.querySelector('form.signout input[name=csrf]').remove(); return true;",
        vec![],
    )
    .await;
    b.click("form.signout button").await;
    until!("the CSRF refusal page", async {
        let t = b.text("main").await.unwrap_or_default();
        if t.contains("CSRF") { Ok(()) } else { Err(t) }
    });
    b.goto("/").await;
    assert_eq!(b.path().await, "/chat", "the refused sign-out signed out");

    // A running execution is not cancelled by a POST without the token.
    let id = rig.run_api(r#"{"job":"gate"}"#);
    until!("the gate run to be running", async {
        let s = rig.api_state(id);
        if s == "running" { Ok(()) } else { Err(s) }
    });
    for body in ["", "csrf=0123456789abcdef"] {
        let path = format!("/executions/{id}/cancel");
        let (status, _, page) = http_with(&rig.addr, "POST", &path, &[("Cookie", &cookie)], Some((form, body)));
        assert_eq!(status, 403, "POST {path} {body:?}\n{page}");
    }
    // The REST API with the session cookie needs X-CSRF-Token on POST.
    let run = r#"{"job":"health","params":{"service":"api"}}"#;
    let json_ct = "application/json";
    let (status, _, resp) = http_with(
        &rig.addr,
        "POST",
        "/api/v1/executions",
        &[("Cookie", &cookie)],
        Some((json_ct, run)),
    );
    assert_eq!(status, 403, "{resp}");
    let (status, _, resp) = http_with(
        &rig.addr,
        "POST",
        &format!("/api/v1/executions/{id}/cancel"),
        &[("Cookie", &cookie), ("X-CSRF-Token", "0123456789abcdef")],
        None,
    );
    assert_eq!(status, 403, "{resp}");
    let csrf = b.attr("meta[name=csrf-token]", "content").await.expect("csrf meta");
    let (status, _, resp) = http_with(
        &rig.addr,
        "POST",
        "/api/v1/executions",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some((json_ct, run)),
    );
    assert_eq!(status, 201, "{resp}");
    assert!(resp.contains("web:demo"), "{resp}");
    assert_eq!(rig.api_state(id), "running", "a refused cancel cancelled");
    rig.release(1);
    rig.release(2);
    until!("the gate run to succeed", async {
        let s = rig.api_state(id);
        if s == "succeeded" { Ok(()) } else { Err(s) }
    });

    // With the token, signing out works.
    b.goto("/executions").await;
    b.click("form.signout button").await;
    until!("/login after signing out", async {
        let p = b.path().await;
        if p == "/login" { Ok(()) } else { Err(p) }
    });
    b.goto("/chat").await;
    assert_eq!(b.path().await, "/login");
}

// --- b. web chat ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_job_card_goes_queued_running_succeeded_in_place() {
    let Some(rig) = Rig::start("0.3") else { return };
    let b = rig.browser().await;
    b.sign_in("demo", PASSWORD_DEMO).await;
    assert_eq!(b.path().await, "/chat");
    b.wait_chat_ready().await;
    b.mark_document().await;
    b.record_cards().await;

    b.say("deploy web to staging").await;
    until!("my message in #messages", async {
        let m = b.messages().await;
        if m.iter()
            .any(|m| m.has("mine") && m.has("user") && m.text.contains("deploy web to staging"))
        {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });
    let card = until!("a job card", async {
        let seen = b.card_records().await;
        match seen.first().and_then(|c| c.card.clone()) {
            Some(card) => Ok(card),
            None => Err(format!("{:?}", b.messages().await)),
        }
    });
    until!("the card to reach `succeeded`", async {
        let seen = b.card_records().await;
        if seen
            .iter()
            .any(|c| c.card.as_deref() == Some(&card) && c.state.as_deref() == Some("succeeded"))
        {
            Ok(())
        } else {
            Err(format!("{seen:?} / server: {}", rig.serve_log()))
        }
    });
    let seen: Vec<CardSeen> = b
        .card_records()
        .await
        .into_iter()
        .filter(|c| c.card.as_deref() == Some(&card))
        .collect();
    let states: Vec<&str> = seen.iter().filter_map(|c| c.state.as_deref()).collect();
    println!("card #{card}: states seen {states:?}");
    assert!(b.same_document().await, "the page was reloaded");
    // One message, updated in place: the same data-id at the same position throughout (the
    // page may swap the element for a fresh rendering of it, but never adds a second card).
    assert!(
        seen.iter().all(|c| c.id.is_some() && c.id == seen[0].id),
        "the card's data-id changed: {seen:?}"
    );
    assert!(seen.iter().all(|c| c.pos == seen[0].pos), "the card moved: {seen:?}");
    let nodes = b.card_nodes(&card).await;
    println!(
        "card #{card}: data-id {:?} at position {}, rendered by {nodes} element(s)",
        seen[0].id, seen[0].pos
    );
    let cards = b.messages().await.into_iter().filter(|m| m.card.as_deref() == Some(&card)).count();
    assert_eq!(cards, 1, "one card per run");
    // States move forward only, through `running`, and end at `succeeded`.
    let idx: Vec<usize> = states
        .iter()
        .map(|s| {
            STATE_ORDER
                .iter()
                .position(|o| o == s)
                .unwrap_or_else(|| panic!("state {s} in {states:?}"))
        })
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{states:?}");
    assert_eq!(states.last(), Some(&"succeeded"), "{states:?}");
    assert_eq!(states.first(), Some(&"queued"), "the card starts queued: {states:?}");
    assert!(states.contains(&"running"), "the card was never shown running: {states:?}");
    b.screenshot("chat.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_two_sessions_see_each_other_and_history_survives_reload() {
    let Some(rig) = Rig::start("0.05") else { return };
    let a = rig.browser().await;
    let b = rig.browser().await;
    a.sign_in("demo", PASSWORD_DEMO).await;
    b.sign_in("ana", PASSWORD_ANA).await;
    a.open_chat("/chat/ops").await;
    b.open_chat("/chat/ops").await;

    a.say("deploy web to staging").await;
    // Ana sees Demo's message (not as her own) and the run's card reaching its end.
    let card = until!("Demo's message and the card on Ana's page", async {
        let m = b.messages().await;
        let theirs = m
            .iter()
            .any(|m| m.has("user") && !m.has("mine") && m.text.contains("deploy web to staging"));
        match m.iter().find(|m| m.card.is_some() && m.state.as_deref() == Some("succeeded")) {
            Some(c) if theirs => Ok(c.card.clone().unwrap()),
            _ => Err(format!("{m:?}")),
        }
    });

    b.say("whoami").await;
    // Demo sees Ana's message and the bot's answer to it.
    until!("Ana's message and the bot's reply on Demo's page", async {
        let m = a.messages().await;
        let at = m
            .iter()
            .position(|m| m.has("user") && !m.has("mine") && m.text.trim().ends_with("whoami"));
        match at {
            Some(i) if m[i + 1..].iter().any(|r| r.has("bot") && r.text.contains("web:ana")) => Ok(()),
            _ => Err(format!("{m:?}")),
        }
    });

    // After a reload, the history is there.
    a.d().refresh().await.unwrap();
    a.wait_chat_ready().await;
    let m = until!("the history after a reload", async {
        let m = a.messages().await;
        let mine = m.iter().any(|m| m.has("mine") && m.text.contains("deploy web to staging"));
        let theirs = m.iter().any(|m| !m.has("mine") && m.text.trim().ends_with("whoami"));
        let done = m
            .iter()
            .any(|m| m.card.as_deref() == Some(&card) && m.state.as_deref() == Some("succeeded"));
        if mine && theirs && done { Ok(m) } else { Err(format!("{m:?}")) }
    });
    assert!(m.iter().any(|m| m.has("bot") && m.text.contains("web:ana")), "{m:?}");
    // Each message once: distinct data-ids.
    let mut ids: Vec<&str> = m.iter().filter_map(|m| m.id.as_deref()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a message is shown twice: {m:?}");
}

/// Four eyes in the web chat: Demo asks for a production deploy in #ops, the approval card
/// shows in both browsers, Demo's own Approve is refused, Lead's starts the run, whose job card
/// then goes to `succeeded` in place in both browsers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_four_eyes_in_two_browsers() {
    let Some(rig) = Rig::start("0.05") else { return };
    let demo = rig.browser().await;
    let lead = rig.browser().await;
    demo.sign_in("demo", PASSWORD_DEMO).await;
    lead.sign_in("lead", PASSWORD_LEAD).await;
    demo.open_chat("/chat/ops").await;
    lead.open_chat("/chat/ops").await;
    for b in [&demo, &lead] {
        b.mark_document().await;
        b.record_cards().await;
    }
    // Approval cards on a page: [data-id, text, [[label, command], …]] of each bot message
    // whose status says `approval request N — …`.
    const APPROVAL_CARDS: &str = "return [...document.querySelectorAll('#messages div.msg.bot')]
         .filter(e => /approval request \\d+/.test(e.textContent))
         .map(e => [e.getAttribute('data-id'), e.textContent,
                    [...e.querySelectorAll('button.reply-button')].map(b => [b.textContent, b.getAttribute('data-command')])]);";
    let approval_re = regex::Regex::new(r"approval request (\d+) — pending").unwrap();

    demo.say("deploy web to prod").await;
    // The card with its buttons, on both pages.
    let mut request = String::new();
    for (who, b) in [("Demo", &demo), ("Lead", &lead)] {
        let (n, buttons) = until!(format!("the approval card with Approve/Deny on {who}'s page"), async {
            let cards = b.js(APPROVAL_CARDS, vec![]).await;
            let found = cards.as_array().into_iter().flatten().find_map(|c| {
                let n = approval_re.captures(c[1].as_str()?)?[1].to_string();
                let buttons: Vec<(String, String)> = c[2]
                    .as_array()?
                    .iter()
                    .map(|b| (b[0].as_str().unwrap_or("").to_string(), b[1].as_str().unwrap_or("").to_string()))
                    .collect();
                Some((n, buttons))
            });
            match found {
                Some((n, buttons)) if buttons.len() >= 2 => Ok((n, buttons)),
                _ => Err(format!("{cards} / messages: {:?}", b.messages().await)),
            }
        });
        assert_eq!(
            buttons,
            [
                ("Approve".to_string(), format!("approve {n}")),
                ("Deny".to_string(), format!("deny {n}"))
            ],
            "{who}'s page"
        );
        if request.is_empty() {
            request = n;
        } else {
            assert_eq!(request, n, "both pages show the same request");
        }
    }
    assert!(demo.card_records().await.is_empty(), "a job card before any approval");
    demo.screenshot("approval-card.png").await;
    let approve = format!("#messages div.msg.bot button.reply-button[data-command='approve {request}']");

    // Demo approves their own request: refused, nothing runs.
    demo.click(&approve).await;
    until!("the four-eyes refusal on Demo's page", async {
        let m = demo.messages().await;
        let at = m
            .iter()
            .position(|m| m.has("user") && m.has("mine") && m.text.trim().ends_with(&format!("approve {request}")));
        match at {
            Some(i)
                if m[i + 1..]
                    .iter()
                    .any(|r| r.has("bot") && r.text.contains("someone else must approve")) =>
            {
                Ok(())
            }
            _ => Err(format!("{m:?}")),
        }
    });
    for (who, b) in [("Demo", &demo), ("Lead", &lead)] {
        let cards = b.card_records().await;
        assert!(cards.is_empty(), "a job card on {who}'s page after a refused approval: {cards:?}");
    }
    let (_, runs) = http(&rig.addr, "GET", "/api/v1/executions", Some(&rig.token), None);
    assert!(!runs.contains("\"deploy\""), "a run after a refused approval: {runs}");

    // Lead approves: the run starts, its card shows in both browsers and ends `succeeded`.
    lead.click(&approve).await;
    until!("`Request N approved` on Lead's page", async {
        let m = lead.messages().await;
        let at = m
            .iter()
            .position(|m| m.has("user") && m.has("mine") && m.text.trim().ends_with(&format!("approve {request}")));
        match at {
            Some(i)
                if m[i + 1..]
                    .iter()
                    .any(|r| r.has("bot") && r.text.contains(&format!("Request {request} approved"))) =>
            {
                Ok(())
            }
            _ => Err(format!("{m:?}")),
        }
    });
    let mut card = String::new();
    for (who, b) in [("Demo", &demo), ("Lead", &lead)] {
        let (c, text) = until!(format!("the job card to reach `succeeded` on {who}'s page"), async {
            let m = b.messages().await;
            match m.iter().find(|m| m.card.is_some() && m.state.as_deref() == Some("succeeded")) {
                Some(c) if c.text.contains("web latest is live in prod") => Ok((c.card.clone().unwrap(), c.text.clone())),
                _ => Err(format!("{m:?} / server: {}", rig.serve_log())),
            }
        });
        println!("{who}: card #{c}: {text}");
        if card.is_empty() {
            card = c;
        } else {
            assert_eq!(card, c, "both pages show the same run");
        }
    }
    let id: u64 = card.parse().unwrap();
    let (_, body) = http(&rig.addr, "GET", &format!("/api/v1/executions/{id}"), Some(&rig.token), None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["job"], "deploy", "{body}");
    assert_eq!(v["params"]["env"], "prod", "{body}");
    assert_eq!(v["requested_by"], "web:demo", "the run is the requester's: {body}");
    assert_eq!(v["state"], "succeeded", "{body}");

    // In place on both pages: one card for the run, same data-id and position throughout,
    // states only moving forward, no reload.
    for (who, b) in [("Demo", &demo), ("Lead", &lead)] {
        assert!(b.same_document().await, "{who}'s page was reloaded");
        let seen: Vec<CardSeen> = b
            .card_records()
            .await
            .into_iter()
            .filter(|c| c.card.as_deref() == Some(&card))
            .collect();
        let states: Vec<&str> = seen.iter().filter_map(|c| c.state.as_deref()).collect();
        println!("{who}: card #{card}: states seen {states:?}");
        assert!(
            seen.iter().all(|c| c.id.is_some() && c.id == seen[0].id),
            "{who}: the card's data-id changed: {seen:?}"
        );
        assert!(seen.iter().all(|c| c.pos == seen[0].pos), "{who}: the card moved: {seen:?}");
        let idx: Vec<usize> = states
            .iter()
            .map(|s| {
                STATE_ORDER
                    .iter()
                    .position(|o| o == s)
                    .unwrap_or_else(|| panic!("{who}: state {s} in {states:?}"))
            })
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{who}: {states:?}");
        assert_eq!(states.last(), Some(&"succeeded"), "{who}: {states:?}");
        let cards = b.messages().await.into_iter().filter(|m| m.card.is_some()).count();
        assert_eq!(cards, 1, "{who}: one job card in #ops");
    }
    lead.screenshot("approval-done.png").await;
}

// --- c. execution page ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_page_shows_the_log_while_the_run_goes_on() {
    let Some(rig) = Rig::start("0.05") else { return };
    let b = rig.browser().await;
    b.sign_in("demo", PASSWORD_DEMO).await;
    let id = rig.run_api(r#"{"job":"gate"}"#);
    b.goto(&format!("/executions/{id}")).await;
    b.mark_document().await;

    until!("step-1 in pre#log while running", async {
        let (s, log) = b.state_and_log().await;
        if s == "running" && log.contains("step-1") {
            Ok(())
        } else {
            Err(format!("{s}: {log:?}"))
        }
    });
    assert!(!b.state_and_log().await.1.contains("step-2"));
    rig.release(1);
    let log = until!("step-2 to be appended while still running", async {
        let (s, log) = b.state_and_log().await;
        if s == "running" && log.contains("step-2") {
            Ok(log)
        } else {
            Err(format!("{s}: {log:?}"))
        }
    });
    assert!(log.find("step-1") < log.find("step-2"), "{log:?}");
    assert!(b.same_document().await, "the page was reloaded");
    b.screenshot("execution-running.png").await;

    rig.release(2);
    let log = until!("the final state", async {
        let (s, log) = b.state_and_log().await;
        if s == "succeeded" && log.contains("step-3") {
            Ok(log)
        } else {
            Err(format!("{s}: {log:?}"))
        }
    });
    assert!(b.same_document().await, "the page was reloaded");
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("step-")).collect();
    assert_eq!(lines, ["step-1", "step-2", "step-3"], "each line once, in order: {log:?}");
    assert!(b.text("#log-status").await.is_some(), "no #log-status");
    b.screenshot("execution.png").await;
}

// --- d. the catalog form ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_from_the_catalog_form() {
    let Some(rig) = Rig::start("0.05") else { return };
    let b = rig.browser().await;
    b.sign_in("demo", PASSWORD_DEMO).await;
    b.goto("/jobs").await;
    b.click("table#jobs a[href='/jobs/deploy']").await;
    until!("the deploy form", async {
        let p = b.path().await;
        if p == "/jobs/deploy" { Ok(()) } else { Err(p) }
    });
    for (id, value) in [("param-app", "web"), ("param-env", "staging")] {
        let e = b.d().find(By::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}"));
        SelectElement::new(&e).await.unwrap().select_by_value(value).await.unwrap();
    }
    b.click("#run").await;
    let execution_page = regex::Regex::new(r"^/executions/\d+$").unwrap();
    let path = until!("the execution page", async {
        let p = b.path().await;
        if execution_page.is_match(&p) { Ok(p) } else { Err(p) }
    });
    until!("the run to succeed on its page", async {
        let s = b.attr("#state", "data-state").await;
        let log = b.text("pre#log").await.unwrap_or_default();
        if s.as_deref() == Some("succeeded") && log.contains("web latest is live in staging") {
            Ok(())
        } else {
            Err(format!("{s:?}: {log:?}"))
        }
    });
    let id: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
    let (_, body) = http(&rig.addr, "GET", &format!("/api/v1/executions/{id}"), Some(&rig.token), None);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["job"], "deploy", "{body}");
    assert_eq!(v["params"]["app"], "web", "{body}");
    assert_eq!(v["params"]["env"], "staging", "{body}");
    assert_eq!(v["requested_by"], "web:demo", "{body}");
}

/// On a phone-sized window (390×844) every page fits the width — only tables and logs scroll
/// sideways inside their own boxes — and the chat composer is on screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_screen() {
    let Some(rig) = Rig::start("0.05") else { return };
    let id = rig.run_api(r#"{"job":"deploy","params":{"app":"web","env":"staging"}}"#);
    let b = rig.browser().await;
    b.d().set_window_rect(0, 0, 390, 844).await.unwrap();
    b.sign_in("demo", PASSWORD_DEMO).await;
    b.open_chat("/chat").await;
    b.say("deploy api to dev").await;
    until!("the card", async {
        let n = b.js("return document.querySelectorAll('.msg[data-card]').length", vec![]).await;
        if n.as_u64() == Some(1) { Ok(()) } else { Err(n.to_string()) }
    });
    let run_page = format!("/executions/{id}");
    for path in ["/chat", "/executions", run_page.as_str(), "/jobs", "/jobs/deploy", "/audit"] {
        b.goto(path).await;
        // The page itself never scrolls sideways (an element wider than the screen would make it).
        let overflow = until!("the page to settle", async {
            let v = b
                .js(
                    "const w = document.documentElement; return [w.scrollWidth, window.innerWidth, document.readyState];",
                    vec![],
                )
                .await;
            if v[2] == "complete" { Ok(v) } else { Err(v.to_string()) }
        });
        let (scroll, inner) = (overflow[0].as_u64().unwrap(), overflow[1].as_u64().unwrap());
        assert!(inner <= 400, "the window is phone-sized: {inner}");
        assert!(scroll <= inner, "{path} is {scroll} px wide on a {inner} px screen");
        if path == "/chat" {
            let visible = b
                .js(
                    "const r = document.getElementById('message').getBoundingClientRect(); return r.bottom <= window.innerHeight && r.width > 150;",
                    vec![],
                )
                .await;
            assert_eq!(visible, Value::Bool(true), "the message box is on screen and usable");
        }
        b.screenshot(&format!("phone{}.png", path.replace('/', "-"))).await;
    }
}

// --- live log latency (a measurement, run with OPSBOT_MEASURE=1) -------------------------------

/// Time from a line printed by a job (its own wall-clock stamp, epoch ms) to the moment it
/// appears in pre#log of the execution page (Date.now() in a MutationObserver). Prints a table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_log_latency() {
    if std::env::var("OPSBOT_MEASURE").ok().as_deref() != Some("1") {
        eprintln!("SKIPPED: a measurement; run it with OPSBOT_MEASURE=1 (bench/log-latency.sh)");
        return;
    }
    let n: usize = std::env::var("OPSBOT_MEASURE_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let Some(rig) = Rig::start("0.05") else { return };
    let b = rig.browser().await;
    b.sign_in("demo", PASSWORD_DEMO).await;
    let id = rig.run_api(&format!(r#"{{"job":"ticker","params":{{"n":{n}}}}}"#));
    b.goto(&format!("/executions/{id}")).await;
    b.js(
        "window.__ticks = {}; window.__before = 0;
         const log = document.querySelector('pre#log');
         const scan = (initial) => {
           for (const line of log.textContent.split('\\n')) {
             const m = /^tick (\\d+) (\\d+)$/.exec(line.trim());
             if (!m || m[1] in window.__ticks) continue;
             if (initial) { window.__before++; window.__ticks[m[1]] = null; }
             else window.__ticks[m[1]] = [Number(m[2]), Date.now()];
           }
         };
         scan(true);
         new MutationObserver(() => scan(false)).observe(log, {subtree: true, childList: true, characterData: true});
         return true;",
        vec![],
    )
    .await;
    let limit = Duration::from_millis(400 * n as u64 + 30_000);
    let start = Instant::now();
    let ticks = loop {
        let v = b.js("return window.__ticks;", vec![]).await;
        if v.as_object().is_some_and(|o| o.len() >= n) {
            break v;
        }
        assert!(start.elapsed() < limit, "not all lines arrived: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let state = rig.api_state(id);
    let before = b.js("return window.__before;", vec![]).await;
    let mut lat: Vec<i64> = ticks
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| Some(v.as_array()?[1].as_i64()? - v.as_array()?[0].as_i64()?))
        .collect();
    lat.sort();
    assert!(lat.len() >= 50, "only {} lines measured", lat.len());
    let pct = |p: f64| lat[((p / 100.0) * (lat.len() - 1) as f64).round() as usize];
    println!();
    println!("live log latency, job print → shown in pre#log of /executions/{id} (run {state}):");
    println!("| lines | p50 | p95 | max | min |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} ms | {} ms | {} ms | {} ms |",
        lat.len(),
        pct(50.0),
        pct(95.0),
        lat[lat.len() - 1],
        lat[0]
    );
    println!("({before} lines were already on the page when it opened and are not counted)");
}
