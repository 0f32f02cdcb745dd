//! The JSON shapes of the API, as sent and received, with their OpenAPI schemas.

use chrono::{DateTime, SecondsFormat, Utc};
use opsbot_core::job::{Catalog, JobSpec, ParamKind, ParamSpec};
use opsbot_core::{ExecState, Execution, OutputLine, Params, Stream};
use opsbot_store::AuditRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What is shown instead of a secret value.
pub(crate) const HIDDEN: &str = "••••";

/// Every error answer: `{"error": {"code", "message", "error_id"}}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable snake_case code to act on: `unauthorized`, `invalid_token`, `bad_request`,
    /// `not_found`, `method_not_allowed`, `payload_too_large`, `unsupported_media_type`,
    /// `invalid_params`, `missing_param`, `confirmation_required`, `refused`, `not_ready`, `internal`.
    #[schema(example = "refused")]
    pub code: String,
    /// What went wrong and what to do, for a person.
    pub message: String,
    /// Id of this error in opsbot's log; give it to an admin.
    #[schema(example = "E18f2a3b4c5d1a2b")]
    pub error_id: String,
}

/// A run request that waits for approval instead of running (HTTP 202).
#[derive(Serialize, ToSchema)]
pub(crate) struct ApprovalPending {
    /// The approval request's id: approvers answer `approve ID` or `deny ID` in chat.
    #[schema(example = 7)]
    pub approval_id: i64,
    /// Who must approve, why, and until when, in the engine's words.
    pub message: String,
}

/// `/readyz` when the store answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct Ready {
    /// Always `ready`: the HTTP door and the store work. A chat adapter being down does not
    /// make opsbot unready (its messages wait in the outbox); see `adapters`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Each chat adapter's connection (empty when none is configured).
    pub adapters: Vec<AdapterView>,
}

/// A chat adapter's connection, in `/readyz`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AdapterView {
    /// The adapter's name (`[adapters.NAME]`).
    #[schema(example = "irc")]
    pub name: String,
    /// Its type.
    #[schema(example = "irc")]
    pub kind: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Since when (RFC 3339) it is connected, or not.
    pub since: String,
    /// Why the last connection ended, if one did.
    pub last_error: Option<String>,
    /// Connections lost or failed since start.
    pub reconnects: u64,
}

/// The jobs of the catalog.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobList {
    /// In config order.
    pub jobs: Vec<JobView>,
}

/// A job and how to call it.
#[derive(Serialize, ToSchema)]
pub(crate) struct JobView {
    /// Name, as used in `job` of a run request.
    #[schema(example = "deploy")]
    pub name: String,
    /// One line about it.
    pub description: String,
    /// Parameters in declared order (positional `args` fill them in this order).
    pub params: Vec<ParamView>,
    /// Chat phrasings like `deploy {app} to {env}`.
    pub aliases: Vec<String>,
    /// Example commands.
    pub examples: Vec<String>,
    /// Whether a run must be confirmed (`"confirm": true`).
    pub sensitive: bool,
    /// Wall-clock limit of a run.
    pub timeout_seconds: u64,
    /// At most this many runs at once (null: no limit).
    pub concurrency: Option<u32>,
}

/// A parameter's type.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ParamType {
    /// Free text, maybe constrained by a pattern.
    String,
    /// One of fixed values (or their synonyms).
    Enum,
    /// A whole number, maybe bounded.
    Int,
    /// true/false (also yes/no, on/off, 1/0).
    Bool,
}

/// A declared parameter.
#[derive(Serialize, ToSchema)]
pub(crate) struct ParamView {
    /// Name, as used in `params`.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Whether a value must be given.
    pub required: bool,
    /// Value used when none is given (`••••` when secret).
    pub default: Option<String>,
    /// One line of help.
    pub help: Option<String>,
    /// Whether the value is never shown back.
    pub secret: bool,
    /// What values are accepted.
    pub allowed: Allowed,
}

