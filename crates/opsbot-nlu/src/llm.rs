//! The optional LLM provider: for text the embedded layer cannot place, asks any
//! OpenAI-compatible chat-completions endpoint (vLLM, Ollama, OpenAI, DeepSeek, Qwen) which job
//! of the catalog the person means, through function calling (`tools`).
//!
//! The model only *proposes*: the answer becomes a [`Proposal`] that the engine validates like
//! any typed command and the person confirms. What is sent is kept small and clean:
//! - one tool per job, its parameters as JSON Schema; **secret parameters are left out
//!   entirely** (name, help, default), and the values of secret defaults are masked wherever
//!   else they might appear (descriptions, examples);
//! - the person's text with every known secret value replaced by `••••`, cut to
//!   [`MAX_TEXT_CHARS`] characters;
//! - `temperature: 0`, `tool_choice: "auto"`, no streaming.
//!
//! The API key only ever travels in the `Authorization` header; no error message carries it.

use opsbot_core::config::nlu::LlmConfig;
use opsbot_core::job::{Catalog, JobSpec, ParamKind, ParamSpec};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The longest text sent to the provider, in characters; the rest is cut off.
pub const MAX_TEXT_CHARS: usize = 2000;

/// The largest answer body read, in bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What replaces a secret value in everything sent to the provider.
pub const MASK: &str = "••••";

/// Strings shorter than this (in characters) are not masked: they would mangle ordinary words.
const MIN_SCRUB_CHARS: usize = 4;

/// The longest API error message kept in an [`LlmError::Status`], in characters.
const MAX_ERROR_CHARS: usize = 300;

/// The longest [`Proposal::note`], in characters.
const MAX_NOTE_CHARS: usize = 500;

/// Tokens the model may spend on its answer (a tool call is short).
const MAX_TOKENS: u32 = 300;

const SYSTEM_PROMPT: &str = "You are the request router of an operations bot. Each tool is one job \
the bot can run. When the person's request matches a job, call exactly one tool, with only the \
values the person actually gave; never invent, guess or fill in values they did not give (the bot \
asks for anything missing). When no job matches, do not call a tool: answer briefly in prose. \
The person may write in English or in Chinese (中文).";

/// A job the model proposes, with the values it read from the text. Not validated: the engine
/// checks it against the job's parameters like any typed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The job's name as the catalog spells it.
    pub job: String,
    /// `name` → raw value, as the model gave them (numbers and booleans as text).
    pub params: Vec<(String, String)>,
    /// What the model said alongside the call, if anything (trimmed, shortened).
    pub note: Option<String>,
}

