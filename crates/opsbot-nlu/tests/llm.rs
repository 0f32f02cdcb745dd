//! The LLM provider against the local fake OpenAI-compatible endpoint (opsbot-testkit).

use opsbot_core::config::nlu::LlmConfig;
use opsbot_core::job::{Catalog, EnumValue, JobSpec, ParamKind, ParamSpec, RunnerSpec};
use opsbot_nlu::llm::{Llm, LlmError, Proposal};
use opsbot_testkit::llm::FakeLlm;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn param(name: &str, kind: ParamKind, required: bool) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind,
        required,
        default: None,
        help: None,
        secret: false,
    }
}

fn enum_values(v: &[(&str, &[&str])]) -> ParamKind {
    ParamKind::Enum {
        values: v
            .iter()
            .map(|(value, syn)| EnumValue {
                value: value.to_string(),
                synonyms: syn.iter().map(|s| s.to_string()).collect(),
            })
            .collect(),
    }
}

fn catalog() -> Catalog {
    let deploy = JobSpec {
        name: "deploy".into(),
        description: "Deploys an application".into(),
        params: vec![
            param("app", enum_values(&[("api", &[]), ("web", &["frontend"])]), true),
            param(
                "env",
                enum_values(&[("prod", &["production", "生产"]), ("staging", &["stage"])]),
                true,
            ),
            param(
                "version",
                ParamKind::String {
                    pattern: Some(regex::Regex::new(r"^(?:v?[0-9]+\.[0-9]+\.[0-9]+)$").unwrap()),
                },
                false,
            ),
            ParamSpec {
                default: Some("2".into()),
                ..param(
                    "replicas",
                    ParamKind::Int {
                        min: Some(1),
                        max: Some(10),
                    },
                    false,
                )
            },
            param("dry_run", ParamKind::Bool, false),
            ParamSpec {
                default: Some("s3cr3t-default".into()),
                help: Some("deploy credential".into()),
                secret: true,
                ..param("token", ParamKind::String { pattern: None }, false)
            },
        ],
        aliases: vec!["deploy {app} to {env}".into()],
        examples: vec![
            "deploy api prod".into(),
            "deploy web staging version=1.2.3 token=s3cr3t-default".into(),
        ],
        runner: RunnerSpec::Exec {
            argv: vec!["/bin/true".into()],
            env: Default::default(),
            cwd: "/".into(),
            secret_env: Default::default(),
        },
        timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(5),
        concurrency: None,
        sensitive: true,
        output_limit: 1 << 20,
    };
    let status = JobSpec {
        name: "status".into(),
        description: "Shows the status of the cluster".into(),
        params: vec![],
        aliases: vec![],
        examples: vec![],
        ..deploy.clone()
    };
    Catalog::new(vec![deploy, status])
}

fn config(fake: &FakeLlm, key: Option<&str>, timeout: Duration) -> LlmConfig {
    LlmConfig {
        url: fake.url(),
        model: "qwen2.5:7b-instruct".into(),
        api_key: key.map(str::to_string),
        timeout,
        tls_ca: None,
    }
}

async fn setup() -> (FakeLlm, Llm) {
    let fake = FakeLlm::start().await;
    let llm = Llm::new(&config(&fake, Some(FakeLlm::API_KEY), Duration::from_secs(10))).expect("client");
    (fake, llm)
}

fn last_user_text(fake: &FakeLlm) -> String {
    let reqs = fake.requests();
    let req = reqs.last().expect("a request");
    req["messages"][1]["content"].as_str().expect("user content").to_string()
}