/// What values a parameter accepts.
#[derive(Serialize, ToSchema)]
pub(crate) struct Allowed {
    /// In words, e.g. `one of dev, staging, prod` or `integer 1..20`.
    pub description: String,
    /// For enums: the values and the words that also mean them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<EnumValueView>>,
    /// For strings: the regular expression the whole value must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For ints: smallest accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// For ints: largest accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// One value of an enum parameter.
#[derive(Serialize, ToSchema)]
pub(crate) struct EnumValueView {
    /// The canonical value the job receives.
    pub value: String,
    /// Other words accepted for it (case-insensitive).
    pub synonyms: Vec<String>,
}

impl JobView {
    /// The view of a job.
    pub fn of(job: &JobSpec) -> Self {
        JobView {
            name: job.name.clone(),
            description: job.description.clone(),
            params: job.params.iter().map(ParamView::of).collect(),
            aliases: job.aliases.clone(),
            examples: job.examples.clone(),
            sensitive: job.sensitive,
            timeout_seconds: job.timeout.as_secs(),
            concurrency: job.concurrency,
        }
    }
}

impl ParamView {
    fn of(p: &ParamSpec) -> Self {
        let mut allowed = Allowed {
            description: p.kind.describe(),
            values: None,
            pattern: None,
            min: None,
            max: None,
        };
        let kind = match &p.kind {
            ParamKind::String { pattern } => {
                allowed.pattern = pattern.as_ref().map(|re| strip_anchors(re.as_str()).to_string());
                ParamType::String
            }
            ParamKind::Enum { values } => {
                allowed.values = Some(
                    values
                        .iter()
                        .map(|v| EnumValueView {
                            value: v.value.clone(),
                            synonyms: v.synonyms.clone(),
                        })
                        .collect(),
                );
                ParamType::Enum
            }
            ParamKind::Int { min, max } => {
                allowed.min = *min;
                allowed.max = *max;
                ParamType::Int
            }
            ParamKind::Bool => ParamType::Bool,
        };
        ParamView {
            name: p.name.clone(),
            kind,
            required: p.required,
            default: p.default.as_ref().map(|d| if p.secret { HIDDEN.to_string() } else { d.clone() }),
            help: p.help.clone(),
            secret: p.secret,
            allowed,
        }
    }
}

/// The config loader anchors patterns as `^(?:…)$`; people wrote what is inside.
fn strip_anchors(p: &str) -> &str {
    p.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(p)
}

/// A parameter value in a run request: text, a number or a boolean (never an object, a list or null).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum ParamValue {
    /// Text.
    Text(String),
    /// A number, passed as its decimal text.
    Number(f64),
    /// A boolean, passed as `true`/`false`.
    Flag(bool),
}

/// A request to run a job: the same as typing `run JOB key=value … -- args…` in chat.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"job": "deploy", "params": {"app": "web", "env": "staging"}, "confirm": false}))]
pub(crate) struct RunRequest {
    /// The job's name.
    pub job: String,
    /// Named parameter values.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, ParamValue>)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Positional values, filling the parameters not named, in declared order.
    #[serde(default)]
    #[schema(value_type = Vec<ParamValue>)]
    pub args: Vec<serde_json::Value>,
    /// Confirms a sensitive job; without it a sensitive job answers `409 confirmation_required`.
    #[serde(default)]
    pub confirm: bool,
}

/// Where an execution is in its life.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateView {
    /// Waiting for a worker.
    Queued,
    /// Running.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, was killed, or could not start.
    Failed,
    /// Stopped on request.
    Cancelled,
    /// Stopped at its timeout.
    TimedOut,
    /// Its worker died; the outcome is unknown.
    Lost,
}

impl From<ExecState> for StateView {
    fn from(s: ExecState) -> Self {
        match s {
            ExecState::Queued => StateView::Queued,
            ExecState::Running => StateView::Running,
            ExecState::Succeeded => StateView::Succeeded,
            ExecState::Failed => StateView::Failed,
            ExecState::Cancelled => StateView::Cancelled,
            ExecState::TimedOut => StateView::TimedOut,
            ExecState::Lost => StateView::Lost,
        }
    }
}