/// Why the provider gave no usable answer. Display is one line and never holds the API key.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The configuration cannot be used (URL, CA file, API key characters).
    #[error("the LLM provider is misconfigured: {0}")]
    Config(String),
    /// No complete answer within the configured timeout.
    #[error("the LLM provider did not answer within {}", fmt_duration(*.0))]
    Timeout(Duration),
    /// The request could not be sent or the answer not received (connection refused, TLS, …).
    #[error("cannot reach the LLM provider: {0}")]
    Network(String),
    /// The provider answered with an HTTP error status.
    #[error("the LLM provider refused the request (HTTP {status}){}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The API's own error message (`{"error":{"message":…}}`), when it gave one.
        message: Option<String>,
    },
    /// The answer is not a chat completion this client can read.
    #[error("the LLM provider's answer is unreadable: {0}")]
    Unreadable(String),
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A client of one OpenAI-compatible chat-completions endpoint.
pub struct Llm {
    http: reqwest::Client,
    endpoint: String,
    model: String,
    auth: Option<reqwest::header::HeaderValue>,
    api_key: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.auth.as_ref().map(|_| MASK))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Llm {
    /// A client for `cfg`: checks the URL, reads the extra CA file, prepares the key.
    pub fn new(cfg: &LlmConfig) -> Result<Llm, LlmError> {
        // reqwest is built without a crypto provider; the binary installs ring process-wide,
        // but make sure one is there (a second install is refused harmlessly).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = cfg.url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(base).map_err(|e| LlmError::Config(format!("url `{}`: {e}", one_line(base, 200))))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(LlmError::Config(format!(
                "url `{}` is not an http:// or https:// base URL",
                one_line(base, 200)
            )));
        }
        if cfg.model.trim().is_empty() {
            return Err(LlmError::Config("model is empty".into()));
        }
        let api_key = cfg.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty());
        let auth = match api_key {
            Some(key) => {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    LlmError::Config("the api key cannot be sent in an HTTP header (it holds a line break or a control character)".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("opsbot/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| LlmError::Config(format!("cannot read the CA file {}: {e}", ca.display())))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| LlmError::Config(format!("the CA file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(LlmError::Config(format!("the CA file {} holds no PEM certificate", ca.display())));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {}", error_chain(&e))))?;
        Ok(Llm {
            http,
            endpoint: format!("{base}/chat/completions"),
            model: cfg.model.trim().to_string(),
            auth,
            api_key: api_key.map(str::to_string),
            timeout: cfg.timeout,
        })
    }

    /// Asks the model which job (and values) the text means. `Ok(None)`: the model chose no
    /// tool (answered in prose) or named no job of the catalog.
    ///
    /// Every string of `scrub` (secret values known to opsbot; those under 4 characters are
    /// skipped) is replaced by `••••` wherever it would appear in the request.
    pub async fn propose(&self, text: &str, catalog: &Catalog, scrub: &[String]) -> Result<Option<Proposal>, LlmError> {
        let body = self.request_body(text, catalog, scrub);
        let tools_empty = body["tools"].as_array().is_none_or(|t| t.is_empty());
        if tools_empty {
            // The API refuses an empty `tools`; with no job to name, there is nothing to ask.
            return Ok(None);
        }
        let answer = match tokio::time::timeout(self.timeout, self.post(&body)).await {
            Ok(r) => r?,
            Err(_) => return Err(LlmError::Timeout(self.timeout)),
        };
        read_answer(&answer, catalog)
    }

    /// The JSON request for `text` (scrubbed, cut), for this client's model.
    fn request_body(&self, text: &str, catalog: &Catalog, scrub: &[String]) -> Value {
        let mut secrets: Vec<&str> = scrub.iter().map(String::as_str).collect();
        secrets.extend(secret_defaults(catalog));
        let text = cut_chars(&mask(text, &secrets), MAX_TEXT_CHARS);
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": text},
            ],
            "tools": tools(catalog),
            "tool_choice": "auto",
            "temperature": 0,
            "max_tokens": MAX_TOKENS,
            "stream": false,
        });
        // Descriptions, examples and help are written by the operator; a secret value could
        // have slipped into one. Mask them everywhere.
        mask_value(&mut body, &secrets);
        body
    }

    /// Sends the request and returns the answer body, or the HTTP error.
    async fn post(&self, body: &Value) -> Result<Vec<u8>, LlmError> {
        let mut req = self.http.post(&self.endpoint).json(body);
        if let Some(auth) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        let mut resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let mut buf: Vec<u8> = Vec::new();
        let mut too_big = false;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
                too_big = true;
                break;
            }
            buf.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = api_error_message(&buf).map(|m| self.hide_key(&m));
            return Err(LlmError::Status {
                status: status.as_u16(),
                message,
            });
        }
        if too_big {
            return Err(LlmError::Unreadable(format!(
                "the answer is larger than {} KiB",
                MAX_ANSWER_BYTES / 1024
            )));
        }
        Ok(buf)
    }

    fn transport_error(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            return LlmError::Timeout(self.timeout);
        }
        LlmError::Network(self.hide_key(&error_chain(&e.without_url())))
    }

    /// `s` on one line, shortened, with the API key (should a server echo it) masked.
    fn hide_key(&self, s: &str) -> String {
        let s = match &self.api_key {
            Some(k) => s.replace(k.as_str(), MASK),
            None => s.to_string(),
        };
        one_line(&s, MAX_ERROR_CHARS)
    }
}

/// The `tools` array for the catalog: one function per job whose name the API accepts
/// (`^[a-zA-Z0-9_-]{1,64}$`), its non-secret parameters as JSON Schema.
pub fn tools(catalog: &Catalog) -> Value {
    let secrets = secret_defaults(catalog);
    let list: Vec<Value> = catalog
        .jobs()
        .iter()
        .filter(|job| {
            let ok = valid_function_name(&job.name);
            if !ok {
                tracing::debug!(job = %job.name, "job left out of the LLM tools: its name is not a valid function name");
            }
            ok
        })
        .map(|job| {
            let mut tool = tool(job);
            mask_value(&mut tool, &secrets);
            tool
        })
        .collect();
    Value::Array(list)
}

