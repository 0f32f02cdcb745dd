//! A local fake of an OpenAI-compatible chat-completions endpoint (`POST /v1/chat/completions`),
//! written from the published API reference: it checks requests the way the real API does
//! (bearer key, `model`, `messages`, tool names) and answers with faithful `chat.completion`
//! objects that the test scripts in advance ([`FakeLlm::answer_tool`],
//! [`FakeLlm::answer_text`], [`FakeLlm::answer_status`]). It never calls the outside world.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The prose answered when no answer is queued.
pub const DEFAULT_ANSWER: &str = "I can't help with that.";

/// One scripted answer.
#[derive(Clone, Debug)]
enum Answer {
    Tool { name: String, arguments: String },
    Text(String),
    Status(u16, String),
}

#[derive(Default)]
struct St {
    answers: VecDeque<Answer>,
    delay: Option<Duration>,
    requests: Vec<Value>,
    raw: Vec<Vec<u8>>,
    seq: u64,
}

/// The fake endpoint: an axum server on 127.0.0.1 and its script.
pub struct FakeLlm {
    st: Arc<Mutex<St>>,
    port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(st: &Mutex<St>) -> MutexGuard<'_, St> {
    st.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeLlm {
    /// The key requests must carry as `Authorization: Bearer …`; others get 401.
    pub const API_KEY: &'static str = "sk-test-opsbot";

    /// Starts the fake on a free port of 127.0.0.1.
    pub async fn start() -> FakeLlm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake LLM");
        let port = listener.local_addr().expect("the fake LLM's address").port();
        let st = Arc::new(Mutex::new(St::default()));
        let router = Router::new()
            .route("/v1/chat/completions", post(completions))
            .fallback(not_found)
            .with_state(st.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeLlm { st, port, server }
    }

    /// The API's base URL, `http://127.0.0.1:PORT/v1` (what `[nlu.llm] url` is set to).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Queues an answer that calls the tool `name`. `arguments` is sent as the JSON text of the
    /// value, except a JSON string, which is sent as it is (to script arguments that are not
    /// JSON).
    pub fn answer_tool(&self, name: &str, arguments: Value) {
        let arguments = match arguments {
            Value::String(s) => s,
            other => other.to_string(),
        };
        lock(&self.st).answers.push_back(Answer::Tool {
            name: name.to_string(),
            arguments,
        });
    }

    /// Queues an answer in prose (no tool call).
    pub fn answer_text(&self, text: &str) {
        lock(&self.st).answers.push_back(Answer::Text(text.to_string()));
    }

    /// Queues a raw answer: that HTTP status and body (sent as `application/json` when the body
    /// is JSON, as `text/plain` otherwise). A 200 with a broken body scripts a malformed answer.
    pub fn answer_status(&self, status: u16, body: &str) {
        lock(&self.st).answers.push_back(Answer::Status(status, body.to_string()));
    }

    /// Makes the next request wait `d` before it is answered.
    pub fn delay_next(&self, d: Duration) {
        lock(&self.st).delay = Some(d);
    }

    /// Every request body received, in order (a body that is not JSON as a JSON string of its
    /// text), refused ones included.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.st).requests.clone()
    }

    /// Every request body received, byte for byte, in order.
    pub fn raw_requests(&self) -> Vec<Vec<u8>> {
        lock(&self.st).raw.clone()
    }
}

async fn not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, "Invalid URL", None, None)
}

/// An OpenAI-style error answer.
fn api_error(status: StatusCode, message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    let kind = match status.as_u16() {
        401 => "invalid_request_error",
        404 => "invalid_request_error",
        400 => "invalid_request_error",
        _ => "server_error",
    };
    (
        status,
        axum::Json(json!({
            "error": {"message": message, "type": kind, "param": param, "code": code}
        })),
    )
        .into_response()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a parsed request like the API does; the error answer if it is refused.
fn validate(req: &Value) -> Result<(), Box<Response>> {
    let bad = |msg: String, param: &str, code: Option<&str>| Box::new(api_error(StatusCode::BAD_REQUEST, &msg, Some(param), code));
    let Some(obj) = req.as_object() else {
        return Err(bad("Invalid request body: expected a JSON object.".into(), "body", None));
    };
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => {
            return Err(bad("you must provide a model parameter".into(), "model", None));
        }
    }
    match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {
            for (i, msg) in m.iter().enumerate() {
                let role = msg.get("role").and_then(Value::as_str);
                if !matches!(role, Some("system" | "developer" | "user" | "assistant" | "tool")) {
                    return Err(bad(
                        format!("Invalid value for 'messages[{i}].role'."),
                        &format!("messages[{i}].role"),
                        Some("invalid_value"),
                    ));
                }
            }
        }
        Some(Value::Array(_)) => {
            return Err(bad(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(),
                "messages",
                Some("empty_array"),
            ));
        }
        _ => {
            return Err(bad(
                "Missing required parameter: 'messages'.".into(),
                "messages",
                Some("missing_required_parameter"),
            ));
        }
    }
    match obj.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) if tools.is_empty() => {
            return Err(bad(
                "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(),
                "tools",
                Some("empty_array"),
            ));
        }
        Some(Value::Array(tools)) => {
            for (i, t) in tools.iter().enumerate() {
                if t.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(bad(
                        format!("Invalid value for 'tools[{i}].type': expected 'function'."),
                        &format!("tools[{i}].type"),
                        Some("invalid_value"),
                    ));
                }
                let name = t.pointer("/function/name").and_then(Value::as_str);
                match name {
                    Some(n) if valid_name(n) => {}
                    Some(_) => {
                        return Err(bad(
                            format!(
                                "Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                            ),
                            &format!("tools[{i}].function.name"),
                            Some("invalid_value"),
                        ));
                    }
                    None => {
                        return Err(bad(
                            format!("Missing required parameter: 'tools[{i}].function.name'."),
                            &format!("tools[{i}].function.name"),
                            Some("missing_required_parameter"),
                        ));
                    }
                }
                if let Some(p) = t.pointer("/function/parameters")
                    && !p.is_object()
                {
                    return Err(bad(
                        format!("Invalid type for 'tools[{i}].function.parameters': expected an object."),
                        &format!("tools[{i}].function.parameters"),
                        Some("invalid_type"),
                    ));
                }
            }
        }
        Some(_) => {
            return Err(bad(
                "Invalid type for 'tools': expected an array of objects.".into(),
                "tools",
                Some("invalid_type"),
            ));
        }
    }
    if obj.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "This fake does not stream; send `stream: false`.".into(),
            "stream",
            Some("unsupported_value"),
        ));
    }
    Ok(())
}