/// One run of a job.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExecutionView {
    /// Id (`#N` in chat).
    pub id: i64,
    /// Job name.
    pub job: String,
    /// Canonical parameter values; secret ones are `••••`.
    pub params: BTreeMap<String, String>,
    /// Who asked, as `platform:id` (`web:NAME` for the API).
    #[schema(example = "web:ana")]
    pub requested_by: String,
    /// Their display name.
    pub requester_name: String,
    /// Where they asked (`platform/channel` or `platform/channel/thread`; a run request through
    /// the API has a place of its own, `api/USER/<16 hex digits>`).
    #[schema(example = "api/ana/3f9c0a1b2d4e5f60")]
    pub place: String,
    /// Current state.
    pub state: StateView,
    /// When it was queued (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When a worker started it.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// When it ended.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Exit code, when the process exited normally.
    pub exit_code: Option<i32>,
    /// Wall time in milliseconds.
    pub duration_ms: Option<i64>,
    /// CPU time in milliseconds.
    pub cpu_ms: Option<i64>,
    /// Peak resident memory in KiB.
    pub max_rss_kb: Option<i64>,
    /// One line about the outcome (signal, timeout, start failure, lost).
    pub detail: Option<String>,
    /// Whether someone asked it to stop.
    pub cancel_requested: bool,
}

/// An approval request.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApprovalView {
    /// Id (`approve ID` / `deny ID` in chat).
    pub id: i64,
    /// Job name.
    pub job: String,
    /// Canonical parameter values; secret ones are `••••`.
    pub params: BTreeMap<String, String>,
    /// Who asked, as `platform:id`.
    #[schema(example = "web:ana")]
    pub requested_by: String,
    /// Their name.
    pub requester_name: String,
    /// `pending`, `approved`, `denied`, `expired` or `withdrawn`.
    #[schema(example = "pending")]
    pub state: String,
    /// Who must approve and why (the policies that asked).
    pub needs: String,
    /// When it was asked (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it stops being answerable.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// When it left `pending`.
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
    /// What was said then (who approved or denied, and why).
    pub decision_note: Option<String>,
    /// The run it started, once approved.
    pub execution_id: Option<i64>,
}

impl ApprovalView {
    /// The view of a request, secret values hidden per its job's parameters.
    pub fn of(a: &opsbot_store::Approval, catalog: &Catalog) -> Self {
        ApprovalView {
            id: a.id,
            job: a.job.clone(),
            params: redact(catalog, &a.job, &a.params),
            requested_by: a.requested_by.to_string(),
            requester_name: a.requester_name.clone(),
            state: a.state.to_string(),
            needs: a.reason.clone(),
            created_at: rfc3339(a.created_at),
            expires_at: rfc3339(a.expires_at),
            decided_at: a.decided_at.map(rfc3339),
            decision_note: a.decision_note.clone(),
            execution_id: a.execution_id,
        }
    }
}

impl ExecutionView {
    /// The view of an execution, secret values hidden per its job's parameters.
    pub fn of(e: &Execution, catalog: &Catalog) -> Self {
        ExecutionView {
            id: e.id,
            job: e.job.clone(),
            params: redact(catalog, &e.job, &e.params),
            requested_by: e.requested_by.to_string(),
            requester_name: e.requester_name.clone(),
            place: e.place.to_string(),
            state: e.state.into(),
            created_at: rfc3339(e.created_at),
            started_at: e.started_at.map(rfc3339),
            finished_at: e.finished_at.map(rfc3339),
            exit_code: e.exit_code,
            duration_ms: e.duration_ms,
            cpu_ms: e.cpu_ms,
            max_rss_kb: e.max_rss_kb,
            detail: e.detail.clone(),
            cancel_requested: e.cancel_requested,
        }
    }
}

/// Hides the values of the parameters the job marks secret — and of those whose spec is gone
/// (the job left the catalog, or no longer declares the parameter), which may have been secret
/// when the execution was requested.
pub(crate) fn redact(catalog: &Catalog, job: &str, params: &Params) -> BTreeMap<String, String> {
    let spec = catalog.get(job);
    params
        .iter()
        .map(|(k, v)| {
            let shown = spec.and_then(|s| s.param(k)).is_some_and(|p| !p.secret);
            (k.clone(), if shown { v.clone() } else { HIDDEN.to_string() })
        })
        .collect()
}