fn tool(job: &JobSpec) -> Value {
    let secret_names: Vec<&str> = job.params.iter().filter(|p| p.secret).map(|p| p.name.as_str()).collect();
    let mut description = job.description.trim().to_string();
    let examples: Vec<String> = job
        .examples
        .iter()
        .map(|e| without_secret_args(e, &secret_names))
        .filter(|e| !e.is_empty())
        .collect();
    if !examples.is_empty() {
        if !description.is_empty() && !description.ends_with(['.', '!', '?', '。']) {
            description.push('.');
        }
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str("Examples: ");
        description.push_str(&examples.join("; "));
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    for p in job.params.iter().filter(|p| !p.secret) {
        properties.insert(p.name.clone(), param_schema(p));
        if p.required {
            required.push(Value::String(p.name.clone()));
        }
    }
    json!({
        "type": "function",
        "function": {
            "name": job.name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            },
        },
    })
}

fn param_schema(p: &ParamSpec) -> Value {
    let mut notes: Vec<String> = Vec::new();
    if let Some(h) = p.help.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
        notes.push(h.to_string());
    }
    let mut schema = Map::new();
    match &p.kind {
        ParamKind::Enum { values } => {
            schema.insert("type".into(), json!("string"));
            schema.insert(
                "enum".into(),
                Value::Array(values.iter().map(|v| Value::String(v.value.clone())).collect()),
            );
            let syn: Vec<String> = values
                .iter()
                .filter(|v| !v.synonyms.is_empty())
                .map(|v| format!("{} → {}", v.synonyms.join(", "), v.value))
                .collect();
            if !syn.is_empty() {
                notes.push(format!("Also written: {}", syn.join("; ")));
            }
        }
        ParamKind::Int { min, max } => {
            schema.insert("type".into(), json!("integer"));
            if let Some(m) = min {
                schema.insert("minimum".into(), json!(m));
            }
            if let Some(m) = max {
                schema.insert("maximum".into(), json!(m));
            }
        }
        ParamKind::Bool => {
            schema.insert("type".into(), json!("boolean"));
        }
        ParamKind::String { pattern } => {
            schema.insert("type".into(), json!("string"));
            if let Some(re) = pattern {
                schema.insert("pattern".into(), json!(strip_anchors(re.as_str())));
            }
        }
    }
    if let Some(d) = &p.default {
        notes.push(format!("Default: {d}"));
    }
    if !notes.is_empty() {
        schema.insert("description".into(), json!(notes.join(". ")));
    }
    Value::Object(schema)
}

/// Same as `ParamKind::describe`: config patterns are stored wrapped as `^(?:…)$`.
fn strip_anchors(p: &str) -> &str {
    p.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(p)
}