#[tokio::test]
async fn tool_call_becomes_a_proposal_and_the_request_carries_the_schema() {
    let (fake, llm) = setup().await;
    fake.answer_tool(
        "deploy",
        json!({"app": "api", "env": "production", "replicas": 3.0, "dry_run": false, "extra": 1, "nested": {"x": 1}, "list": [1]}),
    );
    let p = llm
        .propose("please ship the api to production, 3 replicas, no dry run", &catalog(), &[])
        .await
        .expect("answer");
    assert_eq!(
        p,
        Some(Proposal {
            job: "deploy".into(),
            params: vec![
                // The job's declared order, then unknown keys.
                ("app".into(), "api".into()),
                ("env".into(), "production".into()),
                ("replicas".into(), "3".into()),
                ("dry_run".into(), "false".into()),
                ("extra".into(), "1".into()),
            ],
            note: None,
        })
    );

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req["model"], "qwen2.5:7b-instruct");
    assert_eq!(req["tool_choice"], "auto");
    assert_eq!(req["temperature"], 0);
    assert_eq!(req["stream"], false);
    assert!(req["max_tokens"].as_u64().is_some_and(|n| (100..=1000).contains(&n)));
    assert_eq!(req["messages"][0]["role"], "system");
    let system = req["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Chinese") && system.contains("exactly one tool"), "{system}");
    assert_eq!(req["messages"][1]["role"], "user");
    assert_eq!(last_user_text(&fake), "please ship the api to production, 3 replicas, no dry run");

    let tools = req["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 2);
    let f = &tools[0]["function"];
    assert_eq!(tools[0]["type"], "function");
    assert_eq!(f["name"], "deploy");
    let d = f["description"].as_str().unwrap();
    assert!(d.starts_with("Deploys an application.") && d.contains("deploy api prod"), "{d}");
    let props = &f["parameters"]["properties"];
    assert_eq!(f["parameters"]["type"], "object");
    assert_eq!(props["app"]["enum"], json!(["api", "web"]));
    assert_eq!(props["env"]["type"], "string");
    assert_eq!(props["env"]["enum"], json!(["prod", "staging"]));
    let env_desc = props["env"]["description"].as_str().unwrap();
    assert!(env_desc.contains("production") && env_desc.contains("生产"), "{env_desc}");
    assert_eq!(props["version"], json!({"type": "string", "pattern": r"v?[0-9]+\.[0-9]+\.[0-9]+"}));
    assert_eq!(props["replicas"]["type"], "integer");
    assert_eq!(props["replicas"]["minimum"], 1);
    assert_eq!(props["replicas"]["maximum"], 10);
    assert_eq!(props["dry_run"], json!({"type": "boolean"}));
    assert_eq!(f["parameters"]["required"], json!(["app", "env"]));
    assert_eq!(props.as_object().unwrap().len(), 5, "{props}");
    assert_eq!(tools[1]["function"]["name"], "status");
    assert_eq!(tools[1]["function"]["parameters"]["properties"], json!({}));
}

#[tokio::test]
async fn no_secret_reaches_the_provider() {
    let (fake, llm) = setup().await;
    fake.answer_text("Which environment?");
    let scrub = vec![
        "hunter2-hunter2".to_string(),
        "pw9".to_string(),
        String::new(),
        "Sup3rS3cret!".to_string(),
    ];
    let text = "deploy api to prod, password hunter2-hunter2 (again: hunter2-hunter2), pw9, Sup3rS3cret! and s3cr3t-default";
    let p = llm.propose(text, &catalog(), &scrub).await.expect("answer");
    assert_eq!(p, None);
    assert_eq!(
        last_user_text(&fake),
        "deploy api to prod, password •••• (again: ••••), pw9, •••• and ••••"
    );
    let raw = fake.raw_requests();
    assert_eq!(raw.len(), 1);
    let bytes = String::from_utf8(raw[0].clone()).expect("UTF-8 request");
    for secret in ["hunter2", "Sup3rS3cret", "s3cr3t-default", "credential"] {
        assert!(!bytes.contains(secret), "`{secret}` was sent: {bytes}");
    }
    // The secret param's name: nowhere but inside the request's own `max_tokens` key.
    assert!(!bytes.replace("\"max_tokens\"", "").contains("token"), "{bytes}");
}