/// A page of executions, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExecutionList {
    /// The executions.
    pub executions: Vec<ExecutionView>,
    /// Pass as `before` for the next (older) page; null when this is the last page.
    pub next_before: Option<i64>,
}

/// Which stream an output line came from.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StreamView {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A note from opsbot itself (truncation, start failure).
    System,
}

/// One output line, as sent in `event: line` of the log stream.
#[derive(Serialize, ToSchema)]
pub(crate) struct LineView {
    /// When it was read (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    /// From where.
    pub stream: StreamView,
    /// The text, without its line ending.
    pub text: String,
}

impl LineView {
    /// The view of an output line.
    pub fn of(l: &OutputLine) -> Self {
        LineView {
            at: rfc3339(l.at),
            stream: match l.stream {
                Stream::Stdout => StreamView::Stdout,
                Stream::Stderr => StreamView::Stderr,
                Stream::System => StreamView::System,
            },
            text: l.text.clone(),
        }
    }
}

/// Audit records, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditList {
    /// The records.
    pub records: Vec<AuditView>,
    /// Pass as `before` for the next (older) page; null when this is the last page.
    pub next_before: Option<i64>,
}

/// One decision, as recorded.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditView {
    /// Record id.
    pub id: i64,
    /// When (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    /// Who, as `platform:id`.
    #[schema(example = "web:ana")]
    pub actor: String,
    /// Their display name at the time.
    pub actor_name: String,
    /// Where (`platform/channel`).
    pub place: String,
    /// What was asked: `run`, `cancel`, `recover`, …
    pub action: String,
    /// The job concerned.
    pub job: Option<String>,
    /// Its parameters, secret ones already hidden.
    pub params: Option<BTreeMap<String, String>>,
    /// `accepted`, `refused`, `asked`, `confirmed`, `abandoned`, `expired`, `cancelled`, `lost`, …
    pub decision: String,
    /// Why.
    pub reason: Option<String>,
    /// The execution concerned.
    pub execution_id: Option<i64>,
}

impl AuditView {
    /// The view of an audit record.
    pub fn of(r: &AuditRecord) -> Self {
        AuditView {
            id: r.id,
            at: rfc3339(r.at),
            actor: r.actor.to_string(),
            actor_name: r.actor_name.clone(),
            place: r.place.to_string(),
            action: r.action.clone(),
            job: r.job.clone(),
            params: r.params.clone(),
            decision: r.decision.clone(),
            reason: r.reason.clone(),
            execution_id: r.execution_id,
        }
    }
}

/// A time as RFC 3339 with milliseconds, in UTC.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::config::{Config, LoadOptions};
    use std::path::Path;

    const CONFIG: &str = r#"
[jobs.deploy]
description = "Deploy"
runner = { type = "exec", argv = ["echo", "{{ app }}"] }
[[jobs.deploy.params]]
name = "app"
[[jobs.deploy.params]]
name = "token"
secret = true
"#;

    fn params() -> Params {
        [("app", "api"), ("token", "s3cret"), ("old", "maybe-secret")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secret_and_undeclared_params_are_hidden() {
        let cfg = Config::parse(CONFIG, Path::new("/tmp/t.toml"), LoadOptions::default()).expect("config");
        let shown = redact(&cfg.catalog, "deploy", &params());
        assert_eq!(shown["app"], "api");
        assert_eq!(shown["token"], HIDDEN);
        assert_eq!(shown["old"], HIDDEN);
    }

    #[test]
    fn every_param_of_a_job_gone_from_the_catalog_is_hidden() {
        let shown = redact(&Catalog::new(Vec::new()), "deploy", &params());
        assert_eq!(shown.len(), 3);
        assert!(shown.values().all(|v| v == HIDDEN), "{shown:?}");
    }
}
