//! `[nlu]`: natural language, and the optional LLM provider behind it.

use super::Cx;
use crate::secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

/// `[nlu]`: how free text is understood.
#[derive(Clone, Debug)]
pub struct NluConfig {
    /// Whether free text is read at all (default true); `false` leaves the exact grammar and the
    /// alias templates.
    pub enabled: bool,
    /// An OpenAI-compatible chat-completions endpoint for what the embedded layer cannot place.
    pub llm: Option<LlmConfig>,
}

impl Default for NluConfig {
    fn default() -> Self {
        Self { enabled: true, llm: None }
    }
}

/// `[nlu.llm]`: any OpenAI-compatible `/chat/completions` endpoint (vLLM, Ollama, OpenAI,
/// DeepSeek, Qwen). The model only proposes a typed command, which the person always confirms.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    /// The API's base URL, up to and including `/v1` (e.g. `http://127.0.0.1:11434/v1` for
    /// Ollama, `https://api.openai.com/v1`); `/chat/completions` is appended.
    pub url: String,
    /// The model name (`qwen2.5:7b-instruct`, `gpt-4o-mini`, `deepseek-chat`, …).
    pub model: String,
    /// The API key, resolved from its `${env:…}`/`${file:…}` reference; sent as
    /// `Authorization: Bearer …`. None for local servers that need none.
    pub api_key: Option<String>,
    /// How long to wait for an answer (default 10 s); past it, the person hears that the text
    /// was not understood.
    pub timeout: Duration,
    /// A PEM file of extra CA certificates to trust.
    pub tls_ca: Option<PathBuf>,
}