#[tokio::test]
async fn prose_and_unknown_tools_are_no_proposal() {
    let (fake, llm) = setup().await;
    fake.answer_text("I can only run deploy and status.");
    assert_eq!(llm.propose("make me a sandwich", &catalog(), &[]).await.expect("answer"), None);
    fake.answer_tool("reboot_world", json!({"now": true}));
    assert_eq!(llm.propose("reboot everything", &catalog(), &[]).await.expect("answer"), None);
    // Nothing queued: the fake's default prose.
    assert_eq!(llm.propose("hello", &catalog(), &[]).await.expect("answer"), None);
    // The tool name is matched case-insensitively and given back as the catalog spells it.
    fake.answer_tool("Status", json!({}));
    let p = llm.propose("how are things", &catalog(), &[]).await.expect("answer");
    assert_eq!(p.map(|p| (p.job, p.params)), Some(("status".to_string(), vec![])));
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn legacy_function_call_and_note() {
    let (fake, llm) = setup().await;
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "function_call", "message": {
            "role": "assistant", "content": "Deploying web to staging.",
            "function_call": {"name": "deploy", "arguments": "{\"app\":\"web\",\"env\":\"staging\"}"}
        }}]
    });
    fake.answer_status(200, &body.to_string());
    let p = llm.propose("web on staging please", &catalog(), &[]).await.expect("answer");
    assert_eq!(
        p,
        Some(Proposal {
            job: "deploy".into(),
            params: vec![("app".into(), "web".into()), ("env".into(), "staging".into())],
            note: Some("Deploying web to staging.".into()),
        })
    );
}

async fn error_of(llm: &Llm) -> LlmError {
    llm.propose("deploy api to prod", &catalog(), &[]).await.expect_err("an error")
}