/// A rough token count (about four bytes a token), for `usage`.
fn tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4).max(1)
}

async fn completions(State(st): State<Arc<Mutex<St>>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let delay = {
        let mut s = lock(&st);
        s.raw.push(body.to_vec());
        s.requests.push(
            parsed
                .clone()
                .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned())),
        );
        s.delay.take()
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {}", FakeLlm::API_KEY)) {
        let msg = match auth {
            None => {
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            }
            Some(_) => "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        };
        return api_error(StatusCode::UNAUTHORIZED, msg, None, Some("invalid_api_key"));
    }
    let Some(req) = parsed else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            None,
            None,
        );
    };
    if let Err(r) = validate(&req) {
        return *r;
    }
    let (answer, seq) = {
        let mut s = lock(&st);
        s.seq += 1;
        (s.answers.pop_front(), s.seq)
    };
    let answer = answer.unwrap_or_else(|| Answer::Text(DEFAULT_ANSWER.to_string()));
    let model = req.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let prompt_tokens = tokens(&req.to_string());
    let (message, finish, completion_tokens) = match answer {
        Answer::Status(code, text) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let ctype = if serde_json::from_str::<Value>(&text).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            return (status, [(header::CONTENT_TYPE, ctype)], text).into_response();
        }
        Answer::Text(text) => {
            let n = tokens(&text);
            (
                json!({"role": "assistant", "content": text, "refusal": null, "annotations": []}),
                "stop",
                n,
            )
        }
        Answer::Tool { name, arguments } => {
            let n = tokens(&name) + tokens(&arguments);
            (
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [{
                        "id": format!("call_fake{seq:020}"),
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }],
                    "refusal": null,
                    "annotations": [],
                }),
                "tool_calls",
                n,
            )
        }
    };
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    axum::Json(json!({
        "id": format!("chatcmpl-fake{seq:020}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": null,
        "service_tier": "default",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(fake: &FakeLlm, key: Option<&str>, body: &Value) -> (u16, Value) {
        let http = reqwest::Client::builder().build().expect("client");
        let mut req = http.post(format!("{}/chat/completions", fake.url())).json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn req() -> Value {
        json!({
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "deploy", "parameters": {"type": "object"}}}],
        })
    }

    #[tokio::test]
    async fn scripted_answers_and_validation() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fake = FakeLlm::start().await;
        let (s, v) = post(&fake, None, &req()).await;
        assert_eq!(s, 401);
        assert_eq!(v["error"]["code"], "invalid_api_key");

        fake.answer_tool("deploy", json!({"app": "api"}));
        let (s, v) = post(&fake, Some(FakeLlm::API_KEY), &req()).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "m");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "deploy");
        assert_eq!(call["function"]["arguments"], "{\"app\":\"api\"}");

        let (s, v) = post(&fake, Some(FakeLlm::API_KEY), &req()).await;
        assert_eq!(s, 200);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["choices"][0]["message"]["content"], DEFAULT_ANSWER);
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());

        let mut no_model = req();
        no_model.as_object_mut().map(|o| o.remove("model"));
        let (s, v) = post(&fake, Some(FakeLlm::API_KEY), &no_model).await;
        assert_eq!((s, v["error"]["param"].as_str()), (400, Some("model")));
        let mut bad_tool = req();
        bad_tool["tools"][0]["function"]["name"] = json!("de ploy");
        let (s, v) = post(&fake, Some(FakeLlm::API_KEY), &bad_tool).await;
        assert_eq!((s, v["error"]["param"].as_str()), (400, Some("tools[0].function.name")));

        fake.answer_status(503, "{\"error\":{\"message\":\"overloaded\"}}");
        let (s, v) = post(&fake, Some(FakeLlm::API_KEY), &req()).await;
        assert_eq!((s, v["error"]["message"].as_str()), (503, Some("overloaded")));
        assert_eq!(fake.requests().len(), 6);
    }
}