/// A run that config starts on a cron pattern (`[schedules.NAME]`).
#[derive(Clone, Debug)]
pub struct CronSchedule {
    /// The table's name: its key in the store and in `schedules`.
    pub name: String,
    /// The pattern as written (five fields, read in `[bot] timezone`).
    pub cron: String,
    /// Parsed pattern.
    pub pattern: Box<croner::Cron>,
    /// The job.
    pub job: String,
    /// Canonical values (defaults filled).
    pub params: crate::job::Params,
    /// Where its job card goes (`ADAPTER/CHANNEL`), if anywhere.
    pub place: Option<crate::Place>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNlu {
    enabled: Option<bool>,
    llm: Option<RawLlm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    url: Spanned<String>,
    model: Spanned<String>,
    api_key: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    tls_ca: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Spanned<String>,
    job: Spanned<String>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<ScalarValue>>,
    place: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum ScalarValue {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl<'a> Cx<'a> {
    /// Reads `[nlu]` and `[nlu.llm]`.
    pub(super) fn nlu(&mut self, value: Option<&Spanned<DeValue<'a>>>) -> NluConfig {
        let raw: RawNlu = self.section(value);
        let llm = raw.llm.and_then(|l| {
            let url = l.url.get_ref().trim_end_matches('/').to_string();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                self.err(
                    l.url.span(),
                    format!("`{url}` is not an http:// or https:// URL"),
                    Some(
                        "the API's base URL up to /v1, e.g. \"http://127.0.0.1:11434/v1\" (Ollama) or \"https://api.openai.com/v1\"".into(),
                    ),
                );
                return None;
            }
            if l.model.get_ref().trim().is_empty() {
                self.err(
                    l.model.span(),
                    "`model` is empty",
                    Some("e.g. model = \"qwen2.5:7b-instruct\"".into()),
                );
                return None;
            }
            let api_key = match l.api_key {
                None => None,
                Some(k) => {
                    if !secret::has_named_reference(k.get_ref()) {
                        self.err(
                            k.span(),
                            "`api_key` of [nlu.llm] is a secret written into the config",
                            Some("secrets only by reference: api_key = \"${env:OPSBOT_LLM_KEY}\"".into()),
                        );
                        return None;
                    }
                    if self.opts.resolve_secrets {
                        match secret::resolve(k.get_ref(), &self.dir) {
                            Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_string()),
                            Err(msg) => {
                                self.err(k.span(), msg, None);
                                return None;
                            }
                        }
                    } else {
                        Some(k.get_ref().clone())
                    }
                }
            };
            let timeout = self.duration(&l.timeout, Duration::from_secs(10));
            Some(LlmConfig {
                url,
                model: l.model.into_inner(),
                api_key,
                timeout,
                tls_ca: l.tls_ca.map(|p| self.dir.join(p.into_inner())),
            })
        });
        NluConfig {
            enabled: raw.enabled.unwrap_or(true),
            llm,
        }
    }

    /// Reads `[schedules.NAME]`: cron runs of jobs, checked against the catalog.
    pub(super) fn schedules(&mut self, value: Option<&Spanned<DeValue<'a>>>, catalog: &crate::job::Catalog) -> Vec<CronSchedule> {
        let mut out = Vec::new();
        let Some(v) = value else { return out };
        let DeValue::Table(t) = v.get_ref() else {
            self.err(v.span(), "`schedules` must be tables: [schedules.NAME]", None);
            return out;
        };
        for (name, body) in t.iter() {
            let n = name.get_ref().to_string();
            if !super::valid_name(&n, true) {
                self.err(
                    name.span(),
                    format!("`{n}` is not a valid schedule name"),
                    Some("use lowercase letters, digits, `-` and `_`, starting with a letter".into()),
                );
                continue;
            }
            let raw = match RawSchedule::deserialize(ValueDeserializer::from(body.clone())) {
                Ok(r) => r,
                Err(e) => {
                    self.toml_err(e, body.span());
                    continue;
                }
            };
            let pattern = match croner::Cron::from_str(raw.cron.get_ref()) {
                Ok(c) => c,
                Err(e) => {
                    self.err(
                        raw.cron.span(),
                        format!("`{}` is not a cron pattern: {e}", raw.cron.get_ref()),
                        Some("five fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" (03:00 every day)".into()),
                    );
                    continue;
                }
            };
            let Some(job) = catalog.get(raw.job.get_ref()) else {
                let hint = crate::job::closest(raw.job.get_ref(), catalog.jobs().iter().map(|j| j.name.as_str()))
                    .map(|s| format!("did you mean `{s}`?"));
                self.err(
                    raw.job.span(),
                    format!("schedule `{n}`: there is no job `{}`", raw.job.get_ref()),
                    hint,
                );
                continue;
            };
            let mut params = crate::job::Params::new();
            let mut failed: Vec<String> = Vec::new();
            let mut ok = true;
            for (k, v) in &raw.params {
                let text = match v.get_ref() {
                    ScalarValue::Text(s) => s.clone(),
                    ScalarValue::Int(i) => i.to_string(),
                    ScalarValue::Bool(b) => b.to_string(),
                };
                match job.param(k) {
                    None => {
                        self.err(v.span(), format!("schedule `{n}`: `{}` has no parameter `{k}`", job.name), None);
                        ok = false;
                    }
                    Some(spec) if spec.secret => {
                        self.err(
                            v.span(),
                            format!("schedule `{n}`: `{k}` is secret; a schedule cannot carry a secret value"),
                            Some("give the job a default from ${env:…} or leave the schedule out".into()),
                        );
                        ok = false;
                    }
                    Some(spec) => match spec.normalize(&text) {
                        Ok(v2) => {
                            params.insert(spec.name.clone(), v2);
                        }
                        Err(e) => {
                            self.err(v.span(), format!("schedule `{n}`: {e}"), None);
                            failed.push(spec.name.clone());
                            ok = false;
                        }
                    },
                }
            }
            for p in &job.params {
                if !params.contains_key(&p.name) && !failed.contains(&p.name) {
                    match (&p.default, p.required) {
                        (Some(d), _) => {
                            params.insert(p.name.clone(), d.clone());
                        }
                        (None, true) => {
                            self.err(
                                body.span(),
                                format!("schedule `{n}`: `{}` needs `{}`", job.name, p.name),
                                Some(format!("add it: params = {{ {} = \"…\" }}", p.name)),
                            );
                            ok = false;
                        }
                        (None, false) => {}
                    }
                }
            }
            let place = match &raw.place {
                None => None,
                Some(p) => match p.get_ref().split_once('/').filter(|(a, c)| !a.is_empty() && !c.is_empty()) {
                    Some((a, c)) => Some(crate::Place::new(a, c)),
                    None => {
                        self.err(
                            p.span(),
                            format!("`{}` is not a place", p.get_ref()),
                            Some("ADAPTER/CHANNEL, e.g. \"libera/#ops\" or \"web/ops\"".into()),
                        );
                        ok = false;
                        None
                    }
                },
            };
            if ok {
                out.push(CronSchedule {
                    name: n,
                    cron: raw.cron.into_inner(),
                    pattern: Box::new(pattern),
                    job: job.name.clone(),
                    params,
                    place,
                });
            }
        }
        out
    }
}