#[tokio::test]
async fn http_errors_are_clear() {
    let fake = FakeLlm::start().await;
    let no_key = Llm::new(&config(&fake, None, Duration::from_secs(10))).expect("client");
    let e = error_of(&no_key).await;
    assert!(matches!(e, LlmError::Status { status: 401, .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("the LLM provider refused the request (HTTP 401): You didn't provide an API key."),
        "{e}"
    );

    let wrong = Llm::new(&config(&fake, Some("sk-wrong-key-0123456789"), Duration::from_secs(10))).expect("client");
    let e = error_of(&wrong).await;
    let shown = format!("{e} {e:?} {wrong:?}");
    assert!(e.to_string().contains("(HTTP 401): Incorrect API key provided."), "{e}");
    assert!(!shown.contains("sk-wrong-key"), "{shown}");

    let llm = Llm::new(&config(&fake, Some(FakeLlm::API_KEY), Duration::from_secs(10))).expect("client");
    fake.answer_status(
        500,
        r#"{"error":{"message":"The server had an error while processing your request.\nSorry about that!","type":"server_error","param":null,"code":null}}"#,
    );
    assert_eq!(
        error_of(&llm).await.to_string(),
        "the LLM provider refused the request (HTTP 500): The server had an error while processing your request. Sorry about that!"
    );
    fake.answer_status(502, "<html>Bad Gateway</html>");
    assert_eq!(error_of(&llm).await.to_string(), "the LLM provider refused the request (HTTP 502)");
    // Ollama's error shape.
    fake.answer_status(404, r#"{"error":"model \"qwen2.5:7b-instruct\" not found, try pulling it first"}"#);
    assert_eq!(
        error_of(&llm).await.to_string(),
        "the LLM provider refused the request (HTTP 404): model \"qwen2.5:7b-instruct\" not found, try pulling it first"
    );
}

#[tokio::test]
async fn malformed_answers_are_unreadable() {
    let (fake, llm) = setup().await;
    fake.answer_status(200, "{not json");
    let e = error_of(&llm).await;
    assert!(matches!(e, LlmError::Unreadable(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("the LLM provider's answer is unreadable: not JSON"),
        "{e}"
    );

    fake.answer_tool("deploy", Value::String("app=api env=prod".into()));
    let e = error_of(&llm).await;
    assert!(
        e.to_string()
            .starts_with("the LLM provider's answer is unreadable: the function arguments are not JSON"),
        "{e}"
    );

    fake.answer_tool("deploy", json!(["api", "prod"]));
    assert_eq!(
        error_of(&llm).await.to_string(),
        "the LLM provider's answer is unreadable: the function arguments are not a JSON object"
    );

    fake.answer_status(200, r#"{"object":"chat.completion","choices":[]}"#);
    assert_eq!(
        error_of(&llm).await.to_string(),
        "the LLM provider's answer is unreadable: no `choices[0].message`"
    );

    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(1_100_000));
    fake.answer_status(200, &huge);
    assert_eq!(
        error_of(&llm).await.to_string(),
        "the LLM provider's answer is unreadable: the answer is larger than 1024 KiB"
    );
}

#[tokio::test]
async fn a_late_answer_times_out() {
    let fake = FakeLlm::start().await;
    let llm = Llm::new(&config(&fake, Some(FakeLlm::API_KEY), Duration::from_millis(400))).expect("client");
    fake.delay_next(Duration::from_secs(5));
    fake.answer_tool("status", json!({}));
    let start = Instant::now();
    let e = error_of(&llm).await;
    let took = start.elapsed();
    assert!(matches!(e, LlmError::Timeout(_)), "{e:?}");
    assert_eq!(e.to_string(), "the LLM provider did not answer within 400 ms");
    assert!(took >= Duration::from_millis(350) && took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn nobody_listening_is_a_network_error() {
    let port = opsbot_testkit::free_port();
    let cfg = LlmConfig {
        url: format!("http://127.0.0.1:{port}/v1/"),
        model: "m".into(),
        api_key: Some("sk-do-not-show-1234".into()),
        timeout: Duration::from_secs(5),
        tls_ca: None,
    };
    let llm = Llm::new(&cfg).expect("client");
    let e = error_of(&llm).await;
    assert!(matches!(e, LlmError::Network(_)), "{e:?}");
    let s = e.to_string();
    assert!(s.starts_with("cannot reach the LLM provider: ") && !s.contains('\n'), "{s}");
    assert!(!s.contains("sk-do-not-show"), "{s}");
}

#[tokio::test]
async fn bad_config_is_refused() {
    let mut cfg = LlmConfig {
        url: "ftp://example.invalid/v1".into(),
        model: "m".into(),
        api_key: None,
        timeout: Duration::from_secs(5),
        tls_ca: None,
    };
    assert!(matches!(Llm::new(&cfg), Err(LlmError::Config(m)) if m.contains("not an http:// or https:// base URL")),);
    cfg.url = "http://127.0.0.1:1/v1".into();
    cfg.api_key = Some("sk-line\nbreak".into());
    let e = Llm::new(&cfg).expect_err("refused");
    assert!(!e.to_string().contains("sk-line"), "{e}");
    cfg.api_key = None;
    cfg.tls_ca = Some("/nonexistent/ca.pem".into());
    let e = Llm::new(&cfg).expect_err("refused");
    assert!(e.to_string().contains("cannot read the CA file /nonexistent/ca.pem"), "{e}");
}

#[tokio::test]
async fn long_text_is_cut_to_2000_characters() {
    let (fake, llm) = setup().await;
    let text: String = "部署".repeat(2500) + &"x".repeat(5000);
    assert_eq!(text.chars().count(), 10_000);
    assert_eq!(llm.propose(&text, &catalog(), &[]).await.expect("answer"), None);
    let sent = last_user_text(&fake);
    assert_eq!(sent.chars().count(), 2000);
    assert_eq!(sent, "部署".repeat(1000));
}

#[tokio::test]
async fn an_empty_catalog_asks_nothing() {
    let (fake, llm) = setup().await;
    assert_eq!(llm.propose("deploy api", &Catalog::new(vec![]), &[]).await.expect("answer"), None);
    assert!(fake.requests().is_empty());
}