/// Whether the API accepts `name` as a function name: `^[a-zA-Z0-9_-]{1,64}$`.
fn valid_function_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An example command without its `secret=value` words.
fn without_secret_args(example: &str, secret_names: &[&str]) -> String {
    example
        .split_whitespace()
        .filter(|w| {
            !secret_names.iter().any(|n| {
                w.split_once('=')
                    .is_some_and(|(k, _)| k.trim_start_matches('-').eq_ignore_ascii_case(n))
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default values of every secret param in the catalog.
fn secret_defaults(catalog: &Catalog) -> Vec<&str> {
    catalog
        .jobs()
        .iter()
        .flat_map(|j| j.params.iter())
        .filter(|p| p.secret)
        .filter_map(|p| p.default.as_deref())
        .collect()
}

/// `text` with every secret (4 characters or more; longest first) replaced by [`MASK`].
fn mask(text: &str, secrets: &[&str]) -> String {
    let mut list: Vec<&str> = secrets.iter().copied().filter(|s| s.chars().count() >= MIN_SCRUB_CHARS).collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    list.dedup();
    let mut out = text.to_string();
    for s in list {
        if out.contains(s) {
            out = out.replace(s, MASK);
        }
    }
    out
}

/// Masks secrets in every string value of a JSON value (keys are structure: left alone).
fn mask_value(v: &mut Value, secrets: &[&str]) {
    match v {
        Value::String(s) => {
            let m = mask(s, secrets);
            if m != *s {
                *s = m;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mask_value(x, secrets)),
        Value::Object(o) => o.values_mut().for_each(|x| mask_value(x, secrets)),
        _ => {}
    }
}

/// The first `max` characters of `s`.
fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// `s` with line breaks and control characters as spaces, shortened to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    opsbot_core::job::shorten(&flat, max)
}

/// An error and its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// The message of an API error body: `{"error":{"message":…}}` (OpenAI and most compatible
/// servers) or `{"error":"…"}` (Ollama).
fn api_error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let m = match e {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("message")?.as_str()?,
        _ => return None,
    };
    let m = m.trim();
    (!m.is_empty()).then(|| m.to_string())
}

/// Reads a `chat.completion` answer.
fn read_answer(body: &[u8], catalog: &Catalog) -> Result<Option<Proposal>, LlmError> {
    let unreadable = |why: &str| LlmError::Unreadable(why.to_string());
    let v: Value = serde_json::from_slice(body).map_err(|e| LlmError::Unreadable(format!("not JSON ({e})")))?;
    let Some(obj) = v.as_object() else {
        return Err(unreadable("not a JSON object"));
    };
    let Some(choices) = obj.get("choices").and_then(Value::as_array) else {
        if let Some(m) = api_error_message(body) {
            return Err(LlmError::Unreadable(format!(
                "an error instead of an answer: {}",
                one_line(&m, MAX_ERROR_CHARS)
            )));
        }
        return Err(unreadable("no `choices`"));
    };
    let Some(message) = choices.first().and_then(|c| c.get("message")).and_then(Value::as_object) else {
        return Err(unreadable("no `choices[0].message`"));
    };
    let note = match message.get("content") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(one_line(s, MAX_NOTE_CHARS)),
        _ => None,
    };
    let call = match message.get("tool_calls") {
        Some(Value::Array(calls)) if !calls.is_empty() => {
            let f = calls[0].get("function").and_then(Value::as_object);
            Some(f.ok_or_else(|| unreadable("`tool_calls[0]` has no `function`"))?)
        }
        Some(Value::Array(_)) | Some(Value::Null) | None => match message.get("function_call") {
            Some(Value::Object(f)) => Some(f),
            Some(Value::Null) | None => None,
            Some(_) => return Err(unreadable("`function_call` is not an object")),
        },
        Some(_) => return Err(unreadable("`tool_calls` is not an array")),
    };
    let Some(call) = call else {
        return Ok(None);
    };
    let Some(name) = call.get("name").and_then(Value::as_str) else {
        return Err(unreadable("the function call has no `name`"));
    };
    let args: Map<String, Value> = match call.get("arguments") {
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(unreadable("the function arguments are not a JSON object")),
            Err(e) => return Err(LlmError::Unreadable(format!("the function arguments are not JSON ({e})"))),
        },
        // Not the published format (a string), but some compatible servers send the object.
        Some(Value::Object(o)) => o.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(unreadable("the function arguments are not a JSON string")),
    };
    let Some(job) = catalog.get(name) else {
        tracing::warn!(tool = %one_line(name, 80), "the LLM named a tool that is no job of the catalog; ignored");
        return Ok(None);
    };
    let mut params = Vec::new();
    for (k, v) in args {
        if job.param(&k).is_some_and(|p| p.secret) {
            // The model was never told of this param: any value is invented.
            tracing::warn!(job = %job.name, "the LLM gave a value for a secret param; dropped");
            continue;
        }
        let value = match v {
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => number_text(&n),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        params.push((k, value));
    }
    // The job's declared order, then unknown keys by name: the same proposal reads the same
    // whichever order the JSON object came in.
    let rank = |k: &str| job.params.iter().position(|p| p.name.eq_ignore_ascii_case(k)).unwrap_or(usize::MAX);
    params.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    Ok(Some(Proposal {
        job: job.name.clone(),
        params,
        note,
    }))
}

/// A JSON number as text: integers as integers (also `3.0`), other numbers as JSON writes them.
fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::job::{EnumValue, RunnerSpec};

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

    fn job(name: &str, params: Vec<ParamSpec>, examples: &[&str]) -> JobSpec {
        JobSpec {
            name: name.into(),
            description: "Restarts a service".into(),
            params,
            aliases: vec![],
            examples: examples.iter().map(|s| s.to_string()).collect(),
            runner: RunnerSpec::Exec {
                argv: vec!["true".into()],
                env: Default::default(),
                cwd: ".".into(),
                secret_env: Default::default(),
            },
            timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(5),
            concurrency: None,
            sensitive: false,
            output_limit: 1 << 20,
        }
    }

    #[test]
    fn tools_schema() {
        let restart = job(
            "restart",
            vec![
                ParamSpec {
                    help: Some("Which service".into()),
                    ..param(
                        "svc",
                        ParamKind::Enum {
                            values: vec![
                                EnumValue {
                                    value: "api".into(),
                                    synonyms: vec!["backend".into(), "后端".into()],
                                },
                                EnumValue {
                                    value: "web".into(),
                                    synonyms: vec![],
                                },
                            ],
                        },
                        true,
                    )
                },
                ParamSpec {
                    default: Some("1".into()),
                    ..param(
                        "count",
                        ParamKind::Int {
                            min: Some(1),
                            max: Some(5),
                        },
                        false,
                    )
                },
                param("force", ParamKind::Bool, false),
                param(
                    "ref",
                    ParamKind::String {
                        pattern: Some(regex::Regex::new("^(?:[a-z0-9.]+)$").unwrap()),
                    },
                    false,
                ),
                ParamSpec {
                    secret: true,
                    default: Some("hunter22".into()),
                    help: Some("the password".into()),
                    ..param("password", ParamKind::String { pattern: None }, false)
                },
            ],
            &["restart api count=2 password=hunter22", "restart web"],
        );
        let bad = job("bad name!", vec![], &[]);
        let long = job(&"x".repeat(65), vec![], &[]);
        let catalog = Catalog::new(vec![restart, bad, long]);
        let t = tools(&catalog);
        let expected = json!([{
            "type": "function",
            "function": {
                "name": "restart",
                "description": "Restarts a service. Examples: restart api count=2; restart web",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "svc": {
                            "type": "string",
                            "enum": ["api", "web"],
                            "description": "Which service. Also written: backend, 后端 → api",
                        },
                        "count": {"type": "integer", "minimum": 1, "maximum": 5, "description": "Default: 1"},
                        "force": {"type": "boolean"},
                        "ref": {"type": "string", "pattern": "[a-z0-9.]+"},
                    },
                    "required": ["svc"],
                    "additionalProperties": false,
                },
            },
        }]);
        assert_eq!(t, expected);
        let s = t.to_string();
        assert!(!s.contains("password") && !s.contains("hunter22"), "{s}");
    }

    #[test]
    fn masking_and_cutting() {
        assert_eq!(
            mask("pw is abcdefg or abcd, not abc", &["abcd", "abcdefg", "abc", ""]),
            "pw is •••• or ••••, not abc"
        );
        assert_eq!(cut_chars("生产环境", 2), "生产");
        assert_eq!(cut_chars("ab", 5), "ab");
        let mut v = json!({"a": ["x sekret y", {"b": "sekret"}], "n": 1});
        mask_value(&mut v, &["sekret"]);
        assert_eq!(v, json!({"a": ["x •••• y", {"b": "••••"}], "n": 1}));
    }

    #[test]
    fn numbers_and_names() {
        let n = |s: &str| number_text(&serde_json::from_str(s).unwrap());
        assert_eq!(n("3"), "3");
        assert_eq!(n("3.0"), "3");
        assert_eq!(n("-2"), "-2");
        assert_eq!(n("2.5"), "2.5");
        assert!(valid_function_name("deploy_app-2"));
        assert!(!valid_function_name("部署"));
        assert!(!valid_function_name(""));
    }

    #[test]
    fn error_display_is_one_line() {
        let e = LlmError::Status {
            status: 401,
            message: Some("Incorrect API key provided".into()),
        };
        assert_eq!(
            e.to_string(),
            "the LLM provider refused the request (HTTP 401): Incorrect API key provided"
        );
        assert_eq!(
            LlmError::Timeout(Duration::from_millis(1500)).to_string(),
            "the LLM provider did not answer within 1500 ms"
        );
        assert_eq!(
            LlmError::Timeout(Duration::from_secs(10)).to_string(),
            "the LLM provider did not answer within 10 s"
        );
        assert_eq!(one_line("a\nb\r\n  c", 100), "a b c");
    }
}
